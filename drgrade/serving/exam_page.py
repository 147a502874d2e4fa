"""The screening page's exams: a batch uploaded with its manifest, decided per eye and per patient.

Gradio-free, so it is tested without a browser. The manifest is the same ``file,patient_id,eye,
field`` CSV ``predict`` and ``deploy`` take (``drgrade.exams``), matched by the uploaded files'
own names; its server-side path never appears in a message.
"""

from __future__ import annotations

import html
from pathlib import Path

from drgrade.errors import OptionError
from drgrade.exams import EYES, ExamIds, decide_exams, exam_ids
from drgrade.predictions import PredictionRow


def upload_name(upload: dict) -> str:
    """The name the user's file had (never the server's temporary path)."""
    return upload.get("orig_name") or Path(upload["path"]).name


def split_manifest(uploads: list[dict]) -> tuple[list[dict], dict | None]:
    """(the photographs, the exam manifest: the one ``.csv`` among the uploads, or None)."""
    manifests = [u for u in uploads if upload_name(u).lower().endswith(".csv")]
    if len(manifests) > 1:
        raise OptionError(f"{len(manifests)} CSV files uploaded; give one exam manifest")
    return [u for u in uploads if u not in manifests], (manifests[0] if manifests else None)


def manifest_ids(photos: list[dict], manifest: dict | None) -> list[ExamIds | None]:
    """Each photograph's patient and eye from the uploaded manifest (None without one)."""
    if manifest is None:
        return [None] * len(photos)
    try:
        return exam_ids([upload_name(u) for u in photos], manifest=manifest["path"])
    except OptionError as error:
        raise OptionError(str(error).replace(str(manifest["path"]), upload_name(manifest))) from None


def exam_table(rows: list[PredictionRow]) -> str:
    """The exams of a batch as an HTML table (``id="drgrade-exams"``, one ``tr`` per patient)."""
    exams = decide_exams([row.as_dict() for row in rows])
    header = ["patient", "left eye", "right eye", "patient decision", "why"]
    lines = ['<table id="drgrade-exams">', "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for exam in exams:
        why = "; ".join(f"{eye or 'eye unknown'}: {reason}" for eye, (_, reason) in exam.eyes.items())
        eyes = [exam.eyes.get(eye, ("no photograph", ""))[0] for eye in EYES]
        cells = [exam.patient_id, *eyes, exam.decision, why]
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "<h3>Exams (per patient)</h3>" + "\n".join([*lines, "</table>"])
