"""Bundled assets: a procedurally generated sample image (see ``make_sample``)."""
from pathlib import Path

__all__ = ["SAMPLE_IMAGE", "sample_image_path"]

SAMPLE_IMAGE = Path(__file__).with_name("sample_scene.png")


def sample_image_path() -> Path:
    """Path of the bundled sample scene (640x480 RGB PNG)."""
    if not SAMPLE_IMAGE.is_file():
        raise FileNotFoundError(f"{SAMPLE_IMAGE} is missing; the package data was not installed "
                                "(regenerate it with: python -m arrcoc.assets.make_sample)")
    return SAMPLE_IMAGE
