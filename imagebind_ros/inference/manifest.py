"""The manifest of an ONNX export: everything a runtime needs to READ an export and trust it.

``manifest.json`` sits next to the ``<modality>.onnx`` files (``inference.export`` writes
them): the model config with its preprocessing constants, each encoder's file, sha256, size
and I/O names/shapes, the checkpoint's sha256 and the tool versions. ``load_manifest``
checks sizes always and sha256 on request, so a truncated or replaced file is caught before
a session is made from it. The backends and ``quantize`` import this module, never the
exporter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..modalities import encoder_shape
from ..model import ImageBindConfig, TrunkConfig

MANIFEST_FORMAT = "imagebind_ros.onnx/1"
MANIFEST_NAME = "manifest.json"
# Protobuf cannot hold a file over 2 GiB; weights above this go to ``<file>.data``.
EXTERNAL_DATA_BYTES = 1 << 30
_CHUNK = 1 << 22


class ManifestError(RuntimeError):
    """An export directory that cannot be used: missing, truncated or inconsistent files."""


def sha256_file(path: str | os.PathLike[str], progress: bool = False) -> str:
    """Hex sha256 of a file, streamed (checkpoints and weights are gigabytes)."""
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f, tqdm(total=p.stat().st_size, unit="B", unit_scale=True,
                                  desc=f"sha256 {p.name}", disable=not progress,
                                  leave=False) as bar:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def preprocessing_constants(config: ImageBindConfig, modality: str) -> dict[str, Any]:
    """The modality's non-architecture config fields: what its input preparation needs."""
    trunk = {f.name for f in dataclasses.fields(TrunkConfig)}
    cfg = config.modality(modality)
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in trunk}


@dataclass
class EncoderEntry:
    """One exported encoder as the manifest records it."""

    file: str
    sha256: str
    size: int
    input_name: str
    input_shape: list[int | str]
    input_dtype: str
    output_name: str
    output_shape: list[int | str]
    external_data: str | None = None
    external_data_sha256: str | None = None
    external_data_size: int | None = None
    max_abs_diff: float | None = None

    @property
    def files(self) -> list[tuple[str, str, int]]:
        """(file name, sha256, size) of every file the encoder needs."""
        out = [(self.file, self.sha256, self.size)]
        if self.external_data is not None:
            out.append((self.external_data, str(self.external_data_sha256),
                        int(self.external_data_size or 0)))
        return out


@dataclass
class Manifest:
    """What an export directory holds, with enough to rebuild and check every encoder."""

    directory: Path
    config: ImageBindConfig
    encoders: dict[str, EncoderEntry]
    opset: int
    precision: str
    checkpoint: dict[str, Any] | None
    versions: dict[str, str]
    # dense vision graphs (``export_dense_onnx``), by last-block variant
    dense: dict[str, EncoderEntry] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders)

    def path(self, modality: str) -> Path:
        return self.directory / self.entry(modality).file

    def entry(self, modality: str) -> EncoderEntry:
        if modality not in self.encoders:
            raise KeyError(f"modality {modality!r} was not exported to {self.directory} "
                           f"(has: {', '.join(self.encoders) or 'none'})")
        return self.encoders[modality]

    def sample_shape(self, modality: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.entry(modality).input_shape[1:])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (tuples become lists, as they will on disk)."""
        d = {"format": MANIFEST_FORMAT, "config": self.config.to_dict(),
             "opset": self.opset, "precision": self.precision,
             "checkpoint": self.checkpoint, "versions": self.versions,
             "preprocessing": {m: preprocessing_constants(self.config, m)
                               for m in self.encoders},
             "encoders": {m: dataclasses.asdict(e) for m, e in self.encoders.items()},
             "dense": {v: dataclasses.asdict(e) for v, e in self.dense.items()}}
        return json.loads(json.dumps(d))

    def dense_entry(self, variant: str) -> EncoderEntry:
        if variant not in self.dense:
            raise KeyError(f"no dense vision graph {variant!r} in {self.directory} (has: "
                           f"{', '.join(self.dense) or 'none'}; export with --dense "
                           f"{variant})")
        return self.dense[variant]

    def write(self) -> Path:
        """Write ``manifest.json`` atomically next to the ONNX files."""
        path = self.directory / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path


def load_manifest(path: str | os.PathLike[str], verify: bool = True,
                  modalities: Iterable[str] | None = None) -> Manifest:
    """Read an export's manifest (a directory or its ``manifest.json``) and check its files.

    Sizes are always checked (a truncated copy is caught at once); with ``verify`` the
    sha256 of every file of ``modalities`` (None: all) is compared too, so a replaced file
    cannot pose as the export. A backend of some encoders hashes only theirs (a 4.8 GB
    export takes ~10 s to hash here; an audio node needs 0.35 GB of it).
    """
    p = Path(path)
    mpath = p / MANIFEST_NAME if p.is_dir() else p
    if not mpath.is_file():
        raise ManifestError(f"no ONNX export at {p}: {mpath.name} not found "
                            "(create one with `imagebind-ros export`)")
    try:
        d = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{mpath} is not valid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != MANIFEST_FORMAT:
        fmt = d.get("format") if isinstance(d, dict) else None
        raise ManifestError(f"{mpath} is not an imagebind_ros ONNX manifest "
                            f"(format {fmt!r}, expected {MANIFEST_FORMAT!r})")
    try:
        config = ImageBindConfig.from_dict(d["config"])
        manifest = Manifest(directory=mpath.parent, config=config,
                            encoders=_entries(d["encoders"]), opset=int(d["opset"]),
                            precision=str(d["precision"]), checkpoint=d.get("checkpoint"),
                            versions=dict(d["versions"]), dense=_entries(d.get("dense", {})))
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{mpath} is malformed: {type(e).__name__}: {e}") from None
    hashed = set(manifest.encoders if modalities is None else modalities)
    for m, e in manifest.encoders.items():
        _check_entry(manifest, m, e, verify and m in hashed)
    for v, e in manifest.dense.items():  # dense graphs are the vision encoder's files
        _check_dense_entry(manifest, v, e, verify and "vision" in hashed)
    return manifest


def _entries(d: dict[str, Any]) -> dict[str, EncoderEntry]:
    fields = {f.name for f in dataclasses.fields(EncoderEntry)}
    out = {}
    for m, e in d.items():
        unknown = set(e) - fields
        if unknown:
            raise ValueError(f"encoder {m!r} has unknown fields {sorted(unknown)}")
        out[m] = EncoderEntry(**e)
    return out


def _check_dense_entry(manifest: Manifest, variant: str, e: EncoderEntry, verify: bool
                       ) -> None:
    """A dense graph takes one (1, 3, H, W) frame and gives (1, H/p, W/p, D)."""
    dim = manifest.config.out_embed_dim
    if ("vision" not in manifest.config.modalities or len(e.input_shape) != 4
            or e.input_shape[:2] != [1, 3] or len(e.output_shape) != 4
            or e.output_shape[0] != 1 or e.output_shape[-1] != dim):
        raise ManifestError(f"manifest dense entry {variant!r} says input {e.input_shape} -> "
                            f"output {e.output_shape}, not (1, 3, H, W) -> (1, H/p, W/p, {dim})"
                            " of a vision model: edited or from another export")
    _check_files(manifest, e, verify)


def _check_entry(manifest: Manifest, modality: str, e: EncoderEntry, verify: bool) -> None:
    """Raise ``ManifestError`` if the entry disagrees with the config or with its files."""
    if modality not in manifest.config.modalities:
        raise ManifestError(f"manifest lists encoder {modality!r} but its config has no "
                            f"such modality ({', '.join(manifest.config.modalities)})")
    want_in = ["batch", *encoder_shape(manifest.config, modality)]
    want_out = ["batch", manifest.config.out_embed_dim]
    if list(e.input_shape) != want_in or list(e.output_shape) != want_out:
        raise ManifestError(
            f"manifest entry {modality!r} says input {e.input_shape} -> output "
            f"{e.output_shape}, but its config implies {want_in} -> {want_out}: the "
            "manifest was edited or belongs to another export (audio graphs take one clip "
            "per row: exports older than that need a re-export)")
    _check_files(manifest, e, verify)


def _check_files(manifest: Manifest, e: EncoderEntry, verify: bool) -> None:
    """Every file of the entry is there, of its size and (with ``verify``) its sha256."""
    for name, sha, size in e.files:
        f = manifest.directory / name
        if not f.is_file():
            raise ManifestError(f"{f} is missing (listed in {MANIFEST_NAME}); re-export")
        actual = f.stat().st_size
        if actual != size:
            raise ManifestError(f"{f} has {actual} bytes, the manifest says {size}: the file "
                                "is truncated or from another export; re-export")
        if verify and sha256_file(f) != sha:
            raise ManifestError(f"{f} does not match the sha256 in {MANIFEST_NAME}: the file "
                                "was replaced or corrupted; re-export")


def fingerprint(manifest: Manifest, modality: str) -> str:
    """One sha256 over every file of an encoder (graph + external weights): a cache key."""
    h = hashlib.sha256()
    for name, sha, _ in manifest.entry(modality).files:
        h.update(f"{name}:{sha};".encode())
    return h.hexdigest()
