import csv
import json

import pytest
import torch
import yaml

from drgrade.callbacks.evaluation import metrics_document
from drgrade.cli import main
from drgrade.decision.outputs import RuleOutput
from drgrade.evaluation.metrics import SplitResult, compute_metrics
from tests.conftest import ROOT

NAMES = {"FCNCLIP": "FCN-CLIP", "RankingCLIP": "Ranking"}


def fake_run(directory, model, preds, targets, stage="test", argmax=None, split=None):
    probs = torch.eye(5)[preds] * 0.8 + 0.04
    evaluation = compute_metrics(probs, targets, preds)
    argmax_evaluation = None if argmax is None else compute_metrics(probs, targets, argmax)
    outputs = RuleOutput(probs, preds, *[None] * 5)
    index = torch.arange(len(targets))
    result = SplitResult(
        stage, probs.log(), outputs, None, targets, index, index, evaluation, argmax_evaluation
    )
    directory.mkdir(parents=True)
    identity = {"split": split or {"fingerprint": "internal", "test_sources": None}}
    document = metrics_document(result, model, None, NAMES[model], identity)
    (directory / "metrics.json").write_text(json.dumps(document))
    return directory


def test_report_tables_from_known_evaluations(tmp_path, capsys):
    targets = torch.tensor([0, 0, 0, 0, 1, 2, 2, 3, 4, 4])
    perfect = fake_run(tmp_path / "a", "FCNCLIP", targets.clone(), targets)
    shifted = fake_run(tmp_path / "b", "RankingCLIP", torch.tensor([0, 0, 0, 1, 1, 2, 4, 3, 4, 2]), targets)
    main(["report", str(perfect), str(shifted), "--out", str(tmp_path / "out"), "--paper"])
    table3 = {
        row[0]: row[1:] for row in csv.reader((tmp_path / "out" / "table3.csv").read_text().splitlines())
    }
    assert table3["Metric"] == [
        "FCN-CLIP [test, argmax]",
        "Ranking [test, argmax]",
        "FCN-CLIP (paper)",
        "Ranking (paper)",
    ]
    assert table3["Accuracy"] == ["1.000", "0.700", "0.925", "0.934"]
    assert table3["No DR recall"][:2] == ["1.000", "0.750"]  # 3 of 4 No DR kept
    assert table3["Mild precision"][1] == "0.500"  # predicted Mild twice, right once
    table4 = {
        row[0]: row[1:] for row in csv.reader((tmp_path / "out" / "table4.csv").read_text().splitlines())
    }
    assert table4["Ranking [test, argmax]"] == ["70.0%", "10.0%", "20.0%"]  # errors: 0->1 (1), 2->4, 4->2 (2)
    assert table4["FCN-CLIP (paper)"] == ["75%", "22%", "3%"]
    assert (tmp_path / "out" / "confusion_matrices.png").stat().st_size > 0
    assert "| Accuracy | 1.000 | 0.700 |" in capsys.readouterr().out


def test_report_labels_stage_and_decision_and_refuses_mixed_stages(tmp_path, capsys):
    targets = torch.tensor([0, 0, 1, 2, 3, 4])
    thresholded = fake_run(
        tmp_path / "c", "RankingCLIP", targets.clone(), targets, argmax=torch.zeros(6).long()
    )
    validation = fake_run(tmp_path / "v", "FCNCLIP", targets.clone(), targets, stage="val")
    main(["report", str(thresholded), "--out", str(tmp_path / "out")])
    table3 = {
        row[0]: row[1:] for row in csv.reader((tmp_path / "out" / "table3.csv").read_text().splitlines())
    }
    assert table3["Metric"] == ["Ranking [test, thresholded]", "Ranking [test, argmax]"]
    assert table3["Accuracy"] == ["1.000", "0.333"]  # both rules shown, each labelled
    assert table3["Mild precision"] == ["1.000", "-"]  # argmax never decides Mild: undefined, not 0.000
    assert table3["Mild recall"] == ["1.000", "0.000"]  # a measured zero stays a zero
    assert "`-`: undefined" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(thresholded), str(validation), "--out", str(tmp_path / "mixed")])
    assert exit_.value.code == 2 and "differ in stages" in capsys.readouterr().err
    main(["report", str(thresholded), str(validation), "--out", str(tmp_path / "m"), "--allow_mixed"])
    header = next(csv.reader((tmp_path / "m" / "table3.csv").read_text().splitlines()))
    assert "FCN-CLIP [val, argmax]" in header and "validation and test" in capsys.readouterr().out


def test_report_refuses_an_external_test_beside_an_internal_one_and_labels_it(tmp_path, capsys):
    targets = torch.tensor([0, 0, 1, 2, 3, 4])
    internal = fake_run(tmp_path / "i", "FCNCLIP", targets.clone(), targets)
    held_out = {"fingerprint": "external", "test_sources": ["messidor2"]}
    external = fake_run(tmp_path / "e", "RankingCLIP", targets.clone(), targets, split=held_out)
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(internal), str(external), "--out", str(tmp_path / "x")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "differ in splits" in error and "stages" not in error.split("\n")[0]
    main(["report", str(internal), str(external), "--out", str(tmp_path / "both"), "--allow_mixed"])
    header = next(csv.reader((tmp_path / "both" / "table3.csv").read_text().splitlines()))
    assert header[1:] == ["FCN-CLIP [test, argmax]", "Ranking [external test: messidor2, argmax]"]


def test_report_names_the_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "no_run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(tmp_path / "no_run") in err


def test_reproduce_without_data_says_where_to_download(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "aptos2019-blindness-detection" in err and "messidor_data.csv" in err
    assert all(name in err for name in ("trainLabels.csv", "B. Disease Grading", "DR_grading"))


def test_reproduce_refuses_a_misspelt_handed_on_option_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--demo", "--trainer.max_epoch", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "did you mean --trainer.max_epochs" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "--demo", "--model.init_args.decoder_width", "[8]"])
    assert "did you mean --model.init_args.decoder_widths" in capsys.readouterr().err


def test_reproduce_finds_every_downloaded_source(tmp_path):
    from drgrade.commands.reproduce import real_data_options

    (tmp_path / "eyepacs").mkdir()
    (tmp_path / "eyepacs" / "trainLabels.csv").write_text("image,level\n")
    (tmp_path / "ddr" / "DR_grading").mkdir(parents=True)
    args = dict(real_data_options(tmp_path).items)
    assert args["--data.roots.eyepacs"] == str(tmp_path / "eyepacs")
    assert args["--data.roots.ddr"] == str(tmp_path / "ddr")
    assert args["--data.roots.aptos2019"] == args["--data.roots.idrid"] == "null"


def test_protocol_in_miniature(tmp_path, monkeypatch, capsys):
    """The demo shrunk with options handed on to every stage (each model takes the ones it has)."""
    monkeypatch.chdir(tmp_path)
    shrink = [
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps",
        "0",
        "--data.synthetic_counts=[60, 40]",
        "--data.synthetic_size=128",
        "--data.image_size",
        "64",
        "--data.num_workers=0",
        "--data.target_counts=[20, 15, 15, 15, 15]",
        "--model.init_args.decoder_widths=[8, 8, 8]",  # FCN-CLIP's alone
        "--config",
        str(ROOT / "tests" / "conf" / "tiny_train.yaml"),  # training options: not for zero-shot
    ]
    main(["reproduce", "--demo", "--configs", str(ROOT / "configs"), *shrink])
    saved = {
        m: yaml.safe_load(max((tmp_path / "runs" / m).glob("version_*/config.yaml")).read_text())
        for m in ("zero_shot", "fcn_clip", "ranking", "ensemble")
    }
    assert all(c["data"]["image_size"] == 64 and c["trainer"]["max_epochs"] == 1 for c in saved.values())
    assert saved["fcn_clip"]["model"]["init_args"]["decoder_widths"] == [8, 8, 8]
    assert (
        saved["ranking"]["model"]["init_args"]["lr"] == saved["fcn_clip"]["model"]["init_args"]["lr"] == 1e-3
    )
    assert "finetune_image" not in saved["zero_shot"]["model"]["init_args"]
    out = capsys.readouterr().out
    # labels print as literal Markdown: their brackets escaped
    assert "SYNTHETIC" in out and "| Accuracy |" in out and "| Ensemble \\[test, " in out
    table3 = list(csv.reader((tmp_path / "reports" / "demo" / "table3.csv").read_text().splitlines()))
    assert table3[0][:3] == ["Metric", "Zero-shot [test, argmax]", "FCN-CLIP [test, argmax]"]
    assert all(label.endswith(("argmax]", "thresholded]")) for label in table3[0][1:])
    figures = {p.name for p in (tmp_path / "reports" / "demo" / "figures").iterdir()}
    assert {"fcn_clip_curves.png", "ranking_curves.png", "ranking_test_roc.png"} <= figures
    assert "ranking_test_argmax_confusion.png" in figures and "ensemble_test_argmax_confusion.png" in figures
    ranking = json.loads(max((tmp_path / "runs" / "ranking").glob("version_*/metrics.json")).read_text())
    choice = ranking["threshold_choice"]  # auto: which of argmax / youden / f1 / qwk, and why
    fitted = {m: q for m, q in choice["crossfit_qwk"].items() if m != "none"}
    assert choice["setting"] == "auto" and fitted[choice["candidate"]] == max(fitted.values())
    assert choice["objective"] == (choice["candidate"] if choice["kept"] else "none")
    assert ranking["decision"] == ("argmax" if choice["objective"] == "none" else "thresholded")
    ensemble = json.loads(max((tmp_path / "runs" / "ensemble").glob("version_*/metrics.json")).read_text())
    assert len(ensemble["members"]) == 2 and ensemble["model"] == "EnsembleCLIP"
    check_clinical_report(tmp_path / "reports" / "demo", ranking, ensemble, out)


def check_clinical_report(report, ranking: dict, ensemble: dict, printed: str) -> None:
    """The report's intervals, paired differences, operating points, calibration and figures."""
    table3 = {row[0]: row[1:] for row in csv.reader((report / "table3.csv").read_text().splitlines())}
    low, high = ranking["confidence_intervals"]["accuracy"]
    assert any(cell.endswith(f"({low:.3f}-{high:.3f})") for cell in table3["Accuracy"])
    paired = list(csv.reader((report / "paired.csv").read_text().splitlines()))
    assert len(paired) == 1 + 6  # four models, every pair on the same test images
    row = next(r for r in paired if r[0].startswith("Ranking [") and "Ensemble [" in r[0])
    difference = ranking["metrics"]["accuracy"] - ensemble["metrics"]["accuracy"]
    assert float(row[1].split()[0].lstrip("'")) == pytest.approx(difference, abs=1e-3)  # neutralised "+"
    points = list(csv.reader((report / "operating_points.csv").read_text().splitlines()))
    assert {"image", "patient"} <= {r[2] for r in points[1:]}
    calibration = list(csv.reader((report / "calibration.csv").read_text().splitlines()))
    assert len(calibration) == 1 + 4
    sources = {r[1] for r in csv.reader((report / "per_source.csv").read_text().splitlines())}
    assert {"aptos2019", "messidor2"} <= sources
    for heading in ("Paired differences", "Referral operating points", "Calibration", "Per data source"):
        assert heading in printed
    figures = {p.name for p in (report / "figures").iterdir()}
    for model in ("zero_shot", "fcn_clip", "ranking", "ensemble"):
        assert f"{model}_test_reliability_diagram.png" in figures, figures
        assert f"{model}_test_referral_curves.png" in figures


def test_figures_say_what_they_show(tmp_path):
    import matplotlib.pyplot as plt

    from drgrade.reporting.plots import SHARE_LABEL, confusion_figure, curves_figure, referral_figure

    figure = confusion_figure(torch.eye(5, dtype=torch.long) * 3, "FCN-CLIP, test: argmax")
    assert len(figure.axes) == 2 and figure.axes[1].get_ylabel() == SHARE_LABEL  # a colour bar, labelled
    assert figure.axes[0].get_title().startswith("FCN-CLIP, test")
    keys = ("accuracy", "qwk", "referable_sensitivity", "referable_specificity")
    flat = {key: [0.30, 0.31, 0.33] for key in keys}
    figure = referral_figure({"fractions": [0, 0.1, 0.2], "entropy": flat, "max_probability": flat}, "r")
    assert all(ax.get_ylim()[1] >= 1 and ax.get_ylim()[0] <= 0 for ax in figure.axes)  # not 0.30-0.33
    figure = curves_figure({"train/loss_epoch": {0: 1.0, 1: 0.6, 2: 0.5}, "val/loss": {0: 1.1, 1: 0.7}}, "c")
    figure.canvas.draw()
    assert all(float(t).is_integer() for t in figure.axes[0].get_xticks())  # whole epochs only
    plt.close("all")
