"""Data shipped with youxu: device profiles, example site configs, schemas and load profiles."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_path(*parts: str) -> Path:
    """Path of a file shipped in this package (works installed or from a checkout)."""
    return Path(str(files(__name__).joinpath(*parts)))
