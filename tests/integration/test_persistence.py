"""Redis persistence, with a Redis of each test's own (services.infra's ``RedisServer``, as
``segstream infra`` runs it; the session's Redis, which other tests use, is never restarted):
a restart keeps the mask events and the streams' status hashes (append-only file), and a
stream in a terminal state shows it again when a Redis that lost its data comes back (the
ingest worker writes a terminal status again every few seconds)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.events import MaskEvent, encode_event
from services.common.health import Reason, State, StreamHealth
from services.common.redis import EventPublisher, entry_id, make_redis, masks_key, status_key
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.infra.process import free_port
from services.infra.redis_server import RedisServer
from tests.integration.workers import Worker, events, status, wait_for, wait_state

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"


@dataclass
class OwnRedis:
    settings: Settings  # the session's Kafka under the test's namespace, this Redis
    server: RedisServer

    def restart(self, *, lose_data: bool = False) -> None:
        """Stop (SIGTERM: Redis writes out its append-only file), optionally delete its
        data as a server without a volume would, and start again."""
        self.server.proc.stop()
        if lose_data:
            shutil.rmtree(self.server.home / "appendonly", ignore_errors=True)
        self.server.start()
        self.server.wait_ready()


@pytest.fixture
def own_redis(ns_settings: Settings, tmp_path: Path) -> Iterator[OwnRedis]:
    settings = ns_settings.model_copy(
        update={"redis_port": free_port(), "run_dir": tmp_path / "redis-run"}
    )
    assert settings.env()["SEGSTREAM_REDIS_PORT"] == str(settings.redis_port)  # for the workers
    server = RedisServer(settings, settings.infra_dir, settings.infra_dir / "logs")
    server.start()
    try:
        server.wait_ready()
        yield OwnRedis(settings, server)
    finally:
        server.proc.stop()


def mask_event(stream_id: str, seq: int, captured_at: float) -> MaskEvent:
    return MaskEvent(
        stream_id=stream_id,
        seq=seq,
        pts=seq / 5,
        captured_at=captured_at,
        published_at=captured_at + 0.2,
        model=MODEL,
        width=320,
        height=240,
        instances=(),
    )


def test_a_redis_restart_keeps_events_and_statuses(own_redis: OwnRedis) -> None:
    settings = own_redis.settings
    client = make_redis(settings)
    try:
        # events through the segment worker's publish path, statuses through the ingest
        # worker's writer
        publisher = EventPublisher(client, settings.redis_stream_maxlen)
        start = time.time()
        batch = [mask_event("cam", seq, start + seq / 5) for seq in range(20)]
        payloads = [("cam", entry_id(e.captured_at, e.seq), encode_event(e)) for e in batch]
        assert publisher.publish(payloads) == [True] * len(payloads)
        failed = StreamHealth(client, "bad", "ingest-1")
        failed.set(State.ERROR, Reason.NOT_VIDEO, "the source answered 404")
        running = StreamHealth(client, "cam", "ingest-1")
        running.set(State.RUNNING)
        for seq in range(20):
            running.frame(seq, start + seq / 5)
        running.flush(force=True)
        before = (events(client, "cam"), status(client, "bad"), status(client, "cam"))
        assert len(before[0]) == 20 and before[1]["state"] == "error"
        assert before[2]["seq"] == "19"
    finally:
        client.close()

    own_redis.restart()

    client = make_redis(settings)
    try:
        after = (events(client, "cam"), status(client, "bad"), status(client, "cam"))
        assert after == before
        # the restarted server is still the one that keeps its data
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()


def test_a_stopped_streams_status_comes_back_after_redis_lost_it(
    own_redis: OwnRedis, tmp_path: Path, unique: str
) -> None:
    """A stream whose runner ended (a missing file) and one that never had a runner (no such
    model): both statuses come back, with their reasons, after Redis lost them."""
    settings = own_redis.settings
    ingest = Worker(settings, ["ingest"], tmp_path, "ingest")
    gone, nameless = f"gone-{unique}", f"nameless-{unique}"
    try:
        put_stream(settings, StreamSpec(id=gone, url=str(tmp_path / "gone.mp4"), model=MODEL))
        put_stream(settings, StreamSpec(id=nameless, url=str(tmp_path / "x.mp4"), model="none"))
        client = make_redis(settings)
        try:
            stopped = {
                gone: wait_state(client, gone, {"error", "finished"}, 120),
                nameless: wait_state(client, nameless, {"error"}, 60),
            }
            assert stopped[nameless]["reason"] == Reason.UNKNOWN_MODEL
            client.set("sentinel", "1")
        finally:
            client.close()

        own_redis.restart(lose_data=True)

        client = make_redis(settings)
        try:
            assert client.get("sentinel") is None  # the data is gone: nothing was kept
            for stream_id, before in stopped.items():
                again = wait_state(client, stream_id, {before["state"]}, 60)
                for field in ("reason", "message", "worker"):
                    assert again[field] == before[field], (stream_id, field)
                assert client.ttl(status_key(stream_id)) > 0  # expires if nobody owns it
                assert not client.exists(masks_key(stream_id))
        finally:
            client.close()
        assert ingest.alive()
    finally:
        ingest.stop(timeout=10)


def test_the_status_of_a_stream_that_fails_is_rewritten_within_seconds(
    own_redis: OwnRedis,
) -> None:
    """The ingest worker's periodic refresh on its own, without a worker process: a lost
    terminal status is written again once ``rewrite_s`` has passed."""
    client = make_redis(own_redis.settings)
    try:
        health = StreamHealth(client, "file", "ingest-1", rewrite_s=1.0)
        health.set(State.FINISHED)
        client.delete(status_key("file"))
        again = wait_for(
            lambda: (health.refresh(), status(client, "file"))[1], 10, "the status rewritten"
        )
        assert again["state"] == "finished" and again["worker"] == "ingest-1"
    finally:
        client.close()
