"""``DRDataModule``: sources -> split -> sampler -> transforms -> batches, in one place."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
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
from drgrade.data.sources.common import GRADABILITY, gradability_labelled
from drgrade.data.split_file import UNUSED, read_split_file
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
from drgrade.suggest import did_you_mean

#: The split tables this process has printed: a protocol's later stages on the same split say so in
#: one line (split.csv in every run folder holds the split itself).
SHOWN_TABLES: set[str] = set()


def check_roots(roots: dict[str, str | None] | None) -> None:
    """Refuse a ``roots`` entry that names no source, with the closest source names."""
    if roots is not None and not isinstance(roots, dict):
        raise OptionError(
            f"data.roots is each source's folder by source name ({{aptos2019: DIR, ...}}), not {roots!r}"
        )
    for name in roots or {}:
        if name not in SOURCES:
            hint = did_you_mean(name, SOURCES, otherwise=f"; the sources are {', '.join(SOURCES)}", n=2)
            raise OptionError(f"--data.roots.{name}: no data source is called {name!r}{hint}")


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


def list_refused(refused: list[tuple[Record, str]], total: int, mode: str) -> None:
    """Warn with every labelled photograph the gate refuses (``quality_gate`` flag or exclude)."""
    action = "left out" if mode == "exclude" else "kept (quality_gate: flag)"
    listed = "\n".join(f"  - {record.path}: {reason}" for record, reason in refused)
    rank_zero_warn(
        f"quality gate: {len(refused)} of {total} labelled images {action} "
        f"({len(refused) / total:.1%}):\n{listed}"
    )


def gradability_data(found: SourceData) -> SourceData:
    """The photographs labelled for gradability, each with its label as ``grade`` (``GRADABILITY`` index).

    What the ``quality`` model learns from (``target: gradability``): the rejects a dataset
    excludes from DR grading are its positives here. Exclusions for other reasons stay excluded.

    Args:
        found: what the sources' readers found.
    """
    labelled = gradability_labelled(found)
    if not labelled:
        raise DataValidationError(
            [
                "data.target gradability: no configured source labels gradability "
                "(EyeQ, Messidor-2, DDR, DeepDRiD)"
            ]
        )
    records = [replace(record, grade=GRADABILITY.index(label)) for record, label in labelled]
    return SourceData(
        records, [e for e in found.excluded if not (e.kind == "dataset" and e.record.gradability)]
    )


class DRDataModule(L.LightningDataModule):
    """APTOS 2019 + Messidor-2 (+ any CSV source) for DR grading.

    Args:
        roots: each native source's folder by source name (null or absent: not used), e.g.
            ``{aptos2019: data/aptos2019, messidor2: data/messidor2}`` or, on the command line,
            ``--data.roots.aptos2019 DIR``. The names are ``drgrade.data.sources.SOURCES``' (one
            module per dataset: adding one needs nothing here): aptos2019 (``train.csv``,
            ``train_images/``), messidor2 (images, ``messidor_data.csv``), eyepacs
            (``trainLabels.csv``, ``train/``), idrid (``B. Disease Grading/``), ddr
            (``DR_grading/``), deepdrid (``regular_fundus_images/``), eyeq (an EyePACS folder
            with EyeQ's ``Label_EyeQ_train.csv`` / ``Label_EyeQ_test.csv``).
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
        split_file: a split file (``drgrade.data.split_file``: image, source, split) giving every
            image its split, e.g. one a protocol wrote or a published one; replaces the options
            above that draw a split. Images it marks ``unused`` are left out (and listed).
        augment: class-tiered augmentation of training images (off gives eval transforms).
        verify_images: an image that does not decode stops setup with the list of every such
            file (off: such images are left out and listed, like ungradable ones).
        cache: store each image's intake (gate measurements, hashes, network-size crop), taken
            in once (``prepare_data``, one process per node) and read by every later run and rank.
        cache_dir: where (default ``$DRGRADE_CACHE_DIR`` or ``~/.cache/drgrade/intake``).
        quality_gate: what the quality gate (``drgrade.data.quality``) does to *labelled*
            photographs: ``keep`` (default) keeps what the graders graded and records the gate's
            verdict (split.csv's ``gate`` column, counted per source on the console and in the
            report's provenance), so the dataset's n is the published one; ``flag`` also lists each
            such photograph on the console; ``exclude`` leaves them out (listed). A labelled
            photograph is otherwise excluded only by the dataset's own gradability label, or when it
            cannot be decoded. Unlabelled input (``predict``'s folder) is always gated.
        quality: where the gate draws its lines (``--data.quality.min_side 256``, ...), for every
            split, ``predict`` and ``explain`` alike; None means ``QualityLimits()``'s defaults.
        dedupe: keep exact and near-duplicate photographs in one split (hashed in the intake).
        ungradable: ``error`` stops setup with the list when the gate refuses any labelled
            photograph, like any other bad input; ``exclude`` goes on as ``quality_gate`` says.
        predict_dir: a folder of images for ``drgrade predict``.
        exam_manifest: a CSV ``file,patient_id,eye,field`` grouping ``predict_dir``'s photographs
            into exams (patients and eyes) for exams.csv.
        exam_pattern: or a regular expression on file stems with groups ``patient`` and ``eye``
            (and optionally ``field``), e.g. ``(?P<patient>[0-9]+)_(?P<eye>left|right)``.
        target: ``grade`` (DR grading) or ``gradability``: the photographs their datasets label
            for gradability (EyeQ, Messidor-2, DDR, DeepDRiD; the rejects included), labelled 0 good,
            1 usable, 2 reject, 3 gradable (good or usable), for the ``quality`` model.
        quality_model: a ``quality`` model's checkpoint (``configs/quality.yaml``): unlabelled
            photographs it calls "reject" are not graded, beside the rule gate (``predict``,
            ``drgrade gate``).
        normalisation: the model's input (mean, std) per channel, 0-1 scale; the CLI sets it from
            the model's backbone (FLAIR: none; CLIP's otherwise), None means CLIP's.
    """

    #: The loaded ``quality_model`` (the CLI loads it; see ``learned_gate``).
    quality_gate_model = None
    #: Folder entries ``predict`` could not read as images, with why (reported, not dropped).
    skipped: list[tuple[Path, str]]
    #: Images left out, with why: listed in split.csv and counted on the console, never trained on.
    excluded: list[Exclusion]
    #: Which image went to which split (a fingerprint) and the split settings; checkpoints carry it.
    split_identity: dict | None
    #: Groups of identical or near-identical photographs found at setup.
    duplicate_groups: list[list[Record]]

    def __init__(
        self,
        roots: dict[str, str | None] | None = None,
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
        split_file: str | None = None,
        augment: bool = True,
        verify_images: bool = True,
        cache: bool = True,
        cache_dir: str | None = None,
        predict_dir: str | None = None,
        exam_manifest: str | None = None,
        exam_pattern: str | None = None,
        quality_gate: Literal["keep", "flag", "exclude"] = "keep",
        quality: QualityLimits | None = None,
        dedupe: bool = True,
        ungradable: Literal["exclude", "error"] = "exclude",
        target: Literal["grade", "gradability"] = "grade",
        quality_model: str | None = None,
        normalisation: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
    ):
        super().__init__()
        check_options(split_ratios, target_counts, cache_dir, batch_size, num_workers)
        check_roots(roots)
        self.save_hyperparameters()
        self.records: list[Record] = []
        self.splits: list[str] = []
        self.datasets: dict[str, FundusDataset] = {}
        self.skipped = []
        self.excluded = []
        self.split_identity = None
        self.gate_verdicts: dict[Path, str] = {}  # labelled, kept, refused by the gate: path -> why
        self.duplicate_groups = []

    # -- stages ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Once per node: write the synthetic default when asked, and take in every image (stored).

        Every rank's ``setup`` then reads the stored intake instead of decoding again.
        """
        hp = self.hparams
        if hp.synthesize_if_missing:
            roots = [r for r in (self.roots["aptos2019"], self.roots["messidor2"]) if r is not None]
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
            records, self.skipped = folder_records(hp.predict_dir, hp.exam_manifest, hp.exam_pattern)
            self.datasets["predict"] = FundusDataset(
                records,
                hp.image_size,
                self.eval_transform(),
                keep_errors=True,
                intake=self.intake,
                quality=self.quality_limits,  # unlabelled input is always gated
                quality_model=self.learned_gate(),
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
        if hp.target == "gradability":
            found = gradability_data(found)
        self.excluded = list(found.excluded)
        facts = take_in_all([r.path for r in found.records], self.intake, hp.num_workers)
        records, facts = self.gate(found.records, facts)
        if hp.dedupe:
            records = self.dedupe(records, facts)
        held_out = hp.test_sources or ()
        official = hp.split == "official"
        if hp.split_file:
            records, splits = self.read_split_file(records)
        else:
            splits = split_records(records, hp.split_ratios, hp.split_seed, held_out, official)
        self.records, self.splits = self.leave_out_leaks(records, splits)
        records = self.records
        self.split_identity = split_identity(
            records, self.splits, hp.split_ratios, hp.split_seed, held_out, official, hp.split_file
        )
        tables = (
            f"{count_table(records, self.splits)}\n"
            f"{source_table(records, self.splits, self.excluded, self.gate_flagged())}"
        )
        if tables in SHOWN_TABLES:  # reproduce's stages after the first share one split
            rank_zero_info(f"DR data: {len(records)} images, split as shown above (split.csv in the run)")
        else:
            SHOWN_TABLES.add(tables)
            rank_zero_info(f"DR data: {len(records)} images\n{tables}")

    def read_split_file(self, records: list[Record]) -> tuple[list[Record], list[str]]:
        """The splits ``data.split_file`` gives; the images it marks unused are left out and listed.

        Args:
            records: the gradable, deduplicated images.
        """
        name = self.hparams.split_file
        splits = read_split_file(name, records)
        self.excluded += [
            Exclusion(r, "split_file", f"marked {UNUSED} by {name}")
            for r, s in zip(records, splits, strict=True)
            if s == UNUSED
        ]
        kept = [i for i, s in enumerate(splits) if s != UNUSED]
        return [records[i] for i in kept], [splits[i] for i in kept]

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
        """Leave out images that do not decode (an error with ``verify_images``); judge the rest.

        What graders graded stays (``quality_gate`` keep, flag), the gate's verdict in
        ``gate_verdicts``; ``exclude`` leaves it out, ``ungradable: error`` stops setup.

        Args:
            records: the labelled images.
            facts: each one's intake.
        """
        hp = self.hparams
        unreadable = [
            f"{r.path}: {f.error}"
            for r, f in zip(records, facts, strict=True)
            if f.error and "ungradable" not in f.error
        ]
        if unreadable and hp.verify_images:
            raise DataValidationError(unreadable)
        verdicts = [judge(fact, self.quality_limits) for fact in facts]
        # no pixels to train on (cut off, too large to decode): left out whatever the mode
        undecoded = [bool(fact.error) or fact.measured is None for fact in facts]
        refused = [
            (r, why) for r, why, lost in zip(records, verdicts, undecoded, strict=True) if why and not lost
        ]
        if hp.ungradable == "error" and any(verdicts):
            raise DataValidationError(
                [
                    f"{record.path}: {reason}"
                    for record, reason in zip(records, verdicts, strict=True)
                    if reason
                ]
            )
        if refused and hp.quality_gate != "keep":
            list_refused(refused, len(records), hp.quality_gate)
        excluding = hp.quality_gate == "exclude"
        self.gate_verdicts = {} if excluding else {record.path: reason for record, reason in refused}
        leave_out = [
            lost or (excluding and bool(reason)) for reason, lost in zip(verdicts, undecoded, strict=True)
        ]
        self.excluded += [
            Exclusion(record, "quality", reason)
            for record, reason, out in zip(records, verdicts, leave_out, strict=True)
            if out
        ]
        kept = [(r, f) for r, f, out in zip(records, facts, leave_out, strict=True) if not out]
        if not kept:
            raise DataValidationError(
                [f"all {len(records)} images are unusable (see above); nothing to split"]
            )
        return [record for record, _ in kept], [fact for _, fact in kept]

    def gate_flagged(self) -> Counter:
        """Per source, the kept labelled photographs the gate would refuse (``quality_gate`` keep/flag)."""
        return Counter(r.source for r in self.records if r.path in self.gate_verdicts)

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
        given = self.hparams.roots or {}
        return {name: given.get(name) for name in SOURCES}

    @property
    def quality_limits(self) -> QualityLimits:
        """The gate's limits (``data.quality``): every split, ``predict`` and ``explain`` use them."""
        return self.hparams.quality or DEFAULT_LIMITS

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

    def learned_gate(self):
        """The loaded ``quality_model`` (``drgrade.tasks.quality.QualityModel``), None without one.

        The data does not load models (the tasks import the data, not the reverse): the CLI
        loads it into ``quality_gate_model`` before the stage runs.
        """
        if self.hparams.quality_model and self.quality_gate_model is None:
            raise OptionError(
                f"data.quality_model {self.hparams.quality_model} was not loaded: pass it to "
                "`drgrade predict` or `drgrade gate`"
            )
        return self.quality_gate_model

    def typicality_loader(self, limit: int) -> DataLoader:
        """Up to ``limit`` training photographs, evenly spaced through the split, unaugmented.

        What the model's typicality check is fitted on (``drgrade.decision.typicality``).

        Args:
            limit: most photographs.
        """
        records = self.datasets["train"].records
        chosen = records[:: max(1, -(-len(records) // limit))] if limit else []
        dataset = FundusDataset(chosen, self.hparams.image_size, self.eval_transform(), intake=self.intake)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def records_of(self, split: str) -> list[Record]:
        """The records behind a split's loader, in loader order (index -> record).

        Args:
            split: ``train``, ``val``, ``test`` or ``predict``.
        """
        return self.datasets[split].records
