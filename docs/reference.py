"""Write docs/cli.md and docs/settings.md from the code itself, so that neither can drift from it.

    python docs/reference.py           # write both pages
    python docs/reference.py --check   # exit 1, naming the page, when one is not what the code says

The command reference comes from `citebot`'s argparse parser (bot/cli.py), the settings reference from the
settings models' field descriptions (retrieval/settings.py) and the values in config/default.toml.
tests/docs/test_links.py fails when a page is stale.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["COLUMNS"] = "100"  # argparse wraps its usage lines to the terminal: the same page on every one

HEAD = "<!-- written by docs/reference.py from the code: edit the code, then run `python docs/reference.py` -->\n\n"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _commands(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(full name, parser, one-line help) of every command and command within a command, in the parser's order."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for sub_name, sub in action.choices.items():
                full = f"{name} {sub_name}"
                found.append((full, sub, helps.get(sub_name) or ""))
                found += _commands(sub, full)
    return found


def cli_page() -> str:
    from bot.cli import _parser

    parser = _parser()
    lines = [HEAD, "# Command reference\n\n", _cell(parser.description), "\n\n",
             "Every command also takes `--config FILE`, `--collection NAME` and `-v`/`-vv`, before or after its "
             "name. `citebot COMMAND --help` prints the same as this page.\n"]
    for full, sub, summary in _commands(parser, "citebot"):
        lines += [f"\n## `{full}`\n\n"]
        text = sub.description or summary
        if text:
            lines += [_cell(text), "\n\n"]
        formatter = sub._get_formatter()
        lines += ["```\n", sub.format_usage().strip(), "\n```\n"]
        rows = []
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            if action.dest in ("config", "collection", "verbose") and action.default == argparse.SUPPRESS:
                continue  # the options every command takes (above)
            flags = ", ".join(action.option_strings) or action.metavar or action.dest
            if action.option_strings and action.nargs != 0:
                flags += f" {action.metavar or action.dest.upper()}"
            rows.append(f"| `{_cell(flags)}` | {_cell(formatter._expand_help(action) if action.help else '')} |\n")
        if rows:
            lines += ["\n| option | what it does |\n| --- | --- |\n", *rows]
    return "".join(lines)


def settings_page() -> str:
    from pydantic import BaseModel

    from retrieval.settings import Settings

    shipped = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))
    lines = [HEAD, "# Settings reference\n\n",
             "Every setting, its value in `config/default.toml` (what citebot uses unless told otherwise) and what it "
             "does. A TOML file given with `--config FILE` overrides them, and the environment overrides both: "
             "`CITEBOT_SECTION__NAME`, e.g. `CITEBOT_INDEX__URL`. `citebot config show` lists the settings in force "
             "and where each came from.\n"]
    for section, field in Settings.model_fields.items():
        kind = field.annotation
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            if section != "discord_token":
                lines += [f"\n## `{section}`\n\n{_cell(field.description or '')}\n"]
            continue
        lines += [f"\n## `[{section}]`\n\n| setting | in config/default.toml | what it does |\n| --- | --- | --- |\n"]
        for name, sub in kind.model_fields.items():
            value = shipped.get(section, {}).get(name, sub.default if sub.default_factory is None else sub.default_factory())
            shown = "(unset)" if value is None else f"`{_cell(repr(value) if isinstance(value, str) else value)}`"
            lines.append(f"| `{section}.{name}` | {shown} | {_cell(sub.description or '')} |\n")
    lines.append("\n## The Discord token\n\n`CITEBOT_DISCORD_TOKEN`, from the environment only: never in a file, "
                 "never printed.\n")
    return "".join(lines)


PAGES = {"cli.md": cli_page, "settings.md": settings_page}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, make in PAGES.items():
        path = ROOT / "docs" / name
        text = make()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        print(f"docs/{name} is not what the code says: run `python docs/reference.py`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
