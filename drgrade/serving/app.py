"""The screening web page: drop fundus photographs, see grade, referral, certainty, quality, attention.

Built on Gradio (``pip install drgrade[app]``); started by ``drgrade serve``. It binds to
127.0.0.1 unless told otherwise and says on the page that it is not a medical device.

What the page keeps: nothing beyond a session. An upload is deleted (with the folder Gradio made
for it) when every session holding it has removed it from the field or closed the page, and any
left at exit are removed; the answer is served from memory (the cards as inline pictures, the
CSV as an inline download), so no picture or result is written to disk. Uploads are limited in
size (``MAX_UPLOAD``). The CSV has the prediction-file columns, with the uploaded file's own
name (never the server's path).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import html
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import matplotlib.pyplot as plt

from drgrade.console import quiet_console
from drgrade.decision.actions import NO_REFER, REFER, TO_GRADER, screener_reason
from drgrade.errors import OptionError
from drgrade.grades import GRADE_NAMES
from drgrade.predictions import PROB_COLUMNS, PredictionRow, csv_text
from drgrade.reporting.markup import md
from drgrade.reporting.overlays import answer_card
from drgrade.serving.exam_page import exam_table, manifest_ids, split_manifest, upload_name
from drgrade.serving.model_card import CONFIDENT_PROBABILITY, ModelCard
from drgrade.serving.screening import Screening

NOTICE = (
    "**Research software, not a medical device.** drgrade's grades have not been validated for "
    "clinical use; every result needs review by a qualified grader."
)
#: Largest upload accepted (a fundus photograph is a few MB; a 50 MB file is something else).
MAX_UPLOAD = "50mb"
#: The results table's columns (every decision column of the prediction files).
COLUMNS = (
    "file",
    "action",
    "grade",
    "grade name",
    "referable (by score)",
    "referable (by grade)",
    "P(referable)",
    "referral cut",
    "certainty",
    "uncertainty (nats)",
    "refer to grader",
    "quality",
    *PROB_COLUMNS,
)
STYLE = """
<style>
#drgrade-cards .card {display:inline-block; vertical-align:top; margin:4px; padding:6px;
  border:1px solid #ccc; border-radius:6px; max-width:560px; font-size:13px}
#drgrade-cards .card img {display:block; width:100%}
#drgrade-cards .action {font-weight:bold}
#drgrade-cards .refer {color:#b00020}
</style>
"""


def certainty(row: PredictionRow, card: ModelCard) -> str:
    """Confident only when it is (``ModelCard.confident``); otherwise which of the two tests failed."""
    decision = row.decision
    if card.confident(decision.probabilities, decision.uncertainty):
        return "confident"
    if decision.uncertainty > card.uncertainty_cut():
        return "uncertain: refer to a grader"
    return f"not confident (top probability under {CONFIDENT_PROBABILITY:.2f})"


def quality_text(row: PredictionRow) -> str:
    """The gate's verdict with one prefix: gradable, ungradable (why) or unreadable (why)."""
    if not row.error:
        return "gradable"
    return row.error if row.error.startswith(("ungradable", "not graded")) else f"unreadable: {row.error}"


def cut_text(card: ModelCard) -> str:
    """The referral cut as shown beside each P(referable): value and the sensitivity it was fitted for."""
    cut, goal = card.referable_cut()
    if cut is None:
        return "none (validation had no referable eye: the grade decides)"
    return f"{cut:.3f} (fitted on validation for {goal:.0%} sensitivity)"


def dme_cut_text(card: ModelCard) -> str:
    """The DME cut as shown beside P(DME) (none: validation had no DME eye to fit it on)."""
    return "none (validation had no DME eye)" if card.dme_cut is None else f"{card.dme_cut:.3f}"


def action_text(row: PredictionRow, card: ModelCard) -> str:
    """What to do with the photograph, in a screener's words, with the reason (the card's lead)."""
    decision = row.decision
    if decision is None:
        why, then = screener_reason(row.error)
        return f"Send to a grader: {why}. {then}"
    if row.action == TO_GRADER:
        return (
            f"Send to a grader: the model is unsure about this photograph (uncertainty "
            f"{decision.uncertainty:.2f} nats, over the validation cut {card.uncertainty_cut():.2f})."
        )
    cut, goal = card.referable_cut()
    grade = GRADE_NAMES[decision.grade]
    if cut is None:  # validation fitted no cut: the grade decides
        verdict = "is referable" if decision.referable_by_score else "is not referable"
        said = f"the grade {grade} {verdict} (validation fitted no referral cut)"
    else:
        side = "at or over" if decision.referable_by_score else "under"
        said = f"P(referable) {decision.p_referable:.3f} is {side} the cut {cut:.3f}"
    if row.action == NO_REFER:
        return f"No referral: {said}. Rescreen as scheduled."
    if not decision.referable_by_score:  # referred for diabetic macular edema alone
        return (
            f"Refer to an eye specialist: likely diabetic macular edema (P(DME) {decision.p_dme:.3f} "
            f"is at or over its cut {card.dme_cut:.3f}), although {said}."
        )
    if not decision.referable_by_grade:  # never "No DR" and "refer" without the reason
        said += (
            f"; the most likely grade alone ({grade}) would not refer, but the score rule refers it "
            f"to reach the programme's {goal:.0%} sensitivity"
        )
    return f"Refer to an eye specialist: {said}."


def results_table(answers: list[Screening], card: ModelCard) -> str:
    """The batch as an HTML table (``id="drgrade-results"``, one ``tr`` per file, in upload order)."""
    lines = [
        '<div style="overflow-x:auto"><table id="drgrade-results">',
        "<tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>",
    ]
    cut = card.referable_cut()[0]
    shown_cut = "" if cut is None else f"{cut:.3f}"
    for answer in answers:
        row, decision = answer.row, answer.row.decision
        if decision is None:
            cells = [row.file, row.action, *[""] * 8, "yes", quality_text(row), *([""] * len(PROB_COLUMNS))]
        else:
            cells = [
                row.file,
                row.action,
                str(decision.grade),
                GRADE_NAMES[decision.grade],
                "yes" if decision.referable_by_score else "no",
                "yes" if decision.referable_by_grade else "no",
                f"{decision.p_referable:.3f}",
                shown_cut,
                certainty(row, card),
                f"{decision.uncertainty:.2f}",
                "yes" if decision.refer_to_grader else "no",
                "gradable",
                *(f"{p:.4f}" for p in decision.probabilities),
            ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join([*lines, "</table></div>"])


def _inline_png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cards(answers: list[Screening], card: ModelCard) -> str:
    """One card per image, led by the action in words; then grade, P(referable) against its cut, certainty."""
    parts = [STYLE, '<div id="drgrade-cards">']
    for answer in answers:
        row, name = answer.row, html.escape(answer.row.file)
        style = "action refer" if row.action == REFER else "action"
        said = html.escape(action_text(row, card))
        lead = f'<div class="card"><span class="{style}">{said}</span><br><b>{name}</b>'
        if row.decision is None:
            parts.append(f"{lead}: not graded ({html.escape(quality_text(row))})</div>")
            continue
        decision = row.decision
        picture = _inline_png(
            answer_card(decision.probabilities, decision.grade, answer.image, answer.attention)
        )
        caption = "" if answer.attention is None else f" (attention: {html.escape(answer.method)})"
        dme = "" if decision.p_dme is None else f"; P(DME) {decision.p_dme:.3f}, DME cut {dme_cut_text(card)}"
        parts.append(
            f"{lead}: {GRADE_NAMES[decision.grade]}; P(referable) {decision.p_referable:.3f}, "
            f"referral cut {html.escape(cut_text(card))}{dme}; {html.escape(certainty(row, card))}{caption}"
            f'<img src="{picture}" alt="{name}"></div>'
        )
    return "\n".join([*parts, "</div>"])


def download_link(rows: list[PredictionRow]) -> str:
    """The batch's prediction CSV as an inline download (nothing written on the server)."""
    data = base64.b64encode(csv_text(rows).encode("utf-8", errors="surrogateescape")).decode()
    return (
        f'<a id="drgrade-csv" download="drgrade_predictions.csv" href="data:text/csv;base64,{data}">'
        "Download the results as CSV</a>"
    )


class Uploads:
    """Which page sessions hold each uploaded file; a file is deleted when none holds it any more.

    Gradio stores an upload under a folder named by its content, so two people uploading the same
    photograph (or one person pressing Grade twice) share one server path. A request therefore
    never deletes what it graded: the file belongs to the sessions that uploaded it, and goes when
    the last of them removes it from the upload field or closes the page (and at exit, whatever
    happened).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._holders: dict[Path, set[str]] = {}

    def hold(self, session: str, paths: list[Path]) -> None:
        """Record that ``session`` holds ``paths``."""
        with self._lock:
            for path in paths:
                self._holders.setdefault(path, set()).add(session)

    def release(self, session: str, keep: list[Path] = ()) -> None:
        """``session`` lets go of every file but ``keep``; files nobody holds are deleted."""
        with self._lock:
            for path, holders in list(self._holders.items()):
                if session in holders and path not in keep:
                    holders.discard(session)
                    if not holders:
                        del self._holders[path]
                        remove_upload(path)

    def remove_all(self) -> None:
        """Delete every file still held (the server is stopping)."""
        with self._lock:
            for path in self._holders:
                remove_upload(path)
            self._holders.clear()


def remove_upload(path: Path) -> None:
    """Delete an uploaded file and the folder Gradio made for it, once that folder is empty."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (another upload shares it) or already gone
        path.parent.rmdir()


#: The uploads of every page this process serves.
UPLOADS = Uploads()
atexit.register(UPLOADS.remove_all)


def upload_paths(uploads: list[dict] | None) -> list[Path]:
    """The server paths of the upload field's raw value."""
    return [Path(upload["path"]) for upload in uploads or []]


def answer_batch(
    grade: Callable[[list[Path]], list[Screening]], card: ModelCard, uploads: list[dict] | None, session: str
) -> tuple[str, str]:
    """Grade the uploaded files; returns (tables and CSV download, cards), as HTML.

    A ``.csv`` among the uploads is the batch's exam manifest (``file,patient_id,eye,field``): the
    photographs are grouped into exams and a table of per-eye and per-patient decisions is shown.

    Args:
        grade: files -> answers (``screen_files`` bound to a model).
        card: the model's card (the cuts each card shows).
        uploads: the upload field's raw value, one ``{"path", "orig_name", ...}`` per file. Taken
            raw (``preprocess=False``) because the File component's own preprocessing leaves an
            empty temporary file on the server per upload (Gradio 6), which would never be removed.
        session: the page session asking; it holds the files until it lets them go (``Uploads``).
    """
    uploads = uploads or []
    UPLOADS.hold(session, upload_paths(uploads))
    try:
        photos, manifest = split_manifest(uploads)
        ids = manifest_ids(photos, manifest)
    except OptionError as error:  # a manifest that cannot be used: say why, grade nothing
        return f'<p id="drgrade-error">{html.escape(str(error))}</p>', ""
    answers = grade(upload_paths(photos))
    for answer, upload, found in zip(answers, photos, ids, strict=True):  # the user's name, not the server's
        answer.row.file = upload_name(upload)
        if found is not None:
            answer.row.patient_id, answer.row.eye, answer.row.field = found.patient_id, found.eye, found.field
    rows = [a.row for a in answers]
    when = f'<p id="drgrade-when">{len(answers)} file(s) graded at {time.strftime("%H:%M:%S")}</p>'
    table = when + results_table(answers, card) + "<p>" + download_link(rows) + "</p>"
    if manifest is not None:
        table += exam_table(rows)
    return table, cards(answers, card)


def build_app(grade: Callable[[list[Path]], list[Screening]], card: ModelCard) -> gr.Blocks:
    """The page: model line, upload, grade button, results table with the CSV download, one card per image.

    Args:
        grade: files -> answers.
        card: the model's card (its line opens the page; its cuts are shown on each card).
    """
    quiet_console()
    legend = (
        f'Referral cut: {cut_text(card)}. "Confident" means uncertainty under the validation cut '
        f"({card.uncertainty_cut():.2f} nats) and top probability at least {CONFIDENT_PROBABILITY:.2f}."
    )
    with gr.Blocks(title="drgrade screening") as page:
        gr.HTML(f'<p id="drgrade-model">{html.escape(card.line())}</p>')
        gr.Markdown(f"# drgrade: diabetic retinopathy grading ({md(card.name)})\n\n{NOTICE}\n\n{legend}")
        files = gr.File(label="fundus photographs", file_count="multiple", elem_id="drgrade-upload")
        button = gr.Button("Grade", variant="primary", elem_id="drgrade-grade")
        table = gr.HTML(elem_id="drgrade-table")
        shown = gr.HTML(elem_id="drgrade-pictures")

        # the field's files belong to this session until removed from it or the page closes
        def keep_field(uploads: list[dict] | None, request: gr.Request) -> None:
            UPLOADS.release(request.session_hash, keep=upload_paths(uploads))

        def hold_field(uploads: list[dict] | None, request: gr.Request) -> None:
            UPLOADS.hold(request.session_hash, upload_paths(uploads))

        def answer(uploads: list[dict] | None, request: gr.Request) -> tuple[str, str]:
            return answer_batch(grade, card, uploads, request.session_hash)

        def close(request: gr.Request) -> None:
            UPLOADS.release(request.session_hash)

        files.change(keep_field, inputs=files, preprocess=False)
        files.upload(hold_field, inputs=files, preprocess=False)
        button.click(answer, inputs=files, outputs=[table, shown], preprocess=False)
        page.unload(close)
    return page
