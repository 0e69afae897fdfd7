"""Data-parallel training over several devices and processes (charlstm/training/distributed.py, processes.py).

One device against two forced CPU devices, and one process against two
real `charlstm train` processes joined by JAX's distributed runtime on the
loopback interface: the same global batch and seed give the same losses.
"""

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.errors import CharlstmError, CharlstmWarning, ConfigError
from charlstm.flags import flag
from charlstm.runtime import cpu_devices
from charlstm.runtime.cores import cores, cpu_quota
from charlstm.text.streams import Streams
from charlstm.training import checkpoint, distributed, events, processes, session
from charlstm.training.runlog import read_metrics

from .conftest import CHEAP_XLA_FLAGS
from .helpers import losses, new_tiny_run, train
from .test_cli import TINY

# Collectives change the order of the sums behind the mean loss and the
# gradients; a few steps keep the difference at float32 rounding.
RTOL = 1e-5
# Every process pays for importing JAX, initialising and compiling: the
# smallest model and schedule that still evaluate, save and resume.
MODEL = {"hidden_size": 16, "num_layers": 1, "embed_dim": 8, "norm": "none"}
STEPS = 4
SCHEDULE = {
    "steps": STEPS,
    "batch_size": 4,
    "seq_len": 16,
    "log_every": 1,
    "eval_every": STEPS,
    "checkpoint_every": STEPS,
}
CLI_ARGS = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4", "--seq-len", "16", "--norm", "none"]
CLI_ARGS += ["--steps", str(STEPS), "--log-every", "1", "--eval-every", str(STEPS), "--checkpoint-every", str(STEPS)]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", **extra}
    for name in (processes.ENV_COORDINATOR, processes.ENV_NUM_PROCESSES, processes.ENV_PROCESS_ID):
        if name not in extra:
            env.pop(name, None)
    if "XLA_FLAGS" not in extra:  # none of a user's, only the suite's own (conftest.py)
        env["XLA_FLAGS"] = CHEAP_XLA_FLAGS
    return env


def _train_losses(run_dir: Path) -> list[float]:
    return [m["train_loss"] for m in read_metrics(run_dir) if "train_loss" in m]


def test_a_process_reads_only_its_own_streams(tiny_text):
    ids = np.arange(len(tiny_text), dtype=np.int32)
    streams = Streams(ids, batch=8, seq_len=16, reset_windows=3)
    whole, part = streams.window(5), streams.window(5, slice(2, 6))
    np.testing.assert_array_equal(part.inputs, whole.inputs[2:6])
    np.testing.assert_array_equal(part.targets, whole.targets[2:6])
    np.testing.assert_array_equal(part.reset, whole.reset[2:6])


def test_a_batch_the_devices_cannot_share_says_what_would_work():
    distributed.check_batch(64, 4)
    with pytest.raises(ConfigError) as err:
        distributed.check_batch(5, 2)
    assert str(err.value) == (
        "batch_size 5 does not split evenly over 2 devices: use a multiple of 2, such as 4 or 6; "
        "or keep it with devices 1"
    )
    with pytest.raises(ConfigError, match=r"over 6 devices \(2 processes x 3\).* 6 or 12; or keep it with devices 1 "):
        distributed.check_batch(10, 3, processes=2, available=4)


def test_devices_beyond_the_machine_are_one_line_and_write_nothing(tiny_corpus, tmp_path):
    result = CliRunner().invoke(
        app, ["train", str(tiny_corpus), "--out", str(tmp_path / "run"), *TINY, "--devices", "2"]
    )
    assert result.exit_code == 2
    backend = jax.default_backend()  # `gpu` where benchmarks/gpu_check.py runs the suite
    split = "; or, before JAX starts, charlstm.split_the_cpu(N)" if backend == "cpu" else ""
    assert result.stderr == f"error: --devices 2: this process has 1 {backend} device; pick 1 to 1{split}\n"
    assert not (tmp_path / "run").exists()


def test_only_launchers_that_name_several_processes_start_a_multi_process_run():
    assert processes.cluster_launcher({}) is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    assert processes.cluster_launcher({**slurm, "SLURM_NTASKS": "1"}) is None  # a one-task job: nothing to join
    assert processes.cluster_launcher({**slurm, "SLURM_NTASKS": "4"}) == "Slurm"
    assert processes.cluster_launcher({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}) == "Open MPI"
    # JAX reads only the address from it, not how many processes or which this is (a walkthrough, 2026-12-05:
    # set alone, it stopped every plain `charlstm train` with "Number of processes must be defined").
    assert processes.cluster_launcher({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}) is None


def test_a_port_in_use_is_refused_on_process_0_before_it_starts_the_coordinator():
    """Another run's coordinator on the port (JAX bound it too, and that
    run failed) or another program (JAX crashed with a segmentation fault)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ConfigError, match=f"port {taken.getsockname()[1]} is already in use on this host"):
            processes.refuse_a_port_in_use(address, 0)
        processes.refuse_a_port_in_use(address, 1)  # the others only connect to it
        processes.refuse_a_port_in_use(address, None)  # a launcher's task that does not know its index yet
        processes.refuse_a_port_in_use(address, 0, 1)  # one process: no coordinator is started
    processes.refuse_a_port_in_use(f"127.0.0.1:{_free_port()}", 0)
    processes.refuse_a_port_in_use(None, None)


def test_an_incomplete_process_layout_is_one_line(tiny_corpus, tmp_path):
    command = [sys.executable, "-m", "charlstm", "train", str(tiny_corpus), "--out", str(tmp_path / "run"), *TINY]
    result = subprocess.run(
        [*command, "--num-processes", "2", "--process-id", "0"], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot start a multi-process run: ")
    assert "--coordinator HOST:PORT" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_process_whose_partners_never_join_gives_up_in_one_line(tiny_corpus, tmp_path):
    """JAX's own wait ends the process with a fatal log and a C++ stack trace
    after 5 minutes. The last line is the watchdog's, which only a wait of
    the 2 s asked for can have written (JAX's own end would come a minute
    later, as its fatal log): no clock is read."""
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "charlstm", "train", str(tiny_corpus), "--out", str(tmp_path / "run"), *TINY]
    command += ["--coordinator", address, "--num-processes", "2", "--process-id", "0"]
    env = _env(**{processes.ENV_JOIN_TIMEOUT: "2"})
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    assert f"joining a run of 2 processes at {address}: waiting for the others (up to 2 s)" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: all 2 processes of the run at {address} did not join within 2 s: start every process with the "
        f"same options, each with its own --process-id from 0 to 1, and check that each can reach {address} "
        f"({processes.ENV_JOIN_TIMEOUT} sets the wait)"
    ), result.stderr
    assert "Check failure" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf", "nan"])
def test_a_join_timeout_must_be_seconds_above_zero(value):
    assert processes.join_timeout({}) == processes.JOIN_TIMEOUT_S
    assert processes.join_timeout({processes.ENV_JOIN_TIMEOUT: "12.5"}) == 12.5
    with pytest.raises(ConfigError, match=f"{processes.ENV_JOIN_TIMEOUT} must be a number of seconds above 0"):
        processes.join_timeout({processes.ENV_JOIN_TIMEOUT: value})


# Runs in a process of its own, where XLA makes two CPU devices: one device
# and two, the same global batch and seed, for each cell (each has its own
# hand-written backward pass), all with dropout (each stream's mask must not
# depend on the device it is on); then a batch they cannot share.
_ONE_AND_TWO_DEVICES = textwrap.dedent(
    """
    import json, sys
    import charlstm
    from charlstm.training import events

    corpus, out, model, schedule, cells = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:6])
    seen = {}
    for name, cell in cells.items():
        for n in (1, 2):
            record = lambda e, n=n: seen.setdefault(n, e.devices) if isinstance(e, events.Started) else None
            charlstm.train(corpus, f"{out}/{name}/{n}", devices=n, on_event=record, **{**model, **cell}, **schedule)
    try:
        charlstm.train(corpus, f"{out}/odd", devices=2, **model, **{**schedule, "batch_size": 5})
        error = None
    except charlstm.CharlstmError as err:
        error = str(err)
    print(json.dumps({"devices": seen, "error": error}))
    """
)
# The LSTM's two cells share their gate gradients (lstm.lstm_gate_grads):
# the layer-normalised one, the default, stands for both.
# The default cell with dropout: the sharding of the step does not depend on
# the cell (a GRU on two devices was checked the same way until 2026-12-01).
CELLS = {"lstm-layer-norm": {"norm": "layer", "dropout": 0.2}}


@pytest.mark.slow
def test_one_device_and_two_devices_give_the_same_losses(tiny_corpus, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _ONE_AND_TWO_DEVICES,
            str(tiny_corpus),
            str(tmp_path),
            *map(json.dumps, (MODEL, SCHEDULE, CELLS)),
        ],
        capture_output=True,
        text=True,
        env=_env(XLA_FLAGS=f"{CHEAP_XLA_FLAGS} --xla_force_host_platform_device_count=2".strip()),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert len(report["devices"]["1"]) == 1 and len(report["devices"]["2"]) == 2
    for name in CELLS:
        one, two = _train_losses(tmp_path / name / "1"), _train_losses(tmp_path / name / "2")
        assert len(one) == len(two) == STEPS, name
        np.testing.assert_allclose(two, one, rtol=RTOL, err_msg=name)
        vals = [[m["val_loss"] for m in read_metrics(tmp_path / name / str(n)) if "val_loss" in m] for n in (1, 2)]
        np.testing.assert_allclose(vals[1], vals[0], rtol=RTOL, err_msg=name)
    assert report["error"].startswith("batch_size 5 does not split evenly over 2 devices")
    assert not (tmp_path / "odd").exists()


# Runs in a process of its own that splits the CPU as the commands do:
# a run on the default layout, straight and stopped then resumed.
_SPLIT_CPU = textwrap.dedent(
    """
    import json, sys
    from charlstm.runtime.cpu_devices import split_the_cpu

    split_the_cpu()  # before anything touches JAX's devices, as the commands call it
    import charlstm
    from charlstm.training import events

    corpus, out, model, schedule = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:5])
    seen = {"devices": {}, "losses": {}}

    def recorder(name, stop_after=None):
        steps = []

        def record(event):
            if isinstance(event, events.Started):
                seen["devices"].setdefault(name, event.devices)
            elif isinstance(event, events.Progress):
                steps.append(event.step)
                seen["losses"].setdefault(name, []).append([event.step, event.loss])
            elif isinstance(event, events.Evaluated):
                seen["losses"].setdefault(name + " validation", []).append([event.step, event.val_loss])

        return record, (lambda: bool(steps) and stop_after is not None and steps[-1] >= stop_after)

    record, _ = recorder("straight")
    charlstm.train(corpus, f"{out}/straight", on_event=record, **model, **schedule)
    record, stop = recorder("split", stop_after=2)
    charlstm.train(corpus, f"{out}/split", on_event=record, should_stop=stop, **model, **schedule)
    record, _ = recorder("split")
    charlstm.resume(f"{out}/split", on_event=record)
    record, _ = recorder("odd")
    charlstm.train(corpus, f"{out}/odd", on_event=record, **model, **{**schedule, "batch_size": 5})
    # A run trained on one device (as every run before the split) resumes on
    # one: the layout its checkpoint records, so it continues bit for bit.
    record, _ = recorder("one")
    charlstm.train(corpus, f"{out}/one", on_event=record, devices=1, **model, **schedule)
    record, stop = recorder("one, resumed", stop_after=2)
    charlstm.train(corpus, f"{out}/one-resumed", on_event=record, should_stop=stop, devices=1, **model, **schedule)
    record, _ = recorder("one, resumed")
    seen["devices"].pop("one, resumed")
    charlstm.resume(f"{out}/one-resumed", on_event=record)
    print(json.dumps(seen))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    cpu_devices.cores() < 2 or "JAX_NUM_CPU_DEVICES" in os.environ,
    reason="the CPU is split only where a process may use two cores and no count was chosen",
)
def test_the_cpu_split_in_two_trains_and_resumes_bit_for_bit(tiny_corpus, tmp_path):
    """What `charlstm train` does on a CPU of two cores or more: two devices,
    the batch split over them where it splits evenly; a run stopped and
    resumed on them is the straight run bit for bit."""
    result = subprocess.run(
        [sys.executable, "-c", _SPLIT_CPU, str(tiny_corpus), str(tmp_path), *map(json.dumps, (MODEL, SCHEDULE))],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    two, one = ["cpu:0", "cpu:1"], ["cpu:0"]
    assert seen["devices"] == {"straight": two, "split": two, "odd": one, "one": one, "one, resumed": one}
    assert [step for step, _ in seen["losses"]["split"]] == list(range(1, STEPS + 1))
    assert seen["losses"]["split"] == seen["losses"]["straight"]
    assert seen["losses"]["split validation"] == seen["losses"]["straight validation"]
    assert seen["losses"]["one, resumed"] == seen["losses"]["one"]
    assert seen["losses"]["one, resumed validation"] == seen["losses"]["one validation"]


def _cgroup_file(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_a_cgroup_cpu_quota_counts_as_fewer_cores(tmp_path):
    """A container given 1.5 cores' time (`docker run --cpus 1.5`) sees all
    its host's cores; it counts as one core, and trains on one device."""
    affinity = len(os.sched_getaffinity(0))
    # cgroup v2: the smallest quota from the process's cgroup up to the root.
    v2, member = tmp_path / "v2", tmp_path / "v2-member"
    _cgroup_file(v2, "cgroup.controllers", "cpu memory\n")
    _cgroup_file(v2 / "a", "cpu.max", "150000 100000\n")
    _cgroup_file(v2 / "a" / "b", "cpu.max", "max 100000\n")
    member.write_text("0::/a/b\n")
    assert cpu_quota(v2, member) == 1.5
    assert cores(v2, member) == 1
    # cgroup v1 (or a hybrid system: v2 mounted at unified/ beside it), quota -1 for none.
    v1, member = tmp_path / "v1", tmp_path / "v1-member"
    _cgroup_file(v1 / "cpu", "cpu.cfs_quota_us", "-1\n")
    _cgroup_file(v1 / "cpu", "cpu.cfs_period_us", "100000\n")
    _cgroup_file(v1 / "cpu" / "docker" / "x", "cpu.cfs_quota_us", "50000\n")
    _cgroup_file(v1 / "cpu" / "docker" / "x", "cpu.cfs_period_us", "100000\n")
    _cgroup_file(v1 / "unified", "cgroup.controllers", "\n")
    member.write_text("4:cpu,cpuacct:/docker/x\n1:name=systemd:/docker/x\n0::/docker/x\n")
    assert cpu_quota(v1, member) == 0.5
    assert cores(v1, member) == 1  # under one core's time still counts one
    # No quota anywhere, or nothing to read: the affinity alone.
    member.write_text("4:cpu,cpuacct:/\n0::/\n")
    assert cpu_quota(v1, member) is None
    assert cores(v1, member) == affinity
    assert cpu_quota(v1, tmp_path / "missing") is None
    assert cores(v1, tmp_path / "missing") == affinity


def test_the_core_count_is_read_without_jax():
    """The benchmarks' PyTorch children give PyTorch `cores()` threads, the
    count charlstm splits its CPU by; reading it must not start JAX there."""
    code = "import sys; from charlstm.runtime.cores import cores; n = cores(); print(n, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(cores()), "False"]


def test_a_count_set_in_the_process_is_left_alone(monkeypatch):
    """`jax.config.update("jax_num_cpu_devices", N)` before a command or
    split_the_cpu() runs is the user's choice, as the environment's is."""
    calls = []

    def update(self, name, value):
        calls.append((name, value))
        self.jax_num_cpu_devices = value

    config = type("Config", (), {"jax_num_cpu_devices": 3, "update": update})()
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(cpu_devices, "jax", type("Jax", (), {"config": config}))
    monkeypatch.setattr(cpu_devices, "_set_here", [])
    assert cpu_devices.chosen_elsewhere()
    cpu_devices.split_the_cpu()
    cpu_devices.split_the_cpu(4)
    assert calls == []
    config.jax_num_cpu_devices = -1  # JAX's default: no count chosen
    assert not cpu_devices.chosen_elsewhere()
    cpu_devices.split_the_cpu(1)  # what JAX does anyway
    assert calls == []
    cpu_devices.split_the_cpu(4)
    # Its own choice it may change (a second call kept the first count, silently), back to one device too.
    cpu_devices.split_the_cpu(3)
    cpu_devices.split_the_cpu(1)
    assert calls == [("jax_num_cpu_devices", 4), ("jax_num_cpu_devices", 3), ("jax_num_cpu_devices", 1)]
    assert not cpu_devices.chosen_elsewhere()
    # In the environment too: -1 (or empty) is JAX's "not set", any other count the user's.
    for value, chosen in [("-1", False), ("", False), ("2", True)]:
        monkeypatch.setenv("JAX_NUM_CPU_DEVICES", value)
        assert cpu_devices.chosen_elsewhere() == chosen, value


def test_a_split_that_comes_after_jax_started_says_so(monkeypatch):
    """`charlstm.split_the_cpu()` after JAX has started cannot split: it was
    silent, and training then used one device where the caller asked for two."""
    monkeypatch.setattr(cpu_devices, "chosen_elsewhere", lambda: False)  # as a caller's process would be
    has = len(jax.devices("cpu"))  # JAX has started
    with pytest.warns(RuntimeWarning, match=rf"came after JAX started: training uses the CPU's {has} device"):
        cpu_devices.split_the_cpu(has + 1)
    # A charlstm warning too: the filter the docs give silences it (a walkthrough, 2026-12-05).
    with pytest.warns(CharlstmWarning, match="came after JAX started"):
        cpu_devices.split_the_cpu(has + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu_devices.split_the_cpu(has)  # what it has already: nothing to say
        cpu_devices.split_the_cpu(1)
        # Training on a GPU is unaffected, and a JAX with no CPU backend (JAX_PLATFORMS=cuda) is no error
        # (a review: a false warning, and a RuntimeError from jax.devices("cpu")).
        for backend in ("gpu", "cpu"):

            def no_cpu_backend(kind=None):
                raise RuntimeError("Unknown backend cpu")

            def started(*args):
                raise RuntimeError("jax_num_cpu_devices config should be updated before backends are initialized")

            fake = types.SimpleNamespace(
                config=types.SimpleNamespace(update=started),
                default_backend=lambda backend=backend: backend,
                devices=no_cpu_backend,
            )
            monkeypatch.setattr(cpu_devices, "jax", fake)
            cpu_devices.split_the_cpu(has + 1)


def test_every_command_asks_for_deterministic_gpu_kernels_unless_told_otherwise(monkeypatch):
    """Exact resume on a GPU needs XLA's deterministic kernels: each command
    asks for them before JAX starts, and a user's own XLA_FLAGS choice stands."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    result = CliRunner().invoke(app, ["runs", "/nonexistent-runs-folder"])
    assert result.exit_code in (0, 2), result.output
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_gpu_deterministic_ops=true"
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    CliRunner().invoke(app, ["runs", "/nonexistent-runs-folder"])
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_processes(
    corpus: Path | list[Path], run_dir: Path, args: list[list[str]], counts: tuple[int, int] = (2, 2)
) -> tuple[list[int | None], list[str]]:
    """`charlstm train` in two processes on 127.0.0.1, process i with
    args[i] (and corpus[i], where two are given), told it is one of
    counts[i]: their exit statuses and what each wrote to stderr."""
    port, logs, processes = _free_port(), [run_dir.parent / f"process-{i}.log" for i in range(2)], []
    corpora = corpus if isinstance(corpus, list) else [corpus, corpus]
    for i, log in enumerate(logs):
        joined = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(counts[i]), "--process-id", str(i)]
        text = str(corpora[i])
        command = [sys.executable, "-m", "charlstm", "train", text, "--out", str(run_dir), *args[i], *joined]
        with log.open("w") as stderr:
            processes.append(subprocess.Popen(command, stderr=stderr, env=_env()))
    deadline = time.monotonic() + 240
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [p.returncode for p in processes], [log.read_text() for log in logs]


@pytest.mark.slow
def test_two_processes_train_like_one_and_one_process_resumes(tiny_corpus, tmp_path):
    run_dir = tmp_path / "two"
    codes, outputs = _two_processes(tiny_corpus, run_dir, [CLI_ARGS, CLI_ARGS])
    assert codes == [0, 0], outputs
    assert "in 2 processes" in outputs[0]
    # Process 1 reports nothing (JAX may still warn there): process 0 speaks for both.
    assert "training on" not in outputs[1] and "done at step" not in outputs[1]

    alone = new_tiny_run(tiny_corpus, MODEL, **SCHEDULE)
    alone_events = train(alone, tmp_path / "one")
    np.testing.assert_allclose(_train_losses(run_dir), [loss for _, loss in losses(alone_events)], rtol=RTOL)
    saved = checkpoint.load(run_dir, prefer=checkpoint.LATEST)
    assert int(saved.state.step) == STEPS
    # Checksums of every array both processes hold whole (checked by the load
    # above); not of the carried state, of which each held its streams' part.
    sums = json.loads((run_dir / "checkpoints" / "latest" / str(STEPS) / "meta" / "metadata").read_text())["checksums"]
    assert {"params/head/kernel", "opt_state/1/0/mu/head/kernel", "step"} <= set(sums)
    assert not [name for name in sums if name.startswith("carry")]
    for a, b in zip(*(jax.tree_util.tree_leaves(s) for s in (saved.state.params, alone.state.params)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)

    # The checkpoint two processes wrote is complete: one process carries on from it.
    resumed = session.resumed_run(run_dir, {"steps": STEPS + 2})
    more: list[events.Event] = []
    session.train(resumed, run_dir, more.append, devices=1)  # one device, as a process of one core has
    assert isinstance(more[-1], events.Finished) and more[-1].reason == "done" and more[-1].step == STEPS + 2
    # On another device count than the two it trained on, the session says it is no longer bit for bit.
    told = [e.message for e in more if isinstance(e, events.Warned) and e.kind == "devices"]
    assert told == [
        "trained on 2 devices, this session on 1: the gradients are summed in another order, so the run goes on "
        f"as it would have to float32 rounding, not bit for bit; {flag('devices')} 2 keeps its layout where this "
        "process has that many"
    ]
    assert [m["step"] for m in read_metrics(run_dir) if "train_loss" in m] == list(range(1, STEPS + 3))


@pytest.mark.parametrize("differ", ["steps", "init-from on one", "two bases", "num-processes"])
def test_processes_started_with_different_options_all_stop_with_one_line(tiny_corpus, tmp_path, differ):
    """`--steps 4` on one process and 6 on the other once left the first
    waiting forever in a collective the second never reached. So did
    `--init-from` on one process only (a checkpoint's read is a collective),
    and a different base on each trained one that was neither (a
    walkthrough, 2026-12-06)."""
    run_dir = tmp_path / "two"
    if differ == "steps":
        args = [[*CLI_ARGS, "--steps", str(STEPS + 2 * i)] for i in range(2)]  # the later --steps wins
    elif differ == "init-from on one":
        args = [[*CLI_ARGS, "--init-from", str(tmp_path)], CLI_ARGS]  # refused before it is read
    elif differ == "num-processes":  # JAX takes process 0's count: the other trained on, told it was one of 3
        args = [CLI_ARGS, CLI_ARGS]
    else:
        bases = [tmp_path / f"base{seed}" for seed in range(2)]
        for seed, base in enumerate(bases):
            train(new_tiny_run(tiny_corpus, MODEL, steps=1, batch_size=4, seq_len=16, seed=seed), base)
        args = [[*CLI_ARGS, "--init-from", str(base)] for base in bases]
    codes, outputs = _two_processes(tiny_corpus, run_dir, args, (2, 3) if differ == "num-processes" else (2, 2))
    assert codes == [2, 2], outputs
    flag = {"steps": "--steps", "num-processes": "--num-processes"}.get(differ, "--init-from")
    for output in outputs:
        assert (
            f"error: the processes of this run were started with different {flag}: process 1 differs from process 0"
            in output
        ), output
    assert checkpoint.latest_step(run_dir / "checkpoints" / "latest") is None


def test_a_process_refused_alone_ends_at_once_and_the_others_stop(tiny_corpus, tmp_path):
    """A text missing on one host: that process said so, then waited in
    JAX's shutdown barrier while the other waited for it in a collective,
    five silent minutes, and both aborted with C++ stack traces (a
    walkthrough, 2026-12-05). Now it ends at once (2) and the other, its
    partner gone, says so in one line (3)."""
    run_dir = tmp_path / "two"
    codes, outputs = _two_processes([tiny_corpus, tmp_path / "missing.txt"], run_dir, [CLI_ARGS, CLI_ARGS])
    assert codes == [3, 2], outputs
    assert outputs[1].splitlines()[-1].startswith("error: corpus file or folder not found: "), outputs[1]
    assert (
        outputs[0]
        .splitlines()[-1]
        .startswith("error: another process of this multi-process run stopped, so this one cannot go on")
    ), outputs[0]
    assert not any("Check failure" in output or "Traceback" in output for output in outputs), outputs


@pytest.mark.parametrize("cause", ["partner died", "igloo"])
def test_a_save_cut_short_by_a_partner_that_died_says_so(monkeypatch, capsys, tmp_path, cause):
    """A partner killed during a save: the save's error (Gloo's collective
    failed) was reported as a checkpoint this process could not write, with
    status 2, a user's mistake (a walkthrough, 2026-12-06, 2 kills in 3).
    Judged by the error the save met, not by the message, which holds the
    user's paths: a corpus named igloo.txt is no lost partner (a review)."""
    from charlstm.cli import running
    from charlstm.cli.signals import StopFlag
    from charlstm.errors import CheckpointError

    ended = []

    def end_at_once(status: int) -> None:
        ended.append(status)
        raise SystemExit(status)

    def start(watch) -> None:
        if cause == "igloo":
            raise ConfigError(f"corpus file or folder not found: {tmp_path}/igloo.txt")
        try:
            raise ValueError(
                "UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:547] Connection closed by "
                "peer [127.0.0.1]:26496"
            )
        except ValueError as err:  # as CheckpointWriter.save words it
            raise CheckpointError(f"could not write checkpoint {tmp_path}/checkpoints/latest/130: {err}") from None

    monkeypatch.setattr(processes, "joined", lambda: True)
    monkeypatch.setattr(running, "end_at_once", end_at_once)
    with pytest.raises(SystemExit):
        running._watch_training(0, StopFlag(), start)
    lost = cause == "partner died"
    assert ended == [running.EXIT_ABORTED if lost else running.EXIT_USAGE]
    assert capsys.readouterr().err.startswith(
        "error: another process of this multi-process run stopped, so this one cannot go on"
        if lost
        else "error: corpus file or folder not found: "
    )


def test_processes_with_different_device_counts_all_stop_with_one_line(tiny_corpus, tmp_path):
    """`--devices 2` on one process: the first collective failed on both with
    a traceback (cannot reshape array of size 3), and a resume called the
    checkpoint damaged."""
    run_dir = tmp_path / "two"
    codes, outputs = _two_processes(tiny_corpus, run_dir, [CLI_ARGS, [*CLI_ARGS, "--devices", "2"]])
    assert codes == [2, 2], outputs
    for output in outputs:
        assert output.splitlines()[-1] == (
            "error: the processes of this run have different numbers of devices (process 0 has 1, process 1 has "
            "2): give every process the same --devices (or none), on hosts of one kind"
        ), output
    assert not run_dir.exists()


def test_processes_that_do_not_share_the_run_directory_all_stop_with_one_line(tiny_corpus, tmp_path):
    """Different --out directories (or one on storage a host does not see)
    once trained to the first save, and there waited 10 minutes for the
    parts of the checkpoint that went elsewhere, deaf to SIGTERM."""
    run_dir, elsewhere = tmp_path / "two", tmp_path / "elsewhere"
    args = [CLI_ARGS, [*CLI_ARGS, "--out", str(elsewhere)]]  # the later --out wins
    codes, outputs = _two_processes(tiny_corpus, run_dir, args)
    assert codes == [2, 2], outputs
    for output, where in zip(outputs, (run_dir, elsewhere), strict=True):
        assert output.splitlines()[-1] == (
            f"error: process 1 of this run cannot see the run directory process 0 writes ({where} there): every "
            "process writes its part of each checkpoint into it, so give every process the same --out (or none; "
            "resume: the same RUN), on storage every host sees"
        ), output
    assert checkpoint.latest_step(run_dir / "checkpoints" / "latest") is None
    assert not (run_dir / ".charlstm-processes").exists()


def test_a_run_directory_process_0_cannot_write_in_stops_every_process(tmp_path, monkeypatch):
    """Process 0's failure to write the token is gathered before anyone
    waits on it: every process stops with one line (two processes were left
    at a barrier for 5 minutes, then aborted with 134). Two processes faked:
    each gather returns this one's value twice, as process 0 sees it."""
    from jax.experimental import multihost_utils

    monkeypatch.setattr(processes, "joined", lambda: True)
    monkeypatch.setattr(processes.jax, "process_count", lambda: 2)
    monkeypatch.setattr(processes, "from_main", lambda value: value)
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda value: np.array([value, value]))
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("", encoding="utf-8")
    with pytest.raises(CharlstmError, match=rf"^cannot write in the run directory {re.escape(str(not_a_folder))}: "):
        processes.share_directory(not_a_folder)
    processes.share_directory(tmp_path)  # a directory both see: on, with nothing left behind
    assert not list(tmp_path.glob(".charlstm-*"))


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (("localhost", 2, 0), "coordinator 'localhost': give HOST:PORT of process 0"),
        (("127.0.0.1:notaport", 2, 0), "coordinator '127.0.0.1:notaport': give HOST:PORT"),  # JAX: a segfault
        (("10.0.0.1:70000", 2, 0), "(a port from 1 to 65535)"),
        (("10.0.0.1:7777", 0, 0), "num_processes must be >= 1, got 0"),
        (("10.0.0.1:7777", 2, 2), "process_id must be 0 to 1, got 2"),  # JAX: in its own words
        ((None, None, -1), "process_id must be 0 or more, got -1"),
    ],
)
def test_a_process_layout_jax_would_crash_on_is_one_line(layout, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        processes.check_layout(*layout)
    processes.check_layout("[::1]:7777", 2, 1)
    processes.check_layout("auto", None, None)


def test_a_lost_partner_is_told_from_other_errors(monkeypatch):
    lost = jax.errors.JaxRuntimeError("UNKNOWN: Gloo AllGather failed: [pair.cc:547] Connection closed by peer")
    assert not processes.lost_a_process(lost)  # one process: nothing to lose
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert processes.lost_a_process(lost)
    try:  # as a checkpoint that could not be written carries it
        raise CharlstmError("could not write checkpoint run/checkpoints/best/150") from lost
    except CharlstmError as wrapped:
        assert processes.lost_a_process(wrapped)
    assert not processes.lost_a_process(ConfigError("--batch-size 5 does not split evenly over 2 devices"))
    assert not processes._LostProcessLogFilter().filter(
        logging.LogRecord("absl", logging.ERROR, __file__, 1, "_SignalingThread.run() raised: %s", (lost,), None)
    )


def test_a_resumed_run_is_told_only_the_device_counts_its_batch_splits_over():
    with pytest.raises(ConfigError) as err:
        distributed.check_batch(32, 3, available=4, resumed=True)
    assert str(err.value) == (
        "this run's batch_size 32, which a resumed run keeps, does not split evenly over 3 devices; "
        "pick devices 1 or 2 or 4"
    )
