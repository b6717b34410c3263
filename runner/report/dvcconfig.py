"""DVC's config (system, global, repo and local files merged) read as `dvc.config.Config` reads it.

Only what the report needs: the default remote (named in the report's facts) and the cache
directory (where a base's cached metrics or plot file is read from).
"""

import os
import re
from pathlib import Path
from typing import Any

from runner.report.dvcformats import Unsupported

NAMED_SECTION = re.compile(r'^\s*(remote|machine|db)\s*"(.*)"\s*$')
URL = re.compile(r"\w+://")


def config_files(project: Path) -> list[Path]:
    """Return DVC's config files from the lowest level to the highest, as `Config.files` names them."""
    import platformdirs

    system = os.getenv("DVC_SYSTEM_CONFIG_DIR") or platformdirs.site_config_dir("dvc", "iterative")
    user = os.getenv("DVC_GLOBAL_CONFIG_DIR") or platformdirs.user_config_dir("dvc", "iterative")
    dvc_dir = project / ".dvc"
    return [Path(system) / "config", Path(user) / "config", dvc_dir / "config", dvc_dir / "config.local"]


def read_config(project: Path) -> dict[str, Any]:
    """Return the merged config: {"core": {...}, "remote": {name: {...}}, "cache": {...}, …}."""
    merged: dict[str, Any] = {}
    for file in config_files(project):
        if file.is_file():
            _merge(merged, _load(file))
    core = merged.get("core")
    if isinstance(core, dict) and isinstance(core.get("remote"), str):
        core["remote"] = core["remote"].lower()  # DVC's schema lowers the default remote's name
    return merged


def _load(file: Path) -> dict[str, Any]:
    from configobj import ConfigObj, ConfigObjError  # type: ignore[import-untyped]

    try:
        parsed = ConfigObj(str(file), encoding="utf-8").dict()
    except (ConfigObjError, UnicodeDecodeError, OSError) as error:
        raise Unsupported(f"{file} does not parse") from error
    conf = _named(_lower_keys(parsed))
    folder = os.path.abspath(file.parent)
    for remote in conf["remote"].values():
        if isinstance(remote, dict) and isinstance(remote.get("url"), str):
            remote["url"] = _resolved(folder, remote["url"])
    cache = conf.get("cache")
    if isinstance(cache, dict) and isinstance(cache.get("dir"), str):
        cache["dir"] = _resolved(folder, cache["dir"])
    return conf


def _lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key.lower(): _lower_keys(value) if isinstance(value, dict) else value for key, value in data.items()
    }


def _named(conf: dict[str, Any]) -> dict[str, Any]:
    """Turn `remote "name"` sections into {"remote": {name: …}}, as `dvc.config._parse_named` does."""
    result: dict[str, Any] = {"remote": {}, "machine": {}, "db": {}}
    for section, value in conf.items():
        if match := NAMED_SECTION.match(section):
            result[match[1]][match[2]] = value
        else:
            result[section] = value
    return result


def _resolved(folder: str, path: str) -> str:
    """Resolve a relative path against its config file's folder, as `Config._resolve` does."""
    if URL.match(path) or os.path.isabs(path):
        return path
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return expanded
    return os.path.abspath(os.path.join(folder, path))


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value


def cache_dir(project: Path, config: dict[str, Any]) -> Path:
    """Return the DVC cache directory: `cache.dir` of the config, else .dvc/cache."""
    configured = (config.get("cache") or {}).get("dir")
    return Path(configured) if isinstance(configured, str) else project / ".dvc" / "cache"
