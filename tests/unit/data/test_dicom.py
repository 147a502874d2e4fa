"""DICOM photographs read like any photograph: pixels, photometric interpretation, bit depth, exam, refusals.

pydicom's own test files supply a colour JPEG-baseline file (YBR_FULL), an uncompressed
YBR_FULL_422 one and a CT to refuse; scikit-image's real photograph (retina.jpg) is written as an
Ophthalmic Photography DICOM with patient and laterality tags and must grade like its pixels as PNG.
"""

from __future__ import annotations

import numpy as np
import pydicom  # the [dicom] extra (part of dev)
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage import data as skdata

from drgrade.data.dicom import to_rgb8
from drgrade.data.images import ImageReadError, list_images, read_header, read_rgb, write_rgb
from drgrade.data.intake import take_in
from tests.conftest import predict_folder, with_typicality_cut

OPHTHALMIC_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
RETINA = skdata.retina()  # 1411x1411 RGB, a normal left eye (public domain)


def write_dicom(path, pixels: np.ndarray, photometric: str = "RGB", bits: int = 8, **tags) -> None:
    """An uncompressed Ophthalmic Photography DICOM of ``pixels`` (tags override the defaults)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_8BIT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = OPHTHALMIC_8BIT, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OP"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)


def relabelled(name: str, path, modality: str = "OP") -> Dataset:
    """A pydicom test file saved as ``path`` with its Modality changed (its pixel data untouched)."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.Modality = modality
    ds.save_as(path)
    return ds


def test_the_real_photograph_as_dicom_is_taken_in_like_its_png(tmp_path):
    write_dicom(tmp_path / "eye.dcm", RETINA, PatientID="P-0042", Laterality="L", StudyDate="20240131")
    write_rgb(tmp_path / "eye.png", RETINA)
    assert np.array_equal(read_rgb(tmp_path / "eye.dcm"), RETINA)
    crop_dicom, dicom = take_in(tmp_path / "eye.dcm", 224)
    crop_png, png = take_in(tmp_path / "eye.png", 224)
    assert dicom.error == "" and np.array_equal(crop_dicom, crop_png)
    assert dicom.measured == png.measured and (dicom.width, dicom.height) == (1411, 1411)
    assert (dicom.patient_id, dicom.eye, dicom.study_date) == ("P-0042", "left", "2024-01-31")
    assert (png.patient_id, png.eye, png.study_date) == ("", "", "")


def test_image_laterality_names_the_eye_when_laterality_is_absent(tmp_path):
    write_dicom(tmp_path / "eye.dcm", RETINA[:200, :200], ImageLaterality="R", PatientID="P-1")
    header = read_header((tmp_path / "eye.dcm").read_bytes(), tmp_path / "eye.dcm")
    assert header.format == "DICOM" and (header.width, header.height) == (200, 200)
    assert header.exam.eye == "right" and header.exam.patient_id == "P-1" and header.exam.study_date == ""


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_pydicom_colour_files_are_rgb_whatever_their_encoding(name, tmp_path):
    ds = relabelled(name, tmp_path / "photo.dcm")
    assert ds.PhotometricInterpretation.startswith("YBR_FULL")
    pixels = read_rgb(tmp_path / "photo.dcm")
    assert pixels.shape == (100, 100, 3) and pixels.dtype == np.uint8
    # SC_rgb's bands: red, then light red, then green (as RGB, not as luma / chroma)
    assert np.abs(pixels[5, 50].astype(int) - [255, 0, 0]).max() <= 2
    assert np.abs(pixels[15, 50].astype(int) - [255, 128, 128]).max() <= 2
    assert np.abs(pixels[25, 50].astype(int) - [0, 255, 0]).max() <= 6


def test_a_jpeg_baseline_dicom_grades_like_its_pixel_data_as_png(tmp_path):
    ds = relabelled("SC_rgb_jpeg_dcmtk.dcm", tmp_path / "photo.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    write_rgb(tmp_path / "photo.png", ds.pixel_array)
    assert np.array_equal(read_rgb(tmp_path / "photo.dcm"), read_rgb(tmp_path / "photo.png"))


def test_a_ct_is_refused_naming_its_modality(tmp_path):
    with pytest.raises(
        ImageReadError, match=r"CT_small.dcm: DICOM of modality CT .*not an ophthalmic photograph"
    ):
        read_rgb(get_testdata_file("CT_small.dcm"))
    _, facts = take_in(get_testdata_file("MR_small.dcm"), 96)
    assert "modality MR" in facts.error and facts.measured is None


def test_a_dicom_without_pixel_data_is_refused_as_such(tmp_path):
    write_dicom(tmp_path / "eye.dcm", RETINA[:64, :64])
    ds = pydicom.dcmread(tmp_path / "eye.dcm")
    del ds.PixelData, ds.Rows, ds.Columns
    ds.save_as(tmp_path / "empty.dcm")
    _, facts = take_in(tmp_path / "empty.dcm", 96)
    assert facts.error == "DICOM without pixel data (no image to grade)"


def test_monochrome_and_bit_depth_are_honoured(tmp_path):
    ramp = np.array([[0, 1024, 2048, 4095]], np.uint16)  # 12 bits stored in 16
    grey2 = to_rgb8(ramp, "MONOCHROME2", 12, 0)
    assert grey2.shape == (1, 4, 3) and grey2[0, :, 0].tolist() == [0, 64, 128, 255]
    assert to_rgb8(ramp, "MONOCHROME1", 12, 0)[0, :, 1].tolist() == [255, 191, 127, 0]  # 0 is white
    signed = np.array([[-2048, 0, 2047]], np.int16)
    assert to_rgb8(signed, "MONOCHROME2", 12, 1)[0, :, 2].tolist() == [0, 128, 255]
    # through a file: a 12-bit MONOCHROME1 photograph is read full range, inverted, grey as RGB
    scene = (np.linspace(0, 4095, 64 * 64).reshape(64, 64)).astype(np.uint16)
    write_dicom(tmp_path / "grey.dcm", scene, photometric="MONOCHROME1", bits=12)
    pixels = read_rgb(tmp_path / "grey.dcm")
    assert (
        pixels.shape == (64, 64, 3)
        and pixels[0, 0].tolist() == [255] * 3
        and pixels[-1, -1].tolist() == [0] * 3
    )


def test_folders_list_dicom_files_with_and_without_a_suffix(tmp_path):
    write_dicom(tmp_path / "a.dcm", RETINA[:32, :32])
    write_dicom(tmp_path / "IM000001", RETINA[:32, :32])  # archives often name files without suffixes
    (tmp_path / "README").write_text("not an image")
    found, skipped = list_images(tmp_path)
    assert [p.name for p in found] == ["IM000001", "a.dcm"]
    assert [p.name for p, _ in skipped] == ["README"]


def test_predict_grades_a_dicom_like_its_png_and_names_the_exam(synthetic, zero_shot_checkpoint, tmp_path):
    folder = tmp_path / "clinic"
    small = RETINA[::4, ::4]  # 353 px: quick, still a gradable photograph
    write_dicom(
        folder.mkdir() or folder / "eye.dcm", small, PatientID="P-7", Laterality="R", StudyDate="20250102"
    )
    write_rgb(folder / "eye.png", small)
    relabelled("CT_small.dcm", folder / "ct.dcm", modality="CT")
    # a real photograph: the typicality check of a model fitted on synthetic ones would refuse it
    model = with_typicality_cut(zero_shot_checkpoint, tmp_path / "open.ckpt", float("inf"))
    rows = predict_folder("zero_shot", synthetic, tmp_path / "runs", model, folder)
    dicom, png, ct = rows["eye.dcm"], rows["eye.png"], rows["ct.dcm"]
    assert dicom["error"] == "" and dicom["grade"] != ""
    same = [c for c in dicom if c not in ("file", "patient_id", "eye", "study_date")]
    assert {c: dicom[c] for c in same} == {c: png[c] for c in same}
    assert (dicom["patient_id"], dicom["eye"], dicom["study_date"]) == ("P-7", "right", "2025-01-02")
    assert (png["patient_id"], png["eye"]) == ("", "")
    assert "DICOM of modality CT" in ct["error"] and ct["grade"] == ""


def test_the_onnx_runner_grades_a_dicom_like_its_png_and_names_the_exam(tmp_path):
    from drgrade.serving.export import export_onnx
    from drgrade.serving.runner import OnnxGrader
    from drgrade.tasks import FCNCLIP

    grader = OnnxGrader(
        export_onnx(FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8)), tmp_path / "m.onnx", 96)
    )
    small = RETINA[::4, ::4]
    write_dicom(tmp_path / "eye.dcm", small, PatientID="P-9", ImageLaterality="L", StudyDate="20230405")
    write_rgb(tmp_path / "eye.png", small)
    dicom, png = grader.grade_files([tmp_path / "eye.dcm", tmp_path / "eye.png"])
    assert dicom.error == "" and dicom.decision == png.decision and dicom.quality == png.quality
    assert (dicom.patient_id, dicom.eye, dicom.study_date) == ("P-9", "left", "2023-04-05")
    assert (png.patient_id, png.eye, png.study_date) == ("", "", "")
