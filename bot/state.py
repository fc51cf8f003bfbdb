"""What the Discord bot keeps, declared once: its answers, conversations and votes (bot/history.py's
HistoryStore) and each server's collection and channel rules (bot/servers.py's ServerBook). The bot reaches
them only through these methods. Each keeps its tables through a StateDB (retrieval/backends/base.py):
`history.sqlite` and `servers.sqlite` in the index folder, or the `citebot` schema of the PostgreSQL
database in `index.url`, which many bot processes can share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.history import Shared, StoredAnswer, Vote
    from bot.servers import Overrides, Rules
    from retrieval.models import Answer


class AnswerHistory(Protocol):
    def add_answer(self, answer: Answer, *, collection: str, guild_id: int | None, channel_id: int | None,
                   user_id: int | None, conversation: int | None, private: bool = False) -> int:
        """Store an answer about to be posted; its id goes into the buttons' custom ids."""

    def sent(self, answer_id: int, message_id: int) -> None:
        """The message the answer went out as."""

    def answer(self, answer_id: int) -> StoredAnswer | None: ...

    def posted_answer(self, answer_id: int, *, guild_id: int | None, message_id: int | None) -> StoredAnswer | None:
        """The answer a button was pressed under, if it is that message's."""

    def share(self, answer_id: int, *, guild_id: int | None, message_id: int | None, user_id: int) -> Shared | None:
        """A private answer's public copy, made once whoever asks twice."""

    def context(self, conversation: int, *, limit: int) -> list[str] | None: ...

    def context_of_message(self, message_id: int, *, limit: int) -> tuple[int, list[str]] | None:
        """The conversation a message belongs to, and its last questions."""

    def record_vote(self, answer_id: int, *, guild_id: int | None, message_id: int | None, user_id: int,
                    vote: int) -> bool: ...

    def votes(self, *, collection: str | None = None) -> list[Vote]: ...

    def prune(self) -> int: ...


class ServerRules(Protocol):
    def load(self) -> None:
        """Read every choice into memory (a rule then costs a lookup per message)."""

    def collection(self, guild_id: int | None) -> str | None: ...

    def collections(self) -> dict[int, str]: ...

    def set_collection(self, guild_id: int, name: str | None, *, by: int | None = None) -> None: ...

    def overrides(self, guild_id: int, channel_id: int = 0) -> Overrides: ...

    def rules(self, base: Rules, guild_id: int | None, channel_id: int | None) -> Rules: ...

    def set_rules(self, guild_id: int, channel_id: int, changes: Overrides, *, by: int | None = None) -> Overrides: ...

    def reset_rules(self, guild_id: int, channel_id: int) -> bool: ...

    def channels_with_rules(self, guild_id: int) -> list[int]: ...
