"""One checkpoint policy for every verb: a checkpoint knows its architecture.

After a quick pass at 64 px with the tiny backbone, the README's own ``predict``, ``export`` +
``deploy`` and ``serve`` lines (the shipped model config, nothing repeated) rebuild the model the
checkpoint recorded; an option that contradicts the checkpoint is refused before anything runs.
"""

import csv
import io
import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from drgrade.cli import main
from drgrade.predictions import COLUMNS, csv_text
from drgrade.serving.runner import main as deploy_main
from tests.conftest import ROOT, cli_args

FCN = str(ROOT / "configs" / "fcn_clip.yaml")


def readme_line(verb: str, root, *extra: str) -> list[str]:
    """A README command line: the shipped config, the run root, nothing about the model repeated."""
    return [verb, "--config", FCN, "--trainer.default_root_dir", str(root), "--ckpt_path", "best", *extra]


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_same_rows(ours: list[dict], theirs: list[dict]) -> None:
    """Every column equal: numbers to 1e-6, text exactly."""
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        for column in COLUMNS:
            try:
                assert abs(float(a[column]) - float(b[column])) <= 1e-6, (column, a, b)
            except ValueError:
                assert a[column] == b[column], (column, a, b)


def test_readme_lines_after_a_64px_quick_pass_need_no_option_repeated(synthetic, tmp_path, capsys):
    runs = tmp_path / "runs"
    quick = (
        "--data.image_size",
        "64",
        "--trainer.max_epochs",
        "1",
        "--model.init_args.bootstrap_resamples",
        "0",
    )
    main(cli_args("fit", "fcn_clip", synthetic, runs, *quick))
    best = str(next(runs.rglob("best-*.ckpt")))
    said = capsys.readouterr().out  # every stage ends by saying where it wrote and what to use next
    assert f"drgrade fit: run folder {runs / 'version_0'}\ncheckpoint to use next: {best}" in said
    images = tmp_path / "my_images"
    images.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:4]:
        shutil.copy(path, images / path.name)

    # the README's predict line: configs/fcn_clip.yaml says RN50 at 224 px; the checkpoint says RN-tiny at 64
    main(
        readme_line("predict", runs, "--data.predict_dir", str(images), "--out", str(tmp_path / "graded.csv"))
    )
    predicted = rows_of((tmp_path / "graded.csv").read_text())
    assert f"drgrade predict: run folder {runs / 'version_1'}" in capsys.readouterr().out
    assert len(predicted) == 4 and all(r["grade"] for r in predicted)
    saved = next(
        p
        for p in runs.rglob("config.yaml")
        if "predict_dir" in p.read_text() and "my_images" in p.read_text()
    )
    assert "image_size: 64" in saved.read_text() and "backbone: RN-tiny" in saved.read_text()

    # export traces at the checkpoint's 64 px, not the config's 224
    main(readme_line("export", runs, "--out", str(tmp_path / "model.onnx")))
    graph = onnx.load(str(tmp_path / "model.onnx"))
    assert {p.key: p.value for p in graph.metadata_props}["image_size"] == "64"
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim][2:] == [64, 64]
    deploy_main([str(tmp_path / "model.onnx"), str(images), "--out", str(tmp_path / "deployed.csv")])
    deployed = rows_of((tmp_path / "deployed.csv").read_text())
    assert_same_rows(deployed, predicted)  # P(DME) and the DME flag included: the graph has them
    assert all(r["p_dme"] != "" for r in deployed)

    # serve's grader: the checkpoint alone, or its ONNX file, with the same DME cut on the page
    from drgrade.commands.serve import grader_of

    grade, card = grader_of(SimpleNamespace(ckpt_path=best, onnx=None))
    served = rows_of(csv_text([answer.row for answer in grade(sorted(images.iterdir()))]))
    assert_same_rows(served, predicted)
    _, onnx_card = grader_of(SimpleNamespace(ckpt_path=None, onnx=tmp_path / "model.onnx"))
    assert onnx_card.dme_cut == pytest.approx(card.dme_cut) and card.dme_cut is not None


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            ("--model.init_args.backbone", "RN50"),
            "--model.init_args.backbone RN50 contradicts {ckpt}, which was trained with backbone RN-tiny; "
            "drop --model.init_args.backbone",
        ),
        (
            ("--data.image_size", "128"),
            "--data.image_size 128 contradicts {ckpt}, which was trained with image_size 96",
        ),
        (
            ("--model", "FCNCLIP"),
            "{ckpt} is a ZeroShotCLIP checkpoint, but the model given is FCNCLIP; drop --model",
        ),
    ],
)
def test_an_option_contradicting_the_checkpoint_is_refused_before_anything_runs(
    synthetic, zero_shot_checkpoint, tmp_path, capsys, extra, said
):
    args = cli_args(
        "test", "zero_shot", synthetic, tmp_path, "--ckpt_path", str(zero_shot_checkpoint), *extra
    )
    with pytest.raises(SystemExit) as stop:
        main(args)
    error = capsys.readouterr().err
    assert stop.value.code == 2 and said.format(ckpt=zero_shot_checkpoint) in error
    assert len(error.strip().splitlines()) <= 2
    assert not list(tmp_path.glob("version_*"))  # nothing ran


def test_a_checkpoint_under_another_models_config_names_the_config_to_use(
    synthetic, zero_shot_checkpoint, tmp_path, capsys
):
    with pytest.raises(SystemExit) as stop:
        main(cli_args("predict", "fcn_clip", synthetic, tmp_path, "--ckpt_path", str(zero_shot_checkpoint)))
    error = capsys.readouterr().err
    assert stop.value.code == 2
    assert (
        "is a ZeroShotCLIP checkpoint, but the model given is FCNCLIP; use --config configs/zero_shot.yaml"
        in error
    )


def test_testing_a_trainable_model_without_a_checkpoint_is_refused_unless_asked(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(cli_args("test", "fcn_clip", synthetic, tmp_path))
    error = capsys.readouterr().err
    assert (
        stop.value.code == 2
        and "drgrade test of FCNCLIP needs a trained checkpoint: pass --ckpt_path best" in error
    )
    assert not list(tmp_path.glob("version_*"))

    main(
        cli_args(
            "test",
            "fcn_clip",
            synthetic,
            tmp_path,
            "--allow_untrained",
            "--model.init_args.bootstrap_resamples",
            "0",
        )
    )
    run = next(tmp_path.glob("version_*"))
    said = capsys.readouterr().out
    assert f"drgrade test: run folder {run}\naccuracy " in said  # figures to 3 decimals, no float32 noise
    assert f"tables and figures beside other runs: drgrade report {run} ... --out reports/NAME" in said
    assert re.search(r"accuracy \d\.\d{3}  qwk ", said) and not re.search(r"\d\.\d{7}", said)
    document = json.loads((run / "metrics.json").read_text())
    assert document["untrained_baseline"] is True and document["provenance"]["untrained_baseline"] is True
    rows = rows_of((run / "predictions.csv").read_text())
    assert {r["checkpoint"] for r in rows} == {"UNTRAINED baseline (--allow_untrained, no checkpoint)"}

    from drgrade.reporting.provenance import training_text

    assert training_text(document["provenance"]).startswith("UNTRAINED baseline")
    assert np.isfinite(document["metrics"]["accuracy"])
