"""Apache Kafka in KRaft mode from its Maven Central jars, started with ``java``."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
import zipfile
from pathlib import Path

from services.common.kafka import base_topics, bootstrap_topics, make_admin
from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.process import ManagedProcess, wait_until

MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
LOG4J_VERSION = "2.25.5"
MIN_JAVA = 17
_MANIFEST = "manifest.txt"
TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka"


def jar_dir(settings: Settings) -> Path:
    """Cache folder of the broker's jars for the configured Kafka version."""
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def check_java() -> str:
    """Path of a java executable of version 17 or newer, or an InfraError saying what to do."""
    java = shutil.which("java")
    hint = (
        "install a Java 17+ runtime (apt-get install -y openjdk-17-jre-headless) or put it on PATH"
    )
    if java is None:
        raise InfraError("java not found: the Kafka broker needs a Java runtime", hint)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise InfraError(f"cannot tell the version of {java}: {out.stderr.strip()[:200]}", hint)
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise InfraError(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer", hint)
    return java


def verify_jars(libs: Path) -> list[Path]:
    """The jars listed in the folder's manifest; InfraError when any is missing or corrupt."""
    manifest = libs / _MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(manifest)
    jars: list[Path] = []
    hint = f"run `segstream infra up --refresh` to resolve the jars again (or delete {libs.parent})"
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        name, _, size = line.rpartition(" ")
        jar = libs / name
        try:
            ok = jar.stat().st_size == int(size)
            if ok:
                with zipfile.ZipFile(jar) as zf:
                    ok = bool(zf.namelist())
        except (OSError, ValueError, zipfile.BadZipFile):
            ok = False
        if not ok:
            raise InfraError(f"broken cache folder {libs}: {name} is missing or corrupt", hint)
        jars.append(jar)
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise InfraError(f"broken cache folder {libs}: no kafka_2.13 jar listed", hint)
    return jars


def resolve_jars(
    settings: Settings, *, refresh: bool = False, maven_local_repo: Path | None = None
) -> list[Path]:
    """Resolve org.apache.kafka:kafka_2.13 and its runtime dependencies into the cache."""
    libs = jar_dir(settings)
    if not refresh:
        try:
            return verify_jars(libs)
        except FileNotFoundError:
            pass
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(
            "mvn not found: Maven resolves the Kafka jars",
            "install Maven (apt-get install -y maven) or put mvn on PATH",
        )
    work = libs.parent
    if libs.exists():
        shutil.rmtree(libs)
    work.mkdir(parents=True, exist_ok=True)
    repo = settings.maven_repo or MAVEN_CENTRAL
    pom = (TEMPLATES / "pom.xml").read_text()
    pom = (
        pom.replace("@REPO_URL@", repo)
        .replace("@KAFKA_VERSION@", settings.kafka_version)
        .replace("@LOG4J_VERSION@", LOG4J_VERSION)
    )
    (work / "pom.xml").write_text(pom)
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(work / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    if maven_local_repo is not None:
        cmd.append(f"-Dmaven.repo.local={maven_local_repo}")
    print(f"  resolving Kafka {settings.kafka_version} jars from {repo} with mvn ...", flush=True)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfraError(
            f"mvn did not finish resolving Kafka within {exc.timeout:.0f}s from {repo}",
            "check network access to the Maven repository, or set SEGSTREAM_MAVEN_REPO",
        ) from exc
    if out.returncode != 0:
        lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "ERROR" in ln]
        detail = "\n".join(lines[:6]) or (out.stdout + out.stderr)[-1500:]
        raise InfraError(
            f"could not resolve org.apache.kafka:kafka_2.13:{settings.kafka_version} "
            f"from {repo}:\n{detail}",
            "check that this machine reaches the Maven repository (or set SEGSTREAM_MAVEN_REPO "
            "to a mirror) and that SEGSTREAM_KAFKA_VERSION names a released version",
        )
    jars = sorted(staging.glob("*.jar"))
    (staging / _MANIFEST).write_text("".join(f"{j.name} {j.stat().st_size}\n" for j in jars))
    staging.rename(libs)
    return verify_jars(libs)


def cluster_id() -> str:
    """A random KRaft cluster id (Kafka's base64url form of a UUID). Like Kafka's own
    Uuid.randomUuid, never one starting with '-', which a command line reads as an option."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def server_properties(settings: Settings, data_dir: Path) -> str:
    host = settings.host
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{settings.kafka_controller_port}",
            f"listeners=PLAINTEXT://{host}:{settings.kafka_port},"
            f"CONTROLLER://{host}:{settings.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{settings.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            f"message.max.bytes={settings.frame_max_bytes}",
            f"replica.fetch.max.bytes={settings.frame_max_bytes}",
            "log.retention.hours=24",
            "",
        ]
    )


class KafkaServer:
    name = "kafka"

    def __init__(self, settings: Settings, run_dir: Path, log_dir: Path) -> None:
        self.settings = settings
        self.home = run_dir / "kafka"
        self.proc = ManagedProcess(self.name, run_dir, log_dir)

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    def prepare(self, *, refresh: bool = False) -> None:
        check_java()
        resolve_jars(self.settings, refresh=refresh)

    def start(self) -> None:
        java = check_java()
        libs = jar_dir(self.settings)
        verify_jars(libs)
        data = self.home / "data"
        props = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        props.write_text(server_properties(self.settings, data))
        classpath = f"{libs}/*"
        log4j = TEMPLATES / "log4j2.properties"
        jvm = [
            java,
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            # By default the client compiler alone and the serial collector: a one-node
            # broker sharing its cores with inference (a laptop, the tests) then takes a
            # third less CPU per frame and idle, and 40% less while it warms up, than with
            # the JVM's tiered compiler and G1 (bench/broker.py). Deployed brokers (Strimzi,
            # compose) keep their images' defaults.
            *self.settings.kafka_jvm_options.split(),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.proc.log_file.parent}",
            "-cp",
            classpath,
        ]
        if not (data / "meta.properties").exists():
            fmt = subprocess.run(
                [
                    *jvm,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id()}",
                    f"--config={props}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if fmt.returncode != 0:
                output = (fmt.stdout + fmt.stderr)[-1500:]
                raise InfraError(
                    f"formatting Kafka storage in {data} failed:\n{output}",
                    f"delete {data} and run `segstream infra up` again",
                )
        self.proc.start([*jvm, "kafka.Kafka", str(props)])

    def ready(self) -> bool:
        try:
            admin = make_admin(self.settings, request_timeout_ms=3000)
        except Exception:
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_until(
            self.ready, timeout=timeout, what="Kafka broker", process=self.proc, interval=0.5
        )
        bootstrap_topics(self.settings, base_topics(self.settings))

    def describe(self) -> str:
        return f"{self.settings.bootstrap_servers} (KRaft, {self.settings.kafka_version})"
