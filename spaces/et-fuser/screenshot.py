"""Drives the Space in headless Chromium (Debian's `chromium` + `chromium-driver`, through Selenium): starts the app on
127.0.0.1, uploads a photo, waits for the answer, and saves a full-page screenshot. The browser tests use the same
helpers.

    python spaces/et-fuser/screenshot.py --model runs/etfuser-synthetic/model --output docs/space_screenshot.png
    # docs/space_screenshot.png: the main job's spatial expression model, so the attention maps are on the page
    python spaces/et-fuser/screenshot.py --model runs/etfuser-synthetic/checkpoints/attention/expression \
        --output docs/space_screenshot.png
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).with_name("app.py")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(model: str | os.PathLike, timeout: float = 60.0, arguments: tuple[str, ...] = ()):
    """Starts `app.py --model model *arguments` on a free 127.0.0.1 port; yields its URL; stops it on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, str(APP), "--model", str(model), "--port", str(port), *arguments],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1"})
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the app did not start on {url}:\n{log.read().decode(errors='replace')[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def chromium(width: int = 1280, height: int = 1600):
    """A headless Chromium under Selenium; it fails with what to install when the browser is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        raise RuntimeError(f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER}: "
                           "apt-get install -y chromium chromium-driver (.ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def analyse_photo(driver, url: str, photo: str | os.PathLike, timeout: float = 60.0) -> str:
    """Opens the page, uploads `photo` in the Photo tab, presses "Analyse photo" and returns the message shown once
    the answer is in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#photo-input input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "#photo-input input[type=file]").send_keys(str(Path(photo).resolve()))
    # the button works with the file once it is uploaded: the component then lists it with a download link
    wait.until(lambda page: page.find_elements(
        By.CSS_SELECTOR, f'#photo-input td.filename[aria-label="{Path(photo).name}"] ~ td a[href]'))
    driver.find_element(By.CSS_SELECTOR, "#photo-submit").click()
    wait.until(lambda page: page.find_element(By.CSS_SELECTOR, "#photo-message").text.strip())
    return driver.find_element(By.CSS_SELECTOR, "#photo-message").text


def save_page(driver, output: str | os.PathLike) -> Path:
    """A screenshot of the whole page (the window grown to the page's height)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], min(int(height) + 40, 6000))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(output))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/etfuser-synthetic/model", help="the ET-Fuser folder to serve")
    parser.add_argument("--photo", default=None, help="photo to upload (default: scikit-image's astronaut)")
    parser.add_argument("--output", default="docs/space_screenshot.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        photo = args.photo
        if photo is None:
            import PIL.Image
            import skimage.data

            photo = Path(workdir) / "astronaut.png"
            PIL.Image.fromarray(skimage.data.astronaut()).save(photo)
        with running_app(args.model) as url, chromium() as driver:
            print(analyse_photo(driver, url, photo))
            print(save_page(driver, args.output))


if __name__ == "__main__":
    main()
