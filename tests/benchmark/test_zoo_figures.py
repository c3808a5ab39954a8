"""The zoo's figures and tables come from result records: means and spreads over seeds."""

from benchmark import zoo_figures


def record(attack, rate, seed, asr, baseline=0.1, **params):
    return {"attack": attack, "poison_rate": rate, "seed": seed, "asr": asr, "baseline_asr": baseline,
            "clean_miou": 0.8, "pba": 0.7, "attack_params": params}


def test_rate_table_and_figures_from_records(tmp_path):
    sweep = [record("iba", rate, seed, asr) for rate, seed, asr in
             [(0.01, 0, 0.2), (0.01, 1, 0.4), (0.1, 0, 0.6), (0.1, 1, 0.8)]]
    sweep += [record("iba_nni", 0.05, 0, asr, near=near, far=far) for near, far, asr in [(3, 8, 0.5), (8, 13, 0.25)]]
    sweep.append(record("iba_nni", 0.05, 1, 0.9, near=3, far=8))  # a seed the other band lacks: left out
    text = zoo_figures.tables([record("waba", 0.1, 0, 0.76, collateral_asr=None)], sweep, band_rate=0.05)
    assert "| waba | 80.0 | 76.0 | 10.0 | 70.0 | – |" in text
    assert "| iba | 30.0 ± 14.1 | 70.0 ± 14.1 | 10.0 ± 0.0 |" in text
    assert "| iba_nni | [3, 8] | 50.0 | 10.0 |" in text and "| iba_nni | [8, 13] | 25.0 | 10.0 |" in text
    zoo_figures.rate_figure(zoo_figures.by_rate(sweep), tmp_path / "rate.png")
    zoo_figures.band_figure(zoo_figures.band_results(sweep, 0.05), tmp_path / "band.png")
    assert (tmp_path / "rate.png").stat().st_size > 1000 and (tmp_path / "band.png").stat().st_size > 1000
