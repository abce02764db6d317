"""The running Space driven in headless Chromium (Debian's chromium + chromium-driver, through Selenium): the astronaut
photo end to end, and a text file named .jpg. One app process serves both tests."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from selenium.webdriver.common.by import By
from space_fixtures import LABELS, space_model_dir  # noqa: F401 (fixtures)

from screenshot import CHROMEDRIVER, CHROMIUM, analyse_photo, chromium, running_app


def _require_browser() -> None:
    """Skips where the browser cannot be had (scripts/install-browser installs it on Debian as root), unless
    ETFUSER_REQUIRE_BROWSER=1 (CI), where a missing browser must fail rather than hide a broken test."""
    if Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file():
        return
    if os.environ.get("ETFUSER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ETFUSER_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: run scripts/install-browser")
    pytest.skip(f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); scripts/install-browser installs it "
                "on Debian as root")


@pytest.fixture(scope="module")
def page(request):
    _require_browser()  # before building the Space's model, which the skip would waste
    with running_app(request.getfixturevalue("space_model_dir")) as url, chromium() as driver:
        yield driver, url


def _table(driver, element_id: str) -> tuple[list[str], list[list[str]]]:
    """Headers and body rows of a Gradio Dataframe as the page shows them."""
    table = driver.find_element(By.CSS_SELECTOR, f"#{element_id}")
    headers = [cell.get_attribute("title") for cell in table.find_elements(By.CSS_SELECTOR, "thead th[title]")]
    rows = [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")]
            for row in table.find_elements(By.CSS_SELECTOR, ".virtual-body [role=row]")]
    return headers, [row for row in rows if any(row)]


def test_space_browser_astronaut_end_to_end(page, astronaut_path):
    driver, url = page
    assert analyse_photo(driver, url, astronaut_path) == "1 face found."
    headers, rows = _table(driver, "faces")
    assert len(rows) == 1, rows
    face = dict(zip(headers, rows[0]))
    assert face["label"] in LABELS
    assert sum(float(face[f"prob_{label}"]) for label in LABELS) == pytest.approx(1, abs=1e-3)
    # the annotated image as rendered: the photo's colours, not a blank box
    image = driver.find_element(By.CSS_SELECTOR, "#annotated img")
    assert int(image.get_attribute("naturalWidth")) == 512
    shown = np.asarray(PIL.Image.open(io.BytesIO(image.screenshot_as_png)).convert("RGB"), dtype=float)
    assert shown.std() > 30 and min(shown.shape[:2]) > 200
    assert "SYNTHETIC training data" in driver.find_element(By.CSS_SELECTOR, "#banner").text
    _, readings = _table(driver, "readings")
    assert any("canonical model before fine-tuning" in " ".join(row) for row in readings)


def test_space_browser_text_file_named_jpg_shows_the_error(page, tmp_path):
    driver, url = page
    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is not a photo")
    message = analyse_photo(driver, url, fake)
    assert "Could not read this file" in message and "not an image file" in message
    assert not driver.find_elements(By.CSS_SELECTOR, "#annotated img")
