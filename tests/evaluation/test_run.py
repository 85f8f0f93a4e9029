"""`evaluate_candidate` when a set holds too little evidence (issue 7, point 3), end to end.

The session's tiny loop curates one day of 60 conversations, so its held-out split holds far fewer than
the 30 conversations the shipped gate asks for, while the shipped golden and safety sets hold enough. The
gate must fail closed before any model answers: the version records the failed evidence rule with its
numbers, no report run is logged, and no alias moves.
"""

from __future__ import annotations

import json


def test_too_little_heldout_evidence_fails_closed_without_scoring_and_moves_no_alias(tiny_loop):
    from replyloop import registry
    from replyloop.registry import Tag

    settings, gate, version = tiny_loop["settings"], tiny_loop["gate"], tiny_loop["trained"]["version"]
    assert (gate["version"], gate["passed"], gate["promoted"], gate["eval_run_id"]) == (version, False, None, None)
    evidence = {r["set"]: r for r in gate["failed_rules"]}
    assert set(evidence) == {"heldout"} and evidence["heldout"]["kind"] == "evidence"
    assert evidence["heldout"]["value"] < 30 and evidence["heldout"]["threshold"] == ">= 30"
    assert gate["rules"] == 3, "only the evidence rules were judged: nothing was scored"

    tags = registry.version_tags(settings, version)
    assert tags[Tag.GATE] == "failed"
    assert "heldout set has" in tags[Tag.GATE_REASONS]
    assert [r["set"] for r in json.loads(tags[Tag.GATE_RULES]) if not r["passed"]] == ["heldout"]
    assert registry.alias_version(settings, registry.CHAMPION) is None
    assert registry.alias_version(settings, registry.CHALLENGER) is None
