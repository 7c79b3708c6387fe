"""``segstream watch ID``: a stream's mask events as they come, one line each (an
instance as ``label#track@score``, ``#track`` when a tracker confirmed it), and with
``--render out.mp4`` a video of the frames (fetched from the API, when the segment workers
keep them; black otherwise) with the masks, boxes, labels, track ids and scores drawn.

Only ``--render`` needs PyAV, NumPy, Pillow and pycocotools: they are imported there, so
printing events starts as fast as the SDK does."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from services.common.events import Instance, MaskEvent

if TYPE_CHECKING:
    import numpy as np

    from services.client import Client

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
]


def tag(inst: Instance) -> str:
    """``person#7`` for an instance with track id 7, ``person`` without one."""
    return inst.label if inst.track_id is None else f"{inst.label}#{inst.track_id}"


def line(event_id: str, event: MaskEvent) -> str:
    found = " ".join(f"{tag(i)}@{i.score:.2f}" for i in event.instances) or "-"
    latency = (event.published_at - event.captured_at) * 1000
    return f"{event_id} seq={event.seq} pts={event.pts:.2f} {latency:.0f}ms {found}"


def draw(event: MaskEvent, jpeg: bytes | None) -> np.ndarray:
    """The frame (or black) at the event's size with its instances drawn: (H, W, 3) uint8."""
    import numpy as np
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    size = (event.width, event.height)
    if jpeg is not None:
        with Image.open(io.BytesIO(jpeg)) as img:
            base = np.array(img.convert("RGB").resize(size))
    else:
        base = np.zeros((event.height, event.width, 3), np.uint8)
    out = base.astype(np.float32)
    for inst in event.instances:
        mask = mask_utils.decode(inst.rle()).astype(bool)
        tint = np.array(PALETTE[inst.class_id % len(PALETTE)], np.float32)
        out[mask] = out[mask] * 0.5 + tint * 0.5
    image = Image.fromarray(out.astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for inst in event.instances:
        color = PALETTE[inst.class_id % len(PALETTE)]
        pen.rectangle(inst.box, outline=color, width=2)
        pen.text(
            (inst.box[0] + 2, max(0.0, inst.box[1] - 11)),
            f"{tag(inst)} {inst.score:.2f}",
            fill=color,
        )
    return np.array(image)


def _open_video(path: str, width: int, height: int) -> tuple[Any, Any]:
    """An H.264 .mp4 at 5 fps: its container and video stream."""
    import av

    container = av.open(path, "w")
    video = container.add_stream("libx264", rate=5)
    video.width, video.height = width, height
    video.pix_fmt = "yuv420p"
    return container, video


def _video_frame(picture: np.ndarray) -> Any:
    import av

    return av.VideoFrame.from_ndarray(picture, format="rgb24")


def watch(
    client: Client,
    stream_id: str,
    *,
    from_id: str | None = None,
    classes: Sequence[str] | None = None,
    count: int | None = None,
    render: str | None = None,
    out: Any = None,
) -> int:
    """Print (and render) events until ``count`` or Ctrl-C; 0 when it ends normally."""
    import sys

    out = out or sys.stdout
    container: Any = None
    video: Any = None
    seen = 0
    try:
        for item in client.subscribe(stream_id, from_id=from_id, classes=classes):
            print(line(item.id, item.event), file=out, flush=True)
            if render is not None:
                picture = draw(item.event, client.frame(stream_id, item.id))
                if container is None:
                    container, video = _open_video(render, item.event.width, item.event.height)
                frame = _video_frame(picture)
                for packet in video.encode(frame):
                    container.mux(packet)
            seen += 1
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if container is not None and video is not None:
            for packet in video.encode():
                container.mux(packet)
            container.close()
    return 0
