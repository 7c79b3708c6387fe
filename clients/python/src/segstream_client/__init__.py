"""segstream's Python SDK: the API's streams, and its typed events (:mod:`.events`), with a
blocking :class:`Client` and an asyncio :class:`AsyncClient` that resume subscriptions the
same way.

```
from segstream_client import Client

with Client("http://127.0.0.1:8080", token="...") as client:
    for item in client.subscribe("door", classes=["person"]):
        print(item.id, [(i.label, i.track_id, i.score) for i in item.event.instances])
```

``subscribe`` is an iterator (``AsyncClient.subscribe``: an async iterator) over the
stream's mask events that reconnects by itself (capped exponential backoff) and resumes from
the last event it yielded (before the first one, from the id the server said it reads
after: its ``{"subscribed": id}`` message), so a network blip neither loses nor repeats an
event. Errors the server reports (a bad token, an unknown stream, a bad filter) raise
:class:`ApiError` instead of being retried.
"""

from segstream_client._protocol import ApiError, Cursor, Received
from segstream_client.aio import AsyncClient
from segstream_client.client import Client
from segstream_client.events import (
    AnalyticsEvent,
    DecodeError,
    Instance,
    MaskEvent,
    decode_analytics,
    decode_event,
    encode_analytics,
    encode_event,
)

__all__ = [
    "AnalyticsEvent",
    "ApiError",
    "AsyncClient",
    "Client",
    "Cursor",
    "DecodeError",
    "Instance",
    "MaskEvent",
    "Received",
    "decode_analytics",
    "decode_event",
    "encode_analytics",
    "encode_event",
]
