"""Simple, interpretable statistics of a fundus photograph, to measure synthetic images against a real one.

All are computed inside the fundus (the same mask the crop uses) after resizing to 512 px, so
photographs of any size compare:

- ``mean_r/g/b`` and ``std_r/g/b``: per-channel level and spread (0-255);
- ``falloff``: mean luminance of the rim ring (80-95% of the radius) over that of the centre
  disc (inside 30%), the vignetting every fundus camera shows;
- ``vessel_density``: share of fundus pixels on dark thin ridges of the green channel, measured
  exactly as the quality gate measures it (``quality.measure``: one definition, and no
  dependency beyond OpenCV, so this module runs wherever drgrade is installed);
- ``texture``: spread of the green channel after removing its smooth illumination (the
  choroidal and nerve-fibre texture of a real retina), in grey levels;
- ``fundus_fraction``: share of the frame the fundus fills.
"""

from __future__ import annotations

import cv2
import numpy as np

from drgrade.data.preprocess import brightest_channel
from drgrade.data.quality import SURROUND, measure

SIZE = 512
STATISTICS = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "falloff",
    "vessel_density",
    "texture",
    "fundus_fraction",
)


def fundus_statistics(image: np.ndarray) -> dict[str, float]:
    """The statistics of ``STATISTICS`` for one RGB uint8 photograph."""
    small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    fundus = brightest_channel(small) > SURROUND
    inner = cv2.erode(fundus.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    stats = {f"mean_{c}": float(small[..., i][inner].mean()) for i, c in enumerate("rgb")}
    stats |= {f"std_{c}": float(small[..., i][inner].std()) for i, c in enumerate("rgb")}
    ys, xs = np.nonzero(fundus)
    centre = np.array([ys.mean(), xs.mean()])
    radius = np.sqrt(fundus.sum() / np.pi)
    grid = np.indices(fundus.shape).transpose(1, 2, 0)
    distance = np.linalg.norm(grid - centre, axis=2) / radius
    luminance = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(float)
    rim = inner & (distance > 0.8) & (distance < 0.95)
    middle = inner & (distance < 0.3)
    stats["falloff"] = float(luminance[rim].mean() / max(luminance[middle].mean(), 1e-6))
    green = small[..., 1].astype(float) / 255
    stats["vessel_density"] = float(measure(image)["vessel_density"])
    smooth = cv2.GaussianBlur(green, (0, 0), 8)
    stats["texture"] = float(255 * (green - smooth)[inner].std())
    stats["fundus_fraction"] = float(fundus.mean())
    return stats


def mean_statistics(images: list[np.ndarray]) -> dict[str, float]:
    """The per-statistic mean over several photographs."""
    measured = [fundus_statistics(image) for image in images]
    return {name: float(np.mean([m[name] for m in measured])) for name in STATISTICS}
