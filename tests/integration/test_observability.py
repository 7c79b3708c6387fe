"""The dashboards and rules of deploy/ against the real processes: every metric name they use
is one the API, ingest and segment processes export, and every dashboard query, evaluated by
Debian's Prometheus scraping those processes with the rules loaded, returns data.

One pipeline for the module: the API in a thread, an ingest and a segment worker as
processes, a looping real-time file stream (its backlog older than its latency budget before
the segment worker starts, so frames are dropped), a camera that cannot be reached (backoff,
reconnects), a zone and a counting line on the flowing stream (analytics), a malformed record
on the frames topic (dead-lettered), and one WebSocket subscription; and a Prometheus of this
module's own (own port, config and storage) built from deploy/prometheus/prometheus.yml,
scraping every second.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from websockets.sync.client import connect

from segcore.data import synthetic
from services.common.kafka import frames_spec, make_producer
from services.common.metrics import exposition_names, sample_value
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import LineSpec, StreamSpec, ZoneSpec, put_stream
from services.infra.process import free_port
from tests.deploy.monitoring import (
    PROMETHEUS,
    SYNTHETIC,
    load_yaml,
    recorded_names,
    rules,
    substitute,
    targets,
    used_names,
)
from tests.integration.api_server import READ_TOKEN, ApiServer, api_settings
from tests.integration.workers import Worker, wait_events, wait_for

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
RATE_INTERVAL = "30s"
# Panels whose query may be empty here, and why.
GPU_ONLY = {
    ("segment.json", "GPU memory"): "segstream_gpu_memory_bytes is set by segment workers only "
    "where torch.cuda.is_available()",
}
# Exported names that have no sample in this run, and why (each is declared by every process).
NO_SAMPLES = {
    "segstream_duplicates_total": "counted only for a frame redelivered after its event was "
    "published (a worker killed between publish and commit)",
}
if not torch.cuda.is_available():
    NO_SAMPLES["segstream_gpu_memory_bytes"] = GPU_ONLY[("segment.json", "GPU memory")]


@dataclass
class Pipeline:
    api: ApiServer
    ingest: Worker
    segment: Worker
    stream: str  # the file stream that flows
    dead: str  # the camera nobody answers for
    prometheus: str  # base URL

    @property
    def segment_target(self) -> str:
        return f"127.0.0.1:{self.segment.metrics_port}"

    def expositions(self) -> dict[str, str]:
        return {
            "api": httpx.get(f"{self.api.url}/metrics", timeout=10).text,
            "ingest": self.ingest.metrics(),
            "segment": self.segment.metrics(),
        }


class Prometheus:
    """Debian's Prometheus on a free port, with deploy/prometheus/prometheus.yml's jobs and
    rule files, scraping ``targets`` (job -> host:port) every second."""

    def __init__(self, home: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = load_yaml(PROMETHEUS / "prometheus.yml")
        config["global"] = {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        }
        config["rule_files"] = [str((PROMETHEUS / path).resolve()) for path in config["rule_files"]]
        targets = {**targets, "prometheus": f"127.0.0.1:{self.port}"}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        home.mkdir(parents=True, exist_ok=True)
        (home / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.log_path = home / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector of ``expr`` now (a failed query fails the test, naming it)."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"{expr}: {body.get('error', response.text)}"
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return [{"metric": {}, "value": result}]
    return list(result)


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def scraped(worker: Worker, name: str, **labels: str) -> float:
    try:
        return sample_value(worker.metrics(), name, **labels)
    except (urllib.error.URLError, ConnectionError):
        return 0.0  # not serving yet


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "camera.mp4"
    synthetic.write_video(path, seed=17, num_frames=45, size=(240, 320), fps=15)
    return path


@pytest.fixture(scope="module")
def pipeline(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, video: Path
) -> Iterator[Pipeline]:
    unique = uuid.uuid4().hex[:12]
    ns = settings.model_copy(update={"namespace": f"t{unique}"})
    home = tmp_path_factory.mktemp("observability")
    workers: list[Worker] = []
    prometheus: Prometheus | None = None
    stream, dead = f"cam-{unique}", f"dead-{unique}"
    with ApiServer(api_settings(ns)) as api:
        try:
            ingest = Worker(ns, ["ingest"], home, "ingest")
            workers.append(ingest)
            put_stream(
                ns,
                StreamSpec(
                    id=stream,
                    url=str(video),
                    model=MODEL,
                    fps=5,
                    realtime=True,
                    loop=True,
                    latency_budget_ms=2000,
                    # Three of scene 17's objects cross x = 0.4 in each loop: zone and line
                    # events for the analytics dashboard.
                    zones=[
                        ZoneSpec(
                            name="left", polygon=((0.0, 0.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0))
                        )
                    ],
                    lines=[LineSpec(name="gate", a=(0.4, 0.0), b=(0.4, 1.0))],
                ),
            )
            put_stream(
                ns, StreamSpec(id=dead, url=f"rtsp://127.0.0.1:{free_port()}/cam", model=MODEL)
            )
            # Three seconds of frames wait in Kafka before any segment worker exists: by the
            # time one reads them they are past their 2 s budget, and are dropped.
            wait_for(
                lambda: scraped(ingest, "segstream_frames_produced_total", model=MODEL) >= 15,
                120,
                "ingest to produce a backlog",
            )
            producer = make_producer(ns)
            try:
                topic = frames_spec(ns, MODEL).name
                producer.send(topic, key=b"junk", value=b"\x00garbage", headers=[])
                producer.flush(timeout=30)
            finally:
                producer.close()
            segment = Worker(ns, ["segment", "--model", MODEL], home, "segment")
            workers.append(segment)
            prometheus = Prometheus(
                home / "prometheus",
                {
                    "api": f"127.0.0.1:{api.settings.api_port}",
                    "ingest": f"127.0.0.1:{ingest.metrics_port}",
                    "segment": f"127.0.0.1:{segment.metrics_port}",
                },
            )
            wait_for(prometheus.ready, 60, "Prometheus")
            client = make_redis(ns)
            try:
                wait_events(client, stream, 10, 180)
            finally:
                client.close()
            ws = (
                api.url.replace("http://", "ws://")
                + f"/v1/streams/{stream}/events?access_token={READ_TOKEN}"
            )
            with connect(ws) as socket:
                assert "subscribed" in json.loads(socket.recv(timeout=30))
                assert json.loads(socket.recv(timeout=30))["event"]["stream_id"] == stream
            for worker, name, labels in (
                (segment, "segstream_frames_dropped_total", {"reason": "latency-budget"}),
                (segment, "segstream_dlq_total", {"reason": "malformed"}),
                (ingest, "segstream_reconnects_total", {"stream": dead}),
            ):
                wait_for(lambda w=worker, n=name, k=labels: scraped(w, n, **k) >= 1, 60, name)
            yield Pipeline(api, ingest, segment, stream, dead, prometheus.url)
        finally:
            if prometheus is not None:
                prometheus.stop()
            for worker in workers:
                worker.stop(timeout=10)


# --- (i) names ------------------------------------------------------------------------------
def test_every_name_in_dashboards_and_rules_is_exported(pipeline: Pipeline) -> None:
    samples: set[str] = set()
    declared_by: dict[str, set[str]] = {}
    for process, text in pipeline.expositions().items():
        found, declared = exposition_names(text)
        samples |= found
        declared_by[process] = declared
    # every process registers every family
    assert declared_by["api"] == declared_by["ingest"] == declared_by["segment"]
    declared = declared_by["segment"]
    recorded = recorded_names()
    used = used_names()
    unknown = {
        name: sorted(where)
        for name, where in used.items()
        if name not in declared and name not in recorded and name not in SYNTHETIC
    }
    assert not unknown, f"used but exported by no process: {unknown}"
    without_samples = {
        name for name in used if name in declared and name not in samples and name not in NO_SAMPLES
    }
    assert not without_samples, f"declared, but no process has a sample: {without_samples}"
    # the recording rules used are defined, and the rules produce what the dashboards read
    assert {n for n in used if n.startswith("segstream:")} <= recorded


# --- (ii) queries ---------------------------------------------------------------------------
def template_values(pipeline: Pipeline) -> dict[str, str]:
    return {
        "datasource": "",
        "model": MODEL,
        # both test streams, the way Grafana writes a multi-value selection into a regex
        "stream": f"({pipeline.stream}|{pipeline.dead})",
        "instance": pipeline.segment_target,
        "__rate_interval": RATE_INTERVAL,
        "__interval": "5s",
        "__range": "5m",
    }


def test_every_dashboard_query_returns_data(pipeline: Pipeline) -> None:
    values = template_values(pipeline)
    for job in ("api", "ingest", "segment"):
        up = f'up{{job="{job}"}} == 1'
        wait_for(lambda e=up: query(pipeline.prometheus, e), 60, f"Prometheus to scrape {job}")
    exprs = {t: substitute(t.expr, values) for t in targets()}
    gpu_only = {t for t in exprs if (t.dashboard, t.panel) in GPU_ONLY}
    assert len(gpu_only) == len(GPU_ONLY), "a GPU-only panel is missing"
    pending = {t: e for t, e in exprs.items() if t not in gpu_only}
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for target, expr in list(pending.items()):
            if finite(query(pipeline.prometheus, expr)):
                del pending[target]
        if pending:
            time.sleep(2)
    empty = {str(t): e for t, e in pending.items()}
    assert not empty, f"queries without data: {json.dumps(empty, indent=2)}"
    for target in gpu_only:
        why = GPU_ONLY[(target.dashboard, target.panel)]
        if torch.cuda.is_available():
            wait_for(lambda e=exprs[target]: finite(query(pipeline.prometheus, e)), 60, why)
        else:
            assert query(pipeline.prometheus, exprs[target]) == [], f"{target}: data without CUDA"


def test_rules_evaluate_without_errors_and_record_data(pipeline: Pipeline) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        body = httpx.get(f"{pipeline.prometheus}/api/v1/rules", timeout=10).json()
        found = [r for g in body["data"]["groups"] for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("20") for r in found)
        return found if found and done else None

    found = wait_for(evaluated, 60, "every rule to be evaluated")
    assert len(found) == len(list(rules()))
    broken = {r["name"]: r.get("lastError") for r in found if r["health"] != "ok"}
    assert not broken, broken
    # every recorded series has data for the model (the drop ratio included: frames dropped)
    for name in sorted(recorded_names()):
        wait_for(
            lambda n=name: finite(query(pipeline.prometheus, f'{n}{{model="{MODEL}"}}')),
            60,
            f"{name} for {MODEL}",
        )
    # The camera nobody answers keeps its stream in backoff: StreamStalled matches the real
    # series at once (pending: it fires after 10 minutes). Nothing else is down or
    # restarting; only the latency objective may burn (the backlog was dropped).
    stalled = 'ALERTS{alertname="StreamStalled", job="ingest", alertstate="pending"}'
    wait_for(lambda: query(pipeline.prometheus, stalled), 60, "StreamStalled to be pending")
    others = query(
        pipeline.prometheus, 'ALERTS{alertname!~"StreamStalled|LatencyObjectiveBurning"}'
    )
    assert others == [], others
