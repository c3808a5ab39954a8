"""The model zoo: every entry builds offline and maps images to per-pixel logits."""

import pytest
import torch

import models
from benchmark.errors import BenchmarkError


@pytest.mark.parametrize("name", models.registry.names())
def test_every_zoo_model_returns_logits_at_full_resolution(name):
    model = models.build(name, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 32, 64))
    assert logits.shape == (2, 5, 32, 64)


def test_at_least_five_architectures():
    assert {"unet", "fpn", "deeplabv3plus", "pspnet", "segformer"} <= set(models.registry.names())


def test_image_size_that_does_not_fit_is_a_clear_error():
    with pytest.raises(BenchmarkError, match="divisible by 32.*try --image-size"):
        models.check_image_size("unet", 60, 60)
    models.check_image_size("unet", 64, 96)


def test_local_weights_load_safely(tmp_path):
    from safetensors.torch import save_file

    source = models.build("pspnet", num_classes=3)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = models.build("pspnet", num_classes=3, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(BenchmarkError, match="cannot load weights"):
        models.build("unet", num_classes=3, weights=path)
