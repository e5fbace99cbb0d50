"""Self-blended images (Shiohara and Yamasaki, CVPR 2022): synthetic fakes made from REAL face crops.

A slightly transformed copy of the face (colour, sharpness, scale, shift) is blended back into the same crop
through a soft, randomly shaped mask over the inner face. The result carries the traces every face swap
leaves (a blending boundary, colour and frequency mismatch) without any identity change, so a detector
trained on it cannot learn the identity or one method's look. It needs no fake videos at all.
"""

from __future__ import annotations

import cv2
import numpy as np


def face_mask(side: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """A soft mask in [0, 1] over the inner face of a square crop with the given margin: a random ellipse,
    randomly deformed, with a blurred edge."""
    box = side / (1 + margin)
    centre = np.array([side / 2 + rng.uniform(-0.04, 0.04) * box, side / 2 + rng.uniform(0.0, 0.08) * box])
    axes = (box * rng.uniform(0.32, 0.44), box * rng.uniform(0.40, 0.52))
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (centre.round().astype(int).tolist(), (int(axes[0] * 2), int(axes[1] * 2)),
                       float(rng.uniform(-10, 10))), 1.0, -1)
    # Deform the outline with a smooth random displacement field, then soften the edge.
    grid = rng.normal(0, box * 0.03, (2, 4, 4)).astype(np.float32)
    dx, dy = (cv2.resize(g, (side, side), interpolation=cv2.INTER_CUBIC) for g in grid)
    xs, ys = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    mask = cv2.remap(mask, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    sigma = box * rng.uniform(0.02, 0.08)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return np.clip(mask / max(mask.max(), 1e-6), 0, 1) * rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def _source(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The transformed copy that is blended in: colour and sharpness changes, then a small scale and shift."""
    side = crop.shape[0]
    out = crop.astype(np.float32)
    out = out * rng.uniform(0.9, 1.1, 3) + rng.uniform(-12, 12, 3)  # per-channel gain and offset
    out = out * rng.uniform(0.85, 1.15) + (1 - rng.uniform(0.85, 1.15)) * out.mean()  # contrast
    kind = rng.integers(0, 3)
    if kind == 0:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.6))
    elif kind == 1:
        out = cv2.addWeighted(out, 1.6, cv2.GaussianBlur(out, (0, 0), 1.0), -0.6, 0)  # sharpen
    scale = rng.uniform(0.96, 1.04)
    shift = rng.uniform(-0.02, 0.02, 2) * side
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), 0.0, scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(out, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def self_blend_with_mask(crop: np.ndarray, margin: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One self-blended fake of a square uint8 crop (any channel order; same shape and dtype), and the blend
    mask (side x side, in [0, 1]): where, and how strongly, the fake differs from the crop."""
    if crop.ndim != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"self_blend needs a square colour crop, got shape {crop.shape}")
    mask = face_mask(crop.shape[0], margin, rng)
    blended = _source(crop, rng) * mask[..., None] + crop.astype(np.float32) * (1 - mask[..., None])
    return np.clip(blended.round(), 0, 255).astype(np.uint8), mask


def self_blend(crop: np.ndarray, margin: float, rng: np.random.Generator) -> np.ndarray:
    """One self-blended fake of a square uint8 crop (self_blend_with_mask without the mask)."""
    return self_blend_with_mask(crop, margin, rng)[0]
