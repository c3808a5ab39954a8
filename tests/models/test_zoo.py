"""The model zoo: every entry builds offline, trains one step and predicts at full resolution;
encoders are one parameter away; bad encoders, weights and sizes are one-line errors.

Entries run with their default (small) encoders; the torchvision entries are the real
ResNet-50 / MobileNetV3-large models, at 32x40 so that one step stays cheap on a CPU.
"""

from __future__ import annotations

import urllib.error
from types import SimpleNamespace

import pytest
import torch

import models
from benchmark.engine import logits_of, train_step
from benchmark.errors import BenchmarkError


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_zoo_has_every_smp_architecture_and_torchvisions_models():
    assert len(models.registry.names()) >= 15
    assert {"unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "deeplabv3", "deeplabv3plus", "pan",
            "upernet", "segformer", "dpt", "deeplabv3_resnet50", "fcn_resnet50",
            "lraspp_mobilenet_v3_large"} <= set(models.registry.names())


def test_the_original_six_keep_their_architectures():
    """Parameter counts of the entries whose trained models are stored under their names."""
    counts = {"unet": 1053096, "unet_resnet18": 14329224, "fpn": 1071848, "deeplabv3plus": 1162616,
              "pspnet": 990098, "segformer": 3716200}
    for name, count in counts.items():
        assert sum(p.numel() for p in models.build(name, 8).parameters()) == count, name


def accepted_size(entry: models.ZooEntry) -> tuple[int, int]:
    """A small non-square size the entry takes (any-size entries get sides that are no multiple of 8)."""
    divisor = entry.size_divisor
    side = max(entry.min_size, 32)
    return (side, side + divisor) if divisor > 1 else (side, side + 8 + 3)


@pytest.mark.parametrize("name", models.registry.names())
def test_every_entry_trains_one_step_and_predicts_at_full_resolution(name):
    entry = models.registry.get(name)
    height, width = accepted_size(entry)
    torch.manual_seed(0)
    model = models.build(name, num_classes=5)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    loss = train_step(model, optimizer, torch.rand(2, 3, height, width), torch.randint(0, 5, (2, height, width)),
                      torch.device("cpu"))
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert logits_of(model, torch.rand(2, 3, height, width)).shape == (2, 5, height, width)
    output = model(torch.rand(2, 3, height, width))
    assert (isinstance(output, dict) and "aux" in output) == entry.aux_head


def test_the_encoder_is_one_parameter_away():
    model = models.build("deeplabv3", 3, encoder="resnet18")
    assert type(model.encoder).__name__ == "ResNetEncoder"
    backbone = models.build("deeplabv3_resnet50", 3, encoder="mobilenet_v3_large").backbone
    assert any(type(m).__name__ == "InvertedResidual" for m in backbone.modules())  # MobileNetV3's blocks


@pytest.mark.parametrize(("name", "encoder", "message"), [
    ("deeplabv3", "resnet5", "unknown --encoder 'resnet5'.*did you mean resnet50"),
    ("deeplabv3", "tu-resnet5", "timm model name after 'tu-'.*tu-resnet50"),
    ("fcn_resnet50", "resnet18", "torchvision backbone of fcn.*resnet50, resnet101"),
])
def test_an_unknown_encoder_is_a_one_line_error(name, encoder, message):
    with pytest.raises(BenchmarkError, match=message):
        models.check_encoder(name, encoder)


def test_a_plugin_with_a_fixed_backbone_takes_no_encoder():
    models.register("fixed_backbone_probe", size_divisor=1)(lambda c, i: torch.nn.Conv2d(i, c, 1))
    try:
        with pytest.raises(BenchmarkError, match="fixed backbone"):
            models.build("fixed_backbone_probe", 3, encoder="resnet18")
    finally:
        models.registry._items.pop("fixed_backbone_probe")


def test_offline_encoder_weights_say_how_to_give_local_weights(monkeypatch):
    """smp fetches from the Hugging Face hub, torchvision through torch.hub: both made to fail
    as they do without a network, so nothing is downloaded here."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                      "has been disabled.\nTo enable hf.co look-ups and downloads online, ...")

    monkeypatch.setattr("segmentation_models_pytorch.encoders.hf_hub_download", offline)
    with pytest.raises(BenchmarkError, match=r"cannot fetch 'imagenet' weights .*--init-weights FILE") as error:
        models.build("deeplabv3", 3, encoder="resnet18", encoder_weights="imagenet")
    assert "\n" not in str(error.value)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", no_network)
    with pytest.raises(BenchmarkError, match=r"cannot fetch 'imagenet' weights for encoder 'mobilenet_v3_large'"):
        models.build("lraspp_mobilenet_v3_large", 3, encoder_weights="imagenet")


def test_unknown_encoder_weights_are_named():
    with pytest.raises(BenchmarkError, match="unknown --encoder-weights 'imagenet21k' for encoder 'resnet18'"):
        models.build("deeplabv3", 3, encoder="resnet18", encoder_weights="imagenet21k")
    with pytest.raises(BenchmarkError, match="unknown --encoder-weights 'bogus' .*IMAGENET1K_V1"):
        models.build("lraspp_mobilenet_v3_large", 3, encoder_weights="bogus")


def test_image_size_that_does_not_fit_is_a_clear_error():
    with pytest.raises(BenchmarkError, match="divisible by 32.*try --image-size"):
        models.check_image_size("unet", 60, 60)
    models.check_image_size("unet", 64, 96)
    with pytest.raises(BenchmarkError, match="needs image sides of at least 128"):
        models.check_image_size("pan", 64, 64)
    with pytest.raises(BenchmarkError, match="crop sides divisible by 16, got 24x40; try --crop-size 32x32"):
        models.check_image_size("deeplabv3plus", 24, 40, what="crop")
    models.check_image_size("deeplabv3_resnet50", 33, 47)


def test_the_built_models_encoder_can_ask_for_more():
    """An encoder of output stride 64 under an architecture that needs divisible sides: the
    entry's 32 is not enough, and the check on the built model says so."""
    assert models.size_divisor("unetplusplus", models.build("unetplusplus", 3, encoder="resnet18")) == 32
    deep = SimpleNamespace(requires_divisible_input_shape=True, encoder=SimpleNamespace(output_stride=64))
    with pytest.raises(BenchmarkError, match="divisible by 64"):
        models.check_image_size("unetplusplus", 96, 96, model=deep)


def test_local_weights_load_safely(tmp_path):
    from safetensors.torch import save_file

    source = models.build("pspnet", num_classes=3)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = models.build("pspnet", num_classes=3, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(BenchmarkError, match="does not fit this model"):
        models.build("unet", num_classes=3, weights=path)
