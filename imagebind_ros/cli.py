"""`imagebind-ros` command line: embed files, export encoders, run the node graph.

Subcommands import their heavy parts lazily so `imagebind-ros --help` is instant and
`embed`/`export` work without ROS installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import MODALITIES


def _file_loader(modality: str) -> Callable[[str, Any], Any]:
    """Return ``(input, config) -> tensor`` for one CLI input of ``modality``: a file, or the
    string itself where the modality is not read from files (text)."""
    from . import modalities

    spec = modalities.spec(modality)

    def load(item: str, config: Any) -> Any:
        raw = item if spec.read is None else spec.load_file(Path(item))
        return spec.to_tensor(raw, config)

    return load


def embed_main(args: argparse.Namespace) -> int:
    """Embed inputs of one modality to an (N, D) float32 array of unit-norm rows."""
    import torch
    from tqdm import tqdm

    from .model import CheckpointError, create_model

    try:
        model = create_model(args.preset, checkpoint=args.checkpoint, device=args.device,
                             modalities=[args.modality])
    except CheckpointError as e:
        raise ValueError(str(e)) from None
    load = _file_loader(args.modality)
    rows: list[np.ndarray] = []
    batch: list[Any] = []
    items = list(args.inputs)

    def flush() -> None:
        with torch.inference_mode():
            x = torch.stack(batch).to(args.device)
            rows.append(model.encode(args.modality, x).cpu().numpy().astype(np.float32))
        batch.clear()

    for item in tqdm(items, desc=f"embed {args.modality}", unit="input",
                     disable=len(items) < 2 or args.quiet):
        batch.append(load(item, model.config))
        if len(batch) == args.batch_size:
            flush()
    if batch:
        flush()
    out = np.concatenate(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, out)
    if not args.quiet:
        print(f"wrote {args.out}: {out.shape[0]} x {out.shape[1]} unit-norm float32 "
              f"({args.modality}, model {model.config.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagebind-ros", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("embed", help="embed files or strings of one modality to a .npy file")
    e.add_argument("--checkpoint", help="imagebind_huge.pth or an imagebind_ros checkpoint "
                   "(omit for a random-init preset)")
    e.add_argument("--preset", default=None, help="architecture when the checkpoint carries "
                   "no config (default imagebind_huge)")
    e.add_argument("--modality", required=True, choices=MODALITIES)
    e.add_argument("inputs", nargs="+", help="image/audio files, text strings, depth "
                   "(16-bit PNG mm, .npy m), thermal (PNG, .npy), IMU (.npy/.csv N x 6[+t])")
    e.add_argument("--out", required=True, help="output .npy, shape (N, D)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--device", default="cpu")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=embed_main)

    sub.add_parser("export", help="export encoders to ONNX (see `export --help`)",
                   add_help=False)
    sub.add_parser("run", help="run the node graph in one process (see `run --help`)",
                   add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # export and run own their argument parsing; pass the rest through untouched.
    if argv and argv[0] == "export":
        from .inference.export import main as export_main
        return export_main(argv[1:])
    if argv and argv[0] == "run":
        from .ros.runner import main as run_main
        return run_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"imagebind-ros {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
