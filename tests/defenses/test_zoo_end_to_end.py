"""Every detector and training-time defense through the CLI on one tiny trained model (the
session's ``zoo_run``): each reports its numbers, and a retraining is a cached artifact."""

import json
import re
import shutil

import pytest

from benchmark.cli import main

DETECTORS = ["strip", "teco", "scale_up", "ibd_psc", "beatrix"]
TRAINING_TIME = ["spectral", "activation_clustering", "abl"]


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_report_detection_numbers(zoo_run, name):
    result = zoo_run.results[name]
    assert 0 <= result["false_rejection_rate"] <= 1 and "detection_auroc" in result
    assert result["defense_seconds"] > 0 and "poison_detection_auroc" not in result


@pytest.mark.parametrize("name", TRAINING_TIME)
def test_training_time_defenses_report_poisoned_sample_detection(zoo_run, name):
    result = zoo_run.results[name]
    assert result["poison_detection_level"] == "segment"
    assert 0 <= result["poison_detection_auroc"] <= 1
    assert result["poisoned_samples"] > 0 and 0 < result["flagged_samples"] < result["samples"]
    assert result["retrain_seconds"] > 0 and result["defense_seconds"] >= result["retrain_seconds"]
    assert 0 <= result["post_clean_miou"] <= 1 and 0 <= result["post_asr"] <= 1


@pytest.mark.parametrize("name", ["spectral", "abl"])
def test_a_defended_model_is_reused_from_the_store(zoo_run, tmp_path, caplog, name):
    workdir = tmp_path / "copy"
    shutil.copytree(zoo_run.workdir, workdir)
    shutil.rmtree(workdir / "results")
    caplog.set_level("INFO")
    assert main(["run", *zoo_run.args, "--defense", name, "--workdir", str(workdir), "-q"]) == 0
    assert "reusing defended model" in caplog.text and "trained 0 model(s)" in caplog.text
    assert "retraining without" not in caplog.text and "abl: isolated" not in caplog.text
    (path,) = (workdir / "results").glob("*.json")
    again = json.loads(path.read_text())
    for key in ("post_clean_miou", "post_asr", "poison_detection_auroc", "flagged_samples"):
        assert again[key] == zoo_run.results[name][key]


def test_list_shows_each_defense_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, names in (("poisoned-data detection", ["spectral", "activation_clustering"]),
                        ("secure training", ["abl"]), ("detection", ["teco", "scale_up", "ibd_psc", "beatrix", "strip"])):
        for name in names:
            assert re.search(rf"^defense/{kind} +{name} ", out, re.M), name
