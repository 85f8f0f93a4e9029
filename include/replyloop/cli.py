"""`replyloop` command line: the same package functions the DAGs call, for people at a terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import date as Date
from datetime import timedelta

import click

from replyloop.settings import get_settings


def _setup_logging(verbose: bool) -> None:
    if not verbose:  # library deprecation chatter is for developers, not for people running the loop
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(mlflow|transformers|peft)\b.*")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("great_expectations", "urllib3", "botocore", "alembic", "mlflow.store", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _fail(exc: Exception) -> None:
    raise click.ClickException(f"{type(exc).__name__}: {exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """replyloop: ingest -> validate -> LoRA fine-tune -> evaluate -> promote -> serve -> feedback.

    Settings come from REPLYLOOP_* environment variables (see README); `replyloop status` shows where
    things are.
    """
    _setup_logging(verbose)


@main.command("demo-data")
@click.option("--start", "start", default=None,
              help="First day (YYYY-MM-DD); default: the day after the newest landing partition, "
                   "or 30 days ago for an empty lake.")
@click.option("--days", default=2, show_default=True)
@click.option("--per-day", default=120, show_default=True, help="Canonical conversations per day.")
@click.option("--seed", default=7, show_default=True)
def demo_data(start: str | None, days: int, per_day: int, seed: int) -> None:
    """Write a seeded sample landing dataset (JSONL, gzip, TWCS CSV, feedback) into the lake."""
    from replyloop.demo_data import generate_landing
    from replyloop.lake import lake_for

    settings = get_settings()
    lake = lake_for(settings)
    latest = Date.today() - timedelta(days=days)  # whole days in the past: no record is "from the future"
    if start is None:
        days_seen = sorted({o.key.split("dt=")[1][:10] for o in lake.list("raw/") if "dt=" in o.key})
        if days_seen:
            start = (Date.fromisoformat(days_seen[-1]) + timedelta(days=1)).isoformat()
            seed += len(days_seen)  # a new day brings new conversations
        else:
            start = (Date.today() - timedelta(days=30)).isoformat()
        if Date.fromisoformat(start) > latest:
            _fail(ValueError(f"the sample data has caught up with today (next day would be {start}); "
                             f"pass --start YYYY-MM-DD or start from an empty lake (make clean)"))
    summary = generate_landing(lake.write_bytes, start_date=Date.fromisoformat(start), days=days,
                               conversations_per_day=per_day, seed=seed, brand=settings.brand_handle)
    click.echo(f"wrote {len(summary['files'])} files to {lake.uri}: {summary['conversations']} conversations, "
               f"{summary['twcs_threads']} TWCS threads, {summary['feedback_events']} feedback events "
               f"({summary['malformed']} malformed, {summary['duplicates']} duplicates on purpose)")


@main.command()
@click.option("--date", "day", default=None, help="Re-read one day (YYYY-MM-DD); default: every new partition.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot manifest as JSON.")
def ingest(day: str | None, as_json: bool) -> None:
    """Ingest new landing partitions into a curated snapshot (quarantining bad records)."""
    from replyloop.ingest.pipeline import IngestError, run_ingest
    from replyloop.lake import LakeError

    try:
        manifest = run_ingest(get_settings(), date=day)
    except (IngestError, LakeError) as exc:
        _fail(exc)
    if as_json:
        _echo_json(manifest)
        return
    c = manifest.get("counts", {})
    click.echo(f"snapshot {manifest.get('snapshot_id')} ({manifest.get('status')}): raw={c.get('raw')} "
               f"curated={c.get('curated')} quarantined={c.get('quarantined')} duplicates={c.get('duplicates')}")
    for reason, n in (c.get("quarantined_by_reason") or {}).items():
        click.echo(f"  quarantined {reason}: {n}")


@main.command("replay-quarantine")
@click.option("--date", "day", required=True, help="Day of the quarantine (YYYY-MM-DD).")
@click.option("--kind", type=click.Choice(["conversations", "twcs", "feedback", "replies"]), default="conversations",
              show_default=True)
@click.option("--reason", "reasons", multiple=True, help="Only records with this reason code (repeatable).")
@click.option("--ingest/--no-ingest", default=True, show_default=True, help="Re-ingest the day afterwards.")
def replay_quarantine_cmd(day: str, kind: str, reasons: tuple[str, ...], ingest: bool) -> None:
    """Put (hand-fixed) quarantined records back into the landing zone and re-ingest the day."""
    from replyloop.ingest.pipeline import IngestError, run_ingest
    from replyloop.ingest.replay import replay_quarantine
    from replyloop.lake import lake_for

    settings = get_settings()
    try:
        out = replay_quarantine(lake_for(settings), day, kind, reasons=set(reasons) or None)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    click.echo(f"replayed {out['replayed']} record(s) to {out['written']} ({out['skipped']} skipped)")
    if ingest and out["replayed"]:
        try:
            manifest = run_ingest(settings, date=day)
        except IngestError as exc:
            _fail(exc)
        c = manifest["counts"]
        click.echo(f"snapshot {manifest['snapshot_id']}: curated={c['curated']} quarantined={c['quarantined']}")


@main.command()
@click.option("--author", "authors", multiple=True,
              help="Platform user id (messages[].author_id as landed); repeatable.")
@click.option("--conversation", "conversations", multiple=True, help="Conversation id; repeatable.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False),
              help="Batch file: one 'author ID' or 'conversation ID' per line (# comments allowed).")
@click.option("--requested-by", default=None, help="Who asked for it (default: your user name).")
@click.option("--reason", default=None, help="Free text kept with the request (no personal data).")
@click.option("--apply/--no-apply", "apply_now", default=True, show_default=True,
              help="Write the current snapshot again without the subjects now (else at the next ingestion).")
@click.option("--purge", is_flag=True, help="Delete older snapshots and rewrite landing/quarantine files holding them.")
@click.option("--force", is_flag=True, help="Purge even the champion's training snapshot.")
@click.option("--json", "as_json", is_flag=True)
def erase(authors, conversations, path, requested_by, reason, apply_now, purge, force, as_json) -> None:
    """Erase users or conversations: record the request, keep them out of every later snapshot, and name
    the model versions trained on them. See docs/privacy.md."""
    import getpass
    from pathlib import Path

    from replyloop.ingest.pipeline import IngestError
    from replyloop.lake import LakeError
    from replyloop.privacy.erasure import ErasureError
    from replyloop.privacy.lock import LakeBusy
    from replyloop.privacy.request import erase_subjects, report_lines

    try:
        result = erase_subjects(get_settings(), authors=authors, conversations=conversations,
                                file_text=Path(path).read_text() if path else None, file_name=path,
                                requested_by=requested_by or getpass.getuser(), reason=reason, apply_now=apply_now,
                                purge=purge, force=force)
    except (ErasureError, IngestError, LakeError, LakeBusy) as exc:
        _fail(exc)
    _echo_json(result) if as_json else click.echo("\n".join(report_lines(result)))


@main.command()
@click.option("--dry-run", is_flag=True, help="Report what would be deleted, delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def cleanup(dry_run: bool, as_json: bool) -> None:
    """Delete landing, quarantine and snapshot data past its retention (REPLYLOOP_*_RETENTION_DAYS)."""
    from replyloop.privacy.lock import LakeBusy
    from replyloop.privacy.retention import cleanup as run_cleanup

    try:
        out = run_cleanup(get_settings(), dry_run=dry_run)
    except LakeBusy as exc:
        _fail(exc)
    if as_json:
        _echo_json(out)
        return
    names = {"raw": "landing partition(s)", "quarantine": "quarantine partition(s)", "snapshots": "snapshot folder(s)"}
    for what, keys in out["deleted"].items():
        click.echo(f"{'would delete' if dry_run else 'deleted'} {len(keys)} {names[what]}")
        for key in keys:
            click.echo(f"  {key}")
    for sid in out["purge_candidates"]:
        click.echo(f"kept snapshot {sid} predates an erasure request: `replyloop erase --purge` deletes it")


@main.command()
@click.option("--max-steps", type=int, default=None)
@click.option("--lora-r", type=int, default=None)
@click.option("--lora-alpha", type=float, default=None)
@click.option("--lora-dropout", type=float, default=None)
@click.option("--lora-target-modules", default=None, help="Comma-separated module names, e.g. q_proj,v_proj.")
@click.option("--learning-rate", type=float, default=None)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None)
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option("--snapshot", default=None, help="Snapshot id (default: CURRENT).")
@click.option("--config", "config_path", default=None, help="YAML TrainConfig (default: the committed one).")
@click.option("--like", "like", default=None, metavar="VERSION",
              help="Re-run the reproducibility manifest of a registered version (its snapshot, settings, seed).")
@click.option("--json", "as_json", is_flag=True)
def train(max_steps, lora_r, lora_alpha, lora_dropout, lora_target_modules, learning_rate, precision,
          gradient_checkpointing, snapshot, config_path, like, as_json) -> None:
    """Fine-tune a LoRA adapter on the curated snapshot and register a version."""
    from replyloop.modeling import BaseModelError
    from replyloop.registry import RegistryError
    from replyloop.training.checkpoint import CheckpointError
    from replyloop.training.config import TrainConfigError, load_train_config
    from replyloop.training.data import SnapshotError
    from replyloop.training.manifest import ManifestError
    from replyloop.training.train import TrainingError, train_like
    from replyloop.training.train import train as run_train

    settings = get_settings()
    try:
        if like:
            result = train_like(settings, like)
        else:
            cfg = load_train_config(config_path or settings.train_config, max_steps=max_steps, lora_r=lora_r,
                                    lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                    lora_target_modules=lora_target_modules, learning_rate=learning_rate,
                                    precision=precision, gradient_checkpointing=gradient_checkpointing)
            result = run_train(cfg, settings, snapshot_id=snapshot)
    except (TrainingError, BaseModelError, TrainConfigError, SnapshotError, CheckpointError, ManifestError,
            RegistryError) as exc:
        _fail(exc)
    _echo_json(result) if as_json else click.echo(
        f"run {result['run_id']}: registered version {result['version']} after {result['steps']} steps (held-out "
        f"loss {result['initial_eval_loss']:.3f} -> {result['final_eval_loss']:.3f})")


def _who() -> str:
    import getpass

    return os.environ.get("REPLYLOOP_USER") or getpass.getuser()


@main.command()
@click.option("--version", default=None, help="Model version (default: newest without a gate decision).")
@click.option("--no-promote", is_flag=True, help="Record the decision but do not move champion.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(version, no_promote, as_json) -> None:
    """Judge a candidate against the champion and the base model; promote it if every gate rule passes."""
    from replyloop import registry, resources
    from replyloop.evaluation.gate import GateConfigError
    from replyloop.evaluation.run import EvaluationError, evaluate_candidate

    try:
        result = evaluate_candidate(get_settings(), version=version, promote=not no_promote)
    except (EvaluationError, GateConfigError, registry.RegistryError, resources.EvalSetError) as exc:
        _fail(exc)
    if as_json:
        _echo_json(result)
        return
    click.echo(f"v{result['version']} vs {result['baselines']}: {'PASSED' if result['passed'] else 'FAILED'} "
               f"({result['rules']} rules; report: MLflow run {result['eval_run_id']}, gate/report.html)")
    for reason in result["reasons"]:
        click.echo(f"  - {reason}")
    click.echo(f"champion: v{result['champion']}")


@main.command()
@click.argument("version")
@click.option("--reason", default=None, help="Why (recorded on the versions involved; required with --force).")
@click.option("--force", is_flag=True, help="Promote a version that failed the gate or has no decision.")
def promote(version: str, reason: str | None, force: bool) -> None:
    """Point the champion alias at VERSION (one that passed the gate, unless --force --reason)."""
    from replyloop import registry

    if force and not reason:
        raise click.UsageError("--force needs --reason TEXT (it is recorded on the versions involved)")
    try:
        out = registry.promote(get_settings(), version, reason=reason or "manual promotion", by=_who(), force=force)
    except registry.RegistryError as exc:
        _fail(exc)
    click.echo(f"champion: v{out['previous']} -> v{out['champion']} ({out['reason']}, by {out['by']})")


@main.command()
@click.option("--to", "to", default=None, help="Version to go back to (default: the previous champion that "
              "passed the gate).")
@click.option("--reason", default=None, help="Why (recorded on the versions involved).")
@click.option("--force", is_flag=True, help="Allow rolling back to a version that failed the gate.")
def rollback(to, reason, force) -> None:
    """Move the champion alias back to the previous champion (or --to VERSION)."""
    from replyloop import registry

    if force and not reason:
        raise click.UsageError("--force needs --reason TEXT (it is recorded on the versions involved)")
    try:
        out = registry.rollback(get_settings(), to=to, reason=reason or "manual rollback", by=_who(), force=force)
    except registry.RegistryError as exc:
        _fail(exc)
    click.echo(f"champion: v{out['previous']} -> v{out['champion']} ({out['reason']}, by {out['by']})")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """Where things are: lake, current snapshot, registry versions, gate decisions, champion and challenger."""
    from replyloop import registry
    from replyloop.ingest.pipeline import read_manifest
    from replyloop.lake import lake_for

    settings = get_settings()
    manifest = read_manifest(lake_for(settings)) or {}
    out = {"home": str(settings.home), "lake": settings.lake,
           "snapshot": {"id": manifest.get("snapshot_id"), "totals": manifest.get("totals"),
                        "counts": manifest.get("counts")},
           **registry.status(settings)}
    if as_json:
        _echo_json(out)
        return
    click.echo(f"home:     {out['home']}\nlake:     {out['lake']}\nmlflow:   {out['tracking_uri']}")
    click.echo(f"snapshot: {out['snapshot']['id']} {out['snapshot']['totals'] or ''}")
    click.echo(f"champion: {out['champion']}   challenger: {out['challenger']}")
    for v in out["versions"]:
        approval = f" approval={v['approval']}" if v.get("approval") else ""
        click.echo(f"  v{v['version']:<4} {v['created']}  gate={v['gate']:<8}{approval} snapshot={v['snapshot']} "
                   f"{' '.join('@' + a for a in v['aliases'])}")


@main.command()
@click.option("--no-reply", is_flag=True, help="Skip the sample reply (no model load).")
def summary(no_reply: bool) -> None:
    """What the last loop did: data kept and quarantined, the run, the version, the gate, the champion."""
    from replyloop import registry
    from replyloop.ingest.pipeline import read_manifest
    from replyloop.lake import lake_for

    settings = get_settings()
    manifest = read_manifest(lake_for(settings)) or {}
    counts = manifest.get("counts", {})
    click.echo("\n=== replyloop: what the loop did ===")
    click.echo(f"data      snapshot {manifest.get('snapshot_id')}: raw={counts.get('raw')} curated={counts.get('curated')} "
               f"quarantined={counts.get('quarantined')} duplicates={counts.get('duplicates')}")
    for reason, n in (counts.get("quarantined_by_reason") or {}).items():
        click.echo(f"          quarantined {reason}: {n}")
    if manifest.get("validation"):
        click.echo(f"          Data Docs: {manifest['validation'].get('data_docs')}")
    vs = registry.versions(settings)
    if vs:
        v = vs[-1]
        tags = v.tags or {}
        click.echo(f"training  MLflow run {v.run_id} -> {settings.model_name} v{v.version}")
        baselines = json.loads(tags.get(registry.Tag.GATE_BASELINES) or "{}")
        against = ", ".join(f"{k} {v}" for k, v in baselines.items() if v) or "?"
        click.echo(f"gate      v{v.version} vs {against}: {tags.get(registry.Tag.GATE, 'pending').upper()}")
        for reason in (tags.get(registry.Tag.GATE_REASONS) or "").splitlines():
            if reason:
                click.echo(f"          - {reason}")
    champion = registry.alias_version(settings, registry.CHAMPION) if vs else None
    click.echo(f"champion  v{champion}" if champion else "champion  none yet")
    if champion and not no_reply:
        prompt = "where is my order?"
        generator = registry.load_version(settings, champion)
        click.echo(f'reply     "{prompt}" -> "{generator.reply([prompt])[0]}"')
    click.echo("look      make airflow  (Airflow UI, http://localhost:8080)\n"
               "          make mlflow   (MLflow UI, http://localhost:5000: runs, gate reports, registry)\n"
               "          make serve    (reply API, http://localhost:8000/docs)\n"
               f"          replyloop status; lake at {settings.lake}")


@main.command()
@click.argument("text")
@click.option("--alias", default=None, help="Registry alias to use (default: champion).")
def reply(text: str, alias: str | None) -> None:
    """Answer TEXT as the brand would, with the champion model."""
    from replyloop import registry

    settings = get_settings()
    alias = alias or settings.serve_alias
    version = registry.alias_version(settings, alias)
    if version is None:
        _fail(RuntimeError(f"{settings.model_name} has no @{alias} version; run the loop or `replyloop promote`"))
    click.echo(f"[v{version}] {registry.load_version(settings, version).reply([text])[0]}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the champion over HTTP (POST /v1/replies, /v1/feedback, /v1/webhooks/PLATFORM; docs/api.md)."""
    _one_openmp_thread_for_llamacpp()
    import uvicorn

    from replyloop.serving.main import create_app

    # access log: method, path and status only (no bodies, no keys); graceful shutdown flushes the reply log
    uvicorn.run(create_app(), host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


def _one_openmp_thread_for_llamacpp() -> None:
    """torch and llama.cpp share one OpenMP runtime: a second team of torch threads beside llama.cpp's slowed a
    lone reply from 0.52 s to 1.06 s (docs/api.md). With the llama.cpp engine in play, torch gets one thread
    unless OMP_NUM_THREADS says otherwise; it must be set before torch is imported."""
    import importlib.util

    engine = get_settings().serve_engine
    if engine in ("auto", "llamacpp") and "torch" not in sys.modules and importlib.util.find_spec("llama_cpp"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


@main.group("api-key")
def api_key() -> None:
    """API keys of the reply API (only their SHA-256 is stored)."""


@api_key.command("create")
@click.argument("name")
def api_key_create(name: str) -> None:
    """Create a key NAME; prints the key once (store it in the platform's secrets)."""
    from replyloop.serving.security import SecurityConfigError, create_key, keys_file

    settings = get_settings()
    try:
        key = create_key(settings, name)
    except SecurityConfigError as exc:
        _fail(exc)
    click.echo(key)
    click.echo(f"(hash stored in {keys_file(settings)}; the key itself is not kept)", err=True)


@api_key.command("revoke")
@click.argument("name")
def api_key_revoke(name: str) -> None:
    """Remove the key NAME (a running server picks it up at its next start)."""
    from replyloop.serving.security import revoke_key

    if not revoke_key(get_settings(), name):
        _fail(RuntimeError(f"no API key named {name!r}"))


if __name__ == "__main__":
    main()
