"""`--stop`: a sample ends at the first occurrence of a stop text."""

import itertools
import json

import jax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import SampleConfig
from charlstm.core.generation import STOP_CHUNK, StopScanner, complete, sample_texts, stream_texts
from charlstm.core.model import init_params
from charlstm.errors import CharlstmError

from .test_sample import CFG, VOCAB


def _first_cut(text: str, stops: list[str]) -> str:
    """The text up to the stop that is complete first, written out the slow way."""
    for end in range(len(text) + 1):
        starts = [end - len(s) for s in stops if end >= len(s) and text[end - len(s) : end] == s]
        if starts:
            return text[: min(starts)]
    return text


@settings(max_examples=200, deadline=None)
@given(
    text=st.text("abc\n", max_size=60),
    stops=st.lists(st.text("abc\n", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_scanner_cuts_at_the_first_stop_however_the_text_is_split(text, stops, cuts):
    scanner = StopScanner(stops)
    bounds = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    out = "".join(scanner.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    out += "" if scanner.stopped else scanner.finish()
    assert out == _first_cut(text, stops)
    assert scanner.stopped == any(s in text for s in stops)


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.PRNGKey(5))


def test_a_sample_ends_where_its_stop_text_first_occurs(params):
    request = SampleConfig(300, temperature=1.2, prime="ab", seed=4, num_samples=3)
    full = sample_texts(CFG, params, VOCAB, request)
    stop = full[0][40:42]  # occurs in sample 0 at 40 at the latest
    done = complete(CFG, params, VOCAB, SampleConfig(300, 1.2, "ab", 4, num_samples=3, stop=(stop, "dddddd")))
    for whole, (text, reason) in zip(full, done, strict=True):
        assert text == _first_cut(whole, [stop])
        assert reason == ("stop" if stop in whole else "length")
    assert done[0].finish_reason == "stop" and len(done[0].text) <= 40


def test_streamed_pieces_with_a_stop_join_to_the_same_text(params):
    request = SampleConfig(2 * STOP_CHUNK + 10, temperature=1.0, seed=1, stop=("\nd",))
    whole = complete(CFG, params, VOCAB, request)[0]
    pieces = list(stream_texts(CFG, params, VOCAB, request, chunk=7))
    assert "".join(p[0] for p in pieces) == whole.text
    unstopped = sample_texts(CFG, params, VOCAB, SampleConfig(request.length, 1.0, seed=1))[0]
    assert whole.text == _first_cut(unstopped, ["\nd"])


def test_cli_prime_reads_escapes_as_stop_does(trained_run, tmp_path):
    """`--prime "ab\\n"` is the prime "ab" and a new line, as in a
    --prime-file; a doubled backslash is one backslash."""
    run_dir, _ = trained_run
    runner = CliRunner()
    (tmp_path / "prime.txt").write_text("ab\n", encoding="utf-8")
    base = ["sample", "-c", str(run_dir), "-n", "40", "--seed", "3", "--json"]
    typed = runner.invoke(app, [*base, "--prime", "ab\\n"])
    from_file = runner.invoke(app, [*base, "--prime-file", str(tmp_path / "prime.txt")])
    assert typed.exit_code == 0, typed.output
    assert json.loads(typed.stdout)["prime"] == "ab\n"
    assert json.loads(typed.stdout)["text"] == json.loads(from_file.stdout)["text"]
    refused = runner.invoke(app, [*base, "--prime", "a\\\\b"])  # one backslash, which this model never saw
    assert refused.exit_code == 2 and "never saw: '\\'" in refused.stderr


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        (("",), "stop must not be empty"),
        (7, "stop must be a list of texts"),
        (("a" * 257,), "at most 256 characters"),
        (tuple("abcdabcdabcdabcda"), "at most 16 stop texts"),
    ],
)
def test_bad_stop_values(stop, message):
    with pytest.raises(CharlstmError, match=message):
        SampleConfig(stop=stop)


def test_one_stop_string_is_one_text_as_model_sample_and_the_server_take_it():
    assert SampleConfig(stop="ab").stop == ("ab",)
    assert SampleConfig(stop=["ab", "c"]).stop == ("ab", "c")


def test_a_stop_the_model_can_never_write_is_refused(params):
    with pytest.raises(CharlstmError, match=r"stop text 'a!' contains characters the model never writes: '!'"):
        complete(CFG, params, VOCAB, SampleConfig(5, stop=("a!",)))


def test_cli_stop_json_says_why_each_sample_ended(trained_run):
    run_dir, _ = trained_run
    runner = CliRunner()
    base = ["sample", "-c", str(run_dir), "-n", "200", "--seed", "2", "-N", "2", "--json"]
    plain = [json.loads(line) for line in runner.invoke(app, base).stdout.splitlines()]
    assert [r["finish_reason"] for r in plain] == ["length", "length"] and plain[0]["stop"] == []
    result = runner.invoke(app, [*base, "--stop", "\\n", "--stop", "qqqqq"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for before, after in zip(plain, records, strict=True):
        assert after["text"] == _first_cut(before["text"], ["\n"])
        assert after["finish_reason"] == ("stop" if "\n" in before["text"] else "length")
        assert after["stop"] == ["\n", "qqqqq"]
    text = runner.invoke(app, ["sample", "-c", str(run_dir), "-n", "200", "--seed", "2", "--stop", "\\n"]).stdout
    assert text == _first_cut(plain[0]["text"], ["\n"]) + "\n"


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        ("", "--stop must not be empty"),
        ("a\\q", "unknown escape \\q"),
        ("\\x4", "\\x takes 2 hex digits"),
        ("~~", "never writes: '~'"),
        # A surrogate pair is the character it stands for, as in JSON; half of one is none (it was named as a
        # character the model never writes; a walkthrough, 2026-12-06).
        ("\\ud83d\\udc69", "never writes: '\U0001f469'"),
        ("\\U0001f469", "never writes: '\U0001f469'"),
        ("\\ud83d", "\\ud83d': a \\uHHHH from U+D800 to U+DFFF is half of a surrogate pair"),
        ("\\U00110000", "\\U00110000 is past the last character, \\U0010ffff"),
        ("\\U1234", "\\U takes 8 hex digits"),
        ("a\udced\udca0", "--stop is not UTF-8 text"),  # bytes a terminal sent that are not UTF-8, as Python keeps them
    ],
)
def test_cli_bad_stop_is_one_line_and_status_2(trained_run, stop, message):
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run[0]), "--stop", stop])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_a_prime_file_is_read_as_it_is(trained_run, tmp_path):
    """Its '\\r\\n' stays a carriage return and a new line (universal newlines
    made it '\\n': a prime the model never saw was read as another)."""
    (tmp_path / "prime.txt").write_bytes(b"ab\r\n")
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run[0]), "--prime-file", str(tmp_path / "prime.txt")])
    assert result.exit_code == 2 and "never saw: '\\r'" in result.stderr, result.output


def test_the_document_boundary_is_no_character_of_a_prime_or_a_stop_text():
    """A model of several documents has U+FDD0 in its vocabulary, where its
    files meet; a prime may start with it (a document's start, what an
    empty prime means to such a model) but not hold it further on, and no
    stop text may (they were taken, and the text after it read as a new
    document; a walkthrough, 2026-12-06)."""
    from charlstm.core.generation import check_request
    from charlstm.text.vocab import BOUNDARY, Vocab

    vocab = Vocab.from_text("ab\n" + BOUNDARY)
    assert vocab.boundary_id is not None
    check_request(vocab, SampleConfig(prime=BOUNDARY + "ab", stop=("b\n",)))
    with pytest.raises(CharlstmError, match=r"prime contains characters the model never saw: '\\ufdd0'; remove them"):
        check_request(vocab, SampleConfig(prime="a" + BOUNDARY + "b"))
    with pytest.raises(CharlstmError, match=r"stop text '\\ufdd0' contains characters the model never writes"):
        check_request(vocab, SampleConfig(stop=(BOUNDARY,)))


def test_a_stop_text_in_another_unicode_form_says_which_the_model_knows():
    from charlstm.core.generation import check_request
    from charlstm.text.vocab import Vocab

    vocab = Vocab.from_text("cafe\u0301 ")
    with pytest.raises(CharlstmError, match=r"never writes: '\u00e9'; the model knows them written in Unicode's NFD"):
        check_request(vocab, SampleConfig(stop=("caf\u00e9",)))


def test_help_explains_stop():
    out = CliRunner().invoke(app, ["sample", "--help"]).stdout
    assert "--stop" in out and "blank line" in out
