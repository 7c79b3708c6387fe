"""The stream-status hash codec (``StreamStatus``): what the ingest worker writes is what the
API reads, and a malformed hash degrades instead of failing."""

from __future__ import annotations

import pytest

from services.common.health import Reason, State, StatusDecodeError, StreamHealth, StreamStatus

FULL = StreamStatus(
    state=State.BACKOFF.value,
    reason=Reason.UNREACHABLE.value,
    message="cannot open rtsp://u:p@cam/x: refused",
    reconnects=3,
    frames=120,
    last_frame_at=1764000000.125,
    fps=4.75,
    seq=119,
    worker="ingest-1",
    updated_at=1764000001.5,
)


def as_redis(fields: dict[str, str]) -> dict[bytes, bytes]:
    """The hash as HGETALL returns it from a client without decode_responses."""
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_round_trip_text_and_bytes() -> None:
    encoded = FULL.encode()
    assert all(isinstance(v, str) for v in encoded.values())
    assert encoded["last_frame_at"] == "1764000000.125" and encoded["fps"] == "4.75"
    assert StreamStatus.decode(encoded) == FULL
    assert StreamStatus.decode(as_redis(encoded)) == FULL


def test_conventions_before_the_first_frame() -> None:
    fresh = StreamStatus(state="connecting", worker="w")
    encoded = fresh.encode()
    assert encoded["last_frame_at"] == "0.000" and encoded["seq"] == "-1"
    assert "updated_at" not in encoded
    assert StreamStatus.decode(encoded) == fresh


def test_empty_hash_is_no_status_and_missing_fields_take_defaults() -> None:
    assert StreamStatus.decode({}) is None
    assert StreamStatus.decode({b"reason": b"kafka"}) == StreamStatus(
        state="unknown", reason="kafka"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("reconnects", "three"), ("frames", "1.5"), ("fps", ""), ("last_frame_at", "x"), ("seq", "?")],
)
def test_a_malformed_number_keeps_only_the_state(field: str, value: str) -> None:
    raw = as_redis({**FULL.encode(), field: value})
    with pytest.raises(StatusDecodeError, match=field):
        StreamStatus.parse(raw)
    assert StreamStatus.decode(raw) == StreamStatus(state=FULL.state)


def test_bytes_that_are_not_utf8_are_replaced() -> None:
    status = StreamStatus.decode({b"state": b"running", b"message": b"bad \xff byte"})
    assert status is not None and status.state == "running"
    assert status.message == "bad \ufffd byte"


class Recorder:
    """The one call ``StreamHealth.flush`` makes that carries data: the mapping written."""

    def __init__(self) -> None:
        self.written: dict[str, str] = {}

    def pipeline(self) -> Recorder:
        return self

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.written.update(mapping)

    def expire(self, key: str, ttl: int) -> None:
        pass

    def execute(self) -> None:
        pass


def test_the_writer_writes_the_codec() -> None:
    sink = Recorder()
    health = StreamHealth(sink, "cam", "ingest-7")  # type: ignore[arg-type]
    health.frame(4, 1764000000.0)
    health.set(State.RUNNING)
    status = StreamStatus.parse(sink.written)
    assert status.state == "running" and status.worker == "ingest-7"
    assert status.seq == 4 and status.frames == 1 and status.last_frame_at == 1764000000.0
    assert status.updated_at is not None and status.updated_at > 1764000000.0
    assert status.encode() == sink.written
