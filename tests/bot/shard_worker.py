"""`citebot discord --shard I/N` in a child process, pointed at the loopback fake Discord, for the shard tests.

usage: python shard_worker.py I/N   (FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY name the fake; the rest is
the usual CITEBOT_* environment). Everything is the real command, the real discord.py client and the real
index (PostgreSQL); the embedding model is the fast fake one (tests/fakes.py), which the index was built
with, unless SHARD_WORKER_MODEL=real (benchmarks/cluster.py).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import discord  # noqa: E402
import yarl  # noqa: E402

from retrieval import pipeline  # noqa: E402
from tests.fakes import FakeEmbedder  # noqa: E402


def main() -> int:
    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])
    if os.environ.get("SHARD_WORKER_MODEL") != "real":
        made = pipeline.Answerer.from_settings.__func__

        def with_the_fake_model(cls, settings, **kwargs):
            return made(cls, settings, **{**kwargs, "embedder": FakeEmbedder()})

        pipeline.Answerer.from_settings = classmethod(with_the_fake_model)
    from bot.cli import main as citebot

    return citebot(["discord", "--shard", sys.argv[1], "-v"])


if __name__ == "__main__":
    sys.exit(main())
