"""Frame messages on ``segstream.frames.<model>``: a pure codec between the Kafka record
(key, value, headers) and a frozen dataclass.

Key: the stream id (so a stream's frames stay in order on one partition). Value: the encoded
image. Headers: ``v`` (format version), ``seq``, ``pts``, ``captured_at``, ``width``,
``height``, ``encoding`` (``jpeg``), and optionally ``frame_width``/``frame_height`` (the
source frame's size when ingest shrank it: events are at that size) and ``budget_ms`` (the
stream's latency budget). Decoding checks every header (numbers finite, ``0 <= seq <
2**63``, a capture time that makes a valid Redis entry id, sizes positive and within
:class:`FrameLimits`) and raises :class:`DecodeError` naming the one at fault
(:class:`FrameTooLarge` for a record past the limits), so a worker can send the record to the
DLQ and go on; :meth:`FrameMessage.image` checks the size the JPEG declares before decoding it.
"""

from __future__ import annotations

import enum
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.common.events import DecodeError

VERSION = 1
ENCODINGS = ("jpeg",)
SEQ_END = 2**63  # seq is below this (a Redis entry id's sequence part, as a signed int64)
CAPTURED_AT_END = (2**63 - 1) // 1000  # epoch seconds; the entry id's ms part stays an int64
BUDGET_MS_MAX = 3_600_000  # the registry's maximum latency budget


class FrameTooLarge(DecodeError):
    """A well-formed frame record whose sizes are past the :class:`FrameLimits`."""


@dataclass(frozen=True)
class FrameLimits:
    """What a frame record may claim: ``max_pixels`` bounds width x height of the image and
    of the source frame (the events' masks are at the latter's size), ``max_bytes`` the
    encoded image. Built from ``Settings.frame_max_pixels`` and ``frame_max_bytes``."""

    max_pixels: int = 4096 * 4096
    max_bytes: int = 16 * 1024 * 1024


DEFAULT_LIMITS = FrameLimits()  # the settings' defaults


class Dropped(enum.StrEnum):
    """Why a frame was not segmented: the ``reason`` label of
    ``segstream_frames_dropped_total``."""

    LATENCY_BUDGET = "latency-budget"  # older than its stream's budget (segment worker)
    UNREGISTERED = "unregistered"  # its stream id is not in the registry (segment worker)
    KAFKA_UNAVAILABLE = "kafka-unavailable"  # could not be produced (ingest worker)


class DeadLetter(enum.StrEnum):
    """Why a record went to the dead-letter topic: its ``dlq_reason`` header and the
    ``reason`` label of ``segstream_dlq_total``."""

    MALFORMED = "malformed"  # the key or headers do not decode (:func:`decode_frame`)
    BAD_IMAGE = "bad-image"  # the value is not the image the headers describe
    TOO_LARGE = "too-large"  # sizes past the configured limits (:class:`FrameLimits`)
    REJECTED = "rejected"  # Redis refused the frame's event (e.g. its entry id)


@dataclass(frozen=True)
class FrameMessage:
    stream_id: str
    seq: int
    pts: float
    captured_at: float
    width: int
    height: int
    encoding: str
    data: bytes
    frame_width: int = 0  # the source frame's size; 0: the image's own
    frame_height: int = 0
    budget_ms: int | None = None  # drop the frame unsegmented once older than this

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the source frame, which the event's masks have."""
        return (self.frame_width or self.width, self.frame_height or self.height)

    def to_record(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) for a Kafka producer."""
        headers = [
            ("v", str(VERSION).encode()),
            ("seq", str(self.seq).encode()),
            ("pts", repr(self.pts).encode()),
            ("captured_at", repr(self.captured_at).encode()),
            ("width", str(self.width).encode()),
            ("height", str(self.height).encode()),
            ("encoding", self.encoding.encode()),
        ]
        if self.frame_width or self.frame_height:
            headers.append(("frame_width", str(self.frame_width).encode()))
            headers.append(("frame_height", str(self.frame_height).encode()))
        if self.budget_ms is not None:
            headers.append(("budget_ms", str(self.budget_ms).encode()))
        return self.stream_id.encode(), self.data, headers

    def image(self) -> np.ndarray:
        """The decoded frame, (H, W, 3) uint8 RGB; DecodeError when the bytes are not one.

        The size the JPEG declares is checked against the headers before any pixel is
        decoded, so a small record cannot make the worker allocate a huge image; whatever
        the decoder raises on bytes from outside (Pillow's ``DecompressionBombError``
        included) comes out as DecodeError."""
        name = f"frame {self.stream_id}#{self.seq}"
        try:
            with Image.open(io.BytesIO(self.data), formats=[self.encoding.upper()]) as img:
                if img.size != (self.width, self.height):
                    raise DecodeError(
                        f"{name}: image declares {img.size[0]}x{img.size[1]}, "
                        f"headers say {self.width}x{self.height}"
                    )
                rgb = np.array(img.convert("RGB"))
        except DecodeError:
            raise
        except Exception as exc:  # a decoder fed untrusted bytes may raise anything
            raise DecodeError(
                f"{name}: not a {self.encoding} image ({type(exc).__name__}: {exc})"
            ) from exc
        if rgb.shape[:2] != (self.height, self.width):
            raise DecodeError(
                f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"headers say {self.width}x{self.height}"
            )
        return rgb


def encode_frame(
    stream_id: str,
    seq: int,
    pts: float,
    captured_at: float,
    rgb: np.ndarray,
    quality: int = 90,
    *,
    frame_size: tuple[int, int] | None = None,
    budget_ms: int | None = None,
) -> FrameMessage:
    """JPEG-encode an (H, W, 3) uint8 RGB frame into a message; ``frame_size`` (width,
    height) is the source frame's when ``rgb`` was shrunk from it."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    height, width = rgb.shape[:2]
    fw, fh = frame_size if frame_size and frame_size != (width, height) else (0, 0)
    return FrameMessage(
        stream_id,
        seq,
        pts,
        captured_at,
        width,
        height,
        "jpeg",
        buffer.getvalue(),
        fw,
        fh,
        budget_ms,
    )


def decode_frame(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    limits: FrameLimits = DEFAULT_LIMITS,
) -> FrameMessage:
    """The message of a Kafka record; DecodeError names what is missing or wrong,
    FrameTooLarge what is past ``limits``."""
    if not key:
        raise DecodeError("frame record has no key (the stream id)")
    if not value:
        raise DecodeError("frame record has no value (the image)")
    try:
        stream_id = key.decode()
        fields = {name: raw.decode() for name, raw in headers}
    except UnicodeDecodeError as exc:
        raise DecodeError(f"frame record key or headers are not UTF-8: {exc}") from exc
    where = f"frame record of {stream_id}"

    def header(name: str) -> str:
        if name not in fields:
            raise DecodeError(f"{where}: missing header '{name}'")
        return fields[name]

    if header("v") != str(VERSION):
        raise DecodeError(f"{where}: unsupported version {fields['v']!r}")
    try:
        seq, width, height = int(header("seq")), int(header("width")), int(header("height"))
        pts, captured_at = float(header("pts")), float(header("captured_at"))
        frame_width = int(fields.get("frame_width", "0"))
        frame_height = int(fields.get("frame_height", "0"))
        budget_ms = int(fields["budget_ms"]) if "budget_ms" in fields else None
    except ValueError as exc:
        raise DecodeError(f"{where}: bad number in headers: {exc}") from exc
    encoding = header("encoding")
    if encoding not in ENCODINGS:
        raise DecodeError(f"{where}: unknown encoding {encoding!r}")
    if not (math.isfinite(pts) and math.isfinite(captured_at)):
        raise DecodeError(f"{where}: pts and captured_at must be finite")
    if not 0 <= captured_at < CAPTURED_AT_END:
        raise DecodeError(f"{where}: captured_at {captured_at!r} out of range")
    if not 0 <= seq < SEQ_END:
        raise DecodeError(f"{where}: seq {seq} out of range [0, 2**63)")
    if width <= 0 or height <= 0 or frame_width < 0 or frame_height < 0:
        raise DecodeError(f"{where}: bad size in headers")
    if budget_ms is not None and not 0 < budget_ms <= BUDGET_MS_MAX:
        raise DecodeError(f"{where}: budget_ms must be > 0 and <= {BUDGET_MS_MAX}")
    if len(value) > limits.max_bytes:
        raise FrameTooLarge(f"{where}: image of {len(value)} bytes, limit {limits.max_bytes}")
    for what, (w, h) in (
        ("image", (width, height)),
        ("source frame", (frame_width or width, frame_height or height)),
    ):
        if w * h > limits.max_pixels:
            raise FrameTooLarge(
                f"{where}: {what} {w}x{h} past the limit of {limits.max_pixels} pixels"
            )
    return FrameMessage(
        stream_id,
        seq,
        pts,
        captured_at,
        width,
        height,
        encoding,
        value,
        frame_width,
        frame_height,
        budget_ms,
    )
