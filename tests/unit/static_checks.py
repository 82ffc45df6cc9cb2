"""Static checks of the source for the security suite: unsafe loaders, shells, command strings.

Each check reads Python source with ``ast`` (no import, no execution) and returns findings as
``"path:line: what"`` strings, so a failing test names every offending call at once. The checks
are kept apart from the tests so that the tests can also feed them known-bad code and prove
they catch it (a checker that never fires would pass vacuously).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

UNSAFE_LOADERS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
    ("cPickle", "load"), ("cPickle", "loads"), ("_pickle", "load"), ("_pickle", "loads"),
    ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
    ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"),
    ("yaml", "unsafe_load"), ("yaml", "full_load"), ("pandas", "read_pickle"), ("pd", "read_pickle"),
}
"""(module, function) pairs that turn bytes into arbitrary objects, which can mean running code."""

UNSAFE_MODULES = {"dill", "cloudpickle", "joblib", "shelve"}
"""Modules whose whole purpose is loading pickles; importing one is already a finding."""

SHELL_CALLS = {
    ("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"), ("commands", "getoutput"),
}
"""Calls that always run their argument through a shell."""

COMMAND_CALLS = {
    ("subprocess", "run"), ("subprocess", "call"), ("subprocess", "check_call"), ("subprocess", "check_output"),
    ("subprocess", "Popen"), ("asyncio", "create_subprocess_exec"),
}
"""Calls whose first argument is the command: it must be an argument list, never one string."""

_SEQUENCE_ANNOTATION = re.compile(r"^(list|tuple|List|Tuple|Sequence|typing\.Sequence|typing\.List)\b")
_SEQUENCE_BUILTINS = {"list", "tuple", "sorted"}


@dataclass
class Module:
    """One parsed source file with what the checks need to look things up."""

    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """Local name → dotted origin: ``import numpy as np`` gives np → numpy, ``from os import system``
    gives system → os.system."""

    @classmethod
    def parse(cls, path: Path, source: str | None = None) -> "Module":
        text = source if source is not None else path.read_text(encoding="utf-8")
        module = cls(path, ast.parse(text, filename=str(path)))
        for node in ast.walk(module.tree):
            for child in ast.iter_child_nodes(node):
                module.parents[child] = node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module.aliases[alias.asname or alias.name.split(".")[0]] = \
                        alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    module.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        return module

    def where(self, node: ast.AST) -> str:
        return f"{self.path}:{getattr(node, 'lineno', 0)}"

    def dotted(self, func: ast.AST) -> tuple[str, str] | None:
        """(module, name) a call's function refers to, resolving import aliases; None if unknown."""
        if isinstance(func, ast.Attribute):
            base = func.value
            parts = [func.attr]
            while isinstance(base, ast.Attribute):
                parts.insert(0, base.attr)
                base = base.value
            if not isinstance(base, ast.Name):
                return None
            origin = self.aliases.get(base.id, base.id)
            full = ".".join([origin, *parts])
        elif isinstance(func, ast.Name):
            if func.id not in self.aliases:
                return None
            full = self.aliases[func.id]
        else:
            return None
        module, _, name = full.rpartition(".")
        return (module, name) if module else None

    def enclosing_function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return None


def source_files(*folders: Path) -> list[Path]:
    """Every .py file under the folders, caches left out."""
    files = []
    for folder in folders:
        files += [p for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]
    return files


def parse_all(files: list[Path]) -> list[Module]:
    return [Module.parse(path) for path in files]


def _calls(module: Module):
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call):
            yield node, module.dotted(node.func)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _is_constant(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


# ── unsafe loading ──────────────────────────────────────────────────────────────────────────

def torch_load_findings(modules: list[Module]) -> tuple[list[str], int]:
    """Every ``torch.load`` call not passing ``weights_only=True`` literally; and how many calls there are."""
    findings, count = [], 0
    for module in modules:
        for call, target in _calls(module):
            if target not in (("torch", "load"), ("torch.serialization", "load")):
                continue
            count += 1
            if any(keyword.arg is None for keyword in call.keywords):
                findings.append(f"{module.where(call)}: torch.load with **kwargs (weights_only cannot be seen)")
            elif not _is_constant(_keyword(call, "weights_only"), True):
                findings.append(f"{module.where(call)}: torch.load without weights_only=True")
    return findings, count


def unsafe_loader_findings(modules: list[Module]) -> list[str]:
    """Pickle-style loaders, ``numpy.load(allow_pickle=...)``, unsafe YAML, and eval/exec."""
    findings = []
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            for name in names:
                if name in UNSAFE_MODULES:
                    findings.append(f"{module.where(node)}: imports {name}")
        for call, target in _calls(module):
            if isinstance(call.func, ast.Name) and call.func.id in ("eval", "exec") and call.func.id not in module.aliases:
                findings.append(f"{module.where(call)}: {call.func.id}() runs text as code")
            if target is None:
                continue
            if target in UNSAFE_LOADERS:
                findings.append(f"{module.where(call)}: {'.'.join(target)} can run code hidden in the data")
            if target in (("numpy", "load"), ("np", "load")):
                allow = _keyword(call, "allow_pickle")
                if allow is not None and not _is_constant(allow, False):
                    findings.append(f"{module.where(call)}: numpy.load with allow_pickle")
            if target == ("yaml", "load"):
                loader = _keyword(call, "Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    findings.append(f"{module.where(call)}: yaml.load without a SafeLoader")
            if target == ("builtins", "eval") or target == ("builtins", "exec"):
                findings.append(f"{module.where(call)}: {target[1]}() runs text as code")
    return findings


# ── shells and command lines ────────────────────────────────────────────────────────────────

def shell_findings(modules: list[Module]) -> list[str]:
    """``shell=`` anything but literal False, and calls that always use a shell."""
    findings = []
    for module in modules:
        for call, target in _calls(module):
            shell = _keyword(call, "shell")
            if shell is not None and not _is_constant(shell, False):
                findings.append(f"{module.where(call)}: shell={ast.unparse(shell)}")
            if target in SHELL_CALLS:
                findings.append(f"{module.where(call)}: {'.'.join(target)} runs its text through a shell")
            if target in COMMAND_CALLS and any(keyword.arg is None for keyword in call.keywords):
                findings.append(f"{module.where(call)}: {'.'.join(target)} with **kwargs (shell= cannot be seen)")
    return findings


def command_findings(modules: list[Module]) -> tuple[list[str], int]:
    """Commands given as anything that cannot be shown to be an argument list; and how many commands."""
    returns = _sequence_functions(modules)
    findings, count = [], 0
    for module in modules:
        for call, target in _calls(module):
            if target not in COMMAND_CALLS:
                continue
            count += 1
            command = call.args[0] if call.args else _keyword(call, "args")
            if command is None:
                findings.append(f"{module.where(call)}: {'.'.join(target)} without a command")
            elif not _is_sequence(command, module, call, returns, depth=0):
                findings.append(f"{module.where(call)}: {'.'.join(target)}({ast.unparse(command)}) — cannot tell "
                                "that the command is an argument list; build it as a list")
    return findings, count


def _sequence_functions(modules: list[Module]) -> set[str]:
    """Names of project functions annotated to return a list or tuple."""
    names = set()
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None \
                    and _SEQUENCE_ANNOTATION.match(ast.unparse(node.returns)):
                names.add(node.name)
    return names


def _is_sequence(node: ast.AST, module: Module, at: ast.AST, returns: set[str], depth: int) -> bool:
    """Whether an expression is, as far as the source shows, a list or tuple (never a string)."""
    if depth > 8:
        return False
    if isinstance(node, (ast.List, ast.Tuple, ast.ListComp)):
        return True
    if isinstance(node, ast.Starred):
        return _is_sequence(node.value, module, at, returns, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_sequence(node.left, module, at, returns, depth + 1) and \
            _is_sequence(node.right, module, at, returns, depth + 1)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        return _is_sequence(node.value, module, at, returns, depth + 1)  # a slice of a list is a list
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        return name in returns or (isinstance(node.func, ast.Name) and name in _SEQUENCE_BUILTINS)
    if isinstance(node, ast.Name):
        values = _bindings(node.id, module, at)
        return bool(values) and all(
            _annotated_sequence(value) if isinstance(value, ast.arg) else
            _is_sequence(value, module, value, returns, depth + 1) for value in values)
    return False


def _annotated_sequence(arg: ast.arg) -> bool:
    return arg.annotation is not None and bool(_SEQUENCE_ANNOTATION.match(ast.unparse(arg.annotation)))


def _bindings(name: str, module: Module, at: ast.AST) -> list[ast.AST]:
    """What ``name`` is bound to where ``at`` is: parameters and assignments of the enclosing
    function, else the module's top-level assignments. Parameters come back as ``ast.arg``."""
    function = module.enclosing_function(at)
    scopes = ([function] if function is not None else []) + [module.tree]
    for scope in scopes:
        found: list[ast.AST] = []
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = scope.args
            for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
                if arg.arg == name:
                    found.append(arg)
            nodes = ast.walk(scope)
        else:
            nodes = iter(scope.body)
        for node in nodes:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    found += _assigned(name, target, node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                found.append(node.value if node.value is not None else ast.arg(arg=name, annotation=node.annotation))
        if found:
            return found
    return []


def _assigned(name: str, target: ast.AST, value: ast.AST) -> list[ast.AST]:
    if isinstance(target, ast.Name):
        return [value] if target.id == name else []
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        found = []
        for sub_target, sub_value in zip(target.elts, value.elts):
            found += _assigned(name, sub_target, sub_value)
        return found
    if isinstance(target, (ast.Tuple, ast.List)) and any(isinstance(t, ast.Name) and t.id == name
                                                          for t in target.elts):
        return [ast.Constant(value=None)]  # unpacked from something not visible: not provably a list
    return []
