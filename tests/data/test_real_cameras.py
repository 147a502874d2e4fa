"""The gate on what real cameras write: file formats, real photographs from several cameras, look-alikes.

The real photographs (``tests/data/real_photos``, provenance in its PROVENANCE.md) come from
seven cameras; scikit-image's ``retina.jpg`` is one more. None may be called "not a fundus
photograph"; pictures built to look like a fundus may get no grade.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data as skdata

from drgrade.data.images import read_rgb, write_rgb
from drgrade.data.intake import judge, take_in

RETINA = skdata.retina()


def test_a_jpeg_with_bytes_after_its_end_marker_is_whole_and_graded(tmp_path):
    write_rgb(tmp_path / "r.jpg", RETINA)
    data = (tmp_path / "r.jpg").read_bytes()
    for trailer in (b"\r\n", b"\x00" * 300, b"maker trailer " * 40):
        (tmp_path / "trailer.jpg").write_bytes(data + trailer)
        assert judge(take_in(tmp_path / "trailer.jpg", 224)[1]) == "", trailer[:8]
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3] + b"\r\n")
    assert "incomplete file" in judge(take_in(tmp_path / "cut.jpg", 224)[1])


def test_a_16_bit_png_holding_12_bit_values_is_read_at_its_real_depth(tmp_path):
    twelve = (RETINA.astype(np.uint16) << 4) | 0xF  # a 12-bit camera's values in a 16-bit file
    cv2.imwrite(str(tmp_path / "twelve.png"), twelve[..., ::-1])
    assert cv2.imread(str(tmp_path / "twelve.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert np.abs(read_rgb(tmp_path / "twelve.png").astype(int) - RETINA).max() == 0
    assert judge(take_in(tmp_path / "twelve.png", 224)[1]) == ""
    sixteen = RETINA.astype(np.uint16) * 257  # a full 16-bit file is still read by its top 8 bits
    cv2.imwrite(str(tmp_path / "sixteen.png"), sixteen[..., ::-1])
    assert np.abs(read_rgb(tmp_path / "sixteen.png").astype(int) - RETINA).max() == 0
