"""The command line: help, machine-readable output, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import date, timedelta

from click.testing import CliRunner

from replyloop.cli import main


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def stdout_json(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_help_lists_every_command():
    out = run("--help")
    assert out.exit_code == 0
    for cmd in ("demo-data", "ingest", "train", "evaluate", "promote", "rollback", "status", "reply", "serve",
                "summary"):
        assert cmd in out.output


def test_demo_data_ingest_json_and_status_json(settings):
    out = run("demo-data", "--per-day", "30", "--days", "1")
    assert out.exit_code == 0 and "wrote" in out.output
    manifest = stdout_json("ingest", "--json")
    counts = manifest["counts"]
    assert counts["raw"] == counts["curated"] + counts["quarantined"] + counts["duplicates"]
    assert manifest["status"] == "ok" and manifest["snapshot_id"]
    # the next demo-data call lands the next day, so the loop gets new data
    run("demo-data", "--per-day", "30", "--days", "1")
    second = stdout_json("ingest", "--json")
    first_day = date.fromisoformat(manifest["partitions"][0].rsplit("=", 1)[1])
    assert first_day == date.today() - timedelta(days=30)
    assert second["partitions"][0].endswith(f"dt={first_day + timedelta(days=1)}")
    status = stdout_json("status", "--json")
    assert status["snapshot"]["id"] == second["snapshot_id"]
    assert status["champion"] is None and status["versions"] == []


def test_demo_data_never_lands_in_the_future(settings):
    recent = (date.today() - timedelta(days=1)).isoformat()
    assert run("demo-data", "--start", recent, "--days", "1", "--per-day", "5").exit_code == 0
    out = CliRunner().invoke(main, ["demo-data"])
    assert out.exit_code == 1 and "caught up with today" in out.output


def test_errors_are_clear_and_nonzero(settings):
    out = CliRunner().invoke(main, ["ingest", "--date", "2026-02-30"])
    assert out.exit_code == 1 and "date='2026-02-30' is not a day" in out.output
    out = CliRunner().invoke(main, ["train"])
    assert out.exit_code == 1 and "no curated snapshot" in out.output
    out = CliRunner().invoke(main, ["reply", "hi"])
    assert out.exit_code == 1 and "no @champion version" in out.output
    out = CliRunner().invoke(main, ["rollback"])
    assert out.exit_code == 1 and "no champion to roll back" in out.output


def _omp_threads_after_serve_setup(**env: str) -> str:
    """OMP_NUM_THREADS as `replyloop serve` leaves it before the server imports torch (a fresh interpreter)."""
    code = ("import os; from replyloop import cli; cli._one_openmp_thread_for_llamacpp(); "
            "print(os.environ.get('OMP_NUM_THREADS', 'unset'))")
    clean = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and not k.startswith("REPLYLOOP_SERVE")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_serve_gives_torch_one_openmp_thread_beside_llamacpp():
    assert importlib.util.find_spec("llama_cpp") is not None  # installed by make install
    assert _omp_threads_after_serve_setup() == "1"
    assert _omp_threads_after_serve_setup(REPLYLOOP_SERVE_ENGINE="torch") == "unset"
    assert _omp_threads_after_serve_setup(OMP_NUM_THREADS="2") == "2"
