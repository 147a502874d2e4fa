"""``drgrade embed``: a checkpoint's pooled image embeddings of a folder or of a dataset's splits.

    drgrade embed --ckpt_path model.ckpt --data.predict_dir photos/ --out e.parquet
    drgrade embed --ckpt_path X --data.roots.aptos2019 data/aptos2019 --out aptos.parquet  # every split

The images are prepared exactly as the model sees them (its input size and normalisation).
An existing file of the same backbone, images and splits is kept (see ``drgrade.embeddings``).
"""

from __future__ import annotations

from pathlib import Path

from drgrade.data import DRDataModule
from drgrade.data.dataset import FundusDataset
from drgrade.embeddings import cached_embeddings
from drgrade.files import check_writable
from drgrade.tasks import load_task


def add_arguments(parser) -> None:
    """``--ckpt_path``, ``--out`` and the data options (``--data.*``).

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--ckpt_path", type=str, required=True, help="the checkpoint whose backbone embeds")
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    parser.epilog = "The images: --data.predict_dir DIR, or the sources (every split is embedded)."
    parser.add_class_arguments(DRDataModule, "data", skip={"image_size", "normalisation", "augment"})


def run(opts) -> None:
    """Embed the folder (``data.predict_dir``) or every image of the configured sources.

    Args:
        opts: the parsed options.
    """
    out = check_writable(opts.out)
    task = load_task(opts.ckpt_path)
    size = int(task.hparams.image_size)
    options = {k: v for k, v in opts.data.as_dict().items() if not k.startswith("__")}
    datamodule = DRDataModule(**options, image_size=size, normalisation=task.normalisation(), augment=False)
    if options.get("predict_dir"):
        datamodule.setup("predict")
        dataset = datamodule.datasets["predict"]
        records, splits = dataset.records, ["predict"] * len(dataset.records)
    else:
        datamodule.prepare_data()
        datamodule.load_records()
        records, splits = datamodule.records, datamodule.splits
        dataset = FundusDataset(records, size, datamodule.eval_transform(), intake=datamodule.intake)
    embeddings = cached_embeddings(out, task, records, splits, dataset)
    dimension = embeddings.vectors().shape[1] if len(embeddings.frame) else 0
    print(f"{len(embeddings.frame)} embeddings ({dimension} values each) in {out}")
