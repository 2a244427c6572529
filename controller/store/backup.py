"""A consistent copy of a site's database while the daemon runs.

SQLite: the online backup API, into a new file, in one step: the copy holds a read lock for
as long as it takes, so it is one consistent snapshot (a backup copied in steps starts again
whenever the daemon writes in between). Meanwhile the daemon's writes wait (`SQLITE_BUSY_S`),
then are buffered and retried, as in any storage outage; control is not affected.
PostgreSQL: `pg_dump --format=custom` (restore with `pg_restore`).

    python -m youxu.controller.store.backup --config /etc/youxu/site.yaml --out /var/backups/youxu
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from youxu.config.errors import UserError
from youxu.config.userfiles import out_dir_arg


def backup_sqlite(db_path: Path, out: Path) -> Path:
    if not db_path.exists():
        raise UserError(f"{db_path}: no such database")
    tmp = out.with_suffix(out.suffix + ".part")
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst, pages=-1)
        ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise UserError(f"{out}: the copy fails its integrity check ({ok})")
    finally:
        dst.close()
        src.close()
    tmp.replace(out)
    return out


def backup_postgres(url: str, out: Path) -> Path:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise UserError("pg_dump not found: install postgresql-client")
    u = urlsplit(url.replace("+psycopg", ""))
    cmd = [pg_dump, "--format=custom", "--file", str(out), "--host", u.hostname or "localhost",
           "--port", str(u.port or 5432), "--dbname", unquote(u.path.lstrip("/"))]
    if u.username:
        cmd += ["--username", unquote(u.username)]
    env = None
    if u.password:
        import os

        env = dict(os.environ, PGPASSWORD=unquote(u.password))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"pg_dump failed: {res.stderr.strip()[-300:]}")
    return out


def backup(url: str, out_dir: Path, now_s: float | None = None) -> Path:
    """Back up the database at `url` into `out_dir` (file name with the UTC time); returns the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s))
    if url.startswith("sqlite:///"):
        return backup_sqlite(Path(url.removeprefix("sqlite:///")), out_dir / f"youxu-{stamp}.sqlite")
    if url.startswith(("postgresql", "postgres://")):
        return backup_postgres(url, out_dir / f"youxu-{stamp}.pgdump")
    raise UserError(f"storage url {url!r}: backup supports sqlite and postgresql")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m youxu.controller.store.backup", description="back up a site's database")
    p.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    p.add_argument("--out", required=True, type=out_dir_arg, help="directory for the backup file")
    args = p.parse_args(argv)
    from youxu.controller.siteconfig import load_site_config

    try:
        cfg = load_site_config(args.config)
        path = backup(cfg.storage.database_url(), args.out)
    except UserError as exc:
        sys.stderr.write(f"youxu backup: error: {exc}\n")
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
