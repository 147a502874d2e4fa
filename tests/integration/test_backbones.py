"""Backbones: FLAIR in its own key layout and ViT CLIP, through every model, export and deploy.

No download: FLAIR's file is a random state dict in FLAIR's exact key layout (torchvision
ResNet-50 and a tiny BERT whose configuration and vocabulary are written as a local Hugging Face
folder), saved the way FLAIR's older ``transformers`` saved it (with ``position_ids``).
"""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest
import torch
import torch.nn.functional as F

from drgrade.cli import main
from drgrade.errors import WeightsFileError
from drgrade.grades import GRADES, PROMPT_SETS, grade_prompts
from drgrade.models.backbones import build_backbone
from drgrade.tasks import load_task
from tests.conftest import cli_args


@pytest.fixture(scope="module")
def flair_files(tmp_path_factory):
    """(FLAIR weights file, text-model folder): random weights in FLAIR's layout, a tiny BERT.

    Only the tests that use it need ``transformers`` (the ``[flair]`` extra): they are skipped
    without it, the RN and ViT tests still run.
    """
    transformers = pytest.importorskip("transformers")
    from drgrade.models.backbones.flair import FlairBackbone

    root = tmp_path_factory.mktemp("flair")
    folder = root / "Bio_ClinicalBERT-tiny"
    folder.mkdir()
    words = {"x", *["a", "fundus", "photograph", "of"]}
    for grade in GRADES:
        for name in PROMPT_SETS:
            for prompt in grade_prompts(grade, name):
                words |= set(re.findall(r"\w+|[^\w\s]", prompt.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    ).save_pretrained(folder)
    torch.manual_seed(0)
    state = FlairBackbone(None, folder).flair.state_dict()
    state["text_model.model.embeddings.position_ids"] = torch.arange(128)[None]  # older transformers kept it
    torch.save(state, root / "flair_resnet.pth")
    return root / "flair_resnet.pth", folder


def flair_options(flair_files) -> list[str]:
    weights, folder = flair_files
    return [
        "--model.init_args.backbone",
        "flair",
        "--model.init_args.pretrained",
        str(weights),
        "--model.init_args.text_encoder",
        str(folder),
        "--data.image_size",
        "64",
    ]


def test_flair_file_loads_key_for_key_and_a_wrong_one_is_named(flair_files, tmp_path):
    weights, folder = flair_files
    backbone = build_backbone("flair", str(weights), 64, str(folder))
    assert backbone.pretraining_datasets == ("eyepacs", "aptos2019", "idrid", "ddr")
    assert backbone.normalisation == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # FLAIR: 0-1 pixels
    state = torch.load(weights, weights_only=True)
    for change, named in (
        ({"vision_model.extra.weight": torch.zeros(1)}, "unexpected vision_model.extra.weight"),
        ({"logit_scale": None}, "missing logit_scale"),
    ):
        broken = {k: v for k, v in (state | change).items() if v is not None}
        torch.save(broken, tmp_path / "broken.pth")
        with pytest.raises(WeightsFileError, match=named):
            build_backbone("flair", str(tmp_path / "broken.pth"), 64, str(folder))


def test_flair_embeddings_equal_flairs_own_forward(flair_files):
    """FLAIR's forward, written out as its code runs it, on the same weights: equal to 1e-5."""
    import torchvision

    weights, folder = flair_files
    backbone = build_backbone("flair", str(weights), 64, str(folder)).eval()
    state = torch.load(weights, weights_only=True)

    def part(prefix):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    resnet = torchvision.models.resnet50()
    resnet.fc = torch.nn.Identity()
    resnet.load_state_dict(part("vision_model.model."))
    transformers = pytest.importorskip("transformers")
    bert = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(folder))
    bert.load_state_dict(part("text_model.model."), strict=False)  # position_ids: a buffer, not a weight
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = 77

    def project(x, weight):
        x = x / x.norm(dim=-1, keepdim=True)
        x = x @ weight.T
        return x / x.norm(dim=-1, keepdim=True)

    images = torch.rand(3, 3, 64, 64)
    descriptions = [
        f"A fundus photograph of {d}" for d in ("venous beading", "neovascularization", "hard exudates")
    ]
    with torch.no_grad():
        image = project(resnet.eval()(images), state["vision_model.projection_head_vision.projection.weight"])
        tokens = tokenizer(descriptions, truncation=True, padding=True, return_tensors="pt")
        output = bert.eval()(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], output_hidden_states=True
        )
        hidden = output["hidden_states"]
        text = torch.stack([hidden[1], hidden[2], hidden[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)
        text = project(text, state["text_model.projection_head_text.projection.weight"])
        ours_image = backbone.encode_image(images)
        ours_text = backbone.encode_text(backbone.tokenize(descriptions))
    assert torch.allclose(ours_image, image, atol=1e-5)
    assert torch.allclose(ours_text, text, atol=1e-5)
    assert float(backbone.logit_scale) == pytest.approx(1 / 0.07, rel=1e-5)


@pytest.mark.parametrize("name", ["RN-tiny", "ViT-tiny", "flair"])
def test_grad_cam_path_is_the_embedding_path(name, request):
    """Grad-CAM's activations give exactly the image embedding the model uses."""
    if name == "flair":
        weights, folder = request.getfixturevalue("flair_files")
        options = (str(weights), 64, str(folder))
    else:
        options = (None, 64, None)
    backbone = build_backbone(name, *options).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        direct = backbone.encode_image(images, normalize=True)
        through = F.normalize(backbone.cam_embedding(backbone.cam_activations(images)), dim=-1)
        maps = backbone.cam_maps(backbone.cam_activations(images))
        features = backbone.feature_maps(images, ("layer3", "layer4"))
    assert torch.allclose(direct, through, atol=1e-5)
    assert maps.dim() == 4 and maps.shape[0] == 2
    assert features["layer4"].shape[1] == backbone.feature_channels("layer4")
    assert features["layer3"].shape[1] == backbone.feature_channels("layer3")


def test_vit_clip_through_every_model(synthetic, tmp_path):
    vit = ["--model.init_args.backbone", "ViT-tiny"]
    for model in ("fcn_clip", "ranking", "zero_shot"):
        root = tmp_path / model
        main(cli_args("fit", model, synthetic, root, *vit, "--trainer.max_epochs", "1"))
        main(cli_args("test", model, synthetic, root, *vit, "--ckpt_path", "best"))
        document = json.loads(max(root.glob("version_*/metrics.json")).read_text())
        assert document["provenance"]["weights"]["backbone"] == "ViT-tiny"
        assert "pretraining_overlap" not in document  # random weights saw nothing
    task = load_task(next((tmp_path / "ranking").rglob("best-*.ckpt"))).eval()
    maps, _logits, method = task.attention_maps(torch.randn(2, 3, 96, 96))
    assert maps.shape == (2, 96, 96) and method == "Grad-CAM (last block) of the decided grade"
    main(
        [
            *cli_args("export", "ranking", synthetic, tmp_path / "ranking", *vit),
            "--ckpt_path",
            "best",
            "--out",
            str(tmp_path / "vit.onnx"),
        ]
    )
    from drgrade.serving.runner import OnnxGrader

    images = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        expected = task.rule(task(images)).probabilities
    got = OnnxGrader(tmp_path / "vit.onnx").run(images.numpy())[0]
    assert abs(got - expected.numpy()).max() < 1e-4


@pytest.mark.filterwarnings("ignore:pretraining overlap")  # asserted where it matters, below
def test_flair_through_every_model_with_the_overlap_said(synthetic, flair_files, tmp_path):
    flair = flair_options(flair_files)
    frozen = ["--model.init_args.finetune_image", "false"]  # ResNet-50 on 2 cores: keep the test short
    checkpoints = {}
    for model, extra in (("fcn_clip", frozen), ("ranking", frozen), ("zero_shot", [])):
        root = tmp_path / model
        main(cli_args("fit", model, synthetic, root, *flair, *extra, "--trainer.max_epochs", "1"))
        checkpoints[model] = next(root.rglob("best-*.ckpt"))
    zero_shot = load_task(checkpoints["zero_shot"])
    assert "flair" in zero_shot.set_names  # FLAIR's expert descriptions are a candidate prompt set
    with pytest.warns(
        UserWarning, match="pretraining overlap: the flair weights were pretrained on aptos2019"
    ):
        main(cli_args("test", "fcn_clip", synthetic, tmp_path / "fcn_clip", *flair, "--ckpt_path", "best"))
    run = max((tmp_path / "fcn_clip").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    document = json.loads((run / "metrics.json").read_text())
    overlap = document["pretraining_overlap"]
    assert overlap["sources"] == ["aptos2019"] and "optimistic" in overlap["note"]  # FLAIR saw APTOS
    assert document["provenance"]["weights"]["pretraining"] == ["eyepacs", "aptos2019", "idrid", "ddr"]
    main(["report", str(run), "--out", str(tmp_path / "report")])
    assert "Pretraining overlap" in (tmp_path / "report" / "report.md").read_text()

    # checkpoints are self-contained: neither the FLAIR file nor the text-model folder is read again
    _weights, folder = flair_files
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    try:
        ranking = load_task(checkpoints["ranking"]).eval()
        members = f"[{checkpoints['fcn_clip']}, {checkpoints['ranking']}]"
        from tests.conftest import ensemble_args

        main(ensemble_args("fit", synthetic, tmp_path / "ensemble", members, "--data.image_size", "64"))
        main(
            [
                *cli_args(
                    "export",
                    "ranking",
                    synthetic,
                    tmp_path / "ranking",
                    *flair[:4],
                    "--data.image_size",
                    "64",
                ),
                "--ckpt_path",
                str(checkpoints["ranking"]),
                "--out",
                str(tmp_path / "flair.onnx"),
            ]
        )
    finally:
        shutil.move(moved, folder)
    from drgrade.serving.runner import OnnxGrader

    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = ranking.rule(ranking(images)).probabilities
    got = OnnxGrader(tmp_path / "flair.onnx").run(images.numpy())[0]
    assert abs(got - expected.numpy()).max() < 1e-4
    # predict and explain on FLAIR checkpoints: the data takes FLAIR's normalisation from the model
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    predict = ["--ckpt_path", str(checkpoints["ranking"]), "--data.predict_dir", str(folder)]
    main([*cli_args("predict", "ranking", synthetic, tmp_path / "ranking", *flair, *frozen), *predict])
    predicted = list(
        csv.DictReader(
            max((tmp_path / "ranking").rglob("predictions.csv"), key=lambda p: p.stat().st_mtime).open()
        )
    )
    assert len(predicted) == 2 and all(r["grade"] for r in predicted)
    compare = ["--compare", str(checkpoints["fcn_clip"]), str(checkpoints["ranking"]), "--limit", "4"]
    main(
        [
            *cli_args("explain", "fcn_clip", synthetic, tmp_path / "fcn_clip", *flair),
            "--out",
            str(tmp_path / "x"),
            *compare,
        ]
    )
    summary = json.loads((tmp_path / "x" / "lesion_mass.json").read_text())
    assert {"FCN-CLIP", "Ranking"} <= set(summary)
    ensemble = json.loads(max((tmp_path / "ensemble").glob("version_*/metrics.json")).read_text())
    assert ensemble["pretraining_overlap"]["backbones"] == ["flair"]
    rows = list(csv.DictReader(next((tmp_path / "ensemble").rglob("predictions.csv")).open()))
    assert rows and {r["model"] for r in rows} == {"Ensemble"}
