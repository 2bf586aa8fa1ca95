"""ONNX export of the modality encoders (writes what ``manifest`` describes and reads).

One ONNX file per modality: the preprocessed tensor in (dynamic batch), the unit-norm
embedding out. The audio graph takes one clip per row (``ModalitySpec.encoder_shape``):
``Backend.encode`` runs a recording's clips as rows and averages them, so a live window
costs one clip on every runtime. Feature extraction (fbank, resizing, tokenising) stays
outside the graph, in ``imagebind_ros.preprocess``, so every backend shares one
preprocessing implementation.

The exporter is ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): on these
encoders it gives a graph about 3x smaller than the legacy TorchScript exporter (IMU: 69 nodes
against 1,702, where the legacy exporter unrolls ``unfold`` into 254 ``Slice`` nodes), the
same numbers (max |diff| ~1e-7 on the tiny preset), and it is the exporter torch supports
going forward. Opset 18 is the dynamo exporter's default in torch 2.9, carries
``LayerNormalization`` as one op, and is read by ONNX Runtime and TensorRT >= 8.6.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..modalities import spec
from ..model import MODALITY_CONFIGS, ImageBindConfig, ImageBindModel, create_model
from ..model.imagebind import state_prefixes
from .manifest import EXTERNAL_DATA_BYTES, EncoderEntry, Manifest, load_manifest, sha256_file
from .quantize import convert_fp16, derived_model

log = logging.getLogger(__name__)

OPSET = 18
# Not "embedding": torch 2.11's exporter names aten.embedding's output that (text encoder).
OUTPUT_NAME = "unit_embedding"
DENSE_OUTPUT = "patch_embeddings"  # the dense vision graph's (1, H/p, W/p, D) output


class ExportError(RuntimeError):
    """The export failed or its result does not reproduce the torch model."""


def single_modality_model(model: ImageBindModel, modality: str,
                          dtype: torch.dtype = torch.float32) -> ImageBindModel:
    """A model holding only ``modality``'s weights (shared, not copied, when dtype matches).

    Exporting through it keeps other encoders' parameters out of the traced program.
    """
    cfg = model.config
    single = ImageBindConfig(name=cfg.name, out_embed_dim=cfg.out_embed_dim,
                             **{m: (getattr(cfg, m) if m == modality else None)
                                for m in MODALITY_CONFIGS})
    prefixes = state_prefixes([modality])
    state = {k: v.detach().to(dtype) for k, v in model.state_dict().items()
             if k.startswith(prefixes)}
    with torch.device("meta"):
        out = ImageBindModel(single)
    out.load_state_dict(state, strict=True, assign=True)
    return out.eval()


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
    x = spec(modality).example(model.config, batch=2, generator=gen, clips=1)
    if spec(modality).clips:  # one clip per row; Backend.encode averages a sample's clips
        x = x[:, 0]
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
    shape_in: list[int | str] = ["batch", *spec(modality).encoder_shape(model.config)]
    entry = EncoderEntry(
        file=path.name, sha256="", size=0, input_name=modality, input_shape=shape_in,
        input_dtype=str(spec(modality).dtype), output_name=OUTPUT_NAME,
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
                verify: bool = True, dense: Sequence[str] = ()) -> Path:
    """Export encoders to ``out_dir/<modality>.onnx`` and write ``manifest.json``; return it.

    ``dense``: last-block variants (``model.dense.DENSE_VARIANTS``) whose dense vision graph
    is written too, as ``vision_dense_<variant>.onnx`` (float32 whatever ``fp16`` says;
    always checked against torch), for ``method: dense`` detection on ONNX Runtime.

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
            convert_fp16(path, path)
            entry = _hash_files(path, entry)
        if verify:
            entry.max_abs_diff = _check_with_onnxruntime(
                path, entry, x, expected, tol=2e-2 if fp16 else 1e-4)
        encoders[m] = entry
        log.info("exported %s -> %s", m, path)
    if dense and "vision" not in mods:
        raise ValueError("dense graphs read the vision encoder: export vision too")
    dense_entries = {v: export_dense_onnx(model, out / f"vision_dense_{v}.onnx", v, opset)
                     for v in tqdm(dense, desc="dense", disable=not progress)}
    manifest = Manifest(directory=out, config=model.config, encoders=encoders, opset=opset,
                        precision="fp16" if fp16 else "fp32", checkpoint=ckpt,
                        versions=_versions(), dense=dense_entries)
    return manifest.write()


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
    p.add_argument("--dense", default="", help="comma-separated dense vision graphs to add "
                   "(maskclip, naclip, ...: the detector's method dense on ONNX Runtime)")
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
    model = create_model(args.preset, checkpoint=args.checkpoint, modalities=mods)
    external = {"auto": None, "always": True, "never": False}[args.external_data]
    path = export_onnx(model, mods, args.out, fp16=args.fp16,
                       checkpoint_path=args.checkpoint, progress=not args.quiet,
                       opset=args.opset, external_data=external, verify=args.verify,
                       dense=[v.strip() for v in args.dense.split(",") if v.strip()])
    manifest = load_manifest(path, verify=False)  # just written and hashed
    del model
    if args.int8:
        for m in tqdm(manifest.modalities, desc="int8", unit="encoder", disable=args.quiet):
            derived_model(manifest, m, "int8")
    for m, e in manifest.encoders.items():
        total = e.size + (e.external_data_size or 0)
        diff = "" if e.max_abs_diff is None else f", max |ONNX - torch| {e.max_abs_diff:.1e}"
        extra = f" + {e.external_data}" if e.external_data else ""
        print(f"{m}: {e.file}{extra} ({_human_bytes(total)}, input {e.input_shape}{diff})")
    for v, e in manifest.dense.items():
        print(f"dense {v}: {e.file} (max |ONNX - torch| {e.max_abs_diff:.1e})")
    int8 = " and int8 variants in derived/" if args.int8 else ""
    print(f"wrote {manifest.precision} export of {manifest.config.name}{int8} to "
          f"{manifest.directory} (manifest {path.name})")
    return 0


def export_dense_onnx(model: ImageBindModel, path: str | os.PathLike[str],
                      variant: str = "maskclip", opset: int = OPSET,
                      tol: float = 1e-4) -> EncoderEntry:
    """The dense vision output (``DenseVisionEncoder``) as a second graph: one (1, 3, H, W)
    frame, H and W any multiples of the patch size (the position embedding is resized
    inside the graph) -> (1, H/p, W/p, D) unit-norm patch embeddings. Checked against torch
    with ONNX Runtime at two sizes; returns its manifest entry (hashed)."""
    from ..model.dense import DenseVisionEncoder

    enc = DenseVisionEncoder(single_modality_model(model, "vision"), variant).eval()
    p, side = enc.patch, model.config.vision.image_size
    gen = torch.Generator().manual_seed(0)
    # traced on a grid whose rows and columns both differ from the training grid and from
    # each other: a side equal to the training one would be specialised into the graph
    x = torch.randn(1, 3, side + p, side + 3 * p, generator=gen)
    rows, cols = torch.export.Dim("rows", min=1, max=1024), torch.export.Dim("cols", min=1,
                                                                             max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            enc, (x,), dynamo=True, opset_version=opset, input_names=["vision"],
            output_names=[DENSE_OUTPUT], dynamic_shapes=({2: p * rows, 3: p * cols},),
            optimize=True, verbose=False)
    if program is None:
        raise ExportError("torch.onnx.export returned nothing for the dense vision output")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)
    program.save(str(path), external_data=module_bytes(enc) > EXTERNAL_DATA_BYTES)
    del program
    entry = _hash_files(path, EncoderEntry(
        file=path.name, sha256="", size=0, input_name="vision", input_shape=[1, 3, "h", "w"],
        input_dtype="float32", output_name=DENSE_OUTPUT,
        output_shape=[1, "rows", "cols", model.config.out_embed_dim]))
    other = torch.randn(1, 3, side - p, side, generator=gen)  # not the traced size
    with torch.inference_mode():
        entry.max_abs_diff = max(_check_with_onnxruntime(path, entry, t, enc(t), tol)
                                 for t in (x, other))
    return entry
