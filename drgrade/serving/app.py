"""The screening web page: drop fundus photographs, see grade, probabilities, referral, quality, attention.

Built on Gradio (``pip install drgrade[app]``); started by ``drgrade serve``. It binds to
127.0.0.1 unless told otherwise, says on the page that it is not a medical device, and keeps
no uploaded image after answering: each upload is deleted once graded, and Gradio's cache of
what the page displayed is purged every minute.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import matplotlib.pyplot as plt
import numpy as np

from drgrade.console import quiet_console
from drgrade.grades import GRADE_NAMES
from drgrade.predictions import PROB_COLUMNS, write_predictions
from drgrade.reporting.overlays import answer_card
from drgrade.serving.screening import Screening

NOTICE = (
    "**Research software, not a medical device.** drgrade's grades have not been validated for "
    "clinical use; every result needs review by a qualified grader."
)


def results_table(answers: list[Screening]) -> str:
    """The batch as an HTML table (``id="drgrade-results"``, one ``tr`` per file, in upload order)."""
    header = ["file", "grade", "grade name", "referable", "quality", *PROB_COLUMNS]
    lines = ['<table id="drgrade-results">', "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for answer in answers:
        row = answer.row
        name = html.escape(Path(row.file).name)
        if row.error:
            reason = html.escape(
                row.error.replace(f"{row.file}: ", "")
            )  # the server's temp path means nothing
            verdict = reason if reason.startswith("ungradable") else f"unreadable: {reason}"  # one prefix
            cells = [name, "", "", "", verdict, *([""] * len(PROB_COLUMNS))]
        else:
            decision = row.decision
            cells = [
                name,
                str(decision.grade),
                GRADE_NAMES[decision.grade],
                "yes" if decision.referable_by_score else "no",
                "gradable",
                *(f"{p:.4f}" for p in decision.probabilities),
            ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join([*lines, "</table>"])


def answer_batch(grade: Callable[[list[Path]], list[Screening]], uploads: list[str] | None, out: Path):
    """Grade the uploaded files, then delete them; returns (table HTML, gallery, CSV path).

    The cards are handed to the page as pixel arrays (nothing written here); only the CSV of
    grades, which holds no image, is written to ``out``.

    Args:
        grade: files -> answers (``screen_files`` bound to a model).
        uploads: the uploaded files' temporary paths.
        out: the folder of this page's CSV download.
    """
    paths = [Path(p) for p in uploads or []]
    try:
        answers = grade(paths)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    gallery = []
    for answer in answers:
        figure = answer_card(answer.row, answer.image, answer.attention, answer.method)
        figure.canvas.draw()
        gallery.append((np.asarray(figure.canvas.buffer_rgba())[..., :3].copy(), Path(answer.row.file).name))
        plt.close(figure)
    csv_path = write_predictions(out / "drgrade_predictions.csv", [a.row for a in answers])
    return results_table(answers), gallery, str(csv_path)


def build_app(grade: Callable[[list[Path]], list[Screening]], model_name: str) -> gr.Blocks:
    """The page: upload, grade button, results table, per-image cards, CSV download.

    Args:
        grade: files -> answers.
        model_name: shown in the heading.
    """
    quiet_console()
    with gr.Blocks(title="drgrade screening", delete_cache=(60, 60)) as page:
        gr.Markdown(f"# drgrade: diabetic retinopathy grading ({model_name})\n\n{NOTICE}")
        files = gr.File(label="fundus photographs", file_count="multiple", elem_id="drgrade-upload")
        button = gr.Button("Grade", variant="primary", elem_id="drgrade-grade")
        table = gr.HTML(elem_id="drgrade-table")
        cards = gr.Gallery(
            label="per image: attention overlay and probabilities",
            columns=2,
            object_fit="contain",
            height="auto",
        )
        download = gr.File(label="results as CSV")

        downloads = Path(tempfile.mkdtemp(prefix="drgrade-serve-"))

        def answer(uploads):
            return answer_batch(grade, uploads, downloads)

        button.click(answer, inputs=files, outputs=[table, cards, download])
    return page
