"""Names from files and folders: links named for what they are, escapes kept off the CSV, ids kept in."""

from __future__ import annotations

import os
import shutil

import pytest

from drgrade.data.images import list_images
from drgrade.data.sources.aptos import read as read_aptos
from drgrade.errors import DataValidationError
from drgrade.predictions import read_rows
from tests.integration.test_fail_safe import SANE, deploy, drgrade_metadata, fake_export


def test_a_link_to_a_device_is_not_called_dangling(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "gone_link.png")
    skipped = dict(list_images(tmp_path)[1])
    assert skipped[tmp_path / "zero.png"] == "a symbolic link to /dev/zero, which is not a regular file"
    assert skipped[tmp_path / "gone_link.png"] == "dangling symbolic link"


def test_escape_sequences_in_a_file_name_never_reach_the_csv(one_photograph, tmp_path):
    name = "eye\x1b[2J\x1b]0;owned\x07.png"
    shutil.copy(one_photograph / "eye.png", one_photograph / name)
    model = fake_export(tmp_path / "m.onnx", SANE, drgrade_metadata())
    deploy(model, one_photograph, tmp_path / "p.csv")
    raw = (tmp_path / "p.csv").read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw and "\u241b[2J".encode() in raw
    names = {os.path.basename(row["file"]) for row in read_rows(tmp_path / "p.csv")}
    assert name in names  # drgrade's own reader gets the real name back


def test_an_id_code_leaving_the_image_folder_is_refused(synthetic, tmp_path):
    root = tmp_path / "aptos2019"
    shutil.copytree(synthetic / "aptos2019", root)
    outside = tmp_path / "secret.png"
    shutil.copy(next((root / "train_images").iterdir()), outside)
    sheet = root / "train.csv"
    sheet.write_text(sheet.read_text() + "../../secret,0\n")
    with pytest.raises(DataValidationError, match=r"image id '\.\./\.\./secret' is not a plain file name"):
        read_aptos(root, verify_images=False)
