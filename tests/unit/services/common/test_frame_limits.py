"""Frame records a hostile producer or a broken camera could write: every header checked in
``decode_frame`` (finite numbers, ranges, sizes against ``FrameLimits``), and the size a JPEG
declares checked before it is decoded, so nothing but ``DecodeError`` comes out."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from services.common.events import DecodeError
from services.common.frames import FrameLimits, FrameTooLarge, decode_frame, encode_frame


def record(**changes: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A good 80x60 frame record with some headers replaced or added."""
    rgb = np.full((60, 80, 3), 90, np.uint8)
    key, value, headers = encode_frame("cam", 3, 0.6, 1764000000.5, rgb).to_record()
    fields = {**dict(headers), **changes}
    return key, value, list(fields.items())


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the frame size in its start-of-frame segment replaced."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length (2), precision (1)
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"captured_at": b"nan"}, "must be finite"),
        ({"captured_at": b"inf"}, "must be finite"),
        ({"pts": b"-inf"}, "must be finite"),
        ({"pts": b"NaN"}, "must be finite"),
        ({"captured_at": b"-1.0"}, "captured_at -1.0 out of range"),
        ({"captured_at": b"1e300"}, "out of range"),
        ({"seq": str(10**25).encode()}, "out of range"),
        ({"seq": str(2**63).encode()}, "out of range"),
        ({"seq": b"-1"}, "out of range"),
        ({"height": b"-60"}, "bad size"),
        ({"budget_ms": str(10**12).encode()}, "budget_ms must be > 0 and <= 3600000"),
    ],
)
def test_headers_out_of_range_are_malformed(changes: dict[str, bytes], error: str) -> None:
    with pytest.raises(DecodeError, match=error) as caught:
        decode_frame(*record(**changes))
    assert not isinstance(caught.value, FrameTooLarge)


def test_the_largest_valid_numbers_decode() -> None:
    seq = str(2**63 - 1).encode()
    message = decode_frame(*record(seq=seq, captured_at=b"0.0", pts=b"-3.5"))
    assert (message.seq, message.captured_at, message.pts) == (2**63 - 1, 0.0, -3.5)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"width": b"20000", "height": b"20000"}, "image 20000x20000 past the limit"),
        (
            {"frame_width": b"6000", "frame_height": b"6000"},
            "source frame 6000x6000 past the limit",
        ),
        ({"frame_width": b"60000"}, "source frame 60000x60 past"),
    ],
)
def test_sizes_past_the_limits_are_too_large(changes: dict[str, bytes], error: str) -> None:
    limits = FrameLimits(max_pixels=1920 * 1080)
    with pytest.raises(FrameTooLarge, match=error):
        decode_frame(*record(**changes), limits)
    # within the limit they pass
    message = decode_frame(*record(frame_width=b"1920", frame_height=b"1080"), limits)
    assert message.frame_size == (1920, 1080)


def test_an_image_past_max_bytes_is_too_large() -> None:
    key, value, headers = record()
    with pytest.raises(FrameTooLarge, match=f"image of {len(value)} bytes, limit 100"):
        decode_frame(key, value, headers, FrameLimits(max_bytes=100))


def test_a_decompression_bomb_is_a_decode_error() -> None:
    key, value, headers = record()
    bomb = decode_frame(key, declaring(value, 20000, 20000), headers)
    with pytest.raises(DecodeError, match=r"not a jpeg image \(DecompressionBombError"):
        bomb.image()


def test_the_declared_size_is_checked_before_decoding() -> None:
    key, value, headers = record()
    bigger = decode_frame(key, declaring(value, 4000, 3000), headers)
    with pytest.raises(DecodeError, match="image declares 4000x3000, headers say 80x60"):
        bigger.image()


def test_other_formats_and_broken_jpegs_are_decode_errors() -> None:
    key, value, headers = record()
    png = io.BytesIO()
    Image.new("RGB", (80, 60)).save(png, format="PNG")
    with pytest.raises(DecodeError, match="not a jpeg image"):
        decode_frame(key, png.getvalue(), headers).image()
    with pytest.raises(DecodeError, match="not a jpeg image"):
        decode_frame(key, value[: len(value) // 2], headers).image()
