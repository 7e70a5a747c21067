"""The Gradio app of notebook 08 (fmnist_utils.demo): through gradio_client, and in a real headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import free_port, requested_hosts, start_chromium
from PIL import Image

from fmnist_utils import demo, photos

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "images" / "08_demo_app.png"
pytestmark = pytest.mark.skipif(
    not (ROOT / photos.DEFAULT_MODEL_NAME).is_file(), reason="notebook 08 has not saved its model yet"
)


def _primary_address() -> str | None:
    """This machine's address on its network, if it has one besides loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def served():
    """The app with the committed model, launched on a free local port; yields (app, url)."""
    port = free_port()
    app = demo.launch(demo.build_app(), port, prevent_thread_lock=True, quiet=True)
    yield app, f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


def test_a_committed_photo_gets_a_class_through_gradio_client(client):
    from gradio_client import handle_file

    path = demo.example_photos()[0]  # a t-shirt of the held-out test part
    assert "/t-shirt/" in path
    photo, item, model_view, probabilities, verdict = client.predict(handle_file(path), api_name="/classify")
    assert all(Path(image).is_file() for image in (photo, item, model_view))
    assert probabilities["label"] in photos.ANSWER_NAMES
    assert sorted(c["label"] for c in probabilities["confidences"]) == sorted(photos.ANSWER_NAMES)
    assert abs(sum(c["confidence"] for c in probabilities["confidences"]) - 1) < 1e-4
    assert f"**{probabilities['label']}**" in verdict or demo.OOD_MESSAGE in verdict
    expected = photos.classify(photos.convert_photos([path])[..., 0], photos.load_classifier())[0]
    assert probabilities["label"] == expected.answer  # the app answers what fmnist_utils.photos answers


def test_a_text_file_named_jpg_gets_a_readable_message_and_the_app_keeps_working(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo at all")
    *images, probabilities, verdict = client.predict(handle_file(str(bad)), api_name="/classify")
    assert images == [None, None, None] and not probabilities
    assert verdict == "**Could not use this file.** notes.jpg: not an image file Pillow can read (JPEG, PNG, WebP, ...)"
    again = client.predict(handle_file(demo.example_photos()[1]), api_name="/classify")
    assert again[3]["label"] in photos.ANSWER_NAMES


def test_a_thin_photo_and_a_white_photo_get_a_reason_or_a_warning(client, tmp_path):
    from gradio_client import handle_file

    thin = tmp_path / "thin.png"
    Image.new("RGB", (28, 2000), (200, 50, 50)).save(thin)
    *images, probabilities, verdict = client.predict(handle_file(str(thin)), api_name="/classify")
    assert images == [None, None, None] and not probabilities
    assert verdict.startswith("**Could not use this file.** thin.png: 28 x 2000 pixels is too thin")
    white = tmp_path / "white.png"
    Image.new("RGB", (200, 200), (255, 255, 255)).save(white)
    *images, probabilities, verdict = client.predict(handle_file(str(white)), api_name="/classify")
    assert "⚠ The item could not be separated" in verdict and "⚠ The item is nearly invisible" in verdict
    again = client.predict(handle_file(demo.example_photos()[1]), api_name="/classify")
    assert again[3]["label"] in photos.ANSWER_NAMES


def test_the_server_listens_on_loopback_only_without_analytics(served):
    app, url = served
    assert app.server_name == "127.0.0.1" and app.server.config.host == "127.0.0.1"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and not app.analytics_enabled
    assert app.share is False
    address = _primary_address()
    if address:
        with pytest.raises(OSError):
            socket.create_connection((address, urlparse(url).port), timeout=2).close()


def test_the_command_serves_the_app_and_reports_a_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        demo.main(["--model", str(tmp_path / "none.keras")])
    assert raised.value.code == 2 and "no model at" in capsys.readouterr().err
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "fmnist_utils.demo", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        while time.perf_counter() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    config = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, "the demo exited"
                time.sleep(0.5)
        else:
            pytest.fail("the demo did not answer within 120 s")
        print(f"demo start-up: {time.perf_counter() - start:.1f} s to answer on port {port}")
        assert config["title"] == "Fashion-MNIST on your own photo"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_real_browser_uploads_a_photo_and_reads_the_class(served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_chromium()
    try:
        driver.get(served[1])
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(demo.example_photos()[3])  # shoes
        verdict = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "verdict").text.strip() or None)
        predicted = driver.find_element(By.CSS_SELECTOR, "#probabilities h2").text.strip()
        print(f"the browser saw: verdict {verdict!r}, top answer {predicted!r}")
        assert predicted in photos.ANSWER_NAMES and (predicted in verdict or demo.OOD_MESSAGE in verdict)
        path = SCREENSHOT if os.environ.get("FMNIST_UPDATE_SCREENSHOT") else tmp_path / SCREENSHOT.name
        assert driver.save_screenshot(str(path))
        hosts = requested_hosts(driver)
        assert hosts <= {"127.0.0.1", None}, f"the page fetched from other hosts: {hosts}"  # offline: no CDN
    finally:
        driver.quit()
