import re
from pathlib import Path

import numpy as np
import pytest

from charlstm.errors import CorpusError
from charlstm.text.corpus import Source, resolve_corpus_path
from charlstm.text.streams import Streams, layout, split
from charlstm.text.textfile import read_corpus
from charlstm.text.tokenfile import open_tokens
from charlstm.text.tokens import prepare
from charlstm.text.vocab import Vocab


def test_streams_are_contiguous_and_targets_shifted():
    ids = np.arange(1000, dtype=np.int32)
    streams = Streams(ids, batch=4, seq_len=10)
    stream_len = 999 // 4
    assert len(streams) == stream_len // 10
    first, second = streams.window(0), streams.window(1)
    assert first.inputs.shape == first.targets.shape == (4, 10)
    np.testing.assert_array_equal(first.targets, first.inputs + 1)
    # Window 1 of every stream continues window 0 of the same stream.
    np.testing.assert_array_equal(second.inputs[:, 0], first.inputs[:, -1] + 1)
    np.testing.assert_array_equal(first.inputs[:, 0], np.arange(4) * stream_len)
    assert first.reset.shape == (4,) and first.reset.all() and not second.reset.any()


def test_streams_also_start_afresh_every_r_windows_staggered():
    streams = Streams(np.arange(10_000, dtype=np.int32), batch=8, seq_len=10, reset_windows=4)
    resets = np.stack([streams.window(w).reset for w in range(len(streams))])  # (W, B)
    assert resets[0].all()  # a new pass starts every stream afresh
    # Afterwards each stream restarts once every 4 windows, and the restarts
    # are spread evenly: 2 of the 8 streams at every step.
    assert (resets[1:].sum(axis=1) == 2).all()
    for b in range(8):
        gaps = np.diff(np.flatnonzero(resets[1:, b]))
        assert (gaps == 4).all()


def test_data_position_is_a_function_of_the_step():
    streams = Streams(np.arange(500, dtype=np.int32), batch=2, seq_len=10)
    wrapped = streams.window(len(streams))
    np.testing.assert_array_equal(wrapped.inputs, streams.window(0).inputs)
    assert wrapped.reset.all()


def test_too_short_text_says_what_would_work():
    with pytest.raises(CorpusError, match="too short.*batch_size"):
        Streams(np.arange(50, dtype=np.int32), batch=8, seq_len=10)


def test_split_holds_out_the_tail():
    train, val = split(np.arange(100), 0.1)
    assert train.tolist() == list(range(90))
    assert val.tolist() == list(range(90, 100))


def test_layout_of_one_file_is_its_head_and_its_tail(tiny_corpus, tiny_text):
    """One file: no boundary symbol, the training streams over its head and
    the last --val-fraction as validation, as before folders existed."""
    corpus = prepare(Source((str(tiny_corpus),)))
    vocab = Vocab.from_text(tiny_text)
    tokens = open_tokens(corpus, vocab)
    assert tokens.ids.dtype == np.uint8 and not tokens.boundary
    np.testing.assert_array_equal(tokens.ids, vocab.encode(tiny_text))
    data = layout(tokens, [corpus.train[0].sha256], batch=4, seq_len=16, val_fraction=0.1)
    assert data.split.kind == "tail"
    head, tail = split(vocab.encode(tiny_text), 0.1)
    assert len(data.train) == (len(head) - 1) // 4 // 16
    np.testing.assert_array_equal(data.val[:], tail)
    first, stream = data.train.window(0), (len(head) - 1) // 4  # stream 1 starts one stream's length in
    np.testing.assert_array_equal(first.inputs[1], head[stream : stream + 16])
    np.testing.assert_array_equal(first.targets[1], head[stream + 1 : stream + 17])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"abc\xff\xfedef", r"not valid UTF-8.*byte offset 3"),
        (b"\x7fELF\x00\x00\x01binary", "binary"),
        (b"ab\xe2\x82", r"ends in the middle of a UTF-8 character \(its last 2 bytes.*if the file was cut short"),
    ],
)
def test_unusable_corpus_files(tmp_path, content, message):
    path = tmp_path / "c.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError) as err:
        prepare(Source((str(path),)))
    assert re.search(message, " ".join((str(err.value), *err.value.details)))
    with pytest.raises(CorpusError, match=message):
        read_corpus(path)


def test_directory_is_not_a_text_file(tmp_path):
    with pytest.raises(CorpusError, match="folder"):
        read_corpus(tmp_path)


def test_corpus_hash_and_text(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("héllo\n", encoding="utf-8")
    corpus = read_corpus(path)
    assert corpus.text == "héllo\n"
    assert len(corpus.sha256) == 64


def test_shipped_corpus_stands_in_for_a_bare_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, shipped = resolve_corpus_path("shakespeare.txt")
    assert shipped and path.is_file() and path.name == "shakespeare.txt"
    with pytest.raises(CorpusError, match="not found.*shakespeare.txt"):
        resolve_corpus_path("missing.txt")
    # A path with a folder is taken literally: no silent substitution.
    with pytest.raises(CorpusError, match="not found"):
        resolve_corpus_path("elsewhere/shakespeare.txt")


def test_existing_file_wins_over_shipped_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("shakespeare.txt").write_text("mine", encoding="utf-8")
    path, shipped = resolve_corpus_path("shakespeare.txt")
    assert not shipped and path == Path("shakespeare.txt")


def test_a_pass_that_leaves_a_tenth_of_a_short_text_unread_says_so():
    """Each stream is read in whole windows, so its tail never is: 23% of a
    new user's 16 KB text in 64 streams of 64 (2026-12-04), a few
    thousandths of a megabyte."""
    from charlstm.training.setup_notes import _unread

    short = Streams(np.zeros(16_056, np.int32), 64, 64)
    said = _unread(short)
    assert said is not None and said.startswith("each pass trains on 12,288 of the 16,055 training characters (77%)")
    assert "the last 58 characters of each stream are never read" in said and "batch_size" in said
    assert _unread(Streams(np.zeros(1_000_000, np.int32), 64, 64)) is None
