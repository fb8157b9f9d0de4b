"""One writer per run directory: a lock file that a run holds for its lifetime.

Two runs writing one directory interleave checkpoints and records and leave a directory that resumes
into neither. The lock is `<run_dir>/run.lock`, a small JSON file naming its holder. It is created with
`os.link` from a fully written temporary file, which is atomic also on NFS (O_EXCL is not, on old
clients), so a reader never sees half a lock. One process of a run holds it (rank 0); the other ranks
share it through that process.

A lock outlives a killed job, so a lock left by a dead holder is taken over:
  * a job with the same Slurm job id (a requeued job, or a restart in the same allocation) takes it over;
  * on the same host, when the holder's process is gone (or its pid now belongs to another process);
  * from another host, when the heartbeat (the file's mtime, refreshed by a thread while held) is older
    than a lease. The lease is far above NFS attribute caching (≤ 60 s) and ordinary clock skew.
A run that lost its lock anyway (its directory was taken over) finds out from `check()`, which the
runner calls before writing a checkpoint, so it never overwrites the new holder's files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ista.rundir.files import LOCK

LOCK_NAME = LOCK
LEASE_S = 300.0  # a lock from another host whose heartbeat is older than this is taken over
_ATTEMPTS = 20  # rounds lost to other contenders (each waits 0.05 s for a take-over under way)


class RunDirInUse(ValueError):
    """Another live run holds the directory (a ValueError, so the CLI prints it as a one-line error)."""


class LockLost(RuntimeError):
    """This run's lock was taken over: it must stop writing to the directory."""


def holder_text(info: dict[str, Any]) -> str:
    """The holder of a lock in words, for messages."""
    if not info:
        return "an unknown holder: the lock cannot be read"
    parts = [f"host {info.get('host', '?')}", f"process {info.get('pid', '?')}"]
    if info.get("slurm_job") is not None:
        parts.append(f"Slurm job {info['slurm_job']}")
    parts.append(f"started {info.get('started', '?')}")
    return ", ".join(parts)


def _slurm_job() -> str | None:
    """This run's Slurm job id; an array task has its own, the array's SLURM_JOB_ID differs per task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process from /proc, or None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def _process_alive(pid: int, pid_start: Any) -> bool:
    """Whether `pid` still runs the process that wrote the lock (a reused pid has another start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    if state in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    return pid_start is None or str(start) == str(pid_start)


def _read(path: Path) -> bytes | None:
    """The lock's bytes, or None when there is no lock."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(raw: bytes) -> dict[str, Any]:
    """The holder's fields, or {} (an unknown holder) for a lock that is not ours to read."""
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


class RunLock:
    """The lock on one run directory. `with RunLock(run_dir):` or `acquire()` ... `release()`."""

    def __init__(self, run_dir: Path, lease_s: float = LEASE_S) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.lease_s = float(lease_s)
        self.took_over: str | None = None  # the holder whose stale lock acquire() took over, in words
        self._token = uuid.uuid4().hex
        self._raw: bytes | None = None  # the lock's bytes, once written
        self._held = False
        self._owner_pid = 0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def holder(self) -> dict[str, Any]:
        """What this lock wrote into the lock file (before acquire(): what it would write)."""
        return _parse(self._raw) if self._raw is not None else self._new_holder()

    def acquire(self) -> RunLock:
        """Takes the lock, or raises RunDirInUse naming the live holder. Writes nothing else."""
        if self._held:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.took_over = None
        raw = json.dumps(self._new_holder(), indent=1).encode() + b"\n"
        info: dict[str, Any] = {}
        for _ in range(_ATTEMPTS):
            if self._link(self.path, raw):
                return self._hold(raw)
            theirs = self._read_settled()
            if theirs is None:
                continue  # released meanwhile
            info = _parse(theirs)
            reason = self._stale_reason(info, self.path)
            if reason is None:
                raise RunDirInUse(
                    f"{self.run_dir} is in use by another run ({holder_text(info)}; lock {self.path}). Wait "
                    "for it to end or use another --out; a lock whose process is gone (same host) or whose "
                    f"heartbeat is older than {self.lease_s:g} s (another host) is taken over automatically."
                )
            if self._take_over(theirs, raw):
                self.took_over = f"{holder_text(info)} ({reason})"
                return self._hold(raw)
        raise RunDirInUse(
            f"{self.run_dir} is in use: other runs are contending for its lock {self.path} (last held by "
            f"{holder_text(info)}). Try again in a moment; a take-over claim {self._claim} left by a dead "
            "run is cleared like a lock."
        )

    def check(self) -> None:
        """Raises LockLost if the lock file no longer holds our token (another run took the directory)."""
        if not self._held:
            raise RuntimeError(f"{self.path} is not held by this RunLock")
        raw = _read(self.path)
        if raw != self._raw:
            whom = "nobody (it was removed)" if raw is None else holder_text(_parse(raw))
            raise LockLost(
                f"{self.run_dir} was taken over: its lock {self.path} now belongs to {whom}. This run "
                "stops so that it does not overwrite the new holder's files."
            )

    def release(self) -> None:
        """Stops the heartbeat and removes the lock file if it is still ours."""
        if not self._held or os.getpid() != self._owner_pid:  # not held, or a forked child
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if _read(self.path) == self._raw:
            self.path.unlink(missing_ok=True)
        self._held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _new_holder(self) -> dict[str, Any]:
        stat = _proc_stat(os.getpid())
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": None if stat is None else stat[1],
            "slurm_job": _slurm_job(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": self._token,
        }

    @property
    def _claim(self) -> Path:
        return self.run_dir / f".{LOCK_NAME}.takeover"

    def _hold(self, raw: bytes) -> RunLock:
        self._raw, self._held, self._owner_pid = raw, True, os.getpid()
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _write_tmp(self, raw: bytes) -> Path:
        """A complete, synced copy of `raw` beside the lock, to link or rename into place."""
        tmp = self.run_dir / f".{LOCK_NAME}.{self._token}"
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _link(self, target: Path, raw: bytes) -> bool:
        """Creates `target` holding `raw` unless it exists (False); readers never see it half written."""
        tmp = self._write_tmp(raw)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        finally:
            tmp.unlink(missing_ok=True)
        # A file system without hard links: exclusive create, which readers may catch half written.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read_settled(self) -> bytes | None:
        """The existing lock; a lock that does not parse is read again for ~0.2 s before it is judged."""
        raw = _read(self.path)
        for _ in range(4):
            if raw is None or _parse(raw):
                break
            time.sleep(0.05)
            raw = _read(self.path)
        return raw

    def _stale_reason(self, info: dict[str, Any], path: Path) -> str | None:
        """Why the lock (or take-over claim) at `path` may be taken over; None when its holder may live."""
        ours = _slurm_job()
        if ours is not None and info.get("slurm_job") is not None and str(info["slurm_job"]) == ours:
            return f"same Slurm job {ours}"
        pid = info.get("pid")
        if info.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
            return None if _process_alive(pid, info.get("pid_start")) else "its process is gone"
        try:  # another host, or a holder we cannot name: only the heartbeat tells
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        return f"heartbeat {age:.0f} s old" if age > self.lease_s else None

    def _take_over(self, stale: bytes, raw: bytes) -> bool:
        """Replaces the stale lock by ours; True if we did.

        Contenders take turns through a claim file, created like the lock: its holder checks that the lock
        is still the stale one and renames ours over it, so the directory is never without a lock (a
        contender that removed the stale lock first could delete a fresh one, or let a third one in). The
        others try again and find the new holder alive.
        """
        if not self._link(self._claim, raw):
            theirs = _read(self._claim)
            if theirs is not None and self._stale_reason(_parse(theirs), self._claim) is not None:
                self._remove_claim(theirs)  # a contender died while taking over
            else:
                time.sleep(0.05)  # a take-over under way: its result is read on the next attempt
            return False
        try:
            if _read(self.path) != stale:
                return False  # released or taken over meanwhile: judge again
            tmp = self._write_tmp(raw)
            try:
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            return True
        finally:
            if _read(self._claim) == raw:
                self._claim.unlink(missing_ok=True)

    def _remove_claim(self, stale: bytes) -> None:
        """Removes a dead contender's claim; a claim that turns out live when moved aside is put back."""
        aside = self.run_dir / f".{LOCK_NAME}.takeover.{self._token}"
        try:
            os.rename(self._claim, aside)
        except FileNotFoundError:
            return  # another contender removed it first
        try:
            if aside.read_bytes() != stale:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self._claim)
        finally:
            aside.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        """Refreshes the lock's mtime while it is ours, so other hosts see the holder alive."""
        interval = min(self.lease_s / 10, 30.0)
        while not self._stop.wait(interval):
            try:
                if _read(self.path) != self._raw:
                    return  # taken over: check() reports it; never refresh another holder's lock
                os.utime(self.path)
            except OSError:
                pass  # a slow or briefly unavailable file system: the next beat tries again
