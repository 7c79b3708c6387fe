"""A live RTSP camera: loops a video file forever in real time and serves it as H.264.

Run with Debian's ``/usr/bin/python3`` (it has the GStreamer bindings; see
``tests/integration/sources.py``, which starts this script)::

    rtsp_server.py VIDEO PORT [--mount /cam]

One "camera" pipeline decodes VIDEO at its own frame rate (synced to the clock), hands each
frame to an ``intervideosink`` and seeks back to the start at each end of stream: the video
loops forever, every frame in order. Every RTSP client gets its own pipeline (the media
factory is not shared) that reads the camera's latest frame with an ``intervideosrc`` and
encodes it with x264: no B-frames, a key frame every second (a client joining at any time
starts at one) and one slice per frame (FFmpeg's RTSP reader tears frames made of several
slices, which ``tune=zerolatency`` alone would give). Listens on 127.0.0.1 only; prints
``ready`` once the port accepts connections; exits when its parent process does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

CHANNEL = "camera"


def fail(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def camera(video: str) -> tuple[Gst.Pipeline, Gst.Caps]:
    """The looping camera pipeline, playing, and the caps of its raw frames."""
    pipeline = Gst.parse_launch(
        "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420 "
        f"! intervideosink name=sink channel={CHANNEL} sync=true"
    )
    pipeline.get_by_name("file").set_property("location", video)

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> bool:
        if message.type == Gst.MessageType.EOS:  # every frame was shown: from the top
            if not pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0):
                fail("seek to the start of the video failed")
        elif message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            fail(f"camera pipeline: {error.message} ({debug})")
        return True

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PAUSED)
    result, _, _ = pipeline.get_state(20 * Gst.SECOND)
    if result != Gst.StateChangeReturn.SUCCESS:
        message = bus.pop_filtered(Gst.MessageType.ERROR)
        detail = message.parse_error()[0].message if message else result.value_nick
        fail(f"cannot play {video}: {detail}")
    pipeline.set_state(Gst.State.PLAYING)
    caps = pipeline.get_by_name("sink").get_static_pad("sink").get_current_caps()
    if caps is None:
        fail(f"no video frames in {video}")
    return pipeline, caps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("port", type=int)
    parser.add_argument("--mount", default="/cam")
    args = parser.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    _pipeline, caps = camera(os.path.abspath(args.video))
    frames = caps.get_structure(0)
    ok_w, width = frames.get_int("width")
    ok_h, height = frames.get_int("height")
    ok_r, rate_n, rate_d = frames.get_fraction("framerate")
    if not (ok_r and rate_n > 0):
        rate_n, rate_d = 15, 1
    if not (ok_w and ok_h):
        fail(f"frames without a size: {caps.to_string()}")

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(False)
    factory.set_launch(
        f"( intervideosrc channel={CHANNEL} "
        f"! video/x-raw,width={width},height={height},framerate={rate_n}/{rate_d} "
        "! videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency sliced-threads=false "
        f"bframes=0 key-int-max={max(1, round(rate_n / rate_d))} "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        fail(f"cannot listen on 127.0.0.1:{args.port}")

    parent = os.getppid()

    def orphaned() -> bool:
        if os.getppid() != parent:
            loop.quit()
        return True

    GLib.timeout_add(500, orphaned)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
