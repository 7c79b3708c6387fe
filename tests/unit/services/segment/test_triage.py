"""``triage`` on plain records: what is dropped (unregistered, past its budget), what goes to
the dead-letter topic and what is segmented (the worker around it:
tests/integration/test_failures.py and test_crafted.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.frames import DeadLetter, Dropped, FrameLimits, encode_frame
from services.segment.triage import Triage, triage


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
CAMS = frozenset({"cam"})


def sort(records: list[Record], registered: frozenset[str] = CAMS) -> Triage[Record]:
    return triage(records, NOW, registered=registered)


def test_fresh_frames_are_ready_in_order_with_their_source_size() -> None:
    records = [frame(0, NOW - 1.0, 2000, frame_size=(64, 48)), frame(1, NOW - 10.0)]
    out = sort(records)
    assert not out.dropped and not out.bad
    assert [r.item.seq for r in out.ready] == [0, 1]
    first = out.ready[0]
    assert first.item.frame_size == (64, 48) and first.item.rgb.shape == (24, 32, 3)
    assert first.item.stream_id == "cam" and first.item.pts == 0.0
    assert first.jpeg == records[0].value and first.record is records[0]
    assert out.ready[1].item.frame_size == (32, 24)  # not shrunk: the image's own size


def test_frames_past_their_budget_are_stale() -> None:
    records = [frame(0, NOW - 2.5, 2000), frame(1, NOW - 1.5, 2000), frame(2, NOW - 99.0)]
    out = sort(records)
    assert [(s.message.seq, s.reason) for s in out.dropped] == [(0, Dropped.LATENCY_BUDGET)]
    assert [r.item.seq for r in out.ready] == [1, 2]  # no budget: never stale


def test_unreadable_records_are_bad_with_reason_and_detail() -> None:
    good = frame(0, NOW)
    no_headers = Record(b"cam", good.value, None)
    no_key = Record(None, good.value, good.headers)
    not_jpeg = Record(good.key, b"\xff\xd8 not really a jpeg", good.headers)
    assert good.headers is not None
    lying = [(k, b"48" if k == "width" else v) for k, v in good.headers]
    bad_size = Record(good.key, good.value, lying)
    out = sort([no_headers, good, no_key, not_jpeg, bad_size])
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
    out = sort([broken])
    assert len(out.dropped) == 1 and not out.bad and not out.ready


def with_headers(record: Record, **changes: bytes) -> Record:
    assert record.headers is not None
    return Record(record.key, record.value, list({**dict(record.headers), **changes}.items()))


def test_crafted_headers_are_bad_never_raised() -> None:
    good = frame(0, NOW)
    assert good.value is not None
    at = good.value.index(b"\xff\xc0") + 5  # the JPEG's own frame size
    bomb = Record(
        good.key, good.value[:at] + b"\x4e\x20\x4e\x20" + good.value[at + 4 :], good.headers
    )
    nan = with_headers(good, captured_at=b"nan")
    huge_seq = with_headers(good, seq=str(10**25).encode())
    huge_source = with_headers(good, frame_width=b"6000", frame_height=b"6000")
    huge_image = with_headers(good, width=b"20000", height=b"20000")
    out = triage(
        [bomb, nan, huge_seq, huge_source, huge_image, good],
        NOW,
        registered=CAMS,
        limits=FrameLimits(max_pixels=4096 * 2160),
    )
    assert [r.item.seq for r in out.ready] == [0]
    assert [(b.record, b.reason) for b in out.bad] == [
        (bomb, DeadLetter.BAD_IMAGE),
        (nan, DeadLetter.MALFORMED),
        (huge_seq, DeadLetter.MALFORMED),
        (huge_source, DeadLetter.TOO_LARGE),
        (huge_image, DeadLetter.TOO_LARGE),
    ]
    assert "DecompressionBombError" in out.bad[0].detail
    assert "source frame 6000x6000" in out.bad[3].detail


def test_frames_of_unregistered_streams_are_dropped_undecoded() -> None:
    stranger = frame(1, NOW)
    other = Record(b"stranger", b"not even an image", stranger.headers)
    out = sort([frame(0, NOW), other], registered=CAMS)
    assert [r.item.seq for r in out.ready] == [0] and not out.bad
    assert [(d.message.stream_id, d.reason) for d in out.dropped] == [
        ("stranger", Dropped.UNREGISTERED)
    ]
    # a record that does not decode is bad whether its stream is registered or not
    assert sort([Record(b"stranger", b"x", [])], registered=CAMS).bad[0].reason == "malformed"
