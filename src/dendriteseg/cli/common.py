"""What every command module shares: the Typer app, one-line errors, printing, tables, progress."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dendriteseg.errors import InputError, internal_message, user_message

app = typer.Typer(
    name="dendriteseg",
    help="Segment dendrites in 3D/4D x-ray CT, train the networks, score the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(
    help="Make synthetic XCT scans with exact labels, series and datasets.", no_args_is_help=True
)
app.add_typer(synth_app, name="synth")
out_console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _say(text: str, *, err: bool = False) -> None:
    """Print plain text (no Rich markup or highlighting) to stdout, or stderr with ``err``."""
    (err_console if err else out_console).print(text, markup=False, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _say(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn library and OS errors into one line on stderr and exit code 2 (see ``errors.user_message``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except BaseException as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            known = user_message(exc)
            if known is None and (os.environ.get("DENDRITESEG_DEBUG") or not isinstance(exc, Exception)):
                raise
            _fail(*(known or internal_message(exc)))

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a command of ``group`` whose errors end as one line."""
    return lambda func: group.command(name)(friendly_errors(func))


def _int_list(text: str | None, name: str) -> list[int] | None:
    try:
        if not text:
            return None
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--{name}: expected integers separated by commas, got {text!r}") from None


def _table(title: str, columns: tuple[str, ...], rows: Any, caption: str | None = None) -> None:
    """Print a table; the first column left-aligned, the others right-aligned."""
    table = Table(*columns, title=title, caption=caption)
    for column in table.columns[1:]:
        column.justify = "right"
    for row in rows:
        table.add_row(*row)
    out_console.print(table)


def _progress(*columns: Any) -> Any:
    """A progress bar on stderr (hidden where stderr is no terminal)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = (BarColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    return Progress(*columns, *bar, console=err_console, disable=not err_console.is_terminal)
