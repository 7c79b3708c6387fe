"""A subscriber using nothing but the SDK, run by test_sdk_venv.py in a virtual environment
that has segstream-client and its dependencies alone.

    python sdk_subscriber.py URL TOKEN STREAM FROM_ID SYNC_COUNT ASYNC_COUNT

Prints JSON lines: what the environment holds, then ``SYNC_COUNT`` events read with the
blocking client after ``FROM_ID``, a ``{"sync": "done"}`` line, ``ASYNC_COUNT`` more read
with the asyncio client after the last event the blocking one saw, then the errors both
raise for a stream that does not exist.
"""

import asyncio
import contextlib
import importlib.util
import json
import sys

import segstream_client
from segstream_client import ApiError, AsyncClient, Client, MaskEvent, Received

url, token, stream, from_id = sys.argv[1:5]
sync_count, async_count = int(sys.argv[5]), int(sys.argv[6])


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def row(mode: str, item: Received[MaskEvent]) -> None:
    event = item.event
    say(
        mode=mode,
        id=item.id,
        type=type(event).__name__,
        seq=event.seq,
        labels=[i.label for i in event.instances],
        tracks=[i.track_id for i in event.instances],
    )


say(
    module=segstream_client.__file__,
    found={m: importlib.util.find_spec(m) is not None for m in ("torch", "segcore", "services")},
)

last = from_id
with Client(url, token) as client:
    for n, item in enumerate(client.subscribe(stream, from_id=from_id, receive_timeout_s=60), 1):
        row("sync", item)
        last = item.id
        if n == sync_count:
            break
say(sync="done")


async def main() -> None:
    async with AsyncClient(url, token) as client:
        n = 0
        events = client.subscribe(stream, from_id=last, receive_timeout_s=60)
        async with contextlib.aclosing(events):
            async for item in events:
                row("async", item)
                n += 1
                if n == async_count:
                    break
        try:
            async for _ in client.subscribe("no-such-stream"):
                pass
        except ApiError as exc:
            say(async_error=exc.status)


asyncio.run(main())
try:
    with Client(url, token) as client:
        next(iter(client.subscribe("no-such-stream")))
except ApiError as exc:
    say(sync_error=exc.status)
