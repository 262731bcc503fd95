"""The model repository: ``<root>/<name>/<version>/{model.onnx, tokenizer.json, config.json}``.

Model specs are ``name`` (the latest version present) or ``name@version`` (pinned). Anyone can
register a model by dropping the three files into a new version folder (docs/models.md).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from models.config import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    ModelConfig,
    load_config,
)
from models.errors import ModelLoadError, ModelNotFound


class ModelVersion(msgspec.Struct, frozen=True):
    """One resolved, checked model version: where it lives and its config."""

    name: str
    version: int
    path: Path
    config: ModelConfig

    @property
    def spec(self) -> str:
        """``name@version``: the pinned form clients and runners use."""
        return f"{self.name}@{self.version}"


class ModelRepository:
    """Read-only view of a repository folder; every lookup reflects the disk at call time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def models(self) -> dict[str, list[int]]:
        """Every model name with its versions, ascending (non-integer folders are skipped)."""
        found: dict[str, list[int]] = {}
        if not self.root.is_dir():
            return found
        for model_dir in sorted(self.root.iterdir()):
            if model_dir.name.startswith(".") or not model_dir.is_dir():
                continue
            versions = sorted(
                int(v.name) for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()
            )
            if versions:
                found[model_dir.name] = versions
        return found

    def resolve(self, spec: str) -> tuple[str, int]:
        """``"minilm"`` -> latest version present; ``"minilm@1"`` -> that version, if present."""
        name, sep, pinned = spec.partition("@")
        if not name or (sep and not pinned.isdigit()):
            raise ModelNotFound(spec, "expected 'name' or 'name@version' (version an integer)")
        versions = self.models().get(name)
        if not versions:
            raise ModelNotFound(spec, f"no model named {name!r} in {self.root}")
        if not sep:
            return name, versions[-1]
        if int(pinned) not in versions:
            raise ModelNotFound(spec, f"version {int(pinned)} absent; present: {versions}")
        return name, int(pinned)

    def version_dir(self, name: str, version: int) -> Path:
        """The folder of ``name`` version ``version``; ``ModelNotFound`` when absent."""
        path = self.root / name / str(version)
        if not path.is_dir():
            raise ModelNotFound(f"{name}@{version}", f"{path} does not exist")
        return path

    def config(self, name: str, version: int) -> ModelConfig:
        """Load and validate the version's config; it must name this very folder."""
        path = self.version_dir(name, version) / CONFIG_FILE
        config = load_config(path)
        if (config.name, config.version) != (name, version):
            raise ModelLoadError(
                path,
                f"config says {config.name}@{config.version} but lives in {name}/{version}",
            )
        return config

    def get(self, spec: str) -> ModelVersion:
        """Resolve ``spec`` and check the folder is complete (files present, config valid)."""
        name, version = self.resolve(spec)
        path = self.version_dir(name, version)
        for required in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
            if not (path / required).is_file():
                raise ModelLoadError(path / required, f"{required} is missing")
        return ModelVersion(name, version, path, self.config(name, version))
