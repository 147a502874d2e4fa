"""``DRDataModule``: sources -> split -> sampler -> transforms -> batches, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Sampler

from drgrade.data.augment import CLIP_NORMALISATION, MINORITY_GRADES, EvalTransform, TieredAugment
from drgrade.data.dataset import FundusDataset, folder_records
from drgrade.data.duplicates import merge_duplicates
from drgrade.data.intake import Facts, IntakeCache, default_cache_dir, judge, take_in_all
from drgrade.data.quality import DEFAULT_LIMITS, QualityLimits
from drgrade.data.sampling import DEFAULT_TARGETS, ClassTargetSampler, InverseFrequencySampler
from drgrade.data.sources import SOURCES, Exclusion, Record, SourceData, ensure_synthetic, load_sources
from drgrade.data.splits import (
    SPLITS,
    count_table,
    held_out_leaks,
    source_table,
    split_identity,
    split_records,
)
from drgrade.errors import DataValidationError, OptionError
from drgrade.grades import NUM_GRADES


def check_options(
    split_ratios: tuple[float, float, float],
    target_counts: tuple[int, ...],
    cache_dir: str | None,
    batch_size: int = 1,
    num_workers: int = 0,
) -> None:
    """Refuse option values that would train on nothing or write where they cannot.

    Args:
        split_ratios: train/val/test fractions.
        target_counts: per-grade images per epoch.
        cache_dir: the cache folder, or None.
        batch_size: images per batch.
        num_workers: loader processes.
    """
    if batch_size < 1 or num_workers < 0:
        raise OptionError(
            f"data.batch_size must be >= 1 and data.num_workers >= 0 (got {batch_size}, {num_workers})"
        )
    if len(split_ratios) != 3 or min(split_ratios) < 0 or abs(sum(split_ratios) - 1) > 1e-6:
        raise OptionError(
            f"data.split_ratios must be three fractions >= 0 summing to 1, got {list(split_ratios)}"
        )
    if split_ratios[0] == 0:
        raise OptionError("data.split_ratios gives the training split nothing; e.g. [0.7, 0.15, 0.15]")
    if len(target_counts) != NUM_GRADES or min(target_counts) < 0 or sum(target_counts) == 0:
        raise OptionError(
            f"data.target_counts needs {NUM_GRADES} counts >= 0, not all zero, got {list(target_counts)}"
        )
    if (
        cache_dir is not None
        and Path(cache_dir).expanduser().exists()
        and not Path(cache_dir).expanduser().is_dir()
    ):
        raise OptionError(
            f"data.cache_dir {cache_dir} is a file, not a folder; pass a folder (or data.cache false)"
        )


class DRDataModule(L.LightningDataModule):
    """APTOS 2019 + Messidor-2 (+ any CSV source) for DR grading.

    Args:
        aptos_root: APTOS 2019 folder (``train.csv``, ``train_images/``), or None.
        messidor_root: Messidor-2 folder (images, ``messidor_data.csv``, ``messidor-2.csv``), or None.
        eyepacs_root: EyePACS (Kaggle 2015) folder (``trainLabels.csv``, ``train/``), or None.
        idrid_root: IDRiD folder (``B. Disease Grading/``, ``A. Segmentation/``), or None.
        ddr_root: DDR folder (``DR_grading/``, ``lesion_segmentation/``), or None.
        csv_sources: extra CSVs with ``path,grade[,patient_id]`` columns.
        synthesize_if_missing: write the synthetic default into the roots when they do not exist
            (the demo and tests use this; a real-data config leaves it off so a typo in a path
            is an error, not a silent synthetic run).
        synthetic_size: image height, in pixels, of generated images.
        synthetic_counts: images per dataset (APTOS, Messidor-2) when generating.
        image_size: network input size after fundus crop and resize.
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        sampler: ``resample`` (per-epoch class target counts), ``weighted`` (inverse frequency)
            or ``none`` (plain shuffling).
        target_counts: per-grade images per epoch for ``resample`` (paper: 445/200/200/180/180).
        minority_grades: grades that get the stronger augmentation tier.
        split_ratios: train/val/test fractions.
        split_seed: seeds the split and the samplers.
        split: ``grouped`` (stratified by grade, grouped by patient, by ``split_ratios``) or
            ``official``: the published splits of EyePACS, IDRiD and DDR (validation carved from
            the official training set where none is published); other sources split as grouped.
        test_sources: external validation: these sources (e.g. ``[messidor2]``) are the whole
            test split; the others are split into train and validation by the train:val ratio.
        augment: class-tiered augmentation of training images (off gives eval transforms).
        verify_images: an image that does not decode stops setup with the list of every such
            file (off: such images are left out and listed, like ungradable ones).
        cache: store each image's intake (gate measurements, hashes, network-size crop), taken
            in once (``prepare_data``, one process per node) and read by every later run and rank.
        cache_dir: where (default ``$DRGRADE_CACHE_DIR`` or ``~/.cache/drgrade/intake``).
        quality_gate: refuse ungradable images (incomplete, too small, no fundus, badly exposed,
            out of focus; see ``drgrade.data.quality``) in every split and in ``predict``.
        quality: where the gate draws its lines (``--data.quality.min_side 256``, ...); None
            means ``QualityLimits()``'s defaults.
        dedupe: keep exact and near-duplicate photographs in one split (hashed in the intake).
        ungradable: ``exclude`` lists ungradable labelled images and leaves them out;
            ``error`` stops setup with the list, like any other bad input.
        predict_dir: a folder of images for ``drgrade predict``.
        normalisation: the model's input (mean, std) per channel, 0-1 scale; the CLI sets it from
            the model's backbone (FLAIR: none; CLIP's otherwise), None means CLIP's.
    """

    def __init__(
        self,
        aptos_root: str | None = None,
        messidor_root: str | None = None,
        eyepacs_root: str | None = None,
        idrid_root: str | None = None,
        ddr_root: str | None = None,
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
        split: Literal["grouped", "official"] = "grouped",
        test_sources: list[str] | None = None,
        augment: bool = True,
        verify_images: bool = True,
        cache: bool = True,
        cache_dir: str | None = None,
        predict_dir: str | None = None,
        quality_gate: bool = True,
        quality: QualityLimits | None = None,
        dedupe: bool = True,
        ungradable: Literal["exclude", "error"] = "exclude",
        normalisation: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
    ):
        super().__init__()
        check_options(split_ratios, target_counts, cache_dir, batch_size, num_workers)
        self.save_hyperparameters()
        self.records: list[Record] = []
        self.splits: list[str] = []
        self.datasets: dict[str, FundusDataset] = {}
        #: Folder entries ``predict`` could not read as images, with why (reported, not dropped).
        self.skipped: list[tuple[Path, str]] = []
        #: Images left out, with why (the dataset's own ungradable labels, the quality gate, duplicates
        #: of held-out images): listed in split.csv and counted on the console, never trained on.
        self.excluded: list[Exclusion] = []
        #: Which image went to which split (a fingerprint) and the split settings; checkpoints carry it.
        self.split_identity: dict | None = None
        #: Groups of identical or near-identical photographs found at setup.
        self.duplicate_groups: list[list[Record]] = []

    # -- stages ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Once per node: write the synthetic default when asked, and take in every image (stored).

        Every rank's ``setup`` then reads the stored intake instead of decoding again.
        """
        hp = self.hparams
        if hp.synthesize_if_missing:
            roots = [r for r in (hp.aptos_root, hp.messidor_root) if r is not None]
            ensure_synthetic(roots, hp.synthetic_counts, hp.synthetic_size, hp.split_seed)
        if self.intake.root is not None and not (hp.predict_dir and self.trainer_stage() == "predict"):
            take_in_all([r.path for r in self.read_sources().records], self.intake, hp.num_workers)

    def trainer_stage(self) -> str | None:
        """The running trainer's stage (None outside a trainer)."""
        return (
            self.trainer.state.stage.value if self.trainer is not None and self.trainer.state.stage else None
        )

    def setup(self, stage: str) -> None:
        """Read and split the sources once, then build each split's dataset (or the predict folder's)."""
        hp = self.hparams
        if stage == "predict" and hp.predict_dir is not None:
            records, self.skipped = folder_records(hp.predict_dir)
            quality = self.quality_limits
            self.datasets["predict"] = FundusDataset(
                records,
                hp.image_size,
                self.eval_transform(),
                keep_errors=True,
                intake=self.intake,
                quality=quality,
            )
            return
        if not self.records:
            self.load_records()
        evaluate = self.eval_transform()
        train_transform = TieredAugment(hp.minority_grades, self.normalisation) if hp.augment else evaluate
        for split in SPLITS:
            chosen = [r for r, s in zip(self.records, self.splits, strict=True) if s == split]
            transform = train_transform if split == "train" else evaluate
            self.datasets[split] = FundusDataset(chosen, hp.image_size, transform, intake=self.intake)
        self.datasets["predict"] = self.datasets["test"]

    def read_sources(self) -> SourceData:
        """Every configured source's records and the images the datasets themselves exclude."""
        hp = self.hparams
        return load_sources(self.roots, hp.csv_sources or (), verify_images=False)

    def load_records(self) -> None:
        """Read every configured source, take in its images, leave out what cannot be used, split."""
        hp = self.hparams
        found = self.read_sources()
        self.excluded = list(found.excluded)
        facts = take_in_all([r.path for r in found.records], self.intake, hp.num_workers)
        records, facts = self.gate(found.records, facts)
        if hp.dedupe:
            records = self.dedupe(records, facts)
        held_out = hp.test_sources or ()
        official = hp.split == "official"
        splits = split_records(records, hp.split_ratios, hp.split_seed, held_out, official)
        self.records, self.splits = self.leave_out_leaks(records, splits)
        records = self.records
        self.split_identity = split_identity(
            records, self.splits, hp.split_ratios, hp.split_seed, held_out, official
        )
        rank_zero_info(
            f"DR data: {len(records)} images\n{count_table(records, self.splits)}\n"
            f"{source_table(records, self.splits, self.excluded)}"
        )

    def leave_out_leaks(self, records: list[Record], splits: list[str]) -> tuple[list[Record], list[str]]:
        """Leave out images whose copy or fellow eye is in a more held-out split (``held_out_leaks``).

        Args:
            records: the split images.
            splits: each image's split.
        """
        leaks = held_out_leaks(records, splits)
        if leaks:
            listed = "\n".join(f"  - {records[i].path}: {reason}" for i, reason in sorted(leaks.items()))
            rank_zero_warn(
                f"held-out leaks: {len(leaks)} image(s) left out of training/validation:\n{listed}"
            )
        self.excluded += [Exclusion(records[i], "duplicate", reason) for i, reason in sorted(leaks.items())]
        kept = [i for i in range(len(records)) if i not in leaks]
        return [records[i] for i in kept], [splits[i] for i in kept]

    def gate(self, records: list[Record], facts: list[Facts]) -> tuple[list[Record], list[Facts]]:
        """Leave out images that do not decode (an error with ``verify_images``) or the gate refuses.

        Every refused image is listed (``excluded``, split.csv); with ``ungradable: error`` any
        refusal stops setup like other bad input.

        Args:
            records: the labelled images.
            facts: each one's intake.
        """
        hp = self.hparams
        limits = self.quality_limits
        unreadable = [
            f"{r.path}: {f.error}"
            for r, f in zip(records, facts, strict=True)
            if f.error and "ungradable" not in f.error
        ]
        if unreadable and hp.verify_images:
            raise DataValidationError(unreadable)
        kept, refused = [], []
        for record, fact in zip(records, facts, strict=True):
            reason = judge(fact, limits) if limits is not None else fact.error
            (refused if reason else kept).append((record, fact, reason))
        if refused and hp.ungradable == "error":
            raise DataValidationError([f"{record.path}: {reason}" for record, _, reason in refused])
        if refused:
            listed = "\n".join(f"  - {record.path}: {reason}" for record, _, reason in refused)
            rank_zero_warn(
                f"quality gate: {len(refused)} of {len(records)} images left out "
                f"({len(refused) / len(records):.1%}):\n{listed}"
            )
        self.excluded += [Exclusion(record, "quality", reason) for record, _, reason in refused]
        if not kept:
            raise DataValidationError(
                [f"all {len(records)} images are unusable (see above); nothing to split"]
            )
        return [record for record, _, _ in kept], [fact for _, fact, _ in kept]

    def dedupe(self, records: list[Record], facts: list[Facts]) -> list[Record]:
        """Put exact and near-duplicate photographs in one patient group; report grade conflicts.

        Args:
            records: the gradable labelled images.
            facts: each one's intake (content digest, difference hash).
        """
        records, groups = merge_duplicates(
            records, [f.digest for f in facts], [f.dhash_bits() for f in facts]
        )
        if groups:
            conflicts = [g for g in groups if len({r.grade for r in g}) > 1]
            listed = "\n".join(
                "  - " + ", ".join(f"{r.path} (grade {r.grade})" for r in group) for group in conflicts
            )
            rank_zero_warn(
                f"duplicates: {len(groups)} group(s) of identical or near-identical photographs "
                f"({sum(map(len, groups))} images) kept within one split each"
                + (f"; {len(conflicts)} with disagreeing grades:\n{listed}" if conflicts else "")
            )
        self.duplicate_groups = groups
        return records

    @property
    def normalisation(self):
        """The model's input normalisation (CLIP's unless the CLI set the backbone's)."""
        return self.hparams.normalisation or CLIP_NORMALISATION

    def eval_transform(self) -> EvalTransform:
        """Normalisation only, with the model's constants."""
        return EvalTransform(self.normalisation)

    @property
    def roots(self) -> dict[str, str | None]:
        """The native sources' root folders by source name (None: not used)."""
        return {name: self.hparams[source.option] for name, source in SOURCES.items()}

    @property
    def quality_limits(self) -> QualityLimits | None:
        """The gate's limits: every split, ``predict`` and ``explain`` take them from here (None: off)."""
        hp = self.hparams
        return (hp.quality or DEFAULT_LIMITS) if hp.quality_gate else None

    @property
    def intake(self) -> IntakeCache:
        """Where each image's intake (gate measurements, hashes, crop) is kept (in memory: cache off).

        One cache per data module (rebuilt only if its folder or the image size is changed), so
        what it learns holds for the whole run: a full disk turns it off once, not per access.
        """
        hp = self.hparams
        root = Path(hp.cache_dir or default_cache_dir()).expanduser() if hp.cache else None
        cache = self.__dict__.get("_intake")
        if cache is None or (cache.size, cache.requested_root) != (hp.image_size, root):
            cache = self._intake = IntakeCache(root, hp.image_size)
        return cache

    # -- loaders --------------------------------------------------------------------------------
    @property
    def train_class_counts(self) -> list[int]:
        """Images per grade in the training split (before resampling)."""
        labels = torch.tensor([r.grade for r in self.datasets["train"].records], dtype=torch.long)
        return torch.bincount(labels, minlength=NUM_GRADES).tolist()

    @property
    def loss_class_counts(self) -> list[float]:
        """Images per grade that the training loss sees in an epoch, for class weights.

        With ``resample`` these are the sampler's targets (a grade with no image stays 0); with
        ``weighted`` the draw is balanced across the grades present; with ``none``, the split's
        own counts. Weighting the loss by the raw counts on top of a rebalancing sampler would
        correct the imbalance twice.
        """
        counts = self.train_class_counts
        if self.hparams.sampler == "resample":
            return [float(t) if n else 0.0 for t, n in zip(self.hparams.target_counts, counts, strict=True)]
        if self.hparams.sampler == "weighted":
            present = sum(1 for n in counts if n)
            return [sum(counts) / present if n else 0.0 for n in counts]
        return [float(n) for n in counts]

    def train_sampler(self) -> Sampler[int] | None:
        """The configured rebalancing sampler over the training split (None: plain shuffling)."""
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
        # augmentation seeds itself per process (see TieredAugment): no worker_init_fn needed
        return DataLoader(
            self.datasets[split],
            batch_size=hp.batch_size,
            sampler=sampler,
            shuffle=shuffle and sampler is None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        """Resampled (or weighted, or shuffled) training batches with augmentation."""
        return self._loader("train", self.train_sampler(), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The predict folder's batches (the test split when no folder is given)."""
        return self._loader("predict")

    def records_of(self, split: str) -> list[Record]:
        """The records behind a split's loader, in loader order (index -> record).

        Args:
            split: ``train``, ``val``, ``test`` or ``predict``.
        """
        return self.datasets[split].records
