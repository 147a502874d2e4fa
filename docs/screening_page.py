"""Draw docs/screening_page.png (and _onnx.png): the web page grading a mixed batch in headless Chromium.

    .venv/bin/python docs/screening_page.py CHECKPOINT [--onnx MODEL.onnx] [--images DIR]

The batch: three synthetic photographs of different grades (from ``data/synthetic``, the demo's
data), the real photograph scikit-image ships, a picture that is not a fundus (scikit-image's
astronaut) and a broken file, so the page shows grades, certainty, attention and the gate's
refusals at once. Needs Debian's chromium and chromium-driver, and ``drgrade[app]``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import socket
import tempfile
import time
from pathlib import Path

from skimage import data as skdata

from drgrade.data.images import write_rgb


def batch(folder: Path, images: Path) -> list[Path]:
    """The files to upload: one synthetic photograph per grade 0, 2 and 4, and three others."""
    with (images.parent / "train.csv").open(newline="") as f:
        by_grade = {}
        for row in csv.DictReader(f):
            by_grade.setdefault(int(row["diagnosis"]), row["id_code"])
    chosen = []
    for grade in (0, 2, 4):
        chosen.append(folder / f"synthetic_grade{grade}.png")
        shutil.copy(images / f"{by_grade[grade]}.png", chosen[-1])
    write_rgb(folder / "real_retina.jpg", skdata.retina())
    write_rgb(folder / "not_a_fundus.jpg", skdata.astronaut())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n cut short")
    return [*chosen, folder / "real_retina.jpg", folder / "not_a_fundus.jpg", folder / "broken.png"]


def screenshot(grade, card, files: list[Path], out: Path) -> None:
    """Serve the page, upload ``files``, press Grade, save the page to ``out``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from drgrade.serving.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = build_app(grade, card)
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 120)
        field = wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, "#drgrade-upload input[type=file]"))
        )
        field.send_keys("\n".join(str(p) for p in files))
        time.sleep(3)
        driver.find_element(By.ID, "drgrade-grade").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#drgrade-cards .card")) == len(files))
        time.sleep(1)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        page.close()
    print(f"wrote {out}")


def main() -> None:
    """Draw the page for the checkpoint (and its ONNX export, when given)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a trained checkpoint (e.g. the demo's FCN-CLIP)")
    parser.add_argument("--onnx", type=Path, default=None, help="its ONNX export, for the second picture")
    parser.add_argument("--images", type=Path, default=Path("data/synthetic/aptos2019/train_images"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    opts = parser.parse_args()
    from drgrade.commands.serve import grader_of

    with tempfile.TemporaryDirectory() as folder:
        files = batch(Path(folder), opts.images)
        grade, card = grader_of(argparse.Namespace(ckpt_path=str(opts.checkpoint), onnx=None))
        screenshot(grade, card, files, opts.out / "screening_page.png")
        if opts.onnx is not None:
            grade, card = grader_of(argparse.Namespace(ckpt_path=None, onnx=str(opts.onnx)))
            screenshot(grade, card, files, opts.out / "screening_page_onnx.png")


if __name__ == "__main__":
    main()
