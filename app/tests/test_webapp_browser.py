"""End to end: gunicorn serving the app as the container does, driven by headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from webapp_testkit import APP_DIR, LOOPBACK, TEST_MAX_UPLOAD_BYTES, free_port, missing, wait_for_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def server(env, postgres, tmp_path):
    """gunicorn with the image's config file and entry point, bound to loopback."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"{LOOPBACK}:{port}",  # the image binds all interfaces; tests stay on loopback
                "--workers",
                "2",
                "webapp.wsgi:app",
            ],
            cwd=APP_DIR,
            env={**os.environ, **env.vars, "LOG_LEVEL": "INFO"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, 30, proc, log)
        base = f"http://{LOOPBACK}:{port}"
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as r:
            assert r.status == 200
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
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


def test_upload_in_the_page_and_see_it_listed(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(selector: tuple[str, str]):
        return WebDriverWait(browser, 15).until(ec.presence_of_element_located(selector))

    content = b"quarterly numbers\n" * 20
    upload = tmp_path / "report 2026.txt"
    upload.write_bytes(content)
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(b"\0" * (TEST_MAX_UPLOAD_BYTES + 1))

    browser.get(server + "/")
    assert browser.find_element(By.ID, "empty").text == "No files yet."

    # Over the limit: the page comes back with the error, and nothing is listed.
    browser.find_element(By.ID, "file").send_keys(str(too_big))
    browser.find_element(By.ID, "upload-button").click()
    assert f"the limit is {TEST_MAX_UPLOAD_BYTES} bytes" in wait_for((By.ID, "error")).text
    assert browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") == []

    browser.find_element(By.ID, "file").send_keys(str(upload))
    browser.find_element(By.ID, "upload-button").click()

    row = wait_for((By.CSS_SELECTOR, "#files tbody tr"))
    assert row.find_element(By.CSS_SELECTOR, "td.name").text == "report 2026.txt"
    assert row.find_element(By.CSS_SELECTOR, "td.size").text == "360 B"
    assert row.find_element(By.CSS_SELECTOR, "td.type").text == "text/plain"
    assert row.find_element(By.CSS_SELECTOR, "td.uploaded time").get_attribute("datetime")
    assert browser.find_elements(By.ID, "error") == []  # a fresh page after the redirect
    browser.save_screenshot(str(tmp_path / "listed.png"))

    # The link the page offers downloads the same bytes.
    href = row.find_element(By.CSS_SELECTOR, "td.name a").get_attribute("href")
    with urllib.request.urlopen(href, timeout=10) as r:
        assert r.read() == content

    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    wait_for((By.ID, "empty"))
    assert browser.find_elements(By.CSS_SELECTOR, "#files tbody tr") == []
