"""Dataset sheets in another encoding, with a huge cell or with a million bad rows: named, briefly."""

from __future__ import annotations

import shutil

import pytest

from drgrade.data.sources.aptos import read as read_aptos
from drgrade.errors import DataValidationError


@pytest.fixture
def aptos(synthetic, tmp_path):
    root = tmp_path / "aptos2019"
    shutil.copytree(synthetic / "aptos2019", root)
    return root


def refused(root) -> str:
    with pytest.raises(DataValidationError) as error:
        read_aptos(root, verify_images=False)
    return str(error.value)


def test_a_utf16_sheet_with_its_mark_is_read(aptos):
    sheet = aptos / "train.csv"
    rows = len(read_aptos(aptos, verify_images=False).records)
    sheet.write_bytes(sheet.read_text().encode("utf-16"))  # a BOM, as spreadsheet programs write it
    assert len(read_aptos(aptos, verify_images=False).records) == rows


def test_a_cp1252_sheet_is_named_with_the_encoding_expected(aptos):
    sheet = aptos / "train.csv"
    lines = sheet.read_text().splitlines()
    lines[3] = lines[3] + ",caf\u00e9 \u201cnote\u201d"
    lines[0] = lines[0] + ",note"
    sheet.write_bytes("\n".join(lines).encode("cp1252"))
    said = refused(aptos)
    assert f"{sheet} line 4: not UTF-8 text (byte 0xe9)" in said and "CSV UTF-8" in said


def test_a_huge_cell_is_named_not_a_traceback(aptos):
    sheet = aptos / "train.csv"
    lines = sheet.read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ',"' + "9" * 200_000 + '"'
    sheet.write_text("\n".join(lines))
    said = refused(aptos)
    assert f"{sheet} line 3: not a readable CSV row (field larger than field limit" in said


def test_a_million_garbage_rows_give_a_short_message(aptos):
    sheet = aptos / "train.csv"
    garbage = "".join(f"{i:012x},x{i}\n" for i in range(1_000_000))
    sheet.write_text("id_code,diagnosis\n" + garbage)
    said = refused(aptos)
    assert len(said) < 20_000 and "... and 999970 more" in said and said.count("\n  - ") == 30


def test_an_exam_manifest_and_a_split_file_in_cp1252_are_named(tmp_path):
    from drgrade.data.split_file import read_split_file
    from drgrade.errors import OptionError
    from drgrade.exams import read_manifest

    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes("file,patient_id,eye\neye.png,Ren\u00e9e,left\n".encode("cp1252"))
    with pytest.raises(OptionError, match=r"line 2: not UTF-8 text \(byte 0xe9\)"):
        read_manifest(manifest)
    split = tmp_path / "split.csv"
    split.write_bytes("image,split\nna\u00efve.png,train\n".encode("cp1252"))
    with pytest.raises(OptionError, match=r"line 2: not UTF-8 text \(byte 0xef\)"):
        read_split_file(split, [])
