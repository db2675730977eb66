"""Fast encoders of all-MiniLM-L6-v2 (with its mean pooling and L2): the model exported to
ONNX and run by onnxruntime (the default backend), or called directly through torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evoroute.retrieval.model import model_sha256
from evoroute.settings import offline_env, settings

MAX_SEQ_LENGTH = 256        # the model's sentence_bert_config.json
ONNX_OPSET = 17


def onnx_cache_dir() -> Path:
    return settings().cache_dir / "onnx"


class _Tokens:
    """The model's own fast tokenizer (tokenizer.json), truncated to 256 tokens like the
    reference, padded per batch."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        tok.enable_truncation(MAX_SEQ_LENGTH)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tok = tok

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        return ids, mask, np.zeros_like(ids)


def _pooling_module():
    import torch

    class Pooled(torch.nn.Module):
        """Transformer -> mean pooling over the attention mask -> L2 (the model's modules)."""

        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=-1)

    return Pooled


class TorchEncoder:
    """all-MiniLM-L6-v2 called directly (no SentenceTransformer.encode overhead);
    ``quantize=True``: Linear layers dynamically quantised to int8."""

    def __init__(self, path: Path, quantize: bool = False) -> None:
        import torch
        from transformers import AutoModel

        offline_env()
        bert = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        model = _pooling_module()(bert).eval()
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                           dtype=torch.qint8)
        self.model, self.tokens = model, _Tokens(path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        ids, mask, tt = self.tokens(texts)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tt))
        return out.numpy().astype(np.float32)


# ONNX variants (benchmarks/embedding_speed.py measures each; docs/performance.md, "Query
# embedding"). "fp32" is torch's export of the model; "int8" its weights dynamically quantised
# per tensor; "fused" the export with eager attention rewritten by onnxruntime's transformer
# optimizer (Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm ops); "int8-pc" / "fused-int8-pc"
# per-channel int8 of every MatMul (and fused Attention); "fused-int8-attn" per-channel int8 of
# the six attention-output MatMuls only (the one int8 part that stays faithful).
ONNX_VARIANTS = ("fp32", "int8", "int8-pc", "fused", "fused-int8-pc", "fused-int8-attn")


class OnnxEncoder:
    """all-MiniLM-L6-v2 (with its mean pooling and L2) exported to ONNX once from the local
    model files and run by onnxruntime; ``variant`` (one of ``ONNX_VARIANTS``; ``quantize=True``
    means "int8") picks the graph. The files are cached under ``cache_dir`` by the weights'
    sha256 and the variant, written atomically."""

    def __init__(self, path: Path, cache_dir: Path, quantize: bool = False,
                 threads: int = 1, variant: str | None = None) -> None:
        import onnxruntime as ort

        variant = variant or ("int8" if quantize else "fp32")
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"ONNX variant must be one of {', '.join(ONNX_VARIANTS)}, "
                             f"got {variant!r}")
        self.path, self.variant = Path(path), variant
        onnx_file = self._export(self.path, Path(cache_dir), variant)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), opts,
                                            providers=["CPUExecutionProvider"])
        self.tokens = _Tokens(self.path)
        self.file = onnx_file

    @staticmethod
    def cache_file(path: Path, cache_dir: Path, variant: str) -> Path:
        """Where a variant is cached: keyed by the weights' sha256 (fp32 keeps the name it had
        before the other variants existed; the int8 ones end in "-r7", see ``_quantize``)."""
        tag = model_sha256(path)[:16]
        if variant == "fp32":
            return Path(cache_dir) / f"minilm-l6-{tag}.onnx"
        # quantised files since 7-bit weights (_quantize's reduce_range) carry "-r7": an 8-bit
        # file cached before is not reused
        r7 = "-r7" if "int8" in variant else ""
        return Path(cache_dir) / f"minilm-l6-{tag}-{variant}{r7}.onnx"

    @classmethod
    def _export(cls, path: Path, cache_dir: Path, variant: str) -> Path:
        out = cls.cache_file(path, cache_dir, variant)
        if out.is_file():
            return out
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        if variant == "fp32":
            _torch_export(path, tmp)
        elif variant == "fused":
            eager = out.with_suffix(f".eager{os.getpid()}")
            try:
                _torch_export(path, eager, attention="eager")
                _fuse(path, eager, tmp)
            finally:
                eager.unlink(missing_ok=True)
        else:
            base = cls._export(path, cache_dir, "fused" if variant.startswith("fused") else "fp32")
            _quantize(base, tmp, per_channel=variant != "int8",
                      attention_output_only=variant == "fused-int8-attn")
        os.replace(tmp, out)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask, tt = self.tokens(texts)
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": tt})
        return np.asarray(out, np.float32)


def _torch_export(path: Path, out: Path, attention: str | None = None) -> None:
    """torch's ONNX export of the model with its pooling; ``attention="eager"`` exports the
    explicit softmax(QK^T)V pattern that onnxruntime's optimizer recognises (the default SDPA
    mask pattern is left unfused)."""
    import warnings

    import torch
    from transformers import AutoModel

    offline_env()
    kwargs = {"attn_implementation": attention} if attention else {}
    bert = AutoModel.from_pretrained(str(path), local_files_only=True, **kwargs).eval()
    model = _pooling_module()(bert).eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(out),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["embedding"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                                        ("input_ids", "attention_mask", "token_type_ids")}
                          | {"embedding": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)


def _fuse(path: Path, src: Path, out: Path) -> None:
    """onnxruntime's transformer optimizer on the eager export; raises unless every layer's
    attention was fused (a silently unfused graph would be measured under the wrong name)."""
    import json

    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((Path(path) / "config.json").read_text())
    model = optimize_model(str(src), model_type="bert", num_heads=config["num_attention_heads"],
                           hidden_size=config["hidden_size"], opt_level=0, use_gpu=False)
    fused = model.get_fused_operator_statistics()
    if fused.get("Attention", 0) != config["num_hidden_layers"]:
        raise RuntimeError(f"onnxruntime's optimizer fused {fused.get('Attention', 0)} of "
                           f"{config['num_hidden_layers']} attention layers")
    model.save_model_to_file(str(out))


def _quantize(src: Path, out: Path, per_channel: bool, attention_output_only: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = None
    if attention_output_only:
        graph = onnx.load(str(src), load_external_data=False).graph
        nodes = [n.name for n in graph.node
                 if n.op_type == "MatMul" and "attention/output/dense" in n.name]
        if not nodes:
            raise RuntimeError("no attention-output MatMul found to quantise")
    # DefaultTensorType: shape inference cannot type the outputs of the fused (com.microsoft)
    # ops, which quantize_dynamic needs for the MatMuls that follow them. reduce_range: 7-bit
    # weights, onnxruntime's advice for x86 CPUs without VNNI, whose u8s8 kernels saturate int16
    # sums with 8-bit weights: on an AVX2-only AMD EPYC the attention-only variant fell to cosine
    # 0.9949 of float32 (0.99985 with it); the same file on every machine.
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                     nodes_to_quantize=nodes, reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
