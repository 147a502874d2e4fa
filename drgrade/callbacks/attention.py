"""``AttentionWriter``: attention maps, overlays and lesion-mass scores of a predict run.

During a predict run, each image's attention map, overlay and lesion-mass score, written per model as
``attention.npz``, ``explain.csv`` and ``overlays/``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
from lightning.pytorch.callbacks import Callback

from drgrade.evaluation.metrics import lesion_mass_fraction
from drgrade.files import atomic_open, save_figure
from drgrade.grades import GRADE_NAMES
from drgrade.predictions import Decision, PredictionRow, checked_decisions, write_predictions
from drgrade.reporting.overlays import display_images, overlay_figure


class AttentionWriter(Callback):
    """Collect ``attention_maps`` of every predicted batch and write them at the end.

    Args:
        out: this model's output folder.
        name: the model's display name.
        overlays: also save one overlay PNG per image (named ``<index>_<stem>.png``, so two
            files called ``same.png`` in different folders never overwrite each other).
        origin: the model's checkpoint as result files name it (``checkpoint_label``).
    """

    def __init__(self, out: str | Path, name: str, overlays: bool = True, origin: str = ""):
        super().__init__()
        self.out, self.name, self.overlays, self.origin = Path(out), name, overlays, origin
        self.rows: list[PredictionRow] = []
        self.maps: dict[int, np.ndarray] = {}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Compute the batch's maps and keep one row per image, with the rule's decision."""
        maps, logits, method = pl_module.attention_maps(batch["image"])
        decided = checked_decisions(
            pl_module.rule(logits), pl_module.rule.thresholds.tolist(), **pl_module.clinical_cuts()
        )
        records = trainer.predict_dataloaders.dataset.records
        masks = batch.get("mask")
        for i, index in enumerate(batch["index"].tolist()):
            record = records[index]
            row = PredictionRow(
                str(record.path),
                true_grade=record.grade,
                source=record.source,
                patient_id=record.patient_id if record.source else "",
                model=self.name,
                checkpoint=self.origin,
            )
            if batch["error"][i] or isinstance(decided[i], str):
                row.error = batch["error"][i] or decided[i]
                row.extra = self._extra("")
                self.rows.append(row)
                continue
            mass, area = "", ""
            if masks is not None and bool(masks[i].any()):
                mass = f"{float(lesion_mass_fraction(maps[i : i + 1], masks[i : i + 1])):.4f}"
                area = f"{float(masks[i].float().mean()):.4f}"
            self.maps[index] = maps[i].cpu().numpy().astype(np.float16)
            row.decision, row.extra = decided[i], self._extra(method, mass, area)
            self.rows.append(row)
            if self.overlays:
                self._save_overlay(
                    index, record, batch["image"][i : i + 1], maps[i], method, decided[i], pl_module
                )

    def _extra(self, method: str, mass: str = "", area: str = "") -> dict:
        return {"method": method, "lesion_mass": mass, "lesion_area": area}

    def _save_overlay(self, index, record, image, attention, method, decision: Decision, task) -> None:
        true = "" if record.grade < 0 else f"true {GRADE_NAMES[record.grade]} | "
        grade = decision.grade
        caption = f"{true}predicted {GRADE_NAMES[grade]} ({decision.probabilities[grade]:.2f})"
        figure = overlay_figure(
            display_images(image, *task.normalisation())[0],
            attention.cpu().numpy(),
            f"{self.name}: {method}",
            caption,
        )
        save_figure(figure, self.out / "overlays" / f"{index:05d}_{record.path.stem}.png", dpi=100)
        plt.close(figure)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write attention.npz and explain.csv."""
        self.out.mkdir(parents=True, exist_ok=True)
        indices = sorted(self.maps)
        with atomic_open(self.out / "attention.npz", "wb") as f:
            np.savez_compressed(
                f,
                index=np.array(indices, dtype=np.int64),
                maps=np.stack([self.maps[i] for i in indices]) if indices else np.zeros((0, 1, 1)),
            )
        write_predictions(self.out / "explain.csv", self.rows)
