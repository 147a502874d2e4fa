"""The gate on what real cameras write: file formats, real photographs from several cameras, look-alikes.

The real photographs (``tests/data/real_photos``, provenance in its PROVENANCE.md) come from
seven cameras; scikit-image's ``retina.jpg`` is one more. None may be called "not a fundus
photograph"; pictures built to look like a fundus may get no grade.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from drgrade.data.field import find_field
from drgrade.data.images import read_rgb, write_rgb
from drgrade.data.intake import judge, take_in
from drgrade.data.quality import assess, verdict
from drgrade.data.synthetic import CAMERAS, encode_jpeg, render_fundus

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


REAL = Path(__file__).parents[2] / "data" / "real_photos"
#: Real photographs a grader would grade; the package's "sample_dark" is a dark photograph a gate may
#: refuse as too dark (brightness 25 on the 25 limit), but never as "not a fundus photograph".
CLEAR = sorted(p.name for p in REAL.glob("*.jpg") if "dark" not in p.name)


def real_photographs() -> dict[str, np.ndarray]:
    return {p.name: read_rgb(p) for p in sorted(REAL.glob("*.jpg"))} | {"skimage retina": RETINA}


def test_no_real_fundus_photograph_is_called_not_a_fundus_and_the_clear_ones_pass():
    verdicts = {name: assess(image) for name, image in real_photographs().items()}
    assert len(verdicts) == 12 and len(CLEAR) == 10
    called_not_fundus = [name for name, q in verdicts.items() if "not a fundus" in q.reason]
    assert not called_not_fundus, {name: verdicts[name].reason for name in called_not_fundus}
    refused = {
        name: verdicts[name].reason for name in [*CLEAR, "skimage retina"] if not verdicts[name].gradable
    }
    assert not refused, refused


def test_each_camera_layout_has_its_field_found():
    """Whole discs, fields cut at the top and bottom (HRF), a field cropped to a rectangle on a
    coloured frame: the circle is fitted from the field's edge, inside the frame or beyond it."""
    photographs = real_photographs()
    found = {name: find_field(image) for name, image in photographs.items()}
    for name in ("drive_22.jpg", "chasedb1_08L.jpg", "palm_p0185.jpg", "skimage retina"):
        width = photographs[name].shape[1]
        assert found[name].roundness > 0.9 and abs(found[name].cx / width - 0.5) < 0.05, name
    hrf = found["hrf_04_g.jpg"]  # 800 x 533: the circle is taller than the frame
    assert hrf.roundness > 0.9 and 2 * hrf.radius > 533 * 1.2 and abs(hrf.cy - 533 / 2) < 10


def phone_adapter(image: np.ndarray, share: float) -> np.ndarray:
    """A phone's picture through an adapter: a fundus disc ``share`` of a 2000x1500 frame's height."""
    frame = np.zeros((1500, 2000, 3), np.uint8)
    side = int(1500 * share)
    top, left = (1500 - side) // 2, (2000 - side) // 2
    frame[top : top + side, left : left + side] = cv2.resize(
        image, (side, side), interpolation=cv2.INTER_AREA
    )
    return frame


def test_a_phone_adapters_small_disc_in_a_large_black_frame_is_graded(tmp_path):
    for share in (0.45, 0.30):
        write_rgb(tmp_path / f"phone_{share}.jpg", phone_adapter(RETINA, share))
        facts = take_in(tmp_path / f"phone_{share}.jpg", 224)[1]
        assert judge(facts) == "", judge(facts)
        assert facts.measured["fundus_fraction"] < 0.15  # the old gate's 0.15 "no fundus" line


def through_aperture(picture: np.ndarray, tint=(1.25, 0.75, 0.45)) -> np.ndarray:
    """A picture seen through a circular aperture with a warm tint: a round red-orange field."""
    height, width = picture.shape[:2]
    side = max(height, width)
    out = np.zeros((side, side, 3), np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    out[top : top + height, left : left + width] = np.clip(picture * np.array(tint), 0, 255)
    aperture = np.zeros((side, side), np.uint8)
    cv2.circle(aperture, (side // 2, side // 2), int(side * 0.46), 1, -1)
    return out * aperture[..., None]


def red_disc_with_curvy_lines(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((900, 1000, 3), np.uint8)
    cv2.circle(image, (500, 450), 420, (200, 70, 40), -1, cv2.LINE_AA)
    for _ in range(14):  # dark wandering lines, like vessels drawn by someone who has seen a fundus
        angle, radius = rng.uniform(0, 2 * np.pi), 420 * np.sqrt(rng.uniform(0, 0.8))
        x, y, heading, points = (
            500 + radius * np.cos(angle),
            450 + radius * np.sin(angle),
            rng.uniform(0, 6.3),
            [],
        )
        for _ in range(60):
            heading += rng.normal(0, 0.25)
            x, y = x + 8 * np.cos(heading), y + 8 * np.sin(heading)
            points.append((x, y))
        cv2.polylines(image, [np.int32(points)], False, (110, 25, 20), int(rng.integers(3, 8)), cv2.LINE_AA)
    disc = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(disc, (500, 450), 420, 1, -1)
    return image * disc[..., None]


def red_lamp_behind_a_grid() -> np.ndarray:
    yy, xx = np.mgrid[0:900, 0:1000]
    distance = np.hypot(xx - 500, yy - 450) / 420
    image = np.array([150, 30, 15]) + np.clip(1 - distance, 0, 1)[..., None] * np.array([105, 170, 140])
    for k in range(60, 1000, 55):  # the metal grid's bars
        cv2.line(image, (k, 0), (k, 900), (40, 40, 45), 7)
        cv2.line(image, (0, k), (1000, k), (40, 40, 45), 7)
    image[distance > 1] = 0
    return image.astype(np.uint8)


LOOK_ALIKES = {
    "red disc with curvy dark lines": red_disc_with_curvy_lines(0),
    "another red disc with curvy dark lines": red_disc_with_curvy_lines(1),
    "red lamp behind a metal grid": red_lamp_behind_a_grid(),
    "cat through a circular aperture": through_aperture(skdata.chelsea()),
    "coffee cup through a circular aperture": through_aperture(skdata.coffee()),
    "two fundus photographs side by side": np.hstack([RETINA, RETINA[:, ::-1]]),
}


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alikes_get_no_grade(name):
    quality = assess(LOOK_ALIKES[name])
    assert not quality.gradable, name
    if name.startswith("two"):
        assert quality.reason.startswith("two photographs in one image"), quality.reason
    else:  # the evidence is named: which of the retina's signs the picture lacks
        assert "retina" in quality.reason or "not a fundus" in quality.reason, quality.reason


@pytest.mark.parametrize("name", CAMERAS)
def test_every_synthetic_camera_profile_is_written_as_its_camera_would_and_graded(name, tmp_path):
    camera = CAMERAS[name]
    for grade in (0, 3):
        image, mask = render_fundus(grade, 384, np.random.default_rng([grade, 5]), name)
        assert image.shape[:2] == mask.shape and image.shape[0] == 384
        path = tmp_path / f"{name}_{grade}.jpg"
        path.write_bytes(encode_jpeg(image, camera))
        assert path.read_bytes().endswith(b"\xff\xd9" + camera.trailer)
        facts = take_in(path, 224)[1]
        assert judge(facts) == "", (name, grade, judge(facts))
    lit = image.max(axis=2) > 10
    if camera.layout == "cropped":  # the field runs off the top and bottom, the sides stay dark
        assert lit[0].any() and lit[-1].any() and not lit[:, 0].any()
    elif camera.layout == "filling":  # only the corners are dark
        assert lit[0].any() and lit[:, 0].any() and not lit[0, 0]
    elif camera.layout == "phone":  # a small disc in a wide black frame
        assert image.shape[1] == 512 and lit.mean() < 0.15
    red, green, blue = (image[..., i][lit].mean() for i in range(3))
    if name == "yellow":
        assert green > 0.5 * red and blue < green
    elif name == "green-grey":
        assert red < 1.45 * (green + blue) / 2
    elif name == "dark-orange":
        assert image[lit].mean() < 80


def test_colour_alone_never_says_not_a_fundus():
    """A real photograph turned grey-green (a camera's odd white balance) goes to a human as a
    quality problem, with its red ratio: the old gate called it "not a fundus photograph"."""
    grey_green = np.clip(RETINA * np.array([0.3, 1.1, 1.1]), 0, 255).astype(np.uint8)  # red ratio 0.8
    quality = assess(grey_green)
    assert not quality.gradable and quality.reason.startswith("unusual colour"), quality.reason
    assert "red ratio" in quality.reason and "not a fundus" not in quality.reason


def test_not_a_fundus_needs_no_round_field_and_two_missing_signs():
    retina = assess(RETINA).features | {"grey_fill": 0.0, "field_pixels": 1400.0}
    assert verdict(retina) == ""
    flat = {"optic_disc": 1.0}  # no bright optic disc at all: a contradicted sign counts twice
    assert verdict(retina | flat).startswith("no retina recognised in the field (optic disc 1 ")
    assert verdict(retina | flat | {"field_roundness": 0.1}).startswith("not a fundus photograph")
    one_weak = {"vessel_colour": 0.8}  # one sign outside its usual range, within its wider one
    assert verdict(retina | one_weak) == ""  # a round field and three signs: a retina
    assert verdict(retina | one_weak | {"field_roundness": 0.1}).startswith("no retina recognised")
