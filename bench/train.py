"""LoRA training speed: replyloop's trainer against the canonical recipe, side by side, same everything.

Both recipes fine-tune the same base model (`replyloop.modeling.resolve_base_model`, SmolLM2-135M-Instruct
by default) with the same LoRA settings, learning rate and schedule (no warm-up, linear decay to 0: the
`Trainer` default; replyloop's `lr_schedule: linear`), batch size, number of optimizer steps, seed and
the same training / held-out examples (rendered once by `replyloop.training.examples`):
  - canonical: transformers `Trainer` + peft, every example padded to max_seq_len, default settings
    (fp32, full-vocabulary logits at every position);
  - replyloop: `replyloop.training.loop.Trainer` (length-binned batches, fused LoRA projections
    (`training/fused_lora.py`), head only on labelled positions, bf16 autocast with the frozen base held in
    bf16 where the CPU/GPU has it, fp32 LoRA weights).
Both start from the same LoRA initialisation (seeded the same way) and run the same number of optimizer
steps on the same effective batch, once per seed of `--seeds` (the seed sets the LoRA initialisation,
the example order and the dropout masks; one seed's held-out loss moves by about 0.02 with it, so one
run cannot tell "equal" from "worse"). Each run is its own child process (so its peak RSS, taken when
training ends, is its own). Printed per run and per recipe over all seeds: supervised tokens/s (over the
summed seconds), peak RSS, held-out loss (the mean over seeds), achieved FLOP/s against the matmul peak
this script measures (fp32 and bf16: the best of several square and model-shaped matmuls), then the
ratios. The held-out loss is
computed the same way for both: the recipe's LoRA weights on a freshly loaded fp32 base, in fp32 (and for
reference the untrained base's loss).

The conversations come from `replyloop demo-data` (generated; no real customer-service conversation set is
installable offline here: see docs/training.md).

    python bench/train.py --threads 2              # 48 examples, one epoch of 12 steps of 4, 3 seeds (~7 min)
    python bench/train.py --examples 8 --steps 2 --held-out 4 --seeds 17    # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


PEAK_SHAPES = ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (600, 576, 1536), (600, 1536, 576),
               (2048, 576, 1536))  # (m, k, n): squares and the model's projection shapes (4 x ~150 rows)


def matmul_peak(dtype_name: str, seconds: float = 0.5) -> tuple[float, str]:
    """The best FLOP/s of (m x k) @ (k x n) matmuls over `PEAK_SHAPES`, in this process (all its threads), and
    the shape that reached it: one square size alone under-states what the library reaches."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = (0.0, "")
    for m, k, n in PEAK_SHAPES:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        torch.matmul(a, b)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            torch.matmul(a, b)
            runs += 1
        best = max(best, (2 * m * k * n * runs / (time.perf_counter() - started), f"{m}x{k}x{n}"))
    return best


def prepare(work: Path, n_examples: int, n_held_out: int, max_len: int) -> dict:
    """Generate, ingest and render examples once; both recipes read them from disk."""
    from transformers import AutoTokenizer

    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.modeling import resolve_base_model
    from replyloop.settings import get_settings
    from replyloop.training.data import load_training_data
    from replyloop.training.examples import build_examples

    settings = get_settings()
    lake_settings = settings.model_copy(update={"lake_uri": str(work / "lake")})
    per_day = max(60, (n_examples + n_held_out) * 2)
    generate_landing(open_lake(lake_settings.lake).write_bytes, start_date=date(2026, 11, 20), days=1,
                     conversations_per_day=per_day)
    run_ingest(lake_settings)
    data = load_training_data(lake_settings, None)
    base = resolve_base_model(settings)
    tok = AutoTokenizer.from_pretrained(base.path)
    prompt = settings.rendered_system_prompt()
    train = build_examples(tok, prompt, data.train, max_len)[:n_examples]
    held = build_examples(tok, prompt, data.validation + data.train[len(train) * 2:], max_len)[:n_held_out]
    out = {"base_path": str(base.path), "train": [vars(e) for e in train], "held_out": [vars(e) for e in held]}
    (work / "examples.json").write_text(json.dumps(out))
    return out


def flops_per_token(model, head_positions_share: float) -> float:
    """Forward + backward-to-inputs FLOPs per processed token of a frozen base with LoRA (~4 x params), the
    output head counted only on the share of positions where a recipe computes it. Attention is left out."""
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    emb = model.get_output_embeddings().weight
    return 4 * body + 4 * emb.numel() * head_positions_share


def run_recipe(recipe: str, work: Path, steps: int, batch: int, lr: float, precision: str = "auto",
               seed: int = 17, lora_dropout: float | None = None) -> dict:
    import torch

    from replyloop.training.checkpoint import trainable_state
    from replyloop.training.config import load_train_config
    from replyloop.training.examples import Example

    data = json.loads((work / "examples.json").read_text())
    train = [Example(**e) for e in data["train"]]
    held = [Example(**e) for e in data["held_out"]]
    max_len = max(len(e.input_ids) for e in train + held)
    cfg = load_train_config(max_steps=steps, batch_size=batch, learning_rate=lr, warmup_steps=0, lr_schedule="linear",
                            early_stopping_patience=0, checkpoint_every=10_000, eval_every=10_000,
                            precision=precision, seed=seed,
                            **({} if lora_dropout is None else {"lora_dropout": lora_dropout}),
                            max_seq_len=max(max_len, 8))
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    model, info = (_replyloop if recipe == "replyloop" else _canonical)(data["base_path"], cfg, train)
    seconds = time.perf_counter() - started - info.pop("setup_seconds")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training only, before evaluation
    supervised = sum(sum(1 for x in e.labels[1:] if x != -100) for e in train) * steps * batch / len(train)
    per_token = flops_per_token(model.get_base_model(), info["head_share"])
    info.pop("pad_id")
    loss = fp32_held_out_loss(data["base_path"], cfg, trainable_state(model), held)
    return {"recipe": recipe, "seconds": seconds, "supervised_tokens_per_s": supervised / seconds,
            "processed_tokens_per_s": info["processed_tokens"] / seconds,
            "achieved_flops": per_token * info["processed_tokens"] / seconds, "held_out_loss": loss,
            "peak_rss_mb": peak_rss_mb, **info}


def fp32_held_out_loss(base_path: str, cfg, lora_weights: dict | None, held) -> float:
    """The same evaluation for every recipe: its LoRA weights on a freshly loaded fp32 base, fp32 compute
    (None: the base model without training)."""
    import torch

    from replyloop.modeling import BaseModel
    from replyloop.training.checkpoint import load_trainable
    from replyloop.training.loop import held_out_loss
    from replyloop.training.train import build_lora_model

    model, tok = build_lora_model(BaseModel(Path(base_path), "bench", "bench"), cfg, torch.float32)
    if lora_weights is not None:
        load_trainable(model, lora_weights)
    return held_out_loss(model, held, tok.pad_token_id, 8, torch.device("cpu"), torch.float32)


def untrained_loss(work: Path) -> float:
    from replyloop.training.config import load_train_config
    from replyloop.training.examples import Example

    data = json.loads((work / "examples.json").read_text())
    return fp32_held_out_loss(data["base_path"], load_train_config(), None, [Example(**e) for e in data["held_out"]])


def _replyloop(base_path: str, cfg, train):
    from replyloop.modeling import BaseModel, training_precision
    from replyloop.training.loop import Trainer
    from replyloop.training.train import build_lora_model

    t0 = time.perf_counter()
    device, dtype = training_precision(cfg.precision)
    model, tok = build_lora_model(BaseModel(Path(base_path), "bench", "bench"), cfg, dtype)
    trainer = Trainer(model, cfg, train, [], tok.pad_token_id, device, dtype)
    processed, labelled = [0], [0]
    original = trainer.optimizer_step

    def counted(index_batches):
        for idx in index_batches:
            width = max(len(train[i].input_ids) for i in idx)
            processed[0] += width * len(idx)
            labelled[0] += sum(sum(1 for x in train[i].labels[1:] if x != -100) for i in idx)
        return original(index_batches)

    trainer.optimizer_step = counted
    setup = time.perf_counter() - t0
    trainer.run(on_step=lambda *a: None, on_eval=lambda *a: None, on_checkpoint=lambda *a: None)
    return model, {"setup_seconds": setup, "pad_id": tok.pad_token_id, "dtype": str(dtype).removeprefix("torch."),
                   "processed_tokens": processed[0], "head_share": labelled[0] / max(processed[0], 1)}


def _canonical(base_path: str, cfg, train):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    from replyloop.training.config import make_lora_config

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    torch.manual_seed(cfg.seed)  # as replyloop's build_lora_model: both recipes start from the same adapter
    model = get_peft_model(model, make_lora_config(cfg.lora))
    width = cfg.max_seq_len
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [{"input_ids": e.input_ids + [pad] * (width - len(e.input_ids)),
             "attention_mask": [1] * len(e.input_ids) + [0] * (width - len(e.input_ids)),
             "labels": e.labels + [-100] * (width - len(e.labels))} for e in train]
    tmp = tempfile.mkdtemp(prefix="bench-canonical-")
    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=cfg.batch_size, max_steps=cfg.max_steps,
                             learning_rate=cfg.learning_rate, seed=cfg.seed, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator)
    setup = time.perf_counter() - t0
    trainer.train()
    return model, {"setup_seconds": setup, "pad_id": pad, "dtype": "float32",
                   "processed_tokens": width * cfg.batch_size * cfg.max_steps, "head_share": 1.0}


def child(recipe: str, work: Path, args, seed: int = 17) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", recipe, "--work", str(work), "--steps", str(args.steps),
                          "--batch", str(args.batch), "--lr", str(args.lr), "--precision", args.precision,
                          "--threads", str(args.threads), "--seeds", str(seed),
                          *([] if args.lora_dropout is None else ["--lora-dropout", str(args.lora_dropout)])],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{recipe} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=48)
    p.add_argument("--held-out", type=int, default=24)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--max-seq-len", type=int, default=256)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="replyloop's precision")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads of both recipes (0: torch's default, "
                   "one per core)")
    p.add_argument("--seeds", default="17,18,19", help="comma-separated seeds; each recipe trains once per seed (LoRA "
                   "init, example order, dropout) and the held-out losses are compared by their mean")
    p.add_argument("--lora-dropout", type=float, default=None, help="both recipes' LoRA dropout (default: "
                   "train.yaml's)")
    p.add_argument("--child", choices=["replyloop", "canonical", "untrained"])
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from replyloop.training.train import set_threads

    set_threads(args.threads)  # the recipes' and the matmul peak's
    if args.child == "untrained":
        print(json.dumps({"held_out_loss": untrained_loss(args.work)}))
        return
    if args.child:
        print(json.dumps(run_recipe(args.child, args.work, args.steps, args.batch, args.lr, args.precision,
                                    int(args.seeds), args.lora_dropout)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data = prepare(work, args.examples, args.held_out, args.max_seq_len)
        lengths = [len(e["input_ids"]) for e in data["train"]]
        print(f"{len(lengths)} training examples (tokens: mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}), "
              f"{len(data['held_out'])} held out; {args.steps} steps of {args.batch}; {args.threads or 'default'} torch "
              f"threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
        print("measured matmul peak (best of " + ", ".join("x".join(map(str, sh)) for sh in PEAK_SHAPES) + "): "
              + f"fp32 {peaks['float32'][0] / 1e9:.1f} GFLOP/s ({peaks['float32'][1]}), "
              f"bf16 {peaks['bfloat16'][0] / 1e9:.1f} GFLOP/s ({peaks['bfloat16'][1]})", flush=True)
        untrained = child("untrained", work, args)["held_out_loss"]
        print(f"held-out loss of the base model before training: {untrained:.4f}", flush=True)
        seeds = [int(x) for x in args.seeds.split(",")]
        runs = {"replyloop": [], "canonical": []}
        for seed in seeds:
            for recipe in runs:
                r = child(recipe, work, args, seed)
                runs[recipe].append(r)
                print(f"seed {seed} " + _line(r, peaks), flush=True)
    totals = {recipe: _total(rs) for recipe, rs in runs.items()}
    for t in totals.values():
        print("all seeds " + _line(t, peaks))
    c, o = totals["canonical"], totals["replyloop"]
    per_seed = ", ".join(f"{a['held_out_loss'] - b['held_out_loss']:+.4f}" for a, b in zip(runs["replyloop"],
                                                                                        runs["canonical"]))
    peak = peaks["bfloat16" if o["dtype"] == "bfloat16" else "float32"][0]
    print(f"ratio replyloop/canonical: {o['supervised_tokens_per_s'] / c['supervised_tokens_per_s']:.2f}x supervised "
          f"tokens/s (target >= 3x); mean held-out loss {o['held_out_loss']:.4f} vs {c['held_out_loss']:.4f} "
          f"({'equal or better' if o['held_out_loss'] <= c['held_out_loss'] + 1e-3 else 'WORSE'}; per seed "
          f"{per_seed}); {100 * o['achieved_flops'] / peak:.1f}% of the measured {o['dtype']} peak "
          f"{'(target >= 40%)' if o['dtype'] == 'bfloat16' else '(the 40% target is of the bf16 peak)'}; "
          f"peak RSS {o['peak_rss_mb'] / c['peak_rss_mb']:.2f}x")


def _line(r: dict, peaks: dict) -> str:
    peak = peaks["bfloat16" if r["dtype"] == "bfloat16" else "float32"][0]
    return (f"{r['recipe']:>9}: {r['supervised_tokens_per_s']:8.1f} supervised tok/s  "
            f"{r['processed_tokens_per_s']:8.1f} processed tok/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
            f"held-out loss {r['held_out_loss']:.4f}  {r['achieved_flops'] / 1e9:6.1f} GFLOP/s = "
            f"{100 * r['achieved_flops'] / peak:4.1f}% of the {r['dtype']} peak  ({r['seconds']:.1f} s; "
            f"load average {os.getloadavg()[0]:.1f})")


def _total(rs: list[dict]) -> dict:
    """One recipe over all seeds: rates over the summed seconds, the mean held-out loss, the largest RSS."""
    seconds = sum(r["seconds"] for r in rs)
    rate = {k: sum(r[k] * r["seconds"] for r in rs) / seconds
            for k in ("supervised_tokens_per_s", "processed_tokens_per_s", "achieved_flops")}
    return {**rs[0], **rate, "seconds": seconds, "held_out_loss": sum(r["held_out_loss"] for r in rs) / len(rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}

if __name__ == "__main__":
    main()
