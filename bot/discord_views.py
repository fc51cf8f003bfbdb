"""The buttons under an answer: dynamic items whose custom ids carry the answer's id.

Registered with `add_dynamic_items` at every start, they work on answers posted by any earlier run;
what they act on is read from the history (bot/history.py). Each callback hands the press to the
client (bot/discord_app.py), which does the work off the event loop.
"""

from __future__ import annotations

import re

import discord


def buttons(answer_id: int | None, *, private: bool = False) -> dict:
    """The `view=` keyword for an answer's message; no buttons when the answer could not be stored."""
    if answer_id is None:
        return {}
    return {"view": AnswerView(answer_id, share=private)}


class AnswerView(discord.ui.View):
    """Every source in full (privately), 👍/👎 feedback, and on a private answer "Share to channel".

    Never times out: a timed-out view would also unregister its dynamic items for every answer.
    """

    def __init__(self, answer_id: int, *, share: bool = False):
        super().__init__(timeout=None)
        self.add_item(SourcesButton(answer_id))
        self.add_item(VoteButton(answer_id, +1))
        self.add_item(VoteButton(answer_id, -1))
        if share:
            self.add_item(ShareButton(answer_id))


class SourcesButton(discord.ui.DynamicItem[discord.ui.Button], template=r"citebot:sources:(?P<answer>[0-9]{1,18})"):
    """Show all sources: the stored answer's passages in full, to the presser only."""

    def __init__(self, answer_id: int):
        super().__init__(discord.ui.Button(
            label="Show all sources", style=discord.ButtonStyle.secondary, custom_id=f"citebot:sources:{answer_id}"
        ))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> SourcesButton:
        return cls(int(match["answer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.show_sources(interaction, self.answer_id)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"citebot:vote:(?P<answer>[0-9]{1,18}):(?P<vote>up|down)"
):
    """👍 or 👎 on an answer, kept in the history with the question, the answer and its passage ids."""

    def __init__(self, answer_id: int, vote: int):
        super().__init__(discord.ui.Button(
            emoji="👍" if vote > 0 else "👎", style=discord.ButtonStyle.secondary,
            custom_id=f"citebot:vote:{answer_id}:{'up' if vote > 0 else 'down'}",
        ))
        self.answer_id, self.vote = answer_id, vote

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> VoteButton:
        return cls(int(match["answer"]), +1 if match["vote"] == "up" else -1)

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.vote(interaction, self.answer_id, self.vote)


class ShareButton(discord.ui.DynamicItem[discord.ui.Button], template=r"citebot:share:(?P<answer>[0-9]{1,18})"):
    """Share to channel: the asker's private answer posted for everyone, once, with its own buttons."""

    def __init__(self, answer_id: int):
        super().__init__(discord.ui.Button(
            label="Share to channel", style=discord.ButtonStyle.primary, custom_id=f"citebot:share:{answer_id}"
        ))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> ShareButton:
        return cls(int(match["answer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.share(interaction, self.answer_id)
