"""Per-crop texture descriptors of the inner face, for frame-level classifiers aggregated to videos.

Computed on the stored lossless crops at the video's own pixel scale (features.video.crops.crop_native; no decoding
of videos). Residual statistics of a face enlarged to a fixed size, or of a JPEG-stored crop, describe the
interpolation kernel or the JPEG quantiser rather than the video (measured: bench/results/decisions.md).
Zones and patches scale with the crop's side:
- texture: uniform LBP histograms at two radii and the radial power spectrum of the face box resampled to
  128 px (so the source resolution is normalised away first), plus the blending-seam contrasts (sharpness,
  noise, chroma) of the face against the ring around it;
- residual co-occurrences: histograms (square-rooted) of triples of quantised first- and second-order pixel
  differences (the SPAM features of steganalysis) in three zones of the crop: the face centre, the band where
  face swaps blend, and the ring outside the face box. Blending and re-synthesis change these statistics inside
  the face but not outside. In the face centre also those of the KB residual (each pixel against its prediction
  from its 8 neighbours), which sees texture that pixel differences along one direction miss;
- patch co-occurrences: the same histograms in each of the central 3 x 3 patches of a 7 x 7 grid over the crop
  (eyes, nose, mouth), for a scorer that looks for the most manipulated-looking patch rather than the average
  (features.learn.crop_models.PatchScorer); a self-blended row also records how much of each patch the blend covers.
"""

from __future__ import annotations

import functools
import hashlib

import cv2
import numpy as np
import pandas as pd
from skimage.feature import local_binary_pattern

from features.learn.self_blend import self_blend_with_mask
from features.learn.video_features import crop_regions, decode_crops, inner_face_grey, radial_spectrum, seam_contrast

# Bump when a descriptor's values change (names, zones, quantisation, the self-blend) or how the cache stores
# them: cached descriptors are recomputed from the stored crops. "3": the values packed into one list column;
# "4": computed from the lossless native-scale crops instead of the JPEG ones; "5": co-occurrence histograms
# under the Hellinger map (square roots of the class shares); "6": the KB residual's co-occurrences in the face
# centre.
DESCRIPTORS_VERSION = "6"
FACE_SIDE = 128
_LBP = ((8, 1), (16, 2))
# Zones by distance from the crop centre (Chebyshev), in units of half the face box side.
ZONES = {"centre": (0.0, 0.5), "band": (0.5, 0.9), "ring": (1.0, None)}
RESIDUAL_ORDERS = (2, 1)  # orders of the pixel differences whose co-occurrences are counted
# The Ker-Boehme residual: a pixel minus its prediction from its 8 neighbours (the "KB" kernel of steganalysis),
# counted in the face centre only.
KB_KERNEL = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float32) / 4
RESIDUAL_STEPS = (1.0, 2.0)  # quantisation steps of the residual, in grey levels
_TRUNCATE = 2  # residuals are clipped to [-2, 2] steps: 5 values, 125 triples
PATCH_GRID = 7  # the crop is cut into 7 x 7 patches (32 px in a 224 px crop, 9 in the smallest) ...
PATCH_REACH = 1  # ... of which those at most one patch from the centre are described: the central 3 x 3


def _symmetric_bins() -> tuple[np.ndarray, int]:
    """Map each of the 125 residual triples to its class under sign flip and reversal (the statistics of
    natural images are symmetric in both, so merging them halves the noise of every bin)."""
    n, top = 2 * _TRUNCATE + 1, 2 * _TRUNCATE
    keys = np.zeros(n ** 3, int)
    for index in range(n ** 3):
        a, b, c = index // (n * n), (index // n) % n, index % n
        keys[index] = min(x * n * n + y * n + z for x, y, z in
                          ((a, b, c), (c, b, a), (top - a, top - b, top - c), (top - c, top - b, top - a)))
    classes = np.unique(keys)
    return np.searchsorted(classes, keys), len(classes)


_BIN_OF_TRIPLE, COOC_BINS = _symmetric_bins()


def texture_names() -> list[str]:
    names = [f"lbp{p}_{r}_{i}" for p, r in _LBP for i in range(p + 2)]
    names += [f"spectrum_{i}" for i in range(1, 12)]
    names += ["seam_sharpness", "seam_noise", "seam_a", "seam_b", "face_l_std", "face_a_std", "face_b_std"]
    return names


def cooccurrence_names() -> list[str]:
    return [f"cooc_d{order}_{zone}_q{step:g}_{i}" for order in RESIDUAL_ORDERS for zone in ZONES
            for step in RESIDUAL_STEPS for i in range(COOC_BINS)] + \
        [f"cooc_kb_centre_q{step:g}_{i}" for step in RESIDUAL_STEPS for i in range(COOC_BINS)]


def descriptor_names() -> list[str]:
    """The crop-level descriptor (crop_descriptor)."""
    return texture_names() + cooccurrence_names()


def patch_positions() -> list[int]:
    """Row-major indices, in the PATCH_GRID x PATCH_GRID grid, of the described patches."""
    centre = (PATCH_GRID - 1) / 2
    return [row * PATCH_GRID + col for row in range(PATCH_GRID) for col in range(PATCH_GRID)
            if max(abs(row - centre), abs(col - centre)) <= PATCH_REACH]


PATCH_BINS = len(RESIDUAL_ORDERS) * len(RESIDUAL_STEPS) * COOC_BINS  # histogram values per patch


def patch_names() -> list[str]:
    """Patch co-occurrences (patch_cooccurrences), patch by patch: PATCH_BINS values each."""
    return [f"patch{k}_d{order}_q{step:g}_{i}" for k in range(len(patch_positions())) for order in RESIDUAL_ORDERS
            for step in RESIDUAL_STEPS for i in range(COOC_BINS)]


def patch_blend_names() -> list[str]:
    """Share of each described patch that a self-blend covered (0 for a crop as stored)."""
    return [f"patch{k}_blend" for k in range(len(patch_positions()))]


def table_names() -> list[str]:
    """Every value of a descriptor row (descriptor_table, the cache's descriptors table)."""
    return descriptor_names() + patch_names() + patch_blend_names()


@functools.lru_cache(maxsize=8)
def zone_masks(side: int, margin: float) -> tuple[np.ndarray, ...]:
    """One boolean mask per zone of a square crop whose face box sits inside a `margin` border."""
    box_half = side / (1 + margin) / 2
    yy, xx = np.mgrid[0:side, 0:side]
    dist = np.maximum(np.abs(xx - side / 2 + 0.5), np.abs(yy - side / 2 + 0.5)) / box_half
    edge = (side / 2 - 1) / box_half
    masks = tuple((dist >= lo) & (dist < (edge if hi is None else hi)) for lo, hi in ZONES.values())
    for mask in masks:
        mask.flags.writeable = False
    return masks


def _residual(image: np.ndarray, order: int | str) -> np.ndarray:
    """The `order`-th pixel differences along each row, or for order "kb" the KB_KERNEL residual (same size as the
    image, border pixels replicated)."""
    if order == "kb":
        return cv2.filter2D(np.ascontiguousarray(image), -1, KB_KERNEL, borderType=cv2.BORDER_REPLICATE)
    return np.diff(image, n=order, axis=1)


def _span(order: int | str) -> int:
    """Pixels of a row that a triple of `order` residuals covers: order + 3 for differences; 3 for "kb", whose
    residuals sit on the pixels they predict."""
    return 3 if order == "kb" else order + 3


def _triples(image: np.ndarray, step: float, order: int | str) -> np.ndarray:
    """Code (0..124) of each horizontal triple of quantised `order` residuals (_residual); the triple at [r, c]
    spans pixels c .. c + _span(order) - 1 of row r."""
    n = 2 * _TRUNCATE + 1
    q = np.clip(np.rint(_residual(image, order) / step), -_TRUNCATE, _TRUNCATE).astype(np.int64) + _TRUNCATE
    return q[:, :-2] * n * n + q[:, 1:-1] * n + q[:, 2:]


def _hellinger_classes(counts: np.ndarray) -> np.ndarray:
    """Rows of raw triple counts (125) -> rows of class histograms (COOC_BINS) under the Hellinger map: the square
    root of each class's share, so a row has unit L2 norm; empty rows stay zero.

    A few classes (residuals near zero) hold most triples and the rare ones carry the traces; counts vary about
    as their square root, so the map evens out the bins' noise before the linear scorers standardise them
    (measured: bench/results/decisions.md)."""
    hists = np.stack([np.bincount(_BIN_OF_TRIPLE, row, COOC_BINS) for row in counts])
    totals = hists.sum(1, keepdims=True)
    return np.sqrt(np.divide(hists, totals, out=np.zeros_like(hists), where=totals > 0))


def residual_cooccurrences(grey: np.ndarray, masks, step: float, order: int | str = 2) -> list[np.ndarray]:
    """For each mask, the class histogram (COOC_BINS, Hellinger-mapped: _hellinger_classes) of horizontal and
    vertical triples of quantised `order` residuals (`order`-th differences, or "kb") whose pixels all lie inside
    it; all zeros for a mask that holds no triple. The residuals are quantised once for all masks."""
    counts = np.zeros((len(masks), (2 * _TRUNCATE + 1) ** 3))
    for image, transposed in ((grey, False), (grey.T, True)):
        triples = _triples(image, step, order)
        width = triples.shape[1]
        for k, mask in enumerate(masks):
            inside = mask.T if transposed else mask
            valid = np.ones(triples.shape, bool)
            for offset in range(_span(order)):
                valid &= inside[:, offset:offset + width]
            counts[k] += np.bincount(triples[valid], minlength=len(_BIN_OF_TRIPLE))
    return list(_hellinger_classes(counts))


def patch_boxes(side: int) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) pixel bounds of each described patch of a square crop (patch_positions order);
    cuts fall on the pixel nearest to each 1/PATCH_GRID of the side, so patches differ by at most one pixel."""
    cut = [round(i * side / PATCH_GRID) for i in range(PATCH_GRID + 1)]
    return [(cut[k // PATCH_GRID], cut[k // PATCH_GRID + 1], cut[k % PATCH_GRID], cut[k % PATCH_GRID + 1])
            for k in patch_positions()]


def patch_cooccurrences(grey: np.ndarray) -> np.ndarray:
    """(described patches, PATCH_BINS): per patch, the residual_cooccurrences histograms of the triples that lie
    wholly inside it, for each order and step (patch_names order)."""
    boxes = patch_boxes(grey.shape[0])
    out = np.zeros((len(boxes), PATCH_BINS))
    column = 0
    for order in RESIDUAL_ORDERS:
        span = _span(order) - 1  # a triple starting at column c ends at column c + span
        for step in RESIDUAL_STEPS:
            counts = np.zeros((len(boxes), len(_BIN_OF_TRIPLE)))
            for image, transposed in ((grey, False), (grey.T, True)):
                triples = _triples(image, step, order)
                for k, (top, bottom, left, right) in enumerate(boxes):
                    if transposed:
                        top, bottom, left, right = left, right, top, bottom
                    inside = triples[top:bottom, left:max(right - span, left)]
                    counts[k] += np.bincount(inside.ravel(), minlength=len(_BIN_OF_TRIPLE))
            out[:, column:column + COOC_BINS] = _hellinger_classes(counts)
            column += COOC_BINS
    return out


def patch_cover(mask: np.ndarray) -> np.ndarray:
    """Mean of a blend mask over each described patch."""
    return np.array([mask[top:bottom, left:right].mean() for top, bottom, left, right in patch_boxes(mask.shape[0])])


def residual_cooccurrence(grey: np.ndarray, mask: np.ndarray, step: float, order: int | str = 2) -> np.ndarray:
    """residual_cooccurrences for one mask."""
    return residual_cooccurrences(grey, [mask], step, order)[0]


def crop_descriptor(crop_bgr: np.ndarray, margin: float, grey: np.ndarray | None = None) -> np.ndarray:
    """The descriptor (descriptor_names()) of one square BGR crop whose face box sits inside a `margin` border
    (`grey`: the crop's float32 grey image, when the caller has it)."""
    face = cv2.resize(inner_face_grey(crop_bgr, margin), (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
    values: list[float] = []
    for points, radius in _LBP:
        codes = local_binary_pattern(face, points, radius, "uniform")
        hist, _ = np.histogram(codes, bins=points + 2, range=(0, points + 2), density=True)
        values += hist.tolist()
    spectrum = radial_spectrum(face)
    values += (spectrum[1:] - spectrum[1]).tolist()  # shape of the spectrum, not its level
    inner, ring = crop_regions(crop_bgr, margin)
    sharp, noise, chroma = seam_contrast(crop_bgr, inner, ring)
    values += [sharp, noise, *chroma.tolist()]
    values += cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2LAB).astype(np.float32)[inner].std(0).tolist()
    if grey is None:
        grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    zones = zone_masks(crop_bgr.shape[0], float(margin))
    for order in RESIDUAL_ORDERS:
        per_step = [residual_cooccurrences(grey, zones, step, order) for step in RESIDUAL_STEPS]
        for zone in range(len(zones)):  # column order: order, zone, step (cooccurrence_names)
            for hists in per_step:
                values += hists[zone].tolist()
    for step in RESIDUAL_STEPS:  # the KB residual, face centre only (the first zone)
        values += residual_cooccurrences(grey, zones[:1], step, "kb")[0].tolist()
    return np.asarray(values, np.float32)


def blend_rng(video_id: str) -> np.random.Generator:
    """The self-blend random stream of one video, fixed by its id: its synthetic fakes are the same whichever
    videos are computed beside it, so they can be cached per video and reused by every fold."""
    return np.random.default_rng(int.from_bytes(hashlib.sha1(video_id.encode()).digest()[:8], "little"))


def crop_row(crop_bgr: np.ndarray, margin: float, blend_mask: np.ndarray | None = None) -> np.ndarray:
    """Every value of one crop's descriptor row (table_names()); `blend_mask` is the mask of a self-blended crop."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    cover = patch_cover(blend_mask) if blend_mask is not None else np.zeros(len(patch_positions()))
    return np.concatenate([crop_descriptor(crop_bgr, margin, grey), patch_cooccurrences(grey).ravel(),
                           cover]).astype(np.float32)


def descriptor_table(crops, margins: dict[str, float], self_blended: bool = False):
    """One descriptor row per stored crop (columns: video_id, frame_index + table_names()).

    `crops` has video_id, frame_index and crop_lossless (any encoded image); `margins` maps each video to its crop
    margin. With `self_blended`, each crop is replaced by a self-blended fake of itself first (blend_rng of its
    video): the same (video_id, frame_index) keys as without, so every synthetic fake pairs with the real crop it
    was made from.
    """
    rows, keys = [], []
    for vid, part in crops.groupby("video_id", sort=True):
        rng = blend_rng(vid) if self_blended else None
        for frame_index, blob in zip(part.frame_index, part.crop_lossless, strict=True):
            decoded = decode_crops([blob])
            if not decoded:
                continue
            if rng is None:
                rows.append(crop_row(decoded[0], margins[vid]))
            else:
                blended, mask = self_blend_with_mask(decoded[0], margins[vid], rng)
                rows.append(crop_row(blended, margins[vid], mask))
            keys.append((vid, int(frame_index)))
    names = table_names()
    table = pd.DataFrame(np.stack(rows) if rows else np.zeros((0, len(names)), np.float32), columns=names)
    table.insert(0, "frame_index", pd.Series([k[1] for k in keys], dtype="int64"))
    table.insert(0, "video_id", pd.Series([k[0] for k in keys], dtype=object))
    return table
