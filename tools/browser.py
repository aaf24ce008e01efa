"""A real headless browser for the dashboard's tests and its screenshot in docs/: Debian's
chromium with its chromedriver, installed with apt-get the way tools/build_native.py installs
the cross compilers, driven by Selenium.

  python tools/browser.py URL out.png    # screenshot of a page, 1400x1000
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage")


class BrowserMissing(RuntimeError):
    """chromium or chromedriver is not installed and could not be installed."""


def _found() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def ensure_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths; installs Debian's packages when missing and allowed."""
    found = _found()
    if found:
        return found
    packages = " ".join(PACKAGES)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BrowserMissing(f"chromium is missing; install it with: apt-get install -y {packages}")
    print(f"browser: installing {packages} from Debian (once; a minute or two)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *PACKAGES]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    found = _found()
    if proc.returncode != 0 or not found:
        raise BrowserMissing(f"could not install {packages}: {proc.stderr.strip()[-400:]}")
    return found


@contextmanager
def chromium(width: int = 1400, height: int = 1000):
    """A headless chromium under Selenium with a fresh profile; yields the WebDriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="msw-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(url: str, out: Path) -> None:
    with chromium() as driver:
        driver.get(url)
        driver.save_screenshot(str(out))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    screenshot(sys.argv[1], Path(sys.argv[2]))
