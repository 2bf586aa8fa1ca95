"""Our model against the reference ImageBind's outputs for the same weights and inputs.

The golden files (tests/data/golden/imagebind_small, see its README.md) were produced by the
reference code; we load its state dict unchanged, so key names and shapes are checked too.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from golden import golden
from imagebind_ros.model import create_model

# The files as copied from the reference run (tests/data/golden/imagebind_small/README.md).
SHA256 = {
    "inputs.pt": "7faa62018be77ec73195e5c11755fc76de5dbeda0cf0ff08a72cdce4a4cdafd1",
    "outputs.pt": "a45a8de4dd563d4ccf5e8f0f9895050d03e379f1391669ba916676be940a0f2e",
    "state_dict.pth": "6d0c8aae8c509a95715a6e73fc530382428f9648da8129207b9861d5dd58566d",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_golden_files_are_the_reference_run(name: str) -> None:
    assert hashlib.sha256(golden(name).read_bytes()).hexdigest() == SHA256[name]


def test_reference_state_dict_loads_and_outputs_match() -> None:
    model = create_model("imagebind_small", checkpoint=golden("state_dict.pth"))
    inputs = torch.load(golden("inputs.pt"), weights_only=True)["inputs"]
    expected = torch.load(golden("outputs.pt"), weights_only=True)
    assert set(expected) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    with torch.no_grad():
        out = model(inputs)
    for m, ref in expected.items():
        scale = ref.abs().max().item()
        err = (out[m] - ref).abs().max().item()
        assert err <= 1e-4 * scale, f"{m}: max abs diff {err:.3g} > 1e-4 x {scale:.3g}"


def test_encode_is_normalised_reference_output() -> None:
    model = create_model("imagebind_small", checkpoint=golden("state_dict.pth"))
    inputs = torch.load(golden("inputs.pt"), weights_only=True)["inputs"]
    expected = torch.load(golden("outputs.pt"), weights_only=True)
    with torch.no_grad():
        for m in ("audio", "imu"):
            torch.testing.assert_close(model.encode(m, inputs[m]),
                                       torch.nn.functional.normalize(expected[m], dim=-1),
                                       rtol=1e-4, atol=1e-5)
