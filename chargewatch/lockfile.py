"""An exclusive lock on a file, held for as long as a process uses what it guards.

``flock`` rather than a pid file: the kernel drops the lock when its holder dies, even by SIGKILL,
so a crash never leaves a stale lock to clean up by hand. The holder writes its pid into the file,
so the refusal can name it. The file is never removed (removing a lock file races with the next
locker).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from chargewatch.errors import InUseError


class ExclusiveLock:
    """Take ``path``'s lock now, or raise ``InUseError``: "<what> is in use by <holder> (pid N)".

    Two openers conflict even inside one process (each has its own open file description).
    Held until ``release``, the end of a ``with`` block, or the end of the process.
    """

    def __init__(self, path: Path, *, what: str, holder: str = "another process") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            known = (
                "" if pid is None else " (this process)" if pid == os.getpid() else f" (pid {pid})"
            )
            raise InUseError(f"{what} is in use by {holder}{known}") from None
        except OSError as exc:
            os.close(fd)
            raise InUseError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let go of the lock (idempotent); the process's end does the same."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
