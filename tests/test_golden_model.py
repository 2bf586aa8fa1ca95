"""Our model against the reference ImageBind's outputs for the same weights and inputs.

The golden files (../shared/golden/imagebind_small) were produced by the reference code; we
load its state dict unchanged, so key names and shapes are checked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagebind_ros.model import create_model

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "imagebind_small"
pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(),
                                reason=f"golden reference outputs not found at {GOLDEN}")


def test_reference_state_dict_loads_and_outputs_match() -> None:
    model = create_model("imagebind_small", checkpoint=GOLDEN / "state_dict.pth")
    inputs = torch.load(GOLDEN / "inputs.pt", weights_only=True)["inputs"]
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    assert set(expected) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    with torch.no_grad():
        out = model(inputs)
    for m, ref in expected.items():
        scale = ref.abs().max().item()
        err = (out[m] - ref).abs().max().item()
        assert err <= 1e-4 * scale, f"{m}: max abs diff {err:.3g} > 1e-4 x {scale:.3g}"


def test_encode_is_normalised_reference_output() -> None:
    model = create_model("imagebind_small", checkpoint=GOLDEN / "state_dict.pth")
    inputs = torch.load(GOLDEN / "inputs.pt", weights_only=True)["inputs"]
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    with torch.no_grad():
        for m in ("audio", "imu"):
            torch.testing.assert_close(model.encode(m, inputs[m]),
                                       torch.nn.functional.normalize(expected[m], dim=-1),
                                       rtol=1e-4, atol=1e-5)
