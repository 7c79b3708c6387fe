"""Commands that talk to the API through the SDK: ``streams`` (add, patch, ls, show, counts,
rm) and ``watch``; both need ``SEGSTREAM_API_TOKEN`` (and ``SEGSTREAM_API_URL`` when the API is not
on this machine's configured port)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from services.cli.errors import CommandError

if TYPE_CHECKING:
    from services.client import Client
    from services.common.settings import Settings


def _client(settings: Settings) -> Client:
    from services.client import Client

    if settings.api_token is None:
        raise CommandError("no API token", "set SEGSTREAM_API_TOKEN to a token the API accepts")
    url = settings.api_url or f"http://{settings.host}:{settings.api_port}"
    return Client(url, settings.api_token.get_secret_value())


def _show(stream: dict[str, Any]) -> str:
    health = stream.get("health") or {}
    state = health.get("state", "pending")
    reason = f" ({health['reason']})" if health.get("reason") else ""
    return (
        f"{stream['id']:<20} {state + reason:<26} {health.get('fps', 0):>5.1f} fps "
        f"{health.get('reconnects', 0):>3} reconnects  {stream['model']:<18} {stream['url']}"
    )


def zone_arg(text: str) -> dict[str, Any]:
    """``NAME:x1,y1,x2,y2,...[:MIN_FRACTION[:LOITER_S]]`` (normalised coordinates) as a zone
    of a stream's body; the API validates the rest (a simple polygon inside the frame)."""
    name, _, rest = text.partition(":")
    parts = rest.split(":")
    if not name or not rest or len(parts) > 3:
        raise argparse.ArgumentTypeError(
            f"{text!r}: NAME:x1,y1,x2,y2,...[:MIN_FRACTION[:LOITER_S]], coordinates in 0..1"
        )
    try:
        values = [float(v) for v in parts[0].split(",")]
        extra = [float(v) for v in parts[1:]]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the coordinates must be numbers") from None
    if len(values) % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: an x and a y for every point")
    if not all(math.isfinite(v) for v in [*values, *extra]):
        raise argparse.ArgumentTypeError(f"{text!r}: the numbers must be finite")
    zone: dict[str, Any] = {
        "name": name,
        "polygon": [values[i : i + 2] for i in range(0, len(values), 2)],
    }
    if extra:
        zone["min_fraction"] = extra[0]
    if len(extra) > 1:
        zone["loiter_s"] = extra[1]
    return zone


def line_arg(text: str) -> dict[str, Any]:
    """``NAME:x1,y1,x2,y2`` (normalised) as a line of a stream's body."""
    name, _, rest = text.partition(":")
    try:
        values = [float(v) for v in rest.split(",")]
    except ValueError:
        values = []
    if not name or len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME:x1,y1,x2,y2, coordinates in 0..1")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: the coordinates must be finite")
    return {"name": name, "a": values[:2], "b": values[2:]}


def field_name(loc: list[Any]) -> str:
    """A 422's ``loc`` as the field it names: ``["body", "zones", 1, "polygon"]`` ->
    ``zones[1].polygon``."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _geometry(args: argparse.Namespace) -> dict[str, Any]:
    """The zones and lines the options give (absent: not given)."""
    out: dict[str, Any] = {}
    if args.zone or args.no_zones:
        out["zones"] = args.zone or []
    if args.line or args.no_lines:
        out["lines"] = args.line or []
    return out


def _streams(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from services.client import ApiError

    with _client(settings) as client:
        try:
            if args.action == "ls":
                for stream in client.list_streams():
                    print(_show(stream))
            elif args.action == "show":
                print(json.dumps(client.get(args.target), indent=2))
            elif args.action == "rm":
                client.delete(args.target)
                print(f"removed {args.target}")
            elif args.action == "counts":
                print(json.dumps(client.analytics(args.target), indent=2))
            elif args.action == "patch":
                if args.target is None:
                    print("segstream streams patch: give the stream id", file=sys.stderr)
                    return 2
                changes = {
                    "fps": args.fps,
                    "latency_budget_ms": args.latency_budget_ms,
                    "max_side": args.max_side,
                    "realtime": args.realtime,
                    "loop": args.loop,
                }
                changes = {k: v for k, v in changes.items() if v is not None}
                print(_show(client.update(args.target, **changes, **_geometry(args))))
            else:
                if args.target is None:
                    print("segstream streams add: give the camera URL", file=sys.stderr)
                    return 2
                options = {
                    "fps": args.fps,
                    "latency_budget_ms": args.latency_budget_ms,
                    "max_side": args.max_side,
                    "realtime": args.realtime,
                    "loop": args.loop,
                }
                stream = client.add(
                    args.target,
                    args.model,
                    id=args.id,
                    **{k: v for k, v in options.items() if v is not None},
                    **_geometry(args),
                )
                print(_show(stream))
        except ApiError as exc:
            detail = exc.detail
            if isinstance(detail, list):
                detail = "; ".join(f"{field_name(e['loc'])}: {e['msg']}" for e in detail)
            print(f"segstream streams: {exc.status}: {detail}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(
                f"segstream streams: the API at {client.url} did not answer: {exc}", file=sys.stderr
            )
            return 1
    return 0


def _watch(settings: Settings, args: argparse.Namespace) -> int:
    from services.client import ApiError
    from services.watch import watch

    with _client(settings) as client:
        try:
            return watch(
                client,
                args.stream,
                from_id=args.from_id,
                classes=args.classes.split(",") if args.classes else None,
                count=args.count,
                render=args.render,
            )
        except ApiError as exc:
            print(f"segstream watch: {exc}", file=sys.stderr)
            return 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    streams = sub.add_parser("streams", help="register, list, show or remove camera streams")
    streams.add_argument("action", choices=["add", "patch", "ls", "show", "counts", "rm"])
    streams.add_argument(
        "target", nargs="?", help="add: the camera URL; patch, show, counts, rm: the id"
    )
    streams.add_argument("--model", default="yolact_r18_demo", help="a registered model")
    streams.add_argument("--id", help="stream id (generated by default)")
    streams.add_argument("--fps", type=float, help="frames per second to segment (5)")
    streams.add_argument(
        "--latency-budget-ms", type=int, help="drop frames older than this (5000 for cameras)"
    )
    streams.add_argument("--max-side", type=int, help="shrink frames to this shorter side")
    streams.add_argument(
        "--realtime", action="store_true", default=None, help="a file: play it as a camera"
    )
    streams.add_argument("--loop", action="store_true", default=None, help="a file: loop it")
    streams.add_argument(
        "--zone",
        action="append",
        type=zone_arg,
        metavar="NAME:x,y,x,y,...",
        help="a zone, normalised x,y points (0..1, y down), optionally :MIN_FRACTION[:LOITER_S]; "
        "repeat for more; patch: replaces the stream's zones",
    )
    streams.add_argument(
        "--line",
        action="append",
        type=line_arg,
        metavar="NAME:x1,y1,x2,y2",
        help="a counting line a -> b, normalised; forward is from its left to its right; "
        "repeat for more; patch: replaces the stream's lines",
    )
    streams.add_argument("--no-zones", action="store_true", help="patch: remove every zone")
    streams.add_argument("--no-lines", action="store_true", help="patch: remove every line")
    streams.set_defaults(func=_streams)

    watch = sub.add_parser("watch", help="print a stream's mask events as they come")
    watch.add_argument("stream", help="the stream id")
    watch.add_argument("--from-id", help="resume after this event id")
    watch.add_argument("--classes", help="only these classes (comma-separated)")
    watch.add_argument("--count", type=int, help="stop after this many events")
    watch.add_argument("--render", help="also draw the masks over the frames into this .mp4")
    watch.set_defaults(func=_watch)
