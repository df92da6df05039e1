"""The packed report opens in a real headless Chromium on one page that shows the
leaderboard, the figures and the examples, with nothing to click.

Chromium and ChromeDriver come from Debian (tools/install-browser.sh, which `make test`
runs first); without them the test is skipped, saying so.
"""

import shutil
import time

import numpy as np
import pytest

from segpipe.imageio import read_image, write_png

from conftest import make_image_folder, run_snakemake, write_config

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
    run_snakemake(tmp, "--configfile", cfg)  # report: true packs report.html too
    return tmp / "results/report.html"


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


def test_report_opens_on_one_page_with_everything_shown(report, browser):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    body = wait_for(lambda: browser.find_element(By.TAG_NAME, "body").text)
    # The leaderboard's rows, ranked by IoU, with their explanation, in the first screen.
    rows = [r.text.split()[:2] for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert sorted(name for _, name in rows) == ["km_k2", "km_k3", "otsu"]
    assert rows[0] == ["1", "otsu"]  # the classes of k-means have no IoU: ranked below
    table = browser.find_element(By.TAG_NAME, "table")
    assert table.is_displayed() and table.rect["y"] < browser.execute_script(
        "return window.innerHeight")
    assert "Sorted by rank" in body and "Row s / image" in body
    # Every figure and every method's examples, loaded and drawn on the page itself.
    images = browser.find_elements(By.TAG_NAME, "img")
    alts = [img.get_attribute("alt") for img in images]
    assert alts == ["quality_runtime", "distributions", "objects", "km_k2", "km_k3", "otsu"]
    for img in images:
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        assert wait_for(lambda img=img: browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", img)) > 300
        assert img.is_displayed() and img.rect["width"] > 300
    assert [h.text for h in browser.find_elements(By.TAG_NAME, "h3")] == alts[3:]
    # Nothing was opened: the page is still the one loaded.
    assert browser.current_url == report.as_uri()
