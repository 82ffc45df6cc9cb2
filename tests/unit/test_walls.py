"""The two walls: the app never imports the heavy stack, the trainer never imports textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.import_graph import import_cycles, import_graph

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "diffusers", "transformers", "peft", "lycoris", "bitsandbytes", "accelerate", "safetensors",
         "onnxruntime"}


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
    loaded = _loaded_after("import loratui.app, loratui.cli, loratui.runs.launch, loratui.runs.headless, loratui.demo")
    assert "textual" in loaded
    assert loaded & HEAVY == set()


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
    assert {"trainer.contract.config.schema", "trainer.contract.caption_store", "trainer.contract.model_ref",
            "trainer.contract.control"} <= set(APP_IMPORTS)


def test_the_app_imports_nothing_from_the_trainer_but_its_contract():
    assert [m for m in APP_IMPORTS if m != "trainer.contract" and not m.startswith("trainer.contract.")] == []


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


CONTRACT_MAY_IMPORT = {"PIL", "tomli"}
"""Outside the standard library, the contract reads image headers (Pillow) and TOML on Python < 3.11."""


def contract_import_problems(root: Path = REPO) -> list[str]:
    """``module:line target`` for each import in ``trainer/contract/`` that leaves the contract.

    The contract may import the standard library, itself and ``CONTRACT_MAY_IMPORT``, nothing
    else: not a heavy library, not the app, and not a trainer runtime module (torch-free today,
    perhaps not tomorrow). Every import counts, inside functions too, so a heavy library reached
    directly or through another module is caught at the import that leaves the contract.
    """
    graph = import_graph(root, ("trainer",))
    problems = []
    for module, imports in sorted(graph.items()):
        if module != "trainer.contract" and not module.startswith("trainer.contract."):
            continue
        for found in imports:
            top = found.target.split(".")[0]
            inside = found.target == "trainer.contract" or found.target.startswith("trainer.contract.")
            if not (inside or top in sys.stdlib_module_names or top in CONTRACT_MAY_IMPORT):
                problems.append(f"{module}:{found.line} {found.target}")
    return problems


def test_the_contract_folder_imports_only_itself_and_the_standard_library():
    assert len([m for m in import_graph(REPO, ("trainer",)) if m.startswith("trainer.contract.")]) >= 15
    assert contract_import_problems() == []


def test_the_contract_check_catches_a_heavy_import_directly_or_through_the_runtime(tmp_path):
    (tmp_path / "trainer" / "contract").mkdir(parents=True)
    for package in ("trainer", "trainer/contract"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "trainer" / "contract" / "events.py").write_text("import json\nfrom PIL import Image\n")
    (tmp_path / "trainer" / "runtime.py").write_text("import torch\n")
    assert contract_import_problems(tmp_path) == []
    # A lazy heavy import in one contract module, and another that reaches torch through the runtime.
    (tmp_path / "trainer" / "contract" / "plan.py").write_text(
        "from trainer.contract import events\n\ndef later():\n    import diffusers\n")
    (tmp_path / "trainer" / "contract" / "scan.py").write_text("from trainer import runtime\n")
    assert contract_import_problems(tmp_path) == ["trainer.contract.plan:4 diffusers",
                                                  "trainer.contract.scan:1 trainer.runtime"]


def test_no_module_of_the_app_or_the_trainer_imports_itself_in_a_circle():
    graph = import_graph(REPO, ("loratui", "trainer"))
    assert len(graph) > 100
    assert import_cycles(graph) == []


def test_the_cycle_check_catches_a_circle_through_a_lazy_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("import json\n")
    (tmp_path / "pkg" / "c.py").write_text("from . import a\n")
    assert import_cycles(import_graph(tmp_path, ("pkg",))) == []
    (tmp_path / "pkg" / "b.py").write_text("def later():\n    from .c import x\n")
    assert import_cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_trainer_loads_no_textual():
    loaded = _loaded_after("import trainer.__main__, trainer.loop, trainer.tools.tiny, trainer.tagging.__main__, "
                           "trainer.tagging.wd14, trainer.tagging.blip, trainer.tools.tiny_taggers")
    assert "torch" in loaded
    assert "textual" not in loaded


def test_every_package_is_listed_for_installation():
    from trainer.contract.config.toml_io import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {p.parent for top in ("loratui", "trainer") for p in (REPO / top).rglob("*.py")}
    without_init = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").exists())
    # A folder without one imports as a namespace package from the checkout but is left out of a wheel.
    assert not without_init, f"add an __init__.py to {without_init}"
    on_disk = {".".join(f.relative_to(REPO).parts) for f in folders}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert listed - on_disk == {"loratui.themes"}, "pyproject lists packages that no longer exist"


def test_no_source_file_is_hidden_from_git_by_an_ignore_rule():
    """A pattern such as ``runs/`` once hid ``loratui/runs/__init__.py``: the checkout worked, a clone did not."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    sources = [top for top in ("loratui", "trainer", "themes", "tests", "bench", "docs") if (REPO / top).is_dir()]
    done = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *sources],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hidden = [line for line in done.stdout.splitlines() if "__pycache__/" not in line]
    assert not hidden, f"these files are ignored by .gitignore and would be missing from a clone: {hidden}"
