"""The processes of a run on several hosts or GPUs: joining, leaving, and agreeing.

Validation runs on one device of each process, from its copy of the
replicated parameters, and every process then uses process 0's result, so
all take the same decisions (a new best, divergence, when to stop) and call
every checkpoint save in step with the others. Only process 0 samples.

Several processes (one per host, or per GPU) join through
`jax.distributed`. A process starts one when given the coordinator's
address, the process count and its own index (options or environment):

    CHARLSTM_COORDINATOR    HOST:PORT of process 0 ("auto": let JAX find it)
    CHARLSTM_NUM_PROCESSES  how many processes take part
    CHARLSTM_PROCESS_ID     this process's index, 0 .. N-1
    CHARLSTM_JOIN_TIMEOUT   seconds to wait for all of them (default 300)

or, with none of these, when JAX's own cluster detection would find more
than one process: under Slurm's srun or Open MPI's mpirun. (JAX's
JAX_COORDINATOR_ADDRESS may stand for the coordinator, beside the count and
index.) Otherwise nothing is initialised, and a single process uses all its
local devices.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from charlstm.errors import CharlstmError, ConfigError
from charlstm.flags import flag

ENV_COORDINATOR = "CHARLSTM_COORDINATOR"
ENV_NUM_PROCESSES = "CHARLSTM_NUM_PROCESSES"
ENV_PROCESS_ID = "CHARLSTM_PROCESS_ID"
ENV_JOIN_TIMEOUT = "CHARLSTM_JOIN_TIMEOUT"
JOIN_TIMEOUT_S = 300.0  # JAX's own default wait for the processes to gather
# JAX's own wait runs this much longer than the caller's, so that a caller
# given `on_timeout` always ends the process first, with its own words.
_JAX_GRACE_S = 60

# Ways a multi-process run stops early, in the order the processes settle on
# when they disagree: an interrupt anywhere stops all of them.
_STOP_REASONS = (None, "time limit", "interrupted")


def cluster_launcher(env: Mapping[str, str] = os.environ) -> str | None:
    """The launcher that started this process as one of several, if
    `jax.distributed.initialize()` can read the layout from it alone.
    (JAX_COORDINATOR_ADDRESS is not one: JAX reads only the address from it,
    not the process count or this process's index.)"""
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm) and _count(env.get("SLURM_NTASKS")) > 1:
        return "Slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and _count(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
        return "Open MPI"
    return None


def _count(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 1


def join_timeout(env: Mapping[str, str] = os.environ) -> float:
    """Seconds to wait for every process of a run to join: CHARLSTM_JOIN_TIMEOUT, else 300."""
    value = env.get(ENV_JOIN_TIMEOUT)
    if value is None:
        return JOIN_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{ENV_JOIN_TIMEOUT} must be a number of seconds above 0, got {value!r}")
    return seconds


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    on_timeout: Callable[[str], object] | None = None,
) -> bool:
    """Join a multi-process run if one is asked for or detected; whether it
    was. Must come before anything else touches JAX's devices.

    If the processes have not all joined within `join_timeout()`, JAX ends
    the process itself (a fatal log and a C++ stack trace), and its wait
    cannot be interrupted from Python. `on_timeout`, where given, is called
    instead from another thread with a one-line message saying what to
    check, and must end the process (`os._exit`); JAX's own end follows a
    minute later otherwise."""
    if num_processes == 1 and process_id in (None, 0):
        return False
    explicit = coordinator is not None or num_processes is not None or process_id is not None
    if not explicit and cluster_launcher() is None:
        return False  # a plain single-process run: never pay for (or wait on) a coordinator
    check_layout(coordinator, num_processes, process_id)
    if coordinator in (None, "auto") and cluster_launcher() is None and not _jax_address(num_processes, process_id):
        why = (
            f"{flag('coordinator')} auto found no launcher (Slurm, Open MPI) to read the layout from, nor "
            f"JAX_COORDINATOR_ADDRESS with {flag('num_processes')} and {flag('process_id')}"
            if coordinator
            else f"no {flag('coordinator')} was given"
        )
        raise ConfigError(
            f"cannot start a multi-process run: {why}. Give {flag('coordinator')} HOST:PORT, "
            f"{flag('num_processes')} N and {flag('process_id')} I (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, "
            f"{ENV_PROCESS_ID}), or launch under Slurm or Open MPI"
        )
    # JAX's default for CPU collectives has changed between versions; gloo is
    # what lets CPU-only processes (and the tests) reduce gradients at all.
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeout = join_timeout()
    watchdog, waiting = None, threading.Lock()

    def gave_up(message: str) -> None:
        # Not once the wait has ended: the timer may fire just as it returns.
        if on_timeout is not None and waiting.acquire(blocking=False):
            on_timeout(message)

    if on_timeout is not None:
        # JAX_COORDINATOR_ADDRESS stands for --coordinator where no launcher does (2026-12-06: the message named one).
        at = coordinator if cluster_launcher() is not None else coordinator or _jax_address(num_processes, process_id)
        watchdog = threading.Timer(timeout, gave_up, args=(_never_gathered(at, num_processes, timeout),))
        watchdog.daemon = True
        watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=None if coordinator in (None, "auto") else coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=math.ceil(timeout) + (_JAX_GRACE_S if watchdog else 0),
        )
    except ValueError as err:  # something missing that no cluster environment supplied
        raise ConfigError(
            f"cannot start a multi-process run: {err} Give {flag('coordinator')} HOST:PORT, {flag('num_processes')} N "
            f"and {flag('process_id')} I (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}), or launch "
            "under Slurm or Open MPI"
        ) from None
    except RuntimeError as err:  # the coordinator never answered, a process never arrived
        where = coordinator or "the detected coordinator"
        raise CharlstmError(f"could not join the multi-process run at {where}: {err}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
            waiting.acquire(blocking=False)  # a timer already past its cancel finds it taken
    return True


def joining_where(coordinator: str | None, num_processes: int | None, process_id: int | None) -> str | None:
    """Where `initialize` will wait for the others ("at HOST:PORT", "under
    Slurm"), or None where it will not wait: a single process, or a layout
    it refuses at once."""
    if num_processes == 1:
        return None
    if coordinator not in (None, "auto"):
        return f"at {coordinator}"
    if (launcher := cluster_launcher()) is not None:
        return f"under {launcher}"
    address = _jax_address(num_processes, process_id)
    return f"at {address}" if address else None


def _jax_address(num_processes: int | None, process_id: int | None) -> str | None:
    """JAX_COORDINATOR_ADDRESS, where it stands for the coordinator: JAX
    reads only the address from it, so the count and index must be given."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    return address if address and None not in (num_processes, process_id) else None


def _never_gathered(coordinator: str | None, num_processes: int | None, timeout: float) -> str:
    """What to check when a run's processes have not all joined in time."""
    if coordinator in (None, "auto"):
        return (
            f"the processes of this multi-process run did not all join within {timeout:g} s: check that the "
            f"launcher started every task and that they can reach each other ({ENV_JOIN_TIMEOUT} sets the wait)"
        )
    count = f"all {num_processes}" if num_processes else "all"
    return (
        f"{count} processes of the run at {coordinator} did not join within {timeout:g} s: start every process "
        f"with the same options, each with its own {flag('process_id')} from 0 to "
        f"{num_processes - 1 if num_processes else 'N - 1'}, and check that each can reach {coordinator} "
        f"({ENV_JOIN_TIMEOUT} sets the wait)"
    )


def check_layout(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Refuse what JAX would meet with a traceback or a crash (an address
    without a port, a port that is not a number: a segmentation fault) or
    name in its own words."""
    if coordinator not in (None, "auto"):
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{flag('coordinator')} {coordinator!r}: give HOST:PORT of process 0, such as 10.0.0.1:7777 "
                "(a port from 1 to 65535), or auto"
            )
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"{flag('num_processes')} must be >= 1, got {num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        last = f" to {num_processes - 1}" if num_processes is not None else " or more"
        raise ConfigError(f"{flag('process_id')} must be 0{last}, got {process_id}")


def refuse_a_port_in_use(coordinator: str | None, process_id: int | None, num_processes: int | None = None) -> None:
    """Refuse, on process 0 before it starts the coordinator, a port already
    in use on its host. JAX's service binds it anyway where another run's
    coordinator holds it, and the other run then fails (its processes meet
    a stranger), or crashes this process where another program holds it."""
    if coordinator in (None, "auto") or process_id != 0 or num_processes == 1:
        return  # only the process known to be 0 starts it (a launcher's may not know its index yet)
    port = int(coordinator.rpartition(":")[2])
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):  # as JAX binds: every interface
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here
            continue
        with probe:
            # Not in use merely for connections of an earlier run still closing (TIME_WAIT). Not on
            # Windows, where it binds a port another socket listens on.
            if os.name != "nt":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    continue
                raise ConfigError(
                    f"port {port} is already in use on this host (another run's coordinator, another program, or "
                    f"this run's process 0, started already: then give this process its own {flag('process_id')}); "
                    f"otherwise give every process of this run another port in {flag('coordinator')}"
                ) from None
        return


def check_devices(num_processes: int | None = None) -> None:
    """Refuse, on every process at once, processes with different numbers of
    devices (another --devices on one, a host of another kind), before the
    first collective, which would fail with a traceback. Every process sees
    every process's devices, so no collective is needed to find out. Then
    processes given different `num_processes`: JAX takes process 0's count,
    and a process told another trained on, saying it had joined a run of
    that many (a walkthrough, 2026-12-06)."""
    if not joined():
        return
    counts = collections.Counter(device.process_index for device in jax.devices())
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"process {p} has {n}" for p, n in sorted(counts.items()))
        raise ConfigError(
            f"the processes of this run have different numbers of devices ({shown}): give every process the "
            f"same {flag('devices')} (or none), on hosts of one kind"
        )
    agree({"num_processes": num_processes})  # a collective: only once the devices agree


def leave() -> None:
    """Leave the multi-process run, if this process joined one, together
    with the others: JAX's shutdown barrier, then process 0 stops the
    coordination service. Done here, while JAX's runtime is whole, rather
    than by JAX's own exit handler, which first tears down the backends: at
    interpreter exit, process 0 of a run that had finished and saved once
    aborted inside the service's gRPC teardown (`server.cc: Check failed:
    queue.Pop() == nullptr`), turning a finished run into a failed job.
    In a process that joined none, JAX's shutdown does nothing."""
    # The run has ended and saved: a peer that left first must not turn
    # that into a traceback here.
    with contextlib.suppress(Exception):
        jax.distributed.shutdown()


def lost_a_process(err: BaseException) -> bool:
    """Whether `err` (or what it was raised from) is a collective that failed
    because another process of the run is gone: its connection closed or
    reset, its heartbeat lost. It may come as JAX's runtime error or inside
    one of ours (a checkpoint that could not be written)."""
    if not joined():
        return False
    seen: BaseException | None = err
    while seen is not None:
        if _names_a_lost_process(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _names_a_lost_process(text: str) -> bool:
    """Whether an error's text is a collective's that failed for want of a partner."""
    lowered = text.lower()
    signs = ("connection closed", "connection reset", "heartbeat timeout")
    return any(sign in lowered for sign in signs) or re.search(r"\bgloo\b", lowered) is not None  # not "igloo"


class _LostProcessLogFilter(logging.Filter):
    """Drops the tracebacks that Orbax's saving threads log when a partner
    process is gone: the command says so itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (joined() and _names_a_lost_process(record.getMessage()))


def quiet_about_lost_processes() -> None:
    """Keep Orbax's threads from logging a lost partner's tracebacks (see `lost_a_process`)."""
    logging.getLogger("absl").addFilter(_LostProcessLogFilter())


def joined() -> bool:
    """Whether this process is one of several in a run."""
    return jax.process_count() > 1


def is_main() -> bool:
    """Whether this is the process that reports progress and writes logs."""
    return jax.process_index() == 0


def stop_agreed(reason: str | None) -> str | None:
    """The stop every process settles on, given this one's wish: a signal
    or a clock reaches one process before another, and a process that
    stopped alone would leave the others waiting in the next step."""
    if jax.process_count() == 1:
        return reason
    wishes = multihost_utils.process_allgather(np.int32(_STOP_REASONS.index(reason)))
    return _STOP_REASONS[int(np.max(wishes))]


def agree(named: Mapping[str, object]) -> None:
    """Refuse, on every process at once, a run whose processes hold
    different values under the same names (their options, their text).

    Processes started with different options (`--steps 20` on one, `10` on
    another) leave each other waiting in a collective that one of them
    never reaches, a hang no signal ends; here each value's hash is
    gathered from every process, so all of them see the difference and
    stop with the same message before the first step."""
    if not joined():
        return
    names = sorted(named)
    digests = np.array(  # (F,): 32 bits of each value's sha256
        [int.from_bytes(hashlib.sha256(repr(named[n]).encode()).digest()[:4], "little", signed=True) for n in names],
        np.int32,
    )
    every = np.asarray(multihost_utils.process_allgather(digests))  # (P, F)
    differ = [name for i, name in enumerate(names) if np.any(every[:, i] != every[0, i])]
    if differ:
        who = [str(p) for p in range(len(every)) if np.any(every[p] != every[0])]
        raise ConfigError(
            f"the processes of this run were started with different {', '.join(flag(n) for n in differ)}: "
            f"{'processes' if len(who) > 1 else 'process'} {', '.join(who)} {'differ' if len(who) > 1 else 'differs'} "
            f"from process 0; start every process "
            f"with the same options and text, changing only {flag('process_id')}"
        )


# The file process 0 writes in the run directory for the others to find:
# hidden (dot-named), removed once every process has looked, and one of the
# files a start that failed may leave (training/run.py).
SHARED_TOKEN = ".charlstm-processes"


def share_directory(run_dir: Path) -> None:
    """Refuse, on every process at once, a run whose processes do not all
    see the same run directory: given different `--out`s, or one not on
    storage every host sees. Each writes its part of every checkpoint there,
    and a save whose parts land apart waits for the missing ones for 10
    minutes, which no signal ends. Process 0 writes a token there; every
    process reads it back before the first step. Each outcome is gathered
    from every process before anyone acts on it, so that all stop together."""
    if not joined():
        return
    token = f"{from_main(float(np.random.default_rng().integers(1, 2**52)))!r}"  # the same on every process
    path = run_dir / SHARED_TOKEN
    unwritable = ""
    if is_main():
        try:
            path.write_text(token, encoding="utf-8")
        except OSError as err:
            unwritable = err.strerror or str(err)
    # Gathered, not a barrier: process 0's failure reaches every process (as a hash; its words stay there).
    if np.any(np.asarray(multihost_utils.process_allgather(np.int32(bool(unwritable))))):
        raise CharlstmError(
            f"cannot write in the run directory {run_dir}"
            + (f": {unwritable}" if unwritable else " (process 0 says why)")
        )
    try:
        try:
            seen = path.read_text(encoding="utf-8") == token
        except OSError:
            seen = False
        every = np.asarray(multihost_utils.process_allgather(np.int32(seen)))  # (P,)
    finally:
        if is_main():
            path.unlink(missing_ok=True)  # the others have read it, or this one is ending anyway
    blind = [str(p) for p in range(len(every)) if not every[p]]
    if blind:
        raise ConfigError(
            f"{'processes' if len(blind) > 1 else 'process'} {', '.join(blind)} of this run cannot see the run "
            f"directory process 0 writes ({run_dir} there): every process writes its part of each checkpoint "
            f"into it, so give every process the same {flag('out')} (or none; resume: the same RUN), on storage every "
            "host sees"
        )


def from_main(value: float) -> float:
    """Process 0's `value`, on every process."""
    if jax.process_count() == 1:
        return value
    # Sent as the float64's bits in two int32s: JAX would round a float64
    # array to float32 (it runs without x64), and a NaN must stay a NaN.
    bits = np.array([value], np.float64).view(np.int32)
    return float(np.asarray(multihost_utils.broadcast_one_to_all(bits), np.int32).view(np.float64)[0])


def barrier(name: str) -> None:
    """Wait until every process gets here."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
