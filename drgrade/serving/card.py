"""The model card every ``drgrade export`` writes: what the model is for, what it was trained and tested on.

A card (Mitchell et al. 2019, "Model Cards for Model Reporting") travels with the model twice:
as ``<model>.card.md`` beside the ONNX file and as the same facts, in JSON, in the ONNX metadata
(``model_card``), so a copied model file still says what it is. The JSON follows the sections of
a card and borrows the field names of a MONAI bundle's ``metadata.json`` where they mean the same
(``version``, ``task``, ``description``, ``intended_use``, ``data_source``, ``network_data_format``).

Every fact is read, never recomputed: the checkpoint's own record (weights and their digests,
code version), the decision rule, and the newest evaluation of this very checkpoint (a
``metrics.json`` whose provenance names the checkpoint's SHA-256) for the data per source, the
test figures with their intervals and the pretraining overlap. A model with no evaluation says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from drgrade.data.sources import SOURCES
from drgrade.decision.outputs import P_DME
from drgrade.provenance import code_version, now
from drgrade.reporting.provenance import code_text, weights_text
from drgrade.serving.model_card import data_words, training_words

NOT_A_MEDICAL_DEVICE = (
    "Research software, not a medical device: its grades have not been validated for clinical use, "
    "and every result needs review by a qualified grader."
)
INTENDED_USE = (
    "Grading colour fundus photographs for diabetic retinopathy (5 grades, ICDR scale) and flagging "
    "referable disease, for research and as a second reader in screening programmes under the "
    "supervision of qualified graders."
)
OUT_OF_SCOPE = (
    "Diagnosis without a human grader; other eye diseases; OCT, fluorescein angiography or "
    "non-fundus images (the quality gate refuses many, not all); populations and cameras unlike "
    "the training data."
)
#: Test figures the card lists, in order (metrics.json names -> card labels).
FIGURES = {
    "qwk": "quadratic weighted kappa",
    "accuracy": "accuracy",
    "referable_sensitivity": "referable DR sensitivity",
    "referable_specificity": "referable DR specificity",
    "referable_auroc": "referable DR AUROC",
    "auroc_macro": "macro AUROC",
}


def find_evaluation(checkpoint: str | Path, digest: str) -> Path | None:
    """The newest metrics.json under the checkpoint's run root that evaluated this checkpoint.

    A test is preferred to a validation. The run root is the folder of the checkpoint's
    ``version_N`` folder (``runs/<model>``), where ``drgrade test --ckpt_path`` writes too.

    Args:
        checkpoint: the checkpoint file.
        digest: its SHA-256.
    """
    root = Path(checkpoint).resolve().parent.parent.parent
    found = []
    for path in root.glob("*/metrics.json"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        label = str((document.get("provenance") or {}).get("checkpoint") or "")
        if label.endswith(f"sha256:{digest}"):
            found.append((document.get("stage") == "test", path.stat().st_mtime_ns, path))
    return max(found)[2] if found else None


def card_facts(task, image_size: int, evaluation: Path | None, origin: str = "") -> dict:
    """The card's facts as JSON values (the ONNX metadata's ``model_card``).

    Args:
        task: the exported task (``weights_record``, ``rule``, ``normalisation``).
        image_size: the network input side.
        evaluation: this checkpoint's metrics.json, or None when it was never evaluated.
        origin: the checkpoint exported, as result files name it (``checkpoint_label``).
    """
    document = json.loads(evaluation.read_text()) if evaluation else {}
    provenance = document.get("provenance") or {}
    members = getattr(task, "members", None)
    data = provenance.get("data") or {}
    mean, std = task.normalisation()
    facts = {
        "version": code_version(),
        "date": now(),
        "name": task.display_name,
        "task": "diabetic retinopathy grading (5 grades) with a referral decision",
        "description": f"{type(task).__name__} exported by drgrade",
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "medical_device": NOT_A_MEDICAL_DEVICE,
        "checkpoint": origin,
        "weights": task.weights_record,
        "members": [m.weights_record for m in members] if members is not None else None,
        # the checkpoint's own record of its training (the page's model line, ``ModelCard``)
        "training": training_words(task),
        "training_data": task.training_data,
        "data_source": data.get("sources") or {},
        "decision_rule": task.rule.describe(),
        "dme_cut": task.dme_cut_value() if task.has_dme else None,  # None: no DME output, or unfitted
        "evaluation": _evaluation(document, evaluation),
        "limitations": limitations(task, document),
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "RGB fundus crop, normalised",
                    "num_channels": 3,
                    "spatial_shape": [image_size, image_size],
                    "dtype": "float32",
                    "normalisation": {"mean": list(mean), "std": list(std)},
                }
            },
            "outputs": {name: {"type": "tensor"} for name in output_names(task)},
        },
    }
    return facts


def output_names(task) -> list[str]:
    """The exported graph's outputs the card lists: the rule's, then ``p_dme`` for a DME output."""
    return [*task.rule.describe()["outputs"], *([P_DME] if task.has_dme else [])]


def _evaluation(document: dict, path: Path | None) -> dict | None:
    """The figures of the evaluation with their intervals, its split and bootstrap unit."""
    if not document:
        return None
    metrics, intervals = document.get("metrics") or {}, document.get("confidence_intervals") or {}
    bootstrap = document.get("bootstrap") or {}
    return {
        "file": str(path),
        "split": document.get("stage"),
        "images": metrics.get("num_images"),
        "figures": {
            name: {"value": metrics.get(name), "interval": intervals.get(name)}
            for name in FIGURES
            if metrics.get(name) is not None
        },
        "interval_level": bootstrap.get("level"),
        "bootstrap_unit": bootstrap.get("unit"),
        "units": bootstrap.get("units"),
        # the DME output's own figures on the images graded for DME (``drgrade.evaluation.dme``)
        "dme": document.get("dme"),
    }


def limitations(task, document: dict) -> list[str]:
    """What the card's reader must know: synthetic data, random weights, overlap, sources never seen."""
    provenance = document.get("provenance") or {}
    sources = (provenance.get("data") or {}).get("sources") or {}
    found = []
    # the evaluation's sources, else (never tested) those the checkpoint records it was fitted on
    fitted = {name for name, synthetic in (task.training_data or {}).items() if synthetic}
    synthetic = sorted({name for name, source in sources.items() if source.get("synthetic")} | fitted)
    if synthetic:
        found.append(
            f"trained{' and tested' if sources else ''} on SYNTHETIC photographs ({', '.join(synthetic)}): "
            "its figures say nothing about real eyes"
        )
    records = [m.weights_record for m in getattr(task, "members", None) or []] or [task.weights_record]
    if any(record and record.get("weights") == "random" for record in records):
        found.append("a backbone started from random weights (no pretraining): a test model, not a grader")
    if not document:
        found.append("never evaluated: no metrics.json of this checkpoint was found (run `drgrade test`)")
    overlap = document.get("pretraining_overlap")
    if overlap:
        found.append(overlap["note"])
    pretrained_on = sorted({name for record in records if record for name in record.get("pretraining", [])})
    if pretrained_on:
        found.append(f"the backbone's pretraining saw {', '.join(pretrained_on)} photographs")
    never = [name for name in SOURCES if name not in sources]
    if sources and never:
        found.append(
            f"never trained or tested on {', '.join(never)}, nor on any camera or population unlike "
            "those of its sources"
        )
    found.append("grades one photograph at a time; photographs the quality gate refuses are not graded")
    return found


def card_markdown(facts: dict) -> str:
    """The card as Markdown (``<model>.card.md``), section by section after Mitchell et al. 2019."""
    rule = facts["decision_rule"]
    lines = [
        f"# Model card: {facts['name']}",
        "",
        f"**{facts['medical_device']}**",
        "",
        "## Model details",
        f"- {facts['description']}; {facts['task']}",
        f"- Checkpoint: {facts['checkpoint'] or 'none (exported without a checkpoint)'}",
        f"- Backbone and weights: {weights_text(facts['weights'], facts['members'])}",
        f"- Code: {code_text(facts['version'])}; card written {facts['date']}",
        "",
        "## Intended use",
        f"- {facts['intended_use']}",
        f"- Out of scope: {facts['out_of_scope']}",
        "",
        "## Training data",
        *_training_data(facts),
        "",
        "## Decision rule",
        f"- temperature {rule['temperature']:.4g}; thresholds {[round(t, 4) for t in rule['thresholds']]}",
    ]
    for point in rule["operating_points"]:
        cut = "not fitted" if point["cut"] is None else f"cut {point['cut']:.4g}"
        lines.append(f"- {point['level']}: {point['target']} {point['goal']} on validation ({cut})")
    cutoff = rule["uncertainty_cutoff"]
    lines.append(
        f"- refer to a grader above entropy {cutoff:.4g}" if cutoff is not None else "- no uncertainty cut"
    )
    if facts.get("dme_cut") is not None:
        lines.append(f"- DME: P(DME) at or over {facts['dme_cut']:.4g} (fitted on validation)")
    lines += ["", "## Quantitative analysis"]
    lines += _figures(facts["evaluation"])
    lines += ["", "## Caveats and recommendations", *(f"- {text}" for text in facts["limitations"])]
    return "\n".join(lines) + "\n"


def _training_data(facts: dict) -> list[str]:
    """The card's training data lines.

    The evaluation's sources with their images per split; never tested, the sources the
    checkpoint records it was fitted on.
    """
    sources = facts["data_source"]
    if sources:
        return [
            "| Source | Synthetic | Train | Validation | Test |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {'yes' if s.get('synthetic') else 'no'} | {s.get('train')} | {s.get('val')} | "
                f"{s.get('test')} |"
                for name, s in sources.items()
            ),
        ]
    if facts["training_data"]:
        return [
            f"- {data_words(facts['training_data'])}: the sources it was fitted on (images per split are "
            "recorded by `drgrade test` of this checkpoint)"
        ]
    return ["- not recorded (no evaluation of this checkpoint was found)"]


def _figures(evaluation: dict | None) -> list[str]:
    if evaluation is None:
        return ["- no evaluation of this checkpoint was found"]
    level = evaluation.get("interval_level") or 0.95
    lines = [
        f"{evaluation['split']} split, {evaluation['images']} images ({evaluation['file']}); "
        f"{level:.0%} bootstrap intervals, resampling by {evaluation['bootstrap_unit']}",
        "",
        f"| Figure | Value | {level:.0%} interval |",
        "|---|---|---|",
    ]
    for name, figure in evaluation["figures"].items():
        interval = figure["interval"]
        shown = f"{interval[0]:.3f} to {interval[1]:.3f}" if interval else "undefined"
        lines.append(f"| {FIGURES[name]} | {figure['value']:.3f} | {shown} |")
    return lines + _dme_figures(evaluation.get("dme"))


def _dme_figures(section: dict | None) -> list[str]:
    """The DME output's figures (Wilson 95% intervals), on the images whose source grades DME."""
    if not section:
        return []
    auroc = "undefined" if section["auroc"] is None else f"{section['auroc']:.3f}"
    lines = [
        "",
        f"DME, on the {section['labelled_images']} images graded for it ({section['positives']} with DME): "
        f"AUROC {auroc}",
    ]
    point = section.get("operating_point")
    for name in ("sensitivity", "specificity") if point else ():
        value, interval = point[name], point[f"{name}_ci"]
        shown = "undefined" if value is None else f"{value:.3f}"
        within = f" (Wilson 95% {interval[0]:.3f} to {interval[1]:.3f})" if interval else ""
        lines.append(f"- DME {name} at the validation cut {point['threshold']:.3f}: {shown}{within}")
    return lines


def card_summary(facts: dict) -> str:
    """A few lines for ``drgrade serve``: the model, the statement, the key figures, the first caveats."""
    evaluation = facts.get("evaluation")
    figures = (evaluation or {}).get("figures") or {}
    shown = ", ".join(
        f"{FIGURES[name]} {figure['value']:.3f}"
        + (f" [{figure['interval'][0]:.3f}, {figure['interval'][1]:.3f}]" if figure["interval"] else "")
        for name, figure in figures.items()
        if name in ("qwk", "referable_sensitivity", "referable_specificity")
    )
    tested = (
        f"{evaluation['split']} ({evaluation['images']} images): {shown}" if evaluation else "never evaluated"
    )
    return "\n".join(
        [
            f"model card: {facts['name']} ({facts['checkpoint'] or 'no checkpoint'})",
            f"  {facts['medical_device']}",
            f"  tested: {tested}",
            *(f"  caveat: {text}" for text in facts["limitations"][:3]),
        ]
    )


def card_path(model: str | Path) -> Path:
    """Where a model's card goes: ``ranking.onnx`` -> ``ranking.card.md``."""
    model = Path(model)
    return model.with_name(f"{model.stem}.card.md")
