"""``segstream watch``'s event lines: each instance with its track id when it has one."""

from __future__ import annotations

from services.common.events import Instance, MaskEvent
from services.watch import line


def test_line_shows_track_ids_when_present() -> None:
    event = MaskEvent(
        stream_id="door",
        seq=4,
        pts=0.8,
        captured_at=100.0,
        published_at=100.25,
        model="yolact_r18_demo",
        width=320,
        height=240,
        instances=(
            Instance("person", 0, 0.931, (1, 2, 3, 4), (240, 320), "o`1", track_id=7),
            Instance("car", 2, 0.5, (1, 2, 3, 4), (240, 320), "o`1"),
        ),
    )
    assert line("100250-4", event) == "100250-4 seq=4 pts=0.80 250ms person#7@0.93 car@0.50"
