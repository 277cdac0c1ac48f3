"""End to end: gunicorn serving the app as the container does, driven by headless Chromium."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest

from webapp_testkit import TEST_MAX_UPLOAD_BYTES, Gunicorn, missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def server(env, postgres, tmp_path):
    """gunicorn with the image's config file and entry point, bound to loopback."""
    g = Gunicorn({**env.vars, "LOG_LEVEL": "INFO"}, tmp_path / "gunicorn.log", workers=1)
    try:
        g.start()
        yield g.base
    finally:
        g.stop(wait=False)
    text = g.output()
    assert "Traceback" not in text, text
    # Never a secret in the server's output.
    assert postgres.app_password not in text


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing(f"Debian's chromium and chromium-driver are needed ({CHROMIUM}, {CHROMEDRIVER})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where Chromium's sandbox can't start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # No calls home: this machine has no internet, and refused connections slow Chromium.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(browser, selector: tuple[str, str]):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 15).until(ec.presence_of_element_located(selector))


def test_upload_in_the_page_and_see_it_listed(server, browser, tmp_path, blobs):
    from selenium.webdriver.common.by import By

    content = b"quarterly numbers\n" * 20
    upload = tmp_path / "report 2026.txt"
    upload.write_bytes(content)
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(b"\0" * (TEST_MAX_UPLOAD_BYTES + 1))

    browser.get(server + "/")
    assert browser.find_element(By.ID, "empty").text == "No files yet."
    assert browser.find_element(By.CSS_SELECTOR, "label[for=file]").text == "File (up to 4.0 KiB)"

    # Over the limit: the page comes back with the error in the label's units, nothing listed.
    browser.find_element(By.ID, "file").send_keys(str(too_big))
    browser.find_element(By.ID, "upload-button").click()
    assert "larger than the limit of 4.0 KiB" in wait_for(browser, (By.ID, "error")).text
    assert browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") == []
    # The error page came from a redirect: reloading it sends no form (no resubmit prompt,
    # which would block here), and it still shows the message.
    assert browser.current_url == server + "/?error=too-large"
    browser.refresh()
    assert "larger than the limit" in wait_for(browser, (By.ID, "error")).text

    browser.find_element(By.ID, "file").send_keys(str(upload))
    browser.find_element(By.ID, "upload-button").click()

    row = wait_for(browser, (By.CSS_SELECTOR, "#files tbody tr"))
    assert row.find_element(By.CSS_SELECTOR, "td.name").text == "report 2026.txt"
    assert row.find_element(By.CSS_SELECTOR, "td.size").text == "360 B"
    assert row.find_element(By.CSS_SELECTOR, "td.type").text == "text/plain"
    assert row.find_element(By.CSS_SELECTOR, "td.uploaded time").get_attribute("datetime")
    assert browser.find_elements(By.ID, "error") == []  # a fresh page after the redirect
    browser.save_screenshot(str(tmp_path / "listed.png"))

    # The link the page offers downloads the same bytes.
    link = row.find_element(By.CSS_SELECTOR, "td.name a")
    href = link.get_attribute("href")
    with urllib.request.urlopen(href, timeout=10) as r:
        assert r.read() == content

    # When the download can't work, following the link shows why (not a silent no-op).
    (key,) = [b.name for b in blobs.list_blobs()]
    blobs.delete_blob(key)
    link.click()
    assert "is missing from storage" in wait_for(browser, (By.ID, "error")).text
    browser.back()

    # Delete asks first; cancelling keeps the file, confirming deletes it.
    row = wait_for(browser, (By.CSS_SELECTOR, "#files tbody tr"))
    row.find_element(By.CSS_SELECTOR, "a.delete").click()
    assert wait_for(browser, (By.TAG_NAME, "h1")).text == "Delete this file?"
    assert browser.find_element(By.CSS_SELECTOR, "dd.name").text == "report 2026.txt"
    browser.find_element(By.ID, "cancel").click()
    row = wait_for(browser, (By.CSS_SELECTOR, "#files tbody tr"))
    row.find_element(By.CSS_SELECTOR, "a.delete").click()
    wait_for(browser, (By.ID, "confirm-delete")).click()
    wait_for(browser, (By.ID, "empty"))
    assert browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") == []


def test_phone_width_has_no_horizontal_scrolling(server, browser, sql, tmp_path):
    """At 375 CSS pixels (a small phone) every column stays on screen, long names wrap."""
    from selenium.webdriver.common.by import By

    long_name = "quarterly-report-" + "x" * 120 + ".pdf"  # no spaces to break at
    rows = [(uuid.uuid4(), long_name), (uuid.uuid4(), "a.txt"), (uuid.uuid4(), "Résumé 履歴書 " * 8 + ".docx")]
    for file_id, name in rows:
        sql(
            "INSERT INTO files (id, name, size, content_type, blob_key) VALUES (%s, %s, 123456, %s, %s)",
            (file_id, name, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", file_id.hex),
        )
    # Device emulation as Chromium's phone presets do it: the viewport meta tag applies.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True}
    )
    for path in ("/", f"/files/{rows[0][0]}/delete", "/?error=too-large"):
        browser.get(server + path)
        wait_for(browser, (By.TAG_NAME, "h1"))
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        assert viewport == 375, path
        assert browser.execute_script("return document.documentElement.scrollWidth") <= viewport, path
        # Nothing sticks out of the screen, whatever it is.
        overflowing = browser.execute_script(
            """return [...document.querySelectorAll('body *')]
                 .filter(e => e.getClientRects().length && !e.closest('.visually-hidden, thead'))
                 .filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > arguments[0]; })
                 .map(e => e.tagName + '.' + e.className)""",
            viewport,
        )
        assert overflowing == [], (path, overflowing)
    browser.get(server + "/")
    for tr in browser.find_elements(By.CSS_SELECTOR, "#files tbody tr"):
        for cell in ("td.name", "td.size", "td.uploaded", "a.delete"):
            rect = tr.find_element(By.CSS_SELECTOR, cell).rect
            assert rect["width"] > 0 and rect["x"] >= 0 and rect["x"] + rect["width"] <= 375, (cell, rect)
    browser.save_screenshot(str(tmp_path / "phone.png"))
