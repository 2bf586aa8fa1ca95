"""Dense objective for the hub stage: every patch of the dense read-out learns what covers it.

A CLIP-style hub learns one embedding per picture; read densely (``model/dense.py``) its
patch embeddings were barely aligned with the text space (demo hub: patch top-1 0.13-0.22
over 8 classes, docs/detection.md). With object boxes known (the synthetic world), each
patch of the dense read-out gets a target: the class of the object whose box holds the
patch centre, else "background" (the mean embedding of the background captions). The loss
is cross-entropy of patch-vs-prompt cosines over the C classes + background, added to the
contrastive loss with weight ``dense.weight``. Prompts go through the text tower being
trained, so both towers move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from imagebind_ros.model import ImageBindModel
from imagebind_ros.model.dense import DenseVisionEncoder

from .augment import FULL, CropBox

NO_BOX = (float("nan"),) * 4


def view_box(obj: Sequence[float] | None, box: CropBox | None, hw: tuple[int, int],
             flip: bool) -> tuple[float, float, float, float]:
    """The object's relative box (x0, y0, x1, y1) in the square model input made from the
    view: crop ``box`` of an (H, W) frame, short side resized and centre-cropped (as
    ``preprocess.image_to_tensor``), mirrored with ``flip``; NaNs when none of it shows."""
    if obj is None:
        return NO_BOX
    h, w = hw
    b = box or FULL
    # the crop in pixels exactly as augment.crop cuts it
    cy0, cx0 = min(h - 1, round(b.top * h)), min(w - 1, round(b.left * w))
    cy1 = max(cy0 + 1, min(h, round((b.top + b.height) * h)))
    cx1 = max(cx0 + 1, min(w, round((b.left + b.width) * w)))
    side = min(cy1 - cy0, cx1 - cx0)  # the centre square, in crop pixels
    oy, ox = (cy1 - cy0 - side) / 2, (cx1 - cx0 - side) / 2
    x0 = (obj[0] * w - cx0 - ox) / side
    x1 = (obj[2] * w - cx0 - ox) / side
    y0 = (obj[1] * h - cy0 - oy) / side
    y1 = (obj[3] * h - cy0 - oy) / side
    x0, x1, y0, y1 = (float(np.clip(v, 0.0, 1.0)) for v in (x0, x1, y0, y1))
    if x1 <= x0 or y1 <= y0:
        return NO_BOX
    return (1 - x1, y0, 1 - x0, y1) if flip else (x0, y0, x1, y1)


def patch_targets(boxes: torch.Tensor, classes: torch.Tensor, grid: tuple[int, int],
                  background: int) -> torch.Tensor:
    """(B, gh, gw) class index per patch: ``classes[b]`` where the patch centre lies in
    ``boxes[b]`` (relative x0, y0, x1, y1; NaN = no object), else ``background``."""
    gh, gw = grid
    cy = (torch.arange(gh, dtype=boxes.dtype) + 0.5) / gh
    cx = (torch.arange(gw, dtype=boxes.dtype) + 0.5) / gw
    b = boxes[:, :, None, None]
    inside = ((cx[None, None] >= b[:, 0]) & (cx[None, None] < b[:, 2])
              & (cy[None, :, None] >= b[:, 1]) & (cy[None, :, None] < b[:, 3]))
    inside &= (classes >= 0)[:, None, None]  # NaN boxes compare False anyway
    return torch.where(inside, classes[:, None, None], torch.full_like(inside, background,
                                                                       dtype=torch.long))


class DenseObjective:
    """Cross-entropy of the dense read-out's patches against class + background prompts."""

    def __init__(self, model: ImageBindModel, class_tokens: torch.Tensor,
                 background_tokens: torch.Tensor, variant: str, temperature: float) -> None:
        if temperature <= 0:
            raise ValueError(f"dense.temperature must be > 0, got {temperature}")
        self.model = model
        self.dense = DenseVisionEncoder(model, variant)
        self.class_tokens = class_tokens
        self.background_tokens = background_tokens
        self.temperature = float(temperature)

    def prompts(self) -> torch.Tensor:
        """(C + 1, D) unit-norm prompt embeddings: the classes, then background."""
        def text(tokens: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.model.forward_modality("text", tokens).float(), dim=-1)

        bg = F.normalize(text(self.background_tokens).mean(0, keepdim=True), dim=-1)
        return torch.cat([text(self.class_tokens), bg])

    def __call__(self, images: torch.Tensor, boxes: torch.Tensor,
                 classes: torch.Tensor) -> torch.Tensor:
        patches = self.dense(images)  # (B, gh, gw, D) unit norm
        prompts = self.prompts().to(patches.dtype)
        target = patch_targets(boxes.float().cpu(), classes.cpu(), patches.shape[1:3],
                               len(prompts) - 1).to(patches.device)
        logits = patches @ prompts.T / self.temperature
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
