"""Headless Chromium (Debian's `chromium` + `chromedriver`) driven by Selenium, for the web page's tests."""

from __future__ import annotations

import shutil

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium(width: int = 1280, height: int = 900):  # type: ignore[no-untyped-def]
    """A Selenium WebDriver on the system Chromium; `make browser` installs it (scripts/ui/install-browser.sh)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise RuntimeError("chromium and chromedriver are missing; run `make browser`.")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
