"""Resolving model specs and loading configs: typed errors that name the path and problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.config import ModelConfig, load_config, write_config
from models.errors import ModelLoadError, ModelNotFound
from models.repository import ModelRepository
from schemas.errors import ErrorCode


def make_version(root: Path, name: str, folder: int, **overrides: object) -> Path:
    path = root / name / str(folder)
    path.mkdir(parents=True)
    write_config(path / "config.json", ModelConfig(name=name, version=folder, output_dim=8))
    if overrides:
        raw = json.loads((path / "config.json").read_text())
        raw.update(overrides)
        (path / "config.json").write_text(json.dumps(raw))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    for version in (1, 3):
        make_version(tmp_path, "m", version)
    make_version(tmp_path, "other", 2)
    (tmp_path / "m" / ".tmp-4-abc").mkdir()  # an unfinished build is invisible
    (tmp_path / "m" / "notes").mkdir()
    return ModelRepository(tmp_path)


def test_models_lists_integer_versions_only(repo: ModelRepository) -> None:
    assert repo.models() == {"m": [1, 3], "other": [2]}


def test_a_bare_name_resolves_to_the_latest_version(repo: ModelRepository) -> None:
    assert repo.resolve("m") == ("m", 3)
    assert repo.resolve("m@1") == ("m", 1)


@pytest.mark.parametrize("spec", ["nope", "m@2", "m@x", "@1", "m@"])
def test_unknown_names_and_versions_are_model_not_found(repo: ModelRepository, spec: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        repo.resolve(spec)
    assert info.value.code is ErrorCode.MODEL_NOT_FOUND
    assert repr(spec) in str(info.value)


def test_missing_version_dir_is_model_not_found(repo: ModelRepository, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=str(tmp_path / "m" / "7")):
        repo.version_dir("m", 7)


def test_get_checks_the_files_are_there(repo: ModelRepository, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        repo.get("m@1")
    assert info.value.path == tmp_path / "m" / "1" / "model.onnx"
    assert "missing" in str(info.value)


def test_get_returns_a_complete_version(minilm_dir: Path) -> None:
    version = ModelRepository(minilm_dir.parents[1]).get("minilm")
    assert (version.name, version.version, version.path) == ("minilm", 1, minilm_dir)
    assert version.spec == "minilm@1" and version.config.output_dim == 384


def test_unknown_config_field_fails_naming_the_file(tmp_path: Path) -> None:
    path = make_version(tmp_path, "m", 1, colour="blue") / "config.json"
    with pytest.raises(ModelLoadError) as info:
        ModelRepository(tmp_path).config("m", 1)
    assert str(path) in str(info.value) and "unknown field `colour`" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"buckets": [32, 16, 256]}, "strictly increasing"),
        ({"buckets": [16, 128]}, "last bucket must equal max_seq_len"),
        ({"max_batch_tokens": 100}, "must fit one row"),
        ({"output_dim": 0}, "output_dim"),
        ({"inputs": ["input_ids"]}, "exactly 2"),
        ({"task": "generate"}, "task"),
        ({"max_seq_len": "long"}, "max_seq_len"),
    ],
)
def test_invalid_configs_fail_with_the_problem(
    tmp_path: Path, overrides: dict[str, object], problem: str
) -> None:
    path = make_version(tmp_path, "m", 1, **overrides) / "config.json"
    with pytest.raises(ModelLoadError, match=problem) as info:
        load_config(path)
    assert info.value.path == path


def test_config_must_match_its_folder(tmp_path: Path) -> None:
    make_version(tmp_path, "m", 1, version=2)
    with pytest.raises(ModelLoadError, match="config says m@2 but lives in m/1"):
        ModelRepository(tmp_path).config("m", 1)


def test_missing_and_corrupt_config_files(tmp_path: Path) -> None:
    path = make_version(tmp_path, "m", 1) / "config.json"
    path.write_text("{not json")
    with pytest.raises(ModelLoadError, match="invalid config"):
        load_config(path)
    path.unlink()
    with pytest.raises(ModelLoadError, match="config file is missing"):
        load_config(path)


def test_a_user_model_is_registered_by_dropping_files(minilm_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine" / "5"
    target.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(minilm_dir / name, target / name)
    write_config(target / "config.json", ModelConfig(name="mine", version=5, output_dim=384))
    assert ModelRepository(tmp_path).get("mine").path == target
