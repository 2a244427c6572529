"""Errors that reach a user as one clear line (and exit code 2), never as a traceback."""

from __future__ import annotations

import reprlib

from pydantic import ValidationError

ECHO_MAX_CHARS = 120  # the most of a bad value (or a bad line) an error message repeats
MAX_PROBLEMS = 50  # problems listed one by one; the rest are counted


class UserError(Exception):
    """Bad input from a person or a file: the message names the file, field and value."""


def clip(text: str, max_chars: int = ECHO_MAX_CHARS) -> str:
    """`text` cut to `max_chars` (marked with an ellipsis), on one line."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


_short = reprlib.Repr()
_short.maxlevel = 3
_short.maxstring = ECHO_MAX_CHARS
_short.maxother = ECHO_MAX_CHARS
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_short, _name, 6)


def short_repr(value: object) -> str:
    """A repr of `value` that stays short however large the value (it never renders it whole)."""
    return clip(_short.repr(value))


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
    """Every problem of a pydantic validation error as `path: message (got value)`, values clipped."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = clip(err["msg"].removeprefix("Value error, "), 3 * ECHO_MAX_CHARS)
        if err["type"] in {"literal_error", "enum"} or "input" not in err or isinstance(err["input"], dict):
            # (a whole section's problem names its values itself)
            problems.append(f"{error_path(loc)}: {msg}")
        else:
            problems.append(f"{error_path(loc)}: {msg} (got {short_repr(err['input'])})")
    return problems


def format_problems(source: str, problems: list[str]) -> str:
    """One problem as one line (`file: field: message`), more as a count and one indented line each
    (at most MAX_PROBLEMS of them)."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    shown = [f"  {p}" for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        shown.append(f"  ... and {len(problems) - MAX_PROBLEMS} more")
    return f"{source}: {len(problems)} problem(s)\n" + "\n".join(shown)


def format_validation_error(exc: ValidationError) -> str:
    problems = validation_problems(exc)
    more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more
