"""Mask events, the contract subscribers rely on: a pure codec (JSON <-> frozen dataclasses).

Schema v1, documented in docs/architecture.md ("Mask events"): ``{"v": 1, "stream_id",
"seq", "pts", "captured_at", "published_at", "model", "width", "height", "instances":
[{"label", "class_id", "score", "box": [x1, y1, x2, y2], "mask": {"size": [H, W], "counts":
"<COCO compressed RLE>"}}]}``. Masks are at the frame's own resolution, so
``pycocotools.mask.decode`` reads them as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VERSION = 1


class DecodeError(ValueError):
    """Bytes that are not a valid event, with what was wrong."""


@dataclass(frozen=True)
class Instance:
    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # xyxy in frame pixels
    mask_size: tuple[int, int]  # (H, W)
    mask_counts: str  # COCO compressed RLE

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
            "mask": {"size": list(self.mask_size), "counts": self.mask_counts},
        }

    def rle(self) -> dict[str, Any]:
        """The mask as pycocotools takes it."""
        return {"size": list(self.mask_size), "counts": self.mask_counts.encode("ascii")}


@dataclass(frozen=True)
class MaskEvent:
    stream_id: str
    seq: int
    pts: float
    captured_at: float
    published_at: float
    model: str
    width: int
    height: int
    instances: tuple[Instance, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "stream_id": self.stream_id,
            "seq": self.seq,
            "pts": self.pts,
            "captured_at": self.captured_at,
            "published_at": self.published_at,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "instances": [i.to_json() for i in self.instances],
        }


def encode_event(event: MaskEvent) -> bytes:
    return json.dumps(event.to_json(), separators=(",", ":")).encode()


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise DecodeError(f"{where}: missing '{name}'")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DecodeError(f"{where}: '{name}' must be {kind}, got {type(value).__name__}")
    return value


def _instance(data: Any, index: int) -> Instance:
    where = f"instances[{index}]"
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: must be an object")
    box = _field(data, "box", list, where)
    mask = _field(data, "mask", dict, where)
    size = _field(mask, "size", list, f"{where}.mask")
    if len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise DecodeError(f"{where}: 'box' must be 4 numbers")
    if len(size) != 2 or not all(isinstance(v, int) and v >= 0 for v in size):
        raise DecodeError(f"{where}.mask: 'size' must be [H, W]")
    return Instance(
        label=_field(data, "label", str, where),
        class_id=_field(data, "class_id", int, where),
        score=float(_field(data, "score", (int, float), where)),
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        mask_size=(size[0], size[1]),
        mask_counts=_field(mask, "counts", str, f"{where}.mask"),
    )


def decode_event(raw: bytes | str) -> MaskEvent:
    """Parse one event; DecodeError names what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DecodeError("an event must be a JSON object")
    version = data.get("v")
    if version != VERSION:
        raise DecodeError(f"unsupported event version {version!r} (this reads {VERSION})")
    instances = _field(data, "instances", list, "event")
    return MaskEvent(
        stream_id=_field(data, "stream_id", str, "event"),
        seq=_field(data, "seq", int, "event"),
        pts=float(_field(data, "pts", (int, float), "event")),
        captured_at=float(_field(data, "captured_at", (int, float), "event")),
        published_at=float(_field(data, "published_at", (int, float), "event")),
        model=_field(data, "model", str, "event"),
        width=_field(data, "width", int, "event"),
        height=_field(data, "height", int, "event"),
        instances=tuple(_instance(item, i) for i, item in enumerate(instances)),
    )
