"""Shared fixtures. Figures are drawn headless."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from fmnist_utils import data


@pytest.fixture(scope="session")
def fashion_mnist():
    """The four verified arrays, loaded once: ((x_train, y_train), (x_test, y_test))."""
    return data.load_data(verbose=False)


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with Keras' default float32 policy (``start_run`` sets the machine's policy)."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# --- A real browser, for the demo app (test_demo.py) and the web page (test_web.py) ---------------------------------

NO_CHROMIUM = "no Chromium: install it with `sudo apt-get install chromium chromium-driver` (make test does as root)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_paths() -> tuple[str, str] | None:
    """(browser, chromedriver) paths of Debian's Chromium, or None when either is missing."""
    import shutil

    browser = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium():
    """A headless Chromium WebDriver (Selenium, 1280x1000) that logs every network request
    (:func:`requested_hosts`); the caller quits it. Skips the test when Chromium is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        pytest.skip(NO_CHROMIUM)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=options)


def requested_hosts(driver) -> set[str | None]:
    """The host names of every request the browser sent since the last call (data: URLs give None)."""
    import json
    from urllib.parse import urlparse

    messages = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return {
        urlparse(message["params"]["request"]["url"]).hostname
        for message in messages
        if message["method"] == "Network.requestWillBeSent"
    }
