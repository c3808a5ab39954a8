"""The seven repair defenses end to end through the CLI: one grid call on a tiny synthetic
configuration trains the clean and the attacked model once and runs every defense on them."""

from __future__ import annotations

import json

from benchmark.cli import main

REPAIRS = ("finetune", "nad", "anp", "clp", "ibau", "fst", "neural_cleanse")
TINY = ["--train-size", "32", "--test-size", "8", "--image-size", "32", "--epochs", "1", "--batch-size", "16",
        "--clean-fraction", "0.1", "--device", "cpu"]
CHEAP = """
[defense_params.finetune]
epochs = 1
[defense_params.nad]
teacher_epochs = 1
epochs = 1
[defense_params.anp]
iterations = 2
[defense_params.ibau]
rounds = 1
steps_per_round = 1
fixed_point_iterations = 1
[defense_params.fst]
epochs = 1
[defense_params.neural_cleanse]
steps = 2
unlearn_epochs = 1
"""


def test_every_repair_defense_runs_through_the_cli(capsys, caplog, tmp_path) -> None:
    caplog.set_level("INFO")
    config = tmp_path / "repairs.toml"
    config.write_text(f'defense = {json.dumps(list(REPAIRS))}\n{CHEAP}')
    assert main(["run", *TINY, "--config", str(config), "--attack", "image_level", "--workdir", str(tmp_path),
                 "--json"]) == 0
    results = {r["defense"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(results) == set(REPAIRS)
    assert "trained 2 model(s)" in caplog.text  # clean + attacked, shared by all seven
    for name, result in results.items():
        for key in ("post_clean_miou", "post_asr", "der"):
            assert 0 <= result[key] <= 1, (name, key)
        assert result["post_pba"] is None, name  # image_level aims at every pixel: no benign region
        assert result["defense_seconds"] > 0 and result["defense_report"], name
    assert results["clp"]["defense_report"]["total_channels"] > 0
    assert results["anp"]["defense_params"]["iterations"] == 2
    report = results["neural_cleanse"]["defense_report"]
    assert set(report["mask_norms"]) == set(results["neural_cleanse"]["class_names"])
    assert report["anomaly_index"] >= 0 and "flagged_class" in report
