"""Sensor fusion in ImageBind's space: one scene embedding and label from any set of sensors.

Every encoder maps into one space, so the latest camera, microphone, depth, thermal and IMU
embeddings can be combined into one scene embedding and one label that stay right when a
sensor is dark, noisy, frozen or gone. Two problems stand in the way of simply averaging:

* scales: each modality's cosines with the label (text) embeddings live on their own scale
  (ImageBind's modality heads have different logit scales, and emergent zero-shot is
  sharper for some sensors than others), so an average is ruled by whichever modality has
  the widest spread, not by the one that knows best. ``fit_calibration`` fits, per
  modality, a temperature and per-label biases (multinomial logistic calibration on a
  labelled calibration split), turning cosines into calibrated class posteriors.
* degraded inputs: a dark frame or a muted microphone still yields a unit vector, often a
  confidently wrong one. Each input gets a reliability from its *typicality*: the cosine to
  the nearest class prototype of its modality (mean calibration embedding per class),
  compared with what clean calibration inputs reach. The default ``robust`` pooling then
  treats every sensor as possibly broken: its posterior is mixed with a uniform one in
  proportion to its unreliability before the log-linear (product-of-experts) pooling, so
  no single sensor can overrule the others by more than a bounded amount, and one that
  disagrees with a confident consensus (conflict, a frozen frame) gets a small weight.

Methods (``FusionConfig.method``): ``mean`` (mean of unit embeddings, the baseline),
``embedding`` (sum of unit embeddings weighted by reliability x calibrated temperature),
``decision`` (log-linear pooling of calibrated posteriors, reliability as exponent) and
``robust`` (the default, above). docs/fusion.md has the derivation and the benchmark.

`ApproximateSync` aligns the modalities' streams in time (an approximate-time policy with
a ``slop`` and per-modality timeouts; message_filters is not on PyPI), so a ROS node only
feeds messages in and publishes what comes out. numpy only: no torch, no rclpy.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

SENSORS = ("vision", "audio", "depth", "thermal", "imu")
METHODS = ("mean", "embedding", "decision", "robust")
CALIBRATION_VERSION = 1

# Why a configured modality did not count (FusionContributors.reasons).
DISABLED = "disabled"
NEVER = "never received"
TIMEOUT = "timeout"
OUT_OF_SLOP = "out of slop"
INVALID = "invalid embedding"
NO_INPUT = "no input"


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ModalityConfig:
    """Per-sensor settings, as robot_localization has per sensor."""

    enabled: bool = True
    weight: float = 1.0  # > 0: exponent of its posterior in the pooling (1 = one sensor's say)
    timeout_s: float = 1.0  # an input older than this (source stamp vs now) no longer counts

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be finite and > 0 (enabled: false switches a "
                             f"sensor off), got {self.weight}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def _default_modalities() -> dict[str, ModalityConfig]:
    return {m: ModalityConfig() for m in SENSORS}


@dataclass(frozen=True)
class FusionConfig:
    """How inputs are combined. Defaults: docs/fusion.md ("Parameters")."""

    method: str = "robust"
    modalities: Mapping[str, ModalityConfig] = field(default_factory=_default_modalities)
    # temperature of modalities without calibration, and of the "mean" method's scores
    logit_scale: float = 100.0
    max_reliability: float = 0.99  # the most any single input is trusted (robust pooling)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; known: "
                             f"{', '.join(METHODS)}")
        if not self.modalities:
            raise ValueError("fusion needs at least one modality")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        if not 0 < self.max_reliability < 1:
            raise ValueError(f"max_reliability must be in (0, 1), got {self.max_reliability}")


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ModalityCalibration:
    """What the calibration split taught about one modality.

    ``temperature`` and ``bias`` turn cosines into calibrated logits
    (``temperature * cos + bias[label]``); ``prototypes`` (unit rows, one per calibration
    class) and the ``low``/``typical`` levels of the best prototype cosine of clean inputs
    (a low quantile and the median) define typicality."""

    temperature: float
    bias: Mapping[str, float]
    prototypes: np.ndarray  # (C, D) float32 unit rows
    low: float
    typical: float


@dataclass(frozen=True)
class Calibration:
    """Per-modality calibration of one model and label set (``fit_calibration``)."""

    modalities: Mapping[str, ModalityCalibration]
    labels: tuple[str, ...]  # the calibration classes (prototype order)
    sharpness: float = 3.0  # typicality = sigmoid(sharpness * (f - low) / (typical - low))
    quantile: float = 5.0  # percentile of clean inputs that ``low`` is (documentation)
    model_id: str = ""  # as the encoder node's Embedding.model_id ("demo.pt:<config>")
    checkpoint_sha256: str = ""  # of the checkpoint it was fitted for: a retrain changes it
    source: str = ""  # how it was made (command, data)

    def to_json(self) -> dict[str, Any]:
        return {"version": CALIBRATION_VERSION, "model_id": self.model_id,
                "checkpoint_sha256": self.checkpoint_sha256,
                "source": self.source, "labels": list(self.labels),
                "sharpness": self.sharpness, "quantile": self.quantile,
                "modalities": {m: {"temperature": c.temperature, "bias": dict(c.bias),
                                   "low": c.low, "typical": c.typical,
                                   "prototypes": np.round(c.prototypes, 6).tolist()}
                               for m, c in self.modalities.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"fusion calibration version {data.get('version')!r}, this "
                             f"code reads version {CALIBRATION_VERSION}")
        labels = tuple(data["labels"])
        mods = {}
        for m, c in data["modalities"].items():
            protos = np.asarray(c["prototypes"], np.float32)
            if protos.ndim != 2 or protos.shape[0] != len(labels):
                raise ValueError(f"fusion calibration: {m} prototypes have shape "
                                 f"{protos.shape}, expected ({len(labels)}, D)")
            if not float(c["typical"]) > float(c["low"]):
                raise ValueError(f"fusion calibration: {m} needs typical > low")
            mods[m] = ModalityCalibration(float(c["temperature"]),
                                          {str(k): float(v) for k, v in c["bias"].items()},
                                          _unit_rows(protos), float(c["low"]),
                                          float(c["typical"]))
        dims = {c.prototypes.shape[1] for c in mods.values()}
        if len(dims) > 1:
            raise ValueError(f"fusion calibration: prototypes of different widths {dims}")
        return cls(mods, labels, float(data["sharpness"]), float(data["quantile"]),
                   str(data.get("model_id", "")), str(data.get("checkpoint_sha256", "")),
                   str(data.get("source", "")))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file; ValueError (with the path) if it is malformed."""
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a fusion calibration ({e})") from None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def fit_temperature_bias(cosines: np.ndarray, targets: np.ndarray, smoothing: float = 0.01,
                         l2: float = 0.01, iterations: int = 100) -> tuple[float, np.ndarray]:
    """(temperature, bias (K,)) minimising the cross-entropy of ``softmax(t * cos + b)``
    against label-smoothed targets, with an L2 penalty on b (Newton's method; the loss is
    convex). The smoothing keeps t finite for a modality that separates the calibration
    split perfectly: no sensor is taken to be more than ``1 - smoothing`` sure."""
    c = np.asarray(cosines, np.float64)
    y = np.asarray(targets)
    n, k = c.shape
    if y.shape != (n,) or n == 0:
        raise ValueError(f"need one target per row of cosines {c.shape}, got {y.shape}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"targets must be in [0, {k}), got {y.min()}..{y.max()}")
    goal = (1 - smoothing) * np.eye(k)[y] + smoothing / k
    x = np.concatenate([c[:, :, None], np.broadcast_to(np.eye(k), (n, k, k))], axis=2)
    theta = np.zeros(k + 1)
    theta[0] = 10.0
    reg = np.diag(np.r_[0.0, np.full(k, l2)])

    def loss(th: np.ndarray) -> float:
        lp = _log_softmax(th[0] * c + th[1:])
        return float(-(goal * lp).sum() / n + 0.5 * l2 * th[1:] @ th[1:])

    for _ in range(iterations):
        p = np.exp(_log_softmax(theta[0] * c + theta[1:]))
        grad = np.einsum("nk,nkj->j", p - goal, x) / n + reg @ theta
        s = np.einsum("nk,nkj->nj", p, x)
        hess = (np.einsum("nk,nki,nkj->ij", p, x, x) - s.T @ s) / n + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(k + 1), grad)
        t, before = 1.0, loss(theta)
        while loss(theta - t * step) > before and t > 1e-4:  # backtracking line search
            t *= 0.5
        theta = theta - t * step
        if np.abs(t * step).max() < 1e-9:
            break
    bias = theta[1:] - theta[1:].mean()  # softmax ignores a common offset
    return float(theta[0]), bias


def fit_calibration(embeddings: Mapping[str, np.ndarray], targets: np.ndarray,
                    label_embeddings: np.ndarray, labels: Sequence[str], *,
                    quantile: float = 5.0, sharpness: float = 3.0, smoothing: float = 0.01,
                    model_id: str = "", checkpoint_sha256: str = "",
                    source: str = "") -> Calibration:
    """Fit the per-modality calibration on a labelled split of CLEAN inputs.

    ``embeddings[m]`` is (N, D) unit rows of modality m, ``targets`` (N,) the class index of
    each row in ``labels`` (the same samples for every modality, or any N per modality with
    ``targets`` as a mapping), ``label_embeddings`` (K, D) the zero-shot label embeddings.
    Every class must occur in every modality."""
    text = _unit_rows(label_embeddings)
    k = len(labels)
    if text.shape[0] != k:
        raise ValueError(f"{text.shape[0]} label embeddings for {k} labels")
    mods = {}
    for m, e in embeddings.items():
        e = _unit_rows(e)
        y = np.asarray(targets[m] if isinstance(targets, Mapping) else targets)
        if e.ndim != 2 or e.shape[1] != text.shape[1] or y.shape != (e.shape[0],):
            raise ValueError(f"{m}: embeddings {e.shape} and targets {y.shape} do not match "
                             f"label embeddings {text.shape}")
        missing = sorted(set(range(k)) - set(y.tolist()))
        if missing:
            raise ValueError(f"{m}: no calibration sample of {[labels[i] for i in missing]}")
        temp, bias = fit_temperature_bias(e @ text.T, y, smoothing)
        protos = _unit_rows(np.stack([e[y == c].mean(axis=0) for c in range(k)]))
        best = (e @ protos.T).max(axis=1)
        low, typical = np.percentile(best, quantile), np.median(best)
        typical = max(float(typical), float(low) + 1e-3)
        mods[m] = ModalityCalibration(temp, dict(zip(labels, bias.tolist())), protos,
                                      float(low), typical)
    return Calibration(mods, tuple(labels), sharpness, quantile, model_id, checkpoint_sha256,
                       source)


# ----------------------------------------------------------------------------- fusion


@dataclass(frozen=True)
class Observation:
    """The latest embedding of one modality and the stamp of its source sensor data."""

    embedding: np.ndarray  # (D,) unit norm
    stamp: float  # seconds


@dataclass(frozen=True)
class Contribution:
    """How much one input counted."""

    modality: str
    weight: float  # normalised over the contributors (sums to 1)
    reliability: float  # in [0, 1], before normalisation (method-specific, docs/fusion.md)
    typicality: float  # in [0, 1]: 1 = like clean calibration inputs (1 without calibration)
    age_s: float  # how much older its stamp is than the result's stamp


@dataclass(frozen=True)
class FusionResult:
    """One fused output. ``embedding``/``scores`` are None when no input counted."""

    embedding: np.ndarray | None  # (D,) unit norm
    scores: np.ndarray | None  # (K,) fused label probabilities, sum 1
    labels: tuple[str, ...]
    stamp: float | None  # newest contributing source stamp
    method: str
    contributions: tuple[Contribution, ...]
    excluded: tuple[tuple[str, str], ...]  # (modality, reason)

    @property
    def label(self) -> str | None:
        return None if self.scores is None else self.labels[int(np.argmax(self.scores))]

    def top_k(self, k: int) -> list[tuple[str, float]]:
        """The k best (label, score) pairs, highest first (ties keep label order)."""
        if self.scores is None:
            return []
        order = np.argsort(-self.scores, kind="stable")[:max(0, min(k, len(self.labels)))]
        return [(self.labels[i], float(self.scores[i])) for i in order]


@dataclass(frozen=True)
class BatchFusion:
    """`Fuser.fuse_batch` output: N fused samples over the same modalities."""

    embeddings: np.ndarray  # (N, D) unit rows
    scores: np.ndarray  # (N, K)
    weights: np.ndarray  # (N, M) normalised, M = len(modalities)
    reliabilities: np.ndarray  # (N, M)
    typicalities: np.ndarray  # (N, M)
    modalities: tuple[str, ...]


class Fuser:
    """Fuses the latest embeddings of any subset of modalities (thread-compatible: no
    mutable state besides the label set, which `set_labels` swaps atomically)."""

    def __init__(self, config: FusionConfig, labels: Sequence[str], label_embeddings:
                 np.ndarray, calibration: Calibration | None = None) -> None:
        self.config = config
        self.calibration = calibration
        self.set_labels(labels, label_embeddings)

    def set_labels(self, labels: Sequence[str], label_embeddings: np.ndarray) -> None:
        """Use a new label set: (K, D) unit-norm label (text) embeddings, one per label.
        Calibrated biases are matched by label name (0 for labels the calibration lacks);
        typicality does not depend on the label set."""
        labels = tuple(labels)
        text = np.asarray(label_embeddings, np.float32)
        if not labels or text.shape[:1] != (len(labels),) or text.ndim != 2:
            raise ValueError(f"need (K, D) label embeddings for {len(labels)} labels, got "
                             f"shape {text.shape}")
        if not np.isfinite(text).all():
            raise ValueError("label embeddings contain NaN or Inf")
        cal = self.calibration
        if cal is not None:
            width = next(iter(cal.modalities.values())).prototypes.shape[1]
            if width != text.shape[1]:
                raise ValueError(f"calibration is for {width}-d embeddings, the labels are "
                                 f"{text.shape[1]}-d (another model?)")
        bias = {}
        for m, c in (cal.modalities.items() if cal else ()):
            b = np.array([c.bias.get(lab, 0.0) for lab in labels])
            bias[m] = b - b.mean()
        self._state = (labels, _unit_rows(text), bias)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._state[0]

    def _temperature(self, m: str) -> float:
        cal = self.calibration.modalities.get(m) if self.calibration else None
        return cal.temperature if cal else self.config.logit_scale

    def typicality(self, modality: str, embeddings: np.ndarray) -> np.ndarray:
        """(N,) in [0, 1]: how much (N, D) inputs look like clean calibration inputs of the
        modality (1 for a modality without calibration)."""
        e = np.atleast_2d(embeddings)
        cal = self.calibration.modalities.get(modality) if self.calibration else None
        if cal is None:
            return np.ones(e.shape[0])
        best = (e @ cal.prototypes.T).max(axis=1).astype(np.float64)
        x = self.calibration.sharpness * (best - cal.low) / (cal.typical - cal.low)
        return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))

    def fuse_batch(self, embeddings: Mapping[str, np.ndarray],
                   method: str | None = None) -> BatchFusion:
        """Fuse N samples at once: ``embeddings[m]`` is (N, D) unit rows for each modality
        that is present in all N (what `fuse` does per sample; the benchmark's path)."""
        return self._fuse(self._state, embeddings, method or self.config.method)

    def _fuse(self, state: tuple, embeddings: Mapping[str, np.ndarray],
              method: str) -> BatchFusion:
        labels, text, bias = state
        if method not in METHODS:
            raise ValueError(f"unknown fusion method {method!r}")
        mods = tuple(embeddings)
        if not mods:
            raise ValueError("fuse_batch needs at least one modality")
        e = np.stack([np.atleast_2d(np.asarray(embeddings[m], np.float32)) for m in mods])
        k = len(labels)
        w = np.array([self.config.modalities[m].weight if m in self.config.modalities
                      else 1.0 for m in mods])[:, None]  # (M, 1)
        temp = np.array([self._temperature(m) for m in mods])[:, None, None]
        cos = e @ text.T  # (M, N, K)
        typ = np.stack([self.typicality(m, e[i]) for i, m in enumerate(mods)])  # (M, N)
        if method == "mean":
            rel = np.ones_like(typ)
            mix = w * rel
            fused = np.einsum("mn,mnd->nd", mix, e)
            z = self.config.logit_scale * (_unit_rows(fused) @ text.T)
        elif method == "embedding":
            rel = typ
            mix = w * rel * temp[:, :, 0]
            fused = np.einsum("mn,mnd->nd", mix, e)
            z = fused @ text.T  # sum of temperature-scaled cosines: calibrated scale
        else:
            b = np.stack([bias.get(m, np.zeros(k)) for m in mods])[:, None, :]
            logp = _log_softmax(temp * cos + b)  # (M, N, K)
            if method == "decision":
                rel = typ
                z = np.einsum("mn,mnk->nk", w * rel, logp)
            else:
                rho = self.config.max_reliability * typ[:, :, None]
                robust = np.log(rho * np.exp(logp) + (1 - rho) / k)
                z = np.einsum("m,mnk->nk", w[:, 0], robust)
                top = z.argmax(axis=1)
                p_top = np.exp(np.take_along_axis(logp, top[None, :, None], 2)[:, :, 0])
                works = rho[:, :, 0] * p_top
                rel = works / (works + (1 - rho[:, :, 0]) / k)  # P(sensor works | fused label)
            mix = w * rel
            fused = np.einsum("mn,mnd->nd", mix * temp[:, :, 0], e)
        total = mix.sum(axis=0, keepdims=True)
        weights = np.where(total > 0, mix / np.where(total > 0, total, 1), 1.0 / len(mods))
        degenerate = np.linalg.norm(fused, axis=1) < 1e-9  # weights underflowed or cancel
        if degenerate.any():
            fused[degenerate] = e[:, degenerate].sum(axis=0)
        scores = np.exp(_log_softmax(z))
        return BatchFusion(_unit_rows(fused), scores, weights.T, rel.T, typ.T, mods)

    def fuse(self, observations: Mapping[str, Observation], now: float | None = None,
             reasons: Mapping[str, str] | None = None) -> FusionResult:
        """Fuse the latest input of each modality.

        An input counts when its modality is configured and enabled, its embedding is a
        finite, non-zero vector of the labels' width, and (when ``now`` is given) its stamp
        is at most the modality's ``timeout_s`` old. Configured modalities that do not
        count are listed in ``excluded`` with the reason; ``reasons`` supplies it for
        modalities without an input (e.g. from `ApproximateSync`). Observations of
        modalities that are not configured are ignored."""
        cfg = self.config
        state = self._state  # one label set for the whole call, whatever set_labels does
        labels, text, _ = state
        excluded: list[tuple[str, str]] = []
        use: dict[str, Observation] = {}
        for m, mc in cfg.modalities.items():
            obs = observations.get(m)
            if not mc.enabled:
                excluded.append((m, DISABLED))
            elif obs is None:
                excluded.append((m, (reasons or {}).get(m, NO_INPUT)))
            elif now is not None and now - obs.stamp > mc.timeout_s:
                excluded.append((m, TIMEOUT))
            elif not _valid(obs.embedding, text.shape[1]):
                excluded.append((m, INVALID))
            else:
                use[m] = obs
        if not use:
            return FusionResult(None, None, labels, None, cfg.method, (), tuple(excluded))
        batch = self._fuse(state, {m: _unit_rows(np.asarray(o.embedding).reshape(1, -1))
                                   for m, o in use.items()}, cfg.method)
        stamp = max(o.stamp for o in use.values())
        contributions = tuple(
            Contribution(m, float(batch.weights[0, i]), float(batch.reliabilities[0, i]),
                         float(batch.typicalities[0, i]), float(stamp - use[m].stamp))
            for i, m in enumerate(batch.modalities))
        return FusionResult(batch.embeddings[0], batch.scores[0], labels, stamp, cfg.method,
                            contributions, tuple(excluded))


def _valid(v: np.ndarray, dim: int) -> bool:
    a = np.asarray(v)
    return (a.size == dim and np.issubdtype(a.dtype, np.number) and bool(np.isfinite(a).all())
            and float(np.linalg.norm(a)) > 1e-6)


# ----------------------------------------------------------------------------- time sync

T = TypeVar("T")
_EPS = 1e-9  # 1 ns: stamps that differ by exactly the slop still pair despite rounding


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One aligned set: the chosen message of each contributing modality."""

    stamp: float  # the newest member's stamp (the set's time)
    members: Mapping[str, tuple[float, T]]  # modality -> (stamp, item)
    excluded: Mapping[str, str]  # modality -> reason (never received, timeout, out of slop)


class ApproximateSync(Generic[T]):
    """Approximate-time alignment of per-modality streams with a slop and timeouts.

    Policy (docs/fusion.md, "Synchroniser"): each modality keeps its newest ``queue_size``
    messages sorted by stamp. A modality is *live* at time ``now`` while it has not been
    silent for longer than its timeout: its newest stamp is at most that old, or, if it never
    sent anything, the synchroniser started at most that long ago. The synchroniser looks
    for the newest *anchor* (a queued stamp) for which every live modality has a message in
    ``[anchor - slop, anchor]``; the set is that message (the newest such) of each live
    modality. A set that lacks some live modality is emitted only once waiting is pointless:
    ``now - anchor`` exceeds that modality's timeout (any message it still sends for that
    window would be too old to count). Emitting a set drops every queued message at or
    before its anchor, so each message is used once and output stamps strictly increase; a
    message arriving at or before the last emitted anchor is dropped as late (``late``
    counts them). Unlike message_filters' ApproximateTimeSynchronizer (which needs every
    topic, and pivots on each arrival), a silent modality drops out after its timeout
    instead of stalling the output, and the newest complete set wins.
    """

    def __init__(self, timeouts: Mapping[str, float], slop_s: float,
                 queue_size: int = 10) -> None:
        if not timeouts:
            raise ValueError("the synchroniser needs at least one modality")
        if not slop_s >= 0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        bad = {m: t for m, t in timeouts.items() if not t > 0}
        if bad:
            raise ValueError(f"timeouts must be > 0, got {bad}")
        self.timeouts = dict(timeouts)
        self.slop = float(slop_s)
        self.queue_size = int(queue_size)
        self._stamps: dict[str, list[float]] = {m: [] for m in timeouts}
        self._items: dict[str, list[T]] = {m: [] for m in timeouts}
        self._newest: dict[str, float] = {}
        self._start: float | None = None  # `now` of the first call: silence counts from it
        self._last: float | None = None  # anchor of the last emitted set
        self.late = 0  # messages dropped: at or before the last emitted set
        self.overflow = 0  # messages dropped: pushed out of a full queue
        self.emitted = 0

    def add(self, modality: str, stamp: float, item: T, now: float) -> list[SyncedSet[T]]:
        """Queue one message (KeyError for a modality the synchroniser does not have);
        returns the set it completes, if any (0 or 1 sets)."""
        if modality not in self._stamps:
            raise KeyError(f"unknown modality {modality!r}; the synchroniser has "
                           f"{', '.join(self._stamps)}")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"{modality} stamp must be finite, got {stamp}")
        if self._start is None:
            self._start = float(now)
        self._newest[modality] = max(stamp, self._newest.get(modality, -math.inf))
        if self._last is not None and stamp <= self._last:
            self.late += 1
            return self.poll(now)
        stamps, items = self._stamps[modality], self._items[modality]
        i = bisect.bisect_right(stamps, stamp)
        stamps.insert(i, stamp)
        items.insert(i, item)
        if len(stamps) > self.queue_size:
            del stamps[0], items[0]
            self.overflow += 1
        return self.poll(now)

    def live(self, now: float) -> list[str]:
        """Modalities that have not been silent for longer than their timeout at ``now``."""
        start = now if self._start is None else self._start
        return [m for m, t in self.timeouts.items()
                if now - self._newest.get(m, start) <= t]

    def _reasons(self, now: float) -> dict[str, str]:
        return {m: (NEVER if m not in self._newest else TIMEOUT)
                for m in self.timeouts if m not in self.live(now)}

    def poll(self, now: float) -> list[SyncedSet[T]]:
        """The newest set that is ready at ``now`` (call it on a timer too, so that a set
        waiting for a modality that went quiet is emitted once that modality times out)."""
        if self._start is None:
            self._start = float(now)
        live = self.live(now)
        anchors = sorted({s for m in live for s in self._stamps[m]}, reverse=True)
        for anchor in anchors:
            members: dict[str, tuple[float, T]] = {}
            missing = []
            for m in live:
                stamps = self._stamps[m]
                j = bisect.bisect_right(stamps, anchor) - 1
                if j >= 0 and stamps[j] >= anchor - self.slop - _EPS:
                    members[m] = (stamps[j], self._items[m][j])
                else:
                    missing.append(m)
            if all(now - anchor > self.timeouts[m] for m in missing):
                return [self._emit(anchor, members, missing, now)]
        return []

    def _emit(self, anchor: float, members: dict[str, tuple[float, T]], missing: list[str],
              now: float) -> SyncedSet[T]:
        for m in self._stamps:
            j = bisect.bisect_right(self._stamps[m], anchor)
            del self._stamps[m][:j], self._items[m][:j]
        self._last = anchor
        self.emitted += 1
        reasons = self._reasons(now)
        reasons.update({m: OUT_OF_SLOP if m in self._newest else NEVER for m in missing})
        return SyncedSet(anchor, members, reasons)


def sync_from_config(config: FusionConfig, slop_s: float,
                     queue_size: int = 10) -> ApproximateSync[Any]:
    """A synchroniser over the enabled modalities of a fusion config, with their timeouts."""
    return ApproximateSync({m: c.timeout_s for m, c in config.modalities.items() if c.enabled},
                           slop_s, queue_size)


def modality_configs(names: Iterable[str], weights: Mapping[str, float] | None = None,
                     timeouts: Mapping[str, float] | None = None,
                     disabled: Iterable[str] = ()) -> dict[str, ModalityConfig]:
    """Per-modality configs from flat parameter values (what a node declares)."""
    off = set(disabled)
    return {m: ModalityConfig(m not in off, float((weights or {}).get(m, 1.0)),
                              float((timeouts or {}).get(m, 1.0))) for m in names}
