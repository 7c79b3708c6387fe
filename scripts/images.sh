#!/usr/bin/env bash
# The container images, built and started without a Docker engine:
#   scripts/images.sh [all]       tools, base, build every image, test them, clean up
#   scripts/images.sh tools       podman and debootstrap from Debian (apt)
#   scripts/images.sh base        the pinned Debian bookworm base (debootstrap), into podman
#   scripts/images.sh build [T..] build targets (api ingest segment-cpu segment-cuda)
#   scripts/images.sh test        tests/integration/test_images.py against the built images
#   scripts/images.sh sizes       the images' sizes, as docs/deploy.md records them
#   scripts/images.sh clean       remove the images and their storage (keeps the pip cache)
#
# podman builds daemonless (chroot isolation; overlay storage, or vfs with
# SEGSTREAM_IMAGES_STORAGE_DRIVER=vfs) in a storage of its own under $SEGSTREAM_IMAGES_DIR
# (default ~/.cache/segstream/images). Public base images are not
# pulled: the base is debootstrap's minimal bookworm with Debian's python3, passed as the
# Dockerfiles' base-image argument (PYTHON_IMAGE, CUDA_IMAGE). torch comes from
# $TORCH_INDEX_URL (default PyPI here, the index this script can reach; the Dockerfile's
# own default is PyTorch's CPU-only index). pip's downloads stay in the builds' cache
# mount, kept between runs, so a second build downloads nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*"; }

DIR=${SEGSTREAM_IMAGES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/segstream/images}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
TAG=0.1.0
TARGETS=(api ingest segment-cpu segment-cuda)
# Builds' temporary files and their cache mounts (pip's wheelhouse) live under $DIR/tmp.
export TMPDIR="$DIR/tmp"
# Kernel overlayfs where it works (a layer costs what it changes); vfs copies every layer in
# full (about 7 GB per layer of these images).
DRIVER=${SEGSTREAM_IMAGES_STORAGE_DRIVER:-overlay}
PODMAN=(podman --root "$DIR/storage-$DRIVER" --runroot "$DIR/run-$DRIVER" --storage-driver "$DRIVER")

tools() {
  step "image tools (podman, debootstrap)"
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    echo "installing: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "podman $(podman --version | cut -d' ' -f3), debootstrap: present"
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/images.sh needs root (debootstrap, and chroot to start the images)" >&2
    exit 1
  fi
}

# The base's tag names its point release (bookworm-12.15): the same tag is the same
# package set, as Debian publishes it; a new point release makes a new base.
base_image() { cat "$DIR/base-image" 2>/dev/null; }

base() {
  step "base image (debootstrap $SUITE, minbase, with python3)"
  mkdir -p "$DIR" "$TMPDIR"
  local current
  current=$(base_image || true)
  if [ -n "$current" ] && "${PODMAN[@]}" image exists "$current"; then
    echo "$current: present"
    return
  fi
  local rootfs="$DIR/rootfs-base"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 ||
    { tail -20 "$DIR/debootstrap.log"; exit 1; }
  # What the official Debian images leave out: the host's name and resolver, apt's lists and
  # downloaded packages (a build runs apt-get update itself).
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
  # The machine's own trust: CA certificates its bundle has beyond Debian's (a TLS proxy's)
  # and its pip configuration, so builds reach the package indexes as the host does.
  python3 - "$rootfs" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
bundle = "etc/ssl/certs/ca-certificates.crt"
debian = set(pem.findall((root / bundle).read_text()))
extra = [c for c in pem.findall(pathlib.Path("/", bundle).read_text()) if c not in debian]
for i, cert in enumerate(extra):
    (root / f"usr/local/share/ca-certificates/host-{i}.crt").write_text(cert + "\n")
print(f"{len(extra)} CA certificate(s) of this machine added")
PY
  TMPDIR=/tmp chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$rootfs/etc/pip.conf"; fi
  local release image python
  release=$(cat "$rootfs/etc/debian_version")
  python=$(TMPDIR=/tmp chroot "$rootfs" python3 --version)
  image="localhost/segstream-base:$SUITE-$release"
  tar -C "$rootfs" --numeric-owner -c . |
    "${PODMAN[@]}" import --quiet --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  echo "$image" >"$DIR/base-image"
  echo "$image: imported (Debian $release, $python)"
}

build_one() {
  local target=$1 base
  base=$(base_image)
  local args=(build --isolation chroot --layers --network host -f)
  case "$target" in
    api | ingest | segment-cpu)
      args+=(deploy/docker/cpu.Dockerfile --target "$target"
        --build-arg "PYTHON_IMAGE=$base" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
      ;;
    segment-cuda)
      args+=(deploy/docker/segment.Dockerfile --build-arg "CUDA_IMAGE=$base")
      ;;
    *)
      echo "unknown target $target (one of: ${TARGETS[*]})" >&2
      exit 2
      ;;
  esac
  step "build $target (localhost/segstream-$target:$TAG)"
  local start=$SECONDS
  "${PODMAN[@]}" "${args[@]}" -t "localhost/segstream-$target:$TAG" . \
    >"$DIR/build-$target.log" 2>&1 || { tail -40 "$DIR/build-$target.log"; exit 1; }
  echo "built in $((SECONDS - start)) s (log: $DIR/build-$target.log)"
}

build() {
  local targets=("$@")
  ((${#targets[@]})) || targets=("${TARGETS[@]}")
  for target in "${targets[@]}"; do build_one "$target"; done
}

prune() {
  "${PODMAN[@]}" image prune --force >/dev/null
  echo "build stages removed; $(df -h --output=avail "$DIR" | tail -1 | tr -d ' ') free on $DIR"
}

sizes() {
  "${PODMAN[@]}" images --filter reference='localhost/segstream-*' \
    --format '{{.Repository}}:{{.Tag}} {{.Size}}'
}

run_tests() {
  step "tests/integration/test_images.py"
  SEGSTREAM_IMAGES_DIR="$DIR" SEGSTREAM_IMAGES_PODMAN="${PODMAN[*]}" \
    SEGSTREAM_IMAGES_TORCH_INDEX="$TORCH_INDEX_URL" \
    .venv/bin/python -m pytest -rs -p no:cacheprovider tests/integration/test_images.py "$@"
}

clean() {
  step "remove the images (keeps $TMPDIR, pip's cache)"
  if [ -d "$DIR/storage-$DRIVER" ]; then
    "${PODMAN[@]}" rm --all --force >/dev/null 2>&1 || true
    "${PODMAN[@]}" rmi --all --force >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR/storage-$DRIVER" "$DIR/run-$DRIVER" "$DIR"/rootfs-* "$DIR/base-image"
}

command=${1:-all}
shift || true
case "$command" in
  tools) tools ;;
  base) tools && base ;;
  build) build "$@" ;;
  test) run_tests "$@" ;;
  sizes) sizes ;;
  clean) clean ;;
  all)
    tools
    trap clean EXIT
    base
    # The build stages' images are only a cache for the next target: dropped after each
    # Dockerfile's targets, so the disk holds one build stage at a time.
    build api ingest segment-cpu
    prune
    build segment-cuda
    prune
    sizes
    run_tests "$@"
    ;;
  *)
    echo "usage: scripts/images.sh [all|tools|base|build [TARGET..]|test|sizes|clean]" >&2
    exit 2
    ;;
esac
