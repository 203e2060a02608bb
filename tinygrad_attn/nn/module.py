"""Module: the base class of every layer, and the containers ``Sequential``, ``ModuleList``, ``ModuleDict``.

A Module is a tree. Assigning a ``Parameter`` to an attribute registers it as a weight, assigning a
Module registers a child, and ``register_buffer`` registers a tensor that is state but not learnable
(running statistics, positional tables). Everything else (``named_parameters``, ``state_dict``, ``to``,
``train``/``eval``, ``repr``) is a walk over that tree, so a layer only writes ``__init__`` and
``forward``. Names follow PyTorch, so ``"encoder.layers.0.self_attn.in_proj_weight"`` means the same
tensor here and in a PyTorch model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, overload

import numpy as np

from .. import dtypes as _dtypes
from ..autograd import no_grad
from ..backend import Device, device_of, to_device
from ..backend import device as _device
from ..tensor import Tensor
from .parameter import Parameter


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` returns: the keys it did not find and those it did not use."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models. Subclasses call ``super().__init__()`` first, then assign
    parameters, buffers and submodules as attributes, and define ``forward``."""

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these dicts to exist already.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define one in the subclass")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- registration ---------------------------------------------------------------------------------
    def _registries(self, name: str) -> dict:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign '{name}' before Module.__init__() was called: call "
                                 f"super().__init__() at the start of {type(self).__name__}.__init__")
        return self.__dict__

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._forget(name, keep="_modules")
            self.add_module(name, value)
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as parameter '{name}' of "
                                f"{type(self).__name__}: wrap it in nn.Parameter (or assign None)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as child module '{name}' of "
                                f"{type(self).__name__}: expected a Module or None")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} as buffer '{name}' of "
                                f"{type(self).__name__}: expected a Tensor or None")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: parameters, buffers and children live in their dicts.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def _forget(self, name: str, keep: str) -> None:
        """Drop ``name`` from the other registries (and plain attributes) before registering it in ``keep``
        (where it keeps its place in the order, if it was there already)."""
        d = self._registries(name)
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry != keep:
                d[registry].pop(name, None)
        self._non_persistent_buffers.discard(name)
        d.pop(name, None)

    def _check_name(self, name: str, what: str) -> None:
        self._registries(name)
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{what} name must be a non-empty string without '.', got {name!r}")
        taken = name in self.__dict__ and name not in self._parameters and name not in self._buffers
        if taken or (hasattr(type(self), name) and name not in self._registered_names()):
            raise KeyError(f"attribute '{name}' already exists on {type(self).__name__}")

    def _registered_names(self) -> set[str]:
        return set(self._parameters) | set(self._buffers) | set(self._modules)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None: a declared but absent weight, like a bias=False layer's bias)."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be an nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register state that is not learnable. Non-persistent buffers are left out of ``state_dict``."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: '{name}' must be a Tensor or None, got {type(tensor).__name__}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module (what ``self.name = module`` does)."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module or None, got {type(module).__name__}")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The module at a dotted path, e.g. ``"encoder.layers.0"`` ("" is self)."""
        module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}' (looking up '{target}')")
            module = child
        return module

    # ---- walking the tree -------------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, self first (name ""), depth first; a shared module appears once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct children, in registration order."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool,
                       remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{module_prefix}.{name}" if module_prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) for every parameter; a tied weight appears once, under its first name."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on self; e.g. custom initialisation."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) for self and every submodule."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)`` (dropout becomes the identity)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``p.grad = None`` (cheapest), or fill them with zeros in place."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.data[...] = 0
                p.grad._version.value += 1

    # ---- state dicts ----------------------------------------------------------------------------------------
    def state_dict(self, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Every parameter and persistent buffer by dotted name, in PyTorch's order (own parameters, own
        buffers, then each child's). Values share memory with the module; ``keep_vars=False`` detaches them."""
        out: OrderedDict[str, Tensor] = OrderedDict() if destination is None else destination  # type: ignore
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Copy tensors from ``state_dict`` into this module's parameters and buffers, in place.

        Values may be Tensors, NumPy arrays, or PyTorch tensors (anything with ``.detach().cpu().numpy()``);
        they are converted to each target's dtype and device. All problems are collected first and
        reported in one error: shape mismatches always, missing and unexpected keys when ``strict``.
        With ``assign=True`` the module keeps the given Tensors themselves instead of copying into its own.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict expects a mapping of names to tensors, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched = []
        arrays: dict[str, Any] = {}
        for key, (_, _, t) in targets.items():
            if key not in state_dict:
                continue
            arr = _as_array(state_dict[key], key)
            if tuple(arr.shape) != tuple(t.shape):
                mismatched.append(f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)} "
                                  f"from checkpoint, the shape in current model is {tuple(t.shape)}.")
            arrays[key] = arr
        problems = list(mismatched)
        if strict:
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected)
                                + ".")
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(problems))
        with no_grad():
            for key, arr in arrays.items():
                module, name, t = targets[key]
                if not assign:
                    _copy_into(t, arr)
                    continue
                value = state_dict[key] if isinstance(state_dict[key], Tensor) else Tensor._make(arr)
                if name in module._parameters:
                    module._parameters[name] = value if isinstance(value, Parameter) else \
                        Parameter(value, requires_grad=t.requires_grad)
                else:
                    module._buffers[name] = value
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self) -> dict[str, tuple[Module, str, Tensor]]:
        """state_dict's keys, each with the module that owns the tensor, its local name and the tensor."""
        targets: dict[str, tuple[Module, str, Tensor]] = {}
        for prefix, module in self.named_modules(remove_duplicate=False):
            p = prefix + "." if prefix else ""
            for name, t in module._parameters.items():
                if t is not None:
                    targets[p + name] = (module, name, t)
            for name, t in module._buffers.items():
                if t is not None and name not in module._non_persistent_buffers:
                    targets[p + name] = (module, name, t)
        return targets

    # ---- moving and converting ---------------------------------------------------------------------------
    def _apply(self, fn: Callable[[Any], Any]) -> Module:
        """Replace the array of every parameter, gradient and buffer by ``fn(array)``, in place: the
        Parameter objects stay the same, so an optimizer built before ``.to()`` still holds them."""
        for module in self.modules():
            for p in module._parameters.values():
                if p is None:
                    continue
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad.data = fn(p.grad.data)
            for name, b in module._buffers.items():
                if b is not None:
                    new = fn(b.data)
                    if new is not b.data:
                        module._buffers[name] = Tensor._make(new, requires_grad=b.requires_grad)
        return self

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> Module:
        """``.to("cuda")``, ``.to(ta.float64)``, ``.to("cpu", ta.float32)`` or ``.to(tensor)``: moves and/or
        converts parameters and buffers in place and returns self. Only floating-point tensors change dtype."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, Device) or (isinstance(a, str) and not _is_dtype(a)):
                device = a
            else:
                dtype = a
        target = _device(device) if device is not None else None
        dt = _dtypes.to_dtype(dtype) if dtype is not None else None
        if dt is not None and dt.kind != "f":
            raise TypeError(f"Module.to only accepts floating-point dtypes, got {dt}")

        def convert(arr: Any) -> Any:
            if target is not None and device_of(arr) != target:
                arr = to_device(arr, target)
            if dt is not None and arr.dtype.kind == "f" and arr.dtype != dt:
                arr = arr.astype(dt)
            return arr

        return self._apply(convert)

    def cuda(self, device: int | None = None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self) -> Module:
        return self.to("cpu")

    def float(self) -> Module:
        return self.to(_dtypes.float32)

    def double(self) -> Module:
        return self.to(_dtypes.float64)

    def half(self) -> Module:
        return self.to(_dtypes.float16)

    # ---- printing -------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside ``Name(...)``; layers override it with their constructor arguments."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if not extra:  # show weights registered directly on a custom module, with their shapes
            lines += [f"({name}): Parameter(shape={tuple(p.shape)}, dtype={p.dtype})"
                      for name, p in self._parameters.items() if p is not None]
        lines += _child_lines([(name, m) for name, m in self._modules.items() if m is not None])
        if not lines:
            return f"{self._get_name()}({extra})"
        body = "\n".join("  " + line.replace("\n", "\n  ") for line in ([extra] if extra else []) + lines)
        return f"{self._get_name()}(\n{body}\n)"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | self._registered_names())


def _child_lines(children: list[tuple[str, Module]]) -> list[str]:
    """``(name): repr`` per child; runs of identical numbered children print once, as ``(0-5): 6 x ...``."""
    lines: list[str] = []
    i = 0
    while i < len(children):
        name, m = children[i]
        text = repr(m)
        j = i + 1
        if name.isdigit():
            while j < len(children) and children[j][0].isdigit() and repr(children[j][1]) == text:
                j += 1
        if j - i > 1:
            lines.append(f"({name}-{children[j - 1][0]}): {j - i} x {text}")
        else:
            lines.append(f"({name}): {text}")
        i = j
    return lines


def _is_dtype(a: str) -> bool:
    try:
        _dtypes.to_dtype(a)
        return True
    except TypeError:
        return False


def _as_array(value: Any, key: str) -> Any:
    """A state-dict value as a NumPy/CuPy array (Tensors, arrays, and PyTorch tensors are accepted)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "__array_priority__") and hasattr(value, "shape") and hasattr(value, "dtype") \
            and not hasattr(value, "detach"):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a PyTorch tensor, without importing torch
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as e:
        raise TypeError(f"load_state_dict: value for '{key}' is a {type(value).__name__}, not a tensor") from e


def _copy_into(t: Tensor, arr: Any) -> None:
    """Write ``arr`` into ``t``'s memory (moving it to t's device and casting to t's dtype)."""
    arr = to_device(arr, t.device)
    t.xp.copyto(t.data, arr, casting="unsafe")
    t._version.value += 1


# ---- containers ------------------------------------------------------------------------------------------------


class Sequential(Module):
    """Modules applied one after the other: ``Sequential(Linear(4, 8), ReLU(), Linear(8, 2))``.
    Children are named "0", "1", ... (or by the keys of an OrderedDict)."""

    @overload
    def __init__(self, *modules: Module) -> None: ...
    @overload
    def __init__(self, modules: OrderedDict[str, Module], /) -> None: ...

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[_index(index, len(items), "Sequential")][1]

    def __setitem__(self, index: int, module: Module) -> None:
        name = list(self._modules)[_index(index, len(self), "Sequential")]
        setattr(self, name, module)

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters the parent sees (a plain Python list would hide them)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Any:
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[_index(index, len(values), "ModuleList")]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, str(_index(index, len(self), "ModuleList")), module)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        values = list(self._modules.values())
        values.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(values):
            self.add_module(str(i), m)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleList has no forward(): iterate over it in your own forward")


class ModuleDict(Module):
    """A dict of modules (string keys, insertion order) whose parameters the parent sees."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def pop(self, key: str) -> Module:
        return self._modules.pop(key)

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, m in pairs:
            self.add_module(key, m)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ModuleDict has no forward(): index it in your own forward")


def _index(index: int, n: int, what: str) -> int:
    if not isinstance(index, int):
        raise TypeError(f"{what} indices must be integers or slices, got {type(index).__name__}")
    if not -n <= index < n:
        raise IndexError(f"{what} index {index} is out of range for length {n}")
    return index % n
