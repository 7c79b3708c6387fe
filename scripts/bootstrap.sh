#!/usr/bin/env bash
# Installs what segstream needs on a fresh Debian machine, and nothing twice:
# Debian packages (Java, Maven, Redis, Prometheus, a C++ compiler, FFmpeg, and GStreamer's RTSP
# server for the test cameras), the virtual environment
# .venv with the Python packages (torch, nvcc from PyPI, ...), the Kafka jars from Maven
# Central, and the compiled ops. Safe to run again; each step says what it does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
# A GStreamer element, seen by Debian's Python (tests/integration/rtsp_server.py runs there).
has_gst() {
  /usr/bin/python3 -c "import gi, sys; gi.require_version('Gst', '1.0')
from gi.repository import Gst; Gst.init(None); sys.exit(Gst.ElementFactory.find('$1') is None)" \
    2>/dev/null
}
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v c++ >/dev/null || missing+=(g++)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null ||
  missing+=(python3-gi gir1.2-gst-rtsp-server-1.0)
has_gst decodebin || missing+=(gstreamer1.0-plugins-base)
has_gst rtph264pay || missing+=(gstreamer1.0-plugins-good)
has_gst intervideosrc || missing+=(gstreamer1.0-plugins-bad)
has_gst avdec_h264 || missing+=(gstreamer1.0-libav)
has_gst x264enc || missing+=(gstreamer1.0-plugins-ugly)
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "java, mvn, redis-server, prometheus, c++, ffmpeg, GStreamer RTSP server: present"
fi

step "python environment (.venv)"
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "segstream needs Python 3.11+"'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.segstream-deps
want=$(cat pyproject.toml clients/python/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Python packages (torch and the CUDA compiler are large: a few minutes the first time)"
  # The SDK (clients/python, segstream-client) in the same step: segstream requires it and
  # no index has it.
  .venv/bin/python -m pip install --progress-bar off -q -e clients/python -e ".[build,dev]"
  echo "$want" >"$stamp"
else
  echo "Python packages: up to date"
fi

step "Kafka jars (Maven Central)"
.venv/bin/segstream infra prepare

step "deploy validation tools (kustomize, CRD schemas)"
bash scripts/k8s-tools.sh

step "compiled ops (cuda_ext)"
.venv/bin/segstream ops build ${SEGSTREAM_OPS_BUILD_FLAGS:-}
