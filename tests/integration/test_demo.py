"""`segstream demo`: a synthetic H.264 camera through PyAV, Kafka, paste_masks and Redis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from services.common.redis import make_redis, masks_key
from services.common.settings import Settings
from services.demo import HEIGHT, OBJECTS, WIDTH, render, run_demo

pytestmark = pytest.mark.integration


def test_render_occludes_and_masks_match_pixels() -> None:
    background = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
    for t in (0, 17, 40):
        frame, truth = render(t, background)
        for obj in OBJECTS:
            assert (frame[truth[obj.label]] == obj.colour).all()
        masks = list(truth.values())
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                assert not (masks[i] & masks[j]).any(), "visible masks never overlap"


def test_demo_publishes_decodable_events(settings: Settings, unique: str) -> None:
    stream_id = f"demo-test-{unique}"
    assert run_demo(settings, frames=12, quiet=True, stream_id=stream_id) == 0
    client = make_redis(settings)
    try:
        entries = client.xrange(masks_key(stream_id))
    finally:
        client.close()
    assert len(entries) == 12
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    assert [e["seq"] for e in events] == list(range(12))
    for (entry_id, _), event in zip(entries, events, strict=True):
        assert entry_id.decode() == f"{int(event['captured_at'] * 1000)}-{event['seq']}"
        assert event["v"] == 1 and event["stream_id"] == stream_id
        assert (event["width"], event["height"]) == (WIDTH, HEIGHT)
        assert {i["label"] for i in event["instances"]} == {o.label for o in OBJECTS}
        for inst in event["instances"]:
            rle = {"size": inst["mask"]["size"], "counts": inst["mask"]["counts"].encode()}
            mask = mask_utils.decode(rle)
            assert mask.shape == (HEIGHT, WIDTH)
            x1, y1, x2, y2 = inst["box"]
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x1 - 1 and xs.max() <= x2 and ys.min() >= y1 - 1 and ys.max() <= y2
