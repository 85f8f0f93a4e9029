"""How the gate asks a model: through the serving engine, so that what is judged is what the API serves.

`serving.engine` answers (the torch engine by default; CTranslate2 or the plain HF reference as
`REPLYLOOP_SERVE_ENGINE` says); the HF model of the same weights (the engine's own for torch and hf) is
kept for what only a forward pass gives: the perplexity of the reference replies. Candidate, champion and base model are all
asked the same way, so the gate compares like with like.
"""

from __future__ import annotations

from replyloop import registry
from replyloop.settings import Settings


class EngineAnswerer:
    """A `ReplyGenerator`-like view of one model for the gate: `reply()` through the engine; `model`,
    `tok` and `system_prompt` from the HF reference (perplexity scoring)."""

    def __init__(self, engine, reference, batch: int):
        self.engine, self.reference, self.batch = engine, reference, batch
        self.model, self.tok, self.system_prompt = reference.model, reference.tok, reference.system_prompt

    def reply(self, conversations: list, batch_size: int | None = None) -> list[str]:
        step = batch_size or self.batch
        out: list[str] = []
        for i in range(0, len(conversations), step):
            out += [g.text for g in self.engine.generate(list(conversations[i : i + step]))]
        return out


def _reference(engine, load):
    """The HF generator behind the engine when it has one (torch, hf), else a fresh one (`load()`)."""
    return getattr(engine, "generator", None) or getattr(engine, "gen", None) or load()


def load_candidate(settings: Settings, version: str) -> EngineAnswerer:
    """A registered version as the server loads it (`serving.engine.load_engine`)."""
    from replyloop.serving.engine import load_engine

    engine = load_engine(settings, version)
    return EngineAnswerer(engine, _reference(engine, lambda: registry.load_version(settings, version)),
                          settings.serve_max_batch)


def load_base(settings: Settings, files: registry.VersionFiles) -> EngineAnswerer:
    """The base model of `files`, with that version's system prompt and reply budget, in the same engine."""
    from replyloop.modeling import ReplyGenerator, base_model_by_hash
    from replyloop.modeling import load_base as load_base_model
    from replyloop.serving.engine import load_base_engine, version_config

    config = version_config(files)
    engine = load_base_engine(settings, files.base_model_sha, config)

    def reference():
        model, tok = load_base_model(base_model_by_hash(settings, files.base_model_sha))
        return ReplyGenerator(model, tok, system_prompt=config.get("system_prompt") or settings.rendered_system_prompt(),
                              max_new_tokens=int(config.get("max_new_tokens", settings.max_new_tokens)))

    return EngineAnswerer(engine, _reference(engine, reference), settings.serve_max_batch)
