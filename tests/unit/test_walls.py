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


def trainer_modules_imported_by(app: Path) -> set[str]:
    """Every ``trainer`` module that a file under ``app`` imports, at module level or inside a function.

    ``from trainer.x import y`` names ``trainer.x``, and ``trainer.x.y`` too when ``y`` is a module
    of its own (a file or a package beside it), so a submodule imported by name is not missed.
    """
    root = app.parent
    found: set[str] = set()
    for path in sorted(app.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "trainer"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "trainer":
                found.add(node.module)
                for alias in node.names:
                    candidate = root.joinpath(*node.module.split("."), alias.name)
                    if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
                        found.add(f"{node.module}.{alias.name}")
    return found


def heavy_loaded_by(module: str, cwd: Path = REPO) -> set[str]:
    """The heavy libraries a fresh interpreter holds after importing ``module`` alone (run from ``cwd``)."""
    code = f"import sys; import {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd)
    return set(out.stdout.split()) & HEAVY


APP_IMPORTS = sorted(trainer_modules_imported_by(REPO / "loratui"))


def test_the_app_imports_a_known_share_of_the_trainer():
    # The walk must find what the app is known to import; an empty or tiny set would prove nothing.
    assert {"trainer.config", "trainer.caption_store", "trainer.model_ref", "trainer.control"} <= set(APP_IMPORTS)


@pytest.mark.parametrize("module", APP_IMPORTS)
def test_every_trainer_module_the_app_imports_loads_no_heavy_library(module):
    # Imported alone, in its own interpreter: another module cannot have loaded torch first, and an
    # import hidden inside a function counts as much as one at the top of a file.
    assert heavy_loaded_by(module) == set()


def heavy_imports_reachable_from(modules: set[str], root: Path = REPO) -> list[str]:
    """Heavy imports anywhere in the trainer modules ``modules`` reach, inside functions included.

    Follows every ``trainer`` import (at any depth in each file) from ``modules``; returns
    ``module:line library`` for each import of a heavy library met on the way. Importing a module
    cannot show an import that waits inside a function until the app calls it; reading them can.
    """
    seen, queue, found = set(), sorted(modules), []
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        base = root.joinpath(*module.split("."))
        path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [(a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
            else:
                continue
            for name, line in names:
                top = name.split(".")[0]
                if top in HEAVY:
                    found.append(f"{module}:{line} {top}")
                elif top == "trainer":
                    queue.append(name)
    return sorted(set(found))


def test_no_trainer_module_the_app_reaches_imports_a_heavy_library_even_lazily():
    assert heavy_imports_reachable_from(set(APP_IMPORTS)) == []


def test_the_wall_check_catches_a_heavy_import_hidden_in_a_function(tmp_path):
    """Run the same walk and check on a small tree whose app reaches torch through a trainer module."""
    (tmp_path / "loratui").mkdir()
    (tmp_path / "trainer").mkdir()
    (tmp_path / "loratui" / "__init__.py").write_text("")
    (tmp_path / "trainer" / "__init__.py").write_text("")
    (tmp_path / "trainer" / "light.py").write_text("import json\n")
    (tmp_path / "trainer" / "bad.py").write_text("import trainer.light\nimport torch\n")
    (tmp_path / "loratui" / "screen.py").write_text(
        "from trainer import light\n\ndef later():\n    from trainer import bad\n    return bad\n")
    found = trainer_modules_imported_by(tmp_path / "loratui")
    assert found == {"trainer", "trainer.light", "trainer.bad"}
    assert heavy_loaded_by("trainer.light", cwd=tmp_path) == set()
    assert heavy_loaded_by("trainer.bad", cwd=tmp_path) == {"torch"}
    # A lazy import two modules away: importing either module loads nothing heavy, reading them finds it.
    (tmp_path / "trainer" / "light.py").write_text("def encode():\n    from trainer import later\n")
    (tmp_path / "trainer" / "later.py").write_text("def run():\n    import diffusers\n")
    assert heavy_loaded_by("trainer.light", cwd=tmp_path) == set()
    assert heavy_imports_reachable_from({"trainer.light"}, tmp_path) == ["trainer.later:2 diffusers"]


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
