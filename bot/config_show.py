"""`citebot config show`: the settings in force, and where each came from. The Discord token shows as set or unset."""

from __future__ import annotations

import json
from typing import Any

from retrieval.settings import Origin, Settings, find_defaults

_ALIGN = 60  # values are aligned up to this width; longer lines just run on


def setting_values(settings: Settings) -> dict[str, Any]:
    """Every setting by dotted name ("search.k", "reranker.weights.bm25"), as JSON values."""
    values: dict[str, Any] = {}

    def walk(data: dict[str, Any], prefix: str) -> None:
        for key, value in data.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                values[f"{prefix}{key}"] = value

    walk(settings.model_dump(mode="json"), "")
    values["discord_token"] = "set" if settings.discord_token is not None else "unset"
    return values


def _files(origins: dict[str, Origin]) -> dict[str, str]:
    return {o.source: o.where for o in origins.values() if o.source in ("default file", "config file")}


def as_json(settings: Settings, origins: dict[str, Origin]) -> str:
    files = _files(origins)
    return json.dumps({
        "default_file": files.get("default file"),
        "installed": find_defaults().installed,
        "config_file": files.get("config file"),
        "settings": {name: {"value": value, "source": origins[name].source, "from": origins[name].where}
                     for name, value in setting_values(settings).items()},
    }, indent=2)


def _source(origin: Origin) -> str:
    """The files are named once, at the top; a variable is named on its line."""
    if origin.source == "environment":
        return f"environment {origin.where}"
    if origin.source == "CITEBOT_HOME":
        return f"CITEBOT_HOME={origin.where}"
    return origin.source


def as_lines(settings: Settings, origins: dict[str, Origin]) -> list[str]:
    files = _files(origins)
    installed = find_defaults().installed
    lines = [f"# default file: {files.get('default file')} ({'installed' if installed else 'the checkout'})"]
    if "config file" in files:
        lines.append(f"# config file: {files['config file']}")
    shown = [(name, value if name == "discord_token" else json.dumps(value))
             for name, value in setting_values(settings).items()]
    width = max((len(n) + len(v) + 3 for n, v in shown if len(n) + len(v) + 3 <= _ALIGN), default=0)
    lines += [f"{f'{name} = {value}':<{width}}  # {_source(origins[name])}" for name, value in shown]
    return lines
