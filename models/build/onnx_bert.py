"""Build a BERT sentence-embedding ONNX graph from a dict of numpy weights (no torch).

The graph takes ``input_ids`` and ``attention_mask`` (int64 [batch, sequence]) and returns
``embedding`` (float32 [batch, hidden]): the masked mean of the last hidden states, L2
normalised - sentence-transformers' Transformer + Pooling(mean) + Normalize in one graph.

Graph-level choices, made at build time so every runtime profits:

- token_type_ids are always zero, so token-type row 0 is folded into the position table
  (one constant add instead of a third gather and add);
- the attention scale 1/sqrt(head_dim) is folded into the query weights and bias;
- Linear weights are stored pre-transposed ([in, out]) so each projection is MatMul + Add,
  the pattern ORT fuses (MatMul+Add, SkipLayerNorm, BiasGelu) and OpenVINO maps to FullyConnected;
- query, key and value are one MatMul against concatenated weights, then a Split;
- the additive mask ((1 - mask) * -10000, shape [B, 1, 1, S]) is computed once for all layers;
- LayerNormalization (opset 17) and the erf form of GELU, both recognised by ORT and OpenVINO;
- masked mean pooling is one batched MatMul (mask [B,1,S] x states [B,S,H]).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from msgspec import Struct
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
MASK_VALUE = -10000.0


class BertShape(Struct, frozen=True):
    """Architecture numbers read from the Hugging Face ``config.json``."""

    num_layers: int
    hidden: int
    heads: int
    intermediate: int
    layer_norm_eps: float
    max_positions: int


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{i}" for i in range(n_out)]
        node = helper.make_node(op_type, inputs, outs, name=f"{op_type}_{self._n}", **attrs)
        self.nodes.append(node)
        return outs

    def op1(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        return self.op(op_type, inputs, **attrs)[0]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def build_bert_embedding_graph(
    weights: dict[str, np.ndarray], shape: BertShape, *, output_name: str = "embedding"
) -> onnx.ModelProto:
    """Return the ONNX model computing normalised mean-pooled BERT embeddings."""
    g = _Graph()
    w = {k.removeprefix("bert."): v for k, v in weights.items()}
    h, heads = shape.hidden, shape.heads
    head_dim = h // heads

    # Shared small constants.
    one = g.const("one_f", np.array(1.0, np.float32))
    mask_value = g.const("mask_value", np.array(MASK_VALUE, np.float32))
    zero_i = g.const("zero_i64", np.array([0], np.int64))
    one_ax = g.const("axis_1", np.array([1], np.int64))
    ax12 = g.const("axes_1_2", np.array([1, 2], np.int64))
    heads_shape = g.const("heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = g.const("merge_shape", np.array([0, 0, h], np.int64))
    eps_norm = g.const("eps_norm", np.array(1e-12, np.float32))
    eps_count = g.const("eps_count", np.array(1e-9, np.float32))

    # Embeddings: word[ids] + (position + token_type[0])[:S], then LayerNorm.
    words = g.const("word_embeddings", _f32(w["embeddings.word_embeddings.weight"]))
    pos_table = _f32(w["embeddings.position_embeddings.weight"]) + _f32(
        w["embeddings.token_type_embeddings.weight"][0]
    )
    positions = g.const("position_plus_type0", pos_table)
    ids_shape = g.op1("Shape", ["input_ids"])
    seq_len = g.op1("Gather", [ids_shape, one_ax], axis=0)  # [1]
    pos = g.op1("Slice", [positions, zero_i, seq_len, zero_i])  # [S, H]
    emb = g.op1("Add", [g.op1("Gather", [words, "input_ids"], axis=0), pos])
    x = g.op1(
        "LayerNormalization",
        [
            emb,
            g.const("emb_ln_w", _f32(w["embeddings.LayerNorm.weight"])),
            g.const("emb_ln_b", _f32(w["embeddings.LayerNorm.bias"])),
        ],
        axis=-1,
        epsilon=shape.layer_norm_eps,
    )

    # Mask: float [B, S]; additive [B, 1, 1, S] shared by every layer.
    mask_f = g.op1("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    additive = g.op1("Mul", [g.op1("Sub", [one, mask_f]), mask_value])
    additive = g.op1("Unsqueeze", [additive, ax12])

    scale = 1.0 / math.sqrt(head_dim)
    for i in range(shape.num_layers):
        p = f"encoder.layer.{i}."
        wq = _f32(w[p + "attention.self.query.weight"]).T * scale
        bq = _f32(w[p + "attention.self.query.bias"]) * scale
        wk, bk = _f32(w[p + "attention.self.key.weight"]).T, _f32(w[p + "attention.self.key.bias"])
        wv = _f32(w[p + "attention.self.value.weight"]).T
        bv = _f32(w[p + "attention.self.value.bias"])
        qkv_w = g.const(f"l{i}_qkv_w", np.concatenate([wq, wk, wv], axis=1))
        qkv_b = g.const(f"l{i}_qkv_b", np.concatenate([bq, bk, bv]))
        qkv = g.op1("Add", [g.op1("MatMul", [x, qkv_w]), qkv_b])
        q, k, v = g.op(
            "Split", [qkv, g.const(f"l{i}_split", np.array([h, h, h], np.int64))], n_out=3, axis=-1
        )
        q = g.op1("Transpose", [g.op1("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
        k = g.op1("Transpose", [g.op1("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])
        v = g.op1("Transpose", [g.op1("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
        scores = g.op1("Add", [g.op1("MatMul", [q, k]), additive])
        probs = g.op1("Softmax", [scores], axis=-1)
        ctx = g.op1("Transpose", [g.op1("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op1("Reshape", [ctx, merge_shape])
        attn = _linear(g, f"l{i}_attn_out", ctx, w, p + "attention.output.dense.")
        x = _layer_norm(
            g, f"l{i}_attn_ln", g.op1("Add", [attn, x]), w, p + "attention.output.LayerNorm.", shape
        )
        inter = _gelu_erf(g, _linear(g, f"l{i}_inter", x, w, p + "intermediate.dense."))
        out = _linear(g, f"l{i}_out", inter, w, p + "output.dense.")
        x = _layer_norm(
            g, f"l{i}_out_ln", g.op1("Add", [out, x]), w, p + "output.LayerNorm.", shape
        )

    # Masked mean pooling as a batched MatMul, then L2 normalisation.
    mask_row = g.op1("Unsqueeze", [mask_f, one_ax])  # [B, 1, S]
    summed = g.op1("Squeeze", [g.op1("MatMul", [mask_row, x]), one_ax])  # [B, H]
    count = g.op1("Max", [g.op1("ReduceSum", [mask_f, one_ax], keepdims=1), eps_count])  # [B, 1]
    mean = g.op1("Div", [summed, count])
    norm = g.op1("Max", [g.op1("ReduceL2", [mean], axes=[1], keepdims=1), eps_norm])
    g.nodes.append(helper.make_node("Div", [mean, norm], [output_name], name="normalize"))

    graph = helper.make_graph(
        g.nodes,
        "bert_sentence_embedding",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", h])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="inferq"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _layer_norm(
    g: _Graph, name: str, x: str, w: dict[str, np.ndarray], prefix: str, shape: BertShape
) -> str:
    return g.op1(
        "LayerNormalization",
        [
            x,
            g.const(name + "_w", _f32(w[prefix + "weight"])),
            g.const(name + "_b", _f32(w[prefix + "bias"])),
        ],
        axis=-1,
        epsilon=shape.layer_norm_eps,
    )


def _linear(g: _Graph, name: str, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
    """PyTorch Linear as MatMul (weight stored transposed, [in, out]) + Add bias."""
    weight = g.const(name + "_w", _f32(w[prefix + "weight"]).T)
    return g.op1(
        "Add", [g.op1("MatMul", [x, weight]), g.const(name + "_b", _f32(w[prefix + "bias"]))]
    )


def _gelu_erf(g: _Graph, x: str) -> str:
    """Exact GELU, x * 0.5 * (1 + erf(x / sqrt(2))): the pattern ORT and OpenVINO fuse to Gelu."""
    sqrt2 = g.const(f"gelu_sqrt2_{len(g.inits)}", np.array(math.sqrt(2.0), np.float32))
    half = g.const(f"gelu_half_{len(g.inits)}", np.array(0.5, np.float32))
    one = g.const(f"gelu_one_{len(g.inits)}", np.array(1.0, np.float32))
    erf = g.op1("Erf", [g.op1("Div", [x, sqrt2])])
    return g.op1("Mul", [g.op1("Mul", [x, g.op1("Add", [erf, one])]), half])
