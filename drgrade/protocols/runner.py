"""Run a protocol file: plan its runs, write each run's split file, fit and test every model on it.

Image models (``fcn_clip``, ``ranking``, ``zero_shot``) go through ``drgrade fit`` then
``drgrade test`` with ``--data.split_file splits/<run>.csv``, so each run is an ordinary run
folder a user can rerun. Adaptation models (``linear_probe``, ``tip_adapter``,
``tip_adapter_f``) read the frozen backbone's embeddings, computed once (``embeddings/``) and
evaluated by ``drgrade.protocols.evaluate`` into the same metrics.json / predictions.csv.

Every image a run does not train, validate or test on is ``unused`` in its split file (the
images a few-shot draw left out; copies of a held-out image, as ``held_out_leaks`` finds).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drgrade.data.dataset import FundusDataset
from drgrade.data.folds import fold_splits
from drgrade.data.intake import default_cache_dir
from drgrade.data.sources import Record
from drgrade.data.split_file import UNUSED, write_split_file
from drgrade.data.splits import held_out_leaks, image_key, split_records
from drgrade.embeddings import Embeddings, cached_embeddings, clip_encoder, embedding_file, embedding_identity
from drgrade.errors import OptionError
from drgrade.evaluation.bootstrap import BootstrapSpec
from drgrade.protocols.adapters import ADAPTERS
from drgrade.protocols.evaluate import evaluate_adapter
from drgrade.protocols.spec import Protocol


@dataclass
class Run:
    """One training-and-test draw: its name, seed and split, and what it varies."""

    name: str
    seed: int
    splits: list[str]
    fold: int | None = None
    held_out: str | None = None
    shots: int | None = None


def plan_runs(protocol: Protocol, records: Sequence[Record]) -> list[Run]:
    """Every run of the protocol over ``records`` (already gated and deduplicated).

    Args:
        protocol: the protocol.
        records: the images.
    """
    ratios = protocol.split_ratios
    runs: list[Run] = []
    if protocol.design == "folds":
        for seed in protocol.seeds:
            if protocol.folds is None:
                runs.append(Run(f"seed{seed}", seed, split_records(records, ratios, seed)))
                continue
            for fold, splits in enumerate(
                fold_splits(records, protocol.folds, seed, protocol.test, ratios, protocol.test_seed)
            ):
                runs.append(Run(f"seed{seed}-fold{fold}", seed, splits, fold=fold))
    elif protocol.design == "leave_one_source_out":
        present = sorted({r.source for r in records})
        sources = protocol.sources or present
        unknown = sorted(set(sources) - set(present))
        if unknown or len(present) < 2:
            raise OptionError(
                f"leave-one-source-out needs at least two sources read and only those; read {present}"
                + (f", asked for {unknown}" if unknown else "")
            )
        for seed in protocol.seeds:
            runs.append(Run(f"in-source-seed{seed}", seed, split_records(records, ratios, seed)))
            for source in sources:
                splits = split_records(records, ratios, seed, test_sources=[source])
                runs.append(Run(f"{source}-seed{seed}", seed, splits, held_out=source))
    else:
        base = split_records(records, ratios, protocol.test_seed)
        for shots in protocol.shots:
            for seed in protocol.seeds:
                splits = few_shot_draw(records, base, shots, seed)
                runs.append(Run(f"shots{shots}-seed{seed}", seed, splits, shots=shots))
    for run in runs:
        used = [i for i, split in enumerate(run.splits) if split != UNUSED]
        for j in held_out_leaks([records[i] for i in used], [run.splits[i] for i in used]):
            run.splits[used[j]] = UNUSED
    return runs


def few_shot_draw(records: Sequence[Record], splits: Sequence[str], shots: int, seed: int) -> list[str]:
    """Keep ``shots`` training images per grade, drawn a whole patient at a time; the rest unused.

    For each grade, the training patients with an image of that grade are shuffled and taken
    until the grade has ``shots`` images (a patient's other images come along, so a patient is
    never split; a grade with fewer images keeps all it has). Validation and test are kept whole.

    Args:
        records: the images.
        splits: the base split.
        shots: training images wanted per grade.
        seed: the draw's seed.
    """
    rng = np.random.default_rng(seed)
    patients: dict[str, list[int]] = defaultdict(list)
    for i, split in enumerate(splits):
        if split == "train":
            patients[records[i].patient_id].append(i)
    chosen: set[str] = set()
    counts: Counter = Counter()
    for grade in sorted({records[i].grade for members in patients.values() for i in members}):
        candidates = sorted(
            p for p, members in patients.items() if any(records[i].grade == grade for i in members)
        )
        rng.shuffle(candidates)
        for patient in candidates:
            if counts[grade] >= shots:
                break
            if patient not in chosen:
                chosen.add(patient)
                counts.update(records[i].grade for i in patients[patient])
    return [
        UNUSED if split == "train" and records[i].patient_id not in chosen else split
        for i, split in enumerate(splits)
    ]


def split_counts(splits: Sequence[str]) -> dict[str, int]:
    """Images per split of a run (``n_train``, ``n_val``, ``n_test``)."""
    counts = Counter(splits)
    return {f"n_{s}": counts[s] for s in ("train", "val", "test")}


class ProtocolRunner:
    """Runs a protocol's models on its runs and gathers one row per (model, run).

    Args:
        protocol: the protocol.
        out: the report folder (``splits/``, ``runs/``, ``embeddings/`` go under it).
        setup: ``DRGradeCLI`` arguments configuring the data and the frozen backbone (the zero-shot
            config with the data overlay and handed-on options).
        stage_args: for an image model, its ``fit`` / ``test`` arguments before the run's own.
        fit_then_test: runs ``fit`` then ``test`` of CLI arguments, appending the test run folder;
            returns the checkpoint tested.
        cli_class: the CLI class (the backbone and data for the embeddings; a second test with ``tta``).
    """

    def __init__(self, protocol: Protocol, out: Path, setup: list[str], stage_args, fit_then_test, cli_class):
        self.protocol, self.out = protocol, out
        self.stage_args, self.fit_then_test, self.cli_class = stage_args, fit_then_test, cli_class
        self.base = cli_class(setup, run=False)
        self.embeddings: Embeddings | None = None
        self.spec = BootstrapSpec(resamples=protocol.bootstrap_resamples)

    def run(self) -> list[dict]:
        """Plan the runs, write their split files, run every model; returns the per-run rows."""
        datamodule = self.base.datamodule
        datamodule.prepare_data()
        datamodule.load_records()
        records = datamodule.records
        runs = plan_runs(self.protocol, records)
        split_files = {
            r.name: write_split_file(self.out / "splits" / f"{r.name}.csv", records, r.splits) for r in runs
        }
        if any(m in ADAPTERS for m in self.protocol.models):
            self.embeddings = self.backbone_embeddings(records)
        rows = []
        for model in self.protocol.models:
            for run in runs:
                folder = self.out / "runs" / model / run.name
                if model in ADAPTERS:
                    rows.append(self.adapter_row(model, run, records, folder))
                else:
                    rows += self.image_model_rows(model, run, split_files[run.name], folder)
                print(f"protocol {self.protocol.name}: {model} {run.name} done")
        return rows

    def backbone_embeddings(self, records: list[Record]) -> Embeddings:
        """The frozen backbone's embeddings of every image, from the shared cache when it has them."""
        datamodule, task = self.base.datamodule, self.base.model
        dataset = FundusDataset(
            records, datamodule.hparams.image_size, datamodule.eval_transform(), intake=datamodule.intake
        )
        identity = embedding_identity(
            clip_encoder(task.backbone), records, datamodule.splits, dataset.image_size
        )
        path = embedding_file(self.embedding_folder(), identity)
        return cached_embeddings(path, task, records, datamodule.splits, dataset, identity)

    def adapter_row(self, model: str, run: Run, records: list[Record], folder: Path) -> dict:
        """Fit and evaluate an adaptation model on the run's split of the embeddings."""
        position = {key: i for i, key in enumerate(self.embeddings.frame["image"])}
        frame_splits = [UNUSED] * len(self.embeddings.frame)
        for record, split in zip(records, run.splits, strict=True):
            frame_splits[position[image_key(record)]] = split
        document = evaluate_adapter(model, self.embeddings, frame_splits, folder, run.seed, self.spec)
        return self.row(model, run, document)

    def image_model_rows(self, model: str, run: Run, split_file: Path, folder: Path) -> list[dict]:
        """``fit`` then ``test`` on the run's split file; then a test per protocol ``tta`` set.

        Each further test is of the same checkpoint with test-time augmentation, reported as
        ``<model>+<set>``, so the pair is compared on the same runs like any two models.
        """
        args = [
            *self.stage_args(model),
            "--data.split_file",
            str(split_file),
            "--trainer.default_root_dir",
            str(folder),
            "--seed_everything",
            str(run.seed),
            "--model.init_args.bootstrap_resamples",
            str(self.spec.resamples),
        ]
        test_dirs: list[str] = []
        best = self.fit_then_test(args, test_dirs)
        rows = [self.row(model, run, json.loads((Path(test_dirs[-1]) / "metrics.json").read_text()))]
        for tta in self.protocol.tta:
            test = self.cli_class(["test", *args, "--ckpt_path", best, "--model.init_args.tta", tta])
            document = json.loads((Path(test.trainer.log_dir) / "metrics.json").read_text())
            rows.append(self.row(f"{model}+{tta}", run, document))
        return rows

    def embedding_folder(self) -> Path:
        """Where the backbone's embeddings are cached.

        Beside the intake cache (shared by every protocol of the same backbone and images), or in
        the report folder when the cache is off.
        """
        hp = self.base.datamodule.hparams
        return (
            Path(hp.cache_dir or default_cache_dir()) / "embeddings" if hp.cache else self.out / "embeddings"
        )

    def row(self, model: str, run: Run, document: dict) -> dict:
        """One line of runs.csv: what the run varied, its sizes, each metric and its bootstrap interval."""
        row = {
            "model": model,
            "model_name": document.get("model_name", model),
            "run": run.name,
            "seed": run.seed,
            "fold": run.fold,
            "held_out": run.held_out,
            "shots": run.shots,
            **split_counts(run.splits),
        }
        intervals = document.get("confidence_intervals") or {}
        for metric in self.protocol.metrics:
            row[metric] = document["metrics"].get(metric)
            low, high = intervals.get(metric) or (None, None)
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        return row
