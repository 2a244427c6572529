"""State volumes that fail for real: a small ext4 filesystem on a loop device, and a small tmpfs.

ext4 (not tmpfs) is what a gateway's SD card or eMMC carries, and where a memory-mapped page that
cannot be made writable again kills the process with SIGBUS; tmpfs has a hard size limit for
"volume full" faults. Both need root (tests skip otherwise); teardown always lifts immutable flags
and unmounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _need_root(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a filesystem")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _unmount(mnt: Path) -> None:
    subprocess.run(["chattr", "-R", "-i", str(mnt)], capture_output=True)
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class Ext4Volume:
    def __init__(self, root: Path, size_mb: int = 32) -> None:
        self.image, self.path = root / "volume.img", root / "mnt"
        self.path.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        _run("mkfs.ext4", "-q", "-F", str(self.image))
        self.device = _run("losetup", "--find", "--show", str(self.image))
        try:
            _run("mount", "-o", "errors=remount-ro", self.device, str(self.path))
        except subprocess.CalledProcessError:
            _run("losetup", "-d", self.device)
            raise

    def close(self) -> None:
        _unmount(self.path)
        subprocess.run(["losetup", "-d", self.device], capture_output=True)
        self.image.unlink(missing_ok=True)


@pytest.fixture
def ext4_volume(tmp_path: Path) -> Iterator[Ext4Volume]:
    """A 32 MB ext4 filesystem mounted at `.path` (loop device)."""
    _need_root("mkfs.ext4", "losetup", "chattr")
    vol = Ext4Volume(tmp_path)
    try:
        yield vol
    finally:
        vol.close()


@pytest.fixture
def tmpfs_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted at the returned path."""
    _need_root("chattr")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        _unmount(mnt)
