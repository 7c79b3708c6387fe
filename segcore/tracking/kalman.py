"""A constant-velocity Kalman filter on boxes, in continuous time.

A box is tracked as its centre and size ``(cx, cy, w, h)``, each coordinate with its own
velocity. With a constant-velocity model, measurements of the four coordinates alone and
noise that is independent per coordinate, the four (position, velocity) pairs never couple:
the filter is four 2-state filters, vectorised over tracks, and the covariance of a track is
four 2x2 blocks (12 numbers, which is what the tracker's state document stores).

Time is in seconds, not frames: ``predict(dt)`` integrates the white-noise acceleration
model over ``dt`` (Bar-Shalom's discretisation), so a stream sampled at 2 fps and one at 15
fps follow the same motion with the same uncertainty per second, and a gap of dropped frames
is one longer step. Noise scales with the box's height, as in DeepSORT's filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionNoise:
    """Noise of the motion model and of the detector, relative to the box's height.

    ``accel``: acceleration spectral density, heights per s^2 (how fast velocity may change);
    ``measure``: std of a detected coordinate, in heights; ``velocity``: std of the velocity
    of a new track, heights per s; ``size_accel``: the same as ``accel`` for width and height.
    """

    accel: float = 2.0
    size_accel: float = 0.5
    measure: float = 0.05
    velocity: float = 1.0


def to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) centre x, centre y, width, height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1)


def to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) xyxy."""
    cxcywh = np.asarray(cxcywh, dtype=np.float64).reshape(-1, 4)
    half = np.maximum(cxcywh[:, 2:], 0.0) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def initiate(boxes: np.ndarray, noise: MotionNoise) -> tuple[np.ndarray, np.ndarray]:
    """The state of new tracks at their first boxes (N, 4 xyxy): ``mean`` (N, 4, 2) (each
    coordinate's position and velocity, velocity 0) and ``cov`` (N, 4, 2, 2)."""
    z = to_cxcywh(boxes)
    n = len(z)
    mean = np.zeros((n, 4, 2))
    mean[:, :, 0] = z
    scale = np.maximum(z[:, 3:4], 1.0)  # (N, 1) heights
    cov = np.zeros((n, 4, 2, 2))
    cov[:, :, 0, 0] = (2 * noise.measure * scale) ** 2
    cov[:, :, 1, 1] = (noise.velocity * scale) ** 2
    return mean, cov


def predict(
    mean: np.ndarray, cov: np.ndarray, dt: np.ndarray | float, noise: MotionNoise
) -> tuple[np.ndarray, np.ndarray]:
    """The states ``dt`` seconds later (``dt``: a number, or (N,) per track; <= 0: as they
    are). New arrays; the inputs are not changed."""
    dt = np.maximum(np.broadcast_to(np.asarray(dt, dtype=np.float64), (len(mean),)), 0.0)
    d = dt[:, None]  # (N, 1)
    mean = mean.copy()
    mean[:, :, 0] += d * mean[:, :, 1]
    scale = np.maximum(mean[:, 3:4, 0], 1.0)
    q = np.concatenate(
        [np.full((len(mean), 2), noise.accel), np.full((len(mean), 2), noise.size_accel)], 1
    ) * (scale**2)  # (N, 4) spectral density per coordinate
    p00, p01, p11 = cov[:, :, 0, 0], cov[:, :, 0, 1], cov[:, :, 1, 1]
    out = np.empty_like(cov)
    out[:, :, 0, 0] = p00 + 2 * d * p01 + d * d * p11 + q * d**3 / 3
    out[:, :, 0, 1] = out[:, :, 1, 0] = p01 + d * p11 + q * d**2 / 2
    out[:, :, 1, 1] = p11 + q * d
    return mean, out


def update(
    mean: np.ndarray, cov: np.ndarray, boxes: np.ndarray, noise: MotionNoise
) -> tuple[np.ndarray, np.ndarray]:
    """The states corrected by one measured box each (N, 4 xyxy). New arrays."""
    z = to_cxcywh(boxes)
    scale = np.maximum(z[:, 3:4], 1.0)
    r = (noise.measure * scale) ** 2  # (N, 1)
    p00, p01, p11 = cov[:, :, 0, 0], cov[:, :, 0, 1], cov[:, :, 1, 1]
    s = p00 + r
    k0, k1 = p00 / s, p01 / s  # Kalman gains of position and velocity
    innovation = z - mean[:, :, 0]
    mean = mean.copy()
    mean[:, :, 0] += k0 * innovation
    mean[:, :, 1] += k1 * innovation
    out = np.empty_like(cov)
    out[:, :, 0, 0] = (1 - k0) * p00
    out[:, :, 0, 1] = out[:, :, 1, 0] = (1 - k0) * p01
    out[:, :, 1, 1] = p11 - k1 * p01
    return mean, out


# The 0.95 quantile of chi-square with 4 degrees of freedom: a box whose squared Mahalanobis
# distance to a track's prediction is past it is unlikely to be that track's.
CHI2_GATE_4 = 9.4877


def mahalanobis(
    mean: np.ndarray, cov: np.ndarray, boxes: np.ndarray, noise: MotionNoise
) -> np.ndarray:
    """(N tracks) x (M boxes, xyxy) squared Mahalanobis distances of the boxes to the tracks'
    predicted measurements (innovation covariance: position variance plus the detector's)."""
    z = to_cxcywh(boxes)  # (M, 4)
    scale = np.maximum(mean[:, 3:4, 0], 1.0)  # (N, 1)
    s = cov[:, :, 0, 0] + (noise.measure * scale) ** 2  # (N, 4)
    diff = z[None, :, :] - mean[:, None, :, 0]  # (N, M, 4)
    return np.asarray(np.sum(diff**2 / s[:, None, :], axis=2))
