"""The model contract (LEMUR's): ``supported_hyperparameters()`` and ``class Net``.

A contract module defines ``Net(in_shape, out_shape, prm, device)`` with
``train_setup(prm)`` (criteria and optimizer) and ``learn(train_data)`` (one epoch). Plain
``nn.Module`` blocks from the index get both through :class:`DefaultTraining`, so any block
that maps an image batch to logits trains the same way. Used inside the sandbox only: model
code is untrusted.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from nnrag.exceptions import NnragError

GRAD_CLIP = 3.0


class ContractError(NnragError):
    """Model code that does not follow the contract; says what is missing."""


def check_source(code: str, *, block: str | None = None) -> None:
    """Static check before anything runs: parses, and defines what it must."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ContractError(f"model code does not parse: line {exc.lineno}, "
                            f"column {exc.offset}: {exc.msg}") from None
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    wanted = block or "Net"
    if wanted not in names:
        hint = "" if block else " (or give a block name to train a plain nn.Module)"
        raise ContractError(f"model code defines no top-level {wanted!r}{hint}")


def input_kinds(code: str) -> frozenset[str]:
    """The literal ``INPUT_KINDS = {...}`` a contract module declares ("image", "signal"),
    read without running the code; empty when there is none."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return frozenset()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "INPUT_KINDS"
                                                for t in node.targets):
            try:
                return frozenset(str(k) for k in ast.literal_eval(node.value))
            except (ValueError, TypeError, SyntaxError):
                return frozenset()
    return frozenset()


def declared_hyperparameters(code: str) -> frozenset[str] | None:
    """The names a contract module's ``supported_hyperparameters()`` returns, read without
    running it: none when it has no such function, ``None`` when the function is more than
    a literal ``return {...}`` (LEMUR's are literals), so only the trial can tell."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    fns = [n for n in tree.body
           if isinstance(n, ast.FunctionDef) and n.name == "supported_hyperparameters"]
    if not fns:
        return frozenset()
    body = fns[-1].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None
    try:
        names = ast.literal_eval(body[0].value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(names, set | frozenset | list | tuple) or not all(
            isinstance(n, str) for n in names):
        return None
    return frozenset(names)


def load_module(code: str, name: str, folder: Path) -> ModuleType:
    """Write ``code`` to ``folder/name.py`` and import it (tracebacks then show real lines)."""
    path = folder / f"{name}.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class DefaultTraining:
    """``train_setup``/``learn`` for models that do not bring their own."""

    device: torch.device

    def train_setup(self, prm: dict[str, Any]) -> None:
        model: nn.Module = self  # type: ignore[assignment]
        model.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = make_optimizer(model.parameters(), prm)

    def learn(self, train_data: Any) -> None:
        model: nn.Module = self  # type: ignore[assignment]
        model.train()
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria[0](model(inputs), labels)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            self.optimizer.step()


def make_optimizer(params: Any, prm: dict[str, Any]) -> torch.optim.Optimizer:
    name = str(prm.get("optimizer", "sgd")).lower()
    lr = float(prm.get("lr", 0.01))
    wd = float(prm.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=float(prm.get("momentum", 0.0)), weight_decay=wd)


class BlockNet(DefaultTraining, nn.Module):
    """A plain block made trainable: built from the shapes, a linear head if it needs one."""

    def __init__(self, block_cls: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 prm: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.body = _build_block(block_cls, in_shape, out_shape)
        with torch.no_grad():
            out = _main_output(self.body(torch.zeros(2, *in_shape[1:])))
        if not isinstance(out, torch.Tensor):
            raise ContractError(f"{block_cls.__name__} returns {type(out).__name__}, not a tensor")
        features = int(math.prod(out.shape[1:]))
        self.head = (nn.Identity() if out.dim() == 2 and features == out_shape[0]
                     else nn.Linear(features, out_shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_main_output(self.body(x)).flatten(1))


def _main_output(out: Any) -> Any:
    """The logits of models that also return auxiliary outputs (GoogLeNet, Inception in
    training mode return a named tuple whose first field is the main output)."""
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


_CLASSES = ("num_classes", "n_classes", "classes", "out_features", "num_labels")
_CHANNELS = ("in_chans", "in_channels", "in_ch", "input_channels", "channels", "in_chs")


def _build_block(block_cls: Any, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> nn.Module:
    """Construct with the shape arguments it names; defaults for the rest."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(block_cls).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {}
    for name, p in params.items():
        if name in _CLASSES:
            kwargs[name] = out_shape[0]
        elif name in _CHANNELS:
            kwargs[name] = in_shape[1]
        elif name in ("img_size", "image_size", "input_size") and len(in_shape) == 4:
            kwargs[name] = in_shape[2]
        elif (p.default is inspect.Parameter.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)):
            raise ContractError(f"{block_cls.__name__}() needs {name!r}; wrap it in a contract Net")
    built = block_cls(**kwargs)
    if not isinstance(built, nn.Module):
        raise ContractError(f"{block_cls.__name__}() returned {type(built).__name__}, "
                            "not an nn.Module")
    return built


def build_model(module: ModuleType, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                prm: dict[str, Any], device: torch.device, block: str | None = None) -> nn.Module:
    """The contract's ``Net`` (or ``block`` wrapped), with train_setup/learn guaranteed."""
    if block is None:
        net_cls = getattr(module, "Net", None)
        if not isinstance(net_cls, type) or not issubclass(net_cls, nn.Module):
            raise ContractError("model module has no class Net(nn.Module)")
        model = net_cls(in_shape, out_shape, prm, device)
        for method in ("train_setup", "learn"):
            if not callable(getattr(model, method, None)):  # borrow the defaults
                setattr(model, method, getattr(DefaultTraining, method).__get__(model))
        if not hasattr(model, "device"):
            model.device = device  # type: ignore[assignment]  # the contract's attribute
        return model
    cls = getattr(module, block, None)
    is_module_class = isinstance(cls, type) and issubclass(cls, nn.Module)
    if not is_module_class and not inspect.isfunction(cls):
        raise ContractError(f"{block!r} is neither an nn.Module class "
                            "nor a model-building function")
    return BlockNet(cls, in_shape, out_shape, prm, device)


def supported_hyperparameters(module: ModuleType) -> frozenset[str]:
    """What the imported module declares (none without the function); in the trial only."""
    fn = getattr(module, "supported_hyperparameters", None)
    if not callable(fn):
        return frozenset()
    names = fn()
    try:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError
    except TypeError:
        raise ContractError("supported_hyperparameters() must return a set of names, "
                            f"not {names!r}"[:200]) from None
    return frozenset(names)
