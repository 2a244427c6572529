"""The files people hand to youxu (site configs, scenarios, dispatch commands) and the places they
ask it to write: read and checked in one place, every failure a `UserError` of one line that names
the file and what is wrong with it, never a traceback.

YAML is read safely and with a bound on what its aliases expand to (a few hundred bytes of
"billion laughs" would otherwise become gigabytes in memory); what an error echoes is clipped.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from youxu.config.errors import UserError, clip

T = TypeVar("T")

MIB = 1024 * 1024
CONFIG_MAX_BYTES = 4 * MIB  # a site config of 1,000 piles is about 150 kB
YAML_MAX_NODES = 200_000  # scalars, lists and mappings after aliases are expanded


def _label(path: Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def read_text(path: str | Path, what: str = "", max_bytes: int = CONFIG_MAX_BYTES) -> str:
    """The UTF-8 text of a file; UserError when it is missing, a directory, unreadable, binary or too large.
    `what` names the option or field the path came from (`--file`, `mqtt.hmac_key_file`)."""
    p = Path(path)
    label = _label(p, what)
    try:
        if p.is_dir():
            raise UserError(f"{label}: is a directory, not a file")
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{label}: is a directory, not a file") from None
    except OSError as exc:
        raise UserError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        size = f"{max_bytes / MIB:g} MiB" if max_bytes >= MIB else f"{max_bytes / 1024:g} KiB"
        raise UserError(f"{label}: larger than {size}; not a file youxu reads here")
    if b"\0" in data:
        raise UserError(f"{label}: a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{label}: not UTF-8 text (byte {exc.start})") from None


# ---- YAML --------------------------------------------------------------------------------------
def _check_expansion(root: Node, label: str, max_nodes: int) -> None:
    """Refuse a document whose aliases expand beyond `max_nodes` nodes, or refer to themselves.
    An alias is the same node object as its anchor, so counting each node once by identity
    gives the expanded size without expanding anything."""
    size: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            size[key] = 1
            continue
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > max_nodes:
                raise UserError(f"{label}: its aliases expand to more than {max_nodes:,} values; "
                                "not a site config (remove the alias chains)")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise UserError(f"{label}: an alias refers to the list or mapping it is in; not a site config")
        open_nodes.add(key)
        stack.append((node, True))
        for c in children:
            if id(c) in open_nodes:
                raise UserError(f"{label}: an alias refers to the list or mapping it is in; not a site config")
            if id(c) not in size:
                stack.append((c, False))


def parse_yaml(text: str, label: str, max_nodes: int = YAML_MAX_NODES) -> Any:
    """Safe-load one YAML document (no Python objects), with the alias bound; UserError otherwise."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, label, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise UserError(f"{label}: not valid YAML ({clip(str(exc).replace(chr(10), ' '), 300)})") from None
    except RecursionError:
        raise UserError(f"{label}: nested too deeply; not a site config") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path, what: str = "", max_bytes: int = CONFIG_MAX_BYTES) -> Any:
    p = Path(path)
    return parse_yaml(read_text(p, what, max_bytes), _label(p, what))


def load_json(path: str | Path, what: str = "", max_bytes: int = CONFIG_MAX_BYTES) -> Any:
    p = Path(path)
    label = _label(p, what)
    text = read_text(p, what, max_bytes)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{label}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise UserError(f"{label}: nested too deeply") from None


# ---- where outputs go --------------------------------------------------------------------------
def _nearest_existing(p: Path) -> Path:
    q = p
    while not os.path.lexists(q) and q != q.parent:
        q = q.parent
    return q


def _probe_writable(directory: Path, target: Path) -> None:
    """Create (and at once remove) a file in `directory`: the only test that holds for root,
    read-only mounts and full disks alike."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"{target}: cannot write in {directory} ({exc.strerror or exc})") from None


def check_output_dir(path: str | Path) -> Path:
    """`path` can be (or become) a directory youxu writes into; UserError naming why not."""
    p = Path(path)
    a = Path(os.path.abspath(p))
    if os.path.lexists(a) and not a.is_dir():
        raise UserError(f"{p}: exists and is not a directory")
    base = _nearest_existing(a)
    if not base.is_dir():
        raise UserError(f"{p}: {base} is a file, not a directory")
    _probe_writable(base, p)
    return p


def check_output_file(path: str | Path) -> Path:
    """`path` can be written as a file (created, or replaced if it is one); UserError naming why not."""
    p = Path(path)
    a = Path(os.path.abspath(p))
    if a.is_dir():
        raise UserError(f"{p}: is a directory, not a file")
    if os.path.lexists(a) and not a.is_file():
        raise UserError(f"{p}: exists and is not a regular file")
    if str(p).endswith(os.sep):
        raise UserError(f"{p}: names a directory, not a file")
    base = _nearest_existing(a.parent)
    if not base.is_dir():
        raise UserError(f"{p}: {base} is a file, not a directory")
    _probe_writable(base, p)
    if a.is_file() and not os.access(a, os.W_OK):
        raise UserError(f"{p}: cannot write (permission denied)")
    return p


def cli_type(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from a check that raises UserError or ValueError: argparse then prints the
    check's one line (`argument --out: ...`) and exits with code 2."""
    def convert(text: str) -> T:
        try:
            return check(text)
        except (UserError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


out_dir_arg = cli_type(check_output_dir)  # `--out DIR`
out_file_arg = cli_type(check_output_file)  # `--out FILE`, `--write-config FILE`
