"""The run lock: ``fcntl.flock`` on ``RUN/.lock``.

The kernel releases the lock when its holder dies, even by SIGKILL, so a killed grid never
leaves a stale lock. Two grids (or two SLURM jobs) pointed at one folder therefore never
execute the same run; the second reports it as ``running elsewhere``. On NFS, Linux
(>= 2.6.12) maps flock to POSIX byte-range locks that the NFS lock manager (NFSv3 lockd,
NFSv4 built in) holds across clients; a client that dies loses its locks when its lease
expires. Filesystems without working locks (some FUSE mounts) make the lock a no-op.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..layout import LOCK_FILE


class RunLocked(RuntimeError):
    """Another live process holds the run's lock."""


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``RUN/.lock`` (exclusive flock) for the duration; RunLocked when it is held.
    The file keeps who holds it (pid, host, since) for ``rkdo grid --dry-run``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(lock_holder(run_dir) or "another process") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(run_dir: str | Path) -> str | None:
    """'pid N on HOST since T' when a live process holds the run's lock, else None."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                who = json.loads(path.read_text() or "{}")
                return f"pid {who.get('pid')} on {who.get('host')} since {who.get('since')}"
            except ValueError:
                return "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
