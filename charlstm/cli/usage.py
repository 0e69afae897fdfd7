"""What a mistyped command line is told: Click's message made plainer.

One line on stderr instead of a usage block: the value that was refused,
the closest options first (`--tmep`: "did you mean --temp?"), why `resume`
does not take an option of `train`'s, where charlstm's own options go, and
which `--help` to read.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import typer

from charlstm.flags import option


def usage_error(
    err: typer.TyperException, argv: list[str], commands: Mapping[str, Any], before_commands: Sequence[str] = ()
) -> str:
    """Click's message, the value that was refused, and where help is.
    `before_commands`: charlstm's own options (--no-cache), which a command
    does not take after its name."""
    message = _closest_first(err.format_message().rstrip("."))
    param = getattr(err, "param", None)
    if getattr(param, "param_type_name", None) == "option":
        value = _given(argv, [*param.opts, *param.secondary_opts])  # type: ignore[union-attr]
        if value is not None and repr(value) not in message:
            message += f" (got {value!r})"
    ctx = getattr(err, "ctx", None)
    # The parser's own errors (an option without its value) carry no context: the command is the first word.
    # After charlstm's own options (`charlstm --no-cache train x --steps`), which take no values.
    first = next((word for word in argv if not word.startswith("-")), None)
    where = ctx.command_path if ctx is not None else "charlstm" + (f" {first}" if first in commands else "")
    given = getattr(err, "option_name", None)
    command = where.split()[-1]  # "resume", however charlstm was started (`python -m charlstm resume`)
    if command == "resume" and given == option("fill_time"):
        # Not part of the model or data layout: a start-up choice, spent by then.
        message = (
            f"No such option: {given} (a run is fitted to its time when it starts; a resumed one trains on to "
            f"the step count that fitting saved: give {option('steps')} for another total, {option('max_seconds')} "
            "for this session's limit)"
        )
    elif command == "resume" and given in ("-o", option("out")):
        message = (
            f"No such option: {given} (a run resumes in its own folder: copy the folder first to train a copy on "
            "elsewhere)"
        )
    elif command == "resume" and given is not None and "train" in _commands_taking(given, commands):
        # `resume RUN -b 32`: an option of train's that a run keeps for good.
        message = (  # without Click's guesses at what was meant (--layers: "Possible options: --lr")
            f"No such option: {given} ({given} is fixed when a run starts: a resumed run goes on as it was "
            f"trained; start a new run to change it, and charlstm train TEXT {option('init_from')} RUN keeps this "
            "one's weights if the model's size stays)"
        )
    elif command == "resume" and message == "Missing argument 'RUN'":
        # sample, info and plot take the newest run by default; resume, which trains, names its run.
        message = "Missing argument 'RUN' (the run folder to continue; 'charlstm runs' lists them, newest last)"
    elif given == "--version" and command in commands:  # it stands alone
        message = "No such option: --version (charlstm --version prints the version, on its own)"
    elif given in before_commands and ctx is not None and command in commands:
        message = f"No such option: {given} ({given} goes before the command: charlstm {given} {ctx.info_name} ...)"
    elif message.startswith("No such option") and given and (takers := _commands_taking(given, commands)):
        if command not in commands:  # `charlstm --preset tiny train ...`
            named = next((word for word in argv if word in takers), takers[0])  # the command on the line, if any
            message = (
                f"No such option: {given} (an option of {_listed(takers)}: it goes after the command, as in "
                f"charlstm {named} ... {given} ...)"
            )
        elif close := _close_option(given, commands.get(command)):  # `eval RUN --stream`: --streams, surely
            message = f"No such option: {given} (did you mean {close}? {given} is an option of {_listed(takers)})"
        else:  # `charlstm train TEXT --temp 0.5`: Click would guess among train's options
            here = _meant(given, commands.get(command))  # `tune TEXT --max-time 1`: --budget-s
            message = (
                f"No such option: {given} (an option of charlstm {_listed(takers)}, not of {command}"
                f"{f'; {command} takes {here}' if here else ''})"
            )
    elif message.startswith("No such option") and (meant := _meant(given, commands.get(command))):
        message = f"No such option: {given} (did you mean {meant}?)"
    if message.endswith("?"):  # Click's guess at what was meant: "Did you mean 'train'?"
        return f"{message} (see '{where} --help')"
    return f"{message}; see '{where} --help'"


# How like "--help" a mistyped option must be to be offered it: --hlep,
# --hepl and --help-me are (0.83, 0.83, 0.8), --temp is not (0.67).
HELP_LIKE = 0.75


def _similar(given: str, option: str) -> float:
    return difflib.SequenceMatcher(None, given, option).ratio()


def _closest_first(message: str) -> str:
    """Click's "(Possible options: --help, --stop, --temp)" for `--tmep`, in
    its alphabetical order, as "(did you mean --temp, or --stop?)": the
    closest first, and --help left out unless it is that close itself
    (`--hlep`, `--help-me`): Click offers it for every option that starts
    with --h or ends in p."""
    found = re.fullmatch(r"No such option: (\S+) \(Possible options: (.+)\)", message)
    if found is None:
        return message
    given = found[1]
    options = [o for o in found[2].split(", ") if o != "--help" or _similar(given, o) >= HELP_LIKE]
    if not options:
        return f"No such option: {given}"
    options.sort(key=lambda o: -_similar(given, o))
    others = f", or {', '.join(options[1:])}" if len(options) > 1 else ""
    return f"No such option: {given} (did you mean {options[0]}{others}?)"


# Options of other tools that mean one of charlstm's, where no spelling is
# close: the first of those the command takes.
_MEANT = {
    "--minutes": (option("max_seconds"), option("budget_s")),
    "--max-minutes": (option("max_seconds"), option("budget_s")),
    "--time": (option("max_seconds"), option("budget_s")),
    "--epochs": (option("steps"),),
    option("max_seconds"): (option("budget_s"),),  # tune's time: a trial's, in seconds
    "--iterations": (option("steps"),),
}


def _options(command: Any) -> list[str]:
    return [] if command is None else [o for p in command.params for o in (*p.opts, *p.secondary_opts)]


def _meant(option: str | None, command: Any) -> str | None:
    """What another tool's `option` is called here, for `command`."""
    taken = _options(command)
    return next((meant for meant in _MEANT.get(option or "", ()) if meant in taken), None)


def _close_option(option: str, command: Any) -> str | None:
    """`command`'s option that `option` nearly is: spelled almost alike, or
    one inside the other (--stream: --streams; --output: --out; --length:
    --max-length), if one is."""
    longs = [o for o in _options(command) if o.startswith("--")]
    close = difflib.get_close_matches(option, longs, n=1, cutoff=0.8)
    inside = [o for o in longs if min(len(o), len(option)) >= 5 and (o in option or option[2:] in o)]
    found = close or inside
    return found[0] if found else None


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _commands_taking(option: str, commands: Mapping[str, Any]) -> list[str]:
    """The commands that take `option`, by name."""
    return [name for name, c in commands.items() if c is not None and any(option in p.opts for p in c.params)]


def _given(argv: list[str], names: list[str]) -> str | None:
    """What followed the last of `names` on the command line, if anything."""
    found = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                found = argv[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif len(name) == 2 and not name.startswith("--") and arg.startswith(name) and len(arg) > 2:
                found = arg[2:]
    return found
