"""Prompted object detection with any bound encoder: no detection head, no retraining.

ImageBind has one embedding per input, not per object. Detection here asks the vision encoder
about many parts of the frame and compares each answer with a prompt embedding of any
modality (a sound, a caption, a depth or thermal cue):

1. **Candidate regions: multi-scale sliding windows.** Square windows at a few sizes (fractions
   of the short image side) on a grid of ``stride`` x window side. Chosen over an OpenCV
   proposal method because the proposal methods that would fit (selective search, edge
   boxes) live in opencv-contrib, which is not a dependency, and because a grid has a known,
   bounded cost per frame (``max_regions``), covers the whole frame evenly at every scale
   and needs no tuning per scene type. Windows are cut from an image pyramid: each scale's
   level is resized once (area filter when shrinking, bicubic when enlarging) so that its
   windows are exactly the encoder's input size and every window is a slice, not a resize.
2. **Batched region embedding** through the vision encoder, ``batch_size`` windows at a time,
   ONCE per frame (``FrameRegions``); any number of prompts is then scored against it.
3. **Scoring**: cosine similarity between each window and the prompt, minus ``background``
   x (the prompt's cosine with the frame's mean window embedding) x (the window's): the
   part of the match that the frame's average window shares is not evidence for an object.
4. **Localisation** (``localize``):

   - ``"map"`` (default): every window spreads its score over its pixels; the mean score of
     the windows covering a pixel is a similarity map. Pixels above ``median + map_threshold
     * (peak - median)`` form connected regions; each region's bounding box is a detection,
     strongest peak first. Needed because encoders trained on whole-object pictures also
     recognise object *parts* and object-plus-surroundings, so the single best window is
     rarely the object's box (docs/detection.md measures it), while the region where many
     windows agree is.
   - ``"windows"``: the classic alternative: windows above ``min_score``, merged by
     non-maximum suppression.

   Each detection's score is the best window cosine inside its box; detections below
   ``min_score`` are dropped and the rest merged by NMS at ``nms_iou``.

Boxes are float (x0, y0, x1, y1) pixels, x1/y1 exclusive, like ``synthetic.Scene.boxes``.
numpy, OpenCV and the encoder callable only: no torch model code, no rclpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .model.config import VisionConfig
from .synthetic import SyntheticWorld

# (N, 3, S, S) normalised float32 batch -> (N, D) unit-norm embeddings
VisionEncoder = Callable[[np.ndarray], np.ndarray]
# (1, 3, H, W) normalised float32 frame -> (1, H/p, W/p, D) unit-norm patch embeddings
DenseEncoder = Callable[[np.ndarray], np.ndarray]
LOCALIZERS = ("map", "windows")
METHODS = ("windows", "dense")


@dataclass(frozen=True)
class DetectorConfig:
    """How regions are made and scored; every field is a node parameter."""

    # "windows": embed many crops; "dense": one forward, every patch is a region.
    method: str = "windows"
    # Dense: short sides (pixels) of the frame fed to the encoder, one forward each (the
    # position embedding is resized); 0 = the encoder's training size.
    dense_sizes: tuple[int, ...] = (0,)
    # Window sides as fractions of the short image side, smallest first.
    scales: tuple[float, ...] = (0.1, 0.14, 0.2, 0.28)
    # Grid step as a fraction of the window side (0.25 = windows overlap by 75 %).
    stride: float = 0.25
    # Most windows per frame; the grid is coarsened (then the smallest scales dropped) to fit.
    max_regions: int = 4096
    # Windows per encoder call.
    batch_size: int = 64
    localize: str = "map"
    # Map mode: region threshold between the map's median (0) and its peak (1).
    map_threshold: float = 0.5
    # Background subtraction weight: 0 = plain cosine; 1 = the prompt's component along the
    # frame's mean window embedding is removed before scoring (what most of the frame looks
    # like stops counting as a match).
    background: float = 1.0
    # GrabCut iterations that snap a map region to the object's outline (0 = off).
    refine_iterations: int = 4
    max_detections: int = 1
    min_score: float = -1.0
    nms_iou: float = 0.5

    def __post_init__(self) -> None:
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"scales must be fractions in (0, 1], got {self.scales}")
        if not 0 < self.stride <= 1:
            raise ValueError(f"stride must be in (0, 1], got {self.stride}")
        if self.refine_iterations < 0:
            raise ValueError(f"refine_iterations must be >= 0, got {self.refine_iterations}")
        if self.max_regions < 1 or self.batch_size < 1 or self.max_detections < 1:
            raise ValueError("max_regions, batch_size and max_detections must be >= 1, got "
                             f"{self.max_regions}, {self.batch_size}, {self.max_detections}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not self.dense_sizes or any(s < 0 for s in self.dense_sizes):
            raise ValueError(f"dense_sizes must be >= 0 pixels, got {self.dense_sizes}")
        if self.localize not in LOCALIZERS:
            raise ValueError(f"localize must be one of {LOCALIZERS}, got {self.localize!r}")
        if not 0 < self.map_threshold < 1:
            raise ValueError(f"map_threshold must be in (0, 1), got {self.map_threshold}")
        if not 0 <= self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        if self.background < 0:
            raise ValueError(f"background must be >= 0, got {self.background}")


@dataclass(frozen=True)
class Prompt:
    """What to look for: a unit-norm embedding of any modality, with its report label."""

    label: str
    modality: str
    vector: np.ndarray


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # float (x0, y0, x1, y1) pixels, x1/y1 exclusive
    score: float  # best window cosine with the prompt inside the box
    label: str
    modality: str


@dataclass
class Level:
    """One pyramid level: the source image resized so its windows are the encoder's input."""

    input_size: int  # window side in the resized image (the encoder's S)
    size: tuple[int, int]  # resized (height, width)
    scale_x: float  # resized / source width
    scale_y: float
    origins: np.ndarray  # (n, 2) int (x, y) of each window in the resized image

    def boxes(self) -> np.ndarray:
        """Source-pixel boxes (n, 4) of this level's windows."""
        o = self.origins.astype(np.float64)
        x0, y0 = o[:, 0] / self.scale_x, o[:, 1] / self.scale_y
        return np.stack([x0, y0, x0 + self.input_size / self.scale_x,
                         y0 + self.input_size / self.scale_y], 1)


@dataclass
class FrameRegions:
    """The windows of one frame and their embeddings: compute once, score many prompts."""

    boxes: np.ndarray  # (N, 4) float32 source-pixel boxes
    embeddings: np.ndarray  # (N, D) float32 unit norm
    image_hw: tuple[int, int]
    image: np.ndarray | None = None  # the frame itself (box refinement looks at its pixels)
    # dense: the (rows, cols) patch grid of each forward, in the order of ``embeddings``
    grids: tuple[tuple[int, int], ...] = ()
    mean: np.ndarray = field(init=False)  # unit-norm mean window embedding ("background")

    def __post_init__(self) -> None:
        m = self.embeddings.mean(axis=0)
        self.mean = m / max(float(np.linalg.norm(m)), 1e-12)


# ----------------------------------------------------------------------------- geometry


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) boxes (x0, y0, x1, y1) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression -> indices kept, highest score first (ties: lower
    index first, as torchvision)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        overlap = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou]
    return np.array(keep, np.int64)


def _grid(length: int, window: int, step: int) -> np.ndarray:
    """Window origins from 0 to length - window every ``step``, the last one flush."""
    if length <= window:
        return np.zeros(1, np.int64)
    n = math.ceil((length - window) / step) + 1
    return np.unique(np.round(np.linspace(0, length - window, n)).astype(np.int64))


def pyramid(hw: tuple[int, int], input_size: int, config: DetectorConfig) -> list[Level]:
    """The window grid of an image: one level per scale, at most ``max_regions`` windows.

    Too many windows: the stride grows by 25 % steps up to 1 (touching windows); still too
    many: the smallest scales are dropped until the rest fit (at least one window is kept).
    """
    h, w = hw
    short = min(h, w)
    scales = sorted(set(config.scales))
    stride = config.stride
    while True:
        levels = []
        for s in scales:
            f = input_size / (s * short)
            size = (max(input_size, round(h * f)), max(input_size, round(w * f)))
            step = max(1, round(stride * input_size))
            xs = _grid(size[1], input_size, step)
            ys = _grid(size[0], input_size, step)
            origins = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
            levels.append(Level(input_size, size, size[1] / w, size[0] / h, origins))
        total = sum(len(lv.origins) for lv in levels)
        if total <= config.max_regions:
            return levels
        if stride < 1:
            stride = min(1.0, stride * 1.25)
        elif len(scales) > 1:
            scales = scales[1:]
        else:
            lv = levels[0]
            keep = np.linspace(0, len(lv.origins) - 1, config.max_regions).round()
            lv.origins = lv.origins[np.unique(keep.astype(np.int64))]
            return levels



# ----------------------------------------------------------------------------- regions


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area filter when shrinking (no aliasing of pixel noise), bicubic when enlarging (as the
    reference's PIL resize)."""
    h, w = image.shape[:2]
    if (h, w) == size:
        return image
    shrink = size[0] * size[1] < h * w
    return cv2.resize(image, (size[1], size[0]),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def window_tensors(image: np.ndarray, levels: Sequence[Level],
                   cfg: VisionConfig) -> Iterable[np.ndarray]:
    """Yield each level's windows as a normalised float32 (n, 3, S, S) batch, in order."""
    mean = np.asarray(cfg.mean, np.float32) * 255
    inv_std = 1.0 / (np.asarray(cfg.std, np.float32) * 255)
    s = cfg.image_size
    for lv in levels:
        plane = (_resize(image, lv.size).astype(np.float32) - mean) * inv_std
        chw = np.ascontiguousarray(plane.transpose(2, 0, 1))
        out = np.empty((len(lv.origins), 3, s, s), np.float32)
        for i, (x, y) in enumerate(lv.origins):
            out[i] = chw[:, y:y + s, x:x + s]
        yield out


def check_image(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame, or ValueError saying what is wrong."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"detection needs an RGB uint8 (H, W, 3) image, got {a.dtype} "
                         f"{a.shape}")
    if min(a.shape[:2]) < 2:
        raise ValueError(f"image of {a.shape[1]}x{a.shape[0]} pixels is too small")
    return a


def check_vector(vector: np.ndarray, dim: int, what: str = "prompt") -> np.ndarray:
    """A finite, non-zero (dim,) vector, returned unit-norm float32; ValueError otherwise."""
    v = np.asarray(vector, np.float32).reshape(-1)
    if v.shape != (dim,):
        raise ValueError(f"{what} embedding has {v.size} values, the model's space has {dim}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} embedding contains NaN or Inf")
    n = float(np.linalg.norm(v))
    if n < 1e-6:
        raise ValueError(f"{what} embedding is all zeros")
    return v / n


# ----------------------------------------------------------------------------- detector


class RegionDetector:
    """Windows of a frame -> embeddings (once) -> detections for any number of prompts."""

    def __init__(self, encode: VisionEncoder, vision: VisionConfig,
                 config: DetectorConfig | None = None, dense: DenseEncoder | None = None
                 ) -> None:
        self.encode = encode
        self.vision = vision
        self.config = config or DetectorConfig()
        self.dense = dense
        if self.config.method == "dense" and dense is None:
            raise ValueError("method 'dense' needs a dense encoder (patch embeddings)")

    def regions(self, image: np.ndarray, progress: Callable[[int], None] | None = None
                ) -> FrameRegions:
        """Embed every window of ``image``; ``progress(n)`` is told of each batch done."""
        image = check_image(image)
        cfg = self.config
        if cfg.method == "dense":
            return self._dense_regions(image, progress)
        levels = pyramid(image.shape[:2], self.vision.image_size, cfg)
        boxes = np.concatenate([lv.boxes() for lv in levels]).astype(np.float32)
        chunks: list[np.ndarray] = []

        def run(batch: np.ndarray) -> None:
            emb = np.asarray(self.encode(batch), np.float32)
            if emb.ndim != 2 or emb.shape[0] != batch.shape[0]:
                raise ValueError(f"vision encoder returned shape {emb.shape} for "
                                 f"{batch.shape[0]} windows")
            chunks.append(emb)
            if progress is not None:
                progress(batch.shape[0])

        # exact batches of batch_size across levels (the last one may be smaller)
        left = np.zeros((0, 3, self.vision.image_size, self.vision.image_size), np.float32)
        for block in window_tensors(image, levels, self.vision):
            left = np.concatenate([left, block]) if len(left) else block
            while len(left) >= cfg.batch_size:
                run(left[:cfg.batch_size])
                left = left[cfg.batch_size:]
        if len(left):
            run(left)
        return FrameRegions(boxes, np.concatenate(chunks), image.shape[:2], image)

    def _dense_regions(self, image: np.ndarray, progress: Callable[[int], None] | None
                       ) -> FrameRegions:
        """One forward per ``dense_sizes`` entry; every patch is a region (its cell's box)."""
        assert self.dense is not None
        boxes, chunks, grids = [], [], []
        for side in self.config.dense_sizes:
            x, (sy, sx) = dense_tensor(image, side or self.vision.image_size, self.vision)
            emb = np.asarray(self.dense(x), np.float32)
            if emb.ndim != 4 or emb.shape[0] != 1:
                raise ValueError(f"dense encoder returned shape {emb.shape}, expected "
                                 "(1, rows, cols, D)")
            gh, gw = emb.shape[1:3]
            p = self.vision.kernel_size[1]
            ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            cells = np.stack([xs, ys, xs + 1, ys + 1], -1).reshape(-1, 4) * p
            boxes.append(cells / np.array([sx, sy, sx, sy]))
            chunks.append(emb.reshape(gh * gw, -1))
            grids.append((gh, gw))
            if progress is not None:
                progress(gh * gw)
        return FrameRegions(np.concatenate(boxes).astype(np.float32), np.concatenate(chunks),
                            image.shape[:2], image, tuple(grids))

    def similarity(self, regions: FrameRegions, prompt: np.ndarray) -> np.ndarray:
        """(H, W) similarity map of a prompt over the frame (NaN where no region covers):
        window scores averaged per pixel, or the patch grids' scores resized bilinearly."""
        return frame_map(regions, self.scores(regions, prompt))

    def scores(self, regions: FrameRegions, prompt: np.ndarray) -> np.ndarray:
        """Cosine of every window with the prompt, after optional background subtraction."""
        p = check_vector(prompt, regions.embeddings.shape[1])
        b = self.config.background
        if b:
            mu = regions.mean
            return regions.embeddings @ p - b * float(p @ mu) * (regions.embeddings @ mu)
        return regions.embeddings @ p

    def detect(self, regions: FrameRegions, prompt: Prompt) -> list[Detection]:
        """Detections of one prompt in an embedded frame, best first."""
        cfg = self.config
        s = self.scores(regions, prompt.vector)
        if cfg.localize == "map":
            found = map_regions(frame_map(regions, s), cfg.map_threshold, cfg.max_detections)
            boxes = np.array([self._refined(regions, b, m) for b, m in found]).reshape(-1, 4)
            scores = np.array([_best_inside(regions.boxes, s, b) for b in boxes])
        else:
            boxes, scores = regions.boxes.astype(np.float64), s.astype(np.float64)
        keep = scores >= cfg.min_score
        boxes, scores = boxes[keep], scores[keep]
        order = nms(boxes, scores, cfg.nms_iou)[:cfg.max_detections]
        return [Detection(boxes[i], float(scores[i]), prompt.label, prompt.modality)
                for i in order]

    def _refined(self, regions: FrameRegions, box: np.ndarray, mask: np.ndarray
                 ) -> np.ndarray:
        if self.config.refine_iterations and regions.image is not None:
            better = refine_box(regions.image, mask, self.config.refine_iterations)
            if better is not None:
                return better
        return box

    def detect_all(self, regions: FrameRegions, prompts: Iterable[Prompt]) -> list[Detection]:
        """Every prompt against one frame's windows, all detections sorted by score."""
        found = [d for p in prompts for d in self.detect(regions, p)]
        return sorted(found, key=lambda d: -d.score)

    def __call__(self, image: np.ndarray, prompts: Iterable[Prompt]) -> list[Detection]:
        return self.detect_all(self.regions(image), prompts)


def _best_inside(boxes: np.ndarray, scores: np.ndarray, box: np.ndarray) -> float:
    """Best score of the windows whose centre lies in ``box`` (the peak window otherwise)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx >= box[0]) & (cx < box[2]) & (cy >= box[1]) & (cy < box[3])
    return float(scores[inside].max()) if inside.any() else float(scores.max())


def similarity_map(boxes: np.ndarray, scores: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) mean score of the windows covering each pixel (NaN where none does).

    Box sums through a 2-D difference array: O(windows + pixels), not O(windows x area).
    """
    h, w = hw
    b = np.rint(np.asarray(boxes, np.float64)).astype(np.int64)
    x0, x1 = np.clip(b[:, 0], 0, w), np.clip(b[:, 2], 0, w)
    y0, y1 = np.clip(b[:, 1], 0, h), np.clip(b[:, 3], 0, h)
    total = np.zeros((h + 1, w + 1), np.float64)
    count = np.zeros((h + 1, w + 1), np.float64)
    for grid, v in ((total, np.asarray(scores, np.float64)), (count, np.ones(len(b)))):
        np.add.at(grid, (y0, x0), v)
        np.add.at(grid, (y0, x1), -v)
        np.add.at(grid, (y1, x0), -v)
        np.add.at(grid, (y1, x1), v)
    total = total.cumsum(0).cumsum(1)[:h, :w]
    count = count.cumsum(0).cumsum(1)[:h, :w]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0.5, total / np.maximum(count, 1), np.nan)


def frame_map(regions: FrameRegions, scores: np.ndarray) -> np.ndarray:
    """(H, W) map of per-region scores: dense patch grids resized bilinearly (the mean over
    grids), windows through ``similarity_map``."""
    if not regions.grids:
        return similarity_map(regions.boxes, scores, regions.image_hw)
    h, w = regions.image_hw
    out = np.zeros((h, w), np.float64)
    start = 0
    for gh, gw in regions.grids:
        cell = np.asarray(scores[start:start + gh * gw], np.float32).reshape(gh, gw)
        out += cv2.resize(cell, (w, h), interpolation=cv2.INTER_LINEAR)
        start += gh * gw
    return out / len(regions.grids)


def dense_tensor(image: np.ndarray, short_side: int, vision: VisionConfig
                 ) -> tuple[np.ndarray, tuple[float, float]]:
    """The frame resized (aspect kept, both sides multiples of the patch size) so its short
    side is about ``short_side``, normalised: ((1, 3, H', W') float32, (H'/H, W'/W))."""
    p = vision.kernel_size[1]
    h, w = image.shape[:2]
    f = short_side / min(h, w)
    size = (max(p, round(h * f / p) * p), max(p, round(w * f / p) * p))
    plane = _resize(image, size).astype(np.float32)
    plane = (plane - np.asarray(vision.mean, np.float32) * 255) / (
        np.asarray(vision.std, np.float32) * 255)
    x = np.ascontiguousarray(plane.transpose(2, 0, 1)[None])
    return x, (size[0] / h, size[1] / w)


def heatmap(image: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An RGB picture of a similarity map over the image: the map's range stretched to
    OpenCV's JET colours (blue low, red high), blended ``alpha`` over the frame."""
    image = check_image(image)
    m = np.asarray(m, np.float64)
    if m.shape != image.shape[:2]:
        raise ValueError(f"map of shape {m.shape} for an image of {image.shape[:2]}")
    ok = np.isfinite(m)
    lo, hi = (float(m[ok].min()), float(m[ok].max())) if ok.any() else (0.0, 0.0)
    u = np.where(ok, (m - lo) / (hi - lo) if hi > lo else 0.0, 0.0)
    colours = cv2.applyColorMap(np.round(u * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(colours, cv2.COLOR_BGR2RGB), alpha, image,
                           1 - alpha, 0)


def map_regions(m: np.ndarray, threshold: float, max_regions: int
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(box, mask) of the regions that stand out in the (H, W) similarity map ``m`` (NaN:
    not covered), strongest first.

    Regions are the connected parts above ``median + threshold * (peak - median)``; each
    one's extent is then taken at the same fraction of ITS OWN peak, so a second, weaker
    object gets a box as complete as the strongest one's. At most ``max_regions``.
    """
    hw = m.shape
    valid = np.isfinite(m)
    if not valid.any():
        return []
    med, peak = float(np.median(m[valid])), float(np.max(m[valid]))
    if peak <= med:  # a flat map: nothing stands out
        return []
    filled = np.where(valid, m, -np.inf)
    n, labels = cv2.connectedComponents((filled >= med + threshold * (peak - med)).astype(
        np.uint8), connectivity=8)
    peaks = np.full(n, -np.inf)
    np.maximum.at(peaks, labels.ravel(), filled.ravel())
    out = []
    for i in [int(i) for i in np.argsort(-peaks) if i != 0][:max_regions]:
        y, x = np.unravel_index(np.argmax(np.where(labels == i, filled, -np.inf)), hw)
        local = (filled >= med + threshold * (peaks[i] - med)).astype(np.uint8)
        _, own, stats, _ = cv2.connectedComponentsWithStats(local, connectivity=8)
        bx, by, bw, bh = (float(v) for v in stats[own[y, x], :4])
        out.append((np.array([bx, by, bx + bw, by + bh]), own == own[y, x]))
    return out


def refine_box(image: np.ndarray, region: np.ndarray, iterations: int, grow: float = 0.3,
               side: int = 128) -> np.ndarray | None:
    """Snap a similarity region to the object's outline with GrabCut (OpenCV core).

    The region seeds "probably object", the rest of a window ``grow`` x its size larger
    "probably background" (its edges inside the frame: background for sure); the window is
    shrunk to at most ``side`` pixels to bound the cost. Returns the bounding box of the
    foreground parts that overlap the region, or None when GrabCut finds nothing usable.
    """
    h, w = region.shape
    ys, xs = np.nonzero(region)
    if xs.size == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    gx, gy = round(grow * (x1 - x0)), round(grow * (y1 - y0))
    X0, Y0, X1, Y1 = max(0, x0 - gx), max(0, y0 - gy), min(w, x1 + gx), min(h, y1 + gy)
    f = min(1.0, side / max(X1 - X0, Y1 - Y0))
    size = (max(2, round((X1 - X0) * f)), max(2, round((Y1 - Y0) * f)))
    roi = cv2.resize(image[Y0:Y1, X0:X1], size, interpolation=cv2.INTER_AREA)
    seed = cv2.resize(region[Y0:Y1, X0:X1].astype(np.uint8), size,
                      interpolation=cv2.INTER_NEAREST) > 0
    mask = np.where(seed, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    for inside, edge in ((Y0 > 0, mask[0]), (Y1 < h, mask[-1]), (X0 > 0, mask[:, 0]),
                         (X1 < w, mask[:, -1])):
        if inside:
            edge[:] = cv2.GC_BGD
    if not (seed.any() and (mask != cv2.GC_PR_FGD).any()):
        return None
    cv2.setRNGSeed(0)  # GrabCut's k-means start: same frame, same box
    try:
        cv2.grabCut(np.ascontiguousarray(roi[:, :, ::-1]), mask, None, np.zeros((1, 65)),
                    np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    keep = [i for i in range(1, n) if stats[i, 4] >= 0.02 * fg.size
            and seed[labels == i].mean() > 0.3]
    if not keep:
        return None
    ys, xs = np.nonzero(np.isin(labels, keep))
    return np.array([X0 + xs.min() / f, Y0 + ys.min() / f, X0 + (xs.max() + 1) / f,
                     Y0 + (ys.max() + 1) / f]).clip(0, [w, h, w, h])


_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230))


def draw_detections(image: np.ndarray, dets: Sequence[Detection]) -> np.ndarray:
    """A copy of the RGB image with each detection's box, label and score drawn (one colour
    per label), for rqt/rviz."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    font = 0.4 * thick
    colours: dict[str, tuple[int, int, int]] = {}
    for d in dets:
        c = colours.setdefault(d.label, _COLOURS[len(colours) % len(_COLOURS)])
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), c, thick)
        text = f"{d.label} {d.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(h - 1, y0 + th + base + 2)
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 2, ty + 1), c, -1)
        cv2.putText(out, text, (x0 + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (0, 0, 0), thick, cv2.LINE_AA)
    return out


def prompts_from(vectors: Mapping[str, np.ndarray], modality: str) -> list[Prompt]:
    """Label -> embedding mapping as prompts of one modality."""
    return [Prompt(label, modality, np.asarray(v, np.float32)) for label, v in vectors.items()]


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Trial:
    """One prompt on one synthetic scene: did the top detection find the prompted object?"""

    scene: int
    class_name: str
    modality: str
    iou: float  # top detection vs the prompted object's box (0 when nothing was detected)
    variant: str = ""

    @property
    def hit(self) -> bool:
        return self.iou >= 0.5


# (class_id, generator) -> unit-norm prompt embedding of one modality
PromptMaker = Callable[[int, np.random.Generator], np.ndarray]


def evaluate_synthetic(detector: RegionDetector, world: SyntheticWorld,
                       prompt_makers: Mapping[str, PromptMaker], scenes: int,
                       objects: int = 3, seed: int = 0, size: tuple[int, int] = (480, 640),
                       variants: Mapping[str, DetectorConfig] | None = None,
                       progress: Callable[[], None] | None = None) -> list[Trial]:
    """Held-out synthetic scenes with ``objects`` objects of different classes at known boxes;
    each object in turn is prompted in every modality of ``prompt_makers`` (a fresh sound,
    a caption, ...). The frame's windows are embedded once for all its prompts and for every
    scoring ``variants`` (configs that differ only after embedding; default: the detector's).

    Scenes come from a random stream of their own (``seed``), not from any training split.
    """
    dets = {name: RegionDetector(detector.encode, detector.vision, cfg, detector.dense)
            for name, cfg in (variants or {"": detector.config}).items()}
    trials: list[Trial] = []
    root = np.random.default_rng([world.seed, 0xDE7EC7, seed])
    for i, g in enumerate(root.spawn(scenes)):
        ids = [int(c) for c in g.choice(world.num_classes, objects, replace=False)]
        scene = world.scene(ids, g, size)
        regions = detector.regions(scene.image)
        for k, c in enumerate(ids):
            for modality, make in prompt_makers.items():
                prompt = Prompt(world.classes[c], modality, make(c, g))
                for name, det in dets.items():
                    found = det.detect(regions, prompt)
                    iou = float(box_iou(found[0].box, scene.boxes[k])[0, 0]) if found else 0.0
                    trials.append(Trial(i, world.classes[c], modality, iou, name))
        if progress is not None:
            progress()
    return trials
