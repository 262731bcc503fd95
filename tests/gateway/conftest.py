from __future__ import annotations

from pathlib import Path

import pytest

from inferq.models.repository import ensure_default_model
from tests.e2e.harness import make_settings


@pytest.fixture(scope="session")
def model_repo() -> Path:
    return ensure_default_model().parent.parent


@pytest.fixture
def settings(tmp_path, nats_url, redis_url, model_repo):
    return make_settings(tmp_path, nats_url, redis_url, model_repo)
