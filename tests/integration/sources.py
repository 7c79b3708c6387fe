"""Real camera-stream sources for the integration tier, on free loopback ports.

``RtspServer`` is a live RTSP camera at ``rtsp://127.0.0.1:PORT/cam``. It runs
``rtsp_server.py`` (beside this file) with Debian's ``/usr/bin/python3`` and GStreamer's RTSP
server (``scripts/bootstrap.sh`` installs them). Looping and pacing: one "camera" pipeline
decodes the video synced to the clock, so frames come at the video's own rate, and seeks back
to the start at each end of stream, so it plays forever, every frame in order, the first
frame right after the last. Each RTSP client gets its own pipeline that takes the camera's
latest frame (``intervideosrc``) and re-encodes it as H.264 (x264: no B-frames, a key frame
every second, one slice per frame), so clients join, leave and reconnect independently and
each starts at a key frame, with the video's size. ``stop()`` kills the server (connected
clients see the connection drop); ``start()`` again serves on the same port: a camera outage.

``HlsServer`` turns a video into an HLS VOD playlist (PyAV's ``hls`` muxer: ``index.m3u8``
and one-second MPEG-TS segments, re-encoded with a key frame at each segment start and every
frame kept; the playlist ends, so a reader reaches end of stream after the video's last
frame) and serves the folder over HTTP from a thread, with ``/not-video.html``, an HTML page,
beside it.

``truncated_copy`` writes the first part of a file: a damaged video.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from fractions import Fraction
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import av

SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepting(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class _Started:
    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class RtspServer(_Started):
    """A live, looping H.264 RTSP camera (see the module docstring).

    ``start()`` returns once the server is ready and its port accepts connections (a fraction
    of a second; longer the first time on a machine, while GStreamer builds its plugin
    registry) and raises ``RuntimeError`` with the server's output if it exits first or is not
    ready within ``startup_timeout``; it kills the server on any failure.
    """

    def __init__(
        self,
        video: str | Path,
        *,
        port: int | None = None,
        mount: str = "/cam",
        python: str = SYSTEM_PYTHON,
        startup_timeout: float = 30.0,
    ) -> None:
        self.video = Path(video).resolve()
        if not self.video.is_file():
            raise FileNotFoundError(self.video)
        self.port = port or free_port()
        self.mount = "/" + mount.lstrip("/")
        self.python = python
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.running:
            raise RuntimeError(f"RTSP server at {self.url} is already running")
        self.stop()
        if accepting(self.port):
            raise RuntimeError(f"port {self.port} is taken by another process")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (open while the server runs)
        command = [self.python, "-I", str(SCRIPT), str(self.video), str(self.port)]
        try:
            self._process = subprocess.Popen(
                [*command, "--mount", self.mount],
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not ("ready" in self.output() and accepting(self.port)):
            code = process.poll()
            if code is not None or time.monotonic() > deadline:
                why = (
                    f"exited with {code}"
                    if code is not None
                    else f"is not listening after {self.startup_timeout:g} s"
                )
                raise RuntimeError(
                    f"RTSP server for {self.video} on port {self.port} {why}; "
                    f"its output:\n{self.output()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server at once (idempotent); clients see their connection drop."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if self._output is not None:
            self._output.close()
            self._output = None

    def output(self) -> str:
        """What the running server printed (stdout and stderr)."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode(errors="replace").strip()


def write_hls(video: str | Path, folder: str | Path, segment_seconds: float = 1.0) -> Path:
    """Re-encode ``video``'s first video stream (H.264, a key frame every
    ``segment_seconds``, every frame kept) into ``folder/index.m3u8`` and MPEG-TS segments of
    that length; returns the playlist's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    options = {
        "hls_time": f"{segment_seconds:g}",
        "hls_list_size": "0",
        "hls_playlist_type": "vod",
        "hls_segment_filename": str(folder / "segment%03d.ts"),
    }
    with (
        av.open(str(video)) as source,
        av.open(str(playlist), "w", format="hls", options=options) as target,
    ):
        stream = source.streams.video[0]
        rate = Fraction(stream.average_rate or 15)
        gop = max(1, round(rate * Fraction(segment_seconds)))
        encoded = target.add_stream("libx264", rate=rate)
        encoded.width, encoded.height, encoded.pix_fmt = stream.width, stream.height, "yuv420p"
        encoded.options = {
            "preset": "veryfast",
            "crf": "18",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        for index, frame in enumerate(source.decode(stream)):
            frame.pts, frame.time_base = index, 1 / rate
            target.mux(encoded.encode(frame))
        target.mux(encoded.encode(None))
    return playlist


NOT_VIDEO = "<!doctype html><html><head><title>Not video</title></head><body>hi</body></html>\n"


_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".html": "text/html"}


class _Handler(SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return _TYPES.get(Path(path).suffix) or super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HlsServer(_Started):
    """An HLS VOD copy of ``video`` over HTTP: ``url`` is the playlist, ``not_video_url`` an
    HTML page. ``folder`` holds the files (a temporary folder, removed on ``stop()``, if
    None); the playlist is written on the first ``start()``."""

    def __init__(
        self, video: str | Path, folder: str | Path | None = None, segment_seconds: float = 1.0
    ) -> None:
        self.video = Path(video)
        self.segment_seconds = segment_seconds
        self._own_folder = folder is None
        self.folder = Path(folder) if folder is not None else None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HLS server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.m3u8"

    @property
    def not_video_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/not-video.html"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"HLS server at {self.url} is already running")
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="hls-"))
        try:
            if not (self.folder / "index.m3u8").is_file():
                write_hls(self.video, self.folder, self.segment_seconds)
            (self.folder / "not-video.html").write_text(NOT_VIDEO)
        except BaseException:
            self.stop()
            raise
        handler = functools.partial(_Handler, directory=str(self.folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def truncated_copy(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Write the first ``fraction`` of ``src``'s bytes to ``dst``; returns ``dst``."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
