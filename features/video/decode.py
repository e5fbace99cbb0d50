"""Streaming video decoding with OpenCV: probe a file, then yield frames one at a time, upright."""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np


class StepError(RuntimeError):
    """A failure in one extraction step of one video; the message names the video, the step and the cause."""

    def __init__(self, video: str, step: str, cause: str, frame: int | None = None):
        where = f" at frame {frame}" if frame is not None else ""
        super().__init__(f"{step} failed for {video}{where}: {cause}")
        self.video, self.step, self.cause, self.frame = video, step, cause, frame


@dataclass(frozen=True)
class VideoProbe:
    """What the container says about a video, with width and height as frames are delivered (upright)."""

    width: int
    height: int
    fps: float
    frame_count: int  # as reported by the container; 0 when unknown
    rotation: int  # degrees of display rotation in the metadata, already applied to frames
    codec: str


def _fourcc(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else ""


def open_video(path: str, video: str, threads: int = 0) -> cv2.VideoCapture:
    """Open a capture with display rotation applied, or raise a StepError naming the reason.

    `threads` caps FFmpeg's decoding threads (0: FFmpeg's default, one per core). One per Dask worker process
    is the efficient setting when there is a worker per core.
    """
    if not os.path.exists(path):
        raise StepError(video, "probe", f"file not found: {path}")
    if os.path.getsize(path) == 0:
        raise StepError(video, "probe", "file is empty (0 bytes)")
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads > 0 else []
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        raise StepError(video, "probe", "OpenCV/FFmpeg cannot open it as a video (not a video, or corrupt header)")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # portrait phone clips carry a rotation flag
    return cap


def probe(cap: cv2.VideoCapture) -> VideoProbe:
    """Container facts; with auto-orientation on, OpenCV reports the upright width and height."""
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return VideoProbe(width, height, fps, max(count, 0), rotation, _fourcc(cap.get(cv2.CAP_PROP_FOURCC)))


def frame_limit(info: VideoProbe, max_frames: int | None, max_seconds: float | None) -> int | None:
    """How many frames to decode at most, from the frame and seconds caps."""
    limits = []
    if max_frames is not None:
        limits.append(max_frames)
    if max_seconds is not None and info.fps > 0:
        limits.append(max(1, int(round(max_seconds * info.fps))))
    return min(limits) if limits else None


def iter_frames(cap: cv2.VideoCapture, video: str, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, BGR frame) one at a time, so memory stays flat whatever the clip length."""
    index = 0
    while limit is None or index < limit:
        try:
            ok, frame = cap.read()
        except cv2.error as exc:
            raise StepError(video, "decode", str(exc).strip(), frame=index) from exc
        if not ok or frame is None:
            return
        yield index, frame
        index += 1


def check_complete(info: VideoProbe, decoded: int, limit: int | None, video: str) -> None:
    """Raise when the stream ended well before the container said it would: a truncated or corrupt file."""
    if decoded == 0:
        raise StepError(video, "decode", "no frame could be decoded", frame=0)
    expected = info.frame_count if limit is None else min(limit, info.frame_count or limit)
    # Containers round their frame counts; a few missing frames at the end are normal.
    if expected and decoded < expected - max(2, int(0.02 * expected)):
        raise StepError(
            video, "decode", f"stream ended early: {decoded} of {expected} frames decoded (truncated or corrupt)",
            frame=decoded,
        )


def prefetch(frames: Iterator[tuple[int, np.ndarray]], depth: int) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ahead in a background thread (OpenCV releases the GIL), at most `depth` frames in flight.

    Decoding then overlaps detection and SSIM; memory stays bounded by the queue depth. Errors raised by
    the decoder are re-raised here, in the consumer.
    """
    if depth <= 0:
        yield from frames
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put(exc)

    thread = threading.Thread(target=produce, name="dfp-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
