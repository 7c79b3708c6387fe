"""The container images, started: each image that ``scripts/images.sh`` built with podman has its
root filesystem exported (``podman export``) and its entrypoint started under chroot, as the
image's user, with the image's environment, on a read-only root with a tmpfs on /tmp (as
compose.yaml and the Kubernetes manifests run them), against the session's Kafka and Redis:
the API answers /healthz and /readyz, each worker serves /metrics and joins its consumer
group. The CPU images carry no CUDA library where they were built from a CPU-only torch index,
and the CUDA image's compiled ops hold the CUDA kernels.

Runs where ``scripts/images.sh`` points it at the images (``SEGSTREAM_IMAGES_DIR``, which
the script sets); skipped elsewhere, naming the script. Needs root (mount, chroot).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError

from services.common.kafka import make_admin, named
from services.common.metrics import exposition_names
from services.common.redis import redis_password
from services.common.settings import Settings
from services.infra.children import Child
from services.infra.process import free_port
from services.ingest.worker import GROUP as INGEST_GROUP
from services.segment.worker import group_of
from tests.integration.api_server import READ_TOKEN
from tests.integration.workers import wait_for

pytestmark = pytest.mark.integration

IMAGES_DIR = os.environ.get("SEGSTREAM_IMAGES_DIR")
TAG = "0.1.0"
CPU_TARGETS = ("api", "ingest", "segment-cpu")
CUDA_TARGET = "segment-cuda"
MODEL = "yolact_r18_demo"
START_TIMEOUT = 300.0  # a segment worker loads its model and compiles its warm-up first

if IMAGES_DIR is None:
    pytest.skip(
        "the images are built and started by scripts/images.sh (run by hand: docs/deploy.md); "
        "SEGSTREAM_IMAGES_DIR is not set",
        allow_module_level=True,
    )


def podman() -> list[str]:
    return shlex.split(os.environ.get("SEGSTREAM_IMAGES_PODMAN", "podman --storage-driver vfs"))


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Image:
    target: str
    reference: str
    config: dict[str, Any]
    layers: tuple[str, ...]

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [])

    @property
    def command(self) -> list[str]:
        return [*(self.config.get("Entrypoint") or []), *(self.config.get("Cmd") or [])]


def inspect(target: str) -> Image:
    reference = f"localhost/segstream-{target}:{TAG}"
    found = subprocess.run(
        [*podman(), "image", "inspect", reference], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"{reference} was not built (scripts/images.sh build {target})", False)
    (info,) = json.loads(found.stdout)
    return Image(target, reference, info["Config"], tuple(info["RootFS"]["Layers"]))


@pytest.fixture(scope="module")
def exported() -> Iterator[Callable[[Image], Path]]:
    """The image's root filesystem, exported from a container of it (``podman export``) into
    a folder; images whose layers are the same share one. Only the latest export is kept (the
    tests are ordered so that each image is exported once)."""
    folders: dict[tuple[str, ...], Path] = {}
    base = Path(str(IMAGES_DIR))

    def export(image: Image) -> Path:
        if image.layers not in folders:
            for stale in folders.values():  # one export at a time: each is about 7 GB
                shutil.rmtree(stale, ignore_errors=True)
            folders.clear()
            folder = base / f"rootfs-{image.target}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            container = run(*podman(), "create", image.reference).strip()
            try:
                export = subprocess.Popen([*podman(), "export", container], stdout=subprocess.PIPE)
                untar = subprocess.run(
                    ["tar", "-x", "--numeric-owner", "-C", str(folder)],
                    stdin=export.stdout,
                    capture_output=True,
                    check=False,
                )
                assert export.wait() == 0 and untar.returncode == 0, untar.stderr
            finally:
                run(*podman(), "rm", container)
            folders[image.layers] = folder
        return folders[image.layers]

    yield export
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)


# Mounts of a container runtime, in a mount namespace of the child's own (gone when it
# ends): the root bound read-only on itself, /proc, the host's /dev, a tmpfs on /tmp; then
# chroot as the image's user. The network is the host's (the servers are on loopback).
CHROOT = """set -e
root=$1; user=$2; shift 2
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
exec chroot --userspec="$user" "$root" "$@"
"""


def service_env(settings: Settings, metrics_port: int) -> dict[str, str]:
    """What a deployment gives the containers (compose.yaml's x-segstream-env): the servers'
    addresses, the namespace, the metrics port, on loopback here."""
    password = redis_password(settings) or ""
    return {
        "SEGSTREAM_HOST": "127.0.0.1",
        "SEGSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "SEGSTREAM_REDIS_URL": f"redis://:{password}@127.0.0.1:{settings.redis_port}/0",
        "SEGSTREAM_NAMESPACE": settings.namespace,
        "SEGSTREAM_METRICS_PORT": str(metrics_port),
        "SEGSTREAM_LOG_LEVEL": "INFO",
    }


def start(
    image: Image,
    rootfs: Path,
    settings: Settings,
    log_dir: Path,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Child:
    """The image's entrypoint (or ``command``) under chroot, its environment the image's with
    the deployment's on top, as ``Child`` runs ``segstream`` processes."""
    port = free_port()
    environment = {
        "HOME": "/nonexistent",
        **image.env,
        **service_env(settings, port),
        **(env or {}),
    }
    user = image.config.get("User") or "0:0"
    argv = command or image.command
    launcher = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        CHROOT,
        "sh",
        str(rootfs),
        user,
        "env",
        "-i",
        *(f"{k}={v}" for k, v in environment.items()),
    ]
    return Child(
        image.target,
        argv,
        settings,
        log_dir / f"{image.target}.log",
        metrics_port=port,
        command=launcher,
    )


class Images(dict[str, Image]):
    """The built images by target, inspected when first asked for."""

    def __missing__(self, target: str) -> Image:
        self[target] = inspect(target)
        return self[target]


@pytest.fixture(scope="module")
def images() -> Images:
    return Images()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def answering(child: Child, url: str) -> Callable[[], tuple[int, bytes] | None]:
    """A check for ``wait_for``: the answer at ``url``, None while nothing listens (fails at
    once when the process has exited, with its log)."""

    def check() -> tuple[int, bytes] | None:
        child.check()
        try:
            return get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    return check


def member_of(settings: Settings, group: str) -> Callable[[], list[Any] | None]:
    """A check for ``wait_for``: the members of a consumer group once it is stable."""
    admin = make_admin(settings)

    def check() -> list[Any] | None:
        try:
            info = admin.describe_groups([group]).get(group) or {}
        except KafkaError:  # no coordinator yet: the group's first member is still joining
            return None
        state = str(info.get("group_state", info.get("state", "")))
        members = list(info.get("members") or [])
        return members if state.lower() == "stable" and members else None

    return check


def serves_metrics(child: Child) -> set[str]:
    status, body = wait_for(
        answering(child, f"http://127.0.0.1:{child.metrics_port}/metrics"),
        START_TIMEOUT,
        f"{child.name}'s /metrics",
    )
    assert status == 200, body[:500]
    samples, _ = exposition_names(body.decode())
    return {s for s in samples if s.startswith("segstream_")}


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        child.stop(timeout=15)


def test_images_are_non_root_and_the_cpu_targets_differ_only_in_their_command(
    images: Images,
) -> None:
    for target in (*CPU_TARGETS, CUDA_TARGET):
        assert images[target].config.get("User") == "10001:10001", target
        assert images[target].config.get("Entrypoint") == ["segstream"], target
    assert len({json.dumps(images[t].env, sort_keys=True) for t in CPU_TARGETS}) == 1
    assert [images[t].config.get("Cmd") for t in CPU_TARGETS] == [["api"], ["ingest"], ["segment"]]
    assert images[CUDA_TARGET].config.get("Cmd") == ["segment", "--device", "cuda"]


def test_api_image_answers_healthz_and_readyz(
    images: Images,
    exported: Callable[[Image], Path],
    ns_settings: Settings,
    tmp_path: Path,
    started: list[Child],
) -> None:
    image = images["api"]
    port = free_port()
    tokens = [{"name": "viewer", "token": READ_TOKEN, "scopes": ["events:read"]}]
    api = start(
        image,
        exported(image),
        ns_settings,
        tmp_path,
        env={"SEGSTREAM_API_PORT": str(port), "SEGSTREAM_API_TOKENS": json.dumps(tokens)},
    )
    started.append(api)
    url = f"http://127.0.0.1:{port}"
    status, body = wait_for(answering(api, url + "/healthz"), START_TIMEOUT, "the API's /healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    def ready() -> dict[str, Any] | None:
        status, body = get(url + "/readyz")
        return json.loads(body) if status == 200 else None

    assert wait_for(ready, 120, "the API's /readyz") == {
        "ready": True,
        "redis": "ok",
        "kafka": "ok",
    }
    status, body = get(url + "/metrics")
    assert status == 200 and b"segstream_" in body
    # Its tokens came from the environment: none, 401; the viewer's, the (empty) stream list.
    assert get(url + "/v1/streams")[0] == 401
    request = urllib.request.Request(
        url + "/v1/streams", headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.status, json.loads(response.read())) == (200, [])


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def site_packages(rootfs: Path) -> Path:
    (found,) = (rootfs / "opt" / "segstream" / "lib").glob("python3*/site-packages")
    return found


def needed(library: Path) -> set[str]:
    """The shared libraries an ELF file names (readelf -d)."""
    out = run("readelf", "-d", str(library))
    return {line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line}


def ops_library(rootfs: Path) -> Path:
    library = site_packages(rootfs) / "cuda_ext" / "_build" / "segstream_ops.so"
    assert library.is_file(), f"the image has no compiled ops at {library.relative_to(rootfs)}"
    return library


def test_cpu_images_compiled_ops_are_cpu_only(
    images: Images, exported: Callable[[Image], Path]
) -> None:
    names = needed(ops_library(exported(images["api"])))
    assert "libtorch_cpu.so" in names, names
    assert not {n for n in names if "cuda" in n}, names


def test_cpu_images_carry_no_cuda_libraries(
    images: Images, exported: Callable[[Image], Path]
) -> None:
    site = site_packages(exported(images["api"]))
    cuda_libraries = sorted(
        p for p in site.rglob("*.so*") if p.name.startswith(("libcu", "libnv", "libnccl"))
    )
    version = (site / "torch" / "version.py").read_text()
    index = os.environ.get("SEGSTREAM_IMAGES_TORCH_INDEX", CPU_INDEX)
    if index.rstrip("/") != CPU_INDEX and "cuda: Optional[str] = None" not in version:
        size = sum(p.stat().st_size for p in cuda_libraries) / 2**20
        packages = sorted({p.relative_to(site).parts[0] for p in cuda_libraries})
        pytest.skip(
            f"torch came from {index} (PyTorch's CPU-only index, the Dockerfile's default, is "
            f"not reachable here): its wheel brings {len(cuda_libraries)} CUDA libraries, "
            f"{size:.0f} MiB, in {', '.join(packages)}"
        )
    assert not cuda_libraries, [str(p.relative_to(site)) for p in cuda_libraries]


def test_ingest_image_serves_metrics_and_joins_its_group(
    images: Images,
    exported: Callable[[Image], Path],
    ns_settings: Settings,
    tmp_path: Path,
    started: list[Child],
) -> None:
    image = images["ingest"]
    worker = start(image, exported(image), ns_settings, tmp_path)
    started.append(worker)
    assert serves_metrics(worker), "no segstream_ sample in the ingest worker's /metrics"
    group = named(ns_settings, INGEST_GROUP)
    members = wait_for(member_of(ns_settings, group), START_TIMEOUT, f"a member of {group}")
    assert len(members) == 1


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("segment-cpu", None),
        # No GPU here: the CUDA image's worker runs its entrypoint on the CPU.
        (CUDA_TARGET, ["segstream", "segment", "--device", "cpu"]),
    ],
)
def test_segment_image_serves_metrics_and_joins_its_group(
    target: str,
    command: list[str] | None,
    images: Images,
    exported: Callable[[Image], Path],
    ns_settings: Settings,
    tmp_path: Path,
    started: list[Child],
) -> None:
    image = images[target]
    worker = start(image, exported(image), ns_settings, tmp_path, command=command)
    started.append(worker)
    assert serves_metrics(worker), f"no segstream_ sample in {target}'s /metrics"
    group = named(ns_settings, group_of(MODEL))
    members = wait_for(member_of(ns_settings, group), START_TIMEOUT, f"a member of {group}")
    assert len(members) == 1


def test_cuda_image_compiled_ops_hold_the_cuda_kernels(
    images: Images, exported: Callable[[Image], Path]
) -> None:
    names = needed(ops_library(exported(images[CUDA_TARGET])))
    assert {"libtorch_cuda.so", "libcudart.so.13"} <= names, names
