"""End to end: `python -m demo` in a subprocess, driven in real headless Chromium (Selenium).

Upload an image, type a question, set the budget, press Allocate: the overlay, both heatmaps and the
token count appear and the count respects the budget. Then an empty question shows its error and a
good request after it works again. Screenshots go to tests/artifacts/ (gitignored).
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
pytest.importorskip("selenium", reason="the browser test needs selenium (pip install -e '.[test]')")

from arrcoc.assets import sample_image_path  # noqa: E402
from demo.browser import chromium_driver, find_chromium, free_port, set_text, wait_http  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="system Chromium not found (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "demo", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=150, proc=proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"demo server did not start:\n{log.read_text()[-3000:]}")
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _text(drv, css):
    from selenium.webdriver.common.by import By
    return drv.find_element(By.CSS_SELECTOR, css).text


def _loaded_images(drv):
    """{elem_id: natural width} of the decoded <img> in each output image component."""
    return drv.execute_script("""
        const out = {};
        for (const id of ['overlay', 'heatmap-mean', 'heatmap-sd']) {
            const img = document.querySelector('#' + id + ' img');
            out[id] = (img && img.complete) ? img.naturalWidth : 0;
        }
        return out;""")


def _tokens(text):
    m = re.search(r"(\d+) visual tokens \((\d+) global \+ (\d+) in regions\) · budget (\d+) · "
                  r"full detail (\d+)", text)
    assert m, text
    return tuple(int(g) for g in m.groups())


def test_demo_in_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "street.png"
    Image.open(sample_image_path()).convert("RGB").resize((480, 360)).save(upload)
    drv = chromium_driver(tmp_path / "profile")
    try:
        t0 = time.monotonic()
        drv.get(server)
        wait = WebDriverWait(drv, 40)
        wait.until(ec.element_to_be_clickable((By.ID, "run-btn")))
        drv.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(upload))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#upload [aria-label="street.png"]')))
        set_text(drv, "#question textarea", "What does the stop sign say?")
        set_text(drv, "#budget input[type=number]", "900")
        drv.find_element(By.ID, "run-btn").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "tokens"), "visual tokens"))
        wait.until(lambda d: all(w > 0 for w in _loaded_images(d).values()))
        total, glob, regions, budget, full = _tokens(_text(drv, "#tokens"))
        assert budget == 900 and total == glob + regions and glob + 64 <= total <= budget and full == 6464
        assert "street.png, 480x360 px" in _text(drv, "#status")
        assert "What does the stop sign say?" in _text(drv, "#status")
        table = _text(drv, "#regions")  # the per-region table, boxes in the uploaded image's pixels
        assert "(0,0,120,90)" in table and "(360,270,480,360)" in table
        drv.save_screenshot(str(ARTIFACTS / "demo_e2e.png"))
        # offline: everything the page loaded came from the demo server itself
        loaded = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(server) or u.startswith("data:") or u.startswith("blob:")
                              for u in loaded), [u for u in loaded if not u.startswith(server)]

        # bad input: an empty question -> a clear message, the old result cleared
        set_text(drv, "#question textarea", "")
        drv.find_element(By.ID, "run-btn").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Error:"))
        assert "question is empty" in _text(drv, "#status")
        assert _text(drv, "#tokens") == ""
        drv.save_screenshot(str(ARTIFACTS / "demo_e2e_error.png"))

        # and the app keeps working: the next good request succeeds
        set_text(drv, "#question textarea", "What does the blue sign say?")
        drv.find_element(By.ID, "run-btn").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "tokens"), "visual tokens"))
        wait.until(lambda d: all(w > 0 for w in _loaded_images(d).values()))
        total, *_rest, budget, _ = _tokens(_text(drv, "#tokens"))
        assert total <= budget == 900
        assert "Done:" in _text(drv, "#status")
        assert time.monotonic() - t0 < 60
    finally:
        drv.quit()
