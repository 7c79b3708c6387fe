"""Kafka topics of segstream and factories for kafka-python clients.

Topic names are contracts (see docs/architecture.md): ``segstream.streams`` is the compacted
stream registry (key = stream id, tombstone = delete), ``segstream.frames.<model>`` carries
encoded frames keyed by stream id, and ``segstream.dlq`` holds what could not be parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.common.settings import Settings

REGISTRY_TOPIC = "segstream.streams"
DLQ_TOPIC = "segstream.dlq"
_FRAMES_PREFIX = "segstream.frames."
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


def frames_topic(model: str) -> str:
    """Topic of the frames bound for ``model``'s segmentation workers."""
    if not _MODEL_NAME.match(model):
        raise ValueError(f"model name {model!r} cannot name a topic: use letters, digits, _ or -")
    return _FRAMES_PREFIX + model


def named(settings: Settings, name: str) -> str:
    """A topic or consumer-group name in the deployment's namespace (as is without one)."""
    return f"{settings.namespace}.{name}" if settings.namespace else name


def registry_topic(settings: Settings) -> str:
    return named(settings, REGISTRY_TOPIC)


def dlq_topic(settings: Settings) -> str:
    return named(settings, DLQ_TOPIC)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def registry_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(
        registry_topic(settings),
        settings.registry_partitions,
        {
            "cleanup.policy": "compact",
            # Compact soon after a change so a restarted worker reads little history.
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
            "delete.retention.ms": "86400000",
        },
    )


def dlq_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(
        dlq_topic(settings),
        1,
        {"retention.ms": str(7 * 86400000), "max.message.bytes": str(settings.frame_max_bytes)},
    )


def frames_spec(settings: Settings, model: str) -> TopicSpec:
    return TopicSpec(
        named(settings, frames_topic(model)),
        settings.frames_partitions,
        {
            "max.message.bytes": str(settings.frame_max_bytes),
            # Frames are worthless after their latency budget; keep an hour for replays.
            "retention.ms": "3600000",
            "compression.type": "producer",
        },
    )


def base_topics(settings: Settings) -> list[TopicSpec]:
    """Topics every deployment has, whatever models it serves."""
    return [registry_spec(settings), dlq_spec(settings)]


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": "segstream-admin",
        "request_timeout_ms": 15000,
    }
    kwargs.update(overrides)
    return KafkaAdminClient(**kwargs)


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "max_request_size": settings.frame_max_bytes,
        "acks": "all",
        "linger_ms": 5,
    }
    kwargs.update(overrides)
    return KafkaProducer(**kwargs)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "max_partition_fetch_bytes": settings.frame_max_bytes,
        "fetch_max_bytes": 4 * settings.frame_max_bytes,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    kwargs.update(overrides)
    return KafkaConsumer(*topics, **kwargs)


def ensure_topics(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    existing = set(admin.list_topics())
    missing = [s for s in specs if s.name not in existing]
    created: list[str] = []
    for spec in missing:
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=1,
                        topic_configs=dict(spec.config),
                    )
                ]
            )
            created.append(spec.name)
        except TopicAlreadyExistsError:
            pass
    return created


def bootstrap_topics(settings: Settings, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet with a short-lived admin client;
    return the names created (the one way every process and tool bootstraps topics)."""
    admin = make_admin(settings)
    try:
        return ensure_topics(admin, specs)
    finally:
        admin.close()
