"""Building models into a repository (ONNX graph from safetensors, no torch).

Imported only by the commands that build (``inferq models build``, ``inferq dev``) and by
tests: onnx and safetensors never load in a serving role.
"""

from __future__ import annotations

from pathlib import Path

from core.config import default_model_repo
from models.build.build_minilm import build_minilm


def ensure_default_model(root: Path | None = None) -> Path:
    """Build minilm into ``root`` (default repository) unless already built; return its folder."""
    return build_minilm(root or default_model_repo())


__all__ = ["build_minilm", "ensure_default_model"]
