"""Server-side filters of mask events: classes, a minimum score, and a zone (a polygon in
frame pixels) each instance's mask must overlap. Pure functions of an event."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from services.common.events import Instance, MaskEvent


class FilterError(ValueError):
    """A filter parameter that does not parse; the message names it (``"<name>: why"``)."""

    @property
    def field(self) -> str:
        """The parameter's name, as the message's first word."""
        return str(self).split(":", 1)[0]


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
