"""Zero-shot labels: a label set + prompt templates -> cached text embeddings -> top-k scores.

Each label's embedding is the normalised mean of its prompts' embeddings (CLIP's prompt
ensembling). Text is embedded only when the labels or templates change, never per input.
Scores are the softmax over the label set of ``logit_scale * cosine``. No ROS here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_TEMPLATES = ("a photo of a {}.", "a {}.", "the sound of a {}.")

# texts -> unit-norm (len(texts), D) float32 embeddings
TextEmbedder = Callable[[list[str]], np.ndarray]


def read_labels(path: str | Path) -> list[str]:
    """One label per line; blank lines and lines starting with '#' are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def check_labels(labels: Sequence[str], templates: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first problem with a label set or its templates."""
    if not labels:
        raise ValueError("the label list is empty; give at least one label")
    bad = [lab for lab in labels if not isinstance(lab, str) or not lab.strip()]
    if bad:
        raise ValueError(f"labels must be non-empty strings, got {bad!r}")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if list(labels).count(lab) > 1})
        raise ValueError(f"duplicate labels: {dup}")
    if not templates:
        raise ValueError("the template list is empty; give at least one, e.g. 'a photo of a {}.'")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each template needs exactly one '{{}}', got {t!r}")


class ZeroShotClassifier:
    """Cached label embeddings and top-k scoring; thread-safe label swaps."""

    def __init__(self, embed_texts: TextEmbedder, logit_scale: float = 100.0) -> None:
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        self._embed = embed_texts
        self.logit_scale = float(logit_scale)
        self._lock = threading.Lock()
        self._labels: tuple[str, ...] = ()
        self._templates: tuple[str, ...] = DEFAULT_TEMPLATES
        self._matrix: np.ndarray | None = None  # (K, D) unit-norm label embeddings
        self.text_encodes = 0  # how many times text was embedded (once per change)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def templates(self) -> tuple[str, ...]:
        return self._templates

    @property
    def ready(self) -> bool:
        return self._matrix is not None

    @property
    def label_embeddings(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(labels, (K, D) unit-norm label embeddings) of one consistent label set, for
        consumers that score embeddings themselves (the fusion node); ValueError if none."""
        labels, matrix = self._snapshot()
        return labels, matrix.copy()

    def set_labels(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> bool:
        """Use a new label set (templates: None keeps the current ones).

        Embeds text only if something changed; returns whether it did. Raises
        ``ValueError`` (and keeps the previous set) for an empty or malformed set.
        """
        labels = tuple(labels)
        templates = self._templates if templates is None else tuple(templates)
        check_labels(labels, templates)
        if self._matrix is not None and (labels, templates) == (self._labels, self._templates):
            return False
        prompts = [t.format(lab) for lab in labels for t in templates]
        emb = np.asarray(self._embed(prompts), np.float32)
        if emb.shape[0] != len(prompts) or emb.ndim != 2:
            raise ValueError(f"text embedder returned shape {emb.shape} for {len(prompts)} "
                             "prompts")
        per_label = emb.reshape(len(labels), len(templates), -1)
        per_label = per_label / np.linalg.norm(per_label, axis=-1, keepdims=True)
        mean = per_label.mean(axis=1)
        matrix = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
        with self._lock:
            self._labels, self._templates, self._matrix = labels, templates, matrix
            self.text_encodes += 1
        return True

    def _snapshot(self) -> tuple[tuple[str, ...], np.ndarray]:
        with self._lock:
            labels, matrix = self._labels, self._matrix
        if matrix is None:
            raise ValueError("no labels set")
        return labels, matrix

    def _probs(self, matrix: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        logits = self.logit_scale * (matrix @ np.asarray(embedding, np.float32).reshape(-1))
        logits = logits.astype(np.float64) - logits.max()
        p = np.exp(logits)
        return p / p.sum()

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        """Softmax scores (K,) over the label set for one unit-norm embedding (D,)."""
        return self._probs(self._snapshot()[1], embedding)

    def top_k(self, embedding: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k best (label, score) pairs, highest first (ties keep label order)."""
        labels, matrix = self._snapshot()
        p = self._probs(matrix, embedding)
        order = np.argsort(-p, kind="stable")[:max(0, min(k, len(labels)))]
        return [(labels[i], float(p[i])) for i in order]
