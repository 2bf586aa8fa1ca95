"""Only the encoders a node uses are loaded; nodes that need different subsets share them."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_required import require_ros

from imagebind_ros import model_cache
from imagebind_ros.model import create_model, save_model
from imagebind_ros.model.dense import DenseVisionEncoder
from imagebind_ros.modalities import example_input

CONFIGURED = ["audio", "imu"]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_params(model: torch.nn.Module, modality: str) -> int:
    """Parameters of one encoder, counted on the full model's four stage dicts."""
    return sum(n_params(getattr(model, d)[modality]) for d in (
        "modality_preprocessors", "modality_trunks", "modality_heads",
        "modality_postprocessors"))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(3)
    model = create_model("tiny")
    path = tmp_path_factory.mktemp("subsets") / "tiny.pt"
    save_model(path, model)
    return path, model


def test_checkpoint_subset_holds_only_its_encoders_with_the_files_weights(
        full: tuple[Path, torch.nn.Module]) -> None:
    path, model = full
    sub = create_model(checkpoint=path, modalities=CONFIGURED)
    assert sub.modalities == ("audio", "imu")
    assert n_params(sub) == sum(encoder_params(model, m) for m in CONFIGURED) < n_params(model)
    assert not [k for k in sub.state_dict() if ".vision." in k or ".thermal." in k]
    for m in CONFIGURED:
        x = example_input(model.config, m, 2, torch.Generator().manual_seed(1))
        with torch.inference_mode():
            torch.testing.assert_close(sub.encode(m, x), model.encode(m, x), rtol=0, atol=0)
    with pytest.raises(KeyError, match="'smell' is not in model"):
        create_model(checkpoint=path, modalities=["smell"])


def test_cache_grows_one_model_as_nodes_ask_for_more(full: tuple[Path, torch.nn.Module]
                                                     ) -> None:
    path, model = full
    model_cache.clear()
    try:
        a = model_cache.get_shared_model(path, backend="torch", modalities=CONFIGURED)
        assert a.modalities == ("audio", "imu") and a.model is not None
        audio_trunk = a.model.modality_trunks["audio"]
        b = model_cache.get_shared_model(os.path.relpath(path), backend="torch",
                                         modalities=["vision", "audio"])
        assert b is a and a.modalities == ("vision", "audio", "imu")
        assert a.model.modality_trunks["audio"] is audio_trunk  # shared, not reloaded
        assert n_params(a.model) == sum(encoder_params(model, m)
                                        for m in ("vision", "audio", "imu"))
        x = example_input(model.config, "vision", 1, torch.Generator().manual_seed(2))
        with torch.inference_mode():
            want = model.encode("vision", x).numpy()
        np.testing.assert_allclose(a.encode("vision", x), want, atol=1e-6)
        # the first backend (audio, imu) has no vision: dense runs on the one that does
        assert a.backend.dense_variants == () and "naclip" in a.dense_variants
        with torch.inference_mode():
            want = DenseVisionEncoder(model, "naclip").eval()(x).numpy()
        np.testing.assert_allclose(a.encode_dense(x.numpy(), "naclip"), want, atol=1e-5)
        with pytest.raises(KeyError, match="no 'thermal' encoder"):
            a.encode("thermal", example_input(model.config, "thermal", 1))
    finally:
        model_cache.clear()


def test_encoder_node_for_audio_and_imu_holds_no_image_weights(
        full: tuple[Path, torch.nn.Module]) -> None:
    """The node asks for its sensors and text (labels, ~/embed_text); nothing else loads."""
    path, model = full
    require_ros()
    import rclpy
    from rclpy.parameter import Parameter

    from imagebind_ros.ros.encoder_node import EncoderNode

    model_cache.clear()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=(os.getpid() + 17) % 100 + 101)
    try:
        node = EncoderNode(context=ctx, parameter_overrides=[
            Parameter("checkpoint", value=str(path)),
            Parameter("modalities", value=CONFIGURED)])
        try:
            held = node.shared.model
            assert held is not None and node.shared.modalities == ("text", "audio", "imu")
            assert n_params(held) == sum(encoder_params(model, m)
                                         for m in ("text", "audio", "imu"))
            assert not [k for k in held.state_dict() if ".vision." in k or ".thermal." in k]
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
        model_cache.clear()


def test_bf16_releases_the_memory_mapped_fp32_checkpoint(
        full: tuple[Path, torch.nn.Module]) -> None:
    """bf16 holds the weights once: after the cast nothing maps the fp32 file any more."""
    from imagebind_ros.inference import create_backend

    path, _ = full

    def mapped() -> bool:
        return any(str(path) in line for line in Path("/proc/self/maps").read_text().split("\n"))

    model = create_model(checkpoint=path, modalities=CONFIGURED)
    assert mapped()  # torch.load(mmap=True): the tensors are views of the file
    create_backend("torch", model=model, device="cpu", precision="bf16")
    gc.collect()
    assert not mapped()
