# SPDX-License-Identifier: MIT
"""The `ppi` entry point: composes the verbs and turns errors into one line and an exit code.

Exit codes: 0 success; 1 a `PpiError` (bad input, stale cache, foreign checkpoint) or an unexpected
failure, printed as one line on stderr; 2 a usage error (Typer/Click); 130 interrupted.
`PPI_DEBUG=1` adds the traceback. Local variables are never shown: they may hold patient data.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from types import ModuleType
from typing import Annotated, Any

import typer

from ppi_cli import __version__
from ppi_cli.cli import (
    bench_prepare_lidc,
    bench_saliency,
    bench_train,
    compare,
    cross_site,
    crossval,
    demo,
    evaluate,
    explain,
    predict,
    prepare_folder,
    prepare_ga,
    prepare_lidc,
    prepare_table,
    recipe,
    segment_eval,
    sweep,
    synth_ga,
    synth_lidc,
    train,
)
from ppi_cli.errors import PpiError

__all__ = ["app", "main", "run", "VERBS"]

# Typer >= 0.22 vendors Click, older Typer re-exports it: take the classes from Typer either way.
_EXIT = typer.Exit
_ABORT = typer.Abort
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# verb -> the modules of ppi_cli.cli that provide it, each with a `register(app_or_group)`. Verbs in
# GROUPS are groups of sub-commands, the others plain commands. Each verb module imports only Typer
# and cli/options.py at module level and its domain module inside the command, so `ppi --help`
# stays at Typer's own start-up time (measured in CHANGELOG.md, 0.2 s).
# Listed in `ppi --help` in this order: the order of the workflow, then the rest.
VERBS: dict[str, tuple[ModuleType, ...]] = {
    "prepare": (prepare_lidc, prepare_ga, prepare_folder, prepare_table),
    "train": (train,),
    "crossval": (crossval,),
    "cross-site": (cross_site,),
    "explain": (explain,),
    "segment-eval": (segment_eval,),
    "predict": (predict,),
    "evaluate": (evaluate,),
    "compare": (compare,),
    "sweep": (sweep,),
    "synth": (synth_lidc, synth_ga),
    "demo": (demo,),
    "bench": (bench_saliency, bench_train, bench_prepare_lidc),
    "recipe": (recipe,),
}
GROUPS = {"prepare": "Turn raw data into a prepared cache.", "synth": "Generate synthetic raw data.",
          "bench": "Measure speed against the floor and against other libraries.",
          "recipe": "List, show and check recipes."}

app = typer.Typer(
    name="ppi",
    help="Interpretable CNNs for clinical imaging studies with Proactive Pseudo-Intervention (PPI).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ppi {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit.",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    """Interpretable CNNs for clinical imaging studies with Proactive Pseudo-Intervention (PPI)."""


def _compose() -> None:
    for verb, modules in VERBS.items():
        if verb in GROUPS:
            group = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", help=GROUPS[verb])
            for module in modules:
                module.register(group)
            app.add_typer(group, name=verb)
        else:
            modules[0].register(app)


_compose()


_INTERRUPTED = "ppi: interrupted; finished outputs are intact and the command can resume"


def _flags_without_placeholder(command: Any) -> Any:
    """Show on/off flags as `--baseline`, not `--baseline <bool>`: they take no value."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_without_placeholder(sub)
    return command


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code instead of exiting (tests call this)."""
    debug = os.environ.get("PPI_DEBUG", "") not in ("", "0")
    command = _flags_without_placeholder(typer.main.get_command(app))
    commands = getattr(command, "commands", {})  # Typer lists groups after commands; keep the workflow's order
    command.commands = {name: commands[name] for name in VERBS if name in commands} | commands  # type: ignore
    try:
        result = command.main(args=argv, prog_name="ppi", standalone_mode=False)
        if result == 130:  # Typer returns Ctrl-C as exit code 130, silently
            print(_INTERRUPTED, file=sys.stderr)
        return result if isinstance(result, int) else 0
    except PpiError as exc:
        _report(f"{exc.kind}: {exc.one_line()}", debug, exc)
        return 1
    except _EXIT as exc:
        return exc.exit_code
    except _CLICK_ERROR as exc:
        _show_usage_error(exc)
        return exc.exit_code
    except (_ABORT, KeyboardInterrupt) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, KeyboardInterrupt) or cause is None or isinstance(cause, KeyboardInterrupt):
            print(_INTERRUPTED, file=sys.stderr)
            return 130
        return _report_unexpected(cause, debug)  # Click turns an EOFError into Abort: it was no Ctrl-C
    except Exception as exc:
        return _report_unexpected(exc, debug)


def _report_unexpected(exc: BaseException, debug: bool) -> int:
    """One line for an error that is no `PpiError`; never its message's values, which may come from a header."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # Imported here: files.py loads NumPy, and `ppi --help` imports this module (start-up time).
        from ppi_cli.files import disk_full_error

        folder = os.path.dirname(os.fsdecode(exc.filename)) if exc.filename else "."
        _report(f"{disk_full_error(folder or '.', 0).one_line()}", debug, exc)
    elif isinstance(exc, OSError):  # a path the user gave: unreadable, missing, not a folder
        name = f": {os.path.basename(os.fsdecode(exc.filename))}" if exc.filename else ""
        _report(f"error: {exc.strerror or type(exc).__name__}{name}", debug, exc)
    else:  # a bug: one line naming where it happened; the message may quote patient data, so only with PPI_DEBUG
        _report(f"internal error: {type(exc).__name__} at {_where(exc)} (rerun with PPI_DEBUG=1 for the traceback "
                "and report it)", debug, exc)
    return 1


def _where(exc: BaseException) -> str:
    """`module.py:line` of the innermost frame in ppi_cli (else the innermost frame) of an exception."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}ppi_cli{os.sep}" in f.filename] or frames
    if not ours:
        return "an unknown place"
    frame = ours[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


def _report(line: str, debug: bool, exc: BaseException) -> None:
    if debug:
        traceback.print_exception(exc)
    print(f"ppi: {' '.join(line.split())}", file=sys.stderr)


def _show_usage_error(exc: Exception) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    except Exception:  # rich formatting is cosmetic; fall back to Click's plain text
        exc.show()  # type: ignore[attr-defined]
