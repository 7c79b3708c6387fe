"""Training: ``segstream train CONFIG.toml``.

The config names the model, the data and the schedule (see :class:`TrainConfig`); data is
``synthetic:train`` (frames of the synthetic camera from training seeds), ``synthetic:val``
(seeds training never draws) or ``coco:IMAGES_DIR:ANNOTATIONS.json``. Checkpoints hold the
model, the optimiser and the step, so a run resumes where it stopped.
"""

from __future__ import annotations

import random
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

import segcore
from segcore.data import synthetic
from segcore.data.coco import CocoDataset, boxes_of
from segcore.evaluation import EvalResult, evaluate
from segcore.images import to_float_chw
from segcore.labels import label_offset

TRAIN_SEEDS = range(0, 1_000_000)
VAL_SEEDS = range(10_000_000, 10_000_000 + 1_000)  # never drawn for training
FRAMES_PER_SCENE = 120


@dataclass
class TrainConfig:
    model: str
    output: str
    train_data: str = "synthetic:train"
    val_data: str = "synthetic:val"
    iterations: int = 3000
    batch_size: int = 8
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: int = 200
    lr_steps: list[int] = field(default_factory=list)  # iterations where lr is divided by 10
    eval_every: int = 1000
    eval_images: int = 100
    checkpoint_every: int = 500
    image_size: list[int] = field(default_factory=lambda: [240, 320])  # synthetic frames
    seed: int = 0
    threads: int = 0  # torch threads; 0 leaves torch's default
    model_overrides: dict[str, Any] = field(default_factory=dict)
    export: str | None = None  # float16 weights written here at the end

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
        missing = sorted({"model", "output"} - set(data))
        if missing:
            raise ValueError(f"{path}: missing settings {', '.join(missing)}")
        return cls(**data)


Sample = tuple[np.ndarray, dict[str, np.ndarray]]


def synthetic_samples(split: str, count: int, size: tuple[int, int]) -> list[Sample]:
    """``count`` frames of the synthetic camera from the split's seeds (val: fixed)."""
    if split != "val":
        raise ValueError(f"synthetic:{split}: a fixed sample list is only made for val")
    seeds = list(VAL_SEEDS)
    return [
        synthetic.frame(seeds[i % len(seeds)], (i * 37) % FRAMES_PER_SCENE, size)
        for i in range(count)
    ]


def open_eval_data(spec: str, count: int, size: tuple[int, int]) -> tuple[list[Sample], list[str]]:
    """Samples and class names of an evaluation data spec."""
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        return synthetic_samples(rest or "val", count, size), list(synthetic.CLASSES)
    if kind == "coco":
        images_dir, _, annotations = rest.partition(":")
        dataset = CocoDataset(images_dir, annotations)
        samples = []
        for i in range(min(count, len(dataset))):
            frame, target = dataset.frame(i)
            target["masks"] = target["masks"].astype(bool)
            samples.append((frame, target))
        return samples, dataset.class_names
    raise ValueError(f"unknown data {spec!r}: use synthetic:val or coco:IMAGES_DIR:ANNOTATIONS")


def training_batches(
    spec: str, batch_size: int, size: tuple[int, int], rng: random.Random
) -> Iterator[list[Sample]]:
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        if rest not in ("", "train"):
            raise ValueError(f"train on synthetic:train, not {spec}")
        while True:
            batch: list[Sample] = []
            while len(batch) < batch_size:
                frame, target = synthetic.frame(
                    rng.choice(TRAIN_SEEDS), rng.randrange(FRAMES_PER_SCENE), size
                )
                if len(target["labels"]):
                    if rng.random() < 0.5:  # horizontal flip
                        frame = frame[:, ::-1].copy()
                        target = {**target, "masks": target["masks"][:, :, ::-1].copy()}
                    batch.append((frame, target))
            yield batch
    elif kind == "coco":
        images_dir, _, annotations = rest.partition(":")
        dataset = CocoDataset(images_dir, annotations)
        order = [i for i in range(len(dataset)) if dataset.images[i]["annotations"]]
        if not order:
            raise ValueError(f"{annotations}: no image has an annotation to train on")
        while True:
            rng.shuffle(order)
            for start in range(0, len(order) - batch_size + 1, batch_size):
                yield [dataset.frame(i) for i in order[start : start + batch_size]]
    else:
        raise ValueError(f"unknown data {spec!r}: use synthetic:train or coco:IMAGES:ANNOTATIONS")


def _to_model(
    batch: list[Sample], model: nn.Module
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Frames and targets in the model's conventions (Mask R-CNN counts the background)."""
    offset = label_offset(model)
    images, targets = [], []
    for frame, target in batch:
        images.append(to_float_chw(frame))
        masks = target["masks"].astype(np.uint8)
        targets.append(
            {
                "boxes": torch.from_numpy(boxes_of(masks)),
                "labels": torch.from_numpy(np.asarray(target["labels"], np.int64) + offset),
                "masks": torch.from_numpy(masks),
            }
        )
    return images, targets


def _lr_at(config: TrainConfig, step: int) -> float:
    lr = config.lr * min(1.0, (step + 1) / max(config.warmup, 1))
    return lr * 0.1 ** sum(step >= s for s in config.lr_steps)


def train(config: TrainConfig, *, resume: bool = True, quiet: bool = False) -> EvalResult | None:
    """Run the schedule; return the last evaluation (None if none ran)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    model = segcore.build(config.model, **config.model_overrides)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    step = 0
    checkpoint = output / "last.pt"
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        rng.setstate(state["rng"])
        if not quiet:
            print(f"resumed from {checkpoint} at step {step}")
    size = (int(config.image_size[0]), int(config.image_size[1]))
    batches = training_batches(config.train_data, config.batch_size, size, rng)
    result: EvalResult | None = None
    bar = tqdm(total=config.iterations, initial=step, disable=quiet, dynamic_ncols=True)
    seen, started = 0, time.perf_counter()
    while step < config.iterations:
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, step)
        images, targets = _to_model(next(batches), model)
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {float(loss)}: {losses}")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        step += 1
        seen += len(images)
        rate = seen / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", img_s=f"{rate:.1f}")
        bar.update(1)
        if step % config.checkpoint_every == 0 or step == config.iterations:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "rng": rng.getstate(),
            }
            torch.save(state, output / "last.tmp")
            (output / "last.tmp").replace(checkpoint)
        if config.eval_every and (step % config.eval_every == 0 or step == config.iterations):
            samples, names = open_eval_data(config.val_data, config.eval_images, size)
            result = evaluate(model, samples, names)
            model.train()
            bar.write(f"step {step}: {result.table()}")
    bar.close()
    if config.export:
        export = Path(config.export)
        export.parent.mkdir(parents=True, exist_ok=True)
        half = {
            k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()
        }
        torch.save(half, export)
        if not quiet:
            print(f"weights written to {export} ({export.stat().st_size / 1e6:.1f} MB)")
    return result
