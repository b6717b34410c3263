"""The served model's provenance, which its `GET /metadata` answers: written into the Bento at build time.

`written_for_build` writes `model/metadata.json` into the checked-out project just before `bentoml build`
(bentofile.yaml includes it; model/serve.py reads it) and removes it after, so that no later build of
the same tree serves a stale one (a Bento without it answers "unknown"). It holds, from the checkout:

- `sha`: the commit (`git rev-parse HEAD`), checked against the one the deploy was asked to build;
- `clean`: whether the tree is the commit's (`dvc repro` in the build job, for one, changes dvc.lock);
- `dvc_lock`: the md5 of each stage's outputs in dvc.lock, `{stage: {path: md5}}` (the data, the model);
- `params`: params.yaml; `metrics`: evaluation/metrics.json;
- `report_url`: the training report's link, from deploy.yml's `report_url` input: https only, bounded.

A file the project lacks is recorded as null; a file it holds that cannot be read stops the build,
saying why. Everything here is the pull request's data: it is parsed, never run, and bounded.
"""

import contextlib
import json
import math
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

METADATA_FILE = Path("model/metadata.json")  # model/serve.py's METADATA_FILE, in the project
LOCK_FILE = Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")
METRICS_FILE = Path("evaluation/metrics.json")
MAX_INPUT_BYTES = 1024 * 1024  # each file read; the served document stays under serve.py's cap
MAX_URL_LENGTH = 2048
COMMIT = re.compile(r"^[0-9a-f]{40}$")


class ProvenanceError(ValueError):
    """The provenance cannot be written; the message says why."""


def report_link(url: str) -> str | None:
    """Return the report's URL once checked (https, a host, no credentials, bounded), or None if empty."""
    if not url:
        return None
    if len(url) > MAX_URL_LENGTH:
        raise ProvenanceError(f"the report URL is over {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise ProvenanceError("the report URL holds spaces or characters a URL cannot")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as error:
        raise ProvenanceError(f"the report URL is not a URL ({error})") from error
    if parts.scheme != "https" or not parts.hostname:
        raise ProvenanceError("the report URL must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ProvenanceError("the report URL must not hold credentials")
    return url


def _read(path: Path) -> str | None:
    """Return a file's text, or None when there is no such file; bounded."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_INPUT_BYTES:
        raise ProvenanceError(f"{path.name} is over {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise ProvenanceError(f"{path.name} is not UTF-8 text ({error})") from error


def _yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProvenanceError(f"{name} is not YAML ({error})") from error


def stage_outputs(lock_text: str) -> dict[str, dict[str, str]]:
    """Return the md5 of each stage's outputs in dvc.lock: `{stage: {path: md5}}`."""
    lock = _yaml(lock_text, "dvc.lock")
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise ProvenanceError("dvc.lock has no `stages` mapping")
    outputs: dict[str, dict[str, str]] = {}
    for stage, body in stages.items():
        outs = body.get("outs", []) if isinstance(body, dict) else None
        if not isinstance(outs, list):
            raise ProvenanceError(f"dvc.lock: stage {stage!r} has no list of `outs`")
        outputs[str(stage)] = {}
        for out in outs:
            path, md5 = (out.get("path"), out.get("md5")) if isinstance(out, dict) else (None, None)
            if not isinstance(path, str) or not isinstance(md5, str):
                raise ProvenanceError(f"dvc.lock: an output of stage {stage!r} lacks its path or md5")
            outputs[str(stage)][path] = md5
    return outputs


def _finite(value: Any) -> Any:
    """Return `value` with NaN and infinities as None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _mapping(text: str | None, name: str, parse: Callable[[str], Any]) -> dict[str, Any] | None:
    """Return a file's mapping (parsed by `parse`), None when there is no file; refuse anything else."""
    if text is None:
        return None
    parsed = parse(text)
    if not isinstance(parsed, dict):
        raise ProvenanceError(f"{name} does not hold a mapping")
    return dict(_finite(parsed))


def _metrics(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ProvenanceError(f"evaluation/metrics.json is not JSON ({error})") from error


def _git(project: Path, *args: str) -> str | None:
    """Return a git command's output in the project, or None when the project is not a git checkout."""
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def commit(project: Path, expected: str | None) -> tuple[str | None, bool | None]:
    """Return the checkout's commit and whether its tree is the commit's (None, None: not a checkout).

    The commit must be `expected` when one is given: the deploy builds the commit it was asked for.
    """
    head = _git(project, "rev-parse", "HEAD")
    if head is None:
        return expected, None
    if expected is not None and head != expected:
        raise ProvenanceError(f"the checkout is at {head}, not at the commit to build, {expected}")
    status = _git(project, "status", "--porcelain")
    return head, None if status is None else status == ""


def provenance(project: Path, sha: str | None = None, report_url: str = "") -> dict[str, Any]:
    """Return the document `/metadata` answers for a Bento built from `project` (read, never run)."""
    if sha is not None and not COMMIT.match(sha):
        raise ProvenanceError(f"{sha!r} is not a commit SHA")
    link = report_link(report_url)
    head, clean = commit(project, sha)
    lock_text = _read(project / LOCK_FILE)
    return {
        "sha": head,
        "clean": clean,
        "dvc_lock": None if lock_text is None else stage_outputs(lock_text),
        "params": _mapping(_read(project / PARAMS_FILE), "params.yaml", lambda t: _yaml(t, "params.yaml")),
        "metrics": _mapping(_read(project / METRICS_FILE), "evaluation/metrics.json", _metrics),
        "report_url": link,
    }


@contextlib.contextmanager
def written_for_build(project: Path, document: dict[str, Any]) -> Iterator[Path]:
    """Write `document` as the project's metadata.json for the length of the block, then remove it.

    Whatever the checkout held at that path (a pull request may commit a file, or a link to one
    elsewhere) is removed first, never written through: the Bento holds this build's document only.
    """
    target = project / METADATA_FILE
    target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
    try:
        yield target
    finally:
        target.unlink(missing_ok=True)
