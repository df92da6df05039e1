"""Make docs/report.png, the README's picture of the report: the top of a packed
report.html as a headless Chromium shows it, 900 pixels wide.

Without a page given, it first runs the workflow as `make run` does, on the sample images
(scikit-image's photographs) with the default config's per-image methods (Mask R-CNN's
weights would need a download), in a temporary folder. Needs Debian's
chromium and chromium-driver (tools/install-browser.sh) and the test extra's selenium.

    .venv/bin/python tools/report_picture.py                      # docs/report.png
    .venv/bin/python tools/report_picture.py exp1/results/report.html --out x.png
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The README shows it small: the largest file it should be.
MAX_BYTES = 200_000


def sample_report(work):
    """Run the workflow in ``work`` as `make run` does; the packed page's path."""
    import yaml

    from segpipe.methods import REGISTRY
    from segpipe.workflow_files import workflow_root

    root = workflow_root()
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    methods = {name: settings for name, settings in config["methods"].items()
               if REGISTRY[settings["kind"]].runner == "image"}
    (work / "methods.yaml").write_text(yaml.safe_dump({"methods": methods}))
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"),
                    "-d", str(work), "--cores", "2", "all", "draw_report",
                    "--configfile", str(work / "methods.yaml")],
                   check=True, stdout=subprocess.DEVNULL)
    return work / "results/report.html"


def screenshot(page, *, width, height, profile):
    """PNG bytes of the top ``width`` x ``height`` pixels of ``page`` in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--no-first-run", "--disable-background-networking",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        # The viewport itself, not the window around it: exactly width x height pixels.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        driver.get(Path(page).resolve().as_uri())
        driver.execute_script("return document.fonts.ready")
        return driver.get_screenshot_as_png()
    finally:
        driver.quit()


def small_png(data, max_bytes=MAX_BYTES):
    """``data`` (a PNG) as is if small enough, else with an adaptive palette of at most
    256 colours, which keeps text and figure lines sharp at a fraction of the size."""
    from PIL import Image

    if len(data) <= max_bytes:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    for colours in (256, 128, 64):
        buffer = io.BytesIO()
        image.quantize(colours, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue()
    raise SystemExit(f"the picture is {buffer.tell():,} bytes even with 64 colours; "
                     f"try a smaller --height")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", nargs="?", type=Path,
                        help="a packed report.html (default: a run of the sample images)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/report.png")
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--height", type=int, default=1050)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        page = args.page or sample_report(Path(tmp))
        if not page.is_file():
            raise SystemExit(f"{page}: no such file (`segpipe report DIR` packs it)")
        data = screenshot(page, width=args.width, height=args.height,
                          profile=Path(tmp) / "profile")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(small_png(data))
    print(f"{args.out}: {args.width} x {args.height} px, {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
