"""The search page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
upload an image, type a query, submit, see result cards with loaded thumbnails; a screenshot
of the results is saved to ``$TMPDIR/augret-serve-browser/search-results.png``."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from augret.data import MBEIRDir
from augret.enhance.backends.fake import FakeBackend
from helpers.serve import LiveServer

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,1100")
SCREENSHOT = Path(tempfile.gettempdir()) / "augret-serve-browser" / "search-results.png"


@pytest.fixture
def driver(tmp_path, monkeypatch):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("chromium and chromedriver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    d = webdriver.Chrome(options=options, service=service)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def _wait(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_upload_type_submit_and_see_results(driver, tmp_path, tiny_encoder, shapes_indexes):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from augret.enhance import EnhanceConfig, GenerationStore
    from augret.serve import QueryEnhancer, Searcher, create_app

    enhancer = QueryEnhancer(EnhanceConfig(store=tmp_path / "s.sqlite"),
                             backend=FakeBackend(words=4),
                             store=GenerationStore(tmp_path / "s.sqlite"))
    searcher = Searcher.open(shapes_indexes.dense, encoder=tiny_encoder, enhancer=enhancer)
    data = MBEIRDir(shapes_indexes.data)
    query_image = data.resolve_image(next(data.iter_queries("cirr_task7")).query_img_path)
    with LiveServer(create_app(searcher)) as live:
        driver.get(live.url + "/")
        info = driver.find_element(By.ID, "index-info")
        _wait(lambda: "288 items" in info.text, what="the index description")
        assert "dense retrieval" in info.text and "fake-vlm" in info.text

        # nothing to search: the page says so, no request is sent
        driver.find_element(By.ID, "submit").click()
        error = driver.find_element(By.ID, "error")
        _wait(error.is_displayed, what="the empty-query message")
        assert "Type a query or add an image" in error.text

        driver.find_element(By.ID, "image").send_keys(str(query_image))
        preview = driver.find_element(By.ID, "preview")
        _wait(lambda: preview.is_displayed() and driver.execute_script(
            "return arguments[0].naturalWidth", preview) > 0, what="the image preview")
        driver.find_element(By.ID, "text").send_keys("Make it blue and smaller.")
        Select(driver.find_element(By.ID, "task")).select_by_value("cirr_task7")
        Select(driver.find_element(By.ID, "modality")).select_by_value("image")
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys("12")
        driver.find_element(By.ID, "submit").click()

        cards = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#results .card"),
                      what="result cards")
        assert len(cards) == 12 and not error.is_displayed()
        thumbs = driver.find_elements(By.CSS_SELECTOR, "#results .card .thumb img")
        assert len(thumbs) == 12
        _wait(lambda: all(driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", t)
            for t in thumbs), what="thumbnails to load")
        first = cards[0]
        assert first.find_element(By.CSS_SELECTOR, ".rank").text == "#1"
        float(first.find_element(By.CSS_SELECTOR, ".score").text)
        assert first.get_attribute("data-id").count(":") == 1
        assert driver.find_element(By.ID, "q-original").text == "Make it blue and smaller."
        status = driver.find_element(By.ID, "q-status").text
        assert status == "condense: generated"
        assert driver.find_element(By.ID, "q-rewritten").text.startswith("W")
        assert driver.find_element(By.ID, "q-instruction").text

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
        print(f"\nscreenshot: {SCREENSHOT}")

        # a server-side refusal is shown as a message, the page keeps working
        driver.execute_script("document.getElementById('k').value = '1000'")
        driver.find_element(By.ID, "submit").click()
        _wait(error.is_displayed, what="the error message")
        assert "422" in error.text and "k must be between 1 and 100" in error.text
    searcher.close()
