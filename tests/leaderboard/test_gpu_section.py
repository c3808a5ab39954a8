"""The GPU section (same cells on other hardware, and how far they agree), poison-rate sweeps
kept out of the matrices and rankings, and the poison-rate figure drawn at render time."""

from __future__ import annotations

import json
from pathlib import Path

from leaderboard import matrices, render_leaderboard
from leaderboard.agreement import agreement_rows


def write(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['cell']}-{record['seed']}.json").write_text(json.dumps(record))
    return folder


def cells_of(line: str) -> list[str]:
    return [p.strip() for p in line.strip("|").split("|")]


def test_agreement_against_hand_computed_differences(fake_result):
    # a cell key names its seed: a0, a1, a2 are one setting's three seeds
    cpu = [fake_result("a0", seed=0, asr=0.80), fake_result("a1", seed=1, asr=0.90), fake_result("a2", seed=2, asr=0.70),
           fake_result("b0", seed=0, asr=0.50, attack="image_level")]
    gpu = [fake_result("a0", seed=0, asr=0.85), fake_result("b0", seed=0, asr=0.20, attack="image_level"),
           fake_result("c0", seed=0, asr=0.10)]  # c0 has no CPU twin: not matched
    rows = {row[0]: row for row in agreement_rows(cpu, gpu)}
    # |0.85 - 0.80| = 5 points, |0.20 - 0.50| = 30: mean 17.5, max 30 at b; a's CPU std over
    # seeds (0.8, 0.9, 0.7) is 10 points >= 5, and b has one CPU seed (not judged)
    assert rows["ASR"] == ["ASR", "2 models", "17.5", "30.0 (unet / image_level / –)", "1 of 1"]
    assert rows["clean mIoU"][1:4] == ["2 models", "0.0", "0.0 (unet / image_level / –)"]
    assert rows["post ASR"][1] == "2 cells"
    assert "AUROC" not in rows  # neither side has one


def test_agreement_counts_the_attacked_models_numbers_once_per_trained_model(fake_result):
    # one trained model (artifact m) with three defense cells on each side: ASR is the model's,
    # so it is one comparison, not three; post ASR differs per cell
    cpu = [fake_result(f"c{d}", defense=d, asr=0.8, post_asr=0.5, artifact="m") for d in ("none", "strip", "pruning")]
    gpu = [fake_result(f"c{d}", defense=d, asr=0.9, post_asr=0.6, artifact="m") for d in ("none", "strip", "pruning")]
    rows = {row[0]: row for row in agreement_rows(cpu, gpu)}
    assert rows["ASR"][1:3] == ["1 model", "10.0"]
    assert rows["post ASR"][1:3] == ["3 cells", "10.0"]
    # the model's seed spread comes from its trained models, whichever defense cell matched first:
    # a training-time defense with one CPU seed (abl) still judges ASR against the model's 3 seeds
    cpu = [fake_result(f"n{s}", seed=s, asr=0.8 + 0.1 * s, artifact=f"m{s}") for s in range(3)]
    cpu.append(fake_result("abl0", defense="abl", asr=0.8, artifact="m0"))
    gpu = [fake_result("abl0", defense="abl", asr=0.85, artifact="m0"), fake_result("n0", asr=0.85, artifact="m0")]
    rows = {row[0]: row for row in agreement_rows(cpu, gpu)}
    assert rows["ASR"][1:] == ["1 model", "5.0", "5.0 (unet / fine_grained / –)", "1 of 1"]  # 5 <= std 10


def test_gpu_section_states_its_package_versions_next_to_the_cpu_cells(tmp_path, fake_result):
    cpu = write(tmp_path / "results", [fake_result("a0")])
    gpu = write(tmp_path / "results-gpu", [fake_result("a0", device="cuda:0", hardware="NVIDIA H200",
                                                       versions={"torch": "2.11.0", "timm": "1.0.0", "smp": "0.5.0"})])
    text = render_leaderboard(cpu, gpu)
    assert ("Packages: the GPU cells ran with smp 0.5.0, timm 1.0.0, torch 2.11.0, not those of the CPU cells "
            "(smp 0.5.0, timm 1.0.0, torch 2.5.0).") in text


def test_gpu_section_has_hardware_and_precision_in_its_header(tmp_path, fake_result):
    cpu = write(tmp_path / "results", [fake_result(f"a{s}", seed=s, asr=0.8 + 0.05 * s) for s in range(3)])
    gpu = write(tmp_path / "results-gpu", [fake_result("a0", seed=0, asr=0.82, device="cuda:0", hardware="NVIDIA H200")])
    text = render_leaderboard(cpu, gpu)
    assert "## GPU: NVIDIA H200, bf16 autocast, channels_last" in text
    assert "- precision: fp32, channels_last" in text  # the CPU configuration
    assert cells_of(next(line for line in text.splitlines() if line.startswith("| ASR ")))[1:3] == ["1 model", "2.0"]
    assert "### GPU: synthetic / unet, poison 10% (1 seed)" in text
    assert "## GPU" not in render_leaderboard(cpu)


def test_undefended_poison_rate_sweeps_stay_out_of_matrices_and_rankings(fake_result):
    results = [fake_result("d", defense="pruning", der=0.6),
               fake_result("n", asr=0.8),
               fake_result("low", poison_rate=0.01, asr=0.1)]
    label = lambda r: r["attack"]  # noqa: E731
    views = matrices.views(results, label, lambda r: r["defense"])
    assert [v.poison_rate for v in views] == [0.1]
    assert {r["cell"] for r in views[0].results} == {"d", "n"}  # what its rankings aggregate
    # a model with undefended cells only keeps its views
    assert len(matrices.views([fake_result("low", poison_rate=0.01)], label, label)) == 1


def test_poison_rate_figure_is_drawn_from_undefended_results_with_several_rates(tmp_path, fake_result):
    from leaderboard.heatmaps import write_poison_rate_figure

    results = write(tmp_path / "results", [fake_result("one", poison_rate=0.1, defense="pruning")])
    assert write_poison_rate_figure(results, tmp_path / "figures") is None
    write(results, [fake_result("two", poison_rate=0.01, asr=0.2), fake_result("three", poison_rate=0.1)])
    path = write_poison_rate_figure(results, tmp_path / "figures")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    before = path.stat().st_mtime_ns
    write_poison_rate_figure(results, tmp_path / "figures")
    assert path.stat().st_mtime_ns == before  # same bytes: left untouched


def test_leaderboard_command_takes_gpu_results_for_both_formats(tmp_path, fake_result):
    from benchmark.cli import main

    cpu = write(tmp_path / "results", [fake_result("a"), fake_result("b", poison_rate=0.01)])
    gpu = write(tmp_path / "results-gpu", [fake_result("a", device="cuda", hardware="NVIDIA H100")])
    for extra, name in (([], "LEADERBOARD.md"), (["--format", "html"], "index.html")):
        assert main(["leaderboard", "--results", str(cpu), "--gpu-results", str(gpu),
                     "--output", str(tmp_path / name), *extra]) == 0
        assert "GPU: NVIDIA H100, bf16 autocast, channels_last" in (tmp_path / name).read_text()
    assert (tmp_path / "figures" / "asr_vs_poison_rate.png").is_file()
