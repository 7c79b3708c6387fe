"""The frame-message codec: round trip through a Kafka record, and named errors."""

from __future__ import annotations

import numpy as np
import pytest

from segcore.data import synthetic
from services.common.events import DecodeError
from services.common.frames import decode_frame, encode_frame


def _message():
    rgb, _ = synthetic.frame(3, 5, (60, 80))
    return encode_frame("cam-7", 42, 2.8, 1764000000.5, rgb), rgb


def test_round_trip() -> None:
    message, rgb = _message()
    key, value, headers = message.to_record()
    assert key == b"cam-7"
    decoded = decode_frame(key, value, headers)
    assert decoded == message
    image = decoded.image()
    assert image.shape == (60, 80, 3)
    assert np.abs(image.astype(int) - rgb.astype(int)).mean() < 6  # JPEG at quality 90


def _headers(**changes: bytes | None) -> list[tuple[str, bytes]]:
    message, _ = _message()
    headers = dict(message.to_record()[2])
    for name, value in changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return list(headers.items())


@pytest.mark.parametrize(
    ("key", "value", "headers", "message"),
    [
        (None, b"x", _headers(), "no key"),
        (b"cam", b"", _headers(), "no value"),
        (b"cam", b"x", _headers(seq=None), "missing header 'seq'"),
        (b"cam", b"x", _headers(v=b"9"), "unsupported version"),
        (b"cam", b"x", _headers(pts=b"soon"), "bad number"),
        (b"cam", b"x", _headers(encoding=b"png"), "unknown encoding 'png'"),
        (b"cam", b"x", _headers(width=b"0"), "bad size"),
    ],
)
def test_bad_records_are_named(key, value, headers, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_frame(key, value, headers)


def test_image_that_is_not_one() -> None:
    message, _ = _message()
    key, _, headers = message.to_record()
    broken = decode_frame(key, b"not a jpeg", headers)
    with pytest.raises(DecodeError, match="not a jpeg image"):
        broken.image()
    wrong_size = decode_frame(key, message.data, [*headers[:4], ("width", b"81"), *headers[5:]])
    with pytest.raises(DecodeError, match="headers say 81x60"):
        wrong_size.image()


def test_shrunk_frame_carries_the_source_size_and_budget() -> None:
    rgb, _ = synthetic.frame(3, 5, (60, 80))
    message = encode_frame("cam", 1, 0.0, 1.0, rgb, frame_size=(160, 120), budget_ms=2500)
    decoded = decode_frame(*message.to_record())
    assert decoded.frame_size == (160, 120) and (decoded.width, decoded.height) == (80, 60)
    assert decoded.budget_ms == 2500
    same = encode_frame("cam", 1, 0.0, 1.0, rgb, frame_size=(80, 60))
    assert decode_frame(*same.to_record()).frame_size == (80, 60)
    assert decode_frame(*same.to_record()).budget_ms is None


@pytest.mark.parametrize(
    ("name", "raw", "error"),
    [
        ("budget_ms", b"soon", "bad number"),
        ("budget_ms", b"0", "budget_ms must be > 0"),
        ("frame_width", b"-4", "bad size"),
    ],
)
def test_bad_optional_headers_are_named(name: str, raw: bytes, error: str) -> None:
    rgb, _ = synthetic.frame(3, 5, (60, 80))
    key, value, headers = encode_frame("cam", 1, 0.0, 1.0, rgb).to_record()
    with pytest.raises(DecodeError, match=error):
        decode_frame(key, value, [*headers, (name, raw)])
