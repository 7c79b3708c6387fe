"""Zones and lines of a stream through the API, served in process: a bad definition answers
422 naming the field (``["body", "zones", 1, "polygon"]``) on create and on PATCH, and nothing
is written; a good one passes validation (it then meets the unreachable Redis of these tests,
503, which only a valid request reaches). The counts of ``GET /v1/streams/{id}/analytics``
from tracking documents of every shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.api.streams import counts_of
from services.common.streams import LineSpec, StreamSpec, ZoneSpec, decode_spec
from tests.unit.services.api.test_errors import AUTH, DOOR, MODEL, MemoryTable, served

SQUARE = [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4]]
BOWTIE = [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]]  # crosses itself


@pytest.fixture
def table() -> MemoryTable:
    return MemoryTable(DOOR)


@pytest.fixture
def client(table: MemoryTable) -> Iterator[TestClient]:
    with served(table) as c:
        yield c


def zone(name: str = "door", polygon: object = SQUARE, **more: object) -> dict[str, object]:
    return {"name": name, "polygon": polygon, **more}


def line(name: str = "gate", a: object = (0.1, 0.5), b: object = (0.9, 0.5)) -> dict[str, object]:
    return {"name": name, "a": a, "b": b}


BAD = [
    ({"zones": [zone(), zone("b", BOWTIE)]}, ["zones", 1, "polygon"], "simple"),
    (
        {"zones": [zone(polygon=[[0.1, 0.1], [1.2, 0.1], [0.4, 0.4]])]},
        ["zones", 0, "polygon", 1, 0],
        "less than or equal to 1",
    ),
    (
        {"zones": [zone(polygon=[[0.1, 0.1], [-0.1, 0.1], [0.4, 0.4]])]},
        ["zones", 0, "polygon", 1, 0],
        "greater than or equal to 0",
    ),
    ({"zones": [zone(polygon=SQUARE[:2])]}, ["zones", 0, "polygon"], "at least 3"),
    (
        {"zones": [zone(polygon=[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])]},
        ["zones", 0, "polygon"],
        "no area",
    ),
    (
        {"zones": [zone(polygon=[[i / 100, (i % 2) / 10] for i in range(70)])]},
        ["zones", 0, "polygon"],
        "at most 64",
    ),
    ({"zones": [zone(), zone()]}, ["zones"], "zones[1].name"),
    ({"zones": [zone("a b")]}, ["zones", 0, "name"], "pattern"),
    ({"zones": [zone("x" * 65)]}, ["zones", 0, "name"], "pattern"),
    ({"zones": [zone(min_fraction=1.5)]}, ["zones", 0, "min_fraction"], "less than or equal"),
    ({"zones": [zone(loiter_s=0)]}, ["zones", 0, "loiter_s"], "greater than 0"),
    ({"zones": [zone(color="red")]}, ["zones", 0, "color"], "Extra inputs"),
    ({"zones": [zone(f"z{i}") for i in range(17)]}, ["zones"], "at most 16"),
    ({"lines": [line(a=(0.5, 0.5), b=(0.5, 0.5))]}, ["lines", 0, "b"], "needs a length"),
    (
        {"lines": [line(), line("g2", b=(0.9, 1.5))]},
        ["lines", 1, "b", 1],
        "less than or equal to 1",
    ),
    ({"lines": [line(), line()]}, ["lines"], "lines[1].name"),
    ({"lines": [line(f"l{i}") for i in range(17)]}, ["lines"], "at most 16"),
    ({"lines": [line(a=(0.1, 0.2, 0.3))]}, ["lines", 0, "a"], "at most 2"),
]


def first_error(response: object) -> dict[str, object]:
    body = json.loads(response.text)  # type: ignore[attr-defined]
    error: dict[str, object] = body["detail"][0]
    return error


@pytest.mark.parametrize(("extra", "loc", "message"), BAD)
def test_bad_definitions_on_create_answer_422_naming_the_field(
    client: TestClient,
    table: MemoryTable,
    extra: dict[str, object],
    loc: list[object],
    message: str,
) -> None:
    body = {"id": "new", "url": "rtsp://cam/new", "model": MODEL, **extra}
    response = client.post("/v1/streams", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = first_error(response)
    assert error["loc"] == ["body", *loc]
    assert message in str(error["msg"])
    assert table.specs == {"door": DOOR}


@pytest.mark.parametrize(("extra", "loc", "message"), BAD)
def test_bad_definitions_on_patch_answer_422_naming_the_field(
    client: TestClient,
    table: MemoryTable,
    extra: dict[str, object],
    loc: list[object],
    message: str,
) -> None:
    response = client.patch("/v1/streams/door", json=extra, headers=AUTH)
    assert response.status_code == 422, response.text
    error = first_error(response)
    assert error["loc"] == ["body", *loc]
    assert message in str(error["msg"])
    assert table.specs == {"door": DOOR}


def test_a_point_outside_the_frame_is_the_only_error(client: TestClient) -> None:
    """Three points with one outside the frame: the error names that point, and does not
    add that the polygon has fewer than 3 points (it has 3)."""
    polygon = [[0.1, 0.1], [1.2, 0.1], [0.4, 0.4]]
    response = client.patch(
        "/v1/streams/door", json={"zones": [zone(polygon=polygon)]}, headers=AUTH
    )
    assert response.status_code == 422
    errors = json.loads(response.text)["detail"]
    assert [e["loc"] for e in errors] == [["body", "zones", 0, "polygon", 1, 0]], errors
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ZoneSpec"]
    assert schema["properties"]["polygon"]["minItems"] == 3


def test_null_zones_on_patch_are_refused(client: TestClient) -> None:
    response = client.patch("/v1/streams/door", json={"zones": None}, headers=AUTH)
    assert response.status_code == 422
    assert first_error(response)["loc"] == ["body", "zones"]


def test_good_definitions_pass_validation(client: TestClient) -> None:
    body = {
        "id": "new",
        "url": "rtsp://cam/new",
        "model": MODEL,
        "zones": [zone(), zone("closed", [*SQUARE, SQUARE[0]], min_fraction=0.2, loiter_s=30)],
        "lines": [line()],
    }
    assert client.post("/v1/streams", json=body, headers=AUTH).status_code == 503
    assert client.patch("/v1/streams/door", json={"lines": []}, headers=AUTH).status_code == 503


def test_spec_round_trip_and_segcore_objects() -> None:
    spec = StreamSpec(
        id="cam",
        url="rtsp://cam/x",
        model=MODEL,
        zones=[ZoneSpec(name="a", polygon=[*SQUARE, SQUARE[0]], loiter_s=5)],
        lines=[LineSpec(name="g", a=(0.0, 0.5), b=(1.0, 0.5))],
    )
    assert decode_spec(*spec.to_record()) == spec
    assert len(spec.zones[0].polygon) == 4  # the closing point is dropped
    (z,) = spec.zone_objects()
    assert (z.name, z.polygon[1], z.min_fraction, z.loiter_s) == ("a", (0.4, 0.1), 0.5, 5)
    (x,) = spec.line_objects()
    assert (x.name, x.a, x.b) == ("g", (0.0, 0.5), (1.0, 0.5))
    old = json.dumps({"id": "cam", "url": "/a", "model": "m"}).encode()
    assert decode_spec(b"cam", old).zones == ()  # records written before zones existed


def test_a_bad_record_names_the_zone_field() -> None:
    record = json.dumps({"id": "cam", "url": "/a", "model": "m", "zones": [zone("z", BOWTIE)]})
    with pytest.raises(ValueError, match=r"zones\.0\.polygon"):
        decode_spec(b"cam", record.encode())
    with pytest.raises(ValidationError):
        LineSpec(name="g", a=(0.1, 0.1), b=(0.1, 0.1))


SPEC = StreamSpec(
    id="cam",
    url="rtsp://cam/x",
    model=MODEL,
    zones=[ZoneSpec(name="a", polygon=SQUARE), ZoneSpec(name="b", polygon=SQUARE)],
    lines=[LineSpec(name="g", a=(0.0, 0.5), b=(1.0, 0.5))],
)


def test_counts_of_a_tracking_document() -> None:
    doc = {
        "v": 1,
        "last": "1764000000123-4",
        "counts": {
            "zones": {"a": {"occupancy": 2, "entries": 5, "exits": 3}, "gone": {"occupancy": 1}},
            "lines": {"g": {"forward": 7, "backward": 1}},
        },
    }
    out = counts_of(SPEC, json.dumps(doc).encode())
    assert out.model_dump() == {
        "stream_id": "cam",
        "last": "1764000000123-4",
        "zones": {
            "a": {"occupancy": 2, "entries": 5, "exits": 3},
            "b": {"occupancy": 0, "entries": 0, "exits": 0},  # not counted yet
        },
        "lines": {"g": {"forward": 7, "backward": 1}},
    }


@pytest.mark.parametrize(
    "document",
    [
        None,
        b"",
        b"{nope",
        b"[1]",
        b'{"counts": 3}',
        b'{"counts": {"zones": {"a": {"entries": "x"}}}}',
        b"[" * 100_000 + b"]" * 100_000,  # nested past the JSON parser's depth
    ],
)
def test_counts_of_no_or_a_bad_document_are_zeros(document: bytes | None) -> None:
    out = counts_of(SPEC, document)
    assert out.last is None
    assert out.zones["a"].entries == 0 and out.lines["g"].forward == 0


def test_the_counts_route_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/streams/{stream_id}/analytics"]
    assert client.get("/v1/streams/nope/analytics", headers=AUTH).status_code == 404
    assert client.get("/v1/streams/door/analytics", headers=AUTH).status_code == 503
