"""Headless system Chromium for the demo's browser test and README screenshot (Selenium).

``find_chromium()`` -> (chromium, chromedriver) paths or None; ``chromium_driver(user_data_dir)``
starts it with the flags that keep it from reaching for the network (closed networks make a default
Chromium hang on first-run, sync, component updates and QUIC probes); every host but 127.0.0.1 is
mapped to nothing, so a page that tried to load something remote fails at once instead of waiting.

``python -m demo.browser OUT.png``: launch the demo in-process, ask the default question about the
bundled scene and save a screenshot (the README's ``docs/demo_screenshot.png``).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

__all__ = ["CHROMIUM_FLAGS", "find_chromium", "chromium_driver", "free_port", "wait_http", "set_text", "screenshot"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) of the system (Debian packages chromium, chromium-driver), or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None and Path("/usr/bin/chromium").is_file():
        browser = "/usr/bin/chromium"
    driver = shutil.which("chromedriver")
    if driver is None and Path("/usr/bin/chromedriver").is_file():
        driver = "/usr/bin/chromedriver"
    return (browser, driver) if browser and driver else None


def chromium_driver(user_data_dir: str | Path, width: int = 1600, height: int = 1300):
    """A Selenium WebDriver on headless system Chromium with a fresh profile in ``user_data_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise FileNotFoundError("chromium and chromedriver not found (apt-get install -y chromium chromium-driver)")
    browser, driver = found
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={user_data_dir}")
    opts.add_argument(f"--window-size={width},{height}")
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    drv.set_page_load_timeout(30)
    return drv


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0, proc=None) -> None:
    """Poll ``url`` until it answers 200; raise if ``proc`` exits or ``timeout`` passes."""
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def screenshot(out: str | Path, question: str | None = None, budget: int | None = None) -> Path:
    """Launch the demo in-process on a free port, run one request on the bundled scene, save a PNG."""
    import tempfile

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from demo.app import launch

    port = free_port()
    app = launch(port=port, block=False)
    try:
        with tempfile.TemporaryDirectory() as profile:
            drv = chromium_driver(profile, 1500, 1250)
            try:
                drv.get(f"http://127.0.0.1:{port}/")
                wait = WebDriverWait(drv, 60)
                wait.until(ec.element_to_be_clickable((By.ID, "run-btn")))
                if question is not None:
                    set_text(drv, "#question textarea", question)
                if budget is not None:
                    set_text(drv, "#budget input[type=number]", str(budget))
                drv.find_element(By.ID, "run-btn").click()
                wait.until(ec.text_to_be_present_in_element((By.ID, "tokens"), "visual tokens"))
                drv.execute_script("window.scrollTo(0, 0)")  # the click scrolled the button into view
                time.sleep(1.0)  # let the images finish painting
                out = Path(out)
                drv.save_screenshot(str(out))
                from PIL import Image

                with Image.open(out) as im:  # UI colours are flat: a 256-colour palette keeps it small
                    small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
                small.save(out, optimize=True)
            finally:
                drv.quit()
    finally:
        app.close()
    return out


def set_text(drv, css: str, text: str) -> None:
    """Replace the text of an input/textarea the way a user does (select all, type)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    el = drv.find_element(By.CSS_SELECTOR, css)
    el.click()
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(Keys.DELETE)
    if text:
        el.send_keys(text)
    el.send_keys(Keys.TAB)  # commit (sliders' number boxes update on change/blur)


if __name__ == "__main__":
    path = screenshot(sys.argv[1] if len(sys.argv) > 1 else "demo_screenshot.png")
    print(f"wrote {path}")
