"""A small labelled demo dataset in DFDC layout, made from face images that ship inside installed packages.

REAL clips animate a photo (skimage's astronaut, matplotlib's Grace Hopper) with a smooth camera path,
zoom and lighting changes and sensor noise. Each FAKE clip replays its REAL clip's camera path with another
face (or a warped copy of the same face) blended into the face region, the blend jittered frame to frame,
which leaves the seams and flicker a detector should find. Same seed, same files.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import string
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data


@dataclass(frozen=True)
class Portrait:
    """A source photo (RGB) and its face box x, y, w, h."""

    name: str
    image: np.ndarray
    face: tuple[int, int, int, int]


def load_portraits() -> list[Portrait]:
    """Face photos shipped with scikit-image and matplotlib; no downloads."""
    astronaut = skimage.data.astronaut()
    hopper_path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    hopper = cv2.cvtColor(cv2.imread(str(hopper_path)), cv2.COLOR_BGR2RGB)
    # Face boxes as found by OpenCV's frontal Haar cascade on these exact images.
    return [Portrait("astronaut", astronaut, (177, 66, 95, 95)), Portrait("grace_hopper", hopper, (155, 105, 222, 222))]


LFW_FACES = 100  # skimage's LFW subset holds 100 faces, then 100 crops of background


def lfw_faces() -> np.ndarray:
    """The faces of skimage's 25x25 LFW subset as uint8 RGB, used as low-resolution donor faces.

    Only the first LFW_FACES images are faces: a donor drawn from the background crops after them left a
    FAKE clip with no face for MTCNN to find.
    """
    faces = (skimage.data.lfw_subset()[:LFW_FACES] * 255).astype(np.uint8)
    return np.repeat(faces[..., None], 3, axis=-1)


@dataclass(frozen=True)
class ClipPlan:
    name: str
    label: str
    original: str | None
    portrait: int
    flip: bool
    tint: tuple[float, float, float]
    size: tuple[int, int]  # width, height
    motion_seed: int
    donor: str  # "" for REAL, "other" or "warp" or "lfw:<i>" for FAKE


def _random_name(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        name = "".join(rng.choice(list(string.ascii_lowercase), 10))
        if name not in taken:
            taken.add(name)
            return name


def plan_clips(n_clips: int, seed: int) -> list[ClipPlan]:
    """Half REAL, half FAKE; every FAKE has its own REAL original."""
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    n_real = max(1, n_clips // 2)
    plans = []
    donors = ["other", "warp", "lfw"]
    for i in range(n_real):
        real = ClipPlan(
            name=_random_name(rng, taken), label="REAL", original=None, portrait=i % 2, flip=bool((i // 2) % 2),
            tint=tuple(float(t) for t in rng.uniform(0.9, 1.1, 3)),
            size=(360, 640) if i % 5 == 4 else (640, 360), motion_seed=int(rng.integers(1 << 30)), donor="",
        )
        plans.append(real)
        if len(plans) < n_clips:
            donor = donors[i % 3]
            if donor == "lfw":
                donor = f"lfw:{int(rng.integers(LFW_FACES))}"
            plans.append(ClipPlan(_random_name(rng, taken), "FAKE", f"{real.name}.mp4", real.portrait, real.flip,
                                  real.tint, real.size, real.motion_seed, donor))
    return plans[:n_clips]


def _camera(t: float, params: np.ndarray, face_center: np.ndarray, out_size: tuple[int, int],
            face_h: int) -> np.ndarray:
    """2x3 affine taking scene pixels to output pixels at time t in [0, 1]: pan, zoom, slight roll."""
    w, h = out_size
    ax, ay, fx, fy, px, py, zoom_amp, roll_amp, face_frac = params
    scale = face_frac * min(w, h) / face_h * (1.0 + zoom_amp * np.sin(np.pi * t))
    angle = roll_amp * np.sin(2 * np.pi * t + px)
    center = face_center + np.array([ax * np.sin(2 * np.pi * fx * t + px), ay * np.sin(2 * np.pi * fy * t + py)])
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), float(scale))
    m[:, 2] += np.array([w / 2, h / 2]) - center
    return m


def _scene(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo on a wider, blurred copy of itself, so the camera can pull back without showing edges."""
    h, w = image.shape[:2]
    back = cv2.GaussianBlur(cv2.resize(image, (3 * w, 3 * h)), (0, 0), 25)
    alpha = np.ones((h, w), np.float32)
    alpha = cv2.GaussianBlur(cv2.copyMakeBorder(alpha[20:-20, 20:-20], 20, 20, 20, 20, cv2.BORDER_CONSTANT, 0),
                             (0, 0), 8)[..., None]
    ox, oy = w, h
    region = back[oy:oy + h, ox:ox + w].astype(np.float32)
    back[oy:oy + h, ox:ox + w] = (alpha * image + (1 - alpha) * region).astype(np.uint8)
    return back, (ox, oy)


def _ellipse_mask(h: int, w: int, feather: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = ((xx - w / 2 + 0.5) / (w * 0.42)) ** 2 + ((yy - h / 2 + 0.5) / (h * 0.5)) ** 2
    mask = np.clip((1.0 - d) / feather, 0, 1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.04 * w))


def _color_transfer(donor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Match the donor face's LAB mean and spread to the target face region (as face swaps do)."""
    d = cv2.cvtColor(donor, cv2.COLOR_RGB2LAB).astype(np.float32)
    t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    d = (d - d.mean((0, 1))) / (d.std((0, 1)) + 1e-6) * t.std((0, 1)) + t.mean((0, 1))
    return cv2.cvtColor(np.clip(d, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _donor_face(plan: ClipPlan, portraits: list[Portrait], lfw: np.ndarray, face_w: int, face_h: int) -> np.ndarray:
    if plan.donor.startswith("lfw:"):
        src = lfw[int(plan.donor.split(":")[1])]
    else:
        p = portraits[(plan.portrait + 1) % len(portraits)] if plan.donor == "other" else portraits[plan.portrait]
        x, y, w, h = p.face
        src = p.image[y:y + h, x:x + w]
        if plan.donor == "warp":  # the same face, enlarged and rotated, as a poorly aligned swap would be
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 7.0, 1.12)
            src = cv2.warpAffine(src, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    face = cv2.resize(src, (face_w, face_h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(face, (0, 0), 1.2)  # swapped faces are rendered at lower resolution


def render_frames(plan: ClipPlan, portraits: list[Portrait], lfw: np.ndarray, frames: int) -> Iterator[np.ndarray]:
    """The clip's frames, RGB, one at a time."""
    portrait = portraits[plan.portrait]
    image = portrait.image.copy()
    x, y, w, h = portrait.face
    if plan.flip:
        image = image[:, ::-1].copy()
        x = image.shape[1] - x - w
    image = np.clip(image.astype(np.float32) * np.array(plan.tint, np.float32), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(plan.motion_seed)
    params = np.array([rng.uniform(10, 30), rng.uniform(5, 20), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0),
                       rng.uniform(0, 6.28), rng.uniform(0, 6.28), rng.uniform(0.05, 0.2), rng.uniform(0.5, 2.0),
                       rng.uniform(0.3, 0.45)])
    light = rng.uniform(0.1, 0.2), rng.uniform(0.5, 1.5), rng.uniform(0, 6.28)
    noise_rng = np.random.default_rng(plan.motion_seed + 1)
    jitter_rng = np.random.default_rng(plan.motion_seed + 2)
    face_center = np.array([x + w / 2, y + h / 2])
    mask = _ellipse_mask(h, w, 0.25)[..., None]
    donor = None
    if plan.label == "FAKE":
        donor = _color_transfer(_donor_face(plan, portraits, lfw, w, h), image[y:y + h, x:x + w])
    base, (ox, oy) = _scene(image)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        canvas = base
        if donor is not None:
            # Per-frame jitter of the blend: position, scale and opacity wobble, as in frame-wise swaps.
            dx, dy = jitter_rng.normal(0, 1.2, 2)
            s = 1.0 + jitter_rng.normal(0, 0.02)
            alpha = jitter_rng.uniform(0.8, 1.0)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
            m[:, 2] += (dx, dy)
            moved = cv2.warpAffine(donor, m, (w, h), borderMode=cv2.BORDER_REFLECT)
            moved_mask = cv2.warpAffine(mask[..., 0], m, (w, h))[..., None] * alpha
            canvas = base.copy()
            region = canvas[oy + y:oy + y + h, ox + x:ox + x + w].astype(np.float32)
            canvas[oy + y:oy + y + h, ox + x:ox + x + w] = (moved_mask * moved + (1 - moved_mask) * region).astype(np.uint8)
        cam = _camera(t, params, face_center + (ox, oy), plan.size, h)
        frame = cv2.warpAffine(canvas, cam, plan.size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + light[0] * np.sin(2 * np.pi * light[1] * t + light[2])
        noisy = frame.astype(np.float32) * gain + noise_rng.normal(0, 2.0, frame.shape)
        yield np.clip(noisy, 0, 255).astype(np.uint8)


def render_clip(plan: ClipPlan, portraits: list[Portrait], lfw: np.ndarray, frames: int, fps: float,
                path: Path) -> None:
    """Write one clip as an MP4 (MPEG-4 Part 2), atomically."""
    tmp = path.with_name(f".tmp-{path.name}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, plan.size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MP4 to {tmp}")
    try:
        for frame in render_frames(plan, portraits, lfw, frames):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)


def make_demo_dataset(out_dir: str | os.PathLike, n_clips: int = 20, frames: int = 60, fps: float = 30.0,
                      seed: int = 0, workers: int = 1) -> Path:
    """Write `n_clips` MP4 files and a DFDC-style metadata.json into out_dir; returns the folder.

    With `workers` > 1 the clips are rendered in that many processes (the files are the same).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    portraits, lfw = load_portraits(), lfw_faces()
    plans = plan_clips(n_clips, seed)
    jobs = [(plan, portraits, lfw, frames, fps, out / f"{plan.name}.mp4") for plan in plans]
    if workers > 1 and len(plans) > 1:
        # spawn, not fork: the caller may hold threads (a Prefect client, Dask) that a forked child would inherit
        with ProcessPoolExecutor(min(workers, len(plans)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in [pool.submit(render_clip, *job) for job in jobs]:
                done.result()
    else:
        for job in jobs:
            render_clip(*job)
    metadata = {f"{plan.name}.mp4": {"label": plan.label, "split": "train", "original": plan.original}
                for plan in plans}
    tmp = out / ".metadata.json.tmp"
    tmp.write_text(json.dumps(metadata, indent=1, sort_keys=True))
    os.replace(tmp, out / "metadata.json")
    return out


def hold_out_pair(dataset: str | os.PathLike, dest: str | os.PathLike) -> dict[str, str]:
    """Move one FAKE clip and its REAL original out of a generated dataset into the plain folder `dest`.

    The dataset's metadata.json stops listing them and `dest` gets no labels, so they are extracted unlabelled
    and no training run sees them: the pair is a whole leakage group, held out for scoring. Returns their true
    labels by file name. The pair is the one whose FAKE sorts last by name: same dataset, same pair.
    """
    data, out = Path(dataset), Path(dest)
    metadata = json.loads((data / "metadata.json").read_text())
    fakes = sorted(n for n, m in metadata.items() if m["label"] == "FAKE" and m.get("original") in metadata)
    if not fakes:
        raise ValueError(f"{data} has no FAKE clip whose REAL original is there to hold out with it")
    fake = fakes[-1]
    held = {metadata[fake]["original"]: "REAL", fake: "FAKE"}
    out.mkdir(parents=True, exist_ok=True)
    for name in held:
        os.replace(data / name, out / name)
        del metadata[name]
    tmp = data / ".metadata.json.tmp"
    tmp.write_text(json.dumps(metadata, indent=1, sort_keys=True))
    os.replace(tmp, data / "metadata.json")
    return held
