"""docs/rules.md lists every rule the engine has."""

from __future__ import annotations

from pathlib import Path

from loratui.rules import RULES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()


def test_every_rule_is_documented():
    assert [r.id for r in RULES if f"`{r.id}`" not in DOC] == []
