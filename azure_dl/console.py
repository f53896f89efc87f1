"""Small terminal helpers: tables and notes, with rich imported only when something is printed."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    file: TextIO | None = None,
) -> None:
    """Print a table (boxed on a terminal, plain text when piped so that it stays greppable)."""
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(file=out, width=_width(out), soft_wrap=False).print(table)


def print_key_values(title: str, pairs: Sequence[tuple[str, str]], *, file: TextIO | None = None) -> None:
    """Print a two-column table of labels and values (used for the plan)."""
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for key, value in pairs:
        table.add_row(key, value)
    Console(file=out, width=_width(out), soft_wrap=False).print(table)


def note(message: str, *, file: TextIO | None = None) -> None:
    """A one-line message for the user on stderr (stdout stays machine-readable)."""
    print(message, file=file or sys.stderr)


def _width(out: TextIO) -> int | None:
    # When output is captured (tests, pipes) rich would wrap at 80 columns; a wide fixed width keeps rows whole.
    return None if getattr(out, "isatty", lambda: False)() else 200
