"""The seed corpus: every file of ``nnrag/examples/corpus`` honours the LEMUR ``Net`` contract.

Each file is loaded by path (the corpus is not a package), built for the shapes it declares in
``INPUT_KINDS``, and trained for one epoch on scikit-learn's 8x8 digits.
"""

from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from nnrag.examples import corpus_dir

CORPUS = corpus_dir()
FILES = sorted(CORPUS.glob("*.py"))
ALLOWED_IMPORTS = {"torch", "math", "typing", "collections", "__future__"}
KINDS = {"image", "signal"}
PRM = {"lr": 0.01, "momentum": 0.9, "dropout": 0.1}
CPU = torch.device("cpu")
NUM_CLASSES = 10

Digits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load(path: Path) -> ModuleType:
    """Import one corpus file under a unique module name, without touching ``sys.modules``."""
    spec = importlib.util.spec_from_file_location(f"nnrag_corpus_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits() -> Digits:
    """The 8x8 digits as (N, 1, 8, 8) floats in [0, 1]; a seeded, stratified 80/20 split."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )

    def images(a: object) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).div_(16.0).reshape(-1, 1, 8, 8)

    def labels(a: object) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.long)

    return images(x_train), labels(y_train), images(x_test), labels(y_test)


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 28
    assert not (CORPUS / "__init__.py").exists()  # loaded by path, never as a package


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_file_contract(path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.strip(), f"{path.name} needs a module docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {sorted(roots - ALLOWED_IMPORTS)}"

    module = load(path)
    kinds = module.INPUT_KINDS
    assert isinstance(kinds, set) and kinds and kinds <= KINDS
    names = module.supported_hyperparameters()
    assert isinstance(names, set) and all(isinstance(name, str) for name in names)
    assert {"lr", "momentum"} <= names
    assert isinstance(module.Net, type) and issubclass(module.Net, torch.nn.Module)


def forward_shape(module: ModuleType, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    net = module.Net(in_shape, (NUM_CLASSES,), PRM, CPU).eval()
    with torch.no_grad():
        return tuple(net(torch.rand(in_shape)).shape)


class RecordingLoss(torch.nn.Module):
    """Wraps the model's criterion to keep every training-batch loss value."""

    def __init__(self, criterion: torch.nn.Module) -> None:
        super().__init__()
        self.criterion = criterion
        self.values: list[float] = []

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(outputs, labels)
        self.values.append(float(loss.detach()))
        return loss


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_builds_and_trains_one_epoch(path: Path, digits: Digits) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = load(path)
    kinds = module.INPUT_KINDS
    x_train, y_train, x_test, y_test = digits
    if "image" not in kinds:  # signal-only models read each digit as a length-64 signal
        x_train, x_test = x_train.reshape(-1, 1, 64), x_test.reshape(-1, 1, 64)

    # Shapes: digits always; 32x32 RGB and 28x28 grey for images; MNIST-1D length for signals.
    if "image" in kinds:
        assert forward_shape(module, (2, 3, 32, 32)) == (2, NUM_CLASSES)
        assert forward_shape(module, (2, 1, 28, 28)) == (2, NUM_CLASSES)
    else:
        with pytest.raises(ValueError):
            module.Net((2, 1, 8, 8), (NUM_CLASSES,), PRM, CPU)
    if "signal" in kinds:
        assert forward_shape(module, (2, 1, 40)) == (2, NUM_CLASSES)
    else:
        with pytest.raises(ValueError):
            module.Net((2, 1, 40), (NUM_CLASSES,), PRM, CPU)

    torch.manual_seed(0)
    in_shape = (64, *x_train.shape[1:])
    net = module.Net(in_shape, (NUM_CLASSES,), PRM, CPU)
    net.eval()
    with torch.no_grad():
        assert tuple(net(x_test[:4]).shape) == (4, NUM_CLASSES)

    net.train_setup(PRM)
    assert isinstance(net.criteria, tuple) and len(net.criteria) >= 1
    assert isinstance(net.optimizer, torch.optim.Optimizer)
    recorder = RecordingLoss(net.criteria[0])
    net.criteria = (recorder, *net.criteria[1:])
    before = [p.detach().clone() for p in net.parameters()]
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    net.learn(loader)

    assert len(recorder.values) == len(loader)
    assert all(math.isfinite(value) for value in recorder.values)
    after = list(net.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))
    net.eval()
    with torch.no_grad():
        loss = recorder.criterion(net(x_test), y_test)
    assert torch.isfinite(loss)
