"""``PredictionWriter``: ``drgrade predict``'s one predictions.csv, from per-process shards, resumable.

Every process (DDP rank, on one machine or many) appends each batch's results to its own shard
(``drgrade.shards``) as the batch ends; when all processes are done, rank 0 merges the shards into
one predictions.csv in input order, each photograph once. A run that was killed is resumed by the
same command: at setup, the photographs the shards already hold are taken out of the prediction
dataset (on every rank alike, before any rank writes), so only what is missing is graded, and the
merged file is the one an uninterrupted run writes. Each shard result keeps the whole decision
(P(DME), the DME and vtDR flags included), so a resumed merge writes the same actions; the exams
(``drgrade.exams``) are decided from the merged rows into exams.csv beside predictions.csv.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import Subset

from drgrade.callbacks.writer import RunWriter
from drgrade.data.dataset import EXAM_SEPARATOR
from drgrade.data.intake import INTAKE_VERSION, file_identity
from drgrade.errors import DrgradeError
from drgrade.exams import exam_summary, exams_path, write_exams
from drgrade.predictions import (
    Decision,
    PredictionRow,
    checked_decisions,
    ungradable_summary,
    write_predictions,
)
from drgrade.shards import Result, ShardStore

#: Seconds between two progress lines.
PROGRESS_EVERY = 10.0


def named_patient(record) -> str:
    """The record's patient when its data or the exam manifest names one (else empty: a plain file)."""
    return "" if not record.source and record.patient_id == str(record.path) else record.patient_id


def identity_of(path: Path) -> str:
    """A file version's identity for the shards (``missing:<path>`` when it cannot be examined)."""
    try:
        return file_identity(Path(path))
    except OSError:
        return f"missing:{path}"


def weights_digest(module: L.LightningModule) -> str:
    """SHA-256 of a model's parameters and buffers (its decision rule included), by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"weights sha256:{digest.hexdigest()}"


def shard_identity(trainer: L.Trainer, task, origin: str = "") -> dict:
    """What makes a shard's results valid: the checkpoint (or the weights), the options, the data settings."""
    data = trainer.datamodule.hparams if trainer.datamodule is not None else {}
    return {
        "model": type(task).__name__,
        "checkpoint": origin or weights_digest(task),
        "options": dict(task.hparams),
        "image_size": data.get("image_size"),
        "quality_gate": data.get("quality_gate"),
        "intake_version": INTAKE_VERSION,
    }


class Progress:
    """done / total, rate and time left, printed at most every ``PROGRESS_EVERY`` seconds (rank 0)."""

    def __init__(self, total: int, before: int):
        self.total, self.before, self.done = total, before, before
        self.start = self.printed = time.monotonic()

    def update(self, graded: int, final: bool = False) -> None:
        """Count ``graded`` more photographs (all ranks together); print when due."""
        self.done = min(self.total, self.done + graded)
        now = time.monotonic()
        if not final and now - self.printed < PROGRESS_EVERY:
            return
        self.printed = now
        rate = (self.done - self.before) / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        when = "done" if self.done == self.total else f"about {_duration(left)} left"
        earlier = f" ({self.before:,} from an earlier run)" if self.before else ""
        print(f"graded {self.done:,}/{self.total:,} photographs{earlier}, {rate:.1f}/s, {when}", flush=True)


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class PredictionWriter(BasePredictionWriter, RunWriter):
    """One row per input image: grade, probabilities, referable flag, or the error.

    Rows are in dataset order, each image once; shards live in
    ``<trainer.default_root_dir>/shards/<model key>/``. A model that grades no DR (the
    quality model) is left alone.

    Args:
        folder: where predictions.csv and exams.csv go (default: the run folder).
        copy_to: also write the predictions to this file (``predict --out``; the engine sets it).
    """

    def __init__(self, folder: str | Path | None = None, copy_to: str | Path | None = None) -> None:
        BasePredictionWriter.__init__(self, write_interval="batch")
        RunWriter.__init__(self, folder)
        self.copy_to = None if copy_to is None else Path(copy_to)
        self.store: ShardStore | None = None
        self.records: list = []
        self.identities: list[str] = []
        self.progress: Progress | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Open the model's shards and leave out of the prediction dataset what they hold already."""
        if stage != "predict" or not pl_module.grades_dr:
            return
        trainer.predict_loop.return_predictions = False  # the rows are in the shards, not in memory
        self.store = ShardStore(trainer.default_root_dir, shard_identity(trainer, pl_module, self.origin))
        datamodule = trainer.datamodule
        if datamodule is None:  # dataloaders given directly (explain): nothing to resume
            return
        dataset = datamodule.datasets["predict"]
        self.records = dataset.records
        self.identities = [identity_of(r.path) for r in self.records]
        done = {result.identity for result in self.store.results()}
        missing = [i for i, identity in enumerate(self.identities) if identity not in done]
        before = len(self.records) - len(missing)
        if before:
            datamodule.datasets["predict"] = Subset(dataset, missing)
            if trainer.is_global_zero:
                print(
                    f"resuming: {before:,} of {len(self.records):,} photographs "
                    f"are graded already ({self.store.folder})"
                )
        self.progress = Progress(len(self.records), before) if trainer.is_global_zero else None
        if not missing:  # Lightning runs no prediction loop over no batches: the file is written now
            self.finish(trainer, pl_module)
            # and the empty loader is intended: Lightning's warning about it would only alarm
            warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        """Append the batch's results to this process's shard."""
        if self.store is None:
            return
        if not self.records:  # dataloaders given directly: their dataset's records
            self.records = trainer.predict_dataloaders.dataset.records
            self.identities = [identity_of(r.path) for r in self.records]
        p_dme = prediction.get("p_dme")
        decided = checked_decisions(
            prediction["outputs"],
            pl_module.rule.thresholds.tolist(),
            p_dme=None if p_dme is None else p_dme.tolist(),
            **pl_module.clinical_cuts(),
        )
        qualities = prediction["quality"].tolist() if prediction.get("quality") is not None else None
        results = []
        for i, index in enumerate(prediction["index"].tolist()):
            decision = decided[i]
            error = prediction["error"][i] or (decision if isinstance(decision, str) else "")
            results.append(
                Result(
                    self.identities[index],
                    prediction["digest"][i],
                    error,
                    None if error else asdict(decision),
                    None if qualities is None else qualities[i],
                    tuple(prediction["exam"][i].split(EXAM_SEPARATOR)),
                )
            )
        self.store.append(trainer.global_rank, results)
        if self.progress is not None:
            self.progress.update(len(results) * trainer.world_size)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        """When every process has written its shard, merge the shards into predictions.csv (rank 0)."""
        if self.store is None:
            return
        trainer.strategy.barrier("prediction shards written")
        self.finish(trainer, pl_module)

    def finish(self, trainer: L.Trainer, pl_module) -> None:
        """Merge the shards into predictions.csv on rank 0 (every rank calls it: a collective)."""
        path = self.out(trainer) / "predictions.csv"  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        if self.progress is not None:
            self.progress.update(0, final=True)
        rows = self.merged(trainer)
        write_predictions(path, rows, pl_module.display_name, self.origin)
        exams = write_exams(exams_path(path), [row.as_dict() for row in rows])
        print(f"predictions for {len(rows)} image(s) written to {path}: {ungradable_summary(rows)}")
        if self.copy_to:
            write_predictions(self.copy_to, rows)
            print(f"and copied to {self.copy_to}")
        print(f"{exam_summary(exams)} in {exams_path(path)}")
        if rows and all(row.error for row in rows):
            raise DrgradeError(f"no image could be graded; every reason is in {path}")

    def merged(self, trainer: L.Trainer) -> list[PredictionRow]:
        """One row per input record, in input order, from the shards; then the skipped folder entries."""
        found = {result.identity: result for result in self.store.results()}
        rows = []
        for record, identity in zip(self.records, self.identities, strict=True):
            result = found.get(identity)
            if result is None:  # cannot happen unless a shard was removed while the run went on
                rows.append(
                    PredictionRow(str(record.path), error=f"not graded: no result in {self.store.folder}")
                )
                continue
            patient, eye, date = result.exam  # a DICOM header's; the dataset's or manifest's first
            row = PredictionRow(
                str(record.path),
                None if result.decision is None else _decision(result.decision),
                record.grade,
                record.source,
                result.error,
                patient_id=named_patient(record) or patient,
                quality=result.quality,
                eye=record.eye or eye,
                field=record.field,
                study_date=date,
                true_dme=record.dme,  # where the source grades DME, as the true grade: a file to score
            )
            rows.append(row)
        skipped = trainer.datamodule.skipped if trainer.datamodule is not None else []
        return rows + [PredictionRow(str(path), error=f"skipped: {reason}") for path, reason in skipped]


def _decision(fields: dict) -> Decision:
    return Decision(**{**fields, "probabilities": tuple(fields["probabilities"])})
