"""The pictures of an answer in README.md, made by citebot itself: `python docs/screenshots.py [--check]`.

It indexes the bundled seeds into a scratch folder with the real model, asks the README's question, and
- renders the answer as `citebot ask` prints it (bot/render.py), saved as the terminal's SVG;
- renders it as the bot posts it (bot/render_discord.py's embed and the buttons under it) into a page drawn
  like Discord's dark theme, and photographs that page with a real headless Chromium (Selenium; Debian's
  `chromium` and `chromium-driver`), saved as PNG with the page's SHA-256 in a PNG text chunk.
Both go to docs/img/. With `--check` nothing is written and it exits 1 when a picture is not what the code
makes today: the SVG is compared whole, the PNG by the hash of the page it was taken of (a browser's pixels
differ between machines; the page does not). tests/docs/test_screenshots.py runs that, and takes the
Discord picture once with the real browser. The seeds' folder is shown as `…/seeds`, so nothing depends on
where the checkout lives. The browser is offline: the page is a local file, and every other request goes
to a proxy on 127.0.0.1 port 9, where nothing listens.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "where are the new battlegroups?"
TERMINAL = ROOT / "docs" / "img" / "answer-terminal.svg"
DISCORD = ROOT / "docs" / "img" / "answer-discord.png"
WIDTH = 110
PNG_KEY = b"citebot-page-sha256"


def answer_now():
    """The README question's answer over the seeds, with the seeds' folder shown as `…/seeds`."""
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
        return Answer.model_validate_json(answer.model_dump_json().replace(str(seeds), "…/seeds"))


def terminal_svg(answer) -> str:
    from rich.console import Console

    from bot.render import render_answer

    with open(os.devnull, "w") as nowhere:
        console = Console(record=True, width=WIDTH, force_terminal=True, color_system="truecolor", file=nowhere)
        console.print(f"$ citebot ask \"{QUESTION}\"", style="bold", markup=False)
        console.print(render_answer(answer))
        return console.export_svg(title="citebot")


def _markdown(text: str) -> str:
    """The little Markdown the embed uses: **bold**, > quotes, line breaks; everything else escaped."""
    lines = []
    for line in text.split("\n"):
        quoted = line.startswith("> ")
        body = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line[2:] if quoted else line))
        lines.append(f'<div class="quote">{body}</div>' if quoted else f"<div>{body}</div>")
    return "".join(lines)


def discord_page(answer) -> str:
    """The answer as the bot posts it: its embed (bot/render_discord.py) and buttons, drawn as Discord draws them."""
    from bot.render_discord import answer_embed_dict

    embed = answer_embed_dict(answer)
    buttons = "".join(f'<span class="button">{html.escape(label)}</span>' for label in _button_labels())
    fields = "".join(f'<div class="field"><div class="name">{_markdown(f["name"])}</div>'
                     f'<div class="value">{_markdown(f["value"])}</div></div>' for f in embed.get("fields", []))
    color = f"#{embed.get('color', 0x5865F2):06x}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #313338; font: 15px/1.375 "DejaVu Sans", sans-serif; color: #dbdee1; }}
#message {{ display: flex; gap: 16px; padding: 16px 20px; width: 760px; background: #313338; }}
.avatar {{ flex: none; width: 40px; height: 40px; border-radius: 50%; background: #5865f2; color: white;
  font-weight: bold; display: flex; align-items: center; justify-content: center; }}
.who {{ font-weight: 600; color: #f2f3f5; }} .tag {{ background: #5865f2; color: white; font-size: 10px;
  border-radius: 3px; padding: 1px 4px; margin-left: 4px; vertical-align: 2px; }}
.embed {{ margin-top: 4px; background: #2b2d31; border-left: 4px solid {color}; border-radius: 4px;
  padding: 8px 16px 16px 12px; max-width: 680px; }}
.title {{ font-weight: 600; color: #f2f3f5; margin: 8px 0; }} .field {{ margin-top: 8px; }}
.name {{ font-weight: 600; color: #f2f3f5; font-size: 14px; }} .value, .description {{ font-size: 14px; }}
.quote {{ border-left: 4px solid #4e5058; padding-left: 12px; }}
.footer {{ margin-top: 8px; font-size: 12px; color: #b5bac1; }}
.buttons {{ margin-top: 8px; display: flex; gap: 8px; }} .button {{ background: #4e5058; color: white;
  border-radius: 3px; padding: 2px 16px; font-size: 14px; line-height: 32px; }}
</style></head><body><div id="message"><div class="avatar">C</div><div>
<div><span class="who">citebot</span><span class="tag">APP</span></div>
<div class="embed"><div class="title">{html.escape(embed["title"])}</div>
<div class="description">{_markdown(embed.get("description", ""))}</div>{fields}
<div class="footer">{html.escape(embed.get("footer", {}).get("text", ""))}</div></div>
<div class="buttons">{buttons}</div></div></div></body></html>"""


def _button_labels() -> list[str]:
    """The buttons the bot puts under an answer (bot/discord_views.py), as their labels or emoji."""
    import asyncio

    from bot.discord_views import AnswerView

    async def made() -> list[str]:  # a view is made inside an event loop, as the bot makes it
        return [item.item.label or str(item.item.emoji) for item in AnswerView(0).children]  # DynamicItem wraps a Button

    return asyncio.run(made())


def photograph(page: str, folder: Path) -> bytes:
    """A PNG of the page's message, taken by a real headless Chromium, offline."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    path = folder / "answer.html"
    path.write_text(page, encoding="utf-8")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=820,2000", "--hide-scrollbars",
                 "--disable-background-networking", "--no-first-run", "--disable-sync", "--disable-extensions",
                 "--proxy-server=http://127.0.0.1:9", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        driver.get(path.as_uri())
        return driver.find_element(By.ID, "message").screenshot_as_png
    finally:
        driver.quit()


def with_text(png: bytes, key: bytes, value: str) -> bytes:
    """`png` with a tEXt chunk `key`=`value` before its end."""
    data = key + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def text_of(png: bytes, key: bytes) -> str | None:
    at = 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        if kind == b"tEXt" and png[at + 8:at + 8 + length].startswith(key + b"\0"):
            return png[at + 8 + len(key) + 1:at + 8 + length].decode("latin-1")
        at += 12 + length
    return None


def page_hash(page: str) -> str:
    return hashlib.sha256(page.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/img/ is not what the code makes today")
    parser.add_argument("--discord-to", type=Path, help="take the Discord picture into this file instead (a test's)")
    args = parser.parse_args(argv)
    answer = answer_now()
    svg, page = terminal_svg(answer), discord_page(answer)
    if args.check:
        stale = [p for p, ok in ((TERMINAL, TERMINAL.exists() and TERMINAL.read_text(encoding="utf-8") == svg),
                                 (DISCORD, DISCORD.exists() and text_of(DISCORD.read_bytes(), PNG_KEY) == page_hash(page)))
                 if not ok]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `python docs/screenshots.py`", file=sys.stderr)
        return 1 if stale else 0
    with tempfile.TemporaryDirectory(prefix="citebot-page-") as folder:
        png = with_text(photograph(page, Path(folder)), PNG_KEY, page_hash(page))
    if args.discord_to:
        args.discord_to.write_bytes(png)
        return 0
    TERMINAL.parent.mkdir(parents=True, exist_ok=True)
    TERMINAL.write_text(svg, encoding="utf-8")
    DISCORD.write_bytes(png)
    print(TERMINAL.relative_to(ROOT), DISCORD.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
