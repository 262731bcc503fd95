"""Fixtures for model tests: the default model built once per session, the golden file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inferq.models.config import ModelConfig
from inferq.models.repository import ModelRepository, ensure_default_model

GOLDEN = Path(__file__).resolve().parents[2] / "../shared/golden/minilm_golden.json"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """``~/.cache/inferq/models/minilm/1``, built from the wheel on first use (outside the repo)."""
    return ensure_default_model()


@pytest.fixture(scope="session")
def minilm_config(minilm_dir: Path) -> ModelConfig:
    return ModelRepository(minilm_dir.parents[1]).config("minilm", 1)


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))
