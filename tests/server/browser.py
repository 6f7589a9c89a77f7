"""A real headless browser for the web page's tests: Debian's chromium and chromium-driver, driven by Selenium.

``chromium`` (a session fixture) finds /usr/bin/chromium and /usr/bin/chromedriver. When they are missing
and the tests run as root, it installs the two Debian packages with apt-get; otherwise the browser
tests skip with the reason. Nothing is ever downloaded by Selenium itself: the driver's path is given,
and Selenium Manager is told to stay offline.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path("/usr/bin/chromedriver")
BINARIES = (Path("/usr/bin/chromium"), Path("/usr/lib/chromium/chromium"))
PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Chromium:
    """Where the browser and its driver are."""

    binary: Path
    driver: Path


def _found() -> Chromium | None:
    binary = next((b for b in BINARIES if b.exists()), None)
    return Chromium(binary, DRIVER) if binary is not None and DRIVER.exists() else None


def _install() -> str | None:
    """apt-get install the Debian packages; the reason it could not, or None."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    )
    for step in steps:
        try:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"`{' '.join(step)}` failed: {err}"
        if done.returncode != 0:
            return f"`{' '.join(step)}` failed: {(done.stderr or done.stdout).strip()[-400:]}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's chromium and chromium-driver, installed with apt-get when missing and running as root."""
    found = _found()
    if found is not None:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"needs {' and '.join(PACKAGES)} (Debian packages); not root, so the tests do not install them")
    if shutil.which("apt-get") is None:
        pytest.skip(f"needs {' and '.join(PACKAGES)}, and there is no apt-get to install them with")
    reason = _install()
    found = _found()
    if found is None:
        pytest.skip(f"could not install {' and '.join(PACKAGES)}: {reason or 'installed, but not found'}")
    return found


@pytest.fixture(scope="module")
def browser(chromium: Chromium) -> Iterator[Any]:
    """One headless Chromium for a test module (starting one takes a second or two)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium.binary)
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager never fetches a browser or driver
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(chromium.driver)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def not_blank(png: bytes) -> tuple[int, float]:
    """(distinct colours, standard deviation of the grey levels) of a screenshot; a blank page has 1 and 0."""
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    return len(colours), ImageStat.Stat(image.convert("L")).stddev[0]
