"""``segstream streams add|patch --zone/--line``: the options parsed into the API's body, bad
ones refused by argparse naming the option, and a 422's field shown as ``zones[1].polygon``."""

from __future__ import annotations

import argparse

import pytest

from services.cli import build_parser
from services.cli.api_client import field_name, line_arg, zone_arg


def test_zone_and_line_options() -> None:
    args = build_parser().parse_args(
        [
            "streams",
            "add",
            "rtsp://cam/x",
            "--zone",
            "door:0,0,0.5,0,0.5,1",
            "--zone",
            "lot:0.5,0,1,0,1,1,0.5,1:0.3:20",
            "--line",
            "gate:0.1,0.5,0.9,0.5",
        ]
    )
    assert args.zone == [
        {"name": "door", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0]]},
        {
            "name": "lot",
            "polygon": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]],
            "min_fraction": 0.3,
            "loiter_s": 20.0,
        },
    ]
    assert args.line == [{"name": "gate", "a": [0.1, 0.5], "b": [0.9, 0.5]}]


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (zone_arg, "door", "NAME:x1,y1"),
        (zone_arg, ":0,0,1,0,1,1", "NAME:x1,y1"),
        (zone_arg, "door:0,0,1,x", "numbers"),
        (zone_arg, "door:0,0,1", "an x and a y"),
        (zone_arg, "door:0,0,1,0,1,1:0.5:3:9", "NAME:x1,y1"),
        (line_arg, "gate:0,0,1", "NAME:x1,y1,x2,y2"),
        (line_arg, "gate", "NAME:x1,y1,x2,y2"),
        (line_arg, "gate:a,b,c,d", "NAME:x1,y1,x2,y2"),
        # not finite: JSON cannot carry them, so the CLI names them before any request
        (zone_arg, "door:nan,0,1,0,1,1", "finite"),
        (zone_arg, "door:0,0,inf,0,1,1", "finite"),
        (zone_arg, "door:0,0,1,0,1,1:nan", "finite"),
        (zone_arg, "door:0,0,1,0,1,1:0.5:inf", "finite"),
        (line_arg, "gate:0,0,1,-inf", "finite"),
        (line_arg, "gate:NaN,0,1,1", "finite"),
    ],
)
def test_bad_options_are_named(parse: object, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)  # type: ignore[operator]


def test_argparse_refuses_a_bad_zone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["streams", "patch", "cam", "--zone", "door:1,2,3"])
    assert exit_.value.code == 2
    assert "--zone" in capsys.readouterr().err


def test_field_names_of_a_422() -> None:
    assert field_name(["body", "zones", 1, "polygon"]) == "zones[1].polygon"
    assert field_name(["body", "lines", 0, "b", 1]) == "lines[0].b[1]"
    assert field_name(["body", "model"]) == "model"
    assert field_name(["query", "zone"]) == "zone"
