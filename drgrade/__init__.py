"""drgrade: CLIP-based diabetic retinopathy grading with PyTorch Lightning."""

from pathlib import Path

__version__ = "0.1.0"

#: The shipped config files (model configs, shared data and trainer blocks, demo overlays), inside
#: the package so they are found from any folder; a checkout's ``configs`` links here.
CONFIGS = Path(__file__).parent / "configs"
