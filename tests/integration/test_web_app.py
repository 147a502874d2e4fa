"""The screening web page: in a real browser (headless Chromium through chromedriver), and its ONNX path."""

from __future__ import annotations

import shutil
import socket
import time
from functools import partial

import pytest

from drgrade.cli import main
from drgrade.tasks import load_task
from tests.conftest import cli_args, predict_folder

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@needs_browser
def test_upload_two_photographs_and_a_broken_file(synthetic, zero_shot_checkpoint, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from drgrade.serving.app import build_app
    from drgrade.serving.model_card import card_of_task
    from drgrade.serving.screening import screen_files

    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n not an image")
    expected = predict_folder("zero_shot", synthetic, tmp_path / "runs", zero_shot_checkpoint, folder)

    server_files = tmp_path / "gradio"  # where the server keeps uploads (and what it displays)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(server_files))
    task = load_task(zero_shot_checkpoint).eval()
    card = card_of_task(task)
    page = build_app(partial(screen_files, task, image_size=96), card)
    port = free_port()
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    driver = browser()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        field = wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, "#drgrade-upload input[type=file]"))
        )
        field.send_keys("\n".join(str(p) for p in sorted(folder.iterdir())))
        wait.until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#drgrade-upload .file-preview tr, #drgrade-upload a"))
                >= 3
            )
        )
        driver.find_element(By.ID, "drgrade-grade").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#drgrade-results tr")) == 4)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#drgrade-cards .card")) == 3)
        rows = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#drgrade-results tr")[1:]
        ]
        card_text = driver.find_element(By.ID, "drgrade-cards").text
        card_leads = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#drgrade-cards .card .action")]
        model_line = driver.find_element(By.ID, "drgrade-model").text
        pictures = [
            img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, "#drgrade-cards img")
        ]
        download = driver.find_element(By.ID, "drgrade-csv").get_attribute("href")
        driver.save_screenshot(str(tmp_path / "screening_page.png"))
        assert [p for p in server_files.rglob("*") if p.is_file()]  # held while the page is open
        graded_at = driver.find_element(By.ID, "drgrade-when").text
        time.sleep(1.1)  # the page says when it answered, to the second
        driver.find_element(By.ID, "drgrade-grade").click()  # a second press grades the same files
        wait.until(lambda d: d.find_element(By.ID, "drgrade-when").text != graded_at)
        again = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#drgrade-results tr")[1:]
        ]
        assert again == rows
    finally:
        driver.quit()
    try:  # closing the page lets go of its uploads
        deadline = time.monotonic() + 30
        while [p for p in server_files.rglob("*") if p.is_file()] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        page.close()
    from drgrade.serving.app import COLUMNS

    shown = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in rows}
    assert set(shown) == set(expected)  # the uploaded names, in the table and on the cards
    assert all(name in card_text for name in expected)
    assert len(pictures) == 2 and all(src.startswith("data:image/png") for src in pictures)
    # the page opens with the model line: model, backbone and weights, training, data, checkpoint
    assert model_line == card.line() and "(SYNTHETIC)" in model_line and "sha256:" in model_line
    cut = card.referable_cut()[0]
    assert len(card_leads) == 3 and all(
        lead.startswith(("Refer to an eye specialist", "No referral", "Send to a grader"))
        for lead in card_leads
    )
    yes = {"1": "yes", "0": "no"}
    for name, row in shown.items():
        want = expected[name]
        assert row["action"] == want["action"] and row["action"] in ("refer", "no refer", "to grader")
        if name == "zz_broken.png":
            assert row["quality"].startswith("unreadable: ") and "decod" in row["quality"]
            assert "ungradable" not in row["quality"] and row["grade"] == ""
            assert row["action"] == "to grader" and row["refer to grader"] == "yes"
            assert "Send to a grader: file could not be read." in card_text
            continue
        assert row["grade"] == want["grade"] and row["quality"] == "gradable"
        assert row["referral cut"] == ("" if cut is None else f"{cut:.3f}")
        if cut is not None:  # each card shows P(referable) beside the cut it is compared with
            assert f"P(referable) {float(want['p_referable']):.3f}, referral cut {cut:.3f}" in card_text
        assert row["referable (by score)"] == yes[want["referable_by_score"]]
        assert row["referable (by grade)"] == yes[want["referable_by_grade"]]
        assert row["refer to grader"] == yes[want["refer_to_grader"]]
        assert abs(float(row["P(referable)"]) - float(want["p_referable"])) < 1e-3
        assert abs(float(row["uncertainty (nats)"]) - float(want["uncertainty"])) < 1e-2
        assert abs(float(row["p_no"]) - float(want["p_no"])) < 1e-4
        assert row["certainty"] in card_text
        top = max(float(want[c]) for c in ("p_no", "p_mild", "p_moderate", "p_severe", "p_proliferative"))
        confident = float(want["uncertainty"]) <= card.uncertainty_cut() and top >= 0.6
        assert (row["certainty"] == "confident") == confident
    import base64
    import csv

    csv_rows = list(csv.DictReader(base64.b64decode(download.split(",", 1)[1]).decode().splitlines()))
    assert sorted(r["file"] for r in csv_rows) == sorted(expected)  # the uploaded names, not server paths
    for r in csv_rows:
        assert r["grade"] == expected[r["file"]]["grade"] and r["action"] == expected[r["file"]]["action"]
    left = [p for p in server_files.rglob("*") if p.is_file()]
    assert not left, left  # no upload, card or CSV kept on the server
    assert (tmp_path / "screening_page.png").stat().st_size > 10_000


def test_serve_options_and_the_onnx_path(synthetic, zero_shot_checkpoint, tmp_path, capsys):
    from types import SimpleNamespace

    from drgrade.commands.serve import grader_of
    from drgrade.errors import OptionError
    from drgrade.serving.app import results_table

    with pytest.raises(OptionError, match="exactly one of"):
        grader_of(SimpleNamespace(ckpt_path=None, onnx=None))
    ckpt = ["--ckpt_path", str(zero_shot_checkpoint)]
    main(
        [
            *cli_args("export", "zero_shot", synthetic, tmp_path / "runs", *ckpt),
            "--out",
            str(tmp_path / "zs.onnx"),
        ]
    )
    images = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2]
    capsys.readouterr()
    from_onnx, onnx_card = grader_of(SimpleNamespace(ckpt_path=None, onnx=str(tmp_path / "zs.onnx")))
    assert "model card: Zero-shot" in capsys.readouterr().out  # the export's card, summarised
    from_ckpt, card = grader_of(SimpleNamespace(ckpt_path=str(zero_shot_checkpoint), onnx=None))
    assert card.name == "Zero-shot"
    assert onnx_card.line() == card.line() and onnx_card.rule == card.rule  # the ONNX file carries its card
    onnx_rows = [a.row for a in from_onnx(images)]
    ckpt_rows = [a.row for a in from_ckpt(images)]
    assert [r.decision.grade for r in onnx_rows] == [r.decision.grade for r in ckpt_rows]
    for a, b in zip(onnx_rows, ckpt_rows, strict=True):
        assert (
            max(abs(x - y) for x, y in zip(a.decision.probabilities, b.decision.probabilities, strict=True))
            < 1e-4
        )
    assert results_table(from_onnx(images), onnx_card).count("<tr>") == 3
    assert all(r.action in ("refer", "no refer", "to grader") for r in onnx_rows)
