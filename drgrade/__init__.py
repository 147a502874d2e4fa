"""drgrade: CLIP-based diabetic retinopathy grading with PyTorch Lightning."""

__version__ = "0.1.0"
