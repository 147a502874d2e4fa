"""The page builds and serves on the installed Gradio without a browser (`make test-lowest`: its floor)."""

import socket
import urllib.request

from drgrade.serving.app import MAX_UPLOAD, build_app
from drgrade.serving.model_card import ModelCard


def test_the_page_starts_and_serves_its_title_on_the_installed_gradio():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = build_app(lambda paths: [], ModelCard("Test model"))
    page.launch(
        server_name="127.0.0.1",
        server_port=port,
        max_file_size=MAX_UPLOAD,  # the options `drgrade serve` launches with
        quiet=True,
        prevent_thread_lock=True,
    )
    try:
        html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
    finally:
        page.close()
    assert "drgrade screening" in html
