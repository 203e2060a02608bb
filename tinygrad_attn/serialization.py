"""Checkpoints: ``ta.save(obj, path)`` and ``ta.load(path)``, one safetensors file, never pickle.

What can be saved: state dicts of modules (``{"layers.0.linear1.weight": Tensor, ...}``) and of
optimizers and schedulers, or any nesting of dicts, lists and tuples holding tensors, NumPy arrays,
numbers, strings, booleans and None (e.g. ``{"model": ..., "optimizer": ..., "epoch": 3}``).

The file is a plain safetensors file:

- its tensors are the arrays found in ``obj``, each keyed by its path: a module state dict keeps its
  names (``layers.0.self_attn.in_proj_weight``), nested ones are joined with dots (``optimizer.state.0.exp_avg``);
- its ``__metadata__["tinygrad_attn"]`` is JSON describing everything else: the nesting, the numbers and
  strings, and for each tensor the key of its array and a CRC32 of its bytes (so flipped bits are caught).

Loading parses JSON and copies bytes into arrays: a checkpoint can never execute code, unlike pickle.
A safetensors file written by other tools (PyTorch, ...) loads as a flat ``{name: Tensor}`` dict.

Saving is atomic: the file is written under a temporary name in the same directory, flushed to disk
(fsync), then renamed over ``path`` (``os.replace``), and the directory is fsynced. A process killed
mid-save leaves the previous checkpoint intact.

safetensors is an optional dependency: ``pip install 'tinygrad_attn[io]'``.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from typing import Any

import numpy as np

from .backend import Device, device, module_for, to_device
from .tensor import Tensor

FORMAT = "tinygrad_attn.checkpoint"
VERSION = 1
_META_KEY = "tinygrad_attn"

# dtypes safetensors stores (bool as its BOOL type)
_STORABLE = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
             "uint64", "bool", "complex64"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read: truncated, corrupt, or not a safetensors file."""


def _safetensors() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as e:
        raise ImportError("ta.save / ta.load store checkpoints with the 'safetensors' package, which is not "
                          "installed: pip install 'tinygrad_attn[io]' (or: pip install safetensors)") from e
    return safetensors


# ------------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------------


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state dict, or nested dicts/lists/tuples of tensors, numbers, strings, None) to
    ``path`` as a safetensors file, atomically. GPU tensors are copied to the host."""
    st = _safetensors()
    arrays: dict[str, np.ndarray] = {}
    root = _encode(obj, [], arrays)
    header = json.dumps({"format": FORMAT, "version": VERSION, "root": root})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"ta.save: cannot write '{path}': the directory '{directory}' does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        st.numpy.save_file(arrays, tmp, metadata={_META_KEY: header})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(obj: Any, path: list, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON: scalars as themselves, containers and arrays as tagged objects."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Tensor):
        node = _store(obj.data, path, arrays, "$tensor")
        if obj.requires_grad:
            node["requires_grad"] = True
        return node
    if isinstance(obj, np.ndarray):
        return _store(obj, path, arrays, "$ndarray")
    if isinstance(obj, np.generic):
        return _store(np.asarray(obj), path, arrays, "$numpy_scalar")
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"ta.save: dict key {k!r} at '{_where(path)}' is a {type(k).__name__}; "
                                "keys must be strings, numbers, booleans or None")
            items.append([k, _encode(v, [*path, k], arrays)])
        return {"$dict": items}
    if isinstance(obj, (list, tuple)):
        tag = "$tuple" if isinstance(obj, tuple) else "$list"
        return {tag: [_encode(v, [*path, i], arrays) for i, v in enumerate(obj)]}
    hint = " (save its state_dict() instead)" if hasattr(obj, "state_dict") else ""
    raise TypeError(f"ta.save: cannot store a {type(obj).__name__} at '{_where(path)}'{hint}; checkpoints hold "
                    "tensors, arrays, numbers, strings, booleans, None, and dicts/lists/tuples of them")


def _store(array: Any, path: list, arrays: dict[str, np.ndarray], tag: str) -> dict[str, Any]:
    host = np.asarray(to_device(array, Device("cpu")))
    if not host.flags.c_contiguous:  # safetensors writes the raw buffer: it must be dense, in C order
        host = host.copy(order="C")
    if host.dtype.name not in _STORABLE:
        raise TypeError(f"ta.save: the array at '{_where(path)}' has dtype {host.dtype}, which safetensors cannot "
                        f"store (supported: {', '.join(sorted(_STORABLE))})")
    key = _where(path) or "tensor"
    if key in arrays:  # two paths joined to the same dotted name, e.g. {"a.b": x, "a": {"b": y}}
        n = 2
        while f"{key}#{n}" in arrays:
            n += 1
        key = f"{key}#{n}"
    arrays[key] = host
    return {tag: key, "crc32": _crc32(host)}


def _where(path: list) -> str:
    return ".".join(str(p) for p in path)


def _crc32(array: np.ndarray) -> int:
    return zlib.crc32(array.reshape(-1).view(np.uint8).data) if array.size else 0


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


def load(path: str | os.PathLike, device: str | Device | None = None) -> Any:
    """Read a checkpoint written by ``save``; tensors go to ``device`` (default: the CPU; e.g. ``"cuda"``).

    Raises ``CheckpointError`` (naming the path) for a truncated or corrupt file, ``FileNotFoundError``
    if there is none. Executes no code from the file.
    """
    st = _safetensors()
    path = os.fspath(path)
    target = _device(device)
    module_for(target)  # a clear error now if e.g. CUDA is not available
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ta.load: no checkpoint file at '{path}'")
    try:
        with st.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, or a header the library could not parse
        raise CheckpointError(f"ta.load: '{path}' is not a readable checkpoint (truncated or corrupt?): {e}") from e

    if _META_KEY not in metadata:  # a plain safetensors file from another tool: {name: Tensor}
        return {k: Tensor._make(to_device(a, target)) for k, a in arrays.items()}
    try:
        header = json.loads(metadata[_META_KEY])
        if header.get("format") != FORMAT:
            raise ValueError(f"unknown format {header.get('format')!r}")
        if header.get("version", 0) > VERSION:
            raise ValueError(f"written by a newer version of tinygrad_attn (format version {header['version']})")
        return _Decoder(arrays, target).decode(header["root"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"ta.load: '{path}' is corrupt: {e}") from e


def _device(spec: Any) -> Device:
    return device(spec) if spec is not None else Device("cpu")


class _Decoder:
    """Rebuild the object that ``_encode`` described, from the JSON tree and the file's arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], target: Device) -> None:
        self.arrays, self.target = arrays, target

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or len(node) == 0:
            raise ValueError(f"unexpected node {node!r} in the structure")
        if "$dict" in node:
            return {k: self.decode(v) for k, v in node["$dict"]}
        if "$list" in node:
            return [self.decode(v) for v in node["$list"]]
        if "$tuple" in node:
            return tuple(self.decode(v) for v in node["$tuple"])
        if "$tensor" in node:
            t = Tensor._make(to_device(self.array(node, "$tensor"), self.target))
            return t.requires_grad_(True) if node.get("requires_grad") else t
        if "$ndarray" in node:
            return self.array(node, "$ndarray")
        if "$numpy_scalar" in node:
            return self.array(node, "$numpy_scalar")[()]
        raise ValueError(f"unknown node type {sorted(node)} in the structure")

    def array(self, node: dict[str, Any], tag: str) -> np.ndarray:
        key = node[tag]
        if key not in self.arrays:
            raise ValueError(f"the structure refers to tensor '{key}', which the file does not hold")
        array = self.arrays[key]
        if _crc32(array) != node["crc32"]:
            raise ValueError(f"the bytes of tensor '{key}' do not match their checksum")
        return array
