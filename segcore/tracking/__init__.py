"""Tracking: instance identities across a stream's frames (:mod:`.tracker`), pure data in and
out, with its state a JSON document."""

from segcore.tracking.tracker import Detection, Tracker, TrackerConfig, TrackerStateError

__all__ = ["Detection", "Tracker", "TrackerConfig", "TrackerStateError"]

from segcore.tracking.analytics import Analytics, AnalyticsStateError, Line, Tracked, Zone

__all__ += ["Analytics", "AnalyticsStateError", "Line", "Tracked", "Zone"]
