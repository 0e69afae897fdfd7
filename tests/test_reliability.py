"""Never lose a run, never run code from a checkpoint, always a clean error."""

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlstm.errors import CharlstmError, CheckpointError
from charlstm.training import checkpoint, restore_failures

from .helpers import assert_trees_equal, new_tiny_run, perturbed_checkpoint, train
from .test_cli import TINY, _charlstm_command

MARKER = Path("/tmp/charlstm-pickle-payload-ran")


class _Payload:
    """Unpickling this object would create MARKER."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.fixture()
def saved_run(trained_run):
    return trained_run[0]


@pytest.fixture()
def damaged(saved_run, tmp_path):
    """A private copy of a complete run to damage."""
    copy = tmp_path / "run"
    shutil.copytree(saved_run, copy)
    return copy / "checkpoints" / "latest" / "4"


def _state_files(step_dir: Path) -> list[Path]:
    return sorted(p for p in (step_dir / "state").rglob("*") if p.is_file())


@pytest.mark.parametrize("target", ["meta/metadata", "state/_METADATA", "state/manifest.ocdbt", "every state file"])
def test_a_planted_pickle_is_rejected_and_never_runs(damaged, target):
    MARKER.unlink(missing_ok=True)
    payload = pickle.dumps(_Payload())
    files = _state_files(damaged) if target == "every state file" else [damaged / target]
    for path in files:
        path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="cannot read checkpoint|not a charlstm checkpoint"):
        checkpoint.load(damaged)
    assert not MARKER.exists()


def test_an_array_changed_inside_its_file_is_refused_by_its_checksum(damaged):
    """OCDBT keeps no checksums: two bytes flipped inside an array file
    loaded as other numbers, and a resumed run went on from them without a
    word (a walkthrough, 2026-12-05). The metadata's checksums catch it."""
    meta_file = damaged / "meta" / "metadata"
    saved = meta_file.read_text()
    meta = json.loads(saved)
    assert "params/embed/embedding" in meta["checksums"]
    # As a changed byte reads back: the same array, other bytes than were saved.
    meta["checksums"]["params/embed/embedding"] = "00000000"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"is damaged: its array params/embed/embedding read back other"):
        checkpoint.load(damaged)
    # Bytes flipped in the middle of each array file: refused, whichever of
    # the format's decoding and the checksums finds it.
    meta_file.write_text(saved)
    assert int(checkpoint.load(damaged).state.step) == 4
    for path in _state_files(damaged):
        if path.parent.name == "d":  # the arrays' data
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x7F
            data[len(data) // 2 + 1] ^= 0x7F
            path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        checkpoint.load(damaged)


def test_arrays_that_decode_but_are_not_the_saved_ones_are_refused(damaged, tmp_path, tiny_corpus):
    """The checksums are of the arrays' bytes: another checkpoint's arrays of
    the same shapes, under this one's metadata, decode cleanly (the format
    finds nothing wrong) and are refused by the checksums alone."""
    other = perturbed_checkpoint(tiny_corpus, tmp_path / "other")
    other_step = other / "checkpoints" / "best" / "0"
    shutil.rmtree(damaged / "state")
    shutil.copytree(other_step / "state", damaged / "state")
    with pytest.raises(CheckpointError, match=r"is damaged: its array .* and \d+ more read back other"):
        checkpoint.load(damaged)


def test_a_checkpoint_without_checksums_still_loads(damaged):
    """Checkpoints saved before checksums (or by a run of several processes) have none."""
    meta_file = damaged / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["checksums"]
    meta_file.write_text(json.dumps(meta))
    assert int(checkpoint.load(damaged).state.step) == 4


@pytest.mark.parametrize("how", ["truncate", "zero", "delete"])
def test_truncated_or_corrupted_files_give_a_clean_error(damaged, how):
    for path in [damaged / "meta" / "metadata", *_state_files(damaged)]:
        if how == "truncate":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif how == "zero":
            path.write_bytes(b"\0" * len(path.read_bytes()))
        else:
            path.unlink()
    with pytest.raises(CheckpointError):
        checkpoint.load(damaged)


@pytest.mark.parametrize("how", ["delete", "truncate"])
def test_damaged_arrays_behind_good_metadata_give_a_clean_error(damaged, how):
    """Orbax and TensorStore raise bare Exceptions when the data files are bad."""
    data = [p for p in _state_files(damaged) if p.parent.name == "d"]
    assert data
    for path in data:
        if how == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*: its arrays are missing or damaged"):
        checkpoint.load(damaged)


def test_a_damaged_checkpoint_names_the_runs_intact_ones_and_the_way_on(damaged):
    """A run's newest checkpoint damaged, its others whole: the error names
    them and how to go on; moved aside, the run reads the others (it was a
    dead end without an undocumented rm; a walkthrough, 2026-12-04)."""
    for f in _state_files(damaged):
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    run_dir = damaged.parent.parent.parent
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load(run_dir, prefer=checkpoint.LATEST)
    assert str(refused.value).endswith(
        f"; the run's other checkpoints (best/4) were read whole just now: move this one "
        f"aside (mv {damaged} {damaged}.damaged) and every command goes on from best/4"
    )
    damaged.rename(f"{damaged}.damaged")
    assert int(checkpoint.load(run_dir, prefer=checkpoint.LATEST).state.step) == 4  # from best/4


def test_a_run_whose_checkpoints_are_all_damaged_is_not_sent_from_one_to_the_other(damaged):
    """Both checkpoints damaged: each error advised moving it aside and going
    on from the other, which failed the same way (a walkthrough, 2026-12-06);
    the others are read before they are offered."""
    run_dir = damaged.parent.parent.parent
    for f in (p for p in (run_dir / "checkpoints").rglob("*") if p.is_file() and "state" in p.parts):
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load(run_dir, prefer=checkpoint.LATEST)
    assert str(refused.value).endswith(
        "; the run's other checkpoints (best/4) cannot be read either: the run cannot go on from any of them"
    )


def test_info_on_a_run_whose_best_metadata_is_damaged_says_the_way_on(damaged):
    """`charlstm info` read only the error, where eval and export said how
    to go on (a walkthrough, 2026-12-05)."""
    import charlstm

    best = damaged.parent.parent / "best" / "4"
    (best / "meta" / "metadata").write_bytes(b'{"step": 4, "mo')
    with pytest.raises(CheckpointError) as refused:
        charlstm.describe(damaged.parent.parent.parent)
    assert str(refused.value).endswith(f"(mv {best} {best}.damaged) and every command goes on from latest/4")


def test_a_run_whose_checkpoints_lost_their_metadata_is_not_said_never_to_have_saved(damaged, tiny_corpus):
    """Every meta/ folder gone: the run had saved, so it is not told to start
    afresh, and a new run is not let in over what is left (a walkthrough,
    2026-12-05: the advice would have thrown the trained state away)."""
    import charlstm

    run_dir = damaged.parent.parent.parent
    for step_dir in (run_dir / "checkpoints").glob("*/*"):
        shutil.rmtree(step_dir / "meta")
    with pytest.raises(CheckpointError, match=r"its checkpoints \(latest/4, best/4\) have lost their meta/ folders"):
        charlstm.describe(run_dir)
    with pytest.raises(charlstm.ConfigError, match="already exists and is not empty"):
        charlstm.train(tiny_corpus, run_dir, steps=2)


def test_a_damaged_latest_checkpoint_says_which_one_each_command_goes_on_from(tmp_path):
    """latest/300 damaged beside latest/200 and best/300: resume goes on from
    latest/200, sample and eval from best/300 (the message had said "from
    them", and resume's step back surprised a walkthrough, 2026-12-05)."""
    from charlstm.training.checkpoint_paths import others_intact

    root = tmp_path / "run" / "checkpoints"
    for kind, step in (("latest", 200), ("latest", 300), ("best", 300)):
        (root / kind / str(step) / "meta").mkdir(parents=True)
    damaged = root / "latest" / "300"
    assert others_intact(damaged).endswith(
        f"(latest/200, best/300) were saved whole (their arrays are not read here): move this one aside (mv "
        f"{damaged} {damaged}.damaged) and resume goes on from latest/200, sample and eval from best/300"
    )
    # Where the others are tried, only those read are offered, and every one that is not goes aside too: the
    # commands take the newest complete step, so resume would have read latest/200 (a review, 2026-12-06).
    unread = root / "latest" / "200"
    assert others_intact(damaged, lambda other: other != unread, whole=True).endswith(
        f"(best/300) were read whole just now (latest/200 cannot be read either): move these aside (mv "
        f"{damaged} {damaged}.damaged; mv {unread} {unread}.damaged) and every command goes on from best/300"
    )


def test_a_link_to_nothing_in_a_checkpoint_is_damage_not_a_permission(tmp_path):
    """os.access is False for a link whose target is gone, as for a file this
    user may not read: that checkpoint is damaged, and was said to be locked (a review, 2026-12-06)."""
    from charlstm.training import restore_failures

    (tmp_path / "state" / "d").mkdir(parents=True)
    (tmp_path / "state" / "d" / "data").symlink_to(tmp_path / "gone")
    assert restore_failures.unreadable(tmp_path) is None


def test_the_other_reads_of_a_damaged_checkpoint_stay_quiet(damaged, capsys, caplog):
    """Once one array fails, Orbax's other reads fail later on TensorStore's
    threads, through the unraisable-exception hook and asyncio's logger: one
    CheckpointError already says it, so those echoes are dropped, and only
    those: the same message raised anywhere else still gets through."""
    for path in (p for p in _state_files(damaged) if p.parent.name == "d"):
        path.write_bytes(path.read_bytes()[:3])
    before = sys.unraisablehook
    seen = []
    try:
        # What the hook falls back on for anything else: here, a list.
        sys.unraisablehook = lambda u: seen.append(u.exc_value)
        with pytest.raises(CheckpointError, match="its arrays are missing or damaged"):
            checkpoint.load(damaged)  # installs the filter over the list
        capsys.readouterr()

        def unraisable(exc):
            sys.unraisablehook(
                types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__, object=None)
            )

        loop = asyncio.new_event_loop()
        loop.close()
        try:
            loop.call_soon_threadsafe(print)
        except RuntimeError as err:  # a callback handed to the closed loop, as TensorStore's threads do
            unraisable(err)
        unraisable(Exception("Encountered error while reading array index: (slice(0, 3, 1),)."))
        try:
            raise RuntimeError("Event loop is closed")  # the same words, raised by someone else
        except RuntimeError as err:
            elsewhere = err
        other = ValueError("something else")
        unraisable(elsewhere)
        unraisable(other)
        seen = [e for e in seen if e in (elsewhere, other) or "reading array index" in str(e) or "closed" in str(e)]
        assert seen == [elsewhere, other]

        caplog.set_level(logging.ERROR, logger="asyncio")
        echo = Exception("Encountered error while reading array index: ().")
        logging.getLogger("asyncio").error("exception was never retrieved", exc_info=(Exception, echo, None))
        logging.getLogger("asyncio").error("a task went wrong", exc_info=(ValueError, ValueError("mine"), None))
        # A late read whose error TensorStore raised, with no Python frames: asyncio's message names the coroutine.
        late = ValueError('OUT_OF_RANGE: Error opening "zarr" driver')
        task = "coro=<async_deserialize() done, defined at /x/orbax/checkpoint/_src/serialization/serialization.py:394>"
        logging.getLogger("asyncio").error(
            f"Task exception was never retrieved\nfuture: <Task {task}>", exc_info=(ValueError, late, None)
        )
        # A bare future of TensorStore's: no coroutine to name, only the error's spec (a CI run, 2026-12-04).
        bare = ValueError('OUT_OF_RANGE: Error opening "cast" driver [tensorstore_spec=\'{"driver":"cast"}\']')
        logging.getLogger("asyncio").error(
            f"Future exception was never retrieved\nfuture: <Future finished exception={bare!r}>",
            exc_info=(ValueError, bare, None),
        )
        # A read of a truncated data file: TensorStore's status, nothing else to know it by (a walkthrough, 2026-12-05).
        truncated = ValueError('OUT_OF_RANGE: Error reading "params.lstm_0.w_h/1.0" in OCDBT database at local file')
        logging.getLogger("asyncio").error(
            f"Future exception was never retrieved\nfuture: <Future finished exception={truncated!r}>",
            exc_info=(ValueError, truncated, None),
        )
        assert [r.getMessage() for r in caplog.records] == ["a task went wrong"]
        # An error that did not come from Orbax's reads, though the words match; and one whose start looks like
        # TensorStore's status.
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=(ValueError, other, None))
        mine = ValueError("NOT_FOUND: user record 42 missing")
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=(ValueError, mine, None))
        assert [r.getMessage() for r in caplog.records] == [
            "a task went wrong",
            *["Task exception was never retrieved"] * 2,
        ]
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("default")
            restore_failures.failure_line(damaged, Exception("x"))  # as the failed load did, over these filters
            orbax = ("_read_array_index_and_device_put", "ArrayHandler.deserialize", "Store._get_array_metadatas")
            for name in (*orbax, "wait_until_ready", "mine"):
                warnings.warn(f"coroutine '{name}' was never awaited", RuntimeWarning, stacklevel=1)
        assert [str(w.message) for w in warned] == [
            "coroutine 'wait_until_ready' was never awaited",
            "coroutine 'mine' was never awaited",
        ]
    finally:
        # The failed load's last reads report while the filter is still on
        # (not checked: only so that they do not reach pytest's own hook).
        gc.collect()
        time.sleep(1.0)
        sys.unraisablehook = before
        logging.getLogger("asyncio").removeFilter(restore_failures._NO_ECHOES)


def test_sampling_from_a_damaged_checkpoint_prints_one_line(damaged):
    for path in (p for p in _state_files(damaged) if p.parent.name == "d"):
        path.write_bytes(path.read_bytes()[:3])
    done = subprocess.run(
        [*_charlstm_command(), "sample", "-c", str(damaged), "-n", "5"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot read checkpoint"), done.stderr


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(meta, prefix=()):
    yield prefix
    if isinstance(meta, dict):
        for key, value in meta.items():
            yield from _paths(value, (*prefix, key))


# 100 examples a run (each a checkpoint load, ~40 ms): every CI run draws new ones.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_metadata_gets_only_clean_errors(saved_run, tmp_path_factory, data):
    step_dir = tmp_path_factory.mktemp("fuzz") / "4"
    shutil.copytree(saved_run / "checkpoints" / "latest" / "4", step_dir)
    meta_file = step_dir / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    path = data.draw(st.sampled_from(list(_paths(meta))[1:]))
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON)
    meta_file.write_text(json.dumps(meta))
    try:
        loaded = checkpoint.load(step_dir)
    except CheckpointError:
        return  # the only acceptable failure: anything else fails the test
    # What loads must be usable: no NaN losses, no malformed history.
    assert loaded.best_val_loss is None or math.isfinite(loaded.best_val_loss)
    assert math.isfinite(loaded.train_seconds)
    assert all(isinstance(entry, dict) for entry in loaded.history)


def test_an_absurd_model_size_in_metadata_is_refused_at_once(saved_run, tmp_path):
    step_dir = tmp_path / "4"
    shutil.copytree(saved_run / "checkpoints" / "latest" / "4", step_dir)
    meta_file = step_dir / "meta" / "metadata"
    saved = json.loads(meta_file.read_text())
    for field in ("num_layers", "hidden_size"):  # hypothesis found the first: building its shape took hours
        meta_file.write_text(json.dumps({**saved, "model": {**saved["model"], field: 1_400_000_000}}))
        with pytest.raises(CheckpointError, match="implausibly large"):
            checkpoint.load(step_dir)


def test_a_checkpoint_past_what_a_new_run_may_ask_for_still_loads(saved_run, tmp_path):
    """The bounds on what a new run may ask for do not refuse a checkpoint
    that holds more: a time limit's plan may fit billions of steps on a fast
    GPU (--fill-time), and runs trained before a bound came keep their shape."""
    step_dir = tmp_path / "4"
    shutil.copytree(saved_run / "checkpoints" / "latest" / "4", step_dir)
    meta_file = step_dir / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["train"]["steps"] = 85_560_941_004
    meta_file.write_text(json.dumps(meta))
    assert checkpoint.load(step_dir).train_config.steps == 85_560_941_004


def test_same_seed_gives_the_same_parameters_and_samples(tiny_corpus, tmp_path):
    from charlstm.config import SampleConfig
    from charlstm.core.generation import sample_text

    a, b = new_tiny_run(tiny_corpus, steps=6), new_tiny_run(tiny_corpus, steps=6)
    train(a, tmp_path / "a")
    train(b, tmp_path / "b")
    assert_trees_equal(a.state.params, b.state.params)
    request = SampleConfig(200, temperature=0.9, seed=3)
    assert sample_text(a.model_config, a.state.params, a.vocab, request) == sample_text(
        b.model_config, b.state.params, b.vocab, request
    )
    c = new_tiny_run(tiny_corpus, steps=6, seed=1)
    train(c, tmp_path / "c")
    assert sample_text(c.model_config, c.state.params, c.vocab, request) != sample_text(
        a.model_config, a.state.params, a.vocab, request
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_run(tiny_corpus, tmp_path):
    """Kill training (then each resume) with SIGKILL: every other time the
    moment a checkpoint's temporary directory appears (in the middle of a
    save), otherwise at a random moment; with a checkpoint written every step
    most of those land in or near a save too. After every kill the newest
    checkpoints load, no half-written one is ever picked, and `charlstm
    resume` starts exactly from the latest."""
    rng = random.Random(20261124)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [*_charlstm_command(), "train", str(tiny_corpus), "--out", str(run_dir), "--steps", "100000"]
    command += [*TINY, "--checkpoint-every", "1", "--eval-every", "3"]
    latest_step = None
    tmp_dirs_seen = 0
    kills = 4
    for kill in range(kills):
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert process.stderr is not None
        started = None
        for line in process.stderr:
            found = re.search(r"(?:starting|resuming) at step (\d+)", line)
            if found:
                started = int(found.group(1))
            if "saved checkpoint" in line:
                break
        if kill % 2 == 0:
            deadline = time.monotonic() + 10
            while not _saving(run_dir) and time.monotonic() < deadline:
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.wait(timeout=60)
        process.stderr.close()

        if latest_step is not None:
            assert started == latest_step  # the resume began at the newest checkpoint
        tmp_dirs_seen += _saving(run_dir)
        for kind in (checkpoint.LATEST, checkpoint.BEST):
            directory, step = checkpoint.locate(run_dir, prefer=kind)
            assert directory.name in {kind, checkpoint.LATEST} and (directory / str(step)).is_dir()
            assert int(checkpoint.load(directory / str(step)).state.step) == step
        latest_step = checkpoint.locate(run_dir, prefer=checkpoint.LATEST)[1]
        command = [*_charlstm_command(), "resume", str(run_dir)]

    assert latest_step is not None and latest_step > 0
    # The run goes on to a finish after all that.
    done = subprocess.run(
        [*command, "--steps", str(latest_step + 3)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {latest_step}" in done.stderr and f"done at step {latest_step + 3}" in done.stderr
    assert tmp_dirs_seen >= 1  # some kills really did land in the middle of a save
    # Half-written leftovers are cleared when a run is opened for writing again.
    assert not _saving(run_dir)
    print(f"kills after which a half-written checkpoint was on disk: {tmp_dirs_seen} of {kills}")


def test_a_closed_output_pipe_never_loses_the_run(tiny_corpus, tmp_path):
    """`charlstm train ... | head -1`, or `| tee log` whose tee died with a
    Ctrl-C: the output's reader goes away. The run trains on unseen, saves
    at the end (or, signalled, at once) and exits as it would have: Rich
    alone would exit with 1, the status of a diverged run, before the
    first checkpoint. The run to its end saves every 4 steps (three saves,
    each said to the gone reader); the interrupted one every step, so that
    its first checkpoint, the moment it is signalled, comes soon."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for steps, interrupt in ((12, False), (100000, True)):
        run_dir = tmp_path / f"run-{steps}"
        command = [*_charlstm_command(), "train", str(tiny_corpus), "--out", str(run_dir), "--steps", str(steps)]
        every = "1" if interrupt else "4"
        process = subprocess.Popen(
            [*command, *TINY, "--eval-every", "4", "--checkpoint-every", every],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"run directory:")
        process.stdout.close()  # the reader is gone: every later line is a broken pipe
        if interrupt:
            deadline = time.monotonic() + 120
            while not any((run_dir / "checkpoints" / checkpoint.LATEST).glob("[0-9]*")):
                assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=300) == (130 if interrupt else 0)
        _, step = checkpoint.locate(run_dir, prefer=checkpoint.LATEST)
        assert step == steps if not interrupt else step > 0


def _saving(run_dir: Path) -> bool:
    """Whether a checkpoint is being written (Orbax's temporary directory is there)."""
    try:
        return any(".orbax-checkpoint-tmp" in p.name for p in (run_dir / "checkpoints").rglob("*"))
    except FileNotFoundError:  # a directory renamed into place while we looked
        return True


@contextlib.contextmanager
def _tmpfs(mount_point: Path, options: str):
    """A small tmpfs, where this machine lets the tests mount one (as root)."""
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_inspect_refuses_a_read_only_place_before_it_reads_the_model(trained_run, tmp_path, monkeypatch):
    """`charlstm inspect RUN` in a read-only folder (its page goes to the
    current one) loaded the model and ran it over the text, then failed to
    write the page; it says so first, naming the folder and --out."""
    from typer.testing import CliRunner

    from charlstm.api import model as api_model
    from charlstm.cli import app

    with _tmpfs(tmp_path / "ro", "size=1m,ro") as read_only:
        monkeypatch.setattr(api_model.Model, "inspect_held_out", lambda *a: pytest.fail("ran the model first"))
        with monkeypatch.context() as here:  # left before the tmpfs is unmounted
            here.chdir(read_only)
            result = CliRunner().invoke(app, ["inspect", str(trained_run[0])])
        assert result.exit_code == 2, result.output
        expected = (
            f"error: cannot write --out inspect.html: {read_only} is read-only here; give another place with --out\n"
        )
        assert result.stderr == expected
        page = tmp_path / "page.html"
        png = read_only / "new" / "gates.png"
        result = CliRunner().invoke(
            app, ["inspect", str(trained_run[0]), "-o", str(page), "--saturation-png", str(png)]
        )
        assert (
            result.exit_code == 2 and f"cannot write --saturation-png {png}: {read_only} is read-only" in result.stderr
        )


def test_a_place_to_write_is_judged_by_the_file_where_it_exists_and_never_fails_to_look(tmp_path, monkeypatch):
    """`writable_place` (a review, 2026-12-05): an existing file is written
    into as it is, whatever its folder allows, and a path that cannot even be
    looked at (a name too long) is left for the write to report, not a traceback."""
    from charlstm.arguments import writable_place
    from charlstm.errors import ConfigError

    existing = tmp_path / "page.html"
    existing.write_text("")
    asked = []
    monkeypatch.setattr(os, "access", lambda p, mode: asked.append(Path(p)) or Path(p) == existing)
    writable_place(existing, "--out")  # its folder "read-only", the file not
    assert asked == [existing]
    with pytest.raises(ConfigError, match=f"cannot write --out {tmp_path / 'new' / 'p.html'}: {tmp_path} is read-only"):
        writable_place(tmp_path / "new" / "p.html", "--out")
    writable_place(tmp_path / ("x" * 300) / "p.html", "--out")  # ENAMETOOLONG: nothing said yet


@pytest.fixture()
def tiny_filesystem(tmp_path):
    with _tmpfs(tmp_path / "tinyfs", "size=2m") as mount_point:
        yield mount_point


def test_an_unwritable_output_directory_is_one_clear_line(tiny_corpus, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    with _tmpfs(tmp_path / "readonly", "size=1m,ro") as mount_point:
        result = CliRunner().invoke(app, ["train", str(tiny_corpus), "--out", str(mount_point / "run"), *TINY])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: cannot create run directory {mount_point / 'run'}: Read-only file system; give another place "
        "with --out\n"
    )


def test_a_read_only_compilation_cache_is_read_without_a_warning_for_each_program(tiny_corpus, tmp_path):
    """A read-only cache (a read-only home, a shared one) only costs speed:
    JAX's two lines of warning for every program it could not add ran
    between the run's own lines (found by a walkthrough, 2026-12-05)."""
    with _tmpfs(tmp_path / "cache", "size=1m,ro") as mount_point:
        env = {**os.environ, "CHARLSTM_CACHE_DIR": str(mount_point)}
        command = [sys.executable, "-m", "charlstm", "train", str(tiny_corpus), "--out", str(tmp_path / "run")]
        done = subprocess.run([*command, "--steps", "4", *TINY], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "cache entry" not in done.stderr, done.stderr


def test_a_log_that_cannot_be_written_stops_the_run_in_one_line(tmp_path):
    """metrics.jsonl or samples.txt refusing a write (a full disk) ended a
    run with a raw traceback and status 1, the status of a divergence (a
    review, 2026-12-05); it is one line, as a failed save is."""
    from charlstm.errors import CharlstmError
    from charlstm.training import events, runlog

    log = runlog.RunLog(tmp_path / "run")
    (tmp_path / "run" / runlog.METRICS_FILE).mkdir()  # refuses every write, as a full disk would
    (tmp_path / "run" / runlog.SAMPLES_FILE).mkdir()
    log.handle(events.Progress(10, 20, 2.0, 1.0, 1e-3, 1000.0, 1.0))
    with pytest.raises(CharlstmError, match=r"cannot write .*metrics\.jsonl: Is a directory; earlier checkpoints"):
        log.handle(events.Evaluated(10, 1.9, True))
    with pytest.raises(CharlstmError, match=r"cannot write .*samples\.txt: Is a directory; earlier checkpoints"):
        log.handle(events.Sampled(10, "text"))


def _os_where_replace_is(replace):
    """The os module as one module sees it (monkeypatched there alone), its `replace` swapped."""
    return types.SimpleNamespace(**{**vars(os), "replace": replace})


def test_a_resume_whose_logs_cannot_be_rewritten_stops_in_one_line_and_keeps_them(tmp_path, monkeypatch):
    """A resume drops what its logs hold after its checkpoint by writing them
    again; a full disk there was a raw traceback and status 1 (a review,
    2026-12-05). It is one line, and the logs are as they were."""
    import errno

    from charlstm.errors import CharlstmError
    from charlstm.training import events, runlog

    run = tmp_path / "run"
    metrics = '{"step": 10, "loss": 2.0}\n{"step": 20, "loss": 1.5}\n'
    samples = "===== step 10 =====\nabc\n===== step 20 =====\ndef\n"
    run.mkdir()
    (run / runlog.METRICS_FILE).write_text(metrics)
    (run / runlog.SAMPLES_FILE).write_text(samples)

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from charlstm.text import saving  # where the logs are replaced whole (save_whole)

    monkeypatch.setattr(saving, "os", _os_where_replace_is(full))  # this module's alone
    started = events.Started(10, 40, "cpu", ["cpu:0"], 1000, 100, 10)
    with pytest.raises(CharlstmError, match=r"cannot write .*: No space left on device; earlier checkpoints"):
        runlog.RunLog(run).handle(started)
    assert (run / runlog.METRICS_FILE).read_text() == metrics and (run / runlog.SAMPLES_FILE).read_text() == samples
    assert sorted(p.name for p in run.iterdir()) == sorted([runlog.METRICS_FILE, runlog.SAMPLES_FILE])  # no .tmp
    monkeypatch.undo()
    runlog.RunLog(run).handle(started)
    assert (run / runlog.METRICS_FILE).read_text() == metrics.splitlines(keepends=True)[0]
    assert (run / runlog.SAMPLES_FILE).read_text() == "===== step 10 =====\nabc\n"


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tiny_corpus, tiny_filesystem, capfd):
    from typer.testing import CliRunner

    from charlstm.cli import app

    runner = CliRunner()
    run_dir = tiny_filesystem / "run"
    first = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(run_dir), "--steps", "4", *TINY])
    assert first.exit_code == 0, first.output
    filler = tiny_filesystem / "filler"
    # Room for half a checkpoint: some of the save's writes land, the others
    # fail while they are in flight, as on a disk that fills up during it.
    saved = sum(f.stat().st_size for f in (run_dir / "checkpoints" / "latest" / "4").rglob("*") if f.is_file())
    room = os.statvfs(tiny_filesystem)
    with filler.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * max(0, room.f_bavail * room.f_frsize - saved // 2))
    capfd.readouterr()
    result = runner.invoke(app, ["resume", str(run_dir), "--steps", "8"])
    assert result.exit_code == 2
    assert "No space left on device" in result.stderr and "; earlier checkpoints are intact" in result.stderr
    # Nor around it, from Orbax's threads (the real stderr, which CliRunner does not see): 400 lines before.
    echoes = capfd.readouterr().err
    assert "Traceback" not in result.output + echoes and "raised an exception" not in echoes, echoes[:2000]
    filler.unlink()
    assert int(checkpoint.load(run_dir, prefer=checkpoint.LATEST).state.step) == 4
    assert int(checkpoint.load(run_dir, prefer=checkpoint.BEST).state.step) == 4
    assert runner.invoke(app, ["resume", str(run_dir), "--steps", "8"]).exit_code == 0


def test_a_run_folder_moved_while_it_trains_is_said_to_have_its_checkpoints_elsewhere(tiny_corpus, tmp_path):
    """The next save fails; it told the user to start the run again from
    step 0, whose checkpoints had gone with the folder (a walkthrough, 2026-12-05)."""
    from charlstm.training import events, session

    run_dir, moved = tmp_path / "run", tmp_path / "moved"
    run = new_tiny_run(tiny_corpus, steps=8, checkpoint_every=2, eval_every=100)

    def on_event(event):
        if isinstance(event, events.Saved) and event.step == 2 and not moved.exists():
            run_dir.rename(moved)

    # Its log is written first (before each save), and says so.
    with pytest.raises(CharlstmError) as failed:
        session.train(run, run_dir, on_event)
    assert f"{run_dir} is gone (was it moved or deleted while the run trained?); its checkpoints went" in str(
        failed.value
    )
    assert int(checkpoint.load(moved, prefer=checkpoint.LATEST).state.step) == 2
    # Moved before its first checkpoint: nothing went with it to go on from.
    early = new_tiny_run(tiny_corpus, steps=8, checkpoint_every=100, eval_every=100, log_every=1)

    def at_first_report(event):
        if isinstance(event, events.Progress) and (tmp_path / "early").exists():
            (tmp_path / "early").rename(tmp_path / "early-moved")

    with pytest.raises(CharlstmError, match="before its first checkpoint: start the run again"):
        session.train(early, tmp_path / "early", at_first_report)
    # Where the log can still be written and the save fails (its checkpoints
    # moved away, and a file in their place), the save says it.
    shutil.rmtree(moved)
    moved.mkdir()
    run = new_tiny_run(tiny_corpus, steps=8, checkpoint_every=2, eval_every=100)

    def on_save(event):
        if isinstance(event, events.Saved) and event.step == 2 and not (moved / "checkpoints").exists():
            (run_dir / "checkpoints").rename(moved / "checkpoints")
            (run_dir / "checkpoints").write_text("not a folder")

    with pytest.raises(CheckpointError) as failed:
        session.train(run, run_dir, on_save)
    assert f"{run_dir} no longer holds the run's checkpoints (was it moved or deleted" in str(failed.value)
    assert "starts afresh" not in str(failed.value)


def test_signal_handler_stops_then_warns_then_aborts(capfd):
    import signal

    from charlstm.cli.signals import StopFlag

    stop = StopFlag()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop() and stop.signal == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        assert "stopping after the checkpoint is saved" in capfd.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs at the next bytecode boundary
    # Under -q (or in a process of several that does not report) the same, in silence.
    quiet = StopFlag(quiet=True)
    with quiet.installed():
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
        assert quiet() and quiet.count == 2
    assert capfd.readouterr().err == ""


def test_three_quick_signals_during_a_step_abort(capfd):
    """Python runs a handler once for the signals that came while the main
    thread was in compiled code (a training step); three quick Ctrl-Cs
    there are still three, and abort as the third one does."""
    import hashlib
    import signal
    import threading

    from charlstm.cli.signals import StopFlag

    main, data = threading.main_thread().ident, b"x" * 100_000_000  # a hash of it: the main thread in C, no handler
    assert main is not None

    def in_c_while_pressed(times: int) -> None:
        """Hash in C (the GIL released) while another thread sends `times`
        SIGINTs to the main thread, 20 ms apart as quick hands are (two at
        once would be one: the kernel keeps one pending signal of a kind)."""
        done = threading.Event()

        def press() -> None:
            for _ in range(times):
                time.sleep(0.02)
                signal.pthread_kill(main, signal.SIGINT)
            done.set()

        presser = threading.Thread(target=press)
        presser.start()
        while not done.is_set():
            hashlib.sha256(data).digest()
        presser.join()
        time.sleep(0.1)  # the handler runs at the next bytecode boundary, if it has not yet

    stop = StopFlag()
    with stop.installed(), pytest.raises(KeyboardInterrupt):
        in_c_while_pressed(3)
    assert stop.count == 3 and stop.signal == signal.SIGINT
    # Two quick ones: stopping, and said twice over, as two slow ones are.
    again = StopFlag()
    with again.installed():
        in_c_while_pressed(2)
    err = capfd.readouterr().err
    assert again() and again.count == 2
    assert err.endswith("stopping...\nstopping after the checkpoint is saved; signal once more to abort without it\n")


def test_the_stop_flag_off_the_main_thread_fails_as_python_does_and_leaks_nothing():
    import threading

    from charlstm.cli.signals import StopFlag

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    got: list[BaseException] = []

    def install() -> None:
        try:
            with StopFlag().installed():
                pass
        except ValueError as err:  # signal handlers belong to the main thread
            got.append(err)

    before = open_fds()
    worker = threading.Thread(target=install)
    worker.start()
    worker.join()
    assert len(got) == 1 and open_fds() == before


def test_pages_images_weights_and_samples_are_written_whole_or_not_at_all(trained_run, tmp_path, monkeypatch):
    """A full disk while an export, a plot or `sample -o` replaced an earlier
    file left it cut short (an exported page without its end, an empty
    image); now the earlier file stays, nothing is left beside it, and the
    weights and their description are replaced both or neither. A folder on
    the way that is a file is named as such, not as "File exists"."""
    import errno

    from typer.testing import CliRunner

    import charlstm
    from charlstm.cli import app
    from charlstm.text import saving

    model = charlstm.load(trained_run[0])
    out = tmp_path / "out"
    out.mkdir()
    earlier = {name: f"earlier {name}\n" for name in ("p.html", "i.html", "s.txt", "l.png")}
    for name, text in earlier.items():
        (out / name).write_text(text)
    model.export_weights(out / "w")
    weights = {p.name: p.read_bytes() for p in (out / "w").iterdir()}

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(saving, "os", _os_where_replace_is(full))
    runner = CliRunner()
    for args in (
        ["export", str(trained_run[0]), "--html", str(out / "p.html")],
        ["export", str(trained_run[0]), "--weights", str(out / "w")],
        ["inspect", str(trained_run[0]), "--text", "the king", "-o", str(out / "i.html")],
        ["sample", str(trained_run[0]), "-n", "20", "-o", str(out / "s.txt")],
        ["plot", str(trained_run[0]), "-o", str(out / "l.png")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "No space left on device" in result.output, (args, result.output)
    assert {name: (out / name).read_text() for name in earlier} == earlier
    assert {p.name: p.read_bytes() for p in (out / "w").iterdir()} == weights  # no .tmp left beside either
    assert sorted(p.name for p in out.iterdir()) == sorted([*earlier, "w"])
    monkeypatch.undo()

    (tmp_path / "a.txt").write_text("a file\n")
    for args in (
        ["export", str(trained_run[0]), "--html", str(tmp_path / "a.txt" / "p.html")],
        ["sample", str(trained_run[0]), "-n", "20", "-o", str(tmp_path / "a.txt" / "s.txt")],
        ["plot", str(trained_run[0]), "-o", str(tmp_path / "a.txt" / "sub" / "l.png")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and f"{tmp_path / 'a.txt'} is a file, not a folder" in result.output, (
            args,
            result.output,
        )


def test_a_file_written_whole_keeps_its_permissions_and_a_link_stays_a_link(tmp_path):
    """Written in place, `sample -o` kept a private file private and wrote
    through a link; through a temporary file it does the same."""
    import stat

    from charlstm.text.saving import write_whole

    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_whole(link, "new")
    assert link.is_symlink() and real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]
    # sample -o through a link writes through it; a link to a device (/dev/stdout is one) is never replaced.
    from charlstm.api.runs import write_text

    write_text(link, "newer")
    assert link.is_symlink() and real.read_text() == "newer"
    fd_link = tmp_path / "fd"
    fd_link.symlink_to("/dev/null")
    write_text(fd_link, "gone")
    assert fd_link.is_symlink() and os.readlink(fd_link) == "/dev/null"


def test_a_better_best_after_resuming_with_another_rate_replaces_the_old_one(tiny_corpus, tmp_path):
    from charlstm.training import events, session

    run = new_tiny_run(tiny_corpus, steps=8, eval_every=2, checkpoint_every=4)
    train(run, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "latest" / "8")  # a kill after best/8, before latest/8
    resumed = session.resumed_run(tmp_path / "run", {"learning_rate": 3e-2})
    evts = train(resumed, tmp_path / "run")
    final = [e for e in evts if isinstance(e, events.Evaluated) and e.step == 8]
    assert final and final[0].best  # the higher rate did better here, so best/8 must be rewritten
    best = checkpoint.load(tmp_path / "run", prefer=checkpoint.BEST)
    assert best.path.name == "8"
    assert best.best_val_loss == pytest.approx(resumed.best_val_loss)
    assert_trees_equal(best.state.params, resumed.state.params)


def test_a_run_trained_by_one_process_is_refused_to_another(trained_run, tmp_path, monkeypatch):
    """Two processes resuming one run would mix its log and checkpoints: while
    one trains it (holds RUN/.lock), a second is refused in one line naming
    the first, before it reads anything; once the first is gone, it resumes.
    The holder is a process of its own; the commands run in this one (the
    second process), as CliRunner runs them: a flock held by another process
    refuses it as it refuses a `charlstm` started from a shell, without four
    more processes that each import JAX."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    # A new run in another terminal, before its first save: its record, and checkpoint folders with nothing in them.
    fresh = tmp_path / "runs" / "fresh"
    (fresh / "checkpoints" / "latest").mkdir(parents=True)
    (fresh / "checkpoints" / "best").mkdir()
    shutil.copy(run_dir / "corpus.json", fresh)
    runner = CliRunner()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import contextlib, sys, time; from pathlib import Path; from charlstm.training import run_lock\n"
            "with contextlib.ExitStack() as held:\n"
            "    for run in sys.argv[1:]:\n        held.enter_context(run_lock.held(Path(run)))\n"
            "    print('held', flush=True); time.sleep(60)",
            str(run_dir),
            str(fresh),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = runner.invoke(app, ["resume", str(run_dir), "--steps", "6"])
        assert done.exit_code == 2
        assert done.stderr.strip() == (
            f"error: {run_dir} is being trained by another process (pid {holder.pid}); "
            f"wait for it to end or stop it, then 'charlstm resume {run_dir}'"
        ), done.stderr
        # Nor does `train --out` there suggest a resume that would be refused; `info` says it trains.
        done = runner.invoke(app, ["train", str(trained_run[1]), "--out", str(run_dir)])
        assert done.exit_code == 2
        assert done.stderr.strip() == (
            f"error: run directory {run_dir} is being trained by another process now; pick another folder for --out"
        ), done.stderr
        info = runner.invoke(app, ["info", str(run_dir)])
        assert re.search(r"latest checkpoint +being trained now", info.stdout), info.stdout
        # Sampling it said it had stopped, and to train it again with the same --out, which is refused (a walkthrough).
        monkeypatch.chdir(tmp_path)  # plain `sample` reads runs/ there
        for args in (["sample", str(fresh)], ["sample"]):
            early = runner.invoke(app, args)
            assert early.exit_code == 2 and "is being trained now and has not saved its first checkpoint yet" in (
                early.stderr
            ), (args, early.stderr)
    finally:
        holder.kill()
        holder.wait()
    done = runner.invoke(app, ["resume", str(run_dir), "--steps", "6"])
    assert done.exit_code == 0, done.output


def test_a_signal_after_the_command_has_ended_leaves_its_status():
    """A third Ctrl-C that comes after the run has saved and said so, while
    JAX shuts down, must not print a traceback from its exit handlers, nor
    turn a finished command's status into 130: such a signal is ignored
    (Python's own handlers are gone in the last steps of its shutdown)."""
    code = (
        "import signal, sys\nfrom charlstm.cli.app import main\nsys.argv = ['charlstm', '--help']\n"
        "try:\n    main()\nexcept SystemExit as end:\n"
        "    print([signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)], end.code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[True, True] 0", done.stdout + done.stderr


def test_a_lock_held_from_another_machine_names_the_machine(tmp_path):
    """A run directory on a shared filesystem can be trained from another
    host, where the pid alone would point at an unrelated local process."""
    import fcntl
    import socket

    from charlstm.errors import CharlstmError
    from charlstm.training import run_lock

    run_dir = tmp_path / "run"
    with run_lock.held(run_dir):
        assert (run_dir / run_lock.LOCK_FILE).read_text() == f"{os.getpid()} {socket.gethostname()}"
    with run_lock.held(run_dir, (70, 120)):  # what `charlstm runs` shows of a session before its first save
        assert (run_dir / run_lock.LOCK_FILE).read_text() == f"{os.getpid()} {socket.gethostname()}\nsteps 70 120"
        assert run_lock.session_steps(run_dir) == (70, 120)
    (run_dir / run_lock.LOCK_FILE).write_text("1 host\n\nsteps 7\nsteps x 9")  # written by something else
    assert run_lock.session_steps(run_dir) is None
    (run_dir / run_lock.LOCK_FILE).write_text("4242 node-17.cluster")
    fd = os.open(run_dir / run_lock.LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as the other machine's process would hold it
        with pytest.raises(CharlstmError, match=r"another process \(pid 4242 on node-17\.cluster\);"):
            run_lock.refuse_if_held(run_dir)
        # With a session's steps on the second line, as `held` writes them now.
        (run_dir / run_lock.LOCK_FILE).write_text("4242 node-17.cluster\nsteps 70 120")
        with pytest.raises(CharlstmError, match=r"another process \(pid 4242 on node-17\.cluster\);"):
            run_lock.refuse_if_held(run_dir)
        (run_dir / run_lock.LOCK_FILE).write_text(f"4242 {socket.gethostname()}")  # this machine: the pid is enough
        with pytest.raises(CharlstmError, match=r"another process \(pid 4242\);"):
            run_lock.refuse_if_held(run_dir)
    finally:
        os.close(fd)


def test_a_run_listed_as_it_starts_still_starts(tmp_path):
    """`charlstm runs` takes a run's lock for an instant to see whether it is
    in use: a training process that meets that instant waits it out instead
    of calling the lister a trainer."""
    import fcntl
    import threading

    from charlstm.training import run_lock

    run_dir = tmp_path / "run"
    with run_lock.held(run_dir):
        pass
    fd = os.open(run_dir / run_lock.LOCK_FILE, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the lister's instant, stretched to 50 ms
    threading.Timer(0.05, os.close, [fd]).start()
    with run_lock.held(run_dir):  # not refused: it waited the lister's instant out
        assert run_lock.in_use(run_dir)
    assert not run_lock.in_use(run_dir)


def test_the_session_holds_the_lock_while_it_trains(trained_run, tmp_path):
    from charlstm.errors import CharlstmError
    from charlstm.training import run_lock, session

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    seen: list[str] = []

    def try_another(event):  # a second claim on the run while this session trains
        if not seen:
            with pytest.raises(CharlstmError, match="is being trained by another process"), run_lock.held(run_dir):
                pass
            seen.append("refused")
            assert run_lock.session_steps(run_dir) == (start, 6)  # the new total, for `charlstm runs`

    run = session.resumed_run(run_dir, {"steps": 6})
    start = int(run.state.step)
    session.train(run, run_dir, try_another)
    assert seen == ["refused"]
    with run_lock.held(run_dir):  # released at the end
        pass


def test_a_run_holding_links_is_never_trained_through_them(trained_run, tmp_path):
    """A run unpacked from someone else's archive can link its folders and
    files anywhere: resuming it would rewrite those files and let Orbax
    delete the numbered folders of whatever folder its checkpoints/latest
    names (a walkthrough, 2026-12-06, lost a folder of the user's that way)."""
    from charlstm.errors import ConfigError
    from charlstm.training import run_lock, session

    run_dir, elsewhere = tmp_path / "run", tmp_path / "photos"
    shutil.copytree(trained_run[0], run_dir)
    shutil.move(run_dir / "checkpoints" / "latest", elsewhere)
    (elsewhere / "2023").mkdir()
    (elsewhere / "2023" / "beach.jpg").write_bytes(b"precious")
    (run_dir / "checkpoints" / "latest").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(ConfigError, match=r"holds a symbolic link, .*run/checkpoints/latest \(to .*photos\): .*cp -rL"):
        session.resumed_run(run_dir, {"steps": 8})
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    # A file of the run linked elsewhere is refused the same way, and the file it names kept as it was.
    (run_dir / "checkpoints" / "latest").unlink()
    shutil.move(elsewhere, run_dir / "checkpoints" / "latest")
    shutil.rmtree(run_dir / "checkpoints" / "latest" / "2023")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    (run_dir / run_lock.LOCK_FILE).unlink(missing_ok=True)
    (run_dir / run_lock.LOCK_FILE).symlink_to(notes)
    with pytest.raises(ConfigError, match=r"holds a symbolic link, .*run/\.lock \(to "):
        session.resumed_run(run_dir, {"steps": 8})
    assert notes.read_text() == "mine"
    # The run's folder itself may be a link: what it holds is what is written.
    (run_dir / run_lock.LOCK_FILE).unlink()
    (tmp_path / "linked").symlink_to(run_dir)
    assert int(session.resumed_run(tmp_path / "linked", {"steps": 8}).state.step) == 4


def test_json_nested_past_what_python_reads_is_one_line_not_a_traceback(trained_run, tmp_path):
    """Python's json raises RecursionError, not ValueError, for a value nested
    a few thousand deep: `info`, `sample`, `runs` (for a whole folder), `plot`
    and `resume` ended in a traceback on such a file (a walkthrough, 2026-12-06)."""
    from charlstm.errors import CheckpointError
    from charlstm.text import manifest
    from charlstm.training import runlog

    deep = "[" * 100_000 + "]" * 100_000
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    steps = [r["step"] for r in runlog.read_metrics(run_dir)]
    with (run_dir / runlog.METRICS_FILE).open("a") as log:
        log.write('{"step": 99, "junk": ' + deep + "}\n")
    assert [r["step"] for r in runlog.read_metrics(run_dir)] == steps  # the line skipped, as a cut-off one is
    (run_dir / manifest.FILES).write_text('{"train": ' + deep + "}")
    assert manifest.read_files(run_dir) is None  # as if absent: the checkpoint's own record is used
    (run_dir / "checkpoints" / "latest" / "4" / "_CHECKPOINT_METADATA").write_text('{"junk": ' + deep + "}")
    with pytest.raises(CheckpointError, match=r"one of their metadata files is nested too deeply to read$"):
        checkpoint.CheckpointWriter(run_dir)
    # The best checkpoint's metadata, which a resume reads for the run's best loss: nested, or of other types.
    best_meta = run_dir / "checkpoints" / "best" / "4" / "meta" / "metadata"
    saved = json.loads(best_meta.read_text())
    best_meta.write_text(json.dumps({**saved, "corpus": {**saved["corpus"], "validation": ["x"]}}))
    assert checkpoint.best_val_loss(run_dir, "a digest") == saved["best_val_loss"]
    best_meta.write_text(json.dumps(saved)[:-1] + ', "junk": ' + deep + "}")
    assert checkpoint.best_val_loss(run_dir, "a digest") is None
    # A log with bytes that are not UTF-8 (`info` reads its sessions): read, not a traceback.
    with (run_dir / runlog.METRICS_FILE).open("ab") as log:
        log.write(b'{"step": 98, "note": "\xff"}\n')
    assert runlog.read_metrics(run_dir)[-1]["note"] == "\ufffd" and runlog.read_sessions(run_dir)


def test_a_pipe_in_place_of_the_lock_neither_hangs_a_reader_nor_trains(trained_run, tmp_path):
    """An archive can hold a FIFO: opening it to read waits for a writer forever
    (`charlstm info` and `runs` hung on it, 2026-12-06)."""
    from charlstm.errors import CharlstmError
    from charlstm.training import catalog, run_lock

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    (run_dir / run_lock.LOCK_FILE).unlink(missing_ok=True)
    os.mkfifo(run_dir / run_lock.LOCK_FILE)
    assert not run_lock.in_use(run_dir)
    assert [r.path for r in catalog.list_runs(tmp_path)] == [run_dir]
    refused = r"\.lock is not a file \(a pipe, a socket or a device\): remove it"
    with pytest.raises(CharlstmError, match=refused), run_lock.held(run_dir):
        pass


def test_escape_sequences_in_a_shared_runs_metadata_are_shown_not_obeyed(trained_run, tmp_path):
    """Its paths and dates are the author's text: info's rows and every error
    line show their control and bidi characters as escapes."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    for meta_file in run_dir.glob("checkpoints/*/*/meta/metadata"):
        meta = json.loads(meta_file.read_text())
        meta["saved_at"] = "2026\x1b]0;TITLE\x07\x1b[2J\u202eevil"
        meta["corpus"]["path"] = "/nowhere/sh\x1b[31mRED.txt"
        meta_file.write_text(json.dumps(meta))
    files = json.loads((run_dir / "corpus.json").read_text())
    files["train"][0]["path"] = "/nowhere/sh\x1b[31mRED.txt"
    (run_dir / "corpus.json").write_text(json.dumps(files))
    info = CliRunner().invoke(app, ["info", str(run_dir)])
    assert info.exit_code == 0, info.output
    assert "2026\\x1b]0;TITLE\\x07\\x1b[2J\\u202eevil" in info.output and "\x1b" not in info.output
    resumed = CliRunner().invoke(app, ["resume", str(run_dir), "--steps", "8"])
    assert resumed.exit_code == 2 and "(/nowhere/sh\\x1b[31mRED.txt -> " in resumed.output, resumed.output
    assert "\x1b" not in resumed.output


def test_ctrl_c_while_starting_up_is_not_lost(tiny_corpus, tmp_path, monkeypatch):
    """A Ctrl-C that comes while the command imports JAX and joins its
    devices (a second or so) stops it there; it used to be swallowed by
    JAX's garbage-collector callback, and the run then trained to its end."""
    import signal

    from typer.testing import CliRunner

    from charlstm.cli import app, running

    joined = running._join

    def join_after_a_ctrl_c(stop, *args):
        stop.signal, stop.count = signal.SIGINT, 1  # what the handler did with a Ctrl-C while JAX was imported
        return joined(stop, *args)

    monkeypatch.setattr(running, "_join", join_after_a_ctrl_c)
    result = CliRunner().invoke(app, ["train", str(tiny_corpus), "-o", str(tmp_path / "run"), *TINY, "--steps", "3"])
    assert result.exit_code == 130, result.output
    assert "interrupted before training began; nothing was written" in result.output
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_a_search_starts_up_is_not_lost(tiny_corpus, tmp_path, monkeypatch):
    """The same for `charlstm tune`: a Ctrl-C while it imports JAX ends it
    before any trial, with nothing written."""
    import contextlib
    import signal

    from typer.testing import CliRunner

    from charlstm.cli import app, tuning
    from charlstm.cli.signals import StopFlag

    class CtrlCWhileImporting(StopFlag):
        @contextlib.contextmanager
        def installed(self):
            with super().installed():
                yield
                if self.count == 0:  # the first block: the imports
                    self.signal, self.count = signal.SIGINT, 1

    monkeypatch.setattr(tuning, "StopFlag", CtrlCWhileImporting)
    out = tmp_path / "search"
    result = CliRunner().invoke(app, ["tune", str(tiny_corpus), "-o", str(out), "--trials", "2", "--steps", "3"])
    assert result.exit_code == 130, result.output
    assert "interrupted before the search began; nothing was written" in result.output
    assert not out.exists()


def test_an_abort_suggests_resume_only_where_there_is_a_checkpoint(trained_run, tmp_path):
    from charlstm.cli.running import _what_is_left

    assert _what_is_left(trained_run[0]).endswith(f"Continue with: charlstm resume {trained_run[0]}")
    (tmp_path / "new" / "checkpoints" / "latest").mkdir(parents=True)  # opened, aborted before the first save
    assert _what_is_left(tmp_path / "new") == (
        f"{tmp_path / 'new'} has no checkpoint yet: run the same command again with --out {tmp_path / 'new'}, which "
        "starts afresh there"
    )
    (tmp_path / "new" / "checkpoints" / "latest" / "10.orbax-checkpoint-tmp-1" / "meta").mkdir(parents=True)
    assert "has no checkpoint yet" in _what_is_left(tmp_path / "new")  # a save cut off half-way is none
    assert _what_is_left(None) == "no run directory was made yet"


def test_a_run_killed_before_its_first_save_starts_again_in_its_directory(tiny_corpus, tmp_path):
    """What a kill -9 or a full disk during the first save leaves (the
    record, the logs, a save cut half-way) holds nothing to resume: resume
    says to start again, and the same `train --out` does, afresh (it was
    refused as a directory in use, a dead end; a walkthrough, 2026-12-04)."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "latest" / "20.orbax-checkpoint-tmp-7" / "meta").mkdir(parents=True)
    (run_dir / "checkpoints" / "best").mkdir()
    (run_dir / "corpus.json").write_text("{}", encoding="utf-8")
    (run_dir / "metrics.jsonl").write_text('{"step": 20, "train_loss": 9.0, "killed": true}\n', encoding="utf-8")
    (run_dir / "samples.txt").write_text("===== step 20 =====\nold\n", encoding="utf-8")
    runner = CliRunner()
    resumed = runner.invoke(app, ["resume", str(run_dir)])
    assert resumed.exit_code == 2
    assert "it stopped before its first save; run its 'charlstm train' command again with the same --out" in (
        " ".join(resumed.stderr.split())
    )
    again = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(run_dir), "--steps", "3", *TINY])
    assert again.exit_code == 0, again.output
    assert "killed" not in (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    assert "old" not in (run_dir / "samples.txt").read_text(encoding="utf-8")
    assert checkpoint.latest_step(run_dir / "checkpoints" / "latest") == 3
    # A run that did save is still refused: it has something to lose.
    refused = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(run_dir), "--steps", "3", *TINY])
    assert refused.exit_code == 2 and "already exists and is not empty" in refused.stderr


def test_resuming_a_finished_run_says_how_to_train_it_further(trained_run, tmp_path):
    """The API resumes a finished run to no effect (it returns the model);
    the command line says why nothing happened, and what to give."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    result = CliRunner().invoke(app, ["resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (
        "nothing to train: the run had already finished at step 4 (its step total, or where its --max-time "
        "fitted its schedule to end); give --steps with a larger total to train it further" in result.output
    )
    assert "training on" not in result.output  # not said of a run that trains no step (a walkthrough, 2026-12-04)
    # Options that change nothing there are named; a time limit is what a resume-until-done script gives every time.
    given = CliRunner().invoke(app, ["resume", str(run_dir), "--lr", "1e-3", "--patience", "2", "--max-time", "5"])
    assert given.exit_code == 0, given.output
    assert (
        "step 4: warning: the run has reached its 4 steps, so --lr and --patience change nothing unless --steps "
        "gives a larger total" in " ".join(given.stderr.split())
    )
    assert "warning" not in CliRunner().invoke(app, ["resume", str(run_dir), "--max-time", "5"]).stderr


def test_runs_started_in_the_same_second_never_share_a_default_directory(tiny_corpus, tmp_path, monkeypatch):
    """`for s in 1 2 3; do charlstm train text --seed $s & done`: the default
    name has the second in it, and each run must still get its own folder
    (before, the later ones were refused as "being trained by another process")."""
    from concurrent.futures import ThreadPoolExecutor

    from charlstm.training import session
    from charlstm.training.run import claim_default_dir

    from .helpers import TINY_MODEL, tiny_train_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)  # every start in one second
    made = [session.new([str(tiny_corpus)], None, TINY_MODEL, tiny_train_config())[1] for _ in range(2)]
    first = made[0]
    assert first.parent.name == "runs" and made[1] == first.with_name(f"{first.name}-2")
    assert all(path.is_dir() for path in made)
    # Many at once: each mkdir has one winner.
    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: claim_default_dir(tmp_path / "runs" / "x"), range(8)))
    assert len(set(claimed)) == 8 and {p.name for p in claimed} == {"x", *(f"x-{n}" for n in range(2, 9))}


def test_an_unparsable_step_metadata_file_is_not_an_error_line(caplog):
    """Orbax's own `_CHECKPOINT_METADATA` (a save's time) cut short or
    missing: the checkpoint reads whole, and Orbax's line quoting the file
    is dropped; absl's other lines still pass."""
    restore_failures.quiet_step_metadata()
    caplog.set_level(logging.WARNING, logger="absl")
    absl = logging.getLogger("absl")
    absl.error("Failed to json parse Metadata file: /r/checkpoints/latest/300/_CHECKPOINT_METADATA, file content: {")
    absl.error("something else")
    # Missing from a save a kill cut short (a cluster walkthrough saw it at the next resume); another file's passes.
    absl.warning("Metadata file does not exist: %s", "/r/checkpoints/latest/1050/_CHECKPOINT_METADATA")
    absl.warning("Metadata file does not exist: %s", "/r/checkpoints/latest/1050/state/_METADATA")
    assert [r.getMessage() for r in caplog.records] == [
        "something else",
        "Metadata file does not exist: /r/checkpoints/latest/1050/state/_METADATA",
    ]
