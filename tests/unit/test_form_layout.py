"""The settings form shows every setting: advice about a field the form left out would never be seen."""

from __future__ import annotations

from collections import Counter

from loratui.form_layout import BASIC, GROUPS, HIDDEN
from trainer.contract.config.schema import FIELDS


def test_every_setting_is_in_exactly_one_group():
    placed = Counter(key for _, keys in GROUPS for key in keys)
    assert [key for key, count in placed.items() if count > 1] == []
    assert set(FIELDS) - HIDDEN == set(placed)


def test_basic_mode_shows_only_fields_the_form_has():
    assert BASIC <= {key for _, keys in GROUPS for key in keys}
