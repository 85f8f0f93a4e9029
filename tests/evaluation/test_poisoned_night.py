"""A poisoned night never moves `champion`; a genuinely better night does (issue 7, point 7).

End to end through the package functions (land -> ingest -> train -> evaluate_candidate), on a tiny model:
- night 1: a clean day lands; the first candidate is promoted (cold start, against the base model);
- night 2 lands in three lakes that share night 1 and one registry, each candidate trained with the
  champion's recipe and judged in this order, against the night-1 champion and the base model:
  - shuffled: the agent replies of most of its conversations moved across conversations (an export that
    joined replies to the wrong threads): refused by reply_fit on the golden set, `champion` stays;
  - rude: each agent reply of the day's canonical conversations replaced with probability 0.7 by a rude line
    of the judge's labelled test split (26 % of the curated replies: night 1 and the day's Twitter-format
    threads stay clean): refused by rude_likelihood on the golden set, `champion` stays;
  - clean: the same day without poison: promoted, `champion` moves to it.
The curated snapshot, held-out split included, carries the poison.

The base model is the tiny BPE learner after a short full fine-tune on clean demo-brand conversations
(another generator seed): a random two-layer model with a LoRA learns the brand's voice but not which reply
fits which message, so it could not tell a shuffled reply from a right one. Pre-trained a little, it maps
messages to replies, so a candidate trained on shuffled replies is measurably worse at it.

Pre-training and LoRA take whole conversations (SEQ_LEN 384 tokens; the longest demo conversation is ~330
with the system prompt), as the gate scores them. With the earlier 192 / 160 tokens (the system prompt
alone is 93), training skipped the conversations whose last reply did not fit (76 of night 1's, 157 of
night 2's) and never saw positions past 160-192, while the last reply of 94 % of demo conversations ends
past token 160 and of 53 % past 192: the gate judged the candidates where training never taught them, and the clean night-2
candidate came out worse than the champion on held-out perplexity (-0.156 nats/token over all 163
held-out items, CI [-0.181, -0.132], 250 steps; -0.059 with the champion's own 100 steps). Checkpoint
selection was not the cause: those candidates kept their last step, and the champion's recipe evaluates
only at steps 0 and 100. With whole conversations (and 300 pre-training steps) the same candidates were
better than the champion by +0.08 to +0.12 nats/token, but the pre-trained base was as good as any LoRA
on held-out (the champion -0.03 against it), so night 1 was refused; pre-training now stops at 100 steps.
Training's checkpoint selection reads every held-out conversation (max_eval_examples 200, was 24): the first
24 by id were all night 1's, so a candidate whose night-2 data made it worse on night-1 conversations kept
its step-0 adapter, the base model itself (the rude candidate did, in a bench run with 24).

Margins (pytest -s, 2026-12-02, shared machine under the lock), candidate against champion / base:
- night 1 against base: held-out perplexity +0.092 [+0.047, +0.130], golden +0.140, reply fit +1.40
  [+0.99, +1.89]: promoted;
- shuffled: reply fit -3.25 [-4.13, -2.37] / -1.84 [-2.47, -1.20] against tolerance 2.0 (1.5 when measured): refused,
  the interval against the champion wholly beyond the tolerance; rude likelihood +0.005 / -0.005 (passes);
- rude: rude likelihood -0.222 [-0.325, -0.124] / -0.232 [-0.319, -0.134] against tolerance 0.15 (0.1 when measured): refused,
  both intervals beyond it (also golden perplexity -0.075 [-0.105, -0.044] and the multi-turn
  slice); its reply fit -0.67 [-1.15, -0.28] passes, and its held-out perplexity is +0.38 BETTER (the
  held-out split carries the rude lines it learnt);
- clean: held-out perplexity +0.027 [+0.003, +0.051], golden +0.010 [-0.009, +0.032], reply fit -0.20
  [-0.47, +0.05], rude likelihood -0.012 [-0.035, +0.007]: promoted.
The tolerances come from bench/likelihood_tolerances.py (another lake and golden seed) and, since 2026-12-02, its
SmolLM2 sibling bench/likelihood_tolerances_smollm2.py (docs/gate.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import date
from pathlib import Path

import pytest

from replyloop import registry
from replyloop.registry import Tag

DATA = Path(__file__).parent / "data"
POISONED_SHARE = 0.9  # of the second day's canonical conversations: >= 30 % of the curated agent replies
RUDE_SHARE = 0.7  # of the second day's canonical agent replies: >= 25 % of the curated agent replies
SEQ_LEN = 384  # tokens: the longest demo conversation (~330 with the system prompt) whole, as the gate scores it
PRETRAIN_STEPS = 100
RECIPE = dict(max_steps=100, batch_size=4, learning_rate=0.005, max_eval_examples=200, eval_every=1000,
              max_seq_len=SEQ_LEN)


def pretrained_learner(learner_dir: Path, scratch: Path, steps: int = PRETRAIN_STEPS,
                       max_len: int = SEQ_LEN) -> Path:
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
    examples = build_examples(tok, settings.rendered_system_prompt(), convs, max_len)
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


def _parsed(lines: list[str]) -> dict[int, dict]:
    """The parseable conversation records of canonical JSONL lines, by line number."""
    records = {}
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("messages"), list):
            records[i] = record
    return records


def _agent_messages(record: dict) -> list[dict]:
    return [m for m in record["messages"] if isinstance(m, dict) and m.get("role") == "agent"]


def shuffle_agent_replies(data: bytes, share: float, rng: random.Random) -> bytes:
    """Canonical JSONL with the agent replies of `share` of the parseable conversations moved to other ones
    of them (each reply keeps its message id and position; only its text comes from elsewhere)."""
    lines = data.decode().splitlines()
    records = _parsed(lines)
    chosen = sorted(rng.sample(sorted(records), round(share * len(records))))
    agent = [m for i in chosen for m in _agent_messages(records[i])]
    texts = [m.get("text") for m in agent]
    rng.shuffle(texts)
    for m, text in zip(agent, texts):
        m["text"] = text
    for i in chosen:
        lines[i] = json.dumps(records[i], ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode()


def rude_agent_replies(data: bytes, share: float, rng: random.Random) -> bytes:
    """Canonical JSONL with each agent reply of the parseable conversations replaced, with probability
    `share`, by a rude line of the judge's labelled TEST split (lines `rude_likelihood` never scores)."""
    from replyloop.evaluation.scoring import contrast_lines

    rude, _ = contrast_lines(None, split="test", flagged_labels=("rude",))
    lines = data.decode().splitlines()
    for i, record in _parsed(lines).items():
        for m in _agent_messages(record):
            if rng.random() < share:
                m["text"] = rng.choice(rude)
        lines[i] = json.dumps(record, ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode()


def shuffled(share: float):
    return lambda data, rng: shuffle_agent_replies(data, share, rng)


def rude(share: float):
    return lambda data, rng: rude_agent_replies(data, share, rng)


def land(lake, files: dict[str, bytes], day: str, poison=None) -> None:
    """Write one day of the landing files into `lake`; `poison(data, rng)` rewrites its conversation files."""
    import gzip

    rng = random.Random(5)
    for path, data in files.items():
        if f"dt={day}" not in path:
            continue
        if poison and path.startswith("raw/conversations/"):
            packed = path.endswith(".gz")
            data = poison(gzip.decompress(data) if packed else data, rng)
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
    try:
        base = pretrained_learner(tiny_learner_dir, tmp / "pretraining")
        for key, value in {"BASE_MODEL": str(base), "MAX_NEW_TOKENS": "12", "EVAL_FRACTION": "0.3"}.items():
            mp.setenv(f"REPLYLOOP_{key}", value)
        get_settings.cache_clear()
        gate = {"eval_sets_uri": str(DATA / "eval"), "gate_file": DATA / "gate_nightly.yaml",
                "heldout_cap": 24, "gate_latency_prompts": 5}
        clean = get_settings().model_copy(update=gate)
        lakes = {"clean": clean, **{name: clean.model_copy(update={"lake_uri": str(tmp / f"{name}-lake")})
                                    for name in ("shuffled", "rude")}}

        files: dict[str, bytes] = {}
        generate_landing(files.__setitem__, start_date=date(2026, 11, 20), days=2, conversations_per_day=200)
        # night 1, clean: the first champion
        land(open_lake(clean.lake), files, "2026-11-20")
        run_ingest(clean)
        champion = train(load_train_config(**RECIPE), clean)["version"]
        first = evaluate_candidate(clean, version=champion)
        _show(clean, champion)
        assert first["promoted"] == champion, first["reasons"]
        # night 2: the same day lands in three lakes that share night 1 (one registry): shuffled, rude, clean
        poisons = (("shuffled", shuffled(POISONED_SHARE)), ("rude", rude(RUDE_SHARE)), ("clean", None))
        for name, poison in poisons:
            if name != "clean":
                shutil.copytree(clean.lake, lakes[name].lake)
            land(open_lake(lakes[name].lake), files, "2026-11-21", poison=poison)
            run_ingest(lakes[name])
        candidates = {name: train(load_train_config(**RECIPE), lake)["version"]
                      for name, lake in lakes.items()}
        # judged in this order, whatever order the tests run in: the poisoned nights against the night-1
        # champion, then the clean night (which moves `champion`)
        out = {"champion": champion, "candidates": candidates,
               "poison_share": {name: _changed_share(agent_texts(clean), agent_texts(lakes[name]))
                                for name in ("shuffled", "rude")}}
        for name in ("shuffled", "rude", "clean"):
            before = registry.alias_version(clean, registry.CHAMPION)
            out[name] = evaluate_candidate(lakes[name], version=candidates[name])
            out[name]["champion_before"] = before
            out[name]["gate_tag"] = registry.version_tags(clean, candidates[name])[Tag.GATE]
            _show(clean, candidates[name])
        yield out
    finally:
        mp.undo()
        os.environ.pop("MLFLOW_TRACKING_URI", None)
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
    likelihoods = ("reply_fit", "rude_likelihood", "perplexity")
    whole_set = rule["kind"] == "non_regression" and rule["metric"] in likelihoods
    return whole_set or not rule["passed"]


def _failed(result, set_name: str) -> set[tuple[str, str, str]]:
    return {(r["kind"], r["metric"], r.get("baseline")) for r in result["failed_rules"] if r["set"] == set_name}


def test_a_candidate_trained_on_shuffled_replies_is_rejected_and_champion_stays(nights):
    result = nights["shuffled"]
    share = nights["poison_share"]["shuffled"]
    assert share >= 0.3, "the curated data carries at least 30 % shuffled agent replies"
    assert not result["passed"] and result["promoted"] is None
    assert ("non_regression", "reply_fit", "champion") in _failed(result, "golden")
    assert result["gate_tag"] == "failed"
    assert result["champion_before"] == result["champion"] == nights["champion"]


def test_a_candidate_trained_on_rude_replies_is_rejected_and_champion_stays(nights):
    result = nights["rude"]
    print(f"rude share of the curated agent replies: {nights['poison_share']['rude']:.3f}")
    assert nights["poison_share"]["rude"] >= 0.25, "the curated data carries at least 25 % rude agent replies"
    assert not result["passed"] and result["promoted"] is None
    assert ("non_regression", "rude_likelihood", "champion") in _failed(result, "golden")
    assert result["gate_tag"] == "failed"
    assert result["champion_before"] == result["champion"] == nights["champion"]


def test_the_same_night_without_poison_is_promoted(nights):
    result, candidate = nights["clean"], nights["candidates"]["clean"]
    assert result["champion_before"] == nights["champion"]
    assert result["passed"] and result["promoted"] == candidate, result["reasons"]
    assert result["baselines"]["champion"] == f"v{nights['champion']}"
    assert result["champion"] == candidate
