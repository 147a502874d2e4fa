"""``drgrade embed``: pooled embeddings as Parquet, readable by pandas, computed once per backbone."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from drgrade.cli import main
from drgrade.data.augment import EvalTransform
from drgrade.data.dataset import FundusDataset, folder_records
from drgrade.tasks import load_task


def test_embed_writes_a_folder_s_embeddings_that_pandas_reads(
    zero_shot_checkpoint, synthetic, tmp_path, capsys
):
    folder = tmp_path / "photos"  # a dozen photographs: the intake of a whole folder is not what is tested
    folder.mkdir()
    for image in sorted((synthetic / "messidor2" / "IMAGES").iterdir())[:12]:
        shutil.copy(image, folder)
    out = tmp_path / "embeddings.parquet"
    embed = ["embed", "--ckpt_path", str(zero_shot_checkpoint), "--data.predict_dir", str(folder)]
    main([*embed, "--out", str(out)])
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["file", "image", "source", "patient", "grade", "split", "embedding"]
    records, _ = folder_records(folder)
    # every image is embedded but those the gate refuses, each of which is named
    refused = {
        line.removeprefix("not embedded: ").split(": ")[0]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("not embedded")
    }
    assert sorted(frame["file"]) == sorted(str(r.path) for r in records if str(r.path) not in refused)
    assert len(refused) <= 2
    assert frame["grade"].isna().all() and set(frame["split"]) == {"predict"}
    # the pooled embedding is the backbone's, on the image as the model sees it
    task = load_task(zero_shot_checkpoint).eval()
    first = frame.iloc[0]
    dataset = FundusDataset(
        [r for r in records if str(r.path) == first["file"]],
        task.hparams.image_size,
        EvalTransform(task.normalisation()),
    )
    with torch.no_grad():
        expected = task.backbone.encode_image(dataset[0]["image"][None], normalize=False)[0].numpy()
    np.testing.assert_allclose(np.asarray(first["embedding"]), expected, rtol=1e-4, atol=1e-5)

    stamp = out.stat().st_mtime_ns
    main([*embed, "--out", str(out)])
    assert "cached" in capsys.readouterr().out and out.stat().st_mtime_ns == stamp


def test_embed_of_a_dataset_keeps_grades_patients_and_splits(zero_shot_checkpoint, synthetic, tmp_path):
    out = tmp_path / "splits.parquet"
    main(
        [
            "embed",
            "--ckpt_path",
            str(zero_shot_checkpoint),
            "--data.roots.messidor2",
            str(synthetic / "messidor2"),
            "--data.num_workers",
            "0",
            "--out",
            str(out),
        ]
    )
    frame = pd.read_parquet(out)
    assert set(frame["split"]) == {"train", "val", "test"}
    assert frame["grade"].between(0, 4).all() and frame["patient"].str.len().min() > 0
    assert (frame["source"] == "messidor2").all()


def test_embed_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "x.ckpt"
    bogus.write_text("no")
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "embed",
                "--ckpt_path",
                str(bogus),
                "--data.predict_dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "e.parquet"),
            ]
        )
    assert exit_.value.code == 2 and "x.ckpt" in capsys.readouterr().err
