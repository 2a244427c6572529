"""Errors that reach a user as one clear line (and exit code 2), never as a traceback."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """Bad input from a person or a file: the message names the file, field and value."""


def error_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as `piles[3].phase`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def validation_problems(exc: ValidationError) -> list[str]:
    """Every problem of a pydantic validation error as `path: message`."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in {"literal_error", "enum"} or "input" not in err:
            problems.append(f"{error_path(loc)}: {msg}")
        else:
            problems.append(f"{error_path(loc)}: {msg} (got {err['input']!r})")
    return problems


def format_validation_error(exc: ValidationError) -> str:
    return "; ".join(validation_problems(exc))
