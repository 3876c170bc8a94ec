"""The reports in a real browser: `report.html` of a smoke comparison and of the fastest
experiment's smoke preset (`theory`, no training) loads in headless Chromium with no console
error, and every figure the command drew is on the page and decodes to a picture.

Marked `browser`: `make test` leaves it out and `make browser-test` (CI runs both) installs
Chromium and runs it; see docs/development.md. A missing Chromium skips it, naming what is
missing, except where CI or ASSAY_REQUIRE_BROWSER is set: there it fails. Each test saves
a screenshot of the top of the page next to the report (`report.png`), and into
$ASSAY_SCREENSHOTS when set (how docs/images/report-compare-smoke.png was made).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from chromium import Chromium, find_chromium
from PIL import Image

pytestmark = pytest.mark.browser

#: the command behind each report checked; every one writes OUT/report.html
REPORTS = {
    "compare": ("compare", "--preset", "smoke"),
    "theory": ("theory", "--preset", "smoke"),
}


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        missing = "chromium not installed: run scripts/setup-system.sh"
        if os.environ.get("CI") or os.environ.get("ASSAY_REQUIRE_BROWSER"):
            pytest.fail(f"{missing} (CI and ASSAY_REQUIRE_BROWSER require the browser test)")
        pytest.skip(missing)
    with Chromium(executable) as chromium:
        yield chromium


@pytest.mark.parametrize("name", REPORTS)
def test_report_loads_in_chromium_with_every_figure(name, assay, browser, tmp_path):
    out = tmp_path / name
    run = assay(*REPORTS[name], "--out", str(out), "--quiet", timeout=600)
    assert run.returncode == 0, run.stderr

    page = browser.open_page(out / "report.html")
    screenshot = out / "report.png"
    screenshot.write_bytes(page.screenshot)
    if os.environ.get("ASSAY_SCREENSHOTS"):
        shutil.copy(screenshot, Path(os.environ["ASSAY_SCREENSHOTS"]) / f"report-{name}-smoke.png")

    assert page.errors == [], f"console errors in {out / 'report.html'}"
    drawn = sorted(path.stem for path in out.glob("*.png") if path != screenshot)
    assert drawn, f"{name} drew no figure"
    assert sorted(image["alt"] for image in page.images) == drawn, "a drawn figure is not shown"
    assert page.broken_images == [], "an image on the page did not load"
    picture = Image.open(io.BytesIO(page.screenshot))
    assert picture.size == (1200, 900)
    low, high = picture.convert("L").getextrema()
    assert low < high, "the screenshot is blank"
