"""The two walls: the app never imports the heavy stack, the trainer never imports textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "diffusers", "transformers", "peft", "lycoris", "bitsandbytes", "accelerate", "safetensors",
         "onnxruntime"}
CONTRACT = ["trainer.config", "trainer.config_toml", "trainer.events", "trainer.plan", "trainer.rundir",
            "trainer.captions", "trainer.preflight", "trainer.fileio", "trainer.errors",
            "trainer.networks.naming", "trainer.tagging.jobs", "trainer.faults", "trainer.config_messages"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((REPO / "loratui").rglob("*.py")) + sorted((REPO / "themes").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_app_sources_never_import_heavy_libraries(path):
    assert _imported_modules(path) & HEAVY == set()


@pytest.mark.parametrize("path", sorted((REPO / "trainer").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_trainer_sources_never_import_textual(path):
    assert "textual" not in _imported_modules(path)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(out.stdout.split())


def test_importing_the_app_loads_no_torch():
    loaded = _loaded_after("import loratui.app, loratui.cli, loratui.launch, loratui.headless, loratui.demo")
    assert "textual" in loaded
    assert loaded & HEAVY == set()


def test_contract_modules_load_no_torch():
    assert _loaded_after("import " + ", ".join(CONTRACT)) & HEAVY == set()


def test_the_trainer_loads_no_textual():
    loaded = _loaded_after("import trainer.__main__, trainer.loop, trainer.tiny, trainer.tagging.__main__, "
                           "trainer.tagging.wd14, trainer.tagging.blip, trainer.tagging.tiny")
    assert "torch" in loaded
    assert "textual" not in loaded


def test_every_package_is_listed_for_installation():
    from trainer.config_toml import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in REPO.glob("*/**/__init__.py")
               if p.parts[len(REPO.parts)] in ("loratui", "trainer")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert "loratui.themes" in listed
