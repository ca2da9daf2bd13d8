"""Readable validation messages: pydantic errors rendered with Kubernetes-style field paths."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """Kubernetes-style path: ('spec', 'matchExpressions', 0, 'key') -> 'spec.matchExpressions[0].key'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(error: ValidationError) -> list[str]:
    """One line per problem, `path: message`, in the order pydantic found them."""
    lines = []
    for err in error.errors(include_url=False):
        path = field_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}" if path else msg)
    return lines
