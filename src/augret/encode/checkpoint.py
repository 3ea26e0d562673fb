"""Encoder weights on disk: UniIR's ``.pth`` files and augret's encoder directories.

UniIR's released checkpoints (``clip_sf_large.pth``, ``clip_sf_base.pth``) are ``torch.save``
dicts whose ``"model"`` holds the state dict of ``CLIPScoreFusion``: OpenAI CLIP's keys under
``clip_model.``, beside ``optimizer``, ``scheduler``, ``epoch``, ``scaler`` and an OmegaConf
``config``. They are read without importing OmegaConf and without running pickled code: a
plain ``weights_only`` load is tried first; otherwise an unpickler that rebuilds tensors and
containers and replaces every other class by an inert stub.

An augret encoder directory holds ``model.pt`` (``{"model": CLIPScoreFusion state dict}``,
the same layout, so it is itself a UniIR-style checkpoint) and ``encoder.json`` (the backbone
spec that rebuilds the architecture; Hugging Face backbones also keep their config, tokenizer
and image processor in ``hf/``).
"""

from __future__ import annotations

import io
import logging
import pickle
import types
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.data.jsonl import atomic_writer, read_json, write_json
from augret.encode.backbones import BackboneSpec
from augret.errors import DataFormatError, DataNotFoundError

__all__ = [
    "ENCODER_FILE",
    "MODEL_FILE",
    "is_encoder_dir",
    "load_uniir_state_dict",
    "read_encoder_dir",
    "save_encoder_dir",
    "save_uniir_checkpoint",
    "strip_prefixes",
]

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.json"
MODEL_FILE = "model.pt"
FORMAT = "augret-encoder"
PREFIXES = ("module.", "clip_model.", "clip.")

_SAFE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "bytearray", "bytes", "complex",
                  "slice", "int", "float", "str", "bool", "object"}


def _stub(module: str, name: str) -> type:
    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self._state = state

    return type(name, (), {"__new__": __new__, "__init__": __init__,
                           "__setstate__": __setstate__, "__module__": f"stub.{module}"})


_ALLOWED: dict[str, Any] = {}


def _allowed() -> dict[str, Any]:
    if _ALLOWED:
        return _ALLOWED
    import builtins
    import collections
    import copyreg

    torch = require("torch", "train")
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "copyreg._reconstructor": copyreg._reconstructor,
        "_codecs.encode": __import__("codecs").encode,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.Size": torch.Size,
        "torch.Tensor": torch.Tensor,
        "torch.device": torch.device,
        "torch.serialization._get_layout": torch.serialization._get_layout,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
    }
    allowed.update({f"builtins.{n}": getattr(builtins, n) for n in _SAFE_BUILTINS})
    allowed.update({f"torch._utils.{n}": getattr(torch._utils, n)
                    for n in dir(torch._utils) if n.startswith("_rebuild_")})
    allowed.update({f"torch.{n}": getattr(torch, n) for n in dir(torch)
                    if isinstance(getattr(torch, n, None), torch.dtype)})
    _ALLOWED.update(allowed)
    return _ALLOWED


class _StubUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; every other global becomes an inert stub."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed().get(f"{module}.{name}")
        return obj if obj is not None else _stub(module, name)


_stub_pickle = types.ModuleType("augret_stub_pickle")
_stub_pickle.Unpickler = _StubUnpickler  # type: ignore[attr-defined]
_stub_pickle.load = lambda f, **kw: _StubUnpickler(f, **kw).load()  # type: ignore[attr-defined]
_stub_pickle.__name__ = "augret_stub_pickle"


def _torch_load(path: Path) -> Any:
    torch = require("torch", "train")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.info("%s holds pickled objects beyond tensors (UniIR's OmegaConf config); "
                 "reading it with inert stubs for them", path)
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_stub_pickle)


def strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop DDP's ``module.`` and the fusion wrapper's ``clip_model.``/``clip.`` prefixes."""
    out = {}
    for k, v in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
        out[k] = v
    return out


def load_uniir_state_dict(path: str | Path) -> dict[str, Any]:
    """The backbone state dict (OpenAI CLIP keys) of a UniIR CLIP_SF checkpoint.

    Accepts UniIR's dict with ``"model"``, a bare ``CLIPScoreFusion`` state dict, or a bare
    OpenAI CLIP state dict.

    Raises:
        DataNotFoundError: No such file.
        DataFormatError: The file holds no state dict.
    """
    torch = require("torch", "train")
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"{p}: no such checkpoint file")
    try:
        obj = _torch_load(p)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataFormatError(f"cannot read checkpoint: {exc}", path=p) from None
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if isinstance(sd, dict) and "state_dict" in sd and not torch.is_tensor(sd["state_dict"]):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise DataFormatError("no state dict found (expected a dict whose 'model' maps "
                              "parameter names to tensors)", path=p)
    sd = strip_prefixes(sd)
    for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI JIT extras
        sd.pop(key, None)
    return sd


def save_uniir_checkpoint(model: Any, path: str | Path, **extra: Any) -> Path:
    """Write ``{"model": model.state_dict(), **extra}`` as UniIR does (atomically)."""
    torch = require("torch", "train")
    p = Path(path)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), **extra}, buf)
    with atomic_writer(p, "wb") as f:
        f.write(buf.getvalue())
    return p


def is_encoder_dir(path: str | Path) -> bool:
    """Whether ``path`` is an augret encoder directory."""
    return (Path(path) / ENCODER_FILE).is_file()


def save_encoder_dir(out_dir: str | Path, model: Any, spec: BackboneSpec, *,
                     name: str, processor: Any = None, info: dict[str, Any] | None = None
                     ) -> Path:
    """Write an encoder directory: ``model.pt`` (UniIR layout) and ``encoder.json``.

    Args:
        out_dir: The directory.
        model: The :class:`~augret.encode.clip_sf.CLIPScoreFusion` module.
        spec: Its backbone spec.
        name: Where it came from (registry name or path).
        processor: HF backbones: the processor whose tokenizer and image processor are saved.
        info: Extra fields for ``encoder.json`` (e.g. the training step).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.kind == "hf":
        hf_dir = out / "hf"
        model.clip_model.config.save_pretrained(hf_dir)
        if processor is not None:
            processor.tokenizer.save_pretrained(hf_dir)
            processor.image_transform.processor.save_pretrained(hf_dir)
        spec = spec.with_changes(model="hf", pretrained=None)
    save_uniir_checkpoint(model, out / MODEL_FILE)
    meta = {"format": FORMAT, "version": 1, "architecture": "clip_sf", "source": name,
            "backbone": spec.to_dict(), **(info or {})}
    write_json(out / ENCODER_FILE, meta)
    return out


def read_encoder_dir(path: str | Path) -> tuple[BackboneSpec, dict[str, Any], dict[str, Any]]:
    """Spec, backbone state dict and ``encoder.json`` of an encoder directory.

    Raises:
        DataNotFoundError: Not an encoder directory.
        DataFormatError: ``encoder.json`` is unreadable or of another format.
    """
    root = Path(path)
    meta_file = root / ENCODER_FILE
    meta = read_json(meta_file, what="an augret encoder directory")
    if meta.get("format") != FORMAT:
        raise DataFormatError(f"format is {meta.get('format')!r}, expected {FORMAT!r}",
                              path=meta_file)
    spec = BackboneSpec.from_dict(meta["backbone"])
    if spec.kind == "hf" and spec.model == "hf":
        spec = spec.with_changes(model=str(root / "hf"))
    return spec, load_uniir_state_dict(root / MODEL_FILE), meta
