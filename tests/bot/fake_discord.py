"""A small fake Discord for the transport tests: REST and gateway over real sockets on 127.0.0.1.

It runs in its own thread and event loop, so a bot that blocks its loop cannot hide the fact by
also blocking the fake. It holds the bot to Discord's rules rather than accepting whatever comes:

- message limits (2,000 content; embeds: 256 title, 4,096 description, 25 fields of 256/1,024,
  2,048 footer, 6,000 in all) answered with 400 / 50035 "Invalid Form Body";
- the 3-second interaction deadline (404 / 10062 "Unknown interaction"), one acknowledgement only
  (400 / 40060), and the first follow-up after a "thinking" defer filling that message;
- commands: slash command names and descriptions, message commands named freely with no
  description; autocomplete answered with at most 25 choices of 1-100 characters;
- without the Message Content intent, a user's message arrives with empty content unless it
  mentions the bot (a reply to the bot mentions it), as Discord sends it;
- rate limits on request: 429 with a JSON body, `Retry-After`, `X-RateLimit-*` and a `Via` header,
  as Discord's own carry, and a second 429 for a retry that comes too early;
- request bodies sent as `application/json` (or multipart), responses sent as exactly `application/json`;
- the gateway: HELLO, heartbeats and their ACKs, IDENTIFY -> READY + GUILD_CREATE, dispatches with
  sequence numbers, RECONNECT, and RESUME replaying what the bot missed (zlib-stream compressed when asked);
- sharding, with `FakeDiscord(shards=N, guilds=M)`: GET /gateway/bot recommends N shards; an IDENTIFY must
  carry `shard: [i, N]` (else 4010/4011, as Discord closes); each shard's session gets READY and GUILD_CREATE
  for its own servers only, `(guild_id >> 22) % N == i`, and every event of a server goes to the session of
  its shard (direct messages to shard 0). Server k's id is made so that it is on shard k % 2 of 2 and on
  shard (k + 1) % 3 of 3, so a test can reshard from 2 to 3 and see a server move to another shard.
  `shard_count` may be changed between runs of the bot (a reshard). With the default `shards=1` every
  session gets every server, whatever shard it names.

Every rule broken is recorded in `violations`; the tests assert it stays empty.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import itertools
import json
import math
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 31) | (1 << 38)
MESSAGE_CONTENT_INTENT = 1 << 15
IDLE_TIMEOUT = 30.0  # a gateway connection that hears nothing for this long is closed


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


@dataclass
class Interaction:
    id: str
    token: str
    user_id: str
    channel_id: str
    name: str
    kind: int = 2  # 2 a command, 3 a component, 4 an autocomplete
    dispatched_at: float = 0.0
    acked_at: float | None = None
    response_type: int | None = None
    ephemeral: bool = False
    loading: bool = False
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    choices: list[dict] | None = None  # what an autocomplete was answered with


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    content_type: str
    at: float
    status: int = 0


_RECORD = web.RequestKey("record", Request)


@dataclass
class _RateLimit:
    method: str
    pattern: re.Pattern
    retry_after: float
    times: int
    limited_until: float = 0.0


class _Connection:
    """One gateway websocket; sends are serialised so a zlib stream stays in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool, transport: asyncio.BaseTransport | None):
        self.ws = ws
        self.transport = transport
        self.zlib = zlib.compressobj() if compress else None
        self.lock = asyncio.Lock()
        self.paused = False

    async def send(self, payload: dict) -> None:
        raw = json.dumps(payload)
        async with self.lock:
            if self.ws.closed:
                return
            if self.zlib is None:
                await self.ws.send_str(raw)
            else:
                await self.ws.send_bytes(self.zlib.compress(raw.encode()) + self.zlib.flush(zlib.Z_SYNC_FLUSH))


@dataclass
class _Session:
    id: str
    seq: int = 0
    frames: list[dict] = field(default_factory=list)
    live: _Connection | None = None


class FakeDiscord:
    """The fake: start() it, point discord.py at `api_base` and `gateway_url`, drive it with the async methods."""

    def __init__(self, *, token: str = "fake-token", heartbeat_ms: int = 200, deadline: float = 3.0,
                 message_content_approved: bool = True, shards: int = 1, guilds: int = 1):
        self.token = token
        self.message_content_approved = message_content_approved
        self.heartbeat_ms = heartbeat_ms
        self.deadline = deadline
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.bot_user = self._user("citebot", bot=True)
        self.app_id = self.bot_user["id"]
        self.shard_count = shards
        first = int(time.time() * 1000) - DISCORD_EPOCH_MS
        first += (4 - first) % 6  # server k: on shard k % 2 of 2 and (k + 1) % 3 of 3
        self.guild_ids = [str(((first + k) << 22) + next(self._ids)) for k in range(guilds)]
        self.guild_id = self.guild_ids[0]
        self.users = {name: self._user(name) for name in ("alice", "bob", "carol", "admin")}
        self.roles = {"Reporters": self._snowflake()}  # name -> id; `give_role` hands them out
        self.member_roles: dict[str, list[str]] = {}
        self.message_content = True  # whether the live session asked for the intent
        self.channels: dict[str, dict] = {}
        self.general_of: dict[str, str] = {}  # a server's id -> its "general" channel
        for guild in self.guild_ids:
            for name in ("general", "random"):
                channel = {"id": self._snowflake(), "type": 0, "name": name, "guild_id": guild,
                           "position": len(self.channels), "permission_overwrites": [], "nsfw": False,
                           "parent_id": None, "topic": None, "last_message_id": None, "rate_limit_per_user": 0}
                self.channels[channel["id"]] = channel
                self.general_of.setdefault(guild, channel["id"])
        self.general, self.random = list(self.channels)[:2]
        self.messages: dict[str, dict] = {}
        self.deleted: list[dict] = []
        self._dms: dict[str, str] = {}
        self.interactions: dict[str, Interaction] = {}
        self.commands: list[dict] = []
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self.heartbeats: list[float] = []
        self.identifies: list[dict] = []
        self.resumes: list[dict] = []
        self.close_codes: list[int | None] = []
        self.connections: list[str] = []
        self.ready_at: float | None = None
        self._sessions: dict[int, _Session] = {}  # by shard (0 without sharding)
        self._rate_limits: list[_RateLimit] = []
        self._later: set[asyncio.Future] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def _session(self) -> _Session | None:
        """Shard 0's session (the only one without sharding)."""
        return self._sessions.get(0)

    def shard_of(self, guild_id: str | None) -> int:
        """The shard whose session gets this server's events (shard 0: direct messages, or no sharding)."""
        if guild_id is None or self.shard_count == 1:
            return 0
        return (int(guild_id) >> 22) % self.shard_count

    def _guild_of_channel(self, channel_id: str) -> str | None:
        return self.channels[channel_id].get("guild_id") if channel_id in self.channels else None

    # -- lifecycle

    def start(self) -> FakeDiscord:
        self._thread = threading.Thread(target=self._serve, name="fake-discord", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake Discord did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume-gateway", self._gateway)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            loop.run_until_complete(self._stop.wait())
        finally:
            for session in list(self._sessions.values()):
                if session.live is not None:
                    loop.run_until_complete(asyncio.wait_for(session.live.ws.close(), 5))
            loop.run_until_complete(asyncio.wait_for(runner.cleanup(), 10))
            loop.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- payloads

    def _snowflake(self) -> str:
        return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + next(self._ids))

    def _user(self, name: str, *, bot: bool = False) -> dict:
        return {"id": self._snowflake(), "username": name, "discriminator": "0", "global_name": name,
                "avatar": None, "bot": bot, "flags": 0, "public_flags": 0}

    def _member(self, user: dict, *, permissions: int | None = None) -> dict:
        name = next((n for n, u in self.users.items() if u["id"] == user["id"]), None)
        member = {"user": user, "roles": list(self.member_roles.get(name, [])), "nick": None, "joined_at": _now_iso(), "deaf": False, "mute": False,
                  "flags": 0, "pending": False, "avatar": None}
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def permissions_of(self, name: str) -> int:
        return MEMBER_PERMISSIONS | (MANAGE_GUILD if name == "admin" else 0)

    def _guild(self, guild_id: str | None = None) -> dict:
        guild_id = guild_id or self.guild_id
        everyone = {"id": guild_id, "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS), "position": 0,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        roles = [everyone] + [{**everyone, "id": role_id, "name": name, "position": 1 + n, "permissions": "0"}
                              for n, (name, role_id) in enumerate(self.roles.items())]
        members = [self._member(self.bot_user)] + [self._member(u) for u in self.users.values()]
        # As Discord does: the server's channels, and apart from them its active threads (a restarted bot
        # learns of the threads it opened from here). Direct messages belong to no server.
        channels = [c for c in self.channels.values() if c.get("guild_id") == guild_id and c["type"] not in (10, 11, 12)]
        threads = [c for c in self.channels.values() if c["type"] in (10, 11, 12) and c.get("guild_id") == guild_id]
        return {"id": guild_id, "name": f"Fake Guild {self.guild_ids.index(guild_id)}", "owner_id": self.users["admin"]["id"], "icon": None,
                "features": [], "roles": roles, "emojis": [], "stickers": [], "channels": channels,
                "threads": threads, "members": members, "member_count": len(members), "large": False, "unavailable": False,
                "joined_at": _now_iso(), "voice_states": [], "presences": [], "stage_instances": [],
                "guild_scheduled_events": [], "mfa_level": 0, "verification_level": 0, "premium_tier": 0,
                "preferred_locale": "en-US", "system_channel_flags": 0, "nsfw_level": 0}

    def _message(self, channel_id: str, author: dict, body: dict, **extra: Any) -> dict:
        channel = self.channels[channel_id]
        message = {"id": self._snowflake(), "channel_id": channel_id, "author": author,
                   "content": body.get("content") or "", "timestamp": _now_iso(), "edited_timestamp": None,
                   "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
                   "embeds": body.get("embeds") or [], "components": body.get("components") or [], "pinned": False,
                   "type": 0, "flags": body.get("flags") or 0}
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        message.update(extra)
        message["_pings"] = self._pings(message, body)
        self.messages[message["id"]] = message
        return message

    def _pings(self, message: dict, body: dict) -> list[str]:
        """Who this message would notify, under Discord's rules for content and allowed_mentions."""
        allowed = body.get("allowed_mentions")
        parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse", []))
        content = message["content"]
        pings = []
        if "everyone" in parse and re.search(r"@(everyone|here)", content):
            pings.append("everyone")
        for kind, pattern in (("users", r"<@!?(\d+)>"), ("roles", r"<@&(\d+)>")):
            listed = set((allowed or {}).get(kind, []))
            pings += [f"{kind}:{i}" for i in re.findall(pattern, content) if kind in parse or i in listed]
        if message.get("message_reference") and (allowed is None or allowed.get("replied_user")):
            pings.append("replied_user")
        return pings

    @staticmethod
    def public(message: dict) -> dict:
        return {k: v for k, v in message.items() if not k.startswith("_")}

    # -- the rules

    def _check_message(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["body is not a JSON object"]
        errors = []
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        if len(content) > 2000:
            errors.append(f"content: must be 2000 or fewer in length (got {len(content)})")
        if len(embeds) > 10:
            errors.append("embeds: must be 10 or fewer in length")
        total = 0
        for i, embed in enumerate(embeds):
            for key, limit in (("title", 256), ("description", 4096)):
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > limit:
                    errors.append(f"embeds.{i}.{key}: must be {limit} or fewer in length (got {len(value)})")
            fields = embed.get("fields") or []
            if len(fields) > 25:
                errors.append(f"embeds.{i}.fields: must be 25 or fewer in length")
            for j, f in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    value = f.get(key) or ""
                    total += len(value)
                    if not value or len(value) > limit:
                        errors.append(f"embeds.{i}.fields.{j}.{key}: must be 1 to {limit} in length")
            for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
                value = (embed.get(key) or {}).get(sub) or ""
                total += len(value)
                if len(value) > limit:
                    errors.append(f"embeds.{i}.{key}.{sub}: must be {limit} or fewer in length")
        if total > 6000:
            errors.append(f"embeds: must be 6000 or fewer in total length (got {total})")
        rows = body.get("components") or []
        if len(rows) > 5 or any(len(row.get("components", [])) > 5 for row in rows):
            errors.append("components: at most 5 rows of 5")
        for row in rows:
            for c in row.get("components", []):
                if len(c.get("custom_id") or "") > 100 or len(c.get("label") or "") > 80:
                    errors.append("components: custom_id over 100 or label over 80")
        allowed = body.get("allowed_mentions")
        if allowed is not None and not set(allowed.get("parse", [])) <= {"everyone", "users", "roles"}:
            errors.append("allowed_mentions.parse: unknown value")
        return errors

    def _error(self, status: int, code: int, message: str, request: Request, **extra: Any) -> web.Response:
        self.violations.append(f"{request.method} {request.path}: {status}/{code} {message}")
        return self._json({"code": code, "message": message, **extra}, status=status)

    @staticmethod
    def _json(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # Exactly "application/json", no charset: discord.py only parses JSON when the header is exactly that.
        return web.Response(body=json.dumps(payload).encode(), status=status,
                            headers={"Content-Type": "application/json", **(headers or {})})

    def rate_limit(self, method: str, path: str, *, retry_after: float = 0.5, times: int = 1) -> None:
        """The next `times` requests matching `method` and the regex `path` (after /api/v10) get a 429."""
        with self._lock:
            self._rate_limits.append(_RateLimit(method, re.compile(path), retry_after, times))

    def _limited(self, request: Request) -> web.Response | None:
        now = time.monotonic()
        for rule in self._rate_limits:
            if rule.method != request.method or not rule.pattern.fullmatch(request.path):
                continue
            if now < rule.limited_until:
                self.violations.append(f"{request.method} {request.path}: retried {rule.limited_until - now:.2f} s too early")
            elif rule.times <= 0:
                continue
            else:
                rule.times -= 1
                rule.limited_until = now + rule.retry_after
            remaining = rule.limited_until - now
            return self._json(
                {"message": "You are being rate limited.", "retry_after": round(remaining, 3), "global": False},
                status=429,
                headers={"Retry-After": str(math.ceil(remaining)), "X-RateLimit-Limit": "5",
                         "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{remaining:.3f}",
                         "X-RateLimit-Reset": f"{time.time() + remaining:.3f}", "X-RateLimit-Bucket": "fake-bucket",
                         "X-RateLimit-Scope": "user", "Via": "1.1 google"},
            )
        return None

    # -- REST

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await handler(request)
        record = request.get(_RECORD)
        if record is not None:
            record.status = response.status
        return response

    async def _rest(self, http: web.Request) -> web.StreamResponse:
        raw = await http.read()
        content_type = http.headers.get("Content-Type", "")
        path = "/" + http.match_info["tail"]
        body: Any = None
        with self._lock:
            request = http[_RECORD] = Request(http.method, path, dict(http.query), None, content_type, time.monotonic())
            self.requests.append(request)
            if raw:
                if content_type == "application/json":
                    try:
                        body = request.json = json.loads(raw)
                    except ValueError:
                        return self._error(400, 50109, "The request body contains invalid JSON.", request)
                elif content_type.startswith("multipart/form-data"):
                    body = request.json = self._payload_json(raw, content_type)
                else:
                    return self._error(400, 50109, f"unsupported Content-Type {content_type!r}", request)
            limited = self._limited(request)
            if limited is not None:
                return limited
            bot_auth = http.headers.get("Authorization")
            if not path.startswith(("/interactions/", "/webhooks/")) and bot_auth != f"Bot {self.token}":
                return self._json({"message": "401: Unauthorized", "code": 0}, status=401)
            for method, pattern, handler in self._routes:
                match = re.fullmatch(pattern, path)
                if method == http.method and match:
                    result = handler(self, request, body, *match.groups())
                    break
            else:
                return self._error(404, 0, "404: Not Found (route not in the fake)", request)
        if isinstance(result, web.Response):
            return result
        events, payload, status = result
        for event, data in events:
            await self._dispatch(event, data)
        return web.Response(status=204) if status == 204 else self._json(payload, status=status)

    @staticmethod
    def _payload_json(raw: bytes, content_type: str) -> Any:
        boundary = content_type.split("boundary=", 1)[-1].strip('"')
        for part in raw.split(b"--" + boundary.encode()):
            if b'name="payload_json"' in part:
                return json.loads(part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0])
        return None

    def _get_me(self, request, body):
        return [], self.bot_user, 200

    def _get_application(self, request, body):
        return [], {"id": self.app_id, "name": "citebot", "description": "", "icon": None, "bot_public": False,
                    "bot_require_code_grant": False, "owner": self.users["admin"], "verify_key": "0" * 64,
                    "flags": 0, "team": None}, 200

    def _put_commands(self, request, body, app_id, guild_id=None):
        if app_id != self.app_id or (guild_id is not None and guild_id not in self.guild_ids):
            return self._error(404, 10002, "Unknown Application", request)
        problems = []
        for command in body:
            if command.get("type", 1) in (2, 3):  # user and message commands: any name, no description
                if not 1 <= len(command.get("name", "")) <= 32 or command.get("description") or command.get("options"):
                    problems.append(f"command {command.get('name')!r}: bad name, or a description or options")
                continue
            if not re.fullmatch(r"[-_a-z0-9]{1,32}", command.get("name", "")) or not 1 <= len(command.get("description", "")) <= 100:
                problems.append(f"command {command.get('name')!r}: bad name or description")
            for option in command.get("options", []):
                if not 1 <= len(option.get("description", "")) <= 100:
                    problems.append(f"option {option.get('name')!r}: needs a description of 1 to 100 characters")
        if problems:
            return self._error(400, 50035, "Invalid Form Body", request, errors=problems)
        # As Discord answers: a message command comes back with an empty description.
        self.commands = [{"description": "", **c, "id": self._snowflake(), "application_id": self.app_id, "version": "1",
                          "guild_id": guild_id, "default_member_permissions": c.get("default_member_permissions"),
                          "type": c.get("type", 1)} for c in body]
        return [], self.commands, 200

    def _post_message(self, request, body, channel_id):
        if channel_id not in self.channels:
            return self._error(404, 10003, "Unknown Channel", request)
        errors = self._check_message(body)
        if errors:
            return self._error(400, 50035, "Invalid Form Body", request, errors=errors)
        extra: dict[str, Any] = {}
        reference = body.get("message_reference")
        if reference:
            referenced = self.messages.get(str(reference["message_id"]))
            if referenced is None:
                return self._error(400, 50035, "Invalid Form Body: unknown message_reference", request)
            extra = {"type": 19, "message_reference": {**reference, "channel_id": channel_id,
                                                       "guild_id": self._guild_of_channel(channel_id)},
                     "referenced_message": self.public(referenced)}
        message = self._message(channel_id, self.bot_user, body, **extra)
        return [("MESSAGE_CREATE", self.public(message))], self.public(message), 200

    def _start_thread(self, request, body, channel_id, message_id):
        parent = self.channels.get(channel_id)
        if parent is None or message_id not in self.messages or parent["type"] != 0:
            return self._error(404, 10008, "Unknown Message", request)
        if message_id in self.channels:
            return self._error(400, 160004, "A thread has already been created for this message", request)
        if not 1 <= len(body.get("name", "")) <= 100 or body.get("auto_archive_duration", 4320) not in (60, 1440, 4320, 10080):
            return self._error(400, 50035, "Invalid Form Body", request)
        thread = {"id": message_id, "guild_id": parent["guild_id"], "parent_id": channel_id, "owner_id": self.bot_user["id"],
                  "type": 11, "name": body["name"], "last_message_id": None, "rate_limit_per_user": 0,
                  "message_count": 0, "member_count": 1, "flags": 0, "total_message_sent": 0,
                  "thread_metadata": {"archived": False, "auto_archive_duration": body.get("auto_archive_duration", 4320),
                                      "archive_timestamp": _now_iso(), "locked": False}}
        self.channels[message_id] = thread
        return [("THREAD_CREATE", {**thread, "newly_created": True})], thread, 201

    def _typing(self, request, body, channel_id):
        if channel_id not in self.channels:
            return self._error(404, 10003, "Unknown Channel", request)
        return [], None, 204

    def _open_dm(self, request, body):
        recipient = next((u for u in self.users.values() if u["id"] == str(body.get("recipient_id"))), None)
        if recipient is None:
            return self._error(400, 50035, "Invalid Form Body: unknown recipient", request)
        dm_id = self._dms.setdefault(recipient["id"], self._snowflake())
        dm = {"id": dm_id, "type": 1, "recipients": [recipient], "last_message_id": None}
        self.channels.setdefault(dm_id, dm)
        return [], dm, 200

    def _interaction(self, request, token) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def _callback(self, request, body, interaction_id, token):
        record = self.interactions.get(interaction_id)
        now = time.monotonic()
        if record is None or record.token != token:
            return self._error(404, 10062, "Unknown interaction", request)
        if now - record.dispatched_at > self.deadline:
            return self._error(404, 10062, f"Unknown interaction (answered {now - record.dispatched_at:.2f} s late)", request)
        if record.acked_at is not None:
            return self._error(400, 40060, "Interaction has already been acknowledged.", request)
        kind, data = body.get("type"), body.get("data") or {}
        if (kind == 8) != (record.kind == 4):
            return self._error(400, 50035, f"Invalid Form Body: callback type {kind} for interaction type {record.kind}",
                               request)
        if kind in (4, 7):
            errors = self._check_message(data)
            if errors:
                return self._error(400, 50035, "Invalid Form Body", request, errors=errors)
        elif kind == 8:
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25 or not all(
                    1 <= len(c.get("name", "")) <= 100 and 1 <= len(str(c.get("value", ""))) <= 100 for c in choices):
                return self._error(400, 50035, "Invalid Form Body: at most 25 choices of 1 to 100 characters", request)
            record.choices = choices
        elif kind not in (5, 6):
            return self._error(400, 50035, f"Invalid Form Body: unsupported callback type {kind}", request)
        record.acked_at, record.response_type = now, kind
        record.ephemeral = bool((data.get("flags") or 0) & EPHEMERAL)
        events = []
        message = None
        if kind in (4, 5):
            flags = (data.get("flags") or 0) | (LOADING if kind == 5 else 0)
            message = self._message(record.channel_id, self.bot_user, {**data, "flags": flags}, type=20,
                                    webhook_id=self.app_id, application_id=self.app_id)
            record.original_id, record.loading = message["id"], kind == 5
            if not record.ephemeral:
                events.append(("MESSAGE_CREATE", self.public(message)))
        response: dict[str, Any] = {"interaction": {"id": record.id, "type": 2, "response_message_id": record.original_id,
                                                    "response_message_loading": record.loading,
                                                    "response_message_ephemeral": record.ephemeral}}
        if kind == 4:
            response["resource"] = {"type": kind, "message": self.public(message)}
        return events, response, 200

    def _execute_webhook(self, request, body, app_id, token):
        record = self._interaction(request, token)
        if record is None or app_id != self.app_id or record.acked_at is None:
            return self._error(404, 10015, "Unknown Webhook", request)
        errors = self._check_message(body)
        if errors:
            return self._error(400, 50035, "Invalid Form Body", request, errors=errors)
        if record.loading:
            # The first follow-up after a "thinking" defer fills that message; its own flags don't count.
            if record.original_id not in self.messages:
                return self._error(404, 10008, "Unknown Message", request)
            return self._edit_original(request, body, app_id, token)
        message = self._message(record.channel_id, self.bot_user, body, type=20, webhook_id=self.app_id,
                                application_id=self.app_id)
        record.followup_ids.append(message["id"])
        events = [] if message["flags"] & EPHEMERAL else [("MESSAGE_CREATE", self.public(message))]
        return events, self.public(message), 200

    def _edit_original(self, request, body, app_id, token):
        record = self._interaction(request, token)
        if record is None or app_id != self.app_id:
            return self._error(404, 10015, "Unknown Webhook", request)
        message = self.messages.get(record.original_id or "")
        if message is None:
            return self._error(404, 10008, "Unknown Message", request)
        errors = self._check_message({**self.public(message), **body})
        if errors:
            return self._error(400, 50035, "Invalid Form Body", request, errors=errors)
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key]
        if message["flags"] & LOADING:
            message["_filled_at"] = time.monotonic()
        message["flags"] = message["flags"] & ~LOADING
        message["edited_timestamp"] = _now_iso()
        message["_pings"] = self._pings(message, body)
        message.setdefault("_edits", []).append(body)
        record.loading = False
        events = [] if message["flags"] & EPHEMERAL else [("MESSAGE_UPDATE", self.public(message))]
        return events, self.public(message), 200

    def _delete_original(self, request, body, app_id, token):
        record = self._interaction(request, token)
        if record is None or record.original_id not in self.messages:
            return self._error(404, 10008, "Unknown Message", request)
        message = self.messages.pop(record.original_id)
        message["_deleted"] = True
        self.deleted.append(message)
        events = [] if message["flags"] & EPHEMERAL else [
            ("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"],
                                "guild_id": self._guild_of_channel(message["channel_id"])})]
        return events, None, 204

    def _gateway_bot(self, request, body):
        return [], {"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": self.shard_count,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                            "max_concurrency": 1}}, 200

    _routes = [
        ("GET", r"/gateway/bot", _gateway_bot),
        ("GET", r"/users/@me", _get_me),
        ("GET", r"/oauth2/applications/@me", _get_application),
        ("PUT", r"/applications/(\d+)/commands", _put_commands),
        ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", _put_commands),
        ("POST", r"/channels/(\d+)/messages", _post_message),
        ("POST", r"/channels/(\d+)/messages/(\d+)/threads", _start_thread),
        ("POST", r"/channels/(\d+)/typing", _typing),
        ("POST", r"/users/@me/channels", _open_dm),
        ("POST", r"/interactions/(\d+)/([^/]+)/callback", _callback),
        ("POST", r"/webhooks/(\d+)/([^/]+)", _execute_webhook),
        ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", _edit_original),
        ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/@original", _delete_original),
    ]

    # -- gateway

    async def _gateway(self, http: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(http)
        with self._lock:
            self.connections.append(http.path)
        if http.query.get("v") != "10" or http.query.get("encoding") != "json":
            await ws.close(code=4012, message=b"Invalid API version")
            return ws
        connection = _Connection(ws, compress=http.query.get("compress") == "zlib-stream", transport=http.transport)
        await connection.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}})
        try:
            while True:
                try:
                    frame = await ws.receive(timeout=IDLE_TIMEOUT)
                except asyncio.TimeoutError:
                    await ws.close(code=4009, message=b"Session timed out")
                    break
                if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    with self._lock:
                        self.close_codes.append(frame.data if frame.type == WSMsgType.CLOSE else ws.close_code)
                    break
                if frame.type != WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Decode error")
                    break
                if not await self._on_frame(connection, json.loads(frame.data)):
                    break
        finally:
            with self._lock:
                for session in self._sessions.values():
                    if session.live is connection:
                        session.live = None
        return ws

    async def _on_frame(self, connection: _Connection, payload: dict) -> bool:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            with self._lock:
                self.heartbeats.append(time.monotonic())
            await connection.send({"op": 11})
        elif op == 2:
            with self._lock:
                self.identifies.append({"at": time.monotonic(), **{k: v for k, v in data.items() if k != "token"}})
            if data.get("token") != self.token:
                await connection.ws.close(code=4004, message=b"Authentication failed.")
                return False
            asked = bool(data.get("intents", 0) & MESSAGE_CONTENT_INTENT)
            if asked and not self.message_content_approved:
                await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
                return False
            shard, count = data.get("shard") or [0, 1]
            if self.shard_count > 1 and count != self.shard_count:  # as Discord closes a wrong shard count
                await connection.ws.close(code=4011 if count == 1 else 4010,
                                          message=b"Sharding required." if count == 1 else b"Invalid shard.")
                return False
            self.message_content = asked
            key = shard if self.shard_count > 1 else 0
            with self._lock:
                session = self._sessions[key] = _Session(id=f"session-{len(self.identifies)}", live=connection)
            mine = [g for g in self.guild_ids if self.shard_count == 1 or self.shard_of(g) == shard]
            await self._dispatch("READY", {
                "v": 10, "user": self.bot_user, "guilds": [{"id": g, "unavailable": True} for g in mine],
                "session_id": session.id, "session_type": "normal",
                "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume-gateway",
                "application": {"id": self.app_id, "flags": 0}, "private_channels": [], "relationships": [],
                **({"shard": [shard, count]} if self.shard_count > 1 else {}),
            }, session=session)
            self.ready_at = time.monotonic()
            for guild in mine:
                await self._dispatch("GUILD_CREATE", self._guild(guild), session=session)
        elif op == 6:
            session = next((s for s in self._sessions.values() if s.id == (data or {}).get("session_id")), None)
            with self._lock:
                self.resumes.append({k: v for k, v in data.items() if k != "token"})
            if session is None or data.get("session_id") != session.id or data.get("token") != self.token:
                await connection.send({"op": 9, "d": False})
                return True
            with self._lock:
                missed = [f for f in session.frames if f["s"] > (data.get("seq") or 0)]
                session.live = connection
            for frame in missed:
                await connection.send(frame)
            await self._dispatch("RESUMED", {})
        elif op in (3, 4, 8):
            pass
        else:
            await connection.ws.close(code=4001, message=b"Unknown opcode")
            return False
        return True

    def _without_content(self, message: dict) -> dict:
        """A user's message as a bot without the Message Content intent gets it: empty, unless it mentions the bot."""
        if self.message_content or message["author"]["id"] == self.bot_user["id"] or not message.get("guild_id"):
            return message
        if any(u["id"] == self.bot_user["id"] for u in message.get("mentions", [])):
            return message
        return {**message, "content": "", "embeds": [], "attachments": [], "components": []}

    async def _dispatch(self, event: str, data: Any, *, session: _Session | None = None) -> None:
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            data = self._without_content(data)
        with self._lock:
            if session is None:
                guild = data.get("guild_id") if isinstance(data, dict) else None
                if event in ("GUILD_CREATE", "GUILD_UPDATE") and isinstance(data, dict):
                    guild = data.get("id")
                session = self._sessions.get(self.shard_of(guild))
            if session is None:  # that shard is not connected: Discord does not deliver its events either
                return
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.frames.append(frame)
            live = session.live
            if event == "INTERACTION_CREATE":
                self.interactions[data["id"]].dispatched_at = time.monotonic()
        if live is not None and not live.paused:
            await live.send(frame)

    # -- driving it from a test (any thread, any loop)

    async def _run(self, coroutine) -> Any:
        assert self._loop is not None
        future: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), 10)

    async def send_message(self, author: str, content: str, *, channel: str | None = None, reply_to: str | None = None) -> dict:
        """A user posts a message; the bot hears MESSAGE_CREATE."""
        async def post() -> dict:
            with self._lock:
                user = self.users[author]
                channel_id = channel or self.general
                extra: dict[str, Any] = {"member": {k: v for k, v in self._member(user).items() if k != "user"}}
                guild_id = self._guild_of_channel(channel_id)
                mentioned = [u for u in [self.bot_user, *self.users.values()] if re.search(rf"<@!?{u['id']}>", content)]
                if reply_to is not None:
                    referenced = self.messages[reply_to]
                    extra.update(type=19, referenced_message=self.public(referenced),
                                 message_reference={"message_id": reply_to, "channel_id": referenced["channel_id"],
                                                    "guild_id": guild_id})
                    if referenced["author"] not in mentioned:
                        mentioned.append(referenced["author"])
                extra["mentions"] = mentioned
                message = self._message(channel_id, user, {"content": content}, **extra)
            await self._dispatch("MESSAGE_CREATE", self.public(message))
            return message

        return await self._run(post())

    async def slash(self, user: str, name: str, *, channel: str | None = None, after: float = 0.0,
                    when: Callable[[], Any] | None = None, sub: str | None = None, **options: Any) -> Interaction:
        """A user runs a slash command the bot synced (`sub`: a subcommand of a group, e.g. /channel set).

        With `when` and `after`, the fake sends it `after` seconds once `when()` is true, timed on the
        fake's own loop: it holds even while the bot's loop is blocked.
        """
        async def later(payload: dict) -> None:
            deadline = time.monotonic() + 10
            while when is not None and not when() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(after)
            await self._dispatch("INTERACTION_CREATE", payload)

        async def invoke() -> Interaction:
            with self._lock:
                command = next(c for c in self.commands if c["name"] == name)
                declared = command.get("options", [])
                if sub is not None:
                    declared = next(o for o in declared if o["name"] == sub).get("options", [])
                typed = {o["name"]: o["type"] for o in declared}
                given = [{"name": k, "type": typed[k], "value": v} for k, v in options.items()]
                data = {"id": command["id"], "name": name, "type": 1,
                        "guild_id": self._guild_of_channel(channel or self.general),
                        "options": given if sub is None else [{"name": sub, "type": 1, "options": given}]}
                record, payload = self._interaction_payload(user, channel or self.general, name, 2, data)
            if after or when is not None:
                self._later.add(task := asyncio.ensure_future(later(payload)))
                task.add_done_callback(self._later.discard)
            else:
                await self._dispatch("INTERACTION_CREATE", payload)
            return record

        return await self._run(invoke())

    async def click(self, user: str, message_id: str, *, label: str | None = None, emoji: str | None = None) -> Interaction:
        """A user clicks a button on one of the bot's messages."""
        async def invoke() -> Interaction:
            with self._lock:
                message = self.messages[message_id]
                button = next(c for row in message["components"] for c in row["components"]
                              if (label and c.get("label") == label) or (emoji and (c.get("emoji") or {}).get("name") == emoji))
                data = {"custom_id": button["custom_id"], "component_type": 2}
                record, payload = self._interaction_payload(user, message["channel_id"], button["custom_id"], 3, data)
                payload["message"] = self.public(message)
                record.original_id = message_id  # what "edit the original response" edits, unless it is answered anew
            await self._dispatch("INTERACTION_CREATE", payload)
            return record

        return await self._run(invoke())

    async def context_menu(self, user: str, name: str, message_id: str) -> Interaction:
        """A user runs a message command on a message (Apps → `name`); Discord sends the message in full."""
        async def invoke() -> Interaction:
            with self._lock:
                command = next(c for c in self.commands if c["name"] == name and c["type"] == 3)
                message = self.messages[message_id]
                data = {"id": command["id"], "name": name, "type": 3,
                        "guild_id": self._guild_of_channel(message["channel_id"]), "target_id": message_id,
                        "resolved": {"messages": {message_id: self.public(message)}}}
                record, payload = self._interaction_payload(user, message["channel_id"], name, 2, data)
            await self._dispatch("INTERACTION_CREATE", payload)
            return record

        return await self._run(invoke())

    async def autocomplete(self, user: str, name: str, option: str, typed: str, **filled: Any) -> Interaction:
        """A user types `typed` into a command's option; the bot is to answer with choices."""
        async def invoke() -> Interaction:
            with self._lock:
                command = next(c for c in self.commands if c["name"] == name)
                typed_as = {o["name"]: o["type"] for o in command.get("options", [])}
                options = [{"name": k, "type": typed_as[k], "value": v} for k, v in filled.items()]
                options.append({"name": option, "type": typed_as[option], "value": typed, "focused": True})
                data = {"id": command["id"], "name": name, "type": 1, "guild_id": self.guild_id, "options": options}
                record, payload = self._interaction_payload(user, self.general, name, 4, data)
            await self._dispatch("INTERACTION_CREATE", payload)
            return record

        return await self._run(invoke())

    def give_role(self, user: str, role: str) -> None:
        """`user` holds `role` from their next message or interaction on."""
        with self._lock:
            self.member_roles.setdefault(user, []).append(self.roles[role])

    def _interaction_payload(self, user: str, channel_id: str, name: str, kind: int, data: dict) -> tuple[Interaction, dict]:
        record = Interaction(id=self._snowflake(), token=f"token-{next(self._ids)}", user_id=self.users[user]["id"],
                             channel_id=channel_id, name=name, kind=kind)
        self.interactions[record.id] = record
        channel = self.channels[channel_id]
        guild_id = channel.get("guild_id") or self.guild_id
        payload = {"id": record.id, "application_id": self.app_id, "type": kind, "data": data, "guild_id": guild_id,
                   "channel_id": channel_id, "channel": channel, "token": record.token, "version": 1,
                   "member": self._member(self.users[user], permissions=self.permissions_of(user)),
                   "app_permissions": str(MEMBER_PERMISSIONS), "locale": "en-US", "guild_locale": "en-US",
                   "entitlements": [], "authorizing_integration_owners": {"0": guild_id}, "context": 0,
                   "attachment_size_limit": 8 * 1024 * 1024}
        return record, payload

    async def reconnect(self, *, drop: bool = False) -> None:
        """Ask the bot to reconnect (op 7), or with `drop` cut the TCP connection with no goodbye.

        Events from now until the bot resumes are only buffered, for the RESUME to replay.
        """
        async def cut() -> None:
            with self._lock:
                live = self._session.live if self._session else None
            if live is None:
                raise RuntimeError("no live gateway connection to reconnect")
            live.paused = True
            if drop and live.transport is not None:
                live.transport.abort()
            else:
                await live.send({"op": 7, "d": None})

        await self._run(cut())

    async def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 5.0, what: str = "condition") -> Any:
        """Poll `predicate` (under the fake's lock) until it is truthy; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; violations: {self.violations}")
            await asyncio.sleep(0.02)

    # -- reading what happened

    def bot_messages(self, channel: str | None = None) -> list[dict]:
        with self._lock:
            return [m for m in self.messages.values()
                    if m["author"]["id"] == self.bot_user["id"] and (channel is None or m["channel_id"] == channel)]

    def requests_to(self, method: str, pattern: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]
