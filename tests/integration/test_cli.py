"""End to end through ``drgrade.cli.main``: what users run is what is tested."""

import csv
import json
import math
import shutil
import struct
import time
import warnings

import pytest
import torch

from drgrade import __version__
from drgrade.cli import main
from drgrade.commands.lightning import DRGradeCLI
from drgrade.console import quiet_console
from tests.conftest import cli_args, predict_folder
from tests.integration.test_exams import check_exams_and_patient_level
from tests.integration.test_val_predictions import check_reproduced
from tests.unit.tasks.test_dme import check_dme_outputs
from tests.unit.tasks.test_dme_every_model import check_predict_dme


def latest_run(root):
    return max(root.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def read_metrics(run):
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["fit", "--help"], ["explain", "--help"], ["serve", "--help"]]
)
def test_help_and_version(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    if args == ["--help"]:
        assert all(
            verb in out for verb in ("fit", "predict", "synth", "reproduce", "explain", "export", "serve")
        )
    if args == ["--version"]:
        assert __version__ in out


def test_synth_command(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path), "--num_aptos", "10", "--num_messidor", "8", "--image_size", "64"])
    assert len(list((tmp_path / "aptos2019" / "train_images").iterdir())) == 10
    assert "wrote" in capsys.readouterr().out


def test_zero_shot_test_writes_evaluation_files(synthetic, zero_shot_checkpoint, tmp_path):
    main(cli_args("test", "zero_shot", synthetic, tmp_path, "--ckpt_path", str(zero_shot_checkpoint)))
    run = latest_run(tmp_path)
    for name in ("metrics.json", "predictions.csv", "confusion_matrix.png", "roc_curves.png", "split.csv"):
        assert (run / name).stat().st_size > 0, name
    document = read_metrics(run)
    assert document["model"] == "ZeroShotCLIP" and document["template_set"] in document["template_scores"]
    rows = list(csv.DictReader((run / "predictions.csv").read_text().splitlines()))
    assert len(rows) == document["metrics"]["num_images"]
    assert (
        abs(sum(float(rows[0][f"p_{g}"]) for g in ("no", "mild", "moderate", "severe", "proliferative")) - 1)
        < 1e-4
    )
    check_clinical_sections(document, rows, zero_shot_checkpoint)
    for name in ("reliability_diagram.png", "referral_curves.png"):
        assert (run / name).stat().st_size > 0, name
    check_predictions_reproduce_metrics(run, document)
    check_exams_and_patient_level(run)


def check_predictions_reproduce_metrics(run, document: dict) -> None:
    """predictions.csv holds the very numbers metrics.json came from (a random zero-shot model's
    probabilities differ in the fifth decimal: 6 decimals once tied them and moved AUROCs by 0.006)."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, roc_auc_score

    from drgrade.grades import GRADES
    from drgrade.predictions import read_predictions

    saved = read_predictions(run / "predictions.csv")
    metrics = document["metrics"]
    for grade in GRADES:
        positive = saved.targets == grade.index
        if positive.any() and not positive.all():
            expected = roc_auc_score(positive, saved.probabilities[:, grade.index])
            assert metrics[f"auroc_{grade.short}"] == pytest.approx(expected, abs=1e-6), grade.name
    assert metrics["accuracy"] == pytest.approx(accuracy_score(saved.targets, saved.grades), abs=1e-6)
    kappa = cohen_kappa_score(saved.targets, saved.grades, weights="quadratic")
    assert metrics["qwk"] == pytest.approx(kappa, abs=1e-6)


def check_clinical_sections(document: dict, rows: list[dict], checkpoint, min_clear: float = 0.0) -> None:
    """metrics.json's clinical entries are complete, and predictions use the checkpoint's cuts."""
    metrics, intervals = document["metrics"], document["confidence_intervals"]
    assert set(intervals) == set(metrics) - {"num_images", "macro_precision_grades", "macro_recall_grades"}
    low, high = intervals["accuracy"]
    assert low <= metrics["accuracy"] <= high
    setting = document["bootstrap"]
    assert (setting["resamples"], setting["seed"], setting["level"]) == (2000, 0, 0.95)
    # APTOS names no patients (each image is drawn alone); Messidor-2 exams are drawn whole
    assert setting["unit"] == "patient or image (per source)"
    units = setting["units"]
    assert units["aptos2019"]["unit"] == "image" and units["messidor2"]["unit"] == "patient"
    assert units["messidor2"]["draws"] < units["messidor2"]["images"]
    assert sum(u["images"] for u in units.values()) == metrics["num_images"]
    assert "aptos2019: images" in document["per_patient"]["unit"]
    assert {"aptos2019", "messidor2"} == set(document["per_source"])
    sizes = [part["metrics"]["num_images"] for part in document["per_source"].values()]
    assert sum(sizes) == metrics["num_images"]
    assert document["per_patient"]["num_patients"] < metrics["num_images"]  # Messidor-2 exams pair eyes
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    cuts = state["rule.operating_cuts"].tolist()
    point = document["operating_points"][0]
    assert point["name"] == "referable@sensitivity0.90" and point["threshold"] == pytest.approx(cuts[0])
    assert document["calibration_error"]["temperature"] == pytest.approx(float(state["rule.temperature"]))
    # the file keeps float32 precision: compare the flags where rounding cannot decide them
    clear = [r for r in rows if abs(float(r["p_referable"]) - cuts[0]) > 1e-7]
    assert len(clear) >= min_clear * len(rows)  # a trained model's scores are not all at the cut
    by_score = [int(r["referable_by_score"]) for r in clear]
    assert [int(float(r["p_referable"]) >= cuts[0]) for r in clear] == by_score
    assert all(int(r["referable_by_grade"]) == int(int(r["grade"]) >= 2) for r in rows)
    positives = [r for r in rows if int(r["true_grade"]) >= 2]
    flagged = sum(int(r["referable_by_score"]) for r in positives)
    assert point["sensitivity"] == pytest.approx(flagged / len(positives))
    cutoff = float(state["rule.uncertainty_cutoff"])
    clear = [r for r in rows if abs(float(r["uncertainty"]) - cutoff) > 1e-7]
    assert len(clear) >= min_clear * len(rows)
    assert [int(float(r["uncertainty"]) > cutoff) for r in clear] == [
        int(r["refer_to_grader"]) for r in clear
    ]
    curve = document["referral"]["entropy"]["accuracy"]
    assert curve[0] == pytest.approx(metrics["accuracy"])


def test_zero_shot_choice_is_made_once_by_fit_and_reused(synthetic, zero_shot_checkpoint, tmp_path, capsys):
    checkpoint = torch.load(zero_shot_checkpoint, weights_only=True)
    chosen = int(checkpoint["state_dict"]["selected"])
    assert chosen >= 0 and checkpoint["drgrade_split"]["images"] > 0
    for verb in ("test", "predict"):  # without the fitted checkpoint there is no choice to use
        with pytest.raises(SystemExit) as exit_:
            main(cli_args(verb, "zero_shot", synthetic, tmp_path / verb))
        assert exit_.value.code == 2 and "drgrade fit" in capsys.readouterr().err
    main(
        cli_args("predict", "zero_shot", synthetic, tmp_path / "p", "--ckpt_path", str(zero_shot_checkpoint))
    )
    assert "template set" not in capsys.readouterr().err
    check_predict_dme(tmp_path / "p", synthetic, zero_shot_checkpoint)


def test_bad_data_stops_before_training_with_the_file_named(synthetic, tmp_path, capsys):
    broken = shutil.copytree(synthetic / "aptos2019", tmp_path / "aptos2019")
    (broken / "train.csv").write_text("id_code,grade\nabc,1\n")
    args = cli_args("fit", "fcn_clip", synthetic, tmp_path / "runs")
    args[args.index("--data.roots.aptos2019") + 1] = str(broken)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "train.csv: missing column(s) diagnosis" in capsys.readouterr().err


def test_fcn_clip_fit_test_predict_learns(synthetic, tmp_path, capsys):
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path, "--trainer.max_epochs", "8"))
    fit_run = latest_run(tmp_path)
    # the typicality check is refitted each epoch: a logged curve, not eight console lines
    assert "typicality check" not in capsys.readouterr().out
    logged = list(csv.DictReader((fit_run / "metrics.csv").read_text().splitlines()))
    assert sum(bool(row.get("val/typicality_cut")) for row in logged) == 8
    best = next((fit_run / "checkpoints").glob("best-*.ckpt"))
    assert (fit_run / "checkpoints" / "last.ckpt").is_file()
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    # validation's pass with the DME head also fitted the typicality check on the pooled features
    assert math.isfinite(float(state["typicality.cut"])) and state["typicality.precision"].ndim == 2
    main(cli_args("test", "fcn_clip", synthetic, tmp_path, "--ckpt_path", str(best)))
    test_run = latest_run(tmp_path)
    evaluated = list(csv.DictReader((test_run / "predictions.csv").read_text().splitlines()))
    check_clinical_sections(read_metrics(test_run), evaluated, best, min_clear=0.8)
    check_dme_outputs(test_run)
    metrics = read_metrics(test_run)["metrics"]
    # chance QWK is 0; an untrained model predicts one grade (accuracy = that grade's share)
    assert metrics["qwk"] > 0.35, metrics  # observed 0.53-0.64 over runs
    assert metrics["auroc_macro"] > 0.7, metrics  # observed 0.79-0.84

    images = tmp_path / "to_grade"
    images.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]:
        shutil.copy(path, images / path.name)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows = predict_folder("fcn_clip", synthetic, tmp_path, best, images)
    assert len(rows) == 4
    corrupt = rows["corrupt.jpg"]
    assert "not a decodable image" in corrupt["error"] and corrupt["grade"] == ""
    graded = [r for r in rows.values() if not r["error"]]
    assert all(r["grade_name"] and r["referable_by_score"] in ("0", "1") for r in graded)
    # the DME head's output reaches the archive writer's rows, and its actions and exams.csv
    assert all(0 <= float(r["p_dme"]) <= 1 and r["vtdr"] in ("0", "1") for r in graded)
    assert all(r["action"] in ("refer", "no refer", "to grader") for r in rows.values())
    # a second run is merged from the shards alone: P(DME) and every decision survive the round trip
    again = predict_folder("fcn_clip", synthetic, tmp_path, best, images)
    assert again == rows and (latest_run(tmp_path) / "exams.csv").is_file()


def test_ranking_fit_calibrates_and_test_reports_both(synthetic, tmp_path):
    youden = ("--model.init_args.threshold_objective", "youden")  # a fixed objective: always calibrates
    main(cli_args("fit", "ranking", synthetic, tmp_path, "--trainer.max_epochs", "6", *youden))
    fit_run = latest_run(tmp_path)
    best = next((fit_run / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    assert bool(state["rule.thresholded"]) and not torch.allclose(
        state["rule.thresholds"], torch.full((5,), 0.2)
    )
    check_reproduced(best, "youden")  # val_predictions.csv beside it reproduces every cut and threshold
    main(cli_args("test", "ranking", synthetic, tmp_path, "--ckpt_path", str(best), *youden))
    document = read_metrics(latest_run(tmp_path))
    assert document["decision"] == "thresholded"
    assert document["thresholds"] == pytest.approx(state["rule.thresholds"].tolist())
    assert "argmax_metrics" in document
    assert document["threshold_choice"]["setting"] == "youden"
    # observed: calibrated QWK 0.40-0.75, macro AUROC 0.63-0.76 (chance: 0 and 0.5)
    assert document["metrics"]["qwk"] > 0.2, document
    assert document["metrics"]["auroc_macro"] > 0.58, document


def test_fit_resumes_from_last_and_validate_calibrates_any_model(synthetic, tmp_path, capsys):
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path, "--trainer.max_epochs", "1"))
    first = latest_run(tmp_path)
    main(cli_args("fit", "fcn_clip", synthetic, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last"))
    assert f"using {first / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    resumed = latest_run(tmp_path)
    rows = list(csv.DictReader((resumed / "metrics.csv").read_text().splitlines()))
    assert rows[-1]["epoch"] == "1"  # carried on at epoch 1 rather than starting again at 0
    assert {row["epoch"] for row in rows} == {"0", "1"}  # one curve: the resumed run's epoch 0 first
    steps = [int(row["step"]) for row in rows]
    assert steps == sorted(steps)

    main(
        cli_args(
            "validate",
            "fcn_clip",
            synthetic,
            tmp_path,
            "--ckpt_path",
            "best",
            "--model.init_args.threshold_objective",
            "f1",
            "--model.init_args.fit_rule_on_validate",
            "true",
        )
    )
    document = read_metrics(latest_run(tmp_path))
    assert document["stage"] == "val" and document["decision"] == "thresholded"
    assert len(document["thresholds"]) == 5


def test_missing_checkpoint_is_explained(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(cli_args("test", "fcn_clip", synthetic, tmp_path, "--ckpt_path", "best"))
    assert exit_.value.code == 2 and "no best checkpoint" in capsys.readouterr().err


def parse_wandb_file(raw: bytes) -> tuple[list, bool]:
    """The protobuf records of an offline W&B run file (a LevelDB-style log of 32 KiB blocks).

    Returns the records and whether the run's final ``exit`` record is among them; a record cut
    off at the end of the file (still being written) ends the parse.
    """
    from wandb.proto import wandb_internal_pb2

    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(raw):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            position += left
            continue
        if position + 7 + length > len(raw):
            break
        data = raw[position + 7 : position + 7 + length]
        position += 7 + length
        pending = data if kind in (1, 2) else pending + data
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records, any(r.WhichOneof("record_type") == "exit" for r in records)


def wandb_records(path, timeout: float = 30.0) -> list:
    """The records of an offline run file once W&B's background writer has written its ``exit``.

    ``run.finish()`` can return while wandb-core is still flushing the file, so reading waits for
    the run's last record rather than racing the writer.
    """
    deadline = time.monotonic() + timeout
    while True:
        records, complete = parse_wandb_file(path.read_bytes())
        if complete or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_wandb_offline_run_is_named_grouped_configured_and_has_native_charts(
    synthetic, tmp_path, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = cli_args("validate", "zero_shot", synthetic, tmp_path / "zero_shot")
    args += ["--trainer.logger+=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline", "true"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_console()
        DRGradeCLI(args, wandb_group="protocol-1")
    captured = capsys.readouterr()
    console = captured.err + caplog.text + "".join(str(w.message) for w in caught)
    for noise in ("anonymous setting", "Tip:", "LeafSpec", "No pretrained weights", "in eval mode"):
        assert noise not in console
    assert (latest_run(tmp_path / "zero_shot") / "metrics.json").is_file()
    runs = list((tmp_path / "zero_shot" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1  # under the run directory, like every other output
    records = wandb_records(runs[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.display_name, run.run_group, run.job_type) == (
        "zero_shot-validate-v0",
        "protocol-1",
        "validate",
    )
    assert {"zero_shot", "validate", "aptos2019", "messidor2", "RN-tiny"} <= set(run.tags)
    folder = latest_run(tmp_path / "zero_shot")
    linked = (folder / "wandb.txt").read_text()  # the run folder names its W&B run, with the sync line
    assert run.run_id in linked and "wandb sync " in linked and "upload it with: wandb sync" in captured.out
    updates = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    config = {item.key: json.loads(item.value_json) for update in updates for item in update.update}
    assert config["subcommand"] == "validate" and config["model"]["class_path"].endswith("ZeroShotCLIP")
    assert config["run_dir"] == str(folder.resolve())  # and the W&B run names its folder
    logged = {
        item.key or item.nested_key[0]
        for r in records
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    for key in (
        "val/confusion_matrix_chart_table",
        "val/roc_chart_table",
        "val/per_class",
        "val/reliability_diagram",
    ):
        assert key in logged, sorted(logged)
    tables = {p.name.split("_1_")[0] for p in runs[0].parent.glob("files/media/table/val/*.table.json")}
    assert {"confusion_matrix_chart_table", "roc_chart_table", "per_class", "operating_points"} <= tables

    # a training run charts every validation epoch in its own W&B run
    fit = cli_args("fit", "fcn_clip", synthetic, tmp_path / "fcn_clip", "--trainer.max_epochs", "1")
    wandb = ["--trainer.logger+=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline", "true"]
    main([*fit, *wandb, "--trainer.callbacks+=drgrade.callbacks.CheckpointArtifact"])  # artifact: opt-in
    (fit_run,) = (tmp_path / "fcn_clip" / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(fit_run)
    assert (
        next(r.run for r in records if r.WhichOneof("record_type") == "run").display_name == "fcn_clip-fit-v0"
    )
    logged = {
        i.key or i.nested_key[0]
        for r in records
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    assert {"val/confusion_matrix_chart_table", "val/roc_chart_table", "train/loss_epoch"} <= logged
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert any(a.type == "model" for a in artifacts), [(a.type, a.name) for a in artifacts]


def test_bf16_autocast_and_channels_last_fit_on_cpu(synthetic, tmp_path):
    main(
        cli_args(
            "fit",
            "fcn_clip",
            synthetic,
            tmp_path,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.callbacks+=drgrade.callbacks.ChannelsLast",
        )
    )
    checkpoint = torch.load(next(latest_run(tmp_path).glob("checkpoints/last.ckpt")), weights_only=False)
    weight = checkpoint["state_dict"]["head.decoder.0.weight"]
    assert weight.dtype == torch.float32 and torch.isfinite(weight).all()  # bf16 compute, fp32 weights
    assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "bad,answer",
    [
        (
            "--data.root.aptos2019=x",
            "unknown option --data.root.aptos2019; did you mean --data.roots.aptos2019?",
        ),
        (
            "--model.init_args.gama=3",
            "unknown option --model.init_args.gama; did you mean --model.init_args.gamma",
        ),
        ("--data.batchsize=3", "unknown option --data.batchsize; did you mean --data.batch_size?"),
        ("--trainer.max_epoch=2", "unknown option --trainer.max_epoch; did you mean --trainer.max_epochs?"),
    ],
)
def test_a_misspelt_option_is_answered_with_the_closest_names_in_two_lines(
    synthetic, tmp_path, capsys, bad, answer
):
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args("fit", "fcn_clip", synthetic, tmp_path), bad])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and answer in err and len(err.strip().splitlines()) <= 2, err
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing ran, no run folder


def test_predict_out_is_a_parsed_option_and_the_other_verbs_refuse_it(synthetic, tmp_path, capsys):
    """``--out`` is in predict's parser (so in its help), not picked out of the command line."""
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--help"])
    assert exit_.value.code == 0 and "--out OUT" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--help"])
    assert "--out" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args("test", "zero_shot", synthetic, tmp_path / "runs"), "--out", str(tmp_path / "x.csv")])
    assert exit_.value.code == 2 and "unknown option --out" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x.csv").exists()


def test_a_misspelt_key_in_a_config_file_names_the_file_and_the_closest_option(synthetic, tmp_path, capsys):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("data:\n  batchsize: 3\n")
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args("fit", "fcn_clip", synthetic, tmp_path / "runs"), "--config", str(overlay)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"unknown option --data.batchsize (set in {overlay}); did you mean --data.batch_size?" in err
