"""Training configuration: YAML file + ``--dotted.key value`` overrides onto the defaults.

Sections with fixed keys (``optim``, ``cache``, ``eval``, ``log``, ``hub``) reject unknown
keys, so a typo fails at start-up instead of silently training with a default. ``model``,
``data`` and ``temperature`` hold per-modality entries and are free-form.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# The paper's fixed InfoNCE temperatures per (image, X) pair.
TEMPERATURES = {"audio": 0.05, "depth": 0.2, "thermal": 0.1, "imu": 0.2}

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "seed": 0,
    "out_dir": "runs/train",
    # spokes: train `modalities` against a frozen hub; hub: train vision + text CLIP-style
    "stage": "spokes",
    "modalities": ["audio", "depth", "thermal", "imu"],
    "temperature": dict(TEMPERATURES),
    "hub": {
        "kind": "checkpoint",  # checkpoint | open_clip | random
        "path": None,  # checkpoint: imagebind_huge.pth or one of ours
        "preset": "imagebind_huge",  # checkpoint (plain state dicts) and random
        "name": None,  # open_clip model name
        "pretrained": None,  # open_clip weights: a local file
        "seed": 0,  # random
        "config": {},  # random: overrides of the preset, e.g. {vision: {image_size: 32}}
        # store hub weights inside trained checkpoints (one self-contained file):
        # auto = when the hub has at most embed_max_params parameters
        "embed": "auto",
        "embed_max_params": 50_000_000,
    },
    # preset to start from, and per-modality overrides of its encoder configs
    "model": {"preset": "tiny", "out_embed_dim": None},
    "data": {
        "train": {},  # modality -> dataset spec {kind: ..., options}
        "eval": None,  # dataset spec of the held-out evaluation set
        "replicate": {},  # modality -> times each sample appears per epoch
        "steps_per_epoch": None,  # default: enough for the largest replicated dataset
        "num_workers": 0,
    },
    "batch_size": 32,  # global batch per modality (split over processes)
    "epochs": 1,
    "optim": {
        "lr": 1e-3,
        "weight_decay": 0.05,
        "betas": [0.9, 0.95],
        "eps": 1e-6,
        "warmup_steps": 0,
        "min_lr_ratio": 0.0,  # cosine decays to lr * min_lr_ratio
        "grad_clip": 1.0,  # max global grad norm; 0 disables
    },
    "precision": "fp32",  # fp32 | bf16 | fp16 (autocast; fp16 adds a grad scaler)
    "device": "auto",  # auto (cuda:LOCAL_RANK if available) | cpu | cuda
    "threads": None,  # torch CPU threads per process
    "cache": {
        "enabled": True,  # hub-feature cache (spokes stage; needs finite views)
        "dir": None,  # default: <out_dir>/hub_cache
        "dtype": "float16",
        "batch_size": 64,
    },
    "eval": {
        "every": 1,  # epochs between evaluations; 0 = only at the end
        # openai | simple | a list of format strings with one {}
        "templates": "openai",
        "batch_size": 64,
        "ks": [1, 5],
        "plots": True,
    },
    "log": {
        "tensorboard": True,
        "progress": True,
        "every": 0,  # also print a plain log line every N steps (0: never)
    },
    "resume": None,  # latest | path to a training checkpoint
    # stage hub: patch embeddings of the dense read-out (model/dense.py) trained to name the
    # class whose object box holds them, else background (training/dense_objective.py);
    # needs a dataset with object boxes (synthetic). weight 0 = off.
    "dense": {
        "weight": 0.0,
        "variant": "maskclip",
        "temperature": 0.07,
        "prompt": "a photo of a {}",
    },
}

FIXED_SECTIONS = ("hub", "optim", "cache", "eval", "log", "dense")


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            if node.get(k) is None and (i > 0 or k not in DEFAULTS):
                node[k] = {}
            else:
                raise KeyError(f"config key {'.'.join(keys[:i + 1])!r} is not a section")
        node = node[k]
    node[keys[-1]] = value


def _merge(base: dict[str, Any], new: dict[str, Any], path: str = "") -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, f"{path}{k}.")
        else:
            base[k] = v


def validate(cfg: dict[str, Any], check_data: bool = True) -> dict[str, Any]:
    """Reject unknown keys and impossible values with one clear message each."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise KeyError(f"unknown config keys {unknown}; known: {sorted(DEFAULTS)}")
    for sec in FIXED_SECTIONS:
        bad = sorted(set(cfg[sec]) - set(DEFAULTS[sec]))
        if bad:
            raise KeyError(f"unknown keys in {sec}: {bad}; known: {sorted(DEFAULTS[sec])}")
    if cfg["stage"] not in ("spokes", "hub"):
        raise ValueError(f"stage must be 'spokes' or 'hub', got {cfg['stage']!r}")
    if cfg["precision"] not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {cfg['precision']!r}")
    mods = cfg["modalities"]
    if isinstance(mods, str):
        cfg["modalities"] = mods = [m.strip() for m in mods.split(",") if m.strip()]
    if not mods:
        raise ValueError("modalities is empty: nothing to train")
    if cfg["stage"] == "hub" and list(mods) != ["text"]:
        raise ValueError("stage hub trains (image, text) pairs: set modalities: [text]")
    missing = [m for m in mods if m not in cfg["data"]["train"]]
    if missing and check_data:
        raise ValueError(f"no training data for {missing}: add data.train.<modality> specs")
    if cfg["stage"] == "spokes":
        no_t = [m for m in mods if m not in cfg["temperature"]]
        if no_t:
            raise ValueError(f"no temperature for {no_t}: set temperature.<modality>")
        bad_t = {m: cfg["temperature"][m] for m in mods if not cfg["temperature"][m] > 0}
        if bad_t:
            raise ValueError(f"temperatures must be positive, got {bad_t}")
    if float(cfg["dense"]["weight"]) and cfg["stage"] != "hub":
        raise ValueError("dense.weight trains the hub's patch embeddings: stage hub only")
    if int(cfg["batch_size"]) < 2:
        raise ValueError("batch_size must be at least 2 (contrastive loss needs negatives)")
    if int(cfg["epochs"]) < 1:
        raise ValueError("epochs must be at least 1")
    return cfg


def load_config(path: str | None, overrides: list[str],
                check_data: bool = True) -> dict[str, Any]:
    """Defaults <- YAML file <- ``--a.b value`` pairs (values parsed as YAML scalars)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        text = Path(path).read_text(encoding="utf-8")
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
        _merge(cfg, loaded)
    if len(overrides) % 2:
        raise ValueError(f"overrides come as '--key value' pairs, got {overrides}")
    for flag, raw in zip(overrides[::2], overrides[1::2]):
        if not flag.startswith("--") or len(flag) < 3:
            raise ValueError(f"expected --key, got {flag!r}")
        _set(cfg, flag[2:].replace("-", "_"), yaml.safe_load(raw))
    return validate(cfg, check_data)
