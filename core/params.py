"""Declarative plugin parameters.

A plugin lists its parameters as :class:`Param` values; the CLI turns them into options and the
Streamlit app into widgets, and :func:`resolve_params` validates what a user typed, so a plugin
gets a UI, a CLI and one clear error per bad value without writing any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
#: what ``Param.default_from`` may name
DEFAULT_SOURCES = (None, "categories")


class ParamError(ValueError):
    """A parameter value that is not allowed; the message names the parameter and what is allowed."""


@dataclass(frozen=True)
class Param:
    """One parameter of a plugin.

    Args:
        name: identifier (``snake_case``); the CLI option is ``--name-with-dashes``.
        type: one of ``"int"``, ``"float"``, ``"str"``, ``"bool"``.
        default: value used when none is given (``None`` means required unless ``optional``).
        min, max: inclusive bounds for numbers.
        choices: allowed values (rendered as a select box / ``click.Choice``).
        help: one sentence shown in ``--help`` and as the widget's tooltip.
        optional: ``None`` is an allowed value.
        default_from: where a front end may take a default it cannot know in advance:
            ``"categories"``, the image source's categories, comma-separated (e.g. class labels).
        extra: free-form metadata for a plugin's own renderer or pages; the core ignores it.
    """

    name: str
    type: str = "str"
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""
    optional: bool = False
    default_from: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"Param {self.name!r}: type must be one of {sorted(_TYPES)}, got {self.type!r}")
        if self.default_from not in DEFAULT_SOURCES:
            raise ValueError(f"Param {self.name!r}: default_from must be one of {DEFAULT_SOURCES}, "
                             f"got {self.default_from!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def allowed(self) -> str:
        """Describe the allowed values, for error messages and help texts."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = [f"a{'n' if self.type == 'int' else ''} {self.type}"]
        if self.min is not None and self.max is not None:
            parts.append(f"between {self.min} and {self.max}")
        elif self.min is not None:
            parts.append(f">= {self.min}")
        elif self.max is not None:
            parts.append(f"<= {self.max}")
        return " ".join(parts)

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (possibly a string from the command line) and check it."""
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"parameter '{self.name}' is required: give {self.allowed()}")
        try:
            value = self._convert(value)
        except (TypeError, ValueError):
            raise ParamError(
                f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ParamError(f"parameter '{self.name}' got {value!r}; allowed: {self.allowed()}")
        return value

    def _convert(self, value: Any) -> Any:
        kind = _TYPES[self.type]
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
                return True
            if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if self.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if self.type == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return kind(value)


def resolve_params(
    params: Sequence[Param], values: Mapping[str, Any] | None = None, *, owner: str = ""
) -> dict[str, Any]:
    """Fill defaults, convert and validate ``values`` against ``params``.

    Unknown names are an error too (a typo must not be silently ignored).
    """
    values = dict(values or {})
    by_name = {p.name: p for p in params}
    unknown = sorted(set(values) - set(by_name))
    where = f" of {owner}" if owner else ""
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ParamError(f"unknown parameter(s){where}: {', '.join(unknown)}; known: {known}")
    resolved = {}
    for p in params:
        try:
            resolved[p.name] = p.coerce(values.get(p.name, p.default))
        except ParamError as err:
            raise ParamError(f"{err}{' (' + owner + ')' if owner else ''}") from None
    return resolved
