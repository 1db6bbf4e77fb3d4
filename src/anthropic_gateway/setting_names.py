"""The names settings may go by, and the one rule for a name that is none of them.

Valid names are derived from the settings model (a setting added there is valid everywhere at once):
``ANTHROPIC_GATEWAY_<FIELD>`` in the environment and ``.env`` (nested keys of table settings joined
with ``__``), ``<field>`` in the TOML file, plus each field's validation aliases. An unknown
``ANTHROPIC_GATEWAY_*`` name, wherever it is, stops start-up with its source and the closest valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from pydantic import AliasChoices, BaseModel

ENV_PREFIX = "ANTHROPIC_GATEWAY_"
NESTED_DELIMITER = "__"


def env_names(model: type[BaseModel]) -> set[str]:
    """Every upper-case environment name of `model`'s fields (prefixed names and aliases)."""
    names = set()
    for field_name, field in model.model_fields.items():
        names.add(ENV_PREFIX + field_name.upper())
        if isinstance(field.validation_alias, AliasChoices):
            names.update(c.upper() for c in field.validation_alias.choices if isinstance(c, str))
        elif isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
    return names


def is_valid_env_name(name: str, valid: set[str]) -> bool:
    upper = name.upper()
    if upper in valid:
        return True
    head, sep, _ = upper.partition(NESTED_DELIMITER)
    return bool(sep) and head in valid  # a nested key: validated by the table's own model


def closest(name: str, valid: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_message(name: str, source: str, valid: Iterable[str]) -> str:
    """One line: the unknown name, where it was found, and the closest valid name."""
    near = closest(name, valid)
    hint = f"did you mean {near}?" if near else "no setting has a similar name"
    return f"unknown setting {name} in {source}: {hint} (rename or remove it; every setting is in README.md, Configuration)"


def first_unknown(
    sources: Iterable[tuple[str, Mapping[str, object]]], valid: set[str], exempt: set[str]
) -> str | None:
    """The error line for the first ``ANTHROPIC_GATEWAY_*`` name in any source that is not a setting
    (names in `exempt`, such as variables a backend's key_env names, are allowed), or None."""
    for source, names in sources:
        for name in sorted(names):
            upper = name.upper()
            if upper.startswith(ENV_PREFIX) and upper not in exempt and not is_valid_env_name(upper, valid):
                return unknown_message(upper, source, sorted(valid))
    return None
