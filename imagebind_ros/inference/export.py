"""ONNX export of the modality encoders, and the manifest that describes an export.

One ONNX file per modality: the preprocessed tensor in (dynamic batch), the unit-norm
embedding out. Feature extraction (fbank, resizing, tokenising) stays outside the graph, in
``imagebind_ros.preprocess``, so every backend shares one preprocessing implementation.

The exporter is ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): on these
encoders it gives a graph about 3x smaller than the legacy TorchScript exporter (IMU: 69 nodes
against 1,702, where the legacy exporter unrolls ``unfold`` into 254 ``Slice`` nodes), the
same numbers (max |diff| ~1e-7 on the tiny preset), and it is the exporter torch supports
going forward. Opset 18 is the dynamo exporter's default in torch 2.9, carries
``LayerNormalization`` as one op, and is read by ONNX Runtime and TensorRT >= 8.6.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..model import MODALITY_CONFIGS, ImageBindConfig, ImageBindModel, TrunkConfig

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "imagebind_ros.onnx/1"
MANIFEST_NAME = "manifest.json"
OPSET = 18
# Not "embedding": torch 2.11's exporter names aten.embedding's output that (text encoder).
OUTPUT_NAME = "unit_embedding"
# Protobuf cannot hold a file over 2 GiB; weights above this go to ``<file>.data``.
EXTERNAL_DATA_BYTES = 1 << 30
_CHUNK = 1 << 22


class ExportError(RuntimeError):
    """The export failed or its result does not reproduce the torch model."""


class ManifestError(RuntimeError):
    """An export directory that cannot be used: missing, truncated or inconsistent files."""


def input_shape(config: ImageBindConfig, modality: str) -> tuple[int, ...]:
    """Shape of one preprocessed sample (no batch axis), as the exported graph takes it."""
    cfg: Any = config.modality(modality)
    if modality == "vision":
        return (3, cfg.image_size, cfg.image_size)
    if modality == "text":
        return (cfg.context_length,)
    if modality == "audio":
        return (cfg.clips_per_video, 1, cfg.num_mel_bins, cfg.target_length)
    if modality in ("depth", "thermal"):
        return (1, cfg.image_size, cfg.image_size)
    if modality == "imu":
        return (cfg.channels, cfg.num_samples)
    raise KeyError(f"unknown modality {modality!r}")


def preprocessing_constants(config: ImageBindConfig, modality: str) -> dict[str, Any]:
    """The modality's non-architecture config fields: what its input preparation needs."""
    trunk = {f.name for f in dataclasses.fields(TrunkConfig)}
    cfg = config.modality(modality)
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in trunk}


def input_dtype(modality: str) -> np.dtype:
    """Token ids for text, float32 for everything else."""
    return np.dtype(np.int64) if modality == "text" else np.dtype(np.float32)


def example_input(config: ImageBindConfig, modality: str, batch: int = 2,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A valid random input: normal noise, or token ids with one end-of-text id per row."""
    shape = (batch, *input_shape(config, modality))
    if modality != "text":
        return torch.randn(shape, generator=generator)
    vocab = config.modality("text").vocab_size  # type: ignore[attr-defined]
    ids = torch.randint(1, vocab - 1, shape, generator=generator)
    eot = torch.randint(1, shape[1], (batch,), generator=generator)
    ids[torch.arange(batch), eot] = vocab - 1  # the head pools the largest id (CLIP's EOT)
    ids[torch.arange(shape[1])[None] > eot[:, None]] = 0  # padding after EOT
    return ids


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


def single_modality_model(model: ImageBindModel, modality: str,
                          dtype: torch.dtype = torch.float32) -> ImageBindModel:
    """A model holding only ``modality``'s weights (shared, not copied, when dtype matches).

    Exporting through it keeps other encoders' parameters out of the traced program.
    """
    cfg = model.config
    single = ImageBindConfig(name=cfg.name, out_embed_dim=cfg.out_embed_dim,
                             **{m: (getattr(cfg, m) if m == modality else None)
                                for m in MODALITY_CONFIGS})
    prefixes = tuple(f"{part}.{modality}." for part in (
        "modality_preprocessors", "modality_trunks", "modality_heads",
        "modality_postprocessors"))
    state = {k: v.detach().to(dtype) for k, v in model.state_dict().items()
             if k.startswith(prefixes)}
    with torch.device("meta"):
        out = ImageBindModel(single)
    out.load_state_dict(state, strict=True, assign=True)
    return out.eval()


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
             "encoders": {m: dataclasses.asdict(e) for m, e in self.encoders.items()}}
        return json.loads(json.dumps(d))

    def write(self) -> Path:
        """Write ``manifest.json`` atomically next to the ONNX files."""
        path = self.directory / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path


def _versions() -> dict[str, str]:
    import onnx

    out = {"torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxscript
        out["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return out


def _check_opset(opset: int) -> None:
    if opset < OPSET:
        raise ValueError(f"opset {opset}: the dynamo exporter writes opset >= {OPSET} (it "
                         "cannot convert these encoders down)")


def _require_onnxscript() -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the 'onnxscript' package (torch's dynamo "
                          "exporter): pip install onnxscript") from None


def _export_one(model: ImageBindModel, modality: str, path: Path, opset: int,
                external_data: bool | None) -> tuple[EncoderEntry, torch.Tensor, torch.Tensor]:
    """Export one encoder; return its entry, the example input and torch's output for it."""
    single = single_modality_model(model, modality)
    encoder = single.encoder(modality).eval()  # a fresh nn.Module starts in train mode
    gen = torch.Generator().manual_seed(0)
    x = example_input(model.config, modality, batch=2, generator=gen)
    with torch.inference_mode():
        expected = encoder(x)
    external = external_data
    if external is None:
        external = module_bytes(single) > EXTERNAL_DATA_BYTES
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter
        program = torch.onnx.export(
            encoder, (x,), dynamo=True, opset_version=opset, input_names=[modality],
            output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), optimize=True,
            verbose=False)
    if program is None:
        raise ExportError(f"torch.onnx.export returned nothing for {modality!r}")
    data = path.with_name(path.name + ".data")
    for stale in (path, data):
        stale.unlink(missing_ok=True)
    program.save(str(path), external_data=external)
    del program
    got = _default_opset(path)
    if got != opset:  # the exporter falls back silently when it cannot convert the opset
        raise ExportError(f"{path.name}: asked for opset {opset}, the exporter wrote {got}")
    shape_in: list[int | str] = ["batch", *input_shape(model.config, modality)]
    entry = EncoderEntry(
        file=path.name, sha256="", size=0, input_name=modality, input_shape=shape_in,
        input_dtype=str(input_dtype(modality)), output_name=OUTPUT_NAME,
        output_shape=["batch", model.config.out_embed_dim])
    return _hash_files(path, entry), x, expected


def _hash_files(path: Path, entry: EncoderEntry) -> EncoderEntry:
    """Record the graph file's and (if any) its external data file's size and sha256."""
    entry.sha256, entry.size = sha256_file(path), path.stat().st_size
    data = path.with_name(path.name + ".data")
    entry.external_data = entry.external_data_sha256 = entry.external_data_size = None
    if data.exists():
        entry.external_data = data.name
        entry.external_data_sha256 = sha256_file(data)
        entry.external_data_size = data.stat().st_size
    return entry


def _default_opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _check_with_onnxruntime(path: Path, entry: EncoderEntry, x: torch.Tensor,
                            expected: torch.Tensor, tol: float) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run([entry.output_name], {entry.input_name: x.numpy()})[0]
    diff = float(np.abs(got - expected.numpy()).max())
    if not diff <= tol:
        raise ExportError(f"{path.name}: ONNX Runtime differs from torch by {diff:.3g} "
                          f"(tolerance {tol:g}); the export is not usable")
    return diff


def export_onnx(model: ImageBindModel, modalities: Iterable[str] | None,
                out_dir: str | os.PathLike[str], fp16: bool = False,
                checkpoint_path: str | os.PathLike[str] | None = None, progress: bool = True,
                opset: int = OPSET, external_data: bool | None = None,
                verify: bool = True) -> Path:
    """Export encoders to ``out_dir/<modality>.onnx`` and write ``manifest.json``; return it.

    ``modalities=None`` exports every encoder of the model. ``fp16`` converts each exported
    graph to float16 weights and arithmetic (float32 in and out; LayerNorm and the final
    normalisation stay float32), which is what TensorRT >= 11 needs for an FP16 engine.
    ``external_data=None`` puts weights in a ``.data`` file only above 1 GiB (ViT-H vision).
    With ``verify`` each file is run once in ONNX Runtime and compared with torch.
    """
    _check_opset(opset)
    _require_onnxscript()
    mods = list(model.modalities if modalities is None else modalities)
    missing = [m for m in mods if m not in model.modalities]
    if not mods or missing:
        raise ValueError(f"cannot export modalities {missing or mods}: the model has "
                         f"{', '.join(model.modalities)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if checkpoint_path is not None:
        ckpt = {"path": os.fspath(checkpoint_path),
                "sha256": sha256_file(checkpoint_path, progress=progress)}
    encoders: dict[str, EncoderEntry] = {}
    bar = tqdm(mods, desc="export", unit="encoder", disable=not progress)
    for m in bar:
        bar.set_postfix_str(m)
        path = out / f"{m}.onnx"
        entry, x, expected = _export_one(model, m, path, opset, external_data)
        if fp16:
            from .quantize import convert_fp16
            convert_fp16(path, path)
            entry = _hash_files(path, entry)
        if verify:
            entry.max_abs_diff = _check_with_onnxruntime(
                path, entry, x, expected, tol=2e-2 if fp16 else 1e-4)
        encoders[m] = entry
        log.info("exported %s -> %s", m, path)
    manifest = Manifest(directory=out, config=model.config, encoders=encoders, opset=opset,
                        precision="fp16" if fp16 else "fp32", checkpoint=ckpt,
                        versions=_versions())
    return manifest.write()


def load_manifest(path: str | os.PathLike[str], verify: bool = True) -> Manifest:
    """Read an export's manifest (a directory or its ``manifest.json``) and check its files.

    Sizes are always checked (a truncated copy is caught at once); with ``verify`` the
    sha256 of every file is compared too, so a replaced file cannot pose as the export.
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
        fields = {f.name for f in dataclasses.fields(EncoderEntry)}
        encoders = {}
        for m, e in d["encoders"].items():
            unknown = set(e) - fields
            if unknown:
                raise ValueError(f"encoder {m!r} has unknown fields {sorted(unknown)}")
            encoders[m] = EncoderEntry(**e)
        manifest = Manifest(directory=mpath.parent, config=config, encoders=encoders,
                            opset=int(d["opset"]), precision=str(d["precision"]),
                            checkpoint=d.get("checkpoint"), versions=dict(d["versions"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"{mpath} is malformed: {type(e).__name__}: {e}") from None
    for m, e in manifest.encoders.items():
        _check_entry(manifest, m, e, verify)
    return manifest


def _check_entry(manifest: Manifest, modality: str, e: EncoderEntry, verify: bool) -> None:
    """Raise ``ManifestError`` if the entry disagrees with the config or with its files."""
    if modality not in manifest.config.modalities:
        raise ManifestError(f"manifest lists encoder {modality!r} but its config has no "
                            f"such modality ({', '.join(manifest.config.modalities)})")
    want_in = ["batch", *input_shape(manifest.config, modality)]
    want_out = ["batch", manifest.config.out_embed_dim]
    if list(e.input_shape) != want_in or list(e.output_shape) != want_out:
        raise ManifestError(
            f"manifest entry {modality!r} says input {e.input_shape} -> output "
            f"{e.output_shape}, but its config implies {want_in} -> {want_out}: the "
            "manifest was edited or belongs to another export")
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


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (to decide on external data, to report)."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imagebind-ros export",
        description="Export modality encoders to ONNX (one file per modality + manifest.json)."
                    " Preprocessing stays outside the graphs (imagebind_ros.preprocess).")
    p.add_argument("--checkpoint", help="imagebind_huge.pth or an imagebind_ros checkpoint "
                   "(omit only for a random-init preset: tests and benchmarks)")
    p.add_argument("--preset", default=None, help="architecture when the checkpoint carries "
                   "no config (default imagebind_huge)")
    p.add_argument("--modalities", default=None,
                   help="comma-separated, e.g. vision,audio (default: every encoder)")
    p.add_argument("--out", required=True, help="output directory")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="float16 graphs (float32 I/O): "
                      "for GPUs and TensorRT FP16 engines")
    prec.add_argument("--int8", action="store_true", help="also write dynamic-int8 variants "
                      "(ONNX Runtime on CPU) to OUT/derived now, not on first use")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--external-data", choices=("auto", "always", "never"), default="auto",
                   help="weights in <file>.data: auto = above 1 GiB (ViT-H vision)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip running each file once in ONNX Runtime against torch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``imagebind-ros export``: returns 0, or 2 after one ``error:`` line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        return _run_cli(args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        # CheckpointError, ExportError and ManifestError are RuntimeErrors with full messages.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"imagebind-ros export: error: {msg}", file=sys.stderr)
        return 2


def _run_cli(args: argparse.Namespace) -> int:
    from ..model import create_model

    mods = None
    if args.modalities:
        mods = [m.strip() for m in args.modalities.split(",") if m.strip()]
        if not mods:
            raise ValueError("--modalities is empty")
    _check_opset(args.opset)
    if args.checkpoint is None:
        print(f"imagebind-ros export: warning: no --checkpoint, exporting random-init "
              f"{args.preset or 'imagebind_huge'} weights (for tests and benchmarks only)",
              file=sys.stderr)
    _require_onnxscript()
    model = create_model(args.preset, checkpoint=args.checkpoint)
    external = {"auto": None, "always": True, "never": False}[args.external_data]
    path = export_onnx(model, mods, args.out, fp16=args.fp16,
                       checkpoint_path=args.checkpoint, progress=not args.quiet,
                       opset=args.opset, external_data=external, verify=args.verify)
    manifest = load_manifest(path, verify=False)  # just written and hashed
    del model
    if args.int8:
        from .quantize import derived_model
        for m in tqdm(manifest.modalities, desc="int8", unit="encoder", disable=args.quiet):
            derived_model(manifest, m, "int8")
    for m, e in manifest.encoders.items():
        total = e.size + (e.external_data_size or 0)
        diff = "" if e.max_abs_diff is None else f", max |ONNX - torch| {e.max_abs_diff:.1e}"
        extra = f" + {e.external_data}" if e.external_data else ""
        print(f"{m}: {e.file}{extra} ({_human_bytes(total)}, input {e.input_shape}{diff})")
    int8 = " and int8 variants in derived/" if args.int8 else ""
    print(f"wrote {manifest.precision} export of {manifest.config.name}{int8} to "
          f"{manifest.directory} (manifest {path.name})")
    return 0
