"""Frames onto the device for the GPU segment worker: a batch's JPEGs decoded there (nvJPEG
through ``torchvision.io.decode_jpeg(device="cuda")``) and host buffers, pinned on CUDA, for
what is copied to it.

The CPU side of the contract of :meth:`services.common.frames.FrameMessage.image` holds:
:class:`Declared` (triage's ``decode``) reads only the image header and refuses a record whose
image declares another size than its headers, so no record makes the device allocate more
than its headers (checked against the frame limits) say; :func:`decode_frames` gives each
frame as (H, W, 3) uint8 on the device or the :class:`DecodeError` saying why it is not one.
Other encodings than JPEG, and JPEGs the device decoder refuses, are decoded on the CPU
(Pillow, as ``FrameMessage.image``) and copied through a pinned buffer.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from services.common.events import DecodeError
from services.common.frames import FrameMessage

log = logging.getLogger("segstream.segment")


class Declared:
    """Triage's ``decode`` for the GPU worker: checks the image header, decodes no pixel.

    Returns a read-only (H, W, 3) uint8 stand-in of the frame's shape (zero strides: no
    memory) and keeps the message in :attr:`messages`, in the order of triage's ready
    frames, for :func:`decode_frames`; raises DecodeError as ``FrameMessage.image`` does for
    bytes that are not an image of the message's encoding or declare another size."""

    def __init__(self) -> None:
        self.messages: list[FrameMessage] = []

    def __call__(self, message: FrameMessage) -> np.ndarray:
        name = f"frame {message.stream_id}#{message.seq}"
        try:
            with Image.open(io.BytesIO(message.data), formats=[message.encoding.upper()]) as img:
                size = img.size
        except Exception as exc:  # a parser fed untrusted bytes may raise anything
            raise DecodeError(
                f"{name}: not a {message.encoding} image ({type(exc).__name__}: {exc})"
            ) from exc
        if size != (message.width, message.height):
            raise DecodeError(
                f"{name}: image declares {size[0]}x{size[1]}, "
                f"headers say {message.width}x{message.height}"
            )
        self.messages.append(message)
        return np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (message.height, message.width, 3))


class Staging:
    """A ring of reusable host buffers for copies to ``device``, pinned when the device is
    CUDA (page-locked memory the copy engine reads while the CPU goes on).

    A buffer is handed out again only after the work queued on the current stream when it
    was last released has completed (a CUDA event per buffer), so a copy still in flight
    never sees its bytes overwritten. Buffers grow to the largest request (powers of two)
    and are kept."""

    def __init__(self, device: torch.device | str, slots: int = 4) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.device = torch.device(device)
        self.pinned = self.device.type == "cuda"
        self._buffers: list[Tensor | None] = [None] * slots
        self._events: list[torch.cuda.Event | None] = [None] * slots
        self._next = 0

    @contextmanager
    def buffer(self, nbytes: int) -> Iterator[Tensor]:
        """A (nbytes,) uint8 host tensor to fill and queue copies from; on exit the queued
        work is fenced before the buffer comes round again."""
        index = self._next
        self._next = (index + 1) % len(self._buffers)
        event = self._events[index]
        if event is not None:
            event.synchronize()
        current = self._buffers[index]
        if current is None or current.numel() < nbytes:
            size = 1 << max(16, (nbytes - 1).bit_length())
            current = torch.empty(size, dtype=torch.uint8, pin_memory=self.pinned)
            self._buffers[index] = current
        try:
            yield current[:nbytes]
        finally:
            if self.pinned:
                fence = torch.cuda.Event()
                fence.record()
                self._events[index] = fence

    def upload(self, frames: Sequence[np.ndarray]) -> list[Tensor]:
        """(H, W, 3) uint8 arrays -> tensors of the same shape on the device (copied through
        one buffer, asynchronously on CUDA)."""
        sizes = [f.nbytes for f in frames]
        with self.buffer(sum(sizes)) as host:
            out, start = [], 0
            for frame, size in zip(frames, sizes, strict=True):
                view = host[start : start + size].view(frame.shape)
                view.numpy()[...] = frame
                out.append(view.to(self.device, non_blocking=True) if self.pinned else view.clone())
                start += size
        return out


def decode_frames(
    messages: Sequence[FrameMessage], device: torch.device | str, staging: Staging
) -> list[Tensor | DecodeError]:
    """Each message's image as (H, W, 3) uint8 on ``device`` (a channels-last view of the
    decoder's planes), or the DecodeError saying why it is not one.

    On CUDA the JPEGs are decoded in one batched nvJPEG call from a pinned buffer; when that
    call fails (one bad JPEG fails the batch) each is decoded alone, and one the device
    refuses is decoded on the CPU, so only bytes no decoder reads are errors. A decoded size
    other than the headers' is an error too."""
    device = torch.device(device)
    out: list[Tensor | DecodeError | None] = [None] * len(messages)
    on_device = [
        i for i, m in enumerate(messages) if device.type == "cuda" and m.encoding == "jpeg"
    ]
    if on_device:
        decoded = _nvjpeg([messages[i] for i in on_device], device, staging)
        for i, planes in zip(on_device, decoded, strict=True):
            if planes is not None:
                out[i] = _checked(messages[i], planes.permute(1, 2, 0))
    on_host = [i for i, result in enumerate(out) if result is None]
    arrays: list[tuple[int, np.ndarray]] = []
    for i in on_host:
        try:
            arrays.append((i, messages[i].image()))
        except DecodeError as exc:
            out[i] = exc
    if arrays:
        for (i, _), frame in zip(arrays, staging.upload([a for _, a in arrays]), strict=True):
            out[i] = frame
    return [r if r is not None else DecodeError("not decoded") for r in out]


def _nvjpeg(
    messages: Sequence[FrameMessage], device: torch.device, staging: Staging
) -> list[Tensor | None]:
    """(3, H, W) uint8 planes on ``device`` per JPEG, None for one the device decoder
    refuses."""
    from torchvision.io import ImageReadMode, decode_jpeg

    sizes = [len(m.data) for m in messages]
    with staging.buffer(sum(sizes)) as host:
        inputs, start = [], 0
        for message, size in zip(messages, sizes, strict=True):
            view = host[start : start + size]
            view.numpy()[...] = np.frombuffer(message.data, np.uint8)
            inputs.append(view)
            start += size
        try:
            return list(decode_jpeg(inputs, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            log.debug("batched device decode failed, decoding one by one: %s", exc)
        out: list[Tensor | None] = []
        for data in inputs:
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def _checked(message: FrameMessage, frame: Tensor) -> Tensor | DecodeError:
    if tuple(frame.shape) != (message.height, message.width, 3):
        return DecodeError(
            f"frame {message.stream_id}#{message.seq}: image is "
            f"{frame.shape[1]}x{frame.shape[0]}x{frame.shape[2]}, headers say "
            f"{message.width}x{message.height}x3"
        )
    return frame
