"""What the `citebot` commands print and how: the two consoles, one-line text that cannot steer a terminal,
answers laid out for a terminal or a pipe, and the installed version. Every command module prints through here."""

from __future__ import annotations

import io

from rich.console import Console

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

PIPE_WIDTH = 10_000


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("citebot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def line(text: str) -> str:
    """`text` as one line that cannot steer the terminal: paths and errors may quote hostile article files."""
    if text.isprintable():
        return text
    from bot.render import clean_line

    try:  # a file name that is not UTF-8 is shown with its bytes as \\xNN, as `ls -b` shows it
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return clean_line(raw.decode("utf-8", "backslashreplace"))


def show(renderable) -> None:
    """Print to stdout: as rich lays it out on a terminal; in a pipe, unwrapped and without trailing spaces.

    A script reading `citebot ask` wants each sentence on one line with its citation marker,
    not rich's 80 columns padded with spaces.
    """
    if out.is_terminal:
        out.print(renderable)
        return
    wide = Console(file=io.StringIO(), width=PIPE_WIDTH, highlight=False, color_system=None, no_color=True)
    wide.print(renderable)
    text = "\n".join(row.rstrip() for row in wide.file.getvalue().split("\n"))
    out.file.write(text)
    out.file.flush()
