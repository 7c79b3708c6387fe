"""COCO mask and box AP of a model on a dataset, with pycocotools, and its images/s; and the
tracking metrics (MOTA, IDF1, HOTA, identity switches, line crossings) of a model with the
tracker on scenes of the tracking camera."""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from segcore.data.coco import annotation
from segcore.data.synthetic import TrackingScene
from segcore.images import to_float_chw
from segcore.labels import label_offset
from segcore.ops import masks_to_rle
from segcore.tracking import Analytics, Tracked, Tracker, TrackerConfig
from segcore.tracking import Detection as TrackDetection


@dataclass(frozen=True)
class EvalResult:
    mask_ap: float  # COCO AP, IoU .50:.95
    mask_ap50: float
    box_ap: float
    per_class_mask_ap: dict[str, float]
    images: int
    images_per_second: float

    def table(self) -> str:
        lines = [
            f"mask AP {self.mask_ap:.3f}  AP50 {self.mask_ap50:.3f}  box AP {self.box_ap:.3f}  "
            f"on {self.images} images, {self.images_per_second:.2f} images/s",
            f"{'class':<16} mask AP",
        ]
        lines += [f"{name:<16} {ap:.3f}" for name, ap in self.per_class_mask_ap.items()]
        return "\n".join(lines)


def evaluate(
    model: nn.Module,
    samples: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]],
    class_names: list[str],
    *,
    batch_size: int = 4,
) -> EvalResult:
    """Run ``model`` (eval mode) over ``(frame, target)`` samples (frames (H, W, 3) uint8,
    targets with 0-based ``labels`` and ``masks`` (N, H, W)) and score it with COCOeval."""
    model.eval()
    device = next(model.parameters()).device
    offset = label_offset(model)
    results: list[dict[str, Any]] = []
    elapsed = 0.0
    batch: list[tuple[int, np.ndarray]] = []

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal elapsed
        tensors = [to_float_chw(f, device) for _, f in batch]
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model(tensors)
        elapsed += time.perf_counter() - start
        for (image_id, _), out in zip(batch, outputs, strict=True):
            if out["masks"].shape[0] == 0:
                continue
            binary = out["masks"][:, 0] > 0.5
            rles = masks_to_rle(binary.cpu())
            mask_scores = out.get("mask_scores", out["scores"])
            boxes = out["boxes"].cpu().tolist()
            for k, rle in enumerate(rles):
                category = int(out["labels"][k]) - offset + 1
                x1, y1, x2, y2 = boxes[k]
                common = {"image_id": image_id, "category_id": category}
                results.append(
                    {
                        **common,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},  # type: ignore[attr-defined]
                        "score": float(mask_scores[k]),
                    }
                )
                results.append(
                    {**common, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(out["scores"][k])}
                )

    sizes: list[tuple[int, int]] = []
    targets: list[dict[str, np.ndarray]] = []
    for image_id, (frame, target) in enumerate(samples, start=1):
        sizes.append((frame.shape[0], frame.shape[1]))
        targets.append(target)
        batch.append((image_id, frame))
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not sizes:
        raise ValueError("evaluate: the dataset has no images")
    mask_ap, ap50, box_ap, per_class = _score(sizes, targets, results, class_names)
    count = len(sizes)
    return EvalResult(
        mask_ap=mask_ap,
        mask_ap50=ap50,
        box_ap=box_ap,
        per_class_mask_ap=per_class,
        images=count,
        images_per_second=count / elapsed if elapsed else 0.0,
    )


@dataclass(frozen=True)
class Detection:
    """One detected instance as a service reports it: 0-based class, score, COCO RLE mask
    at the image's size, box xyxy."""

    class_index: int
    score: float
    rle: dict[str, Any]
    box: tuple[float, float, float, float]


def evaluate_detections(
    targets: Sequence[tuple[tuple[int, int], dict[str, np.ndarray]]],
    detections: Sequence[Sequence[Detection]],
    class_names: list[str],
) -> EvalResult:
    """COCO AP of detections made elsewhere (e.g. mask events out of the pipeline) against
    ``(image size (H, W), target)`` pairs, one list of detections per image."""
    if len(targets) != len(detections):
        raise ValueError(f"{len(targets)} images but {len(detections)} detection lists")
    if not targets:
        raise ValueError("evaluate_detections: no images")
    results: list[dict[str, Any]] = []
    for image_id, found in enumerate(detections, start=1):
        for det in found:
            counts = det.rle["counts"]
            x1, y1, x2, y2 = det.box
            common = {"image_id": image_id, "category_id": det.class_index + 1}
            results.append(
                {
                    **common,
                    "segmentation": {
                        "size": list(det.rle["size"]),
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    },
                    "score": det.score,
                }
            )
            results.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": det.score})
    mask_ap, ap50, box_ap, per_class = _score(
        [size for size, _ in targets], [t for _, t in targets], results, class_names
    )
    return EvalResult(mask_ap, ap50, box_ap, per_class, len(targets), 0.0)


def _score(
    sizes: list[tuple[int, int]],
    targets: list[dict[str, np.ndarray]],
    results: list[dict[str, Any]],
    class_names: list[str],
) -> tuple[float, float, float, dict[str, float]]:
    """(mask AP, mask AP50, box AP, per-class mask AP) of COCO-format results."""
    images, annotations = [], []
    ann_id = 1
    for image_id, ((height, width), target) in enumerate(zip(sizes, targets, strict=True), 1):
        images.append({"id": image_id, "height": height, "width": width})
        for label, mask in zip(target["labels"], target["masks"], strict=True):
            annotations.append(annotation(ann_id, image_id, int(label), mask))
            ann_id += 1
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    stats = {}
    per_class: dict[str, float] = {}
    for kind in ("segm", "bbox"):
        subset = [r for r in results if (kind == "segm") == ("segmentation" in r)]
        if not subset:
            stats[kind] = (0.0, 0.0)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(subset)
            ev = COCOeval(gt, dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[kind] = (float(ev.stats[0]), float(ev.stats[1]))
        if kind == "segm":
            precision = ev.eval["precision"]  # (T, R, K, A, M)
            for k, name in enumerate(class_names):
                p = precision[:, :, k, 0, -1]
                per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return (
        max(stats["segm"][0], 0.0),
        max(stats["segm"][1], 0.0),
        max(stats["bbox"][0], 0.0),
        per_class or {n: 0.0 for n in class_names},
    )


# -- tracking -------------------------------------------------------------------------------
#
# A model and the tracker over scenes of the tracking camera (segcore.data.synthetic), scored
# against the objects' identities: CLEAR MOT (MOTA, identity switches) and IDF1 by
# motmetrics, HOTA by TrackEval (Luiten et al. 2020's reference code), predictions matched
# to the truth per frame by mask IoU; and the line crossings and zone entries that
# segcore.tracking.Analytics counts on the tracks, against the scene's own.

#: Tracking scenes are drawn from these seeds: outside the training seeds
#: (segcore.training.TRAIN_SEEDS, 0 to 999,999) and the validation seeds (10,000,000 on),
#: and from a random stream of their own (synthetic.TRACKING_STREAM).
TRACKING_SEEDS = range(20_000_000, 20_001_000)
MATCH_IOU = 0.5  # least mask IoU of a prediction that covers a true object (CLEAR, IDF1)
#: An object less visible than this on a frame (hidden behind others or outside the frame:
#: a sliver) is not required there, and a prediction mostly on it (at least half of the
#: prediction's mask) is not held against the tracker either: both are left out of that frame.
MIN_VISIBLE = 0.25


@dataclass(frozen=True)
class FrameMatch:
    """One frame as the tracking metrics see it: the true objects' ids (N,), the
    predictions' track ids (M,) and their mask IoUs (N, M)."""

    truth: np.ndarray
    predicted: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class TrackingScores:
    mota: float
    idf1: float
    hota: float  # mean over the IoU thresholds 0.05 .. 0.95
    id_switches: int
    fragmentations: int
    misses: int  # true objects no prediction covered, summed over frames
    false_positives: int  # predictions that covered no true object
    truth_objects: int  # true objects, summed over frames
    truth_ids: int
    predicted_ids: int


def tracking_scores(sequences: Sequence[Sequence[FrameMatch]]) -> TrackingScores:
    """The tracking metrics of one or more sequences, taken together (MOTA and IDF1 over
    all of their frames, HOTA as TrackEval combines sequences). A prediction counts as
    covering a true object at a mask IoU of at least :data:`MATCH_IOU` (CLEAR MOT, IDF1);
    HOTA averages over its own thresholds."""
    motmetrics, HOTA = _metric_packages()
    if not sequences:
        raise ValueError("tracking_scores: no sequences")
    accumulators = []
    hota = HOTA()
    hota_results = {}
    truth_ids = predicted_ids = 0
    for index, frames in enumerate(sequences):
        acc = motmetrics.MOTAccumulator(auto_id=True)
        for frame in frames:
            iou = np.asarray(frame.iou, dtype=np.float64).reshape(
                len(frame.truth), len(frame.predicted)
            )
            distance = np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan)
            acc.update(list(frame.truth.tolist()), list(frame.predicted.tolist()), distance)
        accumulators.append(acc)
        data = _trackeval_sequence(frames)
        truth_ids += data["num_gt_ids"]
        predicted_ids += data["num_tracker_ids"]
        with contextlib.redirect_stdout(io.StringIO()):
            hota_results[str(index)] = hota.eval_sequence(data)
    host = motmetrics.metrics.create()
    names = ["mota", "idf1", "num_switches", "num_fragmentations", "num_misses"]
    names += ["num_false_positives", "num_objects"]
    with contextlib.redirect_stdout(io.StringIO()):
        summary = host.compute_many(
            accumulators,
            metrics=names,
            names=[str(i) for i in range(len(accumulators))],
            generate_overall=True,
        )
        combined = hota.combine_sequences(hota_results)
    row = summary.loc["OVERALL"]

    def number(value: Any) -> float:
        value = float(value)
        return 0.0 if math.isnan(value) else value

    return TrackingScores(
        mota=number(row["mota"]),
        idf1=number(row["idf1"]),
        hota=float(np.mean(combined["HOTA"])),
        id_switches=int(row["num_switches"]),
        fragmentations=int(row["num_fragmentations"]),
        misses=int(row["num_misses"]),
        false_positives=int(row["num_false_positives"]),
        truth_objects=int(row["num_objects"]),
        truth_ids=truth_ids,
        predicted_ids=predicted_ids,
    )


class MissingExtraError(RuntimeError):
    """The tracking metrics' packages are not installed."""


def _metric_packages() -> tuple[Any, Any]:
    """motmetrics and TrackEval's HOTA, or :class:`MissingExtraError` saying how to get them."""
    try:
        import motmetrics
        from trackeval.metrics import HOTA
    except ImportError as exc:
        raise MissingExtraError(
            f"the tracking metrics need the eval extra (pip install 'segstream[eval]'): {exc}"
        ) from None
    return motmetrics, HOTA


def _trackeval_sequence(frames: Sequence[FrameMatch]) -> dict[str, Any]:
    """One sequence in TrackEval's form: ids renumbered 0, 1, ... in each set."""
    truth = sorted({int(i) for f in frames for i in f.truth.tolist()})
    predicted = sorted({int(i) for f in frames for i in f.predicted.tolist()})
    t_index = {v: k for k, v in enumerate(truth)}
    p_index = {v: k for k, v in enumerate(predicted)}
    return {
        "num_timesteps": len(frames),
        "num_gt_ids": len(truth),
        "num_tracker_ids": len(predicted),
        "num_gt_dets": sum(len(f.truth) for f in frames),
        "num_tracker_dets": sum(len(f.predicted) for f in frames),
        "gt_ids": [np.array([t_index[int(i)] for i in f.truth.tolist()], int) for f in frames],
        "tracker_ids": [
            np.array([p_index[int(i)] for i in f.predicted.tolist()], int) for f in frames
        ],
        "similarity_scores": [
            np.asarray(f.iou, dtype=np.float64).reshape(len(f.truth), len(f.predicted))
            for f in frames
        ],
    }


@dataclass(frozen=True)
class SceneTracking:
    """One scene's scores and counts: ``lines`` / ``lines_truth`` ``{line: {"forward": n,
    "backward": n}}``, zone entries counted on the tracks and in the truth."""

    seed: int
    frames: int
    scores: TrackingScores
    lines: dict[str, dict[str, int]]
    lines_truth: dict[str, dict[str, int]]
    zone_entries: dict[str, int]
    zone_entries_truth: dict[str, int]


@dataclass(frozen=True)
class TrackingResult:
    overall: TrackingScores
    scenes: tuple[SceneTracking, ...]
    inference_s_per_frame: float  # the model's
    tracking_s_per_frame: float  # the tracker's and the analytics' together

    def crossings(self) -> tuple[int, int, int]:
        """(counted, true, off): crossings summed over scenes, lines and directions, and the
        sum of |counted - true| over each scene's lines and directions."""
        counted = true = off = 0
        for scene in self.scenes:
            for line, truth in scene.lines_truth.items():
                for direction, n in truth.items():
                    got = scene.lines[line][direction]
                    counted, true, off = counted + got, true + n, off + abs(got - n)
        return counted, true, off

    def crossing_error(self) -> float:
        """Sum over scenes, lines and directions of |counted - true|, over the true total."""
        _, true, off = self.crossings()
        return off / true if true else float(off > 0)

    def table(self) -> str:
        o = self.overall
        counted, true, off = self.crossings()
        lines = [
            f"MOTA {o.mota:.3f}  IDF1 {o.idf1:.3f}  HOTA {o.hota:.3f}  ID switches "
            f"{o.id_switches}  fragmentations {o.fragmentations}  misses {o.misses}  "
            f"false positives {o.false_positives}  ({o.truth_objects} true objects in "
            f"{sum(s.frames for s in self.scenes)} frames of {len(self.scenes)} scenes; "
            f"{o.truth_ids} true ids, {o.predicted_ids} track ids)",
            f"line crossings {counted} counted, {true} true, {off} off "
            f"({100 * self.crossing_error():.1f}%)",
            f"model {1000 * self.inference_s_per_frame:.1f} ms/frame, tracker + analytics "
            f"{1000 * self.tracking_s_per_frame:.2f} ms/frame",
            f"{'seed':>10} {'MOTA':>6} {'IDF1':>6} {'HOTA':>6} {'IDsw':>5} {'frag':>5} "
            f"{'miss':>5} {'FP':>5} {'ids':>7} {'crossings':>10} {'entries':>8}",
        ]
        for s in self.scenes:
            got = sum(n for d in s.lines.values() for n in d.values())
            want = sum(n for d in s.lines_truth.values() for n in d.values())
            entries = sum(s.zone_entries.values())
            entries_truth = sum(s.zone_entries_truth.values())
            c = s.scores
            lines.append(
                f"{s.seed:>10} {c.mota:>6.3f} {c.idf1:>6.3f} {c.hota:>6.3f} {c.id_switches:>5} "
                f"{c.fragmentations:>5} {c.misses:>5} {c.false_positives:>5} "
                f"{f'{c.predicted_ids}/{c.truth_ids}':>7} {f'{got}/{want}':>10} "
                f"{f'{entries}/{entries_truth}':>8}"
            )
        return "\n".join(lines)


def detect(
    model: nn.Module, frames: Sequence[np.ndarray], min_score: float
) -> list[list[TrackDetection]]:
    """The model's detections (the tracker's input) of (H, W, 3) uint8 frames scoring at
    least ``min_score``: boxes xyxy in frame pixels, 0-based classes, RLE masks (> 0.5)."""
    device = next(model.parameters()).device
    offset = label_offset(model)
    with torch.inference_mode():
        outputs = model([to_float_chw(f, device) for f in frames])
    found: list[list[TrackDetection]] = []
    for out in outputs:
        keep = out["scores"] >= min_score
        binary = out["masks"][keep][:, 0] > 0.5
        rles = masks_to_rle(binary.cpu()) if int(keep.sum()) else []
        found.append(
            [
                TrackDetection(
                    box=(box[0], box[1], box[2], box[3]),
                    score=float(score),
                    class_id=int(label) - offset,
                    mask={"size": rle["size"], "counts": rle["counts"]},
                )
                for box, score, label, rle in zip(
                    out["boxes"][keep].cpu().tolist(),
                    out["scores"][keep].cpu().tolist(),
                    out["labels"][keep].cpu().tolist(),
                    rles,
                    strict=True,
                )
            ]
        )
    return found


def evaluate_tracking(
    model: nn.Module,
    seeds: Iterable[int],
    *,
    num_frames: int = 120,
    size: tuple[int, int] = (240, 320),
    fps: float = 15.0,
    min_score: float = 0.3,
    config: TrackerConfig | None = None,
) -> TrackingResult:
    """Run ``model`` (eval mode) on tracking scenes ``seeds`` (frames ``1 / fps`` s apart)
    and score its detections tracked as :func:`track_scene` does (see the section
    comment)."""
    from segcore.data import synthetic

    model.eval()
    names = list(getattr(model, "class_names", None) or synthetic.CLASSES)
    names = names[label_offset(model) :]
    scenes: list[SceneTracking] = []
    matched: list[list[FrameMatch]] = []
    inference = tracking = 0.0
    frame_count = 0
    for seed in seeds:
        scene = synthetic.tracking_scene(seed, num_frames, size)
        detections = []
        for rgb, _ in scene.frames:
            start = time.perf_counter()
            detections += detect(model, [rgb], min_score)
            inference += time.perf_counter() - start
        result, frames, seconds = track_scene(scene, detections, names, fps=fps, config=config)
        scenes.append(result)
        matched.append(frames)
        tracking += seconds
        frame_count += len(frames)
    if not scenes:
        raise ValueError("evaluate_tracking: no seeds")
    return TrackingResult(
        overall=tracking_scores(matched),
        scenes=tuple(scenes),
        inference_s_per_frame=inference / frame_count,
        tracking_s_per_frame=tracking / frame_count,
    )


def track_scene(
    scene: TrackingScene,
    detections: Sequence[Sequence[TrackDetection]],
    class_names: Sequence[str],
    *,
    fps: float = 15.0,
    config: TrackerConfig | None = None,
    events: list[tuple[int, dict[str, Any]]] | None = None,
) -> tuple[SceneTracking, list[FrameMatch], float]:
    """Track one scene's detections (one list per frame) with a
    :class:`~segcore.tracking.Tracker` (``config``) and count them with
    :class:`~segcore.tracking.Analytics` on the scene's lines and zones: the scene's scores
    and counts, its frames as the metrics see them, and the seconds the tracker and the
    analytics took. ``events``, when given, receives ``(frame, analytics event)`` pairs."""
    if len(detections) != len(scene.frames):
        raise ValueError(f"{len(scene.frames)} frames but {len(detections)} detection lists")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    config = config or TrackerConfig()
    tracker = Tracker(config)
    analytics = Analytics(scene.zones, scene.lines, forget_after_s=config.max_age_s)
    entries = {z.name: 0 for z in scene.zones}
    frames: list[FrameMatch] = []
    seconds = 0.0
    for t, ((_, target), found) in enumerate(zip(scene.frames, detections, strict=True)):
        start = time.perf_counter()
        ids = tracker.update(found, t / fps)
        tracked = [
            Tracked(i, class_names[d.class_id], d.class_id, d.box, d.mask)
            for d, i in zip(found, ids, strict=True)
            if i is not None
        ]
        happened = analytics.update(tracked, t / fps, scene.size)
        seconds += time.perf_counter() - start
        for event in happened:
            if event["type"] == "zone.enter":
                entries[event["zone"]] += 1
            if events is not None:
                events.append((t, event))
        frames.append(_frame_match(target, tracked))
    counts = analytics.counts()
    truth_entries = {z.name: 0 for z in scene.zones}
    for visit in scene.visits:
        truth_entries[visit.zone] += 1
    result = SceneTracking(
        seed=scene.seed,
        frames=len(frames),
        scores=tracking_scores([frames]),
        lines={
            name: {"forward": c["forward"], "backward": c["backward"]}
            for name, c in counts["lines"].items()
        },
        lines_truth=scene.line_counts(),
        zone_entries=entries,
        zone_entries_truth=truth_entries,
    )
    return result, frames, seconds


def _frame_match(target: dict[str, np.ndarray], tracked: Sequence[Tracked]) -> FrameMatch:
    """The frame's objects and tracked predictions as the metrics see them, less the
    objects seen less than :data:`MIN_VISIBLE` and the predictions mostly on those."""
    from pycocotools import mask as mask_utils

    truth = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in target["masks"]]
    predicted = [_coco_rle(item.mask) for item in tracked]
    kept = np.asarray(target.get("visible", np.ones(len(truth))) >= MIN_VISIBLE, dtype=bool)
    ids = np.array([item.track_id for item in tracked], dtype=np.int64)
    if not truth or not predicted:
        iou = np.zeros((int(kept.sum()), len(predicted)))
        return FrameMatch(target["ids"][kept], ids, iou)
    iou = np.asarray(mask_utils.iou(truth, predicted, [0] * len(predicted))).reshape(
        len(truth), len(predicted)
    )
    # With the truth as "crowd", pycocotools gives intersection / the prediction's area.
    share = np.asarray(mask_utils.iou(predicted, truth, [1] * len(truth))).reshape(
        len(predicted), len(truth)
    )
    on_ignored = (share[:, ~kept] >= 0.5).any(axis=1) if (~kept).any() else np.zeros(len(ids), bool)
    return FrameMatch(target["ids"][kept], ids[~on_ignored], iou[np.ix_(kept, ~on_ignored)])


def _coco_rle(mask: dict[str, Any] | None) -> dict[str, Any]:
    assert mask is not None
    counts = mask["counts"]
    return {
        "size": list(mask["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
