"""The web page: a request deletes nothing another session (or a second press) still needs."""

from __future__ import annotations

import shutil
from functools import partial

from drgrade.serving.app import UPLOADS, answer_batch
from drgrade.serving.model_card import card_of_task
from drgrade.serving.screening import screen_files
from drgrade.tasks import load_task


def test_two_sessions_sharing_an_upload_and_a_second_press_all_grade(
    zero_shot_checkpoint, synthetic, tmp_path
):
    # Gradio keeps an upload under a folder named by its content: two people uploading the same
    # photograph under the same name share this one server path
    shared = tmp_path / "gradio" / "0f3c" / "eye.png"
    shared.parent.mkdir(parents=True)
    shutil.copy(next((synthetic / "aptos2019" / "train_images").iterdir()), shared)
    upload = [{"path": str(shared), "orig_name": "eye.png"}]
    task = load_task(zero_shot_checkpoint).eval()
    grade = partial(screen_files, task, image_size=96)
    card = card_of_task(task)

    first, _ = answer_batch(grade, card, upload, "session-a")
    second, _ = answer_batch(grade, card, upload, "session-b")
    again, _ = answer_batch(grade, card, upload, "session-b")  # the same person presses Grade twice
    for table in (first, second, again):
        assert "gradable" in table and "not found" not in table
    assert again.split("</p>", 1)[1] == second.split("</p>", 1)[1]  # all but when it answered

    UPLOADS.release("session-a")  # the first person closes the page: the second still holds it
    assert shared.is_file()
    answer_batch(grade, card, upload, "session-b")
    UPLOADS.release("session-b", keep=[shared])  # still in b's upload field
    assert shared.is_file()
    UPLOADS.release("session-b")  # b removes it from the field (or closes the page)
    assert not shared.exists() and not shared.parent.exists()  # nothing kept on the server
