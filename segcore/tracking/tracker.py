"""Instance identities across the frames of one stream: plain data in, plain data out.

:class:`Tracker` takes each frame's detections (box, score, class, COCO RLE mask at the
frame's size) with the frame's capture time and answers, per detection, the identity of the
track it continues. The design follows ByteTrack (Zhang et al. 2022) on a SORT-style motion
model, with masks added to the association:

- **Motion.** Each track has a constant-velocity Kalman filter on its box
  (:mod:`segcore.tracking.kalman`) in continuous time: every frame predicts each track to
  the frame's capture time, so dropped frames and a 2 fps stream are a longer step, not a
  different model.
- **Association** (``scipy.optimize.linear_sum_assignment``), by a similarity that blends
  the IoU of the predicted box with the detection's box and the IoU of the track's last mask
  with the detection's mask (RLE IoU by pycocotools), for detections of the same class only.
  A track that was missed on the previous frame is matched on its predicted box alone (its
  last mask is where it was, not where it is). Where boxes no longer overlap, a motion
  similarity (1 - squared Mahalanobis distance / its 95% gate, under the filter's innovation
  covariance) counts too, capped at ``motion_cap`` (0.5) so it never outbids a good overlap.
- **Two passes, as ByteTrack.** Detections scoring at least ``high_score`` are matched first,
  against every confirmed track (tracked or lost); the tracks still unmatched that were seen
  on the previous frame then take the low-scoring detections by box IoU (an object partly
  hidden scores lower and keeps its identity). Tentative tracks take what high detections
  are left.
- **Birth and death.** A new track is tentative until ``min_hits`` matches in a row (on the
  stream's first frame, at once) and only then gets its id; ids start at 1, only grow and are
  never reused. A tentative track that misses a frame is dropped. A confirmed track that goes
  unseen for ``max_age_s`` seconds of capture time dies: the same time at any frame rate.

:meth:`Tracker.state` is the whole state as a compact JSON-compatible document (numbers kept
at the precision the tracker itself continues from, so a tracker restored from it answers
exactly as the one that wrote it would); ``Tracker(state=doc)`` restores it and raises
:class:`TrackerStateError` for a document that is not one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from segcore.tracking import kalman
from segcore.tracking.kalman import MotionNoise

STATE_VERSION = 1


class TrackerStateError(ValueError):
    """A tracker state document that cannot be restored; the message says what is wrong."""


@dataclass(frozen=True)
class Detection:
    """One detected instance of a frame.

    ``box``: xyxy in frame pixels; ``mask``: COCO RLE ``{"size": [H, W], "counts": str or
    bytes}`` at the frame's size, or None (associated on boxes alone)."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    mask: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of :class:`Tracker` (similarities are IoUs or blends of them, in [0, 1]).

    ``high_score``: detections at or above it take part in the first pass and may start
    tracks, those below only continue tracks (second pass); ``match_sim``: the least
    similarity of a first-pass match; ``low_match_iou``: the least box IoU of a second-pass
    match; ``tentative_sim``: of a tentative track's match; ``mask_weight``: the mask IoU's
    share of the similarity; ``motion_cap``: the most the motion similarity (Mahalanobis
    distance to the prediction) counts for; ``min_hits``: matches in a row before a track is
    confirmed; ``max_age_s``: seconds of capture time a confirmed track survives unseen.
    """

    high_score: float = 0.5
    match_sim: float = 0.2
    low_match_iou: float = 0.4
    tentative_sim: float = 0.3
    mask_weight: float = 0.5
    motion_cap: float = 0.5
    min_hits: int = 2
    max_age_s: float = 1.5
    noise: MotionNoise = field(default_factory=MotionNoise)

    def __post_init__(self) -> None:
        for name in (
            "high_score",
            "match_sim",
            "low_match_iou",
            "tentative_sim",
            "mask_weight",
            "motion_cap",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TrackerConfig.{name} must be in [0, 1], got {value}")
        if self.min_hits < 1:
            raise ValueError(f"TrackerConfig.min_hits must be >= 1, got {self.min_hits}")
        if not self.max_age_s > 0:
            raise ValueError(f"TrackerConfig.max_age_s must be > 0, got {self.max_age_s}")


@dataclass
class _Track:
    id: int | None  # None while tentative
    class_id: int
    hits: int  # matches in a row while tentative; all matches once confirmed
    first_t: float
    last_t: float  # capture time of its last match
    lost: bool  # missed on the last frame
    mean: np.ndarray  # (4, 2): (cx, cy, w, h) positions and velocities
    cov: np.ndarray  # (4, 2, 2)
    mask: dict[str, Any] | None  # the last matched mask, counts as str

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "c": self.class_id,
            "h": self.hits,
            "f": self.first_t,
            "l": self.last_t,
            "lost": self.lost,
            "m": self.mean.reshape(-1).tolist(),
            "p": [
                self.cov[:, 0, 0].tolist(),
                self.cov[:, 0, 1].tolist(),
                self.cov[:, 1, 1].tolist(),
            ],
            "mask": self.mask,
        }


def _rounded(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State at the precision the document keeps (1/1000 pixel, 7 significant digits of
    variance): the tracker continues from exactly what it writes."""
    mean = np.round(mean, 3)
    mantissa = np.where(cov == 0, 0.0, np.floor(np.log10(np.abs(np.where(cov == 0, 1.0, cov)))))
    cov = np.round(cov / 10.0**mantissa, 6) * 10.0**mantissa
    return mean, cov


def _str_mask(mask: dict[str, Any] | None) -> dict[str, Any] | None:
    if mask is None:
        return None
    counts = mask["counts"]
    return {"size": [int(mask["size"][0]), int(mask["size"][1])], "counts": _text(counts)}


def _text(counts: Any) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def _coco(mask: dict[str, Any]) -> dict[str, Any]:
    counts = mask["counts"]
    return {
        "size": list(mask["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mask_iou(a: Sequence[dict[str, Any] | None], b: Sequence[dict[str, Any] | None]) -> np.ndarray:
    """IoU of RLE masks (N) x (M); 0 where either is missing or their sizes differ."""
    out = np.zeros((len(a), len(b)))
    ai = [i for i, m in enumerate(a) if m is not None]
    bi = [j for j, m in enumerate(b) if m is not None]
    if not ai or not bi:
        return out
    by_size: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for i in ai:
        mask = a[i]
        assert mask is not None
        by_size.setdefault(tuple(mask["size"]), ([], []))[0].append(i)
    for j in bi:
        mask = b[j]
        assert mask is not None
        key = tuple(mask["size"])
        if key in by_size:
            by_size[key][1].append(j)
    for rows, cols in by_size.values():
        if rows and cols:
            ious = mask_utils.iou(
                [_coco(a[i]) for i in rows],  # type: ignore[arg-type]
                [_coco(b[j]) for j in cols],  # type: ignore[arg-type]
                [0] * len(cols),
            )
            out[np.ix_(rows, cols)] = np.asarray(ious, dtype=np.float64).reshape(
                len(rows), len(cols)
            )
    return out


def _assign(sim: np.ndarray, least: float) -> list[tuple[int, int]]:
    """Row-column pairs of the assignment that maximises total similarity, keeping pairs at
    or above ``least``."""
    if sim.size == 0:
        return []
    cost = np.where(sim >= least, 1.0 - sim, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if sim[r, c] >= least]


class Tracker:
    """The tracks of one stream (see the module docstring)."""

    def __init__(self, config: TrackerConfig | None = None, state: dict[str, Any] | None = None):
        self.config = config or TrackerConfig()
        self.t: float | None = None  # capture time of the last frame
        self.next_id = 1
        self.frames = 0
        self.tracks: list[_Track] = []
        if state is not None:
            self._restore(state)

    # state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The whole state, JSON-compatible (see the module docstring)."""
        return {
            "v": STATE_VERSION,
            "t": self.t,
            "next": self.next_id,
            "frames": self.frames,
            "tracks": [track.to_doc() for track in self.tracks],
        }

    def _restore(self, doc: dict[str, Any]) -> None:
        try:
            if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
                raise TrackerStateError(f"tracker state: version must be {STATE_VERSION}")
            t = doc["t"]
            self.t = None if t is None else float(t)
            self.next_id = int(doc["next"])
            self.frames = int(doc["frames"])
            tracks = []
            for index, item in enumerate(doc["tracks"]):
                where = f"tracker state: tracks[{index}]"
                mean = np.asarray(item["m"], dtype=np.float64)
                p = np.asarray(item["p"], dtype=np.float64)
                if mean.shape != (8,) or p.shape != (3, 4):
                    raise TrackerStateError(f"{where}: 'm' must be 8 numbers, 'p' 3 x 4")
                if not (np.isfinite(mean).all() and np.isfinite(p).all()):
                    raise TrackerStateError(f"{where}: numbers must be finite")
                cov = np.empty((4, 2, 2))
                cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1] = p
                cov[:, 1, 0] = p[1]
                mask = item["mask"]
                if mask is not None and not (
                    isinstance(mask, dict) and isinstance(mask.get("counts"), str)
                ):
                    raise TrackerStateError(f"{where}: 'mask' must be an RLE with str counts")
                track_id = item["id"]
                if track_id is not None and not (isinstance(track_id, int) and track_id >= 1):
                    raise TrackerStateError(f"{where}: 'id' must be a positive int or null")
                tracks.append(
                    _Track(
                        id=track_id,
                        class_id=int(item["c"]),
                        hits=int(item["h"]),
                        first_t=float(item["f"]),
                        last_t=float(item["l"]),
                        lost=bool(item["lost"]),
                        mean=mean.reshape(4, 2),
                        cov=cov,
                        mask=_str_mask(mask),
                    )
                )
        except TrackerStateError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TrackerStateError(
                f"tracker state: malformed ({type(exc).__name__}: {exc})"
            ) from None
        if any(t.id is not None and t.id >= self.next_id for t in tracks):
            raise TrackerStateError("tracker state: a track id at or above 'next'")
        self.tracks = tracks

    # one frame ---------------------------------------------------------------------------
    def update(self, detections: Sequence[Detection], t: float) -> list[int | None]:
        """Track one frame captured at ``t`` (seconds): the confirmed track id of each
        detection, or None (a tentative track, or a low-scoring detection no track took)."""
        if not math.isfinite(t):
            raise ValueError(f"capture time must be finite, got {t}")
        cfg = self.config
        boxes = np.asarray([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise ValueError("detection boxes must be finite")
        first_frame = self.frames == 0
        self._predict(t)
        # Confirmed tracks unseen for too long die before they can take a detection.
        self.tracks = [tr for tr in self.tracks if tr.id is None or t - tr.last_t <= cfg.max_age_s]
        high = [i for i, d in enumerate(detections) if d.score >= cfg.high_score]
        low = [i for i, d in enumerate(detections) if d.score < cfg.high_score]
        confirmed = [k for k, tr in enumerate(self.tracks) if tr.id is not None]
        tentative = [k for k, tr in enumerate(self.tracks) if tr.id is None]
        matched_tracks: set[int] = set()
        owner: dict[int, _Track] = {}  # detection index -> the track that took it

        def match(tracks: list[int], dets: list[int], least: float, masks: bool) -> list[int]:
            """Match ``tracks`` with ``dets``; the detections left over."""
            if not tracks or not dets:
                return dets
            sim = self._similarity(tracks, [detections[i] for i in dets], boxes[dets], masks)
            pairs = _assign(sim, least)
            picked = [dets[c] for _, c in pairs]
            self._take(
                [self.tracks[tracks[r]] for r, _ in pairs],
                [detections[i] for i in picked],
                boxes[picked],
                t,
            )
            for r, c in pairs:
                matched_tracks.add(tracks[r])
                owner[dets[c]] = self.tracks[tracks[r]]
            taken = {c for _, c in pairs}
            return [d for c, d in enumerate(dets) if c not in taken]

        high_left = match(confirmed, high, cfg.match_sim, masks=True)
        recent = [k for k in confirmed if k not in matched_tracks and not self.tracks[k].lost]
        match(recent, low, cfg.low_match_iou, masks=False)
        high_left = match(tentative, high_left, cfg.tentative_sim, masks=True)

        kept = []
        for k, track in enumerate(self.tracks):
            if k in matched_tracks:
                kept.append(track)
            elif track.id is not None:  # a tentative track that misses a frame is dropped
                track.lost = True
                track.mean[2:, 1] = 0.0  # an unseen box keeps its last size
                kept.append(track)
        for i in high_left:
            mean, cov = kalman.initiate(boxes[i : i + 1], cfg.noise)
            det = detections[i]
            track = _Track(None, det.class_id, 1, t, t, False, mean[0], cov[0], _str_mask(det.mask))
            kept.append(track)
            owner[i] = track
        for track in kept:
            if track.id is None and (track.hits >= cfg.min_hits or first_frame):
                track.id = self.next_id
                self.next_id += 1
        if kept:
            means, covs = _rounded(
                np.stack([tr.mean for tr in kept]), np.stack([tr.cov for tr in kept])
            )
            for k, track in enumerate(kept):
                track.mean, track.cov = means[k], covs[k]
        self.tracks = kept
        self.frames += 1
        self.t = t
        return [owner[i].id if i in owner else None for i in range(len(detections))]

    def _predict(self, t: float) -> None:
        if not self.tracks:
            return
        dt = 0.0 if self.t is None else max(t - self.t, 0.0)
        mean = np.stack([tr.mean for tr in self.tracks])
        cov = np.stack([tr.cov for tr in self.tracks])
        mean, cov = kalman.predict(mean, cov, dt, self.config.noise)
        for k, track in enumerate(self.tracks):
            track.mean, track.cov = mean[k], cov[k]

    def _similarity(
        self, tracks: list[int], dets: list[Detection], boxes: np.ndarray, masks: bool
    ) -> np.ndarray:
        chosen = [self.tracks[k] for k in tracks]
        mean = np.stack([tr.mean for tr in chosen])
        sim = box_iou(kalman.to_xyxy(mean[:, :, 0]), boxes)
        if masks and self.config.mask_weight > 0:
            ious = mask_iou([tr.mask for tr in chosen], [d.mask for d in dets])
            usable = (
                np.array([not tr.lost and tr.mask is not None for tr in chosen])[:, None]
                & np.array([d.mask is not None for d in dets])[None, :]
            )
            w = self.config.mask_weight
            sim = np.where(usable, (1 - w) * sim + w * ious, sim)
        # Where boxes no longer overlap (a long step at a low frame rate, a turn), the
        # prediction's uncertainty still tells a likely match: ``motion_cap`` at the
        # prediction, 0 at the 95% gate. A lost track's uncertainty grows with the time it
        # has been unseen, so it is close to its cap near anything: capped below a good
        # overlap, it never takes a detection a track seen on the last frame overlaps well.
        cov = np.stack([tr.cov for tr in chosen])
        d2 = kalman.mahalanobis(mean, cov, boxes, self.config.noise)
        sim = np.maximum(
            sim, self.config.motion_cap * np.clip(1.0 - d2 / kalman.CHI2_GATE_4, 0.0, 1.0)
        )
        same = (
            np.array([tr.class_id for tr in chosen])[:, None]
            == np.array([d.class_id for d in dets])[None, :]
        )
        return np.where(same, sim, 0.0)

    def _take(
        self, tracks: list[_Track], dets: list[Detection], boxes: np.ndarray, t: float
    ) -> None:
        """Correct ``tracks`` with one detection each (``boxes``: theirs, (N, 4) xyxy)."""
        if not tracks:
            return
        mean = np.stack([tr.mean for tr in tracks])
        cov = np.stack([tr.cov for tr in tracks])
        mean, cov = kalman.update(mean, cov, boxes, self.config.noise)
        for k, (track, det) in enumerate(zip(tracks, dets, strict=True)):
            track.mean, track.cov = mean[k], cov[k]
            track.hits += 1
            track.last_t = t
            track.lost = False
            if det.mask is not None:
                track.mask = _str_mask(det.mask)
