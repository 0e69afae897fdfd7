"""`charlstm sample`: text to stdout, a file, or JSON; streamed on a terminal."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from charlstm.arguments import writable_place
from charlstm.cli.app import NewestRunArgument, Quiet, fail, given, path_given, say, use_cache, user_errors
from charlstm.cli.format import checkpoint_text
from charlstm.config import SampleConfig, to_dict
from charlstm.errors import named, with_escapes
from charlstm.flags import option
from charlstm.training.runlog import strict_json

if TYPE_CHECKING:
    from charlstm.api import Model
    from charlstm.core.generation import Completion


# Out of the parameters' annotations, which Typer evaluates as strings: an
# f-string there may hold no backslash before Python 3.12.
_PRIME_HELP = f'Text to start from; it is printed, then continued (escapes work as in {option("stop")}: "ROMEO.\\n").'
_STOP_HELP = (
    "End each sample at the first occurrence of this text, which is left out (repeatable; "
    f'escapes such as "\\n" work: {option("stop")} "\\n\\n" ends at a blank line).'
)


def _read_prime(prime: str, prime_file: Path | None) -> str:
    if prime_file is None:
        return unescape(prime, option("prime"))
    if prime:
        fail(f"give {option('prime')} or --prime-file, not both")
    try:
        # As it is: universal newlines would turn a '\r\n' into '\n', a
        # prime the model read differently or never saw.
        with prime_file.open(encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError:
        fail(f"--prime-file {prime_file} is not UTF-8 text")
    except OSError as err:
        fail(f"cannot read --prime-file {prime_file}: {err.strerror}")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.?)", re.DOTALL)
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def unescape(text: str, option: str) -> str:
    """`text` with backslash escapes read as Python reads them (\\n, \\t,
    \\r, \\\\, \\xHH, \\uHHHH, \\UHHHHHHHH), so that `--stop "\\n\\n"` means a
    blank line; a surrogate pair (\\ud83d\\udc69) is the one character it
    stands for, as in JSON. Under a locale that is not UTF-8 (LC_ALL=C with
    PYTHONUTF8=0) Python keeps the bytes of a typed 'é' undecoded: read as
    the UTF-8 the terminal sent."""
    with contextlib.suppress(UnicodeError):
        text = os.fsencode(text).decode("utf-8")
    typed = f"{option} {shlex.quote(text)}"  # as typed: repr() would double every backslash
    if any("\ud800" <= c <= "\udfff" for c in text):  # bytes that are not UTF-8, kept undecoded
        fail(f"{option} is not UTF-8 text")

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _ESCAPES:
            return _ESCAPES[code]
        if len(code) > 1:
            if int(code[1:], 16) > sys.maxunicode:
                fail(f"{typed}: \\{code} is past the last character, \\U{sys.maxunicode:08x}")
            return chr(int(code[1:], 16))
        if code == "":
            fail(f"{typed} ends with a lone backslash; \\\\ is a backslash")
        if code in _HEX_DIGITS:
            fail(f"{typed}: \\{code} takes {_HEX_DIGITS[code]} hex digits (\\xHH, \\uHHHH, \\UHHHHHHHH)")
        fail(
            f"{typed}: unknown escape \\{code}; use \\n, \\t, \\r, \\xHH, \\uHHHH, \\UHHHHHHHH, or \\\\ for a backslash"
        )

    read = _ESCAPE.sub(one, text)
    try:
        return read.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        fail(
            f"{typed}: a \\uHHHH from U+D800 to U+DFFF is half of a surrogate pair, and no character alone: "
            "give both halves (\\ud83d\\udc69), or the character as \\UHHHHHHHH (\\U0001f469)"
        )


def sample(
    ctx: typer.Context,
    run: NewestRunArgument = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            option("checkpoint"),
            "-c",
            help="The same as RUN, given as an option.",
            show_default=False,
            parser=path_given,
        ),
    ] = None,
    temp: Annotated[
        float,
        typer.Option(
            option("temperature"),
            "--temperature",
            "-t",
            help="Sampling temperature, 0 to 100: lower is safer, higher is wilder; 0 is greedy.",
        ),
    ] = SampleConfig.temperature,
    greedy: Annotated[
        bool, typer.Option(help=f"Always take the most likely character (same as {option('temperature')} 0).")
    ] = False,
    top_k: Annotated[
        int, typer.Option(option("top_k"), help="Draw only from the k most likely characters (0: all).")
    ] = SampleConfig.top_k,
    top_p: Annotated[
        float,
        typer.Option(
            option("top_p"),
            help="Draw only from the most likely characters that make up this probability (above 0, at most 1).",
        ),
    ] = SampleConfig.top_p,
    length: Annotated[int, typer.Option(option("length"), "-n", help="Characters to generate.")] = SampleConfig.length,
    prime: Annotated[
        str,
        typer.Option(
            option("prime"),
            help=_PRIME_HELP,
        ),
    ] = SampleConfig.prime,
    prime_file: Annotated[
        Path | None,
        typer.Option(
            "--prime-file", help=f"Start from this file's text instead of {option('prime')}.", parser=path_given
        ),
    ] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            option("stop"),
            metavar="<str>",  # one at a time, repeated; Typer would write <list[str]>
            help=_STOP_HELP,
        ),
    ] = None,
    num_samples: Annotated[
        int,
        typer.Option(
            option("num_samples"), "-N", help="Independent samples, generated together (8,192 at a time at most)."
        ),
    ] = SampleConfig.num_samples,
    seed: Annotated[
        int,
        typer.Option(
            option("seed"), help="Random seed (-2147483648 to 2147483647); the same seed gives the same text."
        ),
    ] = SampleConfig.seed,
    output: Annotated[
        Path | None,
        typer.Option("--output", "--out", "-o", help="Write to this file instead of stdout.", parser=path_given),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per sample (text and settings), one per line.")
    ] = False,
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream", help="Print text as it is generated [default: when stdout is a terminal]."
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Generate new text from a trained model."""
    if run is not None and checkpoint is not None:
        fail(f"give the run as RUN or with {option('checkpoint')}, not both")
    if greedy and given(ctx, ["temp"]) and temp != 0:
        fail(f"give --greedy or {option('temperature')}, not both: --greedy is {option('temperature')} 0")
    # Filters that are on (not --top-k 0 or --top-p 1), taken silently beside a greedy draw, as if they
    # chose among the characters (a walkthrough, 2026-12-06).
    filters = [option("top_k")] * (top_k != 0) + [option("top_p")] * (top_p != 1)
    if filters and (greedy or temp == 0):
        asked = "--greedy" if greedy else f"{option('temperature')} 0"
        fail(f"give {asked} or {filters[0]}, not both: {asked} takes the most likely character, which they always keep")
    with user_errors():
        request = SampleConfig(
            length=length,
            temperature=0.0 if greedy else temp,
            prime=_read_prime(prime, prime_file),
            seed=seed,
            top_k=top_k,
            top_p=top_p,
            num_samples=num_samples,
            stop=tuple(unescape(s, option("stop")) for s in stop or ()),
        )
        if output is not None and output.is_dir():  # found now, not after generating
            fail(f"--output {output} is a folder; name a file to write")
        if output is not None:
            writable_place(output, "--output")
        from charlstm import api

        use_cache()
        model = api.load(run or checkpoint)
        note = f"sampling from {checkpoint_text(model)}"
        streamable = num_samples == 1 and not as_json and output is None
        if stream and not streamable and not quiet:
            say(
                f"note: --stream streams one sample to stdout; {option('num_samples')}, --json and --output write "
                "all the text at once"
            )
        if (stream if stream is not None else sys.stdout.isatty()) and streamable:
            _escape_what_stdout_cannot_show(model.vocab.chars, quiet)
            pieces = model.stream(request)  # checks the prime before anything is printed
            if not quiet:
                say(note)
            _stream_one(pieces, request.prime, _shown_on(sys.stdout))
            return
        if output is None and not as_json:
            _escape_what_stdout_cannot_show(model.vocab.chars, quiet)
        model.check(request)  # a prime or stop text the model cannot read or write is refused before the note
        if not quiet:
            # Before the generating, which takes a while for long or many
            # samples (it came after, so a long wait said nothing at all).
            say(note)
        done = model.complete(request)  # before --output is opened: a bad prime leaves the file alone
        text = _render(done, request, model, as_json)
        if output is None:
            sys.stdout.write(text if as_json else _shown_on(sys.stdout)(text))
            return
        api.runs.write_text(output, text, f"--output {output}")  # whole, or an earlier file left as it was
        if not quiet:
            say(f"wrote {len(done)} sample{'s' if len(done) > 1 else ''} to {output}")


def _escape_what_stdout_cannot_show(chars: str, quiet: bool) -> None:
    """Where stdout's encoding cannot hold some of the model's characters
    (PYTHONIOENCODING=ascii, a Latin-1 terminal), write them as escapes
    (\\xe9), and say so, rather than end with a traceback and no text."""
    from charlstm.api.model import BOUNDARY  # here: the CLI starts without JAX

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    unshown = [c for c in chars if c != BOUNDARY and not _encodes(c, encoding)]  # the boundary is never written
    if not unshown or not isinstance(sys.stdout, io.TextIOWrapper):
        return
    sys.stdout.reconfigure(errors="backslashreplace")
    if not quiet:
        say(
            f"note: stdout's encoding ({encoding}) cannot show {len(unshown)} of the model's characters "
            f"({named(unshown[:5])}{', ...' if len(unshown) > 5 else ''}): they are written as escapes; "
            "--output FILE writes them as UTF-8, as does PYTHONIOENCODING=utf-8"
        )


def _encodes(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _render(done: list[Completion], request: SampleConfig, model: Model, as_json: bool) -> str:
    if as_json:
        settings = {"checkpoint": str(model.path), "step": model.step, **to_dict(request)}
        del settings["prime"], settings["num_samples"]
        settings["stop"] = list(request.stop)
        prime = request.prime or model.default_prime_text  # what the model read first, as text
        return "".join(
            strict_json({"sample": i, "prime": prime, "text": c.text, "finish_reason": c.finish_reason, **settings})
            + "\n"
            for i, c in enumerate(done, 1)  # counted from 1, as the plain output's "sample 1 of 3"
        )
    parts = [_with_newline(request.prime + c.text) for c in done]
    if len(parts) > 1:
        parts = [f"----- sample {i + 1} of {len(parts)} -----\n{p}" for i, p in enumerate(parts)]
    return "\n".join(parts)


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _shown_on(out: object) -> Callable[[str], str]:
    """How text is written to `out`: on a terminal, the control characters
    of a model's text (an escape sequence learned from a log, a bell) as
    escapes, not commands that recolour the terminal beyond the command's
    end (a walkthrough, 2026-12-06), and Unicode's line and paragraph
    separators; line breaks, tabs and carriage returns (a text of CRLF
    lines) as they are. A file or pipe gets the text as generated."""
    isatty = getattr(out, "isatty", None)
    if isatty is None or not isatty():
        return str
    return lambda text: with_escapes(text, ("Cc", "Zl", "Zp"), keep="\n\t\r")


def _stream_one(pieces: Iterator[list[str]], prime: str, shown: Callable[[str], str]) -> None:
    sys.stdout.write(shown(prime))
    last = prime
    try:
        for piece in pieces:
            sys.stdout.write(shown(piece[0]))
            sys.stdout.flush()
            last = piece[0] or last
    except KeyboardInterrupt:  # the shell's prompt starts on a line of its own
        if not last.endswith("\n"):
            with contextlib.suppress(OSError):
                sys.stdout.write("\n")
                sys.stdout.flush()
        raise
    if not last.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
