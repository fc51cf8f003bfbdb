"""The picture of an answer in README.md, made by citebot itself: `python docs/screenshots.py [--check]`.

It indexes the bundled seeds into a scratch folder with the real model, asks the README's question, renders
the answer as `citebot ask` prints it (bot/render.py) and saves the terminal as SVG in docs/img/. With
`--check` it writes nothing and exits 1 if the saved picture is not what the code makes today
(tests/docs/test_screenshots.py runs that). The seeds' folder is shown as `…/seeds`, so the picture does not
depend on where the checkout lives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "where are the new battlegroups?"
TERMINAL = ROOT / "docs" / "img" / "answer-terminal.svg"
WIDTH = 110


def terminal_svg() -> str:
    from rich.console import Console

    from bot.render import render_answer
    from retrieval.models import Answer
    from retrieval.pipeline import Answerer
    from retrieval.settings import load_settings

    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="citebot-picture-") as scratch:
        seeds = Path(scratch) / "seeds"
        shutil.copytree(ROOT / "seeds", seeds)
        settings = load_settings(index={"dir": str(Path(scratch) / "index")}, corpus={"paths": [str(seeds)]})
        answerer = Answerer.from_settings(settings)
        answerer.ingest([seeds])
        answer = answerer.answer(QUESTION)
        answerer.store.close()
        shown = Answer.model_validate_json(answer.model_dump_json().replace(str(seeds), "…/seeds"))
    console = Console(record=True, width=WIDTH, force_terminal=True, color_system="truecolor", file=open(os.devnull, "w"))
    console.print(f"$ citebot ask \"{QUESTION}\"", style="bold", markup=False)
    console.print(render_answer(shown))
    return console.export_svg(title="citebot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/img/ is not what the code makes today")
    args = parser.parse_args(argv)
    svg = terminal_svg()
    if args.check:
        if not TERMINAL.exists() or TERMINAL.read_text(encoding="utf-8") != svg:
            print(f"{TERMINAL.relative_to(ROOT)} is stale: run `python docs/screenshots.py`", file=sys.stderr)
            return 1
        return 0
    TERMINAL.parent.mkdir(parents=True, exist_ok=True)
    TERMINAL.write_text(svg, encoding="utf-8")
    print(TERMINAL.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
