"""The DVC remote, when the directory `orbit doctor` runs in is a DVC project that names one.

The bot itself holds no DVC configuration and its image has no DVC: the runners' jobs use the model
repository's `.dvc/config`. Run in a checkout of the model project, the doctor reads that file and
checks what it can without DVC: that a local remote exists, that an HTTP remote answers.
"""

import configparser
from pathlib import Path

import httpx

from bot.doctor.check import Check, failed, passed, warned

NAME = "DVC remote"
TIMEOUT = 5.0


def dvc_check(project: Path) -> Check:
    """Return whether the project's default DVC remote is reachable; skipped when there is none."""
    remote = default_remote(project / ".dvc")
    if remote is None:
        return warned(NAME, f"skipped: no DVC remote configured in {project.resolve() / '.dvc'}")
    name, url = remote
    if "://" not in url:
        path = (project / ".dvc" / url).resolve() if not Path(url).is_absolute() else Path(url)
        if not path.is_dir():
            return failed(
                NAME, f"{name}: {path} does not exist", f"create it, or `dvc remote modify {name} url ...`"
            )
        return passed(NAME, f"{name}: {path}")
    if url.startswith(("http://", "https://")):
        return _http(name, url)
    return warned(NAME, f"{name}: {url} not checked (no DVC here)", "`dvc status --cloud` checks it")


def default_remote(dvc_dir: Path) -> tuple[str, str] | None:
    """Return the default remote's name and URL from `.dvc/config` (and `config.local`), or None."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read([dvc_dir / "config", dvc_dir / "config.local"])
    name = parser.get("core", "remote", fallback="")
    url = parser.get(f"'remote \"{name}\"'", "url", fallback="") if name else ""
    return (name, url) if url else None


def _http(name: str, url: str) -> Check:
    try:
        answer = httpx.head(url, timeout=TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as error:
        return failed(
            NAME, f"{name}: cannot reach {url} ({type(error).__name__})", "check the URL and the network"
        )
    if answer.status_code >= 500:
        return failed(NAME, f"{name}: {url} answered {answer.status_code}", "check the remote's server")
    return passed(NAME, f"{name}: {url} answers ({answer.status_code})")
