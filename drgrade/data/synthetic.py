"""Procedural synthetic fundus photographs (each dataset module writes them in its published layout).

Real data cannot be downloaded everywhere (CI, air-gapped machines), yet the whole pipeline,
from the native readers to the report, should run and *learn*. Each image is a dark surround
with an orange fundus disc, optic disc, macula and branching vessels; lesions follow the
clinical scale (1: microaneurysms; 2: + haemorrhages, hard exudates; 3: many haemorrhages,
cotton-wool spots, venous beading; 4: + neovascularisation, pre-retinal haemorrhage); diabetic
macular edema adds hard exudates around the macula. A lesion
mask is written beside each image so attention maps can be scored against known lesions.
Every image is drawn from its own generator seeded by (seed, dataset, index): same seed, same
bytes, whatever the order or parallelism.

Real archives mix cameras, and each frames and colours the fundus its own way: ``CAMERAS`` holds
profiles seen in real data (yellow, green-grey and dark-orange white balance, an exposure
spread, fields cut at the top and bottom, fields filling the frame, a phone adapter's small
disc in a large black frame, bytes written after the JPEG's end marker). ``render_fundus(...,
camera=...)`` draws a photograph through one of them and ``encode_jpeg`` writes its file; the
default ("reference") is the generator's own framing, which the dataset layouts use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

_RED = (120, 20, 15)
_DARK_RED = (90, 10, 10)
_VESSEL = (160, 42, 32)
_EXUDATE = (235, 215, 110)
_COTTON = (235, 225, 200)


def allocate(total: int, frequencies: tuple[int, ...], minimum: int = 2) -> list[int]:
    """Split ``total`` over grades in proportion to ``frequencies`` (largest remainder).

    Each grade gets at least ``minimum`` images when ``total`` allows it.
    """
    floor = minimum if total >= minimum * len(frequencies) else 0
    share = np.asarray(frequencies, dtype=float) / sum(frequencies) * (total - floor * len(frequencies))
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts))[: total - floor * len(frequencies) - counts.sum()]:
        counts[i] += 1
    return (counts + floor).tolist()


@dataclass
class _Canvas:
    image: np.ndarray
    mask: np.ndarray
    rng: np.random.Generator
    centre: tuple[int, int]
    radius: int

    def point_in_disc(self, spread: float = 0.85) -> tuple[int, int]:
        r = self.radius * spread * math.sqrt(self.rng.random())
        a = self.rng.random() * 2 * math.pi
        return int(self.centre[0] + r * math.cos(a)), int(self.centre[1] + r * math.sin(a))

    def point_near(self, centre: tuple[int, int], distance: float) -> tuple[int, int]:
        r = distance * math.sqrt(self.rng.random())
        a = self.rng.random() * 2 * math.pi
        return int(centre[0] + r * math.cos(a)), int(centre[1] + r * math.sin(a))

    def blob(
        self,
        colour,
        radius: float,
        lesion: bool = True,
        blur: bool = False,
        at: tuple[int, int] | None = None,
    ) -> None:
        x, y = at if at is not None else self.point_in_disc()
        size = max(1, int(radius))
        axes = (size, max(1, int(size * self.rng.uniform(0.6, 1.0))))
        if blur:
            layer = np.zeros_like(self.image)
            cv2.ellipse(layer, (x, y), axes, self.rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
            alpha = cv2.GaussianBlur((layer.max(axis=2) > 0).astype(np.float32), (0, 0), size / 2)
            self.image[:] = (self.image * (1 - alpha[..., None]) + layer * alpha[..., None]).astype(np.uint8)
        else:
            cv2.ellipse(self.image, (x, y), axes, self.rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        if lesion:
            cv2.ellipse(self.mask, (x, y), axes, 0, 0, 360, 255, -1)


def _vessel(
    canvas: _Canvas, start: tuple[float, float], angle: float, width: float, steps: int, beading: bool
) -> None:
    """One vessel from ``start``: a wandering line that thins, and now and then branches."""
    rng, radius = canvas.rng, canvas.radius
    x, y = start
    for step in range(steps):
        angle += rng.normal(0, 0.12)
        nx, ny = x + math.cos(angle) * radius / 30, y + math.sin(angle) * radius / 30
        if math.hypot(nx - canvas.centre[0], ny - canvas.centre[1]) > radius * 0.97:
            return
        thickness = width * (1.8 if beading and step % 4 == 0 else 1.0)
        cv2.line(
            canvas.image, (int(x), int(y)), (int(nx), int(ny)), _VESSEL, max(1, round(thickness)), cv2.LINE_AA
        )
        if width > 1.2 and step > 3 and rng.random() < 0.12:  # a side branch, thinner, turning away
            turn = rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
            _vessel(canvas, (nx, ny), angle + turn, width * 0.6, steps // 2, beading)
        x, y = nx, ny
        width = max(0.6, width * 0.985)


def _vessel_tree(canvas: _Canvas, disc: tuple[int, int], beading: bool) -> None:
    """Main vessels leaving the optic disc in all directions, with their side branches."""
    rng, radius = canvas.rng, canvas.radius
    for branch in range(10):
        angle = branch / 10 * 2 * math.pi + rng.uniform(-0.3, 0.3)
        width = rng.uniform(1.8, 3.0) * radius / 200
        _vessel(canvas, (float(disc[0]), float(disc[1])), angle, width, 60, beading)


def _soft_spot(image: np.ndarray, centre: tuple[int, int], radius: float, colour, strength: float) -> None:
    """Blend ``colour`` into ``image`` with a Gaussian falloff around ``centre`` (in place)."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    alpha = strength * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * radius**2))[..., None]
    image[:] = (image * (1 - alpha) + np.asarray(colour) * alpha).astype(np.uint8)


def _background(height: int, width: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Retinal texture: smooth noise at a few pixels' scale (choroid, nerve-fibre layer), not pixel noise."""
    noise = cv2.GaussianBlur(
        rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), max(1.0, size / 200)
    )
    return noise / max(float(noise.std()), 1e-6)


def _neovascularisation(canvas: _Canvas, near: tuple[int, int]) -> None:
    rng, radius = canvas.rng, canvas.radius
    for _ in range(int(rng.integers(2, 4))):
        cx = near[0] + rng.normal(0, radius * 0.15)
        cy = near[1] + rng.normal(0, radius * 0.15)
        for _ in range(25):
            a = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.02, 0.06) * radius
            p0 = (int(cx + rng.normal(0, radius * 0.04)), int(cy + rng.normal(0, radius * 0.04)))
            p1 = (int(p0[0] + length * math.cos(a)), int(p0[1] + length * math.sin(a)))
            cv2.line(canvas.image, p0, p1, _RED, 1, cv2.LINE_AA)
            cv2.line(canvas.mask, p0, p1, 255, 3)


def _macular_exudates(canvas: _Canvas, macula: tuple[int, int]) -> None:
    """Hard exudates within about one disc diameter of the macula: DME as Gulshan et al. 2016 grade it."""
    rng, radius = canvas.rng, canvas.radius
    for _ in range(int(rng.integers(6, 11))):
        size = rng.uniform(1.5, 3) * radius / 200
        canvas.blob(_EXUDATE, size, at=canvas.point_near(macula, radius * 0.2))


@dataclass(frozen=True)
class Camera:
    """How one kind of camera colours and frames its photographs.

    Args:
        name: the profile's name.
        gains: per-channel (R, G, B) gain: the sensor's colour and white balance.
        exposure: range the overall gain of each photograph is drawn from.
        layout: "disc" (the whole field on a dark frame), "cropped" (the field cut at the top and
            bottom), "filling" (the field larger than the frame: only the corners dark) or "phone"
            (a small disc in a 4:3 black frame, as a phone on an adapter takes it).
        trailer: bytes the camera writes after the JPEG's end marker.
    """

    name: str
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure: tuple[float, float] = (1.0, 1.0)
    layout: str = "disc"
    trailer: bytes = field(default=b"")


#: Camera profiles seen in real archives (see the module's docstring).
CAMERAS = {
    camera.name: camera
    for camera in (
        Camera("reference"),
        Camera("yellow", (1.0, 1.3, 0.8), (0.85, 1.1)),
        Camera("green-grey", (0.62, 1.2, 1.3), (0.8, 1.05)),
        Camera("dark-orange", (1.0, 0.8, 0.55), (0.55, 0.8)),
        Camera("cropped", layout="cropped", trailer=b"\r\n"),
        Camera("filling", (1.0, 1.1, 1.0), layout="filling"),
        Camera("phone", (1.05, 0.95, 0.9), (0.8, 1.0), layout="phone", trailer=b"\x00" * 32),
    )
}
#: Share of the frame's height the field's diameter spans, per layout (the field is rendered at
#: this multiple of the asked size, then framed).
_FIELD_SCALE = {"disc": 1.0, "cropped": 1.25, "filling": 1.3, "phone": 0.4}


def _frame(image: np.ndarray, mask: np.ndarray, layout: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame a rendered photograph as ``layout`` does, at ``size`` pixels high."""
    height, width = image.shape[:2]
    if layout in ("cropped", "filling"):  # keep the middle rows (and, filling the frame, a square)
        top = (height - size) // 2
        keep = width if layout == "cropped" else size
        left = (width - keep) // 2
        return image[top : top + size, left : left + keep], mask[top : top + size, left : left + keep]
    if layout == "phone":
        frame, frame_mask = (
            np.zeros((size, size * 4 // 3, 3), np.uint8),
            np.zeros((size, size * 4 // 3), np.uint8),
        )
        top, left = (size - height) // 2, (size * 4 // 3 - width) // 2
        frame[top : top + height, left : left + width] = image
        frame_mask[top : top + height, left : left + width] = mask
        return frame, frame_mask
    return image, mask


def encode_jpeg(image: np.ndarray, camera: Camera = CAMERAS["reference"], quality: int = 92) -> bytes:
    """The JPEG file a camera writes of ``image`` (RGB), with its trailer after the end marker."""
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("the image could not be encoded as JPEG")
    return encoded.tobytes() + camera.trailer


def _through_camera(
    grade: int, size: int, rng: np.random.Generator, camera: Camera, dme: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``render_fundus`` through ``camera``: rendered at the layout's scale, coloured, exposed, framed."""
    image, mask = render_fundus(grade, round(size * _FIELD_SCALE[camera.layout]), rng, dme=dme)
    gain = np.asarray(camera.gains) * rng.uniform(*camera.exposure)
    image = np.clip(image * gain, 0, 255).astype(np.uint8)
    return _frame(image, mask, camera.layout, size)


def _draw_lesions(
    canvas: _Canvas, grade: int, disc: tuple[int, int], macula: tuple[int, int], dme: bool
) -> None:
    """The lesions of ``grade`` (and DME's exudates around the macula, drawn last)."""
    rng, r = canvas.rng, canvas.radius / 200  # lesion sizes scale with the image
    counts = {  # (microaneurysms, haemorrhages, exudates, cotton-wool spots) per grade
        0: (0, 0, 0, 0),
        1: (rng.integers(3, 7), 0, 0, 0),
        2: (rng.integers(5, 9), rng.integers(3, 7), rng.integers(4, 10), 0),
        3: (rng.integers(6, 10), rng.integers(12, 20), rng.integers(6, 12), rng.integers(2, 5)),
        4: (rng.integers(6, 10), rng.integers(10, 16), rng.integers(5, 10), rng.integers(2, 4)),
    }[grade]
    for _ in range(counts[0]):
        canvas.blob(_RED, 1.6 * r)
    for _ in range(counts[1]):
        canvas.blob(_DARK_RED, rng.uniform(4, 7) * r)
    for _ in range(counts[2]):
        canvas.blob(_EXUDATE, rng.uniform(1.5, 3) * r)
    for _ in range(counts[3]):
        canvas.blob(_COTTON, rng.uniform(6, 9) * r, blur=True)
    if grade == 4:
        _neovascularisation(canvas, disc)
        canvas.blob(_DARK_RED, rng.uniform(14, 20) * r)  # pre-retinal haemorrhage
    if dme:
        _macular_exudates(canvas, macula)


def render_fundus(
    grade: int, size: int, rng: np.random.Generator, camera: Camera | str | None = None, dme: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic fundus photograph of ``grade`` (RGB, ``size`` high) and its lesion mask.

    ``camera``: a ``CAMERAS`` profile or its name; None, the reference framing (~1.25 x size wide).
    ``dme`` adds exudates around the macula last (``_macular_exudates``): the rest is unchanged.
    """
    if camera is not None:
        return _through_camera(grade, size, rng, CAMERAS[camera] if isinstance(camera, str) else camera, dme)
    width, height = int(size * 1.25), size
    radius = int(size * 0.49)
    centre = (width // 2 + int(rng.integers(-size // 40, size // 40 + 1)), height // 2)
    yy, xx = np.mgrid[0:height, 0:width]
    dist = np.hypot(xx - centre[0], yy - centre[1]) / radius
    base = np.array([rng.uniform(215, 245), rng.uniform(78, 105), rng.uniform(52, 80)])
    shade = np.clip(1.0 - rng.uniform(0.18, 0.28) * dist**2, 0, None)[..., None]
    texture = 2.5 * _background(height, width, size, rng)[..., None]
    image = np.clip(base * shade + texture, 0, 255)
    image[dist > 1] = 0
    canvas = _Canvas(image.astype(np.uint8), np.zeros((height, width), np.uint8), rng, centre, radius)

    side = 1 if rng.random() < 0.5 else -1  # left or right eye: optic disc on either side
    disc = (centre[0] + side * int(radius * 0.5), centre[1] + int(rng.normal(0, radius * 0.05)))
    macula = (centre[0] - side * int(radius * 0.1), centre[1])
    _soft_spot(canvas.image, macula, radius * 0.14, (150, 55, 25), 0.45)  # the macula: a faint darkening
    _vessel_tree(canvas, disc, beading=grade >= 3)
    cv2.circle(canvas.image, disc, int(radius * 0.15), (245, 210, 140), -1, cv2.LINE_AA)

    _draw_lesions(canvas, grade, disc, macula, dme)
    canvas.mask[dist > 1] = 0
    smooth = cv2.GaussianBlur(canvas.image, (0, 0), max(0.5, size / 512))
    return smooth, canvas.mask


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Write a lesion mask (any format OpenCV writes from the suffix: PNG, TIFF), folders included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), mask):
        raise OSError(f"{path}: could not write the lesion mask")


def seeded_rng(seed: int, dataset: int, index: int) -> np.random.Generator:
    """The generator of one image: same (seed, dataset, index), same image."""
    return np.random.default_rng([seed, dataset, index])


def draws_dme(grade: int, seed: int, dataset: int, index: int) -> bool:
    """Whether a synthetic photograph of ``grade`` has DME: half of those moderate or worse.

    Drawn from a generator of its own, so the photograph's other draws stay as they were.
    """
    return grade >= 2 and bool(np.random.default_rng([seed, dataset, index, 7]).random() < 0.5)


def grade_sequence(total: int, frequencies: tuple[int, ...], seed: int, dataset: int) -> list[int]:
    """``total`` grades in proportion to ``frequencies`` (each at least twice), in a seeded order."""
    grades = [g for g, n in enumerate(allocate(total, frequencies)) for _ in range(n)]
    np.random.default_rng([seed, dataset, 10**9]).shuffle(grades)
    return grades
