"""reproduce's stage options: checked once, each model taking those it has, no file written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml

from drgrade.commands.lightning import option_names
from drgrade.commands.reproduce import handed_on, model_arguments, reproduce
from drgrade.commands.stage_options import StageOptions, split_command_line
from drgrade.errors import OptionError
from drgrade.protocols.spec import load_protocol
from tests.conftest import ROOT

CONFIGS = ROOT / "configs"


def arguments_for(model: str, options: StageOptions) -> list[str]:
    return model_arguments(CONFIGS / f"{model}.yaml", options)


def test_reproduces_own_options_stay_and_the_stage_options_are_taken_in_order():
    own, handed = split_command_line(
        ["--demo", "--trainer.max_epochs", "2", "--config=a.yaml", "--out", "o", "--data.image_size=96"]
    )
    assert own == ["--demo", "--out", "o"]
    assert handed.items == (
        ("--trainer.max_epochs", "2"),
        ("--config", "a.yaml"),
        ("--data.image_size", "96"),
    )


def test_a_model_option_goes_only_to_the_models_that_take_it():
    options = StageOptions.of([("--model.init_args.decoder_widths", "[8]"), ("--trainer.max_epochs", 1)])
    assert "--model.init_args.decoder_widths" in arguments_for("fcn_clip", options)
    zero_shot = arguments_for("zero_shot", options)
    assert "--model.init_args.decoder_widths" not in zero_shot and "--trainer.max_epochs" in zero_shot


def test_a_config_taken_in_part_is_handed_inline_without_the_rest_and_nothing_is_written(tmp_path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"init_args": {"lr": 0.01, "bootstrap_resamples": 5}}}))
    options = StageOptions.configs([overlay])
    fcn = arguments_for("fcn_clip", options)
    assert fcn[-2:] == ["--config", str(overlay)]  # takes all of it: the file itself
    inline = json.loads(arguments_for("zero_shot", options)[-1])  # zero-shot has no learning rate
    assert inline == {"model": {"init_args": {"bootstrap_resamples": 5}}}
    assert sorted(tmp_path.iterdir()) == [overlay]


def test_options_no_stage_takes_are_refused_with_the_closest_names(tmp_path):
    with pytest.raises(
        OptionError, match=r"unknown option --trainer.max_epoch; did you mean --trainer.max_epochs\?"
    ):
        handed_on(["--demo", "--trainer.max_epoch", "2"])
    with pytest.raises(OptionError, match=r"did you mean --model.init_args.decoder_widths"):
        handed_on(["--model.decoder_width", "[8]"])  # the short form is checked as the long one
    overlay = tmp_path / "typo.yaml"
    for section, typo, meant in [("model", "gama", "gamma"), ("data", "batchsize", "batch_size")]:
        overlay.write_text(f"{section}:\n  {typo}: 2\n")
        option = f"--{section}.init_args" if section == "model" else f"--{section}"
        with pytest.raises(OptionError) as refused:
            handed_on(["--config", str(overlay)])
        assert str(refused.value) == (
            f"unknown option {option}.{typo} (set in {overlay}); did you mean {option}.{meant}?"
        )
    with pytest.raises(
        OptionError, match=r"--model.class_path: reproduce runs the models its protocol names"
    ):
        handed_on(["--model.class_path", "drgrade.tasks.FCNCLIP"])


def test_a_key_under_a_dict_option_is_a_stage_option():
    _, handed = handed_on(["--data.roots.ddr", "/d", "--model.lr", "0.1"])
    assert handed.items == (("--data.roots.ddr", "/d"), ("--model.lr", "0.1"))
    assert "--data.roots" in option_names()


class RecordingCLI:
    """Stands in for DRGradeCLI: records each stage's arguments, 'fits' a checkpoint."""

    calls: ClassVar[list[list[str]]] = []

    def __init__(self, args, wandb_group=None):
        RecordingCLI.calls.append(args)
        self.fitted = Path(f"{args[2]}.ckpt")
        self.trainer = SimpleNamespace(log_dir="unused")


def test_every_stage_gets_its_config_then_the_data_then_the_protocol_overlays_then_the_command_line(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("trainer:\n  max_epochs: 3\n")
    protocol_file = tmp_path / "mine.yaml"
    protocol_file.write_text(
        "design: paper\nmodels: [zero_shot, fcn_clip]\nstages: [fit]\noverlays: overlay.yaml\n"
    )
    protocol = load_protocol(protocol_file)
    assert protocol.overlays == [str(overlay)]  # relative to the protocol file
    handed = StageOptions.of([("--trainer.max_epochs", 1)])
    data = StageOptions.configs([CONFIGS / "demo.yaml"])
    RecordingCLI.calls = []
    assert (
        reproduce(
            RecordingCLI,
            protocol,
            None,
            CONFIGS,
            tmp_path / "out",
            False,
            None,
            data + StageOptions.configs(protocol.overlays) + handed,
        )
        is None
    )
    (fit_zero_shot, fit_fcn) = RecordingCLI.calls
    assert fit_fcn == [
        "fit",
        "--config", str(CONFIGS / "fcn_clip.yaml"),
        "--config", str(CONFIGS / "demo.yaml"),
        "--config", str(overlay),
        "--trainer.max_epochs", "1",
    ]  # fmt: skip
    assert fit_zero_shot[1:3] == ["--config", str(CONFIGS / "zero_shot.yaml")]
    assert not (tmp_path / "out").exists()  # no filtered copies, no data config written


def test_a_protocol_overlay_that_is_missing_is_refused_naming_the_file(tmp_path):
    protocol_file = tmp_path / "mine.yaml"
    protocol_file.write_text("design: paper\nmodels: [zero_shot]\noverlays: [nowhere.yaml]\n")
    with pytest.raises(OptionError, match=rf"protocol {protocol_file}: overlay nowhere.yaml not found"):
        load_protocol(protocol_file)


def test_a_protocol_names_its_own_model_configs_and_a_misspelt_model_gets_the_closest_names(tmp_path):
    mine = tmp_path / "configs" / "small_fcn.yaml"
    mine.parent.mkdir()
    mine.write_text("model:\n  class_path: drgrade.tasks.FCNCLIP\n  init_args:\n    decoder_widths: [8]\n")
    protocol_file = tmp_path / "mine.yaml"
    protocol_file.write_text(
        "design: paper\nmodels: [small_fcn, fcn_clip]\nstages: [fit]\n"
        "model_configs: {small_fcn: configs/small_fcn.yaml}\n"
    )
    protocol = load_protocol(protocol_file)
    RecordingCLI.calls = []
    reproduce(RecordingCLI, protocol, None, CONFIGS, tmp_path / "out", False)
    assert [call[:3] for call in RecordingCLI.calls] == [
        ["fit", "--config", str(mine)],
        ["fit", "--config", str(CONFIGS / "fcn_clip.yaml")],
    ]
    protocol_file.write_text("design: paper\nmodels: [fcn_clp]\n")
    with pytest.raises(OptionError, match=r"unknown model\(s\) \['fcn_clp'\]; did you mean fcn_clip"):
        load_protocol(protocol_file)


def test_a_model_option_none_of_the_protocols_models_takes_is_refused_not_dropped(tmp_path):
    from drgrade.commands.reproduce import accepted_by, models_run

    protocol_file = tmp_path / "mine.yaml"
    protocol_file.write_text("design: paper\nmodels: [zero_shot, fcn_clip]\nensemble: []\n")
    accepted = {m: accepted_by(c) for m, c in models_run(load_protocol(protocol_file), CONFIGS).items()}
    assert list(accepted) == ["zero_shot", "fcn_clip"]
    StageOptions.of([("--model.init_args.decoder_widths", "[8]")]).check_taken(accepted)  # FCN-CLIP's
    with pytest.raises(OptionError) as refused:
        StageOptions.of([("--model.n_ctx", 3)]).check_taken(accepted)  # the ranking model's only
    assert str(refused.value) == (
        "--model.n_ctx: none of the models this protocol runs (zero_shot, fcn_clip) takes it; drop it, "
        "or run a model that does"
    )
    overlay = tmp_path / "o.yaml"
    overlay.write_text("model:\n  init_args:\n    alpha: 0.5\n")
    with pytest.raises(OptionError, match=rf"--model.init_args.alpha \(set in {overlay}\): none of"):
        StageOptions.configs([overlay]).check_taken(accepted)
    protocol_file.write_text("design: folds\nmodels: [linear_probe]\n")  # embeds with zero-shot's backbone
    assert list(models_run(load_protocol(protocol_file), CONFIGS)) == ["zero_shot"]


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("design: paper\nmodels: [zero_shot]\noverlays: 5\n", "overlays must be a list of text, not 5"),
        ("design: folds\nmodels: [linear_probe]\nseeds: x\n", "seeds must be a list of a whole number"),
        (
            "design: folds\nmodels: [linear_probe]\nfolds: x\n",
            "folds must be a whole number or null, not 'x'",
        ),
        ("design: paper\nmodels: [zero_shot]\nmodel_configs: {a: null}\n", "model_configs must be a mapping"),
        ("design: paper\nmodels: [zero_shot]\nname: ../../victim\n", "must be a plain folder name"),
        ("design: paper\nmodels: [zero_shot]\nname: 5\n", "name must be text, not 5"),
    ],
)
def test_a_protocol_value_of_the_wrong_kind_is_refused_naming_the_key(tmp_path, text, refusal):
    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(text)
    with pytest.raises(OptionError, match=re.escape(refusal)):
        load_protocol(protocol_file)


def test_a_protocol_that_is_not_text_is_refused_and_one_name_stands_for_a_list(tmp_path):
    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(OptionError, match="is not a YAML text file"):
        load_protocol(protocol_file)
    protocol_file.write_text("design: paper\nmodels: zero_shot\n")
    assert load_protocol(protocol_file).models == ["zero_shot"]


def test_a_model_config_that_names_no_drgrade_model_is_refused(tmp_path):
    from drgrade.commands.reproduce import accepted_by

    for text in ("data: {}\n", "model:\n  class_path: os.system\n"):
        config = tmp_path / "m.yaml"
        config.write_text(text)
        with pytest.raises(OptionError, match=r"is not one of drgrade's models \(ZeroShotCLIP"):
            accepted_by(config)


def test_an_overlay_section_that_is_no_mapping_is_refused_naming_the_file(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("trainer: 5\n")
    with pytest.raises(OptionError, match=rf"{overlay}: trainer must be a mapping of options"):
        handed_on(["--config", str(overlay)])


def test_an_external_source_that_does_not_exist_is_refused_before_anything(tmp_path, monkeypatch, capsys):
    from drgrade.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--demo", "--external", "../../x"])
    assert (
        exit_.value.code == 2
        and "--external ../../x: no data source is called that" in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_an_overlay_that_names_a_model_is_refused_naming_the_file(tmp_path):
    overlay = tmp_path / "o.yaml"
    for text in ("model: hello\n", "model:\n  class_path: drgrade.tasks.FCNCLIP\n"):
        overlay.write_text(text)
        with pytest.raises(OptionError, match=rf"{overlay}: its model section names a model"):
            handed_on(["--config", str(overlay)])
