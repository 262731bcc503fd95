"""Model repository, build of the default model, tokenisation and bucketing."""

from inferq.models.bucketing import bucket_for, pad_batch, padding_ratio
from inferq.models.build_minilm import build_minilm
from inferq.models.config import ModelConfig, load_config
from inferq.models.errors import ModelBuildError, ModelError, ModelLoadError, ModelNotFound
from inferq.models.repository import (
    ModelRepository,
    ModelVersion,
    default_model_repo,
    ensure_default_model,
)
from inferq.models.tokenize import Encoded, ItemRejection, TextTokenizer

__all__ = [
    "Encoded",
    "ItemRejection",
    "ModelBuildError",
    "ModelConfig",
    "ModelError",
    "ModelLoadError",
    "ModelNotFound",
    "ModelRepository",
    "ModelVersion",
    "TextTokenizer",
    "bucket_for",
    "build_minilm",
    "default_model_repo",
    "ensure_default_model",
    "load_config",
    "pad_batch",
    "padding_ratio",
]
