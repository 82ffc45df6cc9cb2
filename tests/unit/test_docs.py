"""The README stays true: its commands are the ones CI runs, its reference is the schema's."""

from __future__ import annotations

import re
from pathlib import Path

from trainer.contract.config.reference import END, START, markdown_reference
from trainer.contract.config.schema import FIELDS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)]


def test_the_first_two_commands_are_install_and_demo_then_the_test_suite():
    demo, tests = _code_blocks(README)[:2]
    assert demo.endswith("loratui demo")
    assert "pytest" in tests and '".[test]"' in tests


def test_ci_runs_the_readmes_test_command():
    tests = _code_blocks(README)[1]
    assert tests in (REPO / ".ci" / "run").read_text()
    assert "torch==2.13.0" in tests  # a bare `torch` would pull a multi-GB CUDA build


def test_the_config_reference_is_generated_from_the_schema():
    block = README.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == markdown_reference(), "run: python -m trainer.contract.config.reference --write README.md"
    for key in FIELDS:
        assert f"`{key.split('.')[-1]}`" in block


def test_the_oldest_versions_ci_tests_are_pyprojects_lower_bounds():
    from trainer.contract.config.toml_io import tomllib

    floors = {}
    for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", requirement)
        if match:
            floors[match[1].lower()] = match[2]
    pins = dict(re.findall(r'"([a-z0-9-]+)==([0-9][0-9A-Za-z.]*)"', (REPO / ".ci" / "edges").read_text()))
    pins.pop("torch")  # the newest end keeps CI's CPU torch; its floor is documented, not installed
    assert pins and all(floors[name] == version or floors[name] + ".0" == version for name, version in pins.items()), \
        (floors, pins)


def test_the_compatibility_table_in_the_contract_is_the_one_the_app_uses():
    from trainer.contract import compatibility

    contract = (REPO / "docs" / "contract.md").read_text()
    block = contract.split(compatibility.START, 1)[1].split(compatibility.END, 1)[0].strip()
    assert block == compatibility.markdown_table(), "paste markdown_table() between the markers in docs/contract.md"


def test_every_command_in_the_proof_page_names_a_real_test_or_benchmark():
    """docs/proof.md maps each README claim to a test or benchmark; a renamed test must not leave it dangling."""
    import ast

    named = []
    for line in (REPO / "docs" / "proof.md").read_text().splitlines():
        path = None  # `::test_name` on its own belongs to the file named before it on the line
        for match in re.finditer(r"((?:tests|bench)/[\w/]+\.py)|::(\w+)", line):
            if match.group(1):
                path = match.group(1)
                named.append((path, None))
            elif path is not None:
                named.append((path, match.group(2)))
    assert len(named) > 20
    for path, test in named:
        source = REPO / path
        assert source.is_file(), path
        if test:
            functions = {node.name for node in ast.walk(ast.parse(source.read_text()))
                         if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
            assert test in functions, f"{path}::{test}"
