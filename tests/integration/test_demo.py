"""`segstream demo`: a synthetic H.264 camera through PyAV, Kafka, the demo model and Redis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.data.synthetic import CLASSES
from services.common.redis import make_redis, masks_key
from services.common.settings import Settings
from services.demo import SIZE, run_demo

pytestmark = pytest.mark.integration


def test_demo_publishes_decodable_events(
    settings: Settings, unique: str, compiled_ops: None
) -> None:
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
    assert any(e["instances"] for e in events)
    for (entry_id, _), event in zip(entries, events, strict=True):
        assert entry_id.decode() == f"{int(event['captured_at'] * 1000)}-{event['seq']}"
        assert event["v"] == 1 and event["stream_id"] == stream_id
        assert event["model"] == "yolact_r18_demo"
        assert (event["height"], event["width"]) == SIZE
        for inst in event["instances"]:
            assert inst["label"] in CLASSES and CLASSES[inst["class_id"]] == inst["label"]
            rle = {"size": inst["mask"]["size"], "counts": inst["mask"]["counts"].encode()}
            mask = mask_utils.decode(rle)
            assert mask.shape == SIZE and mask.any()
            x1, y1, x2, y2 = inst["box"]
            ys, xs = np.nonzero(mask)
            # YOLACT crops masks to the box plus one prototype pixel (320 / 64 = 5 px here).
            assert xs.min() >= x1 - 6 and xs.max() <= x2 + 6
            assert ys.min() >= y1 - 6 and ys.max() <= y2 + 6
