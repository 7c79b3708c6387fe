"""``triage`` on plain records: what is past its budget, what goes to the dead-letter topic
and what is segmented (the worker around it: tests/integration/test_failures.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.frames import DeadLetter, Dropped, encode_frame
from services.segment.triage import triage


@dataclass(frozen=True)
class Record:
    """The fields of a kafka-python ConsumerRecord that triage reads."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


def frame(
    seq: int,
    captured_at: float,
    budget_ms: int | None = None,
    frame_size: tuple[int, int] | None = None,
) -> Record:
    rgb = np.full((24, 32, 3), 40 * seq % 256, np.uint8)
    message = encode_frame(
        "cam", seq, seq / 5, captured_at, rgb, frame_size=frame_size, budget_ms=budget_ms
    )
    return Record(*message.to_record())


NOW = 1_000_000.0


def test_fresh_frames_are_ready_in_order_with_their_source_size() -> None:
    records = [frame(0, NOW - 1.0, 2000, frame_size=(64, 48)), frame(1, NOW - 10.0)]
    out = triage(records, NOW)
    assert not out.stale and not out.bad
    assert [r.item.seq for r in out.ready] == [0, 1]
    first = out.ready[0]
    assert first.item.frame_size == (64, 48) and first.item.rgb.shape == (24, 32, 3)
    assert first.item.stream_id == "cam" and first.item.pts == 0.0
    assert first.jpeg == records[0].value
    assert out.ready[1].item.frame_size == (32, 24)  # not shrunk: the image's own size


def test_frames_past_their_budget_are_stale() -> None:
    records = [frame(0, NOW - 2.5, 2000), frame(1, NOW - 1.5, 2000), frame(2, NOW - 99.0)]
    out = triage(records, NOW)
    assert [(s.message.seq, s.reason) for s in out.stale] == [(0, Dropped.LATENCY_BUDGET)]
    assert [r.item.seq for r in out.ready] == [1, 2]  # no budget: never stale


def test_unreadable_records_are_bad_with_reason_and_detail() -> None:
    good = frame(0, NOW)
    no_headers = Record(b"cam", good.value, None)
    no_key = Record(None, good.value, good.headers)
    not_jpeg = Record(good.key, b"\xff\xd8 not really a jpeg", good.headers)
    assert good.headers is not None
    lying = [(k, b"48" if k == "width" else v) for k, v in good.headers]
    bad_size = Record(good.key, good.value, lying)
    out = triage([no_headers, good, no_key, not_jpeg, bad_size], NOW)
    assert [r.item.seq for r in out.ready] == [0]
    assert [(b.record, b.reason) for b in out.bad] == [
        (no_headers, DeadLetter.MALFORMED),
        (no_key, DeadLetter.MALFORMED),
        (not_jpeg, DeadLetter.BAD_IMAGE),
        (bad_size, DeadLetter.BAD_IMAGE),
    ]
    assert "missing header 'v'" in out.bad[0].detail
    assert "no key" in out.bad[1].detail
    assert "not a jpeg image" in out.bad[2].detail
    assert "headers say 48x24" in out.bad[3].detail


def test_a_stale_frame_with_a_broken_image_is_only_stale() -> None:
    old = frame(0, NOW - 5.0, 1000)
    broken = Record(old.key, b"garbage", old.headers)
    out = triage([broken], NOW)
    assert len(out.stale) == 1 and not out.bad and not out.ready
