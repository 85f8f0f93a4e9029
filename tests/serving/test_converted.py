"""A converted model lands whole or not at all (serving.converted.written_once)."""

from __future__ import annotations

import pytest

from replyloop.serving.converted import written_once


def test_a_finished_conversion_lands_at_its_destination(tmp_path):
    dest = tmp_path / "engines" / "abc"
    with written_once(dest) as tmp:
        (tmp / "model.bin").write_text("weights")
    assert (dest / "model.bin").read_text() == "weights"
    assert [p.name for p in dest.parent.iterdir()] == ["abc"]


def test_a_failed_conversion_leaves_nothing(tmp_path):
    dest = tmp_path / "abc"
    with pytest.raises(RuntimeError, match="converter crashed"), written_once(dest) as tmp:
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []


def test_the_first_copy_of_the_same_content_is_kept(tmp_path):
    dest = tmp_path / "abc"
    with written_once(dest) as first, written_once(dest) as second:
        (first / "model.bin").write_text("first")
        (second / "model.bin").write_text("second")
    assert (dest / "model.bin").read_text() == "second"  # the inner block finished, and landed, first
    assert [p.name for p in tmp_path.iterdir()] == ["abc"]
