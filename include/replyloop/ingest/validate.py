"""Great Expectations validation of curated messages, with Data Docs.

One suite (`replyloop_messages`) over the message table: ids present and unique per conversation, roles
and channels in their sets, text length bounds, ISO UTC timestamps, no PII left over, no chat-template
tokens. It runs through a checkpoint of a file context under `$REPLYLOOP_HOME/gx`, so every run updates
the Data Docs site. Rows that fail an expectation are mapped back to their conversations, which the
pipeline quarantines with reason `validation_failed`; the expectation names travel with them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from replyloop.contract import CHANNELS, MESSAGE_SCHEMA, ROLES

log = logging.getLogger(__name__)

SUITE = "replyloop_messages"
SITE = "local_site"
ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
# Left-over PII: the pipeline runs the redactor's own leak check (Luhn, IBAN checksums...) on every
# message; the suite keeps a plain backstop that has no look-alikes (long digit runs do: order numbers).
PII_BACKSTOP = [r"[\w.+-]+@[\w-]+\.[a-zA-Z]{2,}"]
TEMPLATE_TOKENS = [r"<\|im_start\|>", r"<\|im_end\|>", r"<\|endoftext\|>"]


@dataclass
class ValidationResult:
    success: bool
    statistics: dict
    failed_expectations: list[str]
    failed_rows: dict[int, list[str]] = field(default_factory=dict)  # row index -> expectation names
    data_docs: str | None = None

    def summary(self) -> dict:
        return {"success": self.success, "statistics": self.statistics,
                "failed_expectations": self.failed_expectations, "data_docs": self.data_docs}


def build_suite(gx, max_chars: int):
    E = gx.expectations
    suite = gx.ExpectationSuite(name=SUITE)
    suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=list(MESSAGE_SCHEMA.names), exact_match=True))
    for col in ("conversation_id", "message_id", "role", "text", "created_at"):
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=["conversation_id", "message_id"]))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="channel", value_set=list(CHANNELS)))
    suite.add_expectation(E.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=max_chars))
    suite.add_expectation(E.ExpectColumnValuesToMatchRegex(column="created_at", regex=ISO_UTC))
    suite.add_expectation(E.ExpectColumnValuesToMatchRegex(column="conversation_created_at", regex=ISO_UTC))
    suite.add_expectation(E.ExpectColumnValuesToNotMatchRegexList(column="text", regex_list=PII_BACKSTOP,
                                                                  meta={"check": "pii_leftover"}))
    suite.add_expectation(E.ExpectColumnValuesToNotMatchRegexList(column="text", regex_list=TEMPLATE_TOKENS,
                                                                  meta={"check": "template_tokens"}))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "eval"]))
    return suite


def preload() -> None:
    """Import Great Expectations in a background thread (it takes seconds), for callers that have other
    work to do first; validation imports it anyway."""

    def _import() -> None:
        try:
            import great_expectations  # noqa: F401
        except Exception as exc:  # surfaced again, with its traceback, when validation imports it
            log.debug("background import of great_expectations failed: %s", exc)

    threading.Thread(target=_import, name="gx-preload", daemon=True).start()


def _context(root: Path):
    import great_expectations as gx

    root.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=str(root))
    if SITE not in (ctx.get_site_names() or []):
        ctx.add_data_docs_site(SITE, {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": "uncommitted/data_docs/local_site/"},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return gx, ctx


def validate_messages(df: pd.DataFrame, *, gx_root: Path, max_chars: int, run_name: str) -> ValidationResult:
    """Validate the message table; record-level failures come back as row indices."""
    gx, ctx = _context(gx_root)
    try:
        source = ctx.data_sources.get("replyloop")
    except (KeyError, ValueError, Exception):  # not yet created in this project
        source = ctx.data_sources.add_pandas("replyloop")
    try:
        asset = source.get_asset("messages")
    except LookupError:
        asset = source.add_dataframe_asset("messages")
    try:
        batch_def = asset.get_batch_definition("whole")
    except (KeyError, LookupError, Exception):
        batch_def = asset.add_batch_definition_whole_dataframe("whole")

    suite = build_suite(gx, max_chars)  # rebuilt each run: the code is the source of truth
    try:
        ctx.suites.delete(SUITE)
    except Exception:  # first run
        pass
    suite = ctx.suites.add(suite)
    vd_name = f"{SUITE}_vd"
    try:
        ctx.validation_definitions.delete(vd_name)
    except Exception:
        pass
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=vd_name, data=batch_def, suite=suite))
    cp_name = f"{SUITE}_checkpoint"
    try:
        ctx.checkpoints.delete(cp_name)
    except Exception:
        pass
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=cp_name, validation_definitions=[vd],
        actions=[gx.checkpoint.actions.UpdateDataDocsAction(name="update_data_docs", site_names=[SITE])],
        result_format={"result_format": "COMPLETE"},
    ))
    frame = df.reset_index(drop=True)
    cp_result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=gx.RunIdentifier(run_name=run_name))
    vr = next(iter(cp_result.run_results.values()))

    failed, failed_rows = [], {}
    for res in vr.results:
        if res.success:
            continue
        name = res.expectation_config.type
        column = res.expectation_config.kwargs.get("column")
        label = f"{name}({column})" if column else name
        failed.append(label)
        for idx in (res.result or {}).get("unexpected_index_list") or []:
            row = idx if isinstance(idx, int) else idx.get("index", idx)
            failed_rows.setdefault(int(row), []).append(label)
    docs = None
    try:
        urls = ctx.get_docs_sites_urls(site_names=[SITE])
        docs = urls[0]["site_url"] if urls else None
    except Exception as exc:  # docs are a convenience; the validation result stands without them
        log.warning("could not resolve the Data Docs URL: %s", exc)
    stats, success = dict(vr.statistics), bool(vr.success)
    # The pandas data source caches the batch and every computed metric (Series the size of the table)
    # for the life of the context; dropping it after the run lets that memory go. The next run adds it
    # again; suites, validation results and Data Docs stay in the project.
    del checkpoint, vd, batch_def, asset, source, cp_result, vr
    ctx.data_sources.delete("replyloop")
    return ValidationResult(success, stats, failed, failed_rows, docs)
