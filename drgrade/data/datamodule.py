"""``DRDataModule``: sources -> split -> sampler -> transforms -> batches, in one place."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from drgrade.data.augment import MINORITY_GRADES, EvalTransform, TieredAugment
from drgrade.data.cache import PreprocessCache, default_cache_dir
from drgrade.data.dataset import FundusDataset, folder_records
from drgrade.data.sampling import DEFAULT_TARGETS, ClassTargetSampler, InverseFrequencySampler
from drgrade.data.sources import Record, load_sources
from drgrade.data.splits import SPLITS, split_records, write_split_csv
from drgrade.data.synthetic import write_synthetic
from drgrade.grades import GRADE_NAMES, NUM_GRADES
from drgrade.runs import run_dir

log = logging.getLogger(__name__)


def count_table(records: list[Record], splits: list[str]) -> str:
    """A per-split, per-grade count table, as printed at setup."""
    counts = Counter(zip(splits, (r.grade for r in records), strict=True))
    width = max(len(n) for n in GRADE_NAMES) + 2
    lines = ["split".ljust(8) + "".join(n.rjust(width) for n in GRADE_NAMES) + "total".rjust(8)]
    for split in SPLITS:
        row = [counts[(split, g)] for g in range(NUM_GRADES)]
        lines.append(split.ljust(8) + "".join(str(n).rjust(width) for n in row) + str(sum(row)).rjust(8))
    return "\n".join(lines)


def seed_worker_augmentation(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a distinct, reproducible augmentation seed per worker
    (the worker's torch seed, itself drawn from the seeded main-process generator)."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(info.seed % 2**31)


class _CacheFiller(torch.utils.data.Dataset):
    """Loads each record through the cache (building its entry); yields nothing of use."""

    def __init__(self, records: list[Record], cache: PreprocessCache):
        self.records, self.cache = records, cache

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> int:
        self.cache.load(self.records[index].path)
        return index


class DRDataModule(L.LightningDataModule):
    """APTOS 2019 + Messidor-2 (+ any CSV source) for DR grading.

    Args:
        aptos_root: APTOS 2019 folder (``train.csv``, ``train_images/``), or None.
        messidor_root: Messidor-2 folder (images, ``messidor_data.csv``, ``messidor-2.csv``), or None.
        csv_sources: extra CSVs with ``path,grade[,patient_id]`` columns.
        synthesize_if_missing: write the synthetic default into the roots when they do not exist
            (the demo and tests use this; a real-data config leaves it off so a typo in a path
            is an error, not a silent synthetic run).
        synthetic_size: image size, in pixels, of generated images; synthetic_counts: images per
            dataset (APTOS, Messidor-2) when generating.
        image_size: network input size after fundus crop and resize.
        sampler: ``resample`` (per-epoch class target counts), ``weighted`` (inverse frequency)
            or ``none`` (plain shuffling).
        target_counts: per-grade images per epoch for ``resample`` (paper: 445/200/200/180/180).
        split_ratios: train/val/test fractions; split_seed seeds the split and the samplers.
        augment: class-tiered augmentation of training images (off gives eval transforms).
        verify_images: check every image decodes at setup, so a corrupt file fails fast.
        cache: read preprocessed (cropped, resized) images from a cache built on first use;
            cache_dir: where (default ``$DRGRADE_CACHE_DIR`` or ``~/.cache/drgrade/preprocessed``).
        predict_dir: a folder of images for ``drgrade predict``.
    """

    def __init__(
        self,
        aptos_root: str | None = None,
        messidor_root: str | None = None,
        csv_sources: list[str] | None = None,
        synthesize_if_missing: bool = False,
        synthetic_size: int = 384,
        synthetic_counts: tuple[int, int] = (600, 300),
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        sampler: Literal["resample", "weighted", "none"] = "resample",
        target_counts: tuple[int, int, int, int, int] = DEFAULT_TARGETS,
        minority_grades: tuple[int, ...] = MINORITY_GRADES,
        split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_seed: int = 42,
        augment: bool = True,
        verify_images: bool = True,
        cache: bool = True,
        cache_dir: str | None = None,
        predict_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.records: list[Record] = []
        self.splits: list[str] = []
        self.datasets: dict[str, FundusDataset] = {}

    # -- stages ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic default once (local rank 0) when asked and absent."""
        hp = self.hparams
        if not hp.synthesize_if_missing:
            return
        roots = [Path(r) for r in (hp.aptos_root, hp.messidor_root) if r is not None]
        if roots and not all(r.exists() for r in roots):
            parents = {r.parent for r in roots}
            if len(parents) != 1:
                raise ValueError("synthesize_if_missing needs aptos_root and messidor_root in one folder")
            num_aptos, num_messidor = hp.synthetic_counts
            write_synthetic(parents.pop(), num_aptos, num_messidor, hp.synthetic_size, hp.split_seed)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "predict" and hp.predict_dir is not None:
            self.datasets["predict"] = FundusDataset(
                folder_records(hp.predict_dir), hp.image_size, EvalTransform(), keep_errors=True
            )
            return
        if not self.records:
            self._load()
        evaluate = EvalTransform()
        cache = self.cache
        train_transform = TieredAugment(hp.minority_grades) if hp.augment else evaluate
        for split in SPLITS:
            chosen = [r for r, s in zip(self.records, self.splits, strict=True) if s == split]
            transform = train_transform if split == "train" else evaluate
            self.datasets[split] = FundusDataset(chosen, hp.image_size, transform, cache=cache)
        self.datasets["predict"] = self.datasets["test"]

    def _load(self) -> None:
        hp = self.hparams
        self.records = load_sources(
            hp.aptos_root, hp.messidor_root, hp.csv_sources or (), verify_images=hp.verify_images
        )
        self.splits = split_records(self.records, hp.split_ratios, hp.split_seed)
        rank_zero_info(f"DR data: {len(self.records)} images\n{count_table(self.records, self.splits)}")
        if self.trainer is not None:
            out = run_dir(self.trainer)  # a collective under DDP: every rank must ask
            if self.trainer.is_global_zero:
                path = write_split_csv(self.records, self.splits, out / "split.csv")
                rank_zero_info(f"split written to {path}")

    @property
    def cache(self) -> PreprocessCache | None:
        hp = self.hparams
        if not hp.cache:
            return None
        return PreprocessCache(hp.cache_dir or default_cache_dir(), hp.image_size)

    def build_cache(self, workers: int | None = None) -> int:
        """Preprocess every image of every split into the cache ahead of training; returns the
        number of images. Runs in ``workers`` processes (default: all cores), with a progress bar."""
        cache = self.cache
        if cache is None:
            raise ValueError("data.cache is false: nothing to build")
        if not self.records:
            self._load()
        workers = (os.cpu_count() or 1) if workers is None else workers
        loader = DataLoader(
            _CacheFiller(self.records, cache), batch_size=None, num_workers=workers, shuffle=False
        )
        for _ in tqdm(loader, total=len(self.records), desc=f"caching into {cache.root}"):
            pass
        return len(self.records)

    # -- loaders --------------------------------------------------------------------------------
    @property
    def train_class_counts(self) -> list[int]:
        """Images per grade in the training split (before resampling): for class weights."""
        labels = torch.tensor([r.grade for r in self.datasets["train"].records])
        return torch.bincount(labels, minlength=NUM_GRADES).tolist()

    def train_sampler(self) -> Sampler[int] | None:
        hp = self.hparams
        labels = [r.grade for r in self.datasets["train"].records]
        if hp.sampler == "resample":
            return ClassTargetSampler(labels, hp.target_counts, seed=hp.split_seed)
        if hp.sampler == "weighted":
            return InverseFrequencySampler(labels, seed=hp.split_seed)
        return None

    def _loader(self, split: str, sampler: Sampler[int] | None = None, shuffle: bool = False) -> DataLoader:
        hp = self.hparams
        workers = hp.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=hp.batch_size,
            sampler=sampler,
            shuffle=shuffle and sampler is None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
            worker_init_fn=seed_worker_augmentation if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        transform = self.datasets["train"].transform
        if self.hparams.num_workers == 0 and hasattr(transform, "reseed"):
            transform.reseed(int(torch.randint(2**31, (1,))))  # from the seeded global generator
        return self._loader("train", self.train_sampler(), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def records_of(self, split: str) -> list[Record]:
        """The records behind a split's loader, in loader order (index -> record)."""
        return self.datasets[split].records
