"""The README's pictures of an answer are what citebot shows today (docs/screenshots.py: the real model over the
seeds, the real renderers), and the Discord one is taken by a real browser."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "docs"))

import screenshots  # noqa: E402  (docs/screenshots.py)


def test_the_readmes_pictures_are_current():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    svg = screenshots.TERMINAL.read_text(encoding="utf-8")
    assert "Hungary,&#160;Slovakia" in svg or "Hungary, Slovakia" in svg
    assert "…/seeds" in svg and str(ROOT) not in svg  # no checkout's path in the picture


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_pages_hash_is_written_into_the_png_and_read_back():
    page = "<html>an answer</html>"
    bare = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", bytes(13)) + _chunk(b"IEND", b"")
    assert screenshots.text_of(bare, screenshots.PNG_KEY) is None
    png = screenshots.with_text(bare, b"other", "x")
    assert screenshots.text_of(png, b"other") == "x"
    stamped = screenshots.with_text(png, screenshots.PNG_KEY, screenshots.page_hash(page))
    assert screenshots.text_of(stamped, screenshots.PNG_KEY) == screenshots.page_hash(page)
    assert screenshots.text_of(stamped, screenshots.PNG_KEY) != screenshots.page_hash(page + " ")


@pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("chromedriver") is None,
                    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
def test_the_discord_picture_is_taken_by_a_real_browser(tmp_path):
    out = tmp_path / "discord.png"
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), "--discord-to", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 700 and height >= 400  # the whole message, not an empty page
    assert screenshots.text_of(png, screenshots.PNG_KEY) == screenshots.text_of(screenshots.DISCORD.read_bytes(),
                                                                                screenshots.PNG_KEY)
