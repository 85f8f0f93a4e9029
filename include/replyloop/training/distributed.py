"""Data-parallel training on one worker with several GPUs (or several CPU processes, for testing).

    train task --(REPLYLOOP_TRAIN_PROCESSES > 1)--> torchrun --standalone --nproc-per-node N
        rank 0:  MLflow run, checkpoints, registration (as a one-process run)
        rank k:  its shard of every global batch; talks to nobody but the other ranks

The number of processes is the setting `train_processes` (default: one per visible CUDA device, 1 without
CUDA). Each rank is an `accelerate` process (`PartialState`): NCCL on CUDA, gloo on CPU. The configured
batch is the *global* batch: every optimizer step the same micro-batches as in a one-process run are split
among the ranks (`shard`), each rank divides its summed loss by the supervised-token count of the whole
global batch, and the gradients are summed across ranks. N processes so take the same optimizer steps as
one, up to the order of floating-point additions.

The gradients are all-reduced explicitly, as one flat buffer per step, rather than through DDP's hooks:
the loss runs the decoder and the output head separately (the head only on labelled positions), which DDP's
wrapped `forward` would not see, and a LoRA adapter's gradients are a few megabytes at most.

`accelerate launch` runs several CPU processes only under MPI, so the launcher is `torch.distributed.run`
(torchrun, which `accelerate launch` itself uses for several GPUs): it picks a free rendezvous port,
and stops every rank when one fails.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
WORKER_ENV = "REPLYLOOP_TRAIN_RANK"  # set in the launched processes: they train, never launch again


class DistributedError(RuntimeError):
    """The data-parallel processes cannot start or one of them failed; the message names the setting or rank."""


def processes(settings) -> int:
    """How many training processes this worker runs: the setting, else one per visible CUDA device, else 1."""
    import torch

    if os.environ.get(WORKER_ENV) is not None:
        return 1  # already one of the launched ranks
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    n = settings.train_processes or gpus or 1
    if gpus and n > gpus:
        raise DistributedError(f"REPLYLOOP_TRAIN_PROCESSES={n}, but this worker sees {gpus} CUDA device(s) "
                               "(CUDA_VISIBLE_DEVICES); use at most one process per GPU, or 0 for one per GPU")
    return n


def shard(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's part of one optimizer step's micro-batches (the global batch).

    When the micro-batches divide evenly, each rank takes whole ones (rank r: r, r + world, ...); otherwise
    each rank takes every world-th example of every micro-batch. Either way the ranks' parts are disjoint
    and together are the global batch."""
    if len(batches) % world == 0:
        return batches[rank::world]
    return [b[rank::world] for b in batches if b[rank::world]]


def supervised_count(examples) -> int:
    """Supervised tokens of examples, as `batching.supervised_tokens` counts them in a batch."""
    from replyloop.training.examples import IGNORE

    return sum(sum(1 for label in ex.labels[1:] if label != IGNORE) for ex in examples)


class SingleProcess:
    """The hooks of `loop.Trainer` for one process: nothing to share."""

    rank, world, is_main = 0, 1, True

    def shard(self, batches):
        return batches

    def sum(self, value):
        return value

    def sum_gradients(self, params) -> None:
        pass

    def mean_over_shards(self, examples, mean_loss: Callable) -> float:
        return mean_loss(examples)

    def broadcast_parameters(self, params) -> None:
        pass

    def share(self, obj):
        return obj

    def seed(self, seed: int) -> None:
        pass

    def rng_states(self):
        return None

    def restore_rng(self, saved: dict) -> None:
        pass


class DataParallel(SingleProcess):
    """The hooks for one rank of a data-parallel run (an initialised `accelerate.PartialState`)."""

    def __init__(self, state):
        self.state = state
        self.rank, self.world, self.is_main = state.process_index, state.num_processes, state.is_main_process

    def shard(self, batches):
        return shard(batches, self.rank, self.world)

    def _all_sum(self, tensor):
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum(self, value):
        """The sum of a number over the ranks (every rank gets the same value)."""
        import torch

        kind = torch.int64 if isinstance(value, int) else torch.float64
        return self._all_sum(torch.tensor([value], dtype=kind, device=self.state.device)).item()

    def sum_gradients(self, params) -> None:
        """Sum the gradients of `params` over the ranks, as one flat buffer (a missing gradient counts 0)."""
        import torch

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self._all_sum(torch.cat([g.reshape(-1) for g in grads]))
        for p, g in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p).clone()

    def mean_over_shards(self, examples, mean_loss: Callable) -> float:
        """The token-weighted mean loss over `examples`, each rank scoring every world-th one."""
        import torch

        part = examples[self.rank :: self.world]
        tokens = supervised_count(part)
        local = mean_loss(part) * tokens if tokens else 0.0
        total = self._all_sum(torch.tensor([local, tokens], dtype=torch.float64, device=self.state.device))
        return float(total[0] / total[1]) if total[1] else float("nan")

    def broadcast_parameters(self, params) -> None:
        """Every rank starts from rank 0's weights."""
        import torch.distributed as dist

        for p in params:
            dist.broadcast(p.data, src=0)

    def share(self, obj):
        """Rank 0's `obj` on every rank (pickled; for the small things rank 0 alone reads, e.g. a checkpoint)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.state.device)
        return box[0]

    def seed(self, seed: int) -> None:
        """Ranks other than 0 draw their own dropout masks (rank 0 keeps a one-process run's stream)."""
        import torch

        if self.rank:
            torch.manual_seed(seed + self.rank)

    def rng_states(self) -> list:
        """Every rank's torch RNG state, so that a resumed run continues each rank's stream."""
        import torch
        import torch.distributed as dist

        states = [None] * self.world
        dist.all_gather_object(states, torch.get_rng_state())
        return states

    def restore_rng(self, saved: dict) -> None:
        import torch

        states = saved.get("rank_rng")
        if states and len(states) == self.world:
            torch.set_rng_state(states[self.rank])
        elif self.rank:
            log.warning("the checkpoint was written by %s process(es), this run has %d: rank %d draws new "
                        "dropout masks", len(states) if states else 1, self.world, self.rank)


# --- the launcher (in the train task's process) ------------------------------------------------------------
def launch(n: int, cfg, settings, **kwargs) -> dict:
    """Run `train.train_here(cfg, settings, **kwargs)` in `n` data-parallel processes; rank 0's result."""
    import torch

    with tempfile.TemporaryDirectory(prefix="replyloop-dp-") as tmp:
        work = Path(tmp)
        (work / "spec.pkl").write_bytes(pickle.dumps({"cfg": cfg, "settings": settings, "kwargs": kwargs}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(n), "-m", __name__, str(work)]
        log.info("training in %d data-parallel processes (%s): %s", n,
                 "NCCL" if torch.cuda.is_available() else "gloo on CPU", " ".join(cmd))
        code = _run(cmd, _worker_env(n, torch.cuda.is_available()))
        result = work / "result.json"
        if code == 0 and result.exists():
            return json.loads(result.read_text())
        raise _failure(work, n, code)


def _worker_env(n: int, cuda: bool) -> dict:
    import replyloop

    env = dict(os.environ)
    package_root = str(Path(replyloop.__file__).resolve().parents[1])  # the ranks import this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    if not cuda and "OMP_NUM_THREADS" not in env:  # torchrun would set 1: share the cores instead
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    return env


def _run(cmd: list[str], env: dict) -> int:
    """The launcher's exit code; if this process is stopped (task killed, Ctrl-C), every rank is stopped too."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        _stop_group(proc)
        raise


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _failure(work: Path, n: int, code: int) -> BaseException:
    """The exception of the rank that failed first, re-raised here with its type where it is ours."""
    errors = sorted(work.glob("error-rank*.json"), key=lambda p: p.stat().st_mtime)
    if not errors:
        return DistributedError(f"the {n} training processes exited with code {code} without a Python error "
                                "(killed, out of memory, or the rendezvous failed): see the task log above")
    err = json.loads(errors[0].read_text())
    log.error("training process %d of %d failed:\n%s", err["rank"], n, err["traceback"])
    module, _, name = err["type"].rpartition(".")
    if module.startswith("replyloop."):
        cls = getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(err["message"])
            except TypeError:  # a constructor that takes more than the message
                pass
    return DistributedError(f"training process {err['rank']} of {n} failed: {err['type']}: {err['message']}")


# --- one rank (a process torchrun started) -----------------------------------------------------------------
def worker(work: Path) -> None:
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    os.environ[WORKER_ENV] = str(state.process_index)
    logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING,
                        format=f"[rank {state.process_index}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = pickle.loads((work / "spec.pkl").read_bytes())
    try:
        from replyloop.training.train import train_here

        result = train_here(spec["cfg"], spec["settings"], dp=DataParallel(state), **spec["kwargs"])
        if state.is_main_process:
            (work / "result.json").write_text(json.dumps(result))
    except BaseException as exc:
        (work / f"error-rank{state.process_index}.json").write_text(json.dumps({
            "rank": state.process_index, "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc), "traceback": traceback.format_exc()}))
        raise
    finally:
        state.destroy_process_group()


if __name__ == "__main__":
    from replyloop.training.distributed import worker as _worker  # the importable module, not this __main__ copy

    _worker(Path(sys.argv[1]))
