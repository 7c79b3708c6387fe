"""`segstream eval --tracking`: the demo model with the tracker on tracking scenes, scored."""

from __future__ import annotations

import pytest

import segcore
from segcore.evaluation import TRACKING_SEEDS, evaluate_tracking
from services.cli import main


def test_eval_tracking_prints_the_scores(
    compiled_ops: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--model", "yolact_r18_demo", "--tracking", "--scenes", "1", "--frames", "12"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    expected = evaluate_tracking(
        segcore.build("yolact_r18_demo"), TRACKING_SEEDS[:1], num_frames=12
    ).table()
    expected_lines = expected.splitlines()
    # Everything but the timing line is the evaluation's own.
    assert out[:2] == expected_lines[:2] and out[3:] == expected_lines[3:]
    assert out[0].startswith("MOTA ") and " IDF1 " in out[0] and " HOTA " in out[0]
    assert "ID switches" in out[0] and out[1].startswith("line crossings")
    assert out[-1].split()[0] == str(TRACKING_SEEDS[0])


def test_eval_tracking_refuses_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "--model", "yolact_r18_demo", "--tracking", "--scenes", "0"]
    assert main(args) == 2
    assert "--scenes" in capsys.readouterr().err
