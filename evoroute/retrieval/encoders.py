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


class OnnxEncoder:
    """all-MiniLM-L6-v2 (with its mean pooling and L2) exported to ONNX once from the local
    model files and run by onnxruntime; ``quantize=True``: weights dynamically quantised to
    int8 (onnxruntime.quantization). The exported files are cached under ``cache_dir`` by the
    weights' sha256, written atomically."""

    def __init__(self, path: Path, cache_dir: Path, quantize: bool = False,
                 threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        onnx_file = self._export(self.path, Path(cache_dir), quantize)
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
    def _export(path: Path, cache_dir: Path, quantize: bool) -> Path:
        tag = model_sha256(path)[:16]
        fp32 = cache_dir / f"minilm-l6-{tag}.onnx"
        out = cache_dir / f"minilm-l6-{tag}-int8.onnx" if quantize else fp32
        if out.is_file():
            return out
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not fp32.is_file():
            import torch
            from transformers import AutoModel

            offline_env()
            bert = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
            model = _pooling_module()(bert).eval()
            ids = torch.ones((1, 8), dtype=torch.long)
            tmp = fp32.with_suffix(f".tmp{os.getpid()}")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(tmp),
                                  input_names=["input_ids", "attention_mask", "token_type_ids"],
                                  output_names=["embedding"],
                                  dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                                                ("input_ids", "attention_mask", "token_type_ids")}
                                  | {"embedding": {0: "batch"}},
                                  opset_version=ONNX_OPSET, dynamo=False)
            os.replace(tmp, fp32)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = out.with_suffix(f".tmp{os.getpid()}")
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            os.replace(tmp, out)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask, tt = self.tokens(texts)
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": tt})
        return np.asarray(out, np.float32)
