import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charlstm.errors import CharlstmError
from charlstm.text.vocab import Vocab

TEXTS = [
    "To be, or not to be: that is the question.\n",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "emoji 🎭🗡️👑 and flags 🇩🇰, ZWJ 👩‍👩‍👧",
    "combining: e\u0301 vs \u00e9, tabs\tand\r\nCRLF, NUL-free control \x07",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int32
    assert ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.size == len(set(text))
    assert list(vocab.chars) == sorted(set(text))


def test_ids_follow_sorted_characters():
    vocab = Vocab.from_text("cabbage")
    assert vocab.chars == "abceg"
    assert vocab.encode("gab").tolist() == [4, 0, 1]


def test_unknown_characters_are_named():
    vocab = Vocab.from_text("hello")
    with pytest.raises(CharlstmError, match="'xz'"):
        vocab.encode("hexz")
    assert vocab.unknown("hi🎭") == ["i", "🎭"]


def test_character_above_every_vocabulary_entry_is_rejected():
    vocab = Vocab.from_text("abc")
    with pytest.raises(CharlstmError):
        vocab.encode("中")


def test_vocabulary_must_be_unique_and_not_empty():
    with pytest.raises(CharlstmError):
        Vocab("aba")
    with pytest.raises(CharlstmError):
        Vocab("")


def test_a_grown_vocabulary_keeps_every_old_id():
    """Fine-tuning appends the characters a model never saw: ids stay put,
    and encoding and the token files' lookup table follow the new order."""
    old = Vocab.from_text("the king")
    grown = old.grown("王 the queen 后\ufdd0")
    assert grown.chars[: old.size] == old.chars
    assert grown.chars[old.size :] == "".join(sorted("qu王后\ufdd0"))
    text = "the queen 王"
    ids = grown.encode(text)
    assert grown.decode(ids) == text
    assert ids[:3].tolist() == old.encode("the").tolist()
    table = grown.lookup_table()
    assert [int(table[ord(c)]) for c in text] == ids.tolist()
    assert table[ord("z")] == -1
    assert grown.boundary_id == grown.chars.index("\ufdd0") and old.boundary_id is None
    assert old.grown("king") is old


@given(st.text(min_size=1, max_size=200))
def test_round_trip_any_unicode_text(text):
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.encode(text).max() < vocab.size


def test_chunked_conversion_matches_whole_text(monkeypatch):
    """Large texts are converted piece by piece; pieces must join seamlessly."""
    import charlstm.text.vocab as vocab_module

    text = "ab🎭\n中文 " * 50
    whole = Vocab.from_text(text)
    ids = whole.encode(text)
    monkeypatch.setattr(vocab_module, "CHUNK", 7)
    assert Vocab.from_text(text) == whole
    np.testing.assert_array_equal(whole.encode(text), ids)
    assert whole.decode(ids) == text
    with pytest.raises(CharlstmError, match="'x'"):
        whole.encode(text + "x")
