"""The web page in a real browser (headless Chromium from the system's packages, driven by
Selenium): a query's thumbnails appear in the API's ranking, a filter changes them, an add shows up.

Set ``MPANET_SCREENSHOT=docs/images/serve.png`` to keep the page's screenshot (the README's)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.serve.conftest import Server, copy_index, image_files


def _chrome():
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no headless browser: Chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run does it as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def test_the_page_searches_filters_and_adds(tmp_path, tiny_run, built_index, synth_tree):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chrome()
    server = Server(tmp_path, tiny_run, copy_index(built_index, tmp_path))
    try:
        count = server.get("/v1/gallery").json()["count"]
        wait = WebDriverWait(browser, 180)
        browser.get(server.url + "/")
        wait.until(lambda b: b.find_element(By.ID, "gallery-count").text.startswith(f"gallery: {count} images"))

        def shown():
            return [int(card.get_attribute("data-entry-id")) for card in browser.find_elements(By.CSS_SELECTOR, "#results li")]

        def ranking(**params):
            answer = server.post("/v1/search", params={"top_k": 10, **params}, data=query.read_bytes())
            return [r["entry_id"] for r in answer.json()["results"]]

        query = image_files(synth_tree / "cam3")[0]  # an infrared query
        browser.find_element(By.ID, "query-file").send_keys(str(query))
        expected = ranking()
        wait.until(lambda b: shown() == expected)

        browser.find_element(By.CSS_SELECTOR, "input[name=modality][value=visible]").click()
        visible = ranking(modality="visible")
        assert visible != expected
        wait.until(lambda b: shown() == visible)

        browser.find_element(By.ID, "add-files").send_keys(str(query))
        browser.find_element(By.ID, "add-camera").send_keys("gate")
        browser.find_element(By.CSS_SELECTOR, "#add-modality option[value=visible]").click()
        browser.find_element(By.ID, "add-person").send_keys("1")
        browser.find_element(By.ID, "add-button").click()
        wait.until(lambda b: b.find_element(By.ID, "add-status").text == f"added entries {count}")
        wait.until(lambda b: shown()[:1] == [count])  # the added copy of the query, now first among visible
        assert shown() == ranking(modality="visible")

        browser.find_element(By.ID, "query-person").send_keys("1")  # mark the right identity
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results li.match"))
        wait.until(lambda b: b.execute_script(
            "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
        picture = tmp_path / "serve.png"
        browser.save_screenshot(str(picture))
        assert picture.stat().st_size > 10_000
        if os.environ.get("MPANET_SCREENSHOT"):
            shutil.copyfile(picture, os.environ["MPANET_SCREENSHOT"])
    finally:
        browser.quit()
        assert server.stop() == 0
