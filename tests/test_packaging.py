"""Packaging: a torch range with the pin in constraints.txt, an install guide consistent with
both, and a wheel that carries the corpus, the zoo, the templates and the concept list, so a
non-editable install runs ``nnrag demo`` from any folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import Specifier
from packaging.version import Version

from nnrag.examples import CORPUS, ZOO

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _torch_requirement() -> Requirement:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [r for r in map(Requirement, deps) if r.name == "torch"]
    return torch


def _pinned_torch() -> str:
    """The version after ``torch==`` in constraints.txt."""
    pins = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert len(pins) == 1, pins
    return str(pins[0])


def test_torch_is_a_range_and_constraints_pin_a_build_inside_it() -> None:
    spec = _torch_requirement().specifier
    assert not any(s.operator in ("==", "===") for s in spec), spec
    pin = _pinned_torch()
    # The CPU (and CUDA) builds carry a local label: the pin and the range must accept it.
    assert spec.contains(pin) and spec.contains(f"{pin}+cpu")


def test_install_guide_agrees_with_pyproject_and_constraints() -> None:
    doc = (ROOT / "docs" / "install.md").read_text()
    pin = _pinned_torch()
    assert f"torch=={pin}" in doc and f"{pin}+cpu" in doc
    (documented,) = re.findall(r"`(torch[<>=~!][^`]*)` in `pyproject.toml`", doc)
    assert Requirement(documented).specifier == _torch_requirement().specifier
    blocks = re.findall(r"^```\n(.*?)^```", doc, re.M | re.S)
    installs = [line for b in blocks for line in b.splitlines() if line.startswith("pip install")]
    assert len(installs) >= 5
    for line in installs:
        assert "-c constraints.txt" in line, line
    cpu = [line for line in installs if "whl/cpu" in line]
    assert {"--extra-index-url", "--index-url"} <= {w for c in cpu for w in c.split()}
    assert all(CPU_INDEX in c.split() for c in cpu)
    # The guide's explanation of why `+cpu` is picked, as pip (packaging) evaluates it.
    assert Specifier(f"=={pin}").contains(f"{pin}+cpu")
    assert Version(f"{pin}+cpu") > Version(pin)
    assert CPU_INDEX in (ROOT / ".ci" / "run").read_text()


def _source_copy(dest: Path) -> Path:
    """What a build reads, copied: building in the checkout would leave build/ behind."""
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copy(ROOT / "README.md", dest)
    shutil.copytree(ROOT / "nnrag", dest / "nnrag",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("nnrag-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed (no dependencies: they are this venv's) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
         str(target), str(wheel)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _run_installed(site: Path, cwd: Path, *args: str,
                   timeout: float) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` seeing the installed wheel and not this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NNRAG_DB")}
    env.update(PYTHONPATH=str(site), NNRAG_HOME=str(cwd / "home"), COLUMNS="200")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_carries_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        p.relative_to(ROOT).as_posix()
        for folder in (CORPUS, ZOO, ROOT / "nnrag" / "generate" / "templates")
        for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert len([n for n in expected if n.startswith("nnrag/examples/corpus/")]) >= 33
    expected |= {"nnrag/index/concepts.yaml", "nnrag/py.typed"}
    assert expected <= names, sorted(expected - names)
    metadata = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py')[0]}.dist-info/METADATA")
    torch = [Requirement(line.split(":", 1)[1]) for line in metadata.decode().splitlines()
             if line.startswith("Requires-Dist: torch")]
    assert [t.specifier for t in torch] == [_torch_requirement().specifier]


def test_installed_wheel_finds_its_data_from_any_folder(site: Path, tmp_path: Path) -> None:
    script = """if True:
        import json, nnrag
        from importlib import resources
        from nnrag.examples import corpus_dir
        from nnrag.generate.prompts import template
        from nnrag.generate.references import corpus_references
        from nnrag.index._concepts import concepts
        from nnrag.mutate import load_target
        print(json.dumps({
            "package": nnrag.__file__, "corpus": str(corpus_dir()),
            "models": len(list(corpus_dir().glob("*.py"))),
            "references": len(corpus_references("image")),
            "template": len(template("architecture.chat.txt")),
            "concepts": len(concepts()), "target": load_target("lenet5").origin}))
    """
    proc = _run_installed(site, tmp_path, "-c", script, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout)
    inside = str(site / "nnrag")
    assert found["package"].startswith(inside) and found["corpus"].startswith(inside)
    assert found["target"].startswith(inside)
    assert found["models"] == len(list(CORPUS.glob("*.py")))
    assert found["references"] > 0 and found["template"] > 0 and found["concepts"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_installed_wheel_runs_the_demo(site: Path, tmp_path: Path) -> None:
    proc = _run_installed(site, tmp_path, "-m", "nnrag.cli", "demo", "--home",
                          str(tmp_path / "demo"), "--epochs", "1", timeout=840)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert f"index {site / 'nnrag' / 'examples' / 'corpus'}:" in proc.stdout
    assert "6 trained, 0 reused" in proc.stdout
