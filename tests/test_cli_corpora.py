"""`charlstm train` on folders and several files, driven as a user drives it."""

import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm import api
from charlstm.cli import app
from charlstm.errors import ConfigError, CorpusError
from charlstm.text import manifest
from charlstm.text.corpus import Source

from .test_cli import TINY
from .test_corpus import write_folder

README = Path(__file__).resolve().parent.parent / "README.md"
# The hint after a refusal that names a file that is not UTF-8.
LATIN = "; to read Latin-1 or Windows-1252 text, convert it first (iconv -f CP1252 -t UTF-8 FILE > NEW)"
NEW_OPTIONS = ("--glob", "--val-file", "--skip-bad-files", "--init-from", "--patience")


@pytest.fixture()
def runner():
    return CliRunner()


def test_a_folder_with_a_pattern_a_validation_file_and_a_bad_file(runner, tmp_path):
    poems = tmp_path / "poems"
    write_folder(poems, 3)
    for p in poems.rglob("*.txt"):
        p.rename(p.with_suffix(".poem"))
    (poems / "old.poem").write_bytes("caf\xe9\n".encode("latin-1"))
    (poems / "skip-me.txt").write_text("not matched by the pattern", encoding="utf-8")
    (tmp_path / "val.txt").write_text("The king speaks to the queen.\n" * 10, encoding="utf-8")
    run_dir = tmp_path / "run"
    args = ["train", str(poems), "--glob", "**/*.poem", "--val-file", str(tmp_path / "val.txt"), "--skip-bad-files"]
    result = runner.invoke(app, [*args, "--out", str(run_dir), *TINY, "--steps", "4", "--eval-every", "4"])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert skipped == [f"skipped {poems / 'old.poem'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')"]
    assert f"corpus: 3 files from {poems}" in result.stderr
    assert "validation text: 1 file given with --val-file, none of it trained on" in result.stderr

    info = runner.invoke(app, ["info", str(run_dir)])
    # Piped, a table's lines end where their text does.
    assert info.stdout.strip() and all(line == line.rstrip() for line in info.stdout.splitlines())
    assert re.search(r"corpus\s+3 files from .*poems \(\*\*/\*\.poem\); 1 left out \(not text, or empty\)", info.stdout)
    assert re.search(r"validation text\s+1 file given with --val-file", info.stdout)
    record = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)
    assert record["corpus"]["validation"]["kind"] == "files" and record["corpus"]["documents"] == 3
    assert Path(record["corpus"]["tokens"]["path"]).is_file()
    files = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert [Path(f["path"]).name for f in files["train"]] == ["poem-02.poem", "poem-00.poem", "poem-01.poem"]
    assert files["skipped"][0]["problem"].startswith("not valid UTF-8")

    # With no text, eval scores the validation file and reproduces the logged loss.
    scored = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert "reading the run's validation text, 1 file given with --val-file" in scored.stderr
    assert json.loads(scored.stdout)["loss"] == pytest.approx(record["best_val_loss"], abs=1e-6)

    # A model of several files starts a sample at a document's start, which
    # is no text: the JSON's prime is empty, not the boundary symbol.
    sampled = runner.invoke(app, ["sample", "-c", str(run_dir), "-n", "8", "-N", "2", "--json"])
    assert [json.loads(line)["prime"] for line in sampled.stdout.splitlines()] == ["", ""]


def test_a_validation_file_is_sized_apart_and_adds_nothing_to_the_vocabulary(runner, tmp_path):
    """The walkthrough: a.txt and --val-file sub/b.txt. The corpus line gives
    a.txt's size, the vocabulary is a.txt's, b.txt's other characters are
    named once and left out of the validation loss, as eval leaves them out."""
    text = "the king and queen of denmark speak to hamlet who is sad\n" * 40
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text(text[:1000] + "日本語 zz\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    args = ["train", str(tmp_path / "a.txt"), "--val-file", str(tmp_path / "sub" / "b.txt"), "--out", str(run_dir)]
    result = runner.invoke(app, [*args, *TINY, "--steps", "2", "--eval-every", "2"])
    assert result.exit_code == 0, result.output
    vocab = len(set(text))
    assert (
        f"corpus: {tmp_path / 'a.txt'}, 2.3 KB, {len(text):,} characters ({vocab} in the vocabulary); validation "
        "text: 1 file given with --val-file, none of it trained on (1.0 KB, 1,007 characters)" in result.stderr
    )
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: 5 characters of the validation text skipped (not in vocabulary): 'z' x2, '日' x1, '本' x1, '語' x1; "
        "the validation loss leaves them out"
    ]
    assert "1,001 validation chars" in result.stderr  # 1,002 characters kept: 1,001 predictions
    record = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)
    assert record["model"]["vocab_size"] == vocab
    scored = json.loads(runner.invoke(app, ["eval", str(run_dir), str(tmp_path / "sub" / "b.txt"), "--json"]).stdout)
    assert scored["skipped_chars"] == {"z": 2, "日": 1, "本": 1, "語": 1}
    assert scored["loss"] == pytest.approx(record["best_val_loss"], abs=1e-6)
    # With no text, eval reads the run's validation text: the --val-file, so
    # named, its unknown characters counted as validation counted them.
    alone = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert alone.exit_code == 0, alone.output
    assert f"from {tmp_path / 'sub' / 'b.txt'}" in alone.stderr
    scored = json.loads(alone.stdout)
    assert scored["text"] == f"{tmp_path / 'sub' / 'b.txt'} (validation text)"
    assert scored["skipped_chars"] == {"z": 2, "日": 1, "本": 1, "語": 1}
    assert scored["loss"] == pytest.approx(record["best_val_loss"], abs=1e-6)


def test_a_validation_file_with_nothing_the_model_can_score_is_an_error(runner, tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    (tmp_path / "jp.txt").write_text("日本語\n", encoding="utf-8")
    args = ["train", str(tmp_path / "a.txt"), "--val-file", str(tmp_path / "jp.txt"), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, *TINY])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: --val-file {tmp_path / 'jp.txt'}: almost none of the text is in the model's vocabulary "
        "(3 characters skipped, 1 left): nothing to score"
    ]
    assert not (tmp_path / "run").exists()
    # Mostly: its loss would be logged over the few characters left.
    (tmp_path / "jp.txt").write_text("日本語の文章\n" * 30 + "the king\n", encoding="utf-8")
    result = runner.invoke(app, [*args, *TINY])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: --val-file {tmp_path / 'jp.txt'}: most of the text is not in the model's vocabulary "
        "(180 characters skipped, 39 left): a validation loss over the rest would not say how the model does on "
        "it; give a validation text like the training text"
    ]
    assert not (tmp_path / "run").exists()
    # A run made before that check still evaluates and resumes: only a new run is refused.
    from charlstm.text import tokens

    with monkeypatch.context() as before_the_check:
        before_the_check.setattr(tokens, "_refuse_unscored", lambda *args: None)
        assert runner.invoke(app, [*args, *TINY, "--steps", "2"]).exit_code == 0
    scored = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert scored.exit_code == 0 and json.loads(scored.stdout)["skipped"] == 180, scored.output
    resumed = runner.invoke(app, ["resume", str(tmp_path / "run"), "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output


def test_eval_names_a_bad_file_that_joined_the_runs_folder(runner, tmp_path):
    """With no text, eval reads the run's folder again: a file that is not
    text and was added since is named on its line, as train names it."""
    poems = tmp_path / "poems"
    write_folder(poems, 2)
    run_dir = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(poems), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    (poems / "late.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    result = runner.invoke(app, ["eval", str(run_dir)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("no text given: reading the run's validation text, the last 10% of each of its 2")
    assert lines[1] == f"{poems / 'late.txt'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')"
    assert (
        f"is not there to take its validation text from (a file is not usable text ({poems / 'late.txt'})" in lines[2]
    )
    assert "to read Latin-1 or Windows-1252 text, convert it first (iconv -f CP1252" in lines[2]
    # A text file added, and one changed: named as resume names them, not as a hash that differs.
    (poems / "late.txt").write_text("a late poem\n" * 20, encoding="utf-8")
    first = next(p for p in sorted(poems.iterdir()) if p.name != "late.txt")
    first.write_text(first.read_text(encoding="utf-8") + "one more line\n", encoding="utf-8")
    changed = runner.invoke(app, ["eval", str(run_dir)])
    assert changed.exit_code == 2
    assert (
        f"the text at {poems} is not the corpus the run trained on (1 file added ({poems / 'late.txt'}); "
        f"1 file changed ({first}: " in changed.stderr
    ), changed.stderr
    resumed = runner.invoke(app, ["resume", str(run_dir), "--steps", "3"])
    assert resumed.exit_code == 2 and f"1 file added ({poems / 'late.txt'})" in resumed.stderr


def test_a_run_whose_folder_moved_is_evaluated_and_resumed_from_its_new_place(runner, tmp_path):
    """--corpus says where a run's folder went (a validation file inside it
    goes with it): eval scores the text validation scored, resume trains on
    and records the new place, and the text is still checked by its sha256."""
    poems = tmp_path / "poems"
    write_folder(poems, 3, seed=21)  # texts of its own: the corpus cache is shared by the session
    (poems / "val").mkdir()
    (poems / "val" / "held.txt").write_text("The king speaks to the queen.\n" * 10, encoding="utf-8")
    run_dir = tmp_path / "run"
    args = ["--val-file", str(poems / "val"), "--out", str(run_dir), *TINY, "--steps", "2", "--eval-every", "2"]
    assert runner.invoke(app, ["train", str(poems), *args]).exit_code == 0
    logged = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)["best_val_loss"]
    moved = poems.rename(tmp_path / "renamed")
    info = runner.invoke(app, ["info", str(run_dir)], terminal_width=300).stdout
    assert "not there now (moved or deleted?): resume, eval and inspect take --corpus NEW_PLACE" in info

    refused = runner.invoke(app, ["eval", str(run_dir)])
    assert refused.exit_code == 2 and "put them back there or give its new place with --corpus" in refused.stderr
    for command in (["eval", str(run_dir)], ["resume", str(run_dir), "--steps", "3"]):
        thrice = runner.invoke(app, [*command, *["--corpus", str(moved)] * 3])
        assert thrice.exit_code == 2 and (
            f"this run read one file or folder ({poems}) and 1 validation file or folder ({poems / 'val'}); give "
            "--corpus once, or twice with the validation one last, got 3"
        ) in " ".join(thrice.stderr.split())
    nowhere = runner.invoke(app, ["eval", str(run_dir), "--corpus", str(tmp_path / "nowhere")])
    assert nowhere.exit_code == 2 and f"--corpus not found: {tmp_path / 'nowhere'}" in nowhere.stderr
    both = runner.invoke(app, ["eval", str(run_dir), str(moved), "--corpus", str(moved)])
    assert both.exit_code == 2 and "TEXT is scored instead: give one" in both.stderr

    scored = runner.invoke(app, ["eval", str(run_dir), "--corpus", str(moved), "--json"])
    assert scored.exit_code == 0, scored.output
    assert f"from {moved / 'val'}" in scored.stderr
    assert json.loads(scored.stdout)["loss"] == pytest.approx(logged, abs=1e-6)

    # Another text at the new place is not the run's.
    first = next(moved.glob("*.txt"))
    kept = first.read_text(encoding="utf-8")
    first.write_text(kept + "one more line\n", encoding="utf-8")
    changed = runner.invoke(app, ["resume", str(run_dir), "--steps", "3", "--corpus", str(moved)])
    assert changed.exit_code == 2 and f"1 file changed ({first}: " in changed.stderr
    assert "the text there is not the corpus this run trained on" in changed.stderr  # not "changed since"
    first.write_text(kept, encoding="utf-8")

    # A rate far too high keeps the best checkpoint the one saved before the
    # move, which the run's newer checkpoint tells where its corpus is now.
    resumed = runner.invoke(app, ["resume", str(run_dir), "--steps", "3", "--lr", "5", "--corpus", str(moved)])
    assert resumed.exit_code == 0, resumed.output
    record = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)
    assert record["step"] == 2 and record["latest_step"] == 3, "the best checkpoint is no longer the old one"
    assert record["corpus"]["sources"] == [str(moved)] and record["corpus"]["val_files"] == [str(moved / "val")]
    files = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert all(Path(f["path"]).is_relative_to(moved) for f in files["train"] + files["val"])
    # From then on the run reads its corpus where it now is, with no option.
    again = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["loss"] == pytest.approx(logged, abs=1e-6)
    assert "not there now" not in runner.invoke(app, ["info", str(run_dir)], terminal_width=300).stdout
    assert runner.invoke(app, ["resume", str(run_dir), "--steps", "4"]).exit_code == 0


def test_a_moved_corpus_is_rebased_at_folder_boundaries_only(tmp_path):
    folder, file = tmp_path / "folder", tmp_path / "one.txt"
    folder.mkdir()
    file.write_text("text\n", encoding="utf-8")
    entry = {"path": "/a/texts", "sha256": "x", "sources": ["/a/texts", "/b/one.txt"], "val_files": ["/a/texts2/v"]}
    files = {"train": [{"path": "/a/texts/p.txt", "size": 1}, {"path": "/b/one.txt"}], "held_out": ["/a/texts/p.txt"]}
    with pytest.raises(
        CorpusError,
        match=r"this run read 2 files or folders \(/a/texts, /b/one.txt\) and 1 validation file or folder "
        r"\(/a/texts2/v\); give corpus twice, once for each, in that order, or 3 times with the validation one last, "
        r"got 1",
    ):
        manifest.moved(entry, files, [folder])
    new_entry, new_files = manifest.moved(entry, files, [folder, file])
    assert new_entry["sources"] == [str(folder), str(file)] and new_entry["path"] == str(folder)
    assert new_entry["val_files"] == ["/a/texts2/v"]  # beside the folder, not inside it
    assert new_files["train"] == [{"path": f"{folder}/p.txt", "size": 1}, {"path": str(file)}]
    assert new_files["held_out"] == [f"{folder}/p.txt"] and entry["path"] == "/a/texts"  # the record itself unchanged
    # What the run read, a folder or a file, is what --corpus must give, in the run's order.
    with pytest.raises(
        CorpusError,
        match=r"the run read a folder \(/a/texts\), and corpus .*one.txt is a file; "
        r"give them in the order the run read them",
    ):
        manifest.moved(entry, files, [file, folder])
    with pytest.raises(CorpusError, match=r"the run read a file \(/b/one.txt\), and corpus .*folder is a folder"):
        manifest.moved({"path": "/b/one.txt", "sha256": "x"}, None, [folder])  # a run made before folders
    # A checkpoint copied without its run's corpus.json: what it read is not known, and not refused.
    alone = {"path": "/a/texts", "sha256": "x", "sources": ["/a/texts"]}
    assert manifest.moved(alone, None, [folder])[0]["sources"] == [str(folder)]
    # A --val-file beside the corpus does not move with it: put back, not given with --corpus.
    gone = tmp_path / "val.txt"
    with pytest.raises(CorpusError) as refused:
        manifest.refuse_gone(Source((str(file),), val_files=(str(gone),)), "to resume")
    assert str(refused.value) == (
        f"the run's corpus is not where the run read it: {gone} is gone (moved or deleted?); to resume, put the "
        "validation file back where it was, or give corpus once for each file or folder the run read (1) and then "
        "once for each validation file or folder (1), in that order (the text is checked against the run's by its "
        "sha256)"
    )
    # Given so, a validation file beside the corpus moves too, and one in a folder of it moves apart from it.
    entry = {"path": "/a/texts", "sha256": "x", "sources": ["/a/texts"], "val_files": ["/a/texts/v.txt", "/b/w"]}
    files = {"train": [{"path": "/a/texts/p.txt"}], "val": [{"path": "/a/texts/v.txt"}, {"path": "/b/w/q.txt"}]}
    held = tmp_path / "held"
    held.mkdir()
    new_entry, new_files = manifest.moved(entry, files, [folder, file, held])
    assert new_entry["val_files"] == [str(file), str(held)]
    assert new_files == {
        "train": [{"path": f"{folder}/p.txt"}],
        "val": [{"path": str(file)}, {"path": f"{held}/q.txt"}],
    }


def test_a_file_that_cannot_be_read_is_left_out_with_skip_bad_files(runner, tmp_path, monkeypatch):
    """A folder's file without read permission (or one the disk fails on)
    stops the run and names the option; --skip-bad-files leaves it out, named,
    as it leaves out files that are not text, in train and eval alike."""
    poems = tmp_path / "poems"
    write_folder(poems, 3, seed=22)  # texts of its own: the corpus cache is shared by the session
    locked = poems / "locked.txt"
    locked.write_text("a poem nobody may read\n", encoding="utf-8")
    real_open = Path.open

    def open_(path, *args, **kwargs):
        if path == locked:  # chmod 000 does not stop root, who runs CI
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    run_dir = tmp_path / "run"
    args = ["train", str(poems), "--out", str(run_dir), *TINY, "--steps", "2"]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 2
    assert stopped.stderr.splitlines()[-1] == (
        f"error: cannot read {locked}: Permission denied (--skip-bad-files leaves out the files that cannot be read)"
    )
    trained = runner.invoke(app, [*args, "--skip-bad-files"])
    assert trained.exit_code == 0, trained.output
    assert f"skipped {locked}: cannot be read (Permission denied)" in trained.stderr.splitlines()
    files = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert len(files["train"]) == 3
    assert files["skipped"] == [{"path": str(locked), "problem": "cannot be read (Permission denied)"}]
    unskipped = runner.invoke(app, ["eval", str(run_dir), str(poems)])
    assert unskipped.exit_code == 2 and "(--skip-bad-files leaves out the files that cannot be read)" in (
        unskipped.stderr
    )
    scored = runner.invoke(app, ["eval", str(run_dir), str(poems), "--skip-bad-files"])
    assert scored.exit_code == 0, scored.output
    assert f"{locked}: cannot be read (Permission denied)" in scored.stderr
    read = api.read_texts(poems, skip_bad_files=True)  # in memory, as the API reads texts
    assert len(read.documents) == 3 and read.left_out == (f"{locked}: cannot be read (Permission denied)",)
    with pytest.raises(CorpusError, match=f"cannot read {locked}: Permission denied"):
        api.read_texts(poems)


def test_a_file_renamed_in_the_corpus_is_said_to_be_renamed(runner, tmp_path):
    """The same bytes under another name were "1 file added (...); 1 file
    removed (...)" (a walkthrough, 2026-12-06)."""
    texts = tmp_path / "texts"
    first, *others = write_folder(texts, 3, seed=5)
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["train", str(texts), "-o", str(run_dir), *TINY, "--steps", "2"]).exit_code == 0
    first.rename(first.with_name("renamed.txt"))
    (texts / "new.txt").write_text(others[0].read_text(encoding="utf-8") + "more\n", encoding="utf-8")
    refused = runner.invoke(app, ["resume", str(run_dir), "--steps", "4"])
    assert refused.exit_code == 2
    said = " ".join(refused.stderr.split())
    assert f"1 file renamed, the same text ({first} -> {first.with_name('renamed.txt')}); 1 file added (" in said
    assert "removed" not in said


def test_a_checkpoint_older_than_a_forced_change_of_text_says_so(runner, tmp_path):
    """After `resume --force` on a changed text, the best checkpoint (older)
    was trained on text that is gone: eval said only "sha256 differs", and
    info showed that checkpoint's corpus alone (a walkthrough, 2026-12-05)."""
    texts = tmp_path / "texts"
    write_folder(texts, 2, seed=31)
    run_dir = tmp_path / "run"
    every = ["--eval-every", "2", "--checkpoint-every", "2"]
    started = ["train", str(texts), "-o", str(run_dir), *TINY, *every, "--steps", "2", "--weight-decay", "0"]
    assert runner.invoke(app, started).exit_code == 0  # no decay: the --lr 20 below would take all of each weight
    first = sorted(texts.rglob("*.txt"))[0]
    head = first.read_text(encoding="utf-8")
    first.write_text(head[1] + head[0] + head[2:], encoding="utf-8")  # its head: the tail that validates is kept
    # A learning rate far too high keeps the best checkpoint the one before the change (its validation
    # text the same, the later passes compare with it).
    resumed = runner.invoke(app, ["resume", str(run_dir), "--steps", "4", "--force", "--lr", "20"])
    assert resumed.exit_code == 0, resumed.output
    best = runner.invoke(app, ["eval", str(run_dir)])
    assert best.exit_code == 2
    assert (
        f"checkpoint {run_dir / 'checkpoints' / 'best' / '2'} (step 2) was trained on a text that the run changed "
        f"later, when a resume was forced past the changes; the text it was scored on is gone: the run's latest "
        f"checkpoint, {run_dir / 'checkpoints' / 'latest' / '4'} (step 4), validates on the text as it is now"
    ) in " ".join(best.stderr.split())
    assert runner.invoke(app, ["eval", str(run_dir / "checkpoints" / "latest" / "4")]).exit_code == 0
    shown = runner.invoke(app, ["info", str(run_dir)], terminal_width=300).stdout
    assert re.search(r"corpus at step 4 +2 files from .*, changed by a resume given --force", shown), shown


def test_a_file_given_twice_is_one_source_and_runs_lists_every_source(runner, tmp_path):
    """`train q/x.txt q/x.txt` read the file once but recorded two sources,
    so `runs` said "x.txt +1" and a moved run asked for two --corpus
    places; and `runs --json` gave only the first source (a walkthrough,
    2026-12-05)."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text(f"{name} The king speaks to the queen.\n" * 30, encoding="utf-8")
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    runs = tmp_path / "runs"
    trained = runner.invoke(app, ["train", a, f"{tmp_path}/./a.txt", b, "-o", str(runs / "r"), *TINY, "--steps", "1"])
    assert trained.exit_code == 0, trained.output
    record = json.loads(runner.invoke(app, ["info", str(runs / "r"), "--json"]).stdout)
    assert record["corpus"]["sources"] == [a, b]
    [listed] = json.loads(runner.invoke(app, ["runs", str(runs), "--json"]).stdout)
    assert listed["corpus"] == a and listed["corpus_sources"] == [a, b]
    assert "a.txt +1" in runner.invoke(app, ["runs", str(runs)], terminal_width=200).stdout


def test_a_folder_that_cannot_be_listed_is_named_and_left_out_with_skip_bad_files(runner, tmp_path, monkeypatch):
    """Python's glob passes over a folder it cannot list in silence, and a
    walkthrough's run (2026-12-05) stopped naming the folder given instead,
    whatever --skip-bad-files said. The folder is named: it stops the run,
    or is left out with its files."""
    import os

    poems = tmp_path / "poems"
    write_folder(poems, 3, seed=23)
    locked = poems / "locked"
    write_folder(locked, 1, seed=24)
    real_scandir, unreadable = os.scandir, {locked}

    def scandir(path="."):
        if Path(path) in unreadable:  # chmod 000 does not stop root, who runs CI
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    import glob

    if hasattr(glob, "_StringGlobber"):  # Python 3.13's pathlib globs with its own reference to os.scandir
        monkeypatch.setattr(glob._StringGlobber, "scandir", staticmethod(scandir))
    run_dir = tmp_path / "run"
    args = ["train", str(poems), "--out", str(run_dir), *TINY, "--steps", "2"]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 2 and not run_dir.exists()
    assert stopped.stderr.splitlines()[-1] == (
        f"error: cannot list folder {locked}: Permission denied; make it readable, or leave it out with "
        "--skip-bad-files"
    )
    trained = runner.invoke(app, [*args, "--skip-bad-files"])
    assert trained.exit_code == 0, trained.output
    said = " ".join(trained.stderr.split())
    assert f"skipped 1 entry that is not a file ({locked}: a folder that cannot be read (Permission denied))" in said
    files = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert len(files["train"]) == 3
    assert files["not_files"] == [{"path": str(locked), "problem": "a folder that cannot be read (Permission denied)"}]
    assert runner.invoke(app, ["eval", str(run_dir), str(poems)]).exit_code == 2
    scored = runner.invoke(app, ["eval", str(run_dir), str(poems), "--skip-bad-files"])
    assert scored.exit_code == 0, scored.output
    # A pattern whose '**' starts inside another folder never looks in it: nothing to refuse (a review).
    from charlstm.text.folder import folder_files

    assert folder_files(poems, "deeper/**/*.txt")[0] and not folder_files(poems, "deeper/**/*.txt")[1]
    unreadable.add(poems)  # the folder given itself
    told = runner.invoke(app, ["train", str(poems), "--out", str(tmp_path / "run2"), *TINY, "--skip-bad-files"])
    assert (
        told.exit_code == 2 and told.stderr.splitlines()[-1] == f"error: cannot list folder {poems}: Permission denied"
    )


def test_files_the_default_pattern_leaves_out_for_their_case_are_named(runner, tmp_path):
    """`NOTES.TXT` beside `poem.txt`: the default pattern is case-sensitive, as
    a shell's is, and such files were left out without a word (a walkthrough,
    2026-12-05). They are named on stderr and in corpus.json, with the pattern
    that reads them too; a pattern the user gave is taken as given."""
    poems = tmp_path / "poems"
    write_folder(poems, 2)
    (poems / "NOTES.TXT").write_text("shouted notes\n" * 40, encoding="utf-8")
    (poems / "deeper" / "old.Txt").parent.mkdir(exist_ok=True)
    (poems / "deeper" / "old.Txt").write_text("an old file\n" * 40, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(poems), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert (
        f"skipped 2 files ending in .TXT or .Txt, not .txt ({poems / 'NOTES.TXT'}, {poems / 'deeper' / 'old.Txt'}): "
        "the default --glob is case-sensitive; --glob '**/*.{txt,TXT,Txt}' reads them too"
    ) in result.stderr, result.stderr
    recorded = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert recorded["other_case"] == [str(poems / "NOTES.TXT"), str(poems / "deeper" / "old.Txt")]
    assert len(recorded["train"]) + len(recorded["val"]) == 2
    resumed = runner.invoke(app, ["resume", str(run_dir), "--steps", "3"])  # the same files: not a change
    assert resumed.exit_code == 0 and "skipped 2 files ending in .TXT or .Txt" in resumed.stderr, resumed.output
    both = runner.invoke(app, ["train", str(poems), "--out", str(tmp_path / "all"), *TINY, "--steps", "2",
                               "--glob", "**/*.{txt,TXT,Txt}"])  # fmt: skip
    assert both.exit_code == 0 and "skipped" not in both.stderr, both.output
    recorded = json.loads((tmp_path / "all" / "corpus.json").read_text(encoding="utf-8"))
    assert len(recorded["train"]) + len(recorded["val"]) == 4 and "other_case" not in recorded
    # One more, whose name is not UTF-8: never read, so named with its byte escaped (a review found a traceback).
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "a.txt").write_text("more of it\n" * 40, encoding="utf-8")
    with open(os.fsencode(tmp_path / "more") + b"/\xff.TXT", "wb") as named_in_latin1:
        named_in_latin1.write(b"x\n")
    one = runner.invoke(app, ["train", str(tmp_path / "more"), "--out", str(tmp_path / "one"), *TINY, "--steps", "2"])
    assert one.exit_code == 0, one.output
    assert "skipped 1 file ending in .TXT, not .txt (" in one.stderr and "'**/*.{txt,TXT}' reads it too" in one.stderr
    recorded = json.loads((tmp_path / "one" / "corpus.json").read_text(encoding="utf-8"))
    assert recorded["other_case"] == [f"{tmp_path / 'more'}/\\xff.TXT"]


def test_a_folders_links_to_nothing_and_pipes_are_left_out_and_named(runner, tmp_path):
    """Neither a file nor a folder: never read (a pipe would block the
    reading), never silently either; named together on stderr (a tree may
    hold many) and in corpus.json. A link in a loop among them, where
    resolving it would raise."""
    poems = tmp_path / "poems"
    write_folder(poems, 2)
    (poems / "moved.txt").symlink_to(tmp_path / "gone.txt")
    (poems / "loop.txt").symlink_to("loop.txt")
    os.mkfifo(poems / "pipe.txt")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(poems), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert (
        f"skipped 3 entries that are not files ({poems / 'loop.txt'}: a link in a loop (to loop.txt); "
        f"{poems / 'moved.txt'}: a link to nothing ({tmp_path / 'gone.txt'} is not there); "
        f"{poems / 'pipe.txt'}: not a regular file (a pipe, a socket or a device))"
    ) in result.stderr, result.stderr
    recorded = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))
    assert [entry["path"] for entry in recorded["not_files"]] == [
        str(poems / n) for n in ("loop.txt", "moved.txt", "pipe.txt")
    ]
    assert recorded["skipped"] == [] and len(recorded["train"]) + len(recorded["val"]) == 2
    assert runner.invoke(app, ["resume", str(run_dir), "--steps", "3"]).exit_code == 0
    # A folder of nothing but such entries says what it holds.
    empty = tmp_path / "links"
    empty.mkdir()
    (empty / "moved.txt").symlink_to(tmp_path / "gone.txt")
    nothing = runner.invoke(app, ["train", str(empty), "--out", str(tmp_path / "x"), *TINY])
    assert nothing.exit_code == 2
    assert nothing.stderr == (
        f"error: no files in {empty} match '**/*.txt': it has no files, only {empty / 'moved.txt'}: a link to "
        f"nothing ({tmp_path / 'gone.txt'} is not there)\n"
    )


def test_files_that_are_not_text_stop_the_run_each_named_on_its_line(runner, tmp_path):
    poems = tmp_path / "poems"
    write_folder(poems, 2)
    (poems / "a.txt").write_bytes("text".encode("utf-16"))  # a byte-order mark, then UTF-16
    (poems / "b.txt").write_bytes("na\xefve\n".encode("latin-1"))
    result = runner.invoke(app, ["train", str(poems), "--out", str(tmp_path / "run"), *TINY])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{poems / 'a.txt'}: UTF-16 text, not UTF-8: convert it first (iconv -f UTF-16 -t UTF-8 FILE > NEW)",
        f"{poems / 'b.txt'}: not valid UTF-8 (byte offset 2: b'\\xefve\\n')",
        f"error: 2 files are not usable text ({poems / 'a.txt'}, {poems / 'b.txt'}): fix them, or leave them out with "
        f"--skip-bad-files{LATIN}",
    ]
    assert not (tmp_path / "run").exists()


def test_bad_validation_files_and_a_corpus_left_out_whole_say_which_file_and_why(runner, tmp_path):
    """Found by a new user's walkthrough (2026-12-03): a bad --val-file was
    told to use --skip-bad-files, which then found no validation text, and
    --skip-bad-files leaving out every file named none of them."""
    good, latin, binary = tmp_path / "good.txt", tmp_path / "latin.txt", tmp_path / "bin.txt"
    write_folder(tmp_path / "poems", 1)
    good.write_text((tmp_path / "poems").rglob("*.txt").__next__().read_text(encoding="utf-8"), encoding="utf-8")
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    binary.write_bytes(b"\x00\x01\x02" * 100)
    latin_problem = "not valid UTF-8 (byte offset 3: b'\\xe9\\n')"

    def train(*args: str) -> list[str]:
        result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "run"), *TINY])
        assert result.exit_code == 2, result.output
        return result.stderr.splitlines()

    assert train(str(good), "--val-file", str(latin)) == [
        f"--val-file {latin}: {latin_problem}",
        f"error: a file is not usable text ({latin}): fix it, or give another --val-file{LATIN}",
    ]
    assert train(str(good), "--val-file", str(latin), "--skip-bad-files") == [
        f"error: --val-file: no usable text in {latin}: {latin_problem}",  # one file: its reason on the one line
    ]
    assert train(str(binary), str(latin), "--skip-bad-files") == [
        f"{binary}: looks like binary data, not text (a NUL byte at byte offset 0)",
        f"{latin}: {latin_problem}",
        f"error: no usable text: every file was left out ({binary}, {latin})",
    ]
    # A validation folder with other files: leaving the bad one out is advice that works.
    checks = tmp_path / "checks"
    checks.mkdir()
    shutil.copy(latin, checks / "latin1.txt")
    shutil.copy(good, checks / "good.txt")
    assert train(str(good), "--val-file", str(checks))[-1] == (
        f"error: a file is not usable text ({checks / 'latin1.txt'}): fix it, or leave it out with --skip-bad-files"
        f"{LATIN}"
    )
    # Beside an empty file only, leaving it out would leave no validation text: that advice is not given.
    (checks / "good.txt").write_text("", encoding="utf-8")
    assert train(str(good), "--val-file", str(checks))[-1].endswith("fix it, or give another --val-file" + LATIN)
    assert not (tmp_path / "run").exists()


def test_the_corpus_line_names_every_file_and_folder_given(runner, tmp_path):
    write_folder(tmp_path / "poems", 2)
    extra = tmp_path / "extra.txt"
    extra.write_text(next((tmp_path / "poems").rglob("*.txt")).read_text(encoding="utf-8"), encoding="utf-8")
    args = [str(extra), str(tmp_path / "poems"), str(extra), "--out", str(tmp_path / "run"), *TINY, "--steps", "1"]
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    assert f"corpus: 3 files from {extra}, {tmp_path / 'poems'}, " in result.stderr


def test_a_small_held_out_share_is_never_shown_as_0_percent():
    from charlstm.text.manifest import describe_validation

    assert describe_validation({}, 0.0005) == "the last 0.05% of the corpus"
    assert describe_validation({}, 0.1) == "the last 10% of the corpus"
    assert describe_validation({"validation": {"kind": "tails"}, "documents": 3}, 0.125) == (
        "the last 12.5% of each of its 3 files"
    )


def test_every_new_option_is_in_the_help_and_the_readme(runner):
    train_help = runner.invoke(app, ["train", "--help"], terminal_width=200).stdout
    readme = README.read_text(encoding="utf-8")
    for option in NEW_OPTIONS:
        assert option in train_help, option
        assert f"`{option}" in readme, option
    assert "--patience" in runner.invoke(app, ["resume", "--help"], terminal_width=200).stdout


def test_reading_a_large_corpus_shows_its_progress():
    """A live bar on a terminal; elsewhere a line every few seconds; then
    where the token file is and how fast it was written."""
    from rich.console import Console

    from charlstm.cli.display import NORMAL, TrainingDisplay
    from charlstm.training import events

    reading = [events.Reading("encoding", done, 2_000_000_000) for done in (0, 500_000_000, 2_000_000_000)]
    size = 2_000_000_000
    ready = events.CorpusReady(
        "/data/big", 20, 0, size, size, 96, "the last 10% of each", "T", 8.0, True, boundary=True
    )
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with TrainingDisplay(terminal, NORMAL) as display:
        for event in [*reading, ready]:
            display.handle(event)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.file.getvalue())  # the text, without its colours
    # The bar moved with the reading to its end (the live display redraws
    # on its own clock, so the quarter between may not be drawn), then the corpus line.
    assert "encoding corpus" in shown and "2.0/2.0 GB" in shown
    assert "corpus: 20 files from /data/big, 2.0 GB" in shown
    plain = Console(file=io.StringIO(), force_terminal=False, width=200)
    with TrainingDisplay(plain, NORMAL, plain_interval=0.0) as display:
        for event in [*reading, ready]:
            display.handle(event)
    lines = plain.file.getvalue().splitlines()
    assert re.fullmatch(r"encoding corpus: 25% of 2\.0 GB \(.+/s\)", lines[0])
    assert lines[1:] == [
        # The boundary counted apart, as info counts it (a walkthrough saw 64 here and 63 there, 2026-12-05).
        "corpus: 20 files from /data/big, 2.0 GB, 2,000,000,000 characters (95 in the vocabulary, and the document "
        "boundary); validation text: the last 10% of each",
        "encoded in 8.0s (250.0 MB/s) to T",
    ]


def test_the_bar_keeps_its_step_count_and_time_left_in_any_width_and_a_dumb_terminal_gets_lines(monkeypatch):
    """Found by a walkthrough (2026-12-05): at 80 columns Rich squeezed the
    bar's line and the step count and time left went first; on TERM=dumb
    (Emacs' shell) there was no progress at all until the end. The
    statistics now give way, the loss last; a dumb terminal gets the lines a
    log gets."""
    from rich.console import Console

    from charlstm.cli.display import NORMAL, TrainingDisplay
    from charlstm.training import events

    started = events.Started(120, 600, "cpu", ["cpu:0"], 1000, 100, 10)
    progress = events.Progress(120, 600, 3.927, 1.12, 0.02, 26_700.0, 12.0, clipped_fraction=0.2)
    for width, shows in [(40, "loss 3.927"), (80, "|g| 1.12 clip 20%"), (120, "26.7k chars/s")]:
        terminal = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
        with TrainingDisplay(terminal, NORMAL) as display:
            for event in (started, progress):
                display.handle(event)
        drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.file.getvalue()).replace("\r", "\n")
        bar = [line for line in drawn.splitlines() if line.startswith("train ")][-1]
        assert len(bar) <= width and re.search(rf"120/600 .*{re.escape(shows)}.* (\d+:\d\d|-:--)$", bar), (width, bar)
    monkeypatch.setenv("TERM", "dumb")
    dumb = Console(file=io.StringIO(), force_terminal=True, width=80)
    with TrainingDisplay(dumb, NORMAL, plain_interval=0.0) as display:
        for event in (started, progress):
            display.handle(event)
    assert "step 120/600  loss 3.927  val -  |g| 1.12 clip 20%  lr 2.00e-02" in dumb.file.getvalue()


@pytest.mark.parametrize("where", ["scan", "lock"])
def test_a_corpus_cache_that_cannot_be_written_is_one_line(runner, tmp_path, monkeypatch, where):
    """Whether the cache's first file (the scan) or a later one (the lock
    and token file, as for a new vocabulary over a scanned text) cannot be
    written: one line and status 2, never a traceback."""
    (tmp_path / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    cache = blocker / "cache"  # a path through a file: nothing can be made under it
    if where == "lock":
        from charlstm.text import cache as corpus_cache

        monkeypatch.setattr(corpus_cache, "complete", lambda path, size: False)
        real = corpus_cache.locked
        monkeypatch.setattr(corpus_cache, "locked", lambda directory: real(blocker / directory.name))
        cache = tmp_path / "cache"
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(cache))
    result = runner.invoke(app, ["train", str(tmp_path / "a.txt"), "--out", str(tmp_path / "run"), *TINY])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()[-1:]
    assert line.startswith("error: cannot write the corpus cache ") and f"{blocker} is a file, not a folder" in line
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_empty_files_are_left_out_in_one_line_and_listed(runner, tmp_path):
    """A source tree's empty files (__init__.py) are never refused, but the
    run says it left them out, in one line, and corpus.json lists them."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    for name in ("b.txt", "c.txt", "d.txt", "e.txt"):
        (folder / name).write_text("", encoding="utf-8")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(folder), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert (
        f"skipped 4 empty files ({folder / 'b.txt'}, {folder / 'c.txt'}, {folder / 'd.txt'}, and 1 more): "
        "nothing to learn from" in result.stderr
    )
    skipped = json.loads((run_dir / "corpus.json").read_text(encoding="utf-8"))["skipped"]
    assert [Path(s["path"]).name for s in skipped] == ["b.txt", "c.txt", "d.txt", "e.txt"]
    assert {s["problem"] for s in skipped} == {"empty"}  # as eval and inspect word it


def test_a_validation_file_with_the_training_text_under_another_name_is_refused(runner, tmp_path):
    text = "the king and queen of denmark\n" * 40
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "copy.txt").write_text(text, encoding="utf-8")
    args = ["train", str(tmp_path / "a.txt"), "--val-file", str(tmp_path / "copy.txt"), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, *TINY])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: --val-file {tmp_path / 'copy.txt'} has the same text as the training file {tmp_path / 'a.txt'}: "
        "validation must be text the model does not train on"
    )


def test_a_run_is_named_after_the_first_file_it_reads(runner, tmp_path, monkeypatch):
    """Not after a first file that --skip-bad-files left out."""
    (tmp_path / "old.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "poems.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "old.txt", "poems.txt", "--skip-bad-files", *TINY, "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert [p.name.split("-")[0] for p in (tmp_path / "runs").iterdir()] == ["poems"]


def test_eval_reads_files_and_folders_as_the_runs_validation_read_its_documents(runner, tmp_path):
    """A run of several documents validated on two --val-file texts: eval of
    those two files, of a folder holding them, and of the run's own
    validation text give its logged loss; Model.evaluate on the two texts too."""
    write_folder(tmp_path / "poems", 3)
    held = write_folder(tmp_path / "held", 2, seed=1)  # poem-00.txt, poem-01.txt: reading order is name order
    run_dir = tmp_path / "run"
    val = [arg for path in held for arg in ("--val-file", str(path))]
    trained = runner.invoke(app, ["train", str(tmp_path / "poems"), *val, "--out", str(run_dir), *TINY, "--steps", "3"])
    assert trained.exit_code == 0, trained.output
    logged = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)["best_val_loss"]

    def scored(*args: str) -> dict:
        result = runner.invoke(app, ["eval", str(run_dir), *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    files = scored(*map(str, held))
    assert files["text"] == f"{held[0]}, {held[1]} (2 files)"
    folder = scored(str(tmp_path / "held"))
    assert folder["text"] == f"{tmp_path / 'held'} (2 files)"
    own = scored()
    # Each document after a boundary symbol, the first not predicted; the characters the vocabulary lacks left out.
    whole = sum(len(p.read_text("utf-8")) + 1 for p in held) - 1
    assert files["chars"] + files["skipped"] == whole
    for key in ("chars", "skipped_chars"):
        assert files[key] == folder[key] == own[key]
    for record in (files, folder, own):
        assert record["loss"] == pytest.approx(logged, abs=1e-6)

    from charlstm import api

    texts = api.read_texts(tmp_path / "held")
    assert texts.paths == tuple(held) and texts.left_out == ()
    model = api.load(run_dir)
    assert model.evaluate(list(texts.documents)).loss == pytest.approx(logged, abs=1e-6)
    # A U+FDD0 inside a document is left out and counted, never read as a document's start.
    marked = model.evaluate([texts.documents[0][:50] + "\ufdd0" + texts.documents[0][50:], texts.documents[1]])
    assert marked.skipped["\ufdd0"] == 1 and marked.loss == pytest.approx(logged, abs=1e-6)
    # inspect reads --max-chars of the document's own characters, after the boundary, and counts
    # only what it read; a text given alone is one document.
    doc = texts.documents[0]
    seen = model.inspect([doc + "\ufdd0" * 7], 50)
    known = "".join(c for c in doc[:50] if c in model.vocab.chars)  # capitals the poems' vocabulary may lack
    assert seen.text == "\ufdd0" + known and seen.truncated == len(doc) + 7 - 50
    assert "\ufdd0" not in seen.skipped and sum(seen.skipped.values()) == 50 - len(known)
    # A text given alone is that one document, as `charlstm eval` reads a file.
    assert model.evaluate(doc).loss == model.evaluate([doc]).loss
    assert model.inspect(doc, 50).text == model.inspect([doc], 50).text == "\ufdd0" + known
    # The held-out text's first document: --max-chars of its own characters, its boundary not counted.
    whole = model.validation_text()
    own = len(whole) - whole.count("\ufdd0")  # the documents' own characters
    held_out = model.inspect_held_out(50)
    assert held_out.text == whole[:51] and held_out.truncated == own - 50
    first = whole.index("\ufdd0", 1) - 1  # past the first document, the second's boundary not counted either
    crossing = model.inspect_held_out(first + 10)
    assert crossing.text == whole[: first + 12] and crossing.truncated == own - first - 10
    # inspect reads a file as eval reads it, one stream: the same loss.
    one = scored(str(held[0]), "--streams", "1")
    inspected = runner.invoke(app, ["inspect", str(run_dir), str(held[0]), "-o", str(tmp_path / "p.html"), "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout.splitlines()[0])["loss"] == pytest.approx(one["loss"], abs=1e-5)


def test_eval_of_a_folder_leaves_out_empty_files_and_names_the_ones_that_are_not_text(runner, tmp_path):
    (tmp_path / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    run_dir = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(tmp_path / "a.txt"), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "1.txt").write_text("the queen and the king\n", encoding="utf-8")
    (texts / "2.txt").write_text("", encoding="utf-8")
    (texts / "3.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (texts / "4.txt").write_text("of denmark\n", encoding="utf-8")

    stopped = runner.invoke(app, ["eval", str(run_dir), str(texts)])
    assert stopped.exit_code == 2
    assert stopped.stderr.splitlines() == [
        f"{texts / '3.txt'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')",
        f"error: a file is not usable text ({texts / '3.txt'}): fix it, or leave it out with --skip-bad-files{LATIN}",
    ]
    result = runner.invoke(app, ["eval", str(run_dir), str(texts), "--skip-bad-files", "--json"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("skipped ")] == [
        f"skipped {texts / '2.txt'}: empty",
        f"skipped {texts / '3.txt'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')",
    ]
    record = json.loads(result.stdout)
    # A model of one text reads the documents end to end (no boundary symbol to mark them).
    assert record["chars"] == len("the queen and the king\nof denmark\n") - 1
    from charlstm import api

    model = api.load(run_dir)
    whole = model.evaluate("the queen and the king\nof denmark\n")
    assert record["loss"] == pytest.approx(whole.loss, abs=1e-6)
    with pytest.raises(ConfigError, match="no documents given"):
        model.evaluate([])

    (texts / "1.txt").unlink()
    (texts / "4.txt").unlink()
    none = runner.invoke(app, ["eval", str(run_dir), str(texts), "--skip-bad-files"])
    assert none.exit_code == 2
    left = f"({texts / '2.txt'}, {texts / '3.txt'})"
    assert none.stderr.splitlines()[-1] == f"error: no usable text: every file was left out {left}"
    assert f"{texts / '2.txt'}: empty" in none.stderr
    alone = runner.invoke(app, ["eval", str(run_dir), "--glob", "*.md"])
    assert alone.exit_code == 2 and "--glob chooses among the files given: give a folder" in alone.stderr
    # A folder of one file is read as a folder: --skip-bad-files leaves it out too.
    (texts / "5.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (texts / "2.txt").unlink()
    (texts / "3.txt").unlink()
    lone = runner.invoke(app, ["eval", str(run_dir), str(texts), "--skip-bad-files"])
    assert lone.exit_code == 2 and f"error: no usable text: every file was left out ({texts / '5.txt'})" in lone.stderr
    assert f"{texts / '5.txt'}: not valid UTF-8" in lone.stderr


@pytest.mark.parametrize("documents", [True, False], ids=["model of documents", "model of one text"])
def test_eval_of_files_reads_them_in_place_with_the_same_score_as_in_memory(runner, tmp_path, monkeypatch, documents):
    """`charlstm eval RUN FILES` encodes the files into the corpus cache under
    the model's vocabulary and scores them from the mapped token file: the
    score of the texts read into memory, unknown characters left out and
    counted alike; encoded once, then found in the cache."""
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(tmp_path / "cache"))
    corpus = write_folder(tmp_path / "poems", 3) if documents else [tmp_path / "a.txt"]
    if not documents:
        corpus[0].write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    run_dir = tmp_path / "run"
    trained = runner.invoke(app, ["train", *map(str, corpus), "--out", str(run_dir), *TINY, "--steps", "2"])
    assert trained.exit_code == 0, trained.output
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "1.txt").write_text("The queen, the KING and ZEBRA!\n" * 5, encoding="utf-8")  # capitals unknown
    (texts / "2.txt").write_text("é of denmark\n", encoding="utf-8")  # é unknown: a non-ASCII chunk

    from charlstm import api

    model = api.load(run_dir)
    in_memory = model.evaluate(list(api.read_texts(texts).documents), 4)
    found = api.find_texts(texts)
    assert found.paths == (texts / "1.txt", texts / "2.txt") and found.left_out == ()
    in_place = model.evaluate(found, 4)
    assert in_place.chars == in_memory.chars and dict(in_place.skipped) == dict(in_memory.skipped)
    assert "Z" in in_place.skipped and "é" in in_place.skipped
    assert in_place.loss == pytest.approx(in_memory.loss, abs=1e-6)

    result = runner.invoke(app, ["eval", str(run_dir), str(texts), "--streams", "4", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["chars"] == in_memory.chars and record["loss"] == pytest.approx(in_memory.loss, abs=1e-6)
    token_files = list(found.corpus.directory.glob("tokens-*"))
    assert len(token_files) == 1  # the texts' under this vocabulary, in a folder of their own
    written = token_files[0].stat().st_mtime_ns
    again = runner.invoke(app, ["eval", str(run_dir), str(texts), "--streams", "4", "--json"])
    assert json.loads(again.stdout) == record
    assert token_files[0].stat().st_mtime_ns == written  # found in the cache, not encoded again

    # The cache cannot be written (a file where its folder would be): the files are read into memory, the same score.
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(texts / "1.txt" / "cache"))
    unwritable = runner.invoke(app, ["eval", str(run_dir), str(texts), "--streams", "4", "--json"])
    assert unwritable.exit_code == 0, unwritable.output
    assert json.loads(unwritable.stdout) == record
    page = ["inspect", str(run_dir), str(texts / "1.txt"), "-o", str(tmp_path / "p.html")]
    assert runner.invoke(app, page).exit_code == 0
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(tmp_path / "cache"))

    # Almost nothing the model knows: counted as in memory, the boundary symbols included.
    (tmp_path / "zx.txt").write_text("Ze", encoding="utf-8")
    if documents:  # the boundary and e: two characters to read, one prediction
        assert model.evaluate(api.find_texts(tmp_path / "zx.txt"), 4).chars == model.evaluate(["Ze"], 4).chars == 1
    else:
        with pytest.raises(CorpusError, match=r"\(1 character skipped, 1 left\): nothing to score"):
            model.evaluate(api.find_texts(tmp_path / "zx.txt"), 4)
        with pytest.raises(CorpusError, match=r"\(1 character skipped, 1 left\): nothing to score"):
            model.evaluate(["Ze"], 4)

    # A file that changed after it was found is refused, not half-counted.
    found_one = api.find_texts(texts / "2.txt")
    (texts / "2.txt").write_text("of denmark, and more\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="changed since it was found; run again"):
        model.inspect(found_one, 5)
    with pytest.raises(CorpusError, match="changed while it was being read; run again"):
        model.evaluate(found_one, 4)
    (texts / "2.txt").write_text("é of denmark\n", encoding="utf-8")

    # U+FDD0 marks documents: a file holding one is refused, as training refuses it, or left out.
    (texts / "3.txt").write_text("the king\ufdd0 and queen\n", encoding="utf-8")
    refused = runner.invoke(app, ["eval", str(run_dir), str(texts / "3.txt")])
    assert refused.exit_code == 2
    assert f"error: {texts / '3.txt'}: contains U+FDD0 (at byte offset 8), a Unicode noncharacter" in refused.stderr
    skipped = runner.invoke(app, ["eval", str(run_dir), str(texts), "--streams", "4", "--skip-bad-files", "--json"])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped {texts / '3.txt'}: contains U+FDD0" in skipped.stderr
    assert json.loads(skipped.stdout)["loss"] == pytest.approx(in_memory.loss, abs=1e-6)


def test_train_on_the_current_folder_leaves_its_own_runs_out(runner, tmp_path, monkeypatch):
    """`charlstm train .` twice: the second run does not read the first
    one's samples and checkpoint files as text (which would also make the
    first run's corpus "change" on resume), and runs are named after the folder."""
    poems = tmp_path / "my poems"
    write_folder(poems, 2)
    monkeypatch.chdir(poems)
    first = runner.invoke(app, ["train", ".", *TINY, "--steps", "2"])
    assert first.exit_code == 0, first.output
    (run,) = (poems / "runs").iterdir()
    assert run.name.startswith("my poems-") and (run / "samples.txt").is_file()
    second = runner.invoke(app, ["train", ".", "--out", "runs/second", *TINY, "--steps", "2"])
    assert second.exit_code == 0, second.output
    assert "corpus: 2 files from ." in second.stderr
    resumed = runner.invoke(app, ["resume", str(run), "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "done at step 3" in resumed.stderr
    # A search's losing trial keeps its log and samples but no checkpoints: still a run, still not text.
    trial = poems / "runs" / "tune-my poems-1" / "trial-01"
    trial.mkdir(parents=True)
    (trial / "metrics.jsonl").write_text("", encoding="utf-8")
    (trial / "corpus.json").write_text("{}", encoding="utf-8")
    (trial / "samples.txt").write_text("step 5: sample\n", encoding="utf-8")
    third = runner.invoke(app, ["train", ".", "--out", "runs/third", *TINY, "--steps", "2"])
    assert third.exit_code == 0, third.output
    assert "corpus: 2 files from ." in third.stderr
    (poems / "runs" / "tune-my poems-1" / "trials.json").write_text("{}", encoding="utf-8")  # a search's record
    only_runs = runner.invoke(app, ["train", "runs", *TINY, "--steps", "2"])
    assert only_runs.exit_code == 2
    assert "runs holds only charlstm runs, which are never read as text: name your texts" in only_runs.stderr
    from charlstm.training.run import corpus_name

    assert corpus_name(Path(".")) == "my poems" and corpus_name(Path("-notes.txt")) == "notes"
    assert corpus_name(Path("two\nlines [draft]*.txt")) == "two_lines _draft__"  # one line in `runs`, and readable back
    # A folder of texts with a corpus.json of its own (a dataset's metadata) is not a run: read.
    from charlstm.text.corpus import find

    dataset = tmp_path / "dataset"
    (dataset / "part").mkdir(parents=True)
    for where in (dataset, dataset / "part"):
        (where / "corpus.json").write_text('{"name": "poems"}', encoding="utf-8")
        (where / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
    found = find(Source((str(dataset),), "**/*.txt")).train
    assert [str(Path(d.path).relative_to(dataset.resolve())) for d in found] == ["a.txt", str(Path("part/a.txt"))]
    # A run named as the text is a slip (`train RUN` for --init-from, `eval RUN RUN`): refused, saying what to do.
    for args in (["train", str(run), *TINY, "--steps", "2"], ["eval", str(run), str(run)]):
        named = runner.invoke(app, args)
        assert named.exit_code == 2, named.output
        assert f"to fine-tune from it: charlstm train TEXT --init-from {run})" in named.stderr


def test_a_pipe_is_refused_at_once_not_waited_on(runner, tmp_path):
    """A named pipe (or /dev/stdin from a pipe) would block the second reading, and a Ctrl-C with it."""
    fifo = tmp_path / "text.fifo"
    os.mkfifo(fifo)
    message = f"{fifo} is not a regular file (a pipe or a device?): charlstm reads a text twice"
    for args in (["train", str(fifo)], ["train", str(tmp_path / "a.txt"), "--val-file", str(fifo)]):
        (tmp_path / "a.txt").write_text("the king and queen of denmark\n" * 40, encoding="utf-8")
        result = runner.invoke(app, [*args, *TINY, "--steps", "2", "--out", str(tmp_path / "run")])
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_windows_line_endings_and_a_byte_order_mark_are_pointed_out(runner, tmp_path):
    """Read byte for byte, '\\r\\n' teaches the model '\\r' (and --stop '\\n\\n'
    never meets its blank lines), and a BOM an invisible character it writes:
    the run says so, once each, with what to do."""
    text = "The king speaks to the queen.\r\n\r\nAnd she answers him.\r\n" * 40
    (tmp_path / "win.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    short = [*TINY, "--steps", "2", "--eval-every", "2"]  # the warnings come as the text is read
    result = runner.invoke(app, ["train", str(tmp_path / "win.txt"), "-o", str(tmp_path / "run"), *short])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert said.count("the text has carriage returns") == 1 and "dos2unix FILE" in said
    assert said.count("the text has U+FEFF, the byte-order mark") == 1
    # A resume says them again, at the step it resumes from (they said step 0, a walkthrough found).
    resumed = runner.invoke(app, ["resume", str(tmp_path / "run"), "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "step 2: warning: the text has carriage returns" in resumed.stderr, resumed.stderr
    (tmp_path / "unix.txt").write_text(text.replace("\r\n", "\n"), encoding="utf-8")
    clean = runner.invoke(app, ["train", str(tmp_path / "unix.txt"), "-o", str(tmp_path / "clean"), *short])
    assert clean.exit_code == 0 and "the text has" not in clean.stderr
    # Carriage returns of another kind (old Mac line ends, progress bars in a log) are not called Windows'.
    (tmp_path / "mac.txt").write_bytes(text.replace("\r\n", "\r").encode("utf-8"))
    mac = runner.invoke(app, ["train", str(tmp_path / "mac.txt"), "-o", str(tmp_path / "mac"), *short])
    said = " ".join(mac.stderr.split())
    assert mac.exit_code == 0 and "carriage returns ('\\r') but no Windows line endings" in said, said
    assert "dos2unix" not in said and "(tr '\\r' '\\n' < FILE > NEW)" in said
    # Of a folder, the files that hold them are named: the first few.
    folder = tmp_path / "texts"
    folder.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        (folder / f"{name}.txt").write_text(text.replace("\r\n", "\n"), encoding="utf-8")
    for name in ("b", "c", "d", "e"):
        (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    (folder / "c.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    result = runner.invoke(app, ["train", str(folder), "-o", str(tmp_path / "folder"), *short])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    b, c, d = (str(folder / f"{n}.txt") for n in "bcd")
    assert f"the text (in {b}, {c}, {d}, and maybe more) has carriage returns" in said
    assert f"the text (in {c}) has U+FEFF" in said
