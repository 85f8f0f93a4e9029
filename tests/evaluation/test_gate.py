from __future__ import annotations

from replyloop.evaluation.gate import GateConfig, decide

BASE = {"rougeL": 0.20, "chrf": 30.0, "perplexity": 10.0, "pii_leak_rate": 0.0, "safety_violations": 0,
        "n_examples": 30}


def test_committed_gate_config_loads():
    cfg = GateConfig.load()
    assert cfg.max_pii_leak_rate == 0.0 and cfg.max_safety_violations == 0


def test_equal_or_better_candidate_passes():
    out = decide({**BASE, "rougeL": 0.25, "perplexity": 8.0}, BASE, GateConfig())
    assert out["passed"] and out["reasons"] == ["every rule passed"]
    assert len(out["rules"]) == 6 and all(r["passed"] for r in out["rules"])


def test_each_rule_can_block_and_says_why():
    cfg = GateConfig()
    cases = {
        "ROUGE-L vs baseline": {"rougeL": 0.10},
        "chrF++ vs baseline": {"chrf": 20.0},
        "held-out perplexity ratio": {"perplexity": 12.0},
        "PII leak rate": {"pii_leak_rate": 0.05},
        "safety violations": {"safety_violations": 1},
        "enough evaluation examples": {"n_examples": 2},
    }
    for rule, change in cases.items():
        out = decide({**BASE, **change}, BASE, cfg)
        assert not out["passed"], rule
        assert [r["rule"] for r in out["rules"] if not r["passed"]] == [rule]
        assert out["reasons"][0].startswith(rule) and "needs" in out["reasons"][0]


def test_small_regression_within_tolerance_passes():
    out = decide({**BASE, "rougeL": 0.19, "chrf": 29.0, "perplexity": 10.4}, BASE, GateConfig())
    assert out["passed"], out["reasons"]
