"""The static HTML leaderboard: self-contained, deterministic, and working in a real browser."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from leaderboard.page import render_html

SCREENSHOT = Path(__file__).parents[2] / "runs" / "browser" / "leaderboard.png"


@pytest.fixture
def page(tmp_path: Path, fake_result) -> Path:
    """A page over four models' worth of rows: two attacks x two defenses, two seeds on unet."""
    results = tmp_path / "results"
    results.mkdir()
    records = [
        fake_result("a1", seed=0, asr=0.80), fake_result("a2", seed=1, asr=0.90),
        fake_result("a3", attack="image_level", asr=0.999),
        fake_result("a4", defense="strip", post_asr=0.2, post_clean_miou=0.85, der=0.675, detection_auroc=0.97),
        fake_result("a5", model="fpn", defense="pruning", post_asr=0.5, der=0.6),
        fake_result("a6", model="fpn", attack="image_level", defense="pruning", post_asr=0.05, der=0.9),
    ]
    for record in records:
        (results / f"{record['cell']}.json").write_text(json.dumps(record))
    path = tmp_path / "index.html"
    path.write_text(render_html(results))
    return path


def test_page_is_self_contained_and_deterministic(page: Path) -> None:
    text = page.read_text()
    assert text == render_html(page.parent / "results")
    assert "<script>" in text and "<style>" in text
    for external in ("http://", "https://", "<link", "src="):
        assert external not in text  # nothing fetched: opens from disk with no network
    for key in ("dataset", "model", "attack", "defense"):
        assert f'id="filter-{key}"' in text


def browser():
    """Headless Debian Chromium through selenium; skipped where it is not installed, except in
    CI, whose .ci/run installs it (a missing browser there must fail, not skip)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (see .ci/run)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(driver))


def test_page_sorts_and_filters_in_a_real_browser(page: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser()
    try:
        driver.get(page.as_uri())
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []

        def column(name: str) -> list[str]:
            headers = [h.text.rstrip(" ▲▼") for h in driver.find_elements(By.CSS_SELECTOR, "#results thead th")]
            index = headers.index(name)
            return [row.find_elements(By.TAG_NAME, "td")[index].text
                    for row in driver.find_elements(By.CSS_SELECTOR, "#results tbody tr") if row.is_displayed()]

        header = next(h for h in driver.find_elements(By.CSS_SELECTOR, "#results thead th") if h.text == "post ASR")
        header.click()
        assert column("post ASR") == ["5.0", "20.0", "50.0", "85.0 (80.0–90.0)", "99.9"]
        header.click()
        assert column("post ASR") == ["99.9", "85.0 (80.0–90.0)", "50.0", "20.0", "5.0"]

        Select(driver.find_element(By.ID, "filter-model")).select_by_value("fpn")
        assert column("model") == ["fpn", "fpn"]
        assert driver.find_element(By.ID, "shown").text == "2 of 5 rows shown"
        views = driver.find_elements(By.CSS_SELECTOR, "section.view")
        assert [v.is_displayed() for v in views] == [False, True]  # fpn's matrices only (unet's, with two seeds, come first)
        Select(driver.find_element(By.ID, "filter-defense")).select_by_value("pruning")
        Select(driver.find_element(By.ID, "filter-attack")).select_by_value("image_level")
        assert column("post ASR") == ["5.0"]
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        Select(driver.find_element(By.ID, "filter-model")).select_by_value("")
        Select(driver.find_element(By.ID, "filter-defense")).select_by_value("")
        Select(driver.find_element(By.ID, "filter-attack")).select_by_value("")
        assert driver.save_screenshot(str(SCREENSHOT))
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def test_page_links_the_poison_rate_figure_when_it_exists(page: Path) -> None:
    assert "asr_vs_poison_rate.png" not in render_html(page.parent / "results")
    (page.parent / "figures").mkdir(exist_ok=True)
    (page.parent / "figures" / "asr_vs_poison_rate.png").write_bytes(b"\x89PNG")
    assert '<a href="figures/asr_vs_poison_rate.png">' in render_html(page.parent / "results")
