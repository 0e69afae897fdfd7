"""Corpora of several files: finding them, reading them once, keeping
documents apart in the windows training reads, and noticing changes."""

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from charlstm.errors import CharlstmError, CorpusError
from charlstm.text import manifest, scan
from charlstm.text.corpus import BAD_NAME, Source
from charlstm.text.streams import MANY_DOCUMENTS, layout
from charlstm.text.tokenfile import open_tokens
from charlstm.text.tokens import prepare
from charlstm.text.vocab import BOUNDARY, Vocab
from charlstm.training.run import check_run_dir, corpus_vocab

MARK = "~"  # ends every file of the test folders, and starts none


def _poem(rng: random.Random, lines: int) -> str:
    words = ["the", "king", "and", "queen", "of", "denmark", "speak", "to", "hamlet", "who", "is", "sad", "my", "lord"]
    body = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(lines))
    return body.capitalize() + "\n" + MARK


def write_folder(root: Path, files: int, lines: int = 30, seed: int = 0) -> list[Path]:
    """`files` poems under root (some in a subfolder), each ending with MARK; their paths in reading order."""
    rng = random.Random(seed)
    paths = []
    for i in range(files):
        path = root / ("deeper" if i % 3 == 2 else "") / f"poem-{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_poem(rng, lines), encoding="utf-8")
        paths.append(path)
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix())


def _tokens(source: Source, vocab: Vocab | None = None):
    corpus = prepare(source)
    vocab = vocab or corpus_vocab(corpus)
    return corpus, vocab, open_tokens(corpus, vocab)


def test_a_folder_is_its_matching_files_in_order_hidden_ones_left_out(tmp_path):
    paths = write_folder(tmp_path / "poems", 4)
    (tmp_path / "poems" / "notes.md").write_text("not a poem", encoding="utf-8")
    (tmp_path / "poems" / ".hidden.txt").write_text("secret", encoding="utf-8")
    (tmp_path / "poems" / ".git").mkdir()
    (tmp_path / "poems" / ".git" / "x.txt").write_text("secret", encoding="utf-8")
    corpus = prepare(Source((str(tmp_path / "poems"),)))
    assert [d.path for d in corpus.train] == [str(p.resolve()) for p in paths]
    assert [d.sha256 for d in corpus.train] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    markdown = prepare(Source((str(tmp_path / "poems"),), glob="*.md"))
    assert [Path(d.path).name for d in markdown.train] == ["notes.md"]
    # Files named one by one, and a folder among them, are read in the order given.
    deeper = tmp_path / "poems" / "deeper"
    mixed = prepare(Source((str(deeper / "poem-02.txt"), str(paths[1]), str(deeper))))
    assert [Path(d.path).name for d in mixed.train] == ["poem-02.txt", "poem-00.txt"]  # each file read once


def test_folder_errors_say_what_to_do(tmp_path):
    write_folder(tmp_path / "poems", 2)
    with pytest.raises(CorpusError, match=r"no files in .*poems match '\*\*/\*\.py' \(it has 2 \.txt\).*glob"):
        prepare(Source((str(tmp_path / "poems"),), glob="**/*.py"))
    # A Windows habit, shown as typed (its backslashes were doubled, and one alone was said to start at /).
    with pytest.raises(CorpusError, match=r"match 'deeper\\\*\.txt' \(.*separated by '/' here, not '\\'\)"):
        prepare(Source((str(tmp_path / "poems"),), glob="deeper\\*.txt"))
    with pytest.raises(CorpusError, match=r"glob '\\' names files inside .*, so it cannot start at \\:"):
        prepare(Source((str(tmp_path / "poems"),), glob="\\"))
    with pytest.raises(CorpusError, match="not found: .*missing"):
        prepare(Source((str(tmp_path / "missing"),)))
    with pytest.raises(CorpusError, match="glob picks the files of a folder"):
        prepare(Source((str(tmp_path / "poems" / "poem-00.txt"),), glob="*.md"))
    with pytest.raises(CorpusError, match="val_file .*nope.txt: not found"):
        prepare(Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "nope.txt"),)))
    first = str(tmp_path / "poems" / "poem-00.txt")
    with pytest.raises(CorpusError, match="both a training file and a val_file"):
        prepare(Source((first, str(tmp_path / "poems" / "poem-01.txt")), val_files=(first,)))
    with pytest.raises(CorpusError, match="every file of the corpus is a val_file"):
        prepare(Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "poems"),)))


def test_a_folder_of_validation_files_and_validation_files_inside_the_training_folder(tmp_path):
    """`--val-file` takes folders (their files that --glob picks), and a
    training folder's files given with --val-file are its validation text,
    left out of training: `train books --val-file books/held-out` works."""
    paths = write_folder(tmp_path / "poems", 5)  # poem-02.txt in deeper/
    deeper = tmp_path / "poems" / "deeper"
    corpus = prepare(Source((str(tmp_path / "poems"),), val_files=(str(deeper),)))
    assert [Path(d.path).name for d in corpus.val] == ["poem-02.txt"]
    assert [Path(d.path).name for d in corpus.train] == ["poem-00.txt", "poem-01.txt", "poem-03.txt", "poem-04.txt"]
    one = prepare(Source((str(tmp_path / "poems"),), val_files=(str(paths[0]),)))
    assert paths[0] not in {Path(d.path) for d in one.train} and [Path(d.path) for d in one.val] == [paths[0]]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("the king and the queen\n" * 5, encoding="utf-8")
    # --glob picks a validation folder's files too.
    notes = prepare(Source((str(paths[1]),), glob="*.md", val_files=(str(tmp_path / "notes"),)))
    assert [Path(d.path).name for d in notes.val] == ["a.md"]
    # --glob picks the training folders' files too: for a validation folder of other files, name them.
    with pytest.raises(CorpusError, match=r"val_file .*notes: no files in .*notes match .*one by one$"):
        prepare(Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "notes"),)))


def test_files_that_are_not_text_are_each_named_then_stop_or_are_skipped(tmp_path):
    write_folder(tmp_path / "poems", 3)
    (tmp_path / "poems" / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "poems" / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(CorpusError, match="2 files are not usable text.*skip_bad_files") as err:
        prepare(Source((str(tmp_path / "poems"),)))
    assert len(err.value.details) == 2
    assert err.value.details[0].endswith("image.txt: looks like binary data, not text (a NUL byte at byte offset 8)")
    assert "latin1.txt: not valid UTF-8 (byte offset 3: b'\\xe9 au'" in err.value.details[1]
    corpus = prepare(Source((str(tmp_path / "poems"),), skip_bad_files=True))
    assert sorted(Path(d.path).name for d in corpus.skipped) == ["image.txt", "latin1.txt"]
    assert len(corpus.train) == 3 and "\xe9" not in corpus.charset  # a skipped file's characters are not kept
    # A run is called after the first file or folder it read, not one it left out (charlstm runs, info).
    image, poems = str(tmp_path / "poems" / "image.txt"), str(tmp_path / "poems")
    first_left_out = prepare(Source((image, poems), skip_bad_files=True))
    assert first_left_out.path == str((tmp_path / "poems").resolve())


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    """A Latin-1 file name (an old archive's) in a folder or given alone: one
    line naming it by its bytes and how to rename it, before any run folder
    is made; it was a traceback from writing the run's records (2026-12-05)."""
    folder = tmp_path / "old"
    write_folder(folder, 2)
    name = os.fsdecode(b"caf\xe9.txt")  # what Python makes of the name: a lone surrogate for the byte
    (folder / name).write_text("some text\n", encoding="utf-8")
    for given in (folder, folder / name):
        with pytest.raises(CorpusError, match=r"a file's name is not valid UTF-8 \(.*caf\\xe9\.txt\): rename it"):
            prepare(Source((str(given),)))
    with pytest.raises(CorpusError, match=r"UTF-8 \(.*caf\\xe9\.txt\).*leave it out with skip_bad_files=True"):
        prepare(Source((str(folder / "poem-00.txt"),), val_files=(str(folder / name),)))
    # --skip-bad-files leaves it out, named by its bytes, never read.
    corpus = prepare(Source((str(folder),), skip_bad_files=True))
    assert len(corpus.train) == 2
    assert [(d.path, d.problem) for d in corpus.skipped] == [(f"{folder}/caf\\xe9.txt", BAD_NAME)]
    with pytest.raises(CorpusError, match="left out"):
        prepare(Source((str(folder / name),), skip_bad_files=True))  # nothing left
    with pytest.raises(CorpusError) as refused:
        prepare(Source((str(folder / "poem-00.txt"),), val_files=(str(folder / name),), skip_bad_files=True))
    assert str(refused.value) == f"val_file: no usable text in {folder}/caf\\xe9.txt: {BAD_NAME}"
    assert refused.value.details == ()


def test_reading_in_small_chunks_gives_the_same_ids(tmp_path, monkeypatch):
    """Chunks end inside multi-byte characters and switch between ASCII and
    other text; the ids must be those of the whole text."""
    texts = ["plain ascii " * 20, "mixé 中文 🎭 " * 15 + "end", "ab" * 30]
    for i, text in enumerate(texts):
        (tmp_path / f"{i}.txt").write_text(text, encoding="utf-8")
    monkeypatch.setattr(scan, "CHUNK_BYTES", 7)
    corpus, vocab, tokens = _tokens(Source((str(tmp_path),)))
    assert corpus.charset == "".join(sorted(set("".join(texts))))
    expected = "".join(BOUNDARY + t for t in texts)
    assert vocab.decode(tokens.ids) == expected
    np.testing.assert_array_equal(tokens.starts, [0, 1 + len(texts[0]), 2 + len(texts[0]) + len(texts[1])])


def test_a_large_vocabulary_is_stored_two_bytes_a_character(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 2
    (tmp_path / "wide.txt").write_text(text, encoding="utf-8")
    _, vocab, tokens = _tokens(Source((str(tmp_path / "wide.txt"),)))
    assert vocab.size == 300 and tokens.ids.dtype == np.uint16 and tokens.path.suffix == ".u16"
    assert vocab.decode(tokens.ids) == text


def test_a_second_run_reuses_the_cached_reading_and_token_file(tmp_path):
    write_folder(tmp_path / "poems", 3)
    source = Source((str(tmp_path / "poems"),))
    first, vocab, tokens = _tokens(source)
    assert not first.from_cache and tokens.encoded_seconds is not None
    written = tokens.path.stat().st_mtime_ns
    again = prepare(source)
    assert again.from_cache and again.train == first.train and again.charset == first.charset
    reopened = open_tokens(again, vocab)
    assert reopened.encoded_seconds is None and reopened.path == tokens.path
    assert reopened.path.stat().st_mtime_ns == written
    # Another vocabulary (a fine-tuned model's) gets a token file of its own.
    other = open_tokens(again, vocab.grown("xyz"))
    assert other.path != tokens.path and other.encoded_seconds is not None


def test_encoding_removes_the_partial_files_of_writers_that_died(tmp_path):
    """A second Ctrl-C ends a process at once, and may leave a partial token
    file as large as the text in the cache: the next encoding removes it,
    and never a file whose writer is alive."""
    import subprocess
    import sys

    write_folder(tmp_path / "poems", 2, seed=7)
    corpus = prepare(Source((str(tmp_path / "poems"),)))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = corpus.directory / f"tokens-0123456789abcdef.u8.{int(ended.stdout)}.tmp"
    alive = corpus.directory / f"tokens-0123456789abcdef.u8.{os.getppid()}.tmp"
    # Names no writer of a token file gives are never touched (nor do they stop the encoding).
    odd = [corpus.directory / name for name in ("a.99999999999999999999.tmp", "tokens-x.\u00b2\u00b3.tmp", "notes.tmp")]
    odd.append(corpus.directory / f"scan.json.{int(ended.stdout)}.tmp")  # written outside the lock
    for partial in (dead, alive, *odd):
        partial.write_bytes(b"\0" * 100)
    open_tokens(corpus, corpus_vocab(corpus))
    assert not dead.exists() and alive.exists() and all(p.exists() for p in odd)


@pytest.mark.parametrize("held_out", ["val-file", "whole files"])
def test_training_windows_never_run_from_one_file_into_the_next(tmp_path, held_out):
    """The bar: every file ends with MARK, which starts none. In every window
    of a whole pass, MARK is followed only by the boundary symbol, a file's
    first character is read only after the boundary, and the windows are
    slices of the files joined with the boundary before each (so the model,
    which restarts its state there, never reads one file into the next)."""
    files = 6 if held_out == "val-file" else MANY_DOCUMENTS + 4
    paths = write_folder(tmp_path / "poems", files, lines=12)
    (tmp_path / "val.txt").write_text("Hamlet is sad\n", encoding="utf-8")
    val = (str(tmp_path / "val.txt"),) if held_out == "val-file" else ()
    corpus, vocab, tokens = _tokens(Source((str(tmp_path / "poems"),), val_files=val))
    data = layout(tokens, [d.sha256 for d in corpus.train], batch=4, seq_len=8, val_fraction=0.1, reset_chars=64)
    texts = [p.read_text(encoding="utf-8") for p in paths]
    kept = [t for k, t in enumerate(texts) if k not in data.split.held_out]
    assert len(kept) >= 4
    joined = vocab.encode("".join(BOUNDARY + t for t in kept))
    np.testing.assert_array_equal(data.train.ids[:], joined)

    windows = [data.train.window(w) for w in range(len(data.train))]
    inputs = np.concatenate([w.inputs for w in windows], axis=1)  # (B, W*T): each stream's whole pass
    targets = np.concatenate([w.targets for w in windows], axis=1)
    stream = (len(joined) - 1) // 4
    for b in range(4):
        np.testing.assert_array_equal(inputs[b], joined[b * stream : b * stream + inputs.shape[1]])
        np.testing.assert_array_equal(targets[b], joined[b * stream + 1 : b * stream + 1 + inputs.shape[1]])
    boundary, mark = vocab.boundary_id, vocab.chars.index(MARK)
    firsts = {vocab.chars.index(t[0]) for t in texts}
    assert mark not in firsts
    assert (inputs == mark).sum() >= 3  # file ends are really read
    assert (targets[inputs == mark] == boundary).all()
    assert np.isin(targets[inputs == boundary], list(firsts)).all()


def test_validation_holds_out_each_files_end_or_whole_files(tmp_path):
    few = write_folder(tmp_path / "few", 3)
    corpus, vocab, tokens = _tokens(Source((str(tmp_path / "few"),)))
    data = layout(tokens, [d.sha256 for d in corpus.train], batch=2, seq_len=8, val_fraction=0.1)
    assert data.split.kind == "tails"
    held_out = vocab.decode(data.val[:])
    tails = [p.read_text(encoding="utf-8") for p in few]
    tails = [t[len(t) - int(len(t) * 0.1) :] for t in tails]
    assert held_out == "".join(BOUNDARY + t for t in tails)

    many = write_folder(tmp_path / "many", MANY_DOCUMENTS + 10, lines=6)
    corpus, vocab, tokens = _tokens(Source((str(tmp_path / "many"),)))
    data = layout(tokens, [d.sha256 for d in corpus.train], batch=2, seq_len=8, val_fraction=0.1)
    assert data.split.kind == "documents" and len(data.split.held_out) >= 2
    share = len(data.val) / len(tokens.ids)
    assert 0.05 <= share <= 0.15
    texts = [p.read_text(encoding="utf-8") for p in many]
    held = [texts[k] for k in data.split.held_out]
    assert vocab.decode(data.val[:]) == "".join(BOUNDARY + t for t in held)
    train_text = vocab.decode(data.train.ids[:])
    assert all(BOUNDARY + t not in train_text for t in held)


def test_copies_of_one_text_are_held_out_together_or_trained_on_together(tmp_path):
    """A folder that repeats a file (a licence, boilerplate, one text saved
    twice) held out one copy and trained on the other (a walkthrough, 2026-12-05)."""
    # 13 texts of one length, twice each: a tenth of the 26 files is 2.6 of
    # them, so one at a time the hold-out stopped after an odd 3.
    (tmp_path / "a" / "copies").mkdir(parents=True)
    for i in range(MANY_DOCUMENTS // 2 + 3):
        text = f"poem number {i:02d}: the king and the queen speak\n" * 5
        (tmp_path / "a" / f"poem-{i:02d}.txt").write_text(text, encoding="utf-8")
        (tmp_path / "a" / "copies" / f"poem-{i:02d}.txt").write_text(text, encoding="utf-8")
    corpus, _, tokens = _tokens(Source((str(tmp_path / "a"),)))
    hashes = [d.sha256 for d in corpus.train]
    data = layout(tokens, hashes, batch=2, seq_len=8, val_fraction=0.1)
    assert data.split.kind == "documents" and data.split.held_out
    held = {hashes[k] for k in data.split.held_out}
    trained = {hashes[k] for k in range(len(hashes)) if k not in data.split.held_out}
    assert held and not held & trained
    assert len(data.split.held_out) == 2 * len(held)  # both copies of each
    # A run made before keeps the split it trained and validated on: one copy at a time, as its entry says.
    old = layout(tokens, hashes, batch=2, seq_len=8, val_fraction=0.1, copies_together=False)
    assert {hashes[k] for k in old.split.held_out} & {
        hashes[k] for k in range(len(hashes)) if k not in old.split.held_out
    }
    entry = manifest.summary(corpus, tokens, data.split, 0.1)
    assert manifest.copies_together(entry) and entry["validation"]["copies_together"] is True
    before = manifest.summary(corpus, tokens, old.split, 0.1, copies_together=False)
    assert "copies_together" not in before["validation"] and not manifest.copies_together(before)


def test_a_validation_file_is_the_validation_text(tmp_path):
    write_folder(tmp_path / "poems", 2)
    # Characters of the training text only (the others are left out: the test below).
    (tmp_path / "val.txt").write_text("hamlet speaks to the queen\n", encoding="utf-8")
    corpus, vocab, tokens = _tokens(Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "val.txt"),)))
    data = layout(tokens, [d.sha256 for d in corpus.train], batch=2, seq_len=8, val_fraction=0.1)
    assert data.split.kind == "files"
    assert vocab.decode(data.val[:]) == BOUNDARY + "hamlet speaks to the queen\n"
    assert len(data.train.ids) == int(tokens.lengths[:2].sum())


def test_changes_name_the_files_added_removed_and_changed(tmp_path):
    paths = write_folder(tmp_path / "poems", 3)
    source = Source((str(tmp_path / "poems"),))
    corpus, _, tokens = _tokens(source)
    recorded = json.loads(json.dumps(manifest.files_record(corpus, layout(tokens, [], 1, 8, 0.1).split)))
    entry = {"sha256": corpus.sha256}
    assert manifest.changes(entry, recorded, prepare(source)) == []
    paths[0].write_text(paths[0].read_text(encoding="utf-8") + "more\n", encoding="utf-8")
    paths[1].unlink()
    (tmp_path / "poems" / "new.txt").write_text("a new poem\n", encoding="utf-8")
    found = manifest.changes(entry, recorded, prepare(source))
    assert found[0].startswith("1 file added (") and found[0].endswith("new.txt)")
    assert found[1].startswith("1 file removed (") and found[1].endswith(f"{paths[1].name})")
    assert found[2].startswith("1 file changed (") and f"{paths[0].name}: " in found[2] and "bytes" in found[2]


def test_a_validation_files_characters_stay_out_of_the_vocabulary_and_are_counted(tmp_path, monkeypatch):
    """The vocabulary is the training text's; what a --val-file adds is left
    out of its token file (ASCII and not, in chunks ending mid-character) and
    counted, from the first reading and from the cache alike."""
    write_folder(tmp_path / "poems", 2)
    val = "hamlet speaks 日本語 to the queen! Zzz\n"
    (tmp_path / "val.txt").write_text(val, encoding="utf-8")
    source = Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "val.txt"),))
    monkeypatch.setattr(scan, "CHUNK_BYTES", 7)
    for reading in ("first", "cached"):
        corpus, vocab, tokens = _tokens(source)
        assert corpus.from_cache == (reading == "cached")
        new = {"日", "本", "語", "!", "Z", "z"}
        assert not new & set(corpus.charset) and not new & set(vocab.chars), reading
        assert tokens.skipped == {"!": 1, "Z": 1, "z": 2, "日": 1, "本": 1, "語": 1}
        data = layout(tokens, [d.sha256 for d in corpus.train], batch=2, seq_len=8, val_fraction=0.1)
        assert vocab.decode(data.val[:]) == BOUNDARY + val.translate({ord(c): None for c in new})


def test_a_validation_file_with_nothing_in_the_vocabulary_is_an_error(tmp_path):
    write_folder(tmp_path / "poems", 2)
    (tmp_path / "jp.txt").write_text("日本語\n", encoding="utf-8")
    corpus = prepare(Source((str(tmp_path / "poems"),), val_files=(str(tmp_path / "jp.txt"),)))
    with pytest.raises(
        CorpusError, match=r"val_file .*jp\.txt: almost none .*vocabulary \(3 characters skipped, 1 left\)"
    ):
        open_tokens(corpus, corpus_vocab(corpus))


def test_without_a_validation_file_the_held_out_share_is_in_the_vocabulary(tmp_path):
    (tmp_path / "one.txt").write_text("abc " * 100 + "xyz", encoding="utf-8")  # "xyz" only in the held-out tail
    corpus, vocab, tokens = _tokens(Source((str(tmp_path / "one.txt"),)))
    assert set("xyz") <= set(vocab.chars) and tokens.skipped == {}
    data = layout(tokens, [d.sha256 for d in corpus.train], batch=2, seq_len=8, val_fraction=0.1)
    assert vocab.decode(data.val[:]).endswith("xyz")


def test_a_damaged_token_file_is_refused_where_it_is_read_and_a_failed_start_can_start_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(tmp_path / "cache"))  # not the suite's: other tests read this text
    write_folder(tmp_path / "poems", 3)
    source = Source((str(tmp_path / "poems"),))
    corpus, vocab, tokens = _tokens(source)
    with tokens.path.open("r+b") as f:
        f.seek(len(tokens.ids) - 3)  # in the validation text
        f.write(bytes([vocab.size]))
    split = layout(tokens, [d.sha256 for d in corpus.train], 2, 4, 0.1)
    split.train.window(0)  # the training windows are whole
    damaged = rf"is damaged: it holds id {vocab.size}, and the vocabulary has {vocab.size}"
    with pytest.raises(CorpusError, match=damaged):
        split.val[:]
    # A run directory that holds only what a failed start leaves (its logs
    # too, since 2026-12-04) is started again; one with a complete checkpoint,
    # or anything else, is refused as before.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "latest").mkdir(parents=True)
    (run_dir / "corpus.json").write_text("{}")
    (run_dir / ".lock").touch()
    (run_dir / "metrics.jsonl").touch()
    (run_dir / ".charlstm-processes").touch()  # a multi-process start that ended before it was removed
    check_run_dir(run_dir)
    (run_dir / "checkpoints" / "latest" / "4" / "meta").mkdir(parents=True)
    with pytest.raises(CharlstmError, match="already exists and is not empty"):
        check_run_dir(run_dir)
    (run_dir / "checkpoints" / "latest" / "4" / "meta").rmdir()
    (run_dir / "notes.txt").touch()
    with pytest.raises(CharlstmError, match="already exists and is not empty"):
        check_run_dir(run_dir)


def test_a_source_as_the_command_line_that_reads_it_again():
    """What resume's and tune's suggested commands give `charlstm train`: a
    suggestion without the run's --skip-bad-files failed on its bad files."""
    assert Source(("a.txt",)).arguments() == ["a.txt"]
    read = Source(("src", "more src"), "**/*.py", ("dev.py",), skip_bad_files=True)
    assert read.arguments() == ["src", "more src", "--glob", "**/*.py", "--skip-bad-files", "--val-file", "dev.py"]


def test_text_read_whole_names_every_file_that_is_not_text_at_once(tmp_path):
    """What eval and inspect read: as train does, every bad file is named, so
    that they are fixed together (the first alone used to be)."""
    from charlstm.errors import CorpusError
    from charlstm.text.corpus import read_texts

    (tmp_path / "good.txt").write_text("the king\n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "wide.txt").write_bytes("text".encode("utf-16"))
    with pytest.raises(CorpusError) as refused:
        read_texts(Source((str(tmp_path),)))
    assert str(refused.value).startswith("2 files are not usable text (") and "iconv -f CP1252" in str(refused.value)
    assert refused.value.details == (
        f"{tmp_path / 'latin.txt'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')",
        f"{tmp_path / 'wide.txt'}: UTF-16 text, not UTF-8: convert it first (iconv -f UTF-16 -t UTF-8 FILE > NEW)",
    )


@pytest.mark.parametrize(
    ("pattern", "alternatives"),
    [
        ("**/*.txt", ["**/*.txt"]),
        ("**/*.{txt,md}", ["**/*.txt", "**/*.md"]),
        ("{a,b}/{c,d}.py", ["a/c.py", "a/d.py", "b/c.py", "b/d.py"]),
        ("{a,{b,c}}.py", ["a.py", "b.py", "c.py"]),
        ("x{y}z.txt", ["x{y}z.txt"]),  # no comma: literal braces, as in a shell
        ("a{b.txt", ["a{b.txt"]),
    ],
)
def test_braces_give_a_pattern_several_alternatives(pattern, alternatives):
    from charlstm.text.folder import braces

    assert braces(pattern) == alternatives


def test_a_braced_glob_picks_every_kind_once(tmp_path):
    from charlstm.text.corpus import find

    for name in ("a.txt", "b.md", "sub/c.txt", "d.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("text\n", encoding="utf-8")
    found = find(Source((str(tmp_path),), "**/*.{txt,md,txt}"))
    assert [p.path.relative_to(tmp_path).as_posix() for p in found.train] == ["a.txt", "b.md", "sub/c.txt"]


def test_a_glob_that_matches_only_at_the_top_suggests_the_kind_asked_for_deeper(tmp_path):
    from charlstm.text.corpus import find

    for name in ("a.txt", "b.txt", "sub/c.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("text\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"it has 2 \.txt, 1 \.md\); .* such as '\*\*/\*\.md'$"):
        find(Source((str(tmp_path),), "*.md"))
    with pytest.raises(CorpusError, match=r"such as '\*\*/\*\.txt'$"):  # none of the kind asked for: the commonest
        find(Source((str(tmp_path),), "*.rst"))


def test_utf16_is_named_only_where_it_is_utf16():
    """Windows' "Unicode" files are named as UTF-16; a UTF-32 file or a
    binary one that starts with the same two bytes is not."""
    from charlstm.text.textfile import binary_or_invalid

    utf16 = "UTF-16 text, not UTF-8"
    assert binary_or_invalid("text\r\n".encode("utf-16")).startswith(utf16)
    assert binary_or_invalid(b"\xfe\xff" + "text".encode("utf-16-be")).startswith(utf16)
    binary = "looks like binary data, not text (a NUL byte at byte offset"
    assert binary_or_invalid("text".encode("utf-32")).startswith(binary)
    assert binary_or_invalid(b"\xff\xfe\x00\xd8\x00\x00").startswith(binary)  # a lone surrogate


def test_a_stray_nul_in_text_is_named_where_it_is():
    from charlstm.text.textfile import binary_or_invalid

    text = ("To be, or not to be, that is the question:\n" * 20).encode()
    assert binary_or_invalid(text[:500] + b"\x00" + text[500:]) == (
        "has a NUL byte at byte offset 500, which text never has: remove it (tr -d '\\000' < FILE > NEW)"
    )
    many = binary_or_invalid(b"\x00" * 5 + text)
    assert many == "looks like binary data, not text (a NUL byte at byte offset 0)"
    # A small binary file with one NUL is still binary: the rest is not UTF-8.
    blob = bytes(range(1, 256)) * 3
    assert binary_or_invalid(blob[:300] + b"\x00" + blob[300:]).startswith("looks like binary data")
    # A text cut at the probe's end inside a character is still text.
    cut = ("é" * 40_000).encode()[: (1 << 16) - 1]
    assert binary_or_invalid(cut[:500] + b"\x00" + cut[500:]).startswith("has a NUL byte at byte offset 500")


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        # `head -c` through a three-byte character: UTF-8 cut short, not a one-byte encoding.
        ("日".encode()[:2], "ends in the middle of a character (its last 2 bytes, b'\\xe6\\x97', begin one): the "),
        (b"\xc3", "ends in the middle of a character (its last byte, b'\\xc3', begins one)"),
    ],
)
def test_a_utf8_file_cut_short_is_named_so_whole_or_read_in_chunks(tmp_path, tail, expected):
    """Told to convert from CP1252 before (a walkthrough, 2026-12-05). Both
    readers: the one that reads a file whole and the chunked scan."""
    from charlstm.text.textfile import read_checked

    path = tmp_path / "cut.txt"
    path.write_bytes("un café, 日本\n".encode() * 10 + tail)
    assert read_checked(path)[1].startswith(expected)
    with pytest.raises(CorpusError) as err:
        prepare(Source((str(path),)))
    assert expected in str(err.value) + " ".join(err.value.details) and "CP1252" not in str(err.value)
    # Plain ASCII ending in one byte of Latin-1's: either could be; the one-byte encoding's advice stands.
    path.write_bytes(b"cafe au lait, " * 10 + b"caf\xe9")
    assert read_checked(path)[1] == "not valid UTF-8 (its last byte: b'\\xe9')"
    # Two bytes after plain ASCII ("é…" in Windows-1252): both possibilities, neither advice alone.
    path.write_bytes(b"She said: Ol\xe9\x85")
    assert "if the file was cut short" in read_checked(path)[1] and "iconv -f CP1252" in read_checked(path)[1]


def test_a_link_to_a_folder_that_double_star_passes_over_is_named(tmp_path):
    """'**' never goes through a link to a folder (Python's, as find's), and
    the folder's texts were left out in silence (a walkthrough, 2026-12-05)."""
    from charlstm.text.folder import folder_files

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.txt").write_text("linked text\n", encoding="utf-8")
    poems = tmp_path / "poems"
    write_folder(poems, 2)
    (poems / "more").symlink_to(tmp_path / "elsewhere")
    (poems / ".hidden").symlink_to(tmp_path / "elsewhere")  # hidden: never read, never named
    (tmp_path / "no-texts").mkdir()  # nothing the pattern would pick there: nothing to name
    (tmp_path / "no-texts" / "a.md").write_text("markdown\n", encoding="utf-8")
    (poems / "notes").symlink_to(tmp_path / "no-texts")
    (poems / "sub").mkdir()
    (poems / "same").symlink_to(poems / "sub")  # into the tree: what it holds is read anyway
    files, left_out, _ = folder_files(poems, "**/*.txt")
    assert len(files) == 2
    assert left_out == [
        (
            str(poems / "more"),
            f"a link to a folder ({tmp_path / 'elsewhere'}), which '**' does not follow: name it as well to read it",
        )
    ]
    # A pattern without '**', or with more after it, goes through it, as a shell's would: nothing to name.
    assert folder_files(poems, "*/*.txt") == ([poems / "more" / "a.txt"], [], [])
    assert folder_files(poems, "**/more/*.txt") == ([poems / "more" / "a.txt"], [], [])
    corpus = prepare(Source((str(poems),)))
    assert corpus.not_files == tuple(left_out)
    # A pattern that ends in '**' matches folders only (pathlib before Python 3.13): said so where it matches no file.
    if sys.version_info >= (3, 13):
        return
    with pytest.raises(CorpusError, match=r"a pattern that ends in '\*\*' matches folders only, '\*\*/\*' every file"):
        folder_files(poems, "**")


def test_a_linked_folder_too_large_to_search_is_named_unsearched(tmp_path, monkeypatch):
    """A link to a home folder or to / is searched through for a text only so
    far: past that it is named as a link '**' passes over, unsearched."""
    from charlstm.text import folder

    big = tmp_path / "big"
    for k in range(6):
        (big / f"d{k}").mkdir(parents=True)
        (big / f"d{k}" / "x.md").write_text("not picked\n", encoding="utf-8")
    (big / "d5" / "late.txt").write_text("picked, deep in\n", encoding="utf-8")
    poems = tmp_path / "poems"
    write_folder(poems, 1)
    (poems / "home").symlink_to(big)
    assert folder.folder_files(poems, "**/*.txt")[1] == [
        (str(poems / "home"), f"a link to a folder ({big}), which '**' does not follow: name it as well to read it")
    ]
    monkeypatch.setattr(folder, "LINK_SEARCH_ENTRIES", 4)
    assert folder.folder_files(poems, "**/*.txt")[1] == [
        (
            str(poems / "home"),
            f"a link to a folder ({big}), which '**' does not follow (a large tree, not searched through): name it "
            "as well to read it",
        )
    ]


def test_whole_files_held_out_are_counted_in_words():
    """One file held out of 25 read "1 whole files" (a walkthrough, 2026-12-05)."""
    from charlstm.text.manifest import describe_validation

    entry = {"validation": {"kind": "documents", "documents": 1, "chars": 40}, "chars": 1000, "documents": 25}
    assert describe_validation(entry, 0.05) == "1 whole file of 25 (4.0% of the text), chosen by their content's hash"
    entry["validation"]["documents"] = 3
    assert describe_validation(entry, 0.05).startswith("3 whole files of 25 ")
