"""One training process per run directory.

Two processes training the same run (a `charlstm resume` started while the
run still trains, say) would both save checkpoints and append to one
metrics log, each from its own state: the run's history mixed, its latest
checkpoints from two different runs. A session holds an exclusive lock on
RUN/.lock while it trains, and a second one is refused with a line naming
the process that holds it (its pid, and its host where that is another
machine sharing the filesystem). The file also keeps the session's starting
step and step total, which `charlstm runs` shows until the session's first
save (`session_steps`). The lock is the operating system's (`flock`):
it goes with the process, so a run whose process was killed is never left
locked. Where `fcntl` does not exist (Windows), or the filesystem does not lock
(Lustre by default, some FUSE and network mounts), runs are not locked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from charlstm.errors import CharlstmError, shell_word

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# What flock raises on filesystems that do not lock (Lustre by default, some
# FUSE and network mounts): there runs are not locked, as on Windows.
_NO_LOCKING = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _holder(session: tuple[int, int] | None) -> str:
    """What the lock file says of its holder: the pid, and the host, since a
    run directory on a shared filesystem can be trained from another machine;
    then the session's starting step and step total (`session_steps`)."""
    holder = f"{os.getpid()} {socket.gethostname()}"
    return holder if session is None else f"{holder}\nsteps {session[0]} {session[1]}"


def _refusal(run_dir: Path, fd: int) -> CharlstmError:
    pid, _, host = os.pread(fd, 300, 0).decode(errors="replace").strip().partition("\n")[0].partition(" ")
    if not pid.isdigit():
        who = "another process"
    elif host and host != socket.gethostname():
        who = f"another process (pid {pid} on {host})"
    else:
        who = f"another process (pid {pid})"
    return CharlstmError(
        f"{run_dir} is being trained by {who}; wait for it to end or stop it, then "
        f"'charlstm resume {shell_word(run_dir)}'"
    )


# `charlstm runs` asks whether a run is in use by taking a shared lock for
# an instant (`in_use`): a training process that meets it tries again.
TRIES, PAUSE_S = 20, 0.01


def _take(fd: int) -> None:
    """The exclusive lock on `fd`; BlockingIOError if another process holds a
    lock on it for longer than TRIES pauses."""
    assert fcntl is not None
    for _ in range(TRIES - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(PAUSE_S)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextlib.contextmanager
def held(run_dir: Path, session: tuple[int, int] | None = None) -> Iterator[None]:
    """Hold `run_dir`'s lock while the block runs, or raise a CharlstmError
    if another process holds it. `session`: the step the session starts at
    and its step total, which the lock file keeps for `session_steps`."""
    if fcntl is None:
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # the session is about to write there anyway
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise CharlstmError(f"cannot write in run directory {run_dir}: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CharlstmError(
                f"{run_dir / LOCK_FILE} is not a file (a pipe, a socket or a device): remove it, then run the "
                "command again"
            )
        try:
            _take(fd)
        except BlockingIOError:
            raise _refusal(run_dir, fd) from None
        except OSError as err:
            if err.errno not in _NO_LOCKING:
                raise CharlstmError(f"cannot lock run directory {run_dir}: {err.strerror}") from None
            yield  # this filesystem does not lock: train unlocked
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder(session).encode(), 0)  # for the message a second process gives
        yield
    finally:
        os.close(fd)  # which releases the lock


def in_use(run_dir: Path) -> bool:
    """Whether another process trains `run_dir` now (False where runs are not locked)."""
    try:
        refuse_if_held(run_dir)
    except CharlstmError:
        return True
    return False


def refuse_if_held(run_dir: Path) -> None:
    """Raise the CharlstmError `held` would, without taking the lock: so a
    resume is refused before it reads the corpus, not after."""
    path = run_dir / LOCK_FILE
    if fcntl is None or not path.exists():
        return
    try:
        # Not blocking: a pipe in its place (a run unpacked from an archive) would wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return  # unreadable: `held` says what is wrong when it takes the lock
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return  # `held` refuses it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(run_dir, fd) from None
        except OSError:
            pass  # a filesystem that does not lock (see `held`)
    finally:
        os.close(fd)


def session_steps(run_dir: Path) -> tuple[int, int] | None:
    """The starting step and step total of the session that holds (or last
    held) `run_dir`'s lock, as `held` wrote them; None where it wrote none.
    Until that session's first save the run's checkpoints still hold the
    previous session's total, which a resume with a new --steps changed."""
    try:
        text = (run_dir / LOCK_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) == 3 and words[0] == "steps" and words[1].isdigit() and words[2].isdigit():
            return int(words[1]), int(words[2])
    return None
