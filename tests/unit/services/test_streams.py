"""Registry records: validation with named fields, credentials masked, record round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.common.events import DecodeError
from services.common.streams import StreamSpec, decode_spec, redact


def test_record_round_trip_and_defaults() -> None:
    spec = StreamSpec(id="cam-1", url="rtsp://u:secret@10.0.0.5/live", model="yolact_r50")
    assert spec.live and spec.budget_s == 5.0 and spec.fps == 5.0
    assert decode_spec(*spec.to_record()) == spec
    file = StreamSpec(id="f", url="/data/a.mp4", model="m")
    assert not file.live and file.budget_s is None
    assert not StreamSpec(id="f", url="file:///data/a.mp4", model="m").live
    assert StreamSpec(id="f", url="/a.mp4", model="m", latency_budget_ms=800).budget_s == 0.8


def test_credentials_are_masked() -> None:
    spec = StreamSpec(id="cam-1", url="rtsp://admin:hunter2@cam/live", model="m")
    assert spec.display()["url"] == "rtsp://***@cam/live"
    assert "hunter2" not in redact("cannot open rtsps://a:hunter2@h:554/x: refused")


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "bad id/with slash"), ("id", ""), ("url", "ftp://cam/x"), ("fps", 0), ("fps", 500)],
)
def test_invalid_specs_name_the_field(field: str, value: object) -> None:
    data = {"id": "cam", "url": "rtsp://cam/x", "model": "m", field: value}
    with pytest.raises(ValidationError) as err:
        StreamSpec.model_validate(data)
    assert err.value.errors()[0]["loc"][0] == field


def test_bad_records_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode_spec(b"cam", b"{nope")
    with pytest.raises(DecodeError, match="fps"):
        decode_spec(
            b"cam", json.dumps({"id": "cam", "url": "/a", "model": "m", "fps": -1}).encode()
        )
    with pytest.raises(DecodeError, match="key and id"):
        decode_spec(b"other", StreamSpec(id="cam", url="/a", model="m").to_record()[1])
    with pytest.raises(DecodeError, match="no key"):
        decode_spec(None, b"{}")
