"""Cross-modal memory: the recent embeddings of every modality, searchable by any of them.

Because every encoder maps into one space, a robot can keep what it recently saw, heard and
felt as plain vectors and ask "when did I see what this sounds like?" with a sound, a caption,
a picture, or a sum of several (embedding arithmetic: image + sound). ``EmbeddingMemory``
keeps a bounded ring buffer per modality (a 30-Hz camera cannot push the last sounds out),
optionally thinned to one item per ``min_interval_s`` of stamp time; ``query`` returns the
top-k items across modalities by cosine similarity. Only the modalities it was built for
are stored (with ``strict``, only items that name the memory's model), vectors are at most
``MAX_DIM`` wide and frame ids and labels are cut to ``MAX_TEXT`` characters, so its size in
bytes is bounded whatever the input. Thread-safe; numpy only, no rclpy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000
MAX_TEXT = 256  # characters kept of a frame id or label
MAX_DIM = 4096  # widest embedding a memory without a model accepts (ImageBind's: 1024)


@dataclass(frozen=True)
class MemoryHit:
    """One stored item returned by a query."""

    similarity: float  # cosine with the query, in [-1, 1]
    modality: str
    stamp_ns: int  # source stamp of the stored item
    frame_id: str
    label: str  # its top zero-shot label when known ("" otherwise)
    sequence: int  # insertion order since the memory was created


def unit(vector: np.ndarray, dim: int | None = None, what: str = "embedding") -> np.ndarray:
    """A finite, non-zero vector as unit-norm float32 (D,); ValueError saying what is wrong."""
    v = np.asarray(vector, np.float32).reshape(-1)
    if dim is not None and v.size != dim:
        raise ValueError(f"{what} has {v.size} values, the memory holds {dim}-d embeddings")
    if v.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} contains NaN or Inf")
    n = float(np.linalg.norm(v))
    if n < 1e-6:
        raise ValueError(f"{what} is all zeros")
    return v / n


def combine(parts: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Embedding arithmetic: the normalised weighted sum of unit-normalised parts.

    Each part is normalised first, so a weight says how much that part counts whatever its
    norm; negative weights subtract a concept. Raises ValueError for no parts, a weight
    count that does not match, non-finite weights, or parts that cancel out.
    """
    if not parts:
        raise ValueError("a query needs at least one part")
    w = np.ones(len(parts)) if weights is None or len(weights) == 0 else np.asarray(
        weights, np.float64)
    if w.shape != (len(parts),):
        raise ValueError(f"{w.size} weights for {len(parts)} query parts")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {w.tolist()}")
    vecs = [unit(p, what=f"query part {i}") for i, p in enumerate(parts)]
    if len({v.size for v in vecs}) > 1:
        raise ValueError(f"query parts have different sizes: {[v.size for v in vecs]}")
    total = np.sum([wi * v.astype(np.float64) for wi, v in zip(w, vecs)], axis=0)
    return unit(total, what="the weighted sum of the query parts (they cancel out?)")


class _Ring:
    """Fixed-capacity storage of one modality (oldest overwritten first)."""

    def __init__(self, capacity: int, dim: int) -> None:
        self.vectors = np.zeros((capacity, dim), np.float32)
        self.stamps = np.zeros(capacity, np.int64)
        self.sequences = np.full(capacity, -1, np.int64)
        self.frames = [""] * capacity
        self.labels = [""] * capacity
        self.size = 0
        self.next = 0
        self.last_stamp: int | None = None

    def put(self, v: np.ndarray, stamp_ns: int, seq: int, frame_id: str, label: str) -> None:
        i = self.next
        self.vectors[i], self.stamps[i], self.sequences[i] = v, stamp_ns, seq
        self.frames[i], self.labels[i] = frame_id, label
        self.next = (i + 1) % len(self.stamps)
        self.size = min(self.size + 1, len(self.stamps))
        self.last_stamp = stamp_ns


class EmbeddingMemory:
    """Bounded per-modality store of unit-norm embeddings with stamps, frames and labels."""

    def __init__(self, capacity: int, min_interval_s: float = 0.0,
                 dim: int | None = None, modalities: Iterable[str] = (),
                 strict: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.capacity = int(capacity)
        self.min_interval_ns = int(round(min_interval_s * NS))
        self.dim = dim
        self.modalities = frozenset(modalities)  # empty = any (tests, offline use)
        self.strict = strict  # an empty model_id is refused (a node: input from the network)
        self.model_id = ""
        self._rings: dict[str, _Ring] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self.skipped = 0  # items not stored because of min_interval_s

    def add(self, vector: np.ndarray, modality: str, stamp_ns: int, frame_id: str = "",
            label: str = "", model_id: str = "") -> int | None:
        """Store one embedding -> its sequence number, or None when it came within
        ``min_interval_s`` (stamp time) of the last stored item of its modality.

        Raises ValueError for a malformed vector, a modality the memory was not built for,
        a ``model_id`` other than the memory's (set, or the first one seen: embeddings of
        different models are not comparable), or an empty one when ``strict``.
        """
        if not modality or (self.modalities and modality not in self.modalities):
            raise ValueError(f"modality {modality[:40]!r} is not stored here (stored: "
                             f"{', '.join(sorted(self.modalities)) or 'any'})")
        if self.strict and not model_id:
            raise ValueError(f"{modality} embedding names no model_id: cannot tell it is "
                             "comparable")
        with self._lock:
            v = unit(vector, self.dim, f"{modality} embedding")
            if v.size > MAX_DIM:
                raise ValueError(f"{modality} embedding has {v.size} values (at most {MAX_DIM})")
            if model_id:
                if self.model_id and model_id != self.model_id:
                    raise ValueError(f"{modality} embedding is from model {model_id[:80]!r}, "
                                     f"the memory holds {self.model_id!r}: not comparable")
                self.model_id = model_id
            if self.dim is None:
                self.dim = v.size
            ring = self._rings.get(modality)
            if ring is None:
                ring = self._rings[modality] = _Ring(self.capacity, v.size)
            elif (ring.last_stamp is not None and self.min_interval_ns
                  and 0 <= stamp_ns - ring.last_stamp < self.min_interval_ns):
                self.skipped += 1
                return None
            seq = self._seq
            self._seq += 1
            ring.put(v, int(stamp_ns), seq, frame_id[:MAX_TEXT], label[:MAX_TEXT])
            return seq

    def set_label(self, modality: str, stamp_ns: int, label: str) -> bool:
        """Attach a label (a zero-shot result that arrives after its embedding) to the stored
        item of that modality and stamp; False if no such item is held."""
        with self._lock:
            ring = self._rings.get(modality)
            if ring is None:
                return False
            hit = np.nonzero((ring.stamps[:ring.size] == stamp_ns)
                             & (ring.sequences[:ring.size] >= 0))[0]
            for i in hit:
                ring.labels[int(i)] = label[:MAX_TEXT]
            return bool(hit.size)

    def query(self, vector: np.ndarray, k: int = 5,
              modalities: Iterable[str] | None = None) -> list[MemoryHit]:
        """The ``k`` stored items most similar to ``vector`` (cosine), across the given
        modalities (None or empty = all), best first; equal similarity: newer first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        wanted = set(modalities or ())
        with self._lock:
            if self.dim is None:
                return []
            q = unit(vector, self.dim, "query")
            rings = [(m, r) for m, r in self._rings.items()
                     if r.size and (not wanted or m in wanted)]
            if not rings:
                return []
            s = np.concatenate([r.vectors[:r.size] @ q for _, r in rings])
            seq = np.concatenate([r.sequences[:r.size] for _, r in rings])
            starts = np.cumsum([0] + [r.size for _, r in rings])
            out = []
            for j in np.lexsort((-seq, -s))[:k]:
                ri = int(np.searchsorted(starts, j, side="right")) - 1
                m, ring = rings[ri]
                i = int(j - starts[ri])
                out.append(MemoryHit(float(s[j]), m, int(ring.stamps[i]), ring.frames[i],
                                     ring.labels[i], int(ring.sequences[i])))
            return out

    def counts(self) -> dict[str, int]:
        """Items held per modality."""
        with self._lock:
            return {m: r.size for m, r in self._rings.items()}

    def __len__(self) -> int:
        return sum(self.counts().values())
