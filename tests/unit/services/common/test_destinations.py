"""The destination policy without servers: denied and allowed networks, the service's own
ports, resolved names checked address by address, URLs pinned to the checked address, file
roots; and the ingest's and the API's use of it (a refused source is never connected to)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import threading
from pathlib import Path

import av.error
import pytest
from fastapi import HTTPException
from pydantic import ValidationError

from services.api.streams import check_destination
from services.common.destinations import (
    Address,
    DestinationPolicy,
    ForbiddenDestination,
    Resolver,
    Target,
    resolve,
    service_ports,
)
from services.common.health import Reason
from services.common.settings import Settings
from services.ingest.source import FIXED_MESSAGES, SourceError, classify, open_source


def ip(text: str) -> Address:
    return ipaddress.ip_address(text)


def policy(resolver: Resolver = resolve, **changes: object) -> DestinationPolicy:
    settings = Settings(**changes)  # type: ignore[arg-type]
    return dataclasses.replace(DestinationPolicy.from_settings(settings), resolver=resolver)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",  # loopback in IPv4-mapped dress
        "::ffff:169.254.169.254",
    ],
)
def test_the_defaults_deny_loopback_link_local_multicast_and_metadata(address: str) -> None:
    assert policy().refusal(ip(address), 554) is not None


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "192.168.1.64", "172.16.0.9", "8.8.8.8", "fd12::5"]
)
def test_the_defaults_allow_private_and_public_cameras(address: str) -> None:
    assert policy().refusal(ip(address), 554) is None


def test_the_more_specific_network_wins() -> None:
    loopback_ok = policy(source_allowed_networks=["127.0.0.0/8"])
    assert loopback_ok.refusal(ip("127.0.0.1"), 554) is None
    assert loopback_ok.refusal(ip("169.254.169.254"), 80) is not None
    everything = policy(source_allowed_networks=["0.0.0.0/0"])
    assert everything.refusal(ip("169.254.169.254"), 80) is not None  # more specific denial
    one_net = policy(source_denied_networks=["0.0.0.0/0"], source_allowed_networks=["10.1.0.0/16"])
    assert one_net.refusal(ip("10.1.2.3"), 554) is None
    assert "0.0.0.0/0" in str(one_net.refusal(ip("10.2.0.1"), 554))
    assert one_net.refusal(ip("8.8.8.8"), 554) is not None
    no_private = policy(source_denied_networks=["10.0.0.0/8"])
    assert "10.0.0.0/8" in str(no_private.refusal(ip("10.1.2.3"), 554))


def test_the_service_ports_are_denied_on_every_address_unless_allowed() -> None:
    settings = Settings(
        redis_port=16379,
        metrics_port=0,
        kafka_bootstrap="kafka-0.kafka:19092,kafka-1.kafka:19093",
        redis_url="redis://:pw@redis:6380/0",
        source_allowed_networks=["127.0.0.0/8"],
    )
    ports = service_ports(settings)
    assert {16379, 9092, 9093, 8080, 9090, 9400, 9401, 9402, 19092, 19093, 6380} <= ports
    assert 0 not in ports
    loopback = DestinationPolicy.from_settings(settings)
    assert "16379" in str(loopback.refusal(ip("127.0.0.1"), 16379))
    assert loopback.refusal(ip("10.0.0.5"), 8080) is not None
    assert loopback.refusal(ip("127.0.0.1"), 8554) is None
    lifted = policy(source_allowed_ports=[8080])
    assert lifted.refusal(ip("10.0.0.5"), 8080) is None


def test_settings_refuse_a_network_that_is_not_one() -> None:
    with pytest.raises(ValidationError, match="source_denied_networks"):
        Settings(source_denied_networks=["10.0.0.0/33"])


def test_settings_read_the_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(source_allowed_networks=["127.0.0.0/8"], source_allowed_ports=[8080])
    for name, value in settings.env().items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.source_allowed_networks == ["127.0.0.0/8"]
    assert again.source_allowed_ports == [8080]


def fixed(*addresses: str) -> Resolver:
    def resolver(host: str, port: int | None) -> list[Address]:
        return [ip(a) for a in addresses]

    return resolver


def test_every_resolved_address_is_checked() -> None:
    with pytest.raises(ForbiddenDestination, match=r"169\.254\.169\.254"):
        policy(resolver=fixed("10.0.0.7", "169.254.169.254")).connect("rtsp://cam.example/x")
    with pytest.raises(ForbiddenDestination, match=r"127\.0\.0\.1"):
        policy().connect("http://localhost:8000/x")  # the system resolver's answer
    with pytest.raises(OSError):
        policy().connect("rtsp://no-such-host.invalid/x")


def test_rtsp_and_http_connect_to_the_checked_addresses() -> None:
    rtsp = policy(resolver=fixed("10.0.0.7")).connect("rtsp://u:p%40w@cam.example:8554/live?a=1")
    assert rtsp == [("rtsp://u:p%40w@10.0.0.7:8554/live?a=1", {})]
    http = policy(resolver=fixed("fd12::5", "10.0.0.7")).connect(
        "http://cam.example/hls/index.m3u8"
    )
    assert http == [  # every address, in the resolver's order
        ("http://[fd12::5]/hls/index.m3u8", {"headers": "Host: cam.example\r\n"}),
        ("http://10.0.0.7/hls/index.m3u8", {"headers": "Host: cam.example\r\n"}),
    ]
    https = policy(resolver=fixed("10.0.0.7", "10.0.0.8")).connect("https://cam.example/x.m3u8")
    assert https == [("https://cam.example/x.m3u8", {})]  # TLS needs the name
    literal = policy().connect("rtsp://10.0.0.8/x")
    assert literal == [("rtsp://10.0.0.8/x", {})]


def test_a_target_needs_a_host_and_a_valid_port() -> None:
    assert Target.of("rtsp://cam/x").port == 554 and Target.of("https://cam/x").port == 443
    with pytest.raises(ForbiddenDestination):
        Target.of("rtsp://cam:99999/x")
    with pytest.raises(ForbiddenDestination):
        Target.of("rtsp:///x")


def test_files_live_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.mp4").write_bytes(b"x")
    (root / "passwd").symlink_to("/etc/passwd")
    inside = DestinationPolicy(file_root=root)
    assert inside.file_path(str(root / "sub" / "a.mp4")) == (root / "sub" / "a.mp4").resolve()
    assert inside.file_path("sub/a.mp4") == (root / "sub" / "a.mp4").resolve()
    assert inside.file_path(f"file://{root}/sub/../sub/a.mp4").name == "a.mp4"
    for outside in ("/etc/passwd", "/etc/shadow", f"{root}/../x.mp4", "../x", str(root / "passwd")):
        with pytest.raises(ForbiddenDestination, match="outside the file root"):
            inside.file_path(outside)
    with pytest.raises(ForbiddenDestination, match="file_root"):
        DestinationPolicy().file_path(str(root / "sub" / "a.mp4"))


def test_the_worker_never_connects_to_a_denied_address() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(SourceError) as err:
            open_source(f"http://localhost:{port}/x", destinations=policy(), open_timeout_s=2)
        assert err.value.reason == Reason.FORBIDDEN_DESTINATION and not err.value.retry
        fixed_text = FIXED_MESSAGES[Reason.FORBIDDEN_DESTINATION]
        assert err.value.status_message == fixed_text
        assert "127.0.0.1" in str(err.value)  # for the worker's debug log
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody knocked
    finally:
        listener.close()


def test_the_worker_tries_each_checked_address_and_keeps_the_host_name() -> None:
    """The first address refuses; the second gets the request, with the URL's name as Host."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    heard: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            heard.append(conn.recv(4096))
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    loopback = policy(fixed("127.0.0.2", "127.0.0.1"), source_allowed_networks=["127.0.0.0/8"])
    try:
        with pytest.raises(SourceError) as err:
            open_source(f"http://cam.test:{port}/x.m3u8", destinations=loopback, open_timeout_s=5)
        thread.join(10)
    finally:
        listener.close()
    assert err.value.reason == Reason.NOT_VIDEO  # the 404 of the second address
    assert heard and f"Host: cam.test:{port}\r\n".encode() in heard[0], heard


def test_the_worker_opens_files_under_the_root_only(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        open_source("/etc/passwd", destinations=DestinationPolicy(file_root=tmp_path))
    assert err.value.reason == Reason.FORBIDDEN_DESTINATION and not err.value.retry
    with pytest.raises(SourceError) as missing:
        open_source("gone.mp4", destinations=DestinationPolicy(file_root=tmp_path))
    assert missing.value.reason == Reason.NO_SUCH_FILE


def test_network_errors_show_their_reason_not_the_targets_words() -> None:
    forbidden = classify(
        av.error.HTTPForbiddenError(-858797304, "Server returned 403 Forbidden (access denied)"),
        "http://u:pw@169.254.169.254/latest",
        live=True,
        opening=True,
    )
    assert forbidden.reason == Reason.NOT_VIDEO
    assert forbidden.status_message == FIXED_MESSAGES[Reason.NOT_VIDEO]
    assert "403" in str(forbidden) and "pw" not in str(forbidden)  # for the debug log
    eof = classify(
        av.error.EOFError(541478725, "End of file"), "rtsp://h:6379", live=True, opening=False
    )
    assert eof.reason == Reason.DISCONNECTED and "End of file" not in eof.status_message
    local = classify(
        av.error.EOFError(541478725, "End of file"), "/a.mp4", live=False, opening=False
    )
    assert "End of file" in local.status_message  # a file's own words stay: the operator's


def refused(url: str, **changes: object) -> str:
    with pytest.raises(HTTPException) as err:
        asyncio.run(check_destination(policy(**changes), url))  # type: ignore[arg-type]
    assert err.value.status_code == 422
    return str(err.value.detail)


def test_the_api_refuses_denied_destinations_naming_the_url(tmp_path: Path) -> None:
    detail = refused("http://169.254.169.254/latest/meta-data/")
    assert "http://169.254.169.254/latest/meta-data/" in detail and "url" in detail
    assert "pw" not in refused("rtsp://admin:pw@localhost:554/x")  # a name, resolved
    assert "6379" in refused("rtsp://127.0.0.1:6379/", source_allowed_networks=["127.0.0.0/8"])
    assert "/etc/passwd" in refused("/etc/passwd", file_root=tmp_path)
    asyncio.run(check_destination(policy(), "rtsp://10.1.2.3/live"))
    asyncio.run(check_destination(policy(), "rtsp://no-such-host.invalid/x"))  # the worker checks
    (tmp_path / "a.mp4").write_bytes(b"x")
    asyncio.run(check_destination(policy(file_root=tmp_path), str(tmp_path / "a.mp4")))
