"""Opening the database and bringing its schema up to date (alembic, shipped in the package).

SQLite by default (one file, rollback journal: see `sqlite_pragmas`), PostgreSQL by URL
(`postgresql://...` uses psycopg 3).
`python -m youxu.controller.store.database --config site.yaml [--revision]` upgrades (or shows) the schema
of a site's database, as the daemon does at start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import threading
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

SQLITE_BUSY_S = 5.0  # the writer waits this long for a lock held by a backup or another reader
SQLITE_JOURNAL_MODE = "truncate"
PG_CONNECT_TIMEOUT_S = 5


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    connect_args: dict[str, object] = {}
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = SQLITE_BUSY_S
    elif url.startswith("postgresql"):
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite" and url != "sqlite:///:memory:":
        watched = SqliteFile(Path(url.removeprefix("sqlite:///")))
        _files[engine] = watched

        def on_connect(dbapi_conn: sqlite3.Connection, _rec: object) -> None:
            sqlite_pragmas(dbapi_conn)
            watched.opened()

        event.listen(engine, "connect", on_connect)
    return engine


class SqliteFile:
    """Which file a SQLite engine has open, by identity (device, inode) rather than by name.

    A state directory deleted (or the file replaced) under the running daemon leaves its open
    connections on a deleted inode that no one will ever read: in WAL mode every write succeeds and
    is lost, with the rollback journal SQLite refuses them (read-only, the file moved) for good.
    `problem()` compares the path with the file first opened; `ensure_file` reopens.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        self.generation = 0  # +1 each time the file was found replaced and opened afresh
        self.last_problem = ""  # what is wrong now (logged once)
        self.replaced_because = ""  # why it was last opened afresh
        self.lock = threading.Lock()
        self._reopening = False

    def opened(self) -> None:
        """A connection was opened: the first one (and the first one of a reopening) fixes the identity."""
        if self.identity is None or self._reopening:
            try:
                st = os.stat(self.path)
            except OSError:  # gone again already: the next check says so
                return
            self.identity = (st.st_dev, st.st_ino)
            self._reopening = False

    def problem(self) -> str | None:
        if self.identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"database file {self.path} was deleted while open"
        except OSError as exc:
            return f"database file {self.path}: {exc.strerror or exc}"
        if (st.st_dev, st.st_ino) != self.identity:
            return f"database file {self.path} was replaced by another file while open"
        return None


_files: weakref.WeakKeyDictionary[Engine, SqliteFile] = weakref.WeakKeyDictionary()


def sqlite_file(engine: Engine) -> SqliteFile | None:
    return _files.get(engine)


def ensure_file(engine: Engine) -> None:
    """Before writing: if the engine's SQLite file is no longer the one at its path, drop the
    connections to it and open the path afresh (directory and schema created as needed), so that
    writes land where the next start will read them. Raises OperationalError while that fails."""
    watched = _files.get(engine)
    if watched is None:
        return
    with watched.lock:
        problem = watched.problem()
        if problem is None:
            return
        if problem != watched.last_problem:
            log.error("%s; opening %s afresh", problem, watched.path)
        watched.last_problem = problem
        engine.dispose()
        old = watched.identity
        watched._reopening = True  # the identity stays the old one until the new file is there
        try:
            watched.path.parent.mkdir(parents=True, exist_ok=True)
            upgrade(engine)
            if watched._reopening:  # the migration's connection did not record it: look now
                watched.opened()
        except Exception as exc:
            watched._reopening, watched.identity = False, old
            engine.dispose()
            raise OperationalError(f"{problem}; cannot open it afresh", None, exc) from exc
        watched.generation += 1
        watched.last_problem, watched.replaced_because = "", problem


def sqlite_pragmas(conn: sqlite3.Connection) -> None:
    """No file of the database is memory-mapped, so a state volume that stops taking writes (full,
    remounted read-only after I/O errors, files made immutable) gives errors, never SIGBUS.

    WAL mode keeps its index in the memory-mapped `-shm` file and writes to it even in read
    transactions (a reader's mark); a page of it that the kernel cannot make writable any more kills
    the process with SIGBUS. The rollback journal has no shared-memory index; `synchronous=FULL`
    is what keeps it safe from power loss. A database left in WAL mode by an older version is
    converted here; while another process holds it in WAL mode the connection is refused (the
    store buffers and retries) rather than mapping the index.
    """
    cur = conn.cursor()
    try:
        cur.execute("PRAGMA mmap_size=0")
        mode = str(cur.execute(f"PRAGMA journal_mode={SQLITE_JOURNAL_MODE}").fetchone()[0]).lower()
        if mode != SQLITE_JOURNAL_MODE:
            raise sqlite3.OperationalError(f"database stays in {mode} journal mode (another process has it open); "
                                           f"not opened, to keep its index out of shared memory")
        cur.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error:
        cur.close()
        conn.close()  # the pool does not close a connection its connect hook refused
        raise
    cur.close()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "youxu.controller.store:migrations")
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the schema to `revision` (the newest by default); returns the revision before."""
    cfg = alembic_config()
    with engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    target = head_revision() if revision == "head" else revision
    if before != target:
        log.info("database schema upgraded from %s to %s", before or "nothing", target)
    return before


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m youxu.controller.store.database", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    p.add_argument("--revision", action="store_true", help="only print the schema revision")
    args = p.parse_args(argv)
    from youxu.config.errors import UserError
    from youxu.controller.siteconfig import load_site_config

    try:
        cfg = load_site_config(args.config)
    except UserError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    engine = make_engine(cfg.storage.database_url())
    try:
        if not args.revision:
            upgrade(engine)
        print(f"{cfg.storage.database_url()}: revision {current_revision(engine)} (newest {head_revision()})")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
