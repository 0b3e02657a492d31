"""Loading and saving model bundles, and reading `.safetensors` files safely.

The project's own format is one `.safetensors` file: tensors `model.*` and `classifier.*`, and the
JSON configs in its metadata. Nothing in it is pickled, so opening a file can never run code.

Files are read with ordinary reads, never memory-mapped (the safetensors library maps them: a file
truncated or rewritten while it is read then kills the process with SIGBUS). The header is read and
checked first — dtypes, shapes and byte ranges against the file's real size — and the network a config
describes is built on the "meta" device (no memory) and compared with it, so a bad config or a damaged
file is refused with a CheckpointError before anything large is allocated or read. Then each tensor
is read into its own buffer; a file that shrinks meanwhile is a short read, i.e. a CheckpointError.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .bundle import ClassifierConfig, ModelBundle, ModelConfig
from .fileio import atomic_save
from .models import build_network, check_network, network_io

FORMAT = "guidance-studio/1"


class CheckpointError(ValueError):
    """A file that cannot be loaded as the model it claims to be; the message says why."""


# --- reading .safetensors files -----------------------------------------------------------------

MAX_HEADER_BYTES = 100 * 2**20  # the format's own limit
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor as the header describes it: dtype, shape, and its bytes [start, end) after the header."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked header: the string metadata, the tensors by name, where the data block begins."""

    metadata: dict[str, str]
    tensors: dict[str, TensorSpec]
    data_start: int


def read_header(path: str | Path) -> Header:
    """The header of a .safetensors file; CheckpointError (naming the problem) for a damaged one."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path.name}: not a readable .safetensors file (only {size} bytes).")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path.name}: not a readable .safetensors file (its header claims "
                                      f"{length} bytes, the file has {size}); is it damaged or truncated?")
            text = fh.read(length)
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from None
    if len(text) < length:
        raise CheckpointError(f"{path.name}: the file was truncated while it was read.")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path.name}: its header is not valid JSON; the file is damaged.") from None
    return _checked(raw, path.name, 8 + length, size - 8 - length)


def _checked(raw: object, name: str, data_start: int, data_size: int) -> Header:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{name}: its header is not a table of tensors; the file is damaged.")
    metadata = raw.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise CheckpointError(f"{name}: its metadata is not a table of text; the file is damaged.")
    tensors: dict[str, TensorSpec] = {}
    for key, entry in raw.items():
        tensors[key] = _spec(entry, f"{name}: tensor {key[:80]!r}", data_size)
    return Header(metadata, tensors, data_start)


def _spec(entry: object, what: str, data_size: int) -> TensorSpec:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{what} is not described properly; the file is damaged.")
    dtype = DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    if dtype is None:
        raise CheckpointError(f"{what} has an unknown number type {str(entry.get('dtype'))[:20]!r}.")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_count(d) for d in shape):
        raise CheckpointError(f"{what} has no valid shape; the file is damaged.")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise CheckpointError(f"{what} has no valid position in the file; the file is damaged.")
    start, end = offsets
    if not start <= end <= data_size:
        raise CheckpointError(f"{what} lies beyond the end of the file; the file is damaged or truncated.")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if end - start != math.prod(shape) * itemsize:
        raise CheckpointError(f"{what}: its shape {tuple(shape)} does not match its {end - start} bytes; "
                              "the file is damaged.")
    return TensorSpec(dtype, tuple(shape), start, end)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def read_tensors(path: str | Path, header: Header | None = None,
                 names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (all, or `names`), read into memory (no memory map).

    A file that changed since its header was read gives CheckpointError, never a crash.
    """
    path = Path(path)
    header = header or read_header(path)
    wanted = header.tensors if names is None else {n: header.tensors[n] for n in names}
    out: dict[str, torch.Tensor] = {}
    try:
        with open(path, "rb") as fh:
            for key, spec in sorted(wanted.items(), key=lambda item: item[1].start):
                buffer = bytearray(spec.end - spec.start)
                fh.seek(header.data_start + spec.start)
                if fh.readinto(buffer) != len(buffer):
                    raise CheckpointError(f"{path.name}: the file was truncated while it was read.")
                if not buffer:
                    out[key] = torch.empty(spec.shape, dtype=spec.dtype)
                    continue
                out[key] = torch.frombuffer(buffer, dtype=spec.dtype).reshape(spec.shape)
    except OSError as exc:
        raise CheckpointError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from None
    return {key: out[key] for key in wanted}


# --- checking a network against the weights present ---------------------------------------------


Shapes = Mapping[str, "TensorSpec | Tensor"]  # what a file holds: header entries or loaded tensors


def checked_network(architecture: str, network: Mapping, weights: Shapes, what: str) -> nn.Module:
    """The network `architecture(**network)`, built only after its keywords are checked (`check_network`)
    and its parameters, built on the meta device, match `weights` key for key in shape and kind of
    number; CheckpointError (naming the first difference and both parameter counts) otherwise."""
    try:
        check_network(architecture, network)
        with _WeightsOnMeta():
            skeleton = build_network(architecture, network)
    except ValueError as exc:
        raise CheckpointError(f"{what}: its configuration is not valid: {exc}") from None
    check_weights(skeleton.state_dict(), weights, what)
    return build_network(architecture, network)


class _WeightsOnMeta(TorchFunctionMode):
    """Build a network whose weights live on the meta device: shapes, no memory, no values.

    Only the shape-given factories that make weights go there; small computed tensors (a schedule,
    positions) are made for real, and random initialisers leave meta tensors alone. (torch's own
    `torch.device("meta")` sends everything to meta kernels, and those of arange and normal_ import
    torch._dynamo and sympy: a second of loading, and modules the installers leave out.)
    """

    WEIGHT_FACTORIES = (torch.empty, torch.zeros, torch.ones, torch.full, torch.randn, torch.rand)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.WEIGHT_FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        elif getattr(func, "__name__", "") in ("normal_", "trunc_normal_", "uniform_"):
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def check_weights(expected: Mapping[str, Tensor], weights: Shapes, what: str) -> None:
    """CheckpointError unless `weights` has exactly the keys of `expected`, each with the same shape and
    the same kind of number (floating point or integer)."""
    def totals() -> str:
        implied = sum(math.prod(v.shape) for v in expected.values())
        present = sum(math.prod(w.shape) for w in weights.values())
        return f"(the configuration describes {implied:,} parameters, the file holds {present:,})"

    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing:
        raise CheckpointError(f"{what}: missing key {missing[0]!r} ({len(missing)} missing in all) {totals()}.")
    if unexpected:
        raise CheckpointError(f"{what}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all) "
                              f"{totals()}.")
    for key, value in expected.items():
        held = weights[key]
        if tuple(held.shape) != tuple(value.shape):
            raise CheckpointError(f"{what}: {key!r} has shape {tuple(held.shape)} in the file, but the model expects "
                                  f"{tuple(value.shape)} {totals()}.")
        if held.dtype.is_floating_point != value.dtype.is_floating_point:
            raise CheckpointError(f"{what}: {key!r} holds {_kind(held.dtype)} numbers in the file, but the model "
                                  f"expects {_kind(value.dtype)} ones; the file is damaged or not this model's.")


def _kind(dtype: torch.dtype) -> str:
    return "floating-point" if dtype.is_floating_point else "integer"


def load_state_checked(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Load `state` strictly, after `check_weights` (load_state_dict converts to the module's dtypes)."""
    check_weights(module.state_dict(), state, what)
    module.load_state_dict(state, strict=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a bundle file, without loading its tensors."""
    return _bundle_metadata(read_header(path), Path(path))


def _bundle_metadata(header: Header, path: Path) -> dict[str, str]:
    if header.metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Guidance Studio bundle (no '{FORMAT}' metadata).")
    return header.metadata


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write `bundle` atomically (temporary file, then rename) and return the path."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    meta = {"format": FORMAT, "name": bundle.name, "config": bundle.config.to_json()}
    if bundle.classifier is not None and bundle.classifier_config is not None:
        tensors.update({f"classifier.{k}": v.detach().cpu().contiguous()
                        for k, v in bundle.classifier.state_dict().items()})
        meta["classifier_config"] = bundle.classifier_config.to_json()
    atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_bundle(path: str | Path, device: torch.device | str = "cpu", precision: str = "fp32") -> ModelBundle:
    """Read a bundle file; a CheckpointError names what is wrong with a bad one."""
    path = Path(path)
    header = read_header(path)
    meta = _bundle_metadata(header, path)
    try:
        config = ModelConfig.from_json(meta.get("config"))
        classifier_config = (ClassifierConfig.from_json(meta["classifier_config"])
                             if "classifier_config" in meta else None)
    except ValueError as exc:
        raise CheckpointError(f"{path}: its configuration is unreadable ({exc})") from None
    parts = {"model": config} | ({"classifier": classifier_config} if classifier_config is not None else {})
    _check_sample_shape(config, classifier_config, path.name)
    networks = {prefix: checked_network(cfg.architecture, cfg.network, _prefixed(header.tensors, f"{prefix}."),
                                        f"{path.name} ({prefix})") for prefix, cfg in parts.items()}
    tensors = read_tensors(path, header, [k for k in header.tensors if k.split(".", 1)[0] in networks])
    for prefix, module in networks.items():
        load_state_checked(module, _prefixed(tensors, f"{prefix}."), f"{path.name} ({prefix})")

    classifier = networks["classifier"].eval() if "classifier" in networks else None
    try:
        bundle = ModelBundle(meta.get("name", path.stem), config, networks["model"].eval(), classifier,
                             classifier_config, device=torch.device(device), precision=precision)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return bundle.to(device)


def _check_sample_shape(config: ModelConfig, classifier: ClassifierConfig | None, name: str) -> None:
    """CheckpointError unless the networks take samples of the config's shape and give what the engine
    expects: ε (and v when the config learns sigma) of that shape, and one logit per class."""
    shape = config.data_shape
    outputs = shape[0] * (2 if config.learn_sigma else 1)
    checks = [("model", config.architecture, config.network, outputs)]
    if classifier is not None:
        checks.append(("classifier", classifier.architecture, classifier.network, classifier.num_classes))
    for part, architecture, network, expected in checks:
        try:
            takes, gives = network_io(architecture, network)
        except ValueError as exc:
            raise CheckpointError(f"{name} ({part}): its configuration is not valid: {exc}") from None
        if takes is not None and (len(takes) != len(shape) or any(t not in (None, s) for t, s in zip(takes, shape))):
            shown = tuple("any" if t is None else t for t in takes)
            raise CheckpointError(f"{name} ({part}): the network takes samples of shape {shown}, but the "
                                  f"configuration's samples are {shape}.")
        if gives is not None and gives != expected:
            raise CheckpointError(f"{name} ({part}): the network gives {gives} outputs per sample where "
                                  f"{expected} are expected.")


def _prefixed(tensors: Mapping[str, "TensorSpec | Tensor"], prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
