"""The interactive HTML view: self-contained, facts that match the graph and the analysis, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rkcompile.analysis import analyze
from rkcompile.cli import cli
from rkcompile.compiler import build
from rkcompile.render.html import HTML_LEVELS, html_view

SPECS = Path(__file__).parent.parent / "specs"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def continuousnet():
    return build(SPECS / "continuousnet-2-2-2.yaml")


@pytest.fixture(scope="module")
def page(continuousnet):
    return html_view(continuousnet)


def facts_of(page: str) -> dict:
    return json.loads(re.search(r'<script id="facts" type="application/json">(.*?)</script>', page, re.S)[1])


def test_nothing_is_fetched_at_view_time(page):
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page, re.I)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # XML namespaces, not requests


def test_three_levels_with_unique_ids(page):
    for level in HTML_LEVELS:
        assert f'<div class="pane" data-level="{level}"' in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert 'id="network/unit:stage0.block0..stage0.block1"' in page  # the ×2 run, at network level
    assert 'id="block/eval:stage2.block1:4"' in page and 'id="stage/unit:stage1"' in page


def test_facts_match_the_graph_the_code_and_the_analysis(continuousnet, page):
    facts = facts_of(page)
    graph = [n for n in continuousnet.graph.nodes if n.op != "output"]
    assert set(facts["nodes"]) == {n.name for n in graph}
    code = continuousnet.code.splitlines()
    for name, node in facts["nodes"].items():
        if node["line"] is not None:
            assert code[node["line"] - 1].strip() == node["code"] and node["code"].startswith(f"{name} = ")
    conv = facts["nodes"]["stage1_block0_k1_conv1"]
    module = continuousnet.get_submodule(conv["target"])
    assert conv["parameters"] == sum(p.numel() for p in module.parameters()) and conv["shape"] == [1, 32, 16, 16]
    report = analyze(continuousnet)
    for row in report.units:
        for field in ("parameters", "inference_peak", "saved_bytes", "training_peak", "flops"):
            assert facts["units"][row.label][field] == getattr(row, field)
    layers = facts["units"]["stage0.block1"]["evaluations"][2]["nodes"]
    assert layers == [f"stage0_block1_k3_{x}" for x in ("conv1", "relu1", "bn1", "conv2", "relu2", "bn2")]


def test_cli_writes_html(tmp_path):
    out = tmp_path / "view.html"
    result = CliRunner().invoke(cli, ["draw", str(SPECS / "spirals-rk4.yaml"), "-o", str(out), "--color-by", "saved"])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and '<option value="saved" selected>' in out.read_text()


# ------------------------------------------------------------------ a real browser


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromium-driver are not installed (./dev.sh installs them: apt-get install "
                    "chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.mark.slow
@pytest.mark.parametrize("name, block", [("continuousnet-2-2-2", "stage0.block0"), ("ho-resnet58-verner89",
                                                                                    "stage0.block0")])
def test_in_chromium(tmp_path, browser, name, block):
    from selenium.webdriver.common.by import By

    out = tmp_path / f"{name}.html"
    out.write_text(html_view(build(SPECS / f"{name}.yaml")), encoding="utf-8")
    browser.get_log("browser"), browser.get_log("performance")
    browser.get(out.as_uri())
    assert browser.execute_script("return document.body.dataset.ready") == "1"
    assert browser.execute_script("return document.body.dataset.level") == "network"
    # expand: a click on a (collapsed) block at network level opens the block level, focused on it
    title = browser.find_elements(By.CSS_SELECTOR, f"g[id^='network/unit:{block}'] > text")[0]
    title.click()
    assert browser.execute_script("return document.body.dataset.level") == "block"
    assert browser.find_element(By.CSS_SELECTOR, "#details h3").get_attribute("data-unit") == block
    # evaluation -> layers
    browser.find_element(By.CSS_SELECTOR, "#details a[data-eval]").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#details table.layer")) >= 5
    # search: drawn elements are highlighted, graph nodes listed; opening one shows its facts
    box = browser.find_element(By.ID, "search")
    box.send_keys("stage0.block1")
    assert browser.find_elements(By.CSS_SELECTOR, "g.hit")
    box.clear()
    box.send_keys("stage0_block1_k2_conv2" if name.startswith("continuous") else "stage0_block1_k14_bn2")
    results = browser.find_elements(By.CSS_SELECTOR, "#results li")
    assert len(results) == 1
    results[0].click()
    assert box.get_attribute("value") in browser.find_element(By.ID, "details").text
    # colour scale: switching the metric repaints the units
    legend = browser.find_element(By.ID, "legend").text
    browser.find_element(By.CSS_SELECTOR, "#metric option[value='flops']").click()
    fills = browser.execute_script("return Array.from(document.querySelectorAll(\"[id^='block/unit:']\"))"
                                   ".map(g => [g.id.slice(11), g.querySelector('path').getAttribute('fill')])")
    flops = facts_of(out.read_text())["units"]
    darkest = {label for label, fill in fills if fill == "#fe9929"}
    assert darkest == {label for label, _ in fills if flops[label]["flops"] == max(flops[u]["flops"] for u, _ in fills)}
    assert browser.find_element(By.ID, "legend").text != legend and "FLOPs" in browser.find_element(By.ID, "legend").text
    # collapse back
    browser.find_element(By.ID, "collapse").click()
    assert browser.execute_script("return document.body.dataset.level") == "network"
    # no console errors, nothing requested but the file itself
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requested = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    assert requested == {out.as_uri()}
    # a screenshot that is not blank
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    browser.save_screenshot(str(shot))
    pixels = imread(shot)[..., :3].reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50 and (pixels < 0.9).any(axis=1).mean() > 0.02
