"""The HTML report opens in a real headless Chromium and shows its plots.

Chromium and ChromeDriver come from Debian (tools/install-browser.sh, which `make test`
runs first); without them the test is skipped, saying so.
"""

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, make_image_folder, run_snakemake, write_config
from segpipe.imageio import read_image, write_png

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="Debian's chromium and chromium-driver are not installed (tools/install-browser.sh)",
    ),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    images = tmp / "images"
    ids = make_image_folder(images)
    truth = tmp / "truth"
    for image_id in ids:
        if image_id != "broken.png":
            grey = read_image(images / image_id)
            mask = (grey > grey.mean()).astype(np.uint8)
            write_png(truth / (image_id.rsplit(".", 1)[0] + ".png"), mask)
    methods = {"otsu": {"kind": "threshold"}, "km": {"kind": "kmeans", "k": [2, 3]}}
    cfg = write_config(tmp / "c.yaml", input_dir=str(images), ground_truth_dir=str(truth),
                       ground_truth_kind="binary", methods=methods, report=True)
    run_snakemake(tmp, "--configfile", cfg)
    out = tmp / "results/report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp),
         "--configfile", str(cfg), "--report", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium")
    # As root, without a display, on a machine whose network is closed.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def wait_for(find, timeout=10.0):
    end = time.monotonic() + timeout
    while True:
        found = find()
        if found or time.monotonic() > end:
            return found
        time.sleep(0.2)


def shown_png_width(driver):
    """naturalWidth of the PNG the report shows (0 if it did not load)."""
    from selenium.webdriver.common.by import By

    for img in driver.find_elements(By.TAG_NAME, "img"):
        if (img.get_attribute("src") or "").startswith("data:image/png"):
            return driver.execute_script("return arguments[0].naturalWidth", img)
    return 0


def open_result(driver, name):
    from selenium.webdriver.common.by import By

    row = wait_for(lambda: [r for r in driver.find_elements(By.CSS_SELECTOR, "table tr")
                            if name in r.text])
    assert row, f"{name} is not listed"
    row[0].find_elements(By.TAG_NAME, "a")[0].click()


def test_report_loads_and_shows_its_plots(report, browser):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    body = wait_for(lambda: browser.find_element(By.TAG_NAME, "body").text)
    assert "1. Leaderboard" in body and "2. Examples" in body
    assert "segpipe segmented the images" in body

    browser.find_element(By.LINK_TEXT, "1. Leaderboard").click()
    for figure in ("distributions.png", "quality_runtime.png"):
        open_result(browser, figure)
        assert wait_for(lambda: shown_png_width(browser)) > 400, figure
    open_result(browser, "leaderboard.html")

    browser.get(report.as_uri())
    wait_for(lambda: browser.find_elements(By.LINK_TEXT, "2. Examples"))[0].click()
    methods = wait_for(lambda: [a.text for a in browser.find_elements(By.TAG_NAME, "a")
                                if a.text in ("otsu", "km_k2", "km_k3")])
    assert sorted(methods) == ["km_k2", "km_k3", "otsu"]
    browser.find_element(By.LINK_TEXT, "otsu").click()
    open_result(browser, "otsu.png")
    assert wait_for(lambda: shown_png_width(browser)) > 300
