"""Server-side filters of a subscription's events, pure functions of an event: of mask
events (:class:`EventFilter`: classes, a minimum score, and a zone, a polygon in frame pixels,
each instance's mask must overlap) and of analytics events (:class:`AnalyticsFilter`: types,
zone and line names, labels). Each has ``select(raw) -> bytes | None``, what a subscription
sends of an encoded event (None: nothing)."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pycocotools import mask as mask_utils

from services.common.events import (
    ANALYTICS_TYPES,
    DecodeError,
    Instance,
    MaskEvent,
    decode_analytics,
    decode_event,
    encode_event,
)
from services.common.streams import ANALYTICS_NAME


class FilterError(ValueError):
    """A filter parameter that does not parse; the message names it (``"<name>: why"``)."""

    @property
    def field(self) -> str:
        """The parameter's name, as the message's first word."""
        return str(self).split(":", 1)[0]


class Selector(Protocol):
    """What a subscription sends of each encoded event."""

    def select(self, raw: bytes) -> bytes | None: ...


@dataclass
class EventFilter:
    classes: frozenset[str] | None = None
    min_score: float = 0.0
    zone: tuple[float, ...] | None = None  # x1, y1, x2, y2, ... in frame pixels
    _zone_rles: dict[tuple[int, int], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(
        cls, classes: str | None, min_score: str | float | None, zone: str | None
    ) -> EventFilter:
        """The filter of a subscription's query parameters, as given (text, or a number for
        ``min_score``); raises FilterError naming the first that does not parse. Numbers must
        be finite: ``nan``, ``inf`` and ``1e309`` are refused."""
        names = frozenset(c.strip() for c in classes.split(",") if c.strip()) if classes else None
        score = 0.0
        if min_score is not None:
            try:
                score = float(min_score)
            except ValueError:
                raise FilterError("min_score: a number between 0 and 1") from None
            if not 0.0 <= score <= 1.0:  # NaN fails this too
                raise FilterError("min_score: must be between 0 and 1")
        points: tuple[float, ...] | None = None
        if zone:
            try:
                points = tuple(float(v) for v in zone.split(","))
            except ValueError:
                raise FilterError("zone: comma-separated numbers x1,y1,x2,y2,...") from None
            if not all(math.isfinite(v) for v in points):
                raise FilterError("zone: the numbers must be finite")
            if len(points) < 6 or len(points) % 2:
                raise FilterError("zone: at least 3 points (6 numbers), x and y for each")
        return cls(names or None, score, points)

    @property
    def active(self) -> bool:
        return self.classes is not None or self.min_score > 0 or self.zone is not None

    def _in_zone(self, inst: Instance) -> bool:
        assert self.zone is not None
        height, width = inst.mask_size
        zone = self._zone_rles.get((height, width))
        if zone is None:
            zone = mask_utils.merge(mask_utils.frPyObjects([list(self.zone)], height, width))
            self._zone_rles[(height, width)] = zone
        both = mask_utils.merge([inst.rle(), zone], intersect=True)
        return bool(np.asarray(mask_utils.area(both)) > 0)

    def keep(self, inst: Instance) -> bool:
        if self.classes is not None and inst.label not in self.classes:
            return False
        if inst.score < self.min_score:
            return False
        return self.zone is None or self._in_zone(inst)

    def apply(self, event: MaskEvent) -> MaskEvent | None:
        """The event with only the instances that pass; None when a filter is set and none
        does (without filters every event passes, instances or not)."""
        if not self.active:
            return event
        kept = tuple(i for i in event.instances if self.keep(i))
        if not kept:
            return None
        return dataclasses.replace(event, instances=kept)

    def select(self, raw: bytes) -> bytes | None:
        """The encoded event with only the instances that pass; None to send nothing (an
        event that does not decode is sent only without filters)."""
        if not self.active:
            return raw
        try:
            event = self.apply(decode_event(raw))
        except DecodeError:
            return None
        return encode_event(event) if event is not None else None


def _names(
    param: str, text: str | None, pattern: str | None = ANALYTICS_NAME
) -> frozenset[str] | None:
    """The comma-separated names of a parameter (None when absent or empty); FilterError
    naming it when one does not match ``pattern``."""
    if not text:
        return None
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    for name in sorted(names):
        if pattern is not None and not re.match(pattern, name):
            raise FilterError(
                f"{param}: {name[:40]!r} is not a name (1-64 of letters, digits, '_.-')"
            )
    return names or None


@dataclass(frozen=True)
class AnalyticsFilter:
    """Which analytics events a subscription gets: of these ``types``, of these zones or
    lines (naming any: only events of the zones and lines named), of tracks with these
    labels. None: any."""

    types: frozenset[str] | None = None
    zones: frozenset[str] | None = None
    lines: frozenset[str] | None = None
    labels: frozenset[str] | None = None

    @classmethod
    def parse(
        cls, types: str | None, zones: str | None, lines: str | None, labels: str | None
    ) -> AnalyticsFilter:
        """The filter of a subscription's query parameters (comma-separated lists), as
        given; raises FilterError naming the first that does not parse."""
        kinds = _names("type", types, None)
        for kind in sorted(kinds or ()):
            if kind not in ANALYTICS_TYPES:
                raise FilterError(f"type: {kind[:40]!r} is not one of {', '.join(ANALYTICS_TYPES)}")
        return cls(
            kinds, _names("zone", zones), _names("line", lines), _names("label", labels, None)
        )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.types, self.zones, self.lines, self.labels))

    def select(self, raw: bytes) -> bytes | None:
        """``raw`` as it is when the event passes, else None (an event that does not decode
        is sent only without filters)."""
        if not self.active:
            return raw
        try:
            event = decode_analytics(raw)
        except DecodeError:
            return None
        if self.types is not None and event.type not in self.types:
            return None
        if self.labels is not None and event.label not in self.labels:
            return None
        if self.zones is not None or self.lines is not None:
            in_zone = event.zone is not None and event.zone in (self.zones or ())
            on_line = event.line is not None and event.line in (self.lines or ())
            if not (in_zone or on_line):
                return None
        return raw
