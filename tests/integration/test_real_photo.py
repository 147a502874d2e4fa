"""A real fundus photograph through every path: crop, variants, train/deploy agreement, realism.

scikit-image ships ``retina.jpg`` (1411x1411, a normal left eye, public domain). One normal eye
checks that real inputs flow through and are not rejected; it says nothing about accuracy.
"""

from __future__ import annotations

import csv
import shutil
import warnings

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from drgrade.cli import main
from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import UNKNOWN, FundusDataset
from drgrade.data.images import read_rgb, write_rgb
from drgrade.data.preprocess import CLIP_MEAN, CLIP_STD, brightest_channel, preprocess_fundus
from drgrade.data.quality import SURROUND, QualityLimits
from drgrade.data.realism import STATISTICS, fundus_statistics, mean_statistics
from drgrade.data.sources import Record
from drgrade.data.synthetic import render_fundus
from drgrade.predictions import PROB_COLUMNS
from drgrade.serving.quantize import quantize_onnx
from drgrade.serving.runner import main as deploy_main
from drgrade.serving.runner import normalised, prepared
from drgrade.serving.screening import screen_files
from drgrade.tasks import load_task
from tests.conftest import cli_args, predict_folder, with_typicality_cut

RETINA = skdata.retina()
SIZE = 224


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    _, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


def test_the_fundus_is_found_and_fills_the_crop():
    out = preprocess_fundus(RETINA, SIZE)
    fundus = brightest_channel(out) > SURROUND
    assert 0.72 < fundus.mean() < 0.80  # a disc inscribed in the square: pi / 4 = 0.785
    assert fundus[SIZE // 2].mean() > 0.97 and fundus[:, SIZE // 2].mean() > 0.95  # edge to edge
    assert not fundus[:8, :8].any() and not fundus[-8:, -8:].any()  # dark corners, notch cropped away


VARIANTS = {
    "600 px": (cv2.resize(RETINA, (600, 600), interpolation=cv2.INTER_AREA), lambda x: x),
    "3000 px": (cv2.resize(RETINA, (3000, 3000), interpolation=cv2.INTER_CUBIC), lambda x: x),
    "JPEG q50": (jpeg(RETINA, 50), lambda x: x),
    "rotated 90": (
        cv2.rotate(RETINA, cv2.ROTATE_90_CLOCKWISE),
        lambda x: cv2.rotate(x, cv2.ROTATE_90_CLOCKWISE),
    ),
    "flipped": (np.ascontiguousarray(RETINA[:, ::-1]), lambda x: x[:, ::-1]),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_ordinary_variants_preprocess_to_the_same_picture(name):
    variant, same_view = VARIANTS[name]
    reference = same_view(preprocess_fundus(RETINA, SIZE)).astype(float)
    got = preprocess_fundus(variant, SIZE).astype(float)
    assert np.abs(got - reference).mean() < 4.0, name  # grey levels out of 255


def test_training_and_deploy_preprocessing_agree(tmp_path):
    path = tmp_path / "retina.jpg"
    write_rgb(path, RETINA)
    sample = FundusDataset([Record(path, UNKNOWN, "", "x")], SIZE, EvalTransform(), quality=QualityLimits())[
        0
    ]
    mean, std = (np.asarray(c, np.float32) * 255 for c in (CLIP_MEAN, CLIP_STD))  # as export's metadata
    deployed, error, features, _ = prepared(path, SIZE, mean, std)  # what the ONNX runner feeds its model
    assert error == "" and np.abs(sample["image"].numpy() - deployed).max() < 1e-4
    assert sample["quality"].tolist() == pytest.approx(features)
    fraction, brightness, focus = features[:3]
    assert 0.6 < fraction < 0.9 and brightness > 40 and focus > 0
    # the large JPEG is decoded at reduced scale: the same picture as a full decode, within a few grey levels
    full = normalised(read_rgb(path), SIZE, mean, std)
    assert np.abs((deployed - full) * std[:, None, None]).mean() < 1.5


def test_synthetic_images_are_measured_against_the_real_photograph():
    real = fundus_statistics(RETINA)
    synthetic = mean_statistics([render_fundus(0, 512, np.random.default_rng(i))[0] for i in range(4)])
    assert set(real) == set(STATISTICS)
    # loose bounds: the generator stays in the real photograph's neighbourhood on every statistic
    for name in ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "texture"):
        assert 0.6 < synthetic[name] / real[name] < 1.6, (name, synthetic[name], real[name])
    assert abs(synthetic["falloff"] - real["falloff"]) < 0.1
    assert 0.5 < synthetic["vessel_density"] / real["vessel_density"] < 2.0
    assert synthetic["fundus_fraction"] > 0.5


def test_predict_deploy_web_page_and_explain_agree_on_the_real_photograph(
    synthetic, zero_shot_checkpoint, tmp_path
):
    # a model fitted on synthetic photographs finds a real one unlike them all: its check is off here
    zero_shot_checkpoint = with_typicality_cut(
        zero_shot_checkpoint, tmp_path / "rule_gate_only.ckpt", float("inf")
    )
    folder = tmp_path / "real"
    write_rgb(folder / "retina.jpg", RETINA)
    write_rgb(folder / "retina_600.png", VARIANTS["600 px"][0])
    ckpt = ["--ckpt_path", str(zero_shot_checkpoint)]
    predicted = predict_folder("zero_shot", synthetic, tmp_path / "runs", zero_shot_checkpoint, folder)
    assert all(
        r["grade"] != "" and r["error"] == "" and float(r["fundus_fraction"]) > 0.6
        for r in predicted.values()
    )

    main(
        [
            *cli_args("export", "zero_shot", synthetic, tmp_path / "runs", *ckpt),
            "--out",
            str(tmp_path / "zs.onnx"),
        ]
    )
    deploy_main(
        [str(tmp_path / "zs.onnx"), str(folder), "--out", str(tmp_path / "deployed.csv"), "--workers", "0"]
    )
    deployed = {
        r["file"].rsplit("/", 1)[-1]: r
        for r in csv.DictReader((tmp_path / "deployed.csv").read_text().splitlines())
    }
    # INT8: probabilities within its quantisation error; the grade wherever the float margin exceeds it
    calibration = sorted((synthetic / "aptos2019" / "train_images").iterdir())[:8]
    with warnings.catch_warnings():  # the tiny test network may gain no speed: kept anyway
        warnings.filterwarnings("ignore", message=".*kept as asked")
        int8 = quantize_onnx(tmp_path / "zs.onnx", calibration, "synthetic images", keep_slower=True)
    deploy_main([str(int8), str(folder), "--out", str(tmp_path / "int8.csv"), "--workers", "0"])
    quantised = {
        r["file"].rsplit("/", 1)[-1]: r
        for r in csv.DictReader((tmp_path / "int8.csv").read_text().splitlines())
    }
    for name, row in deployed.items():
        float_p = np.array([float(row[c]) for c in PROB_COLUMNS])
        int8_p = np.array([float(quantised[name][c]) for c in PROB_COLUMNS])
        error = np.abs(int8_p - float_p).max()
        assert error < 0.05
        top = np.sort(float_p)
        if top[-1] - top[-2] > 2 * error:
            assert quantised[name]["grade"] == row["grade"]
    task = load_task(zero_shot_checkpoint).eval()
    page = {a.row.file.rsplit("/", 1)[-1]: a.row for a in screen_files(task, sorted(folder.iterdir()), 96)}
    for name, row in predicted.items():
        assert deployed[name]["grade"] == row["grade"] == str(page[name].decision.grade)
        for i, column in enumerate(PROB_COLUMNS):
            assert float(deployed[name][column]) == pytest.approx(float(row[column]), abs=1e-4)
            assert page[name].decision.probabilities[i] == pytest.approx(float(row[column]), abs=1e-4)

    shutil.rmtree(tmp_path / "runs")
    out = tmp_path / "explain"
    main(
        [
            *cli_args(
                "explain", "zero_shot", synthetic, tmp_path / "runs", *ckpt, "--data.predict_dir", str(folder)
            ),
            "--out",
            str(out),
        ]
    )
    overlays = sorted((out / "Zero-shot" / "overlays").glob("*retina*.png"))
    assert len(overlays) == 2 and read_rgb(overlays[0]).std() > 10
