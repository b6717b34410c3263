"""The serving base image: its name from its lock, and whether a Bento's dependencies are in it.

A base holds the served model's Python dependencies, installed from `requirements/serving.lock`;
`.github/workflows/serving-base.yml` builds one per lock (and Containerfile), tagged with their hash,
so a deploy that names the lock names its base. A Bento whose requirements the lock does not satisfy
cannot run on that base: it needs a full build.
"""

import hashlib
import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

LOCK = Path("requirements/serving.lock")
CONTAINERFILE = Path("deploy/images/serving-base.Containerfile")
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
# The base runs CPython 3.11 on Linux x86-64: a requirement's markers are read for that.
BASE_ENVIRONMENT = {  # over this machine's, which `Marker.evaluate` starts from
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


def base_tag(lock: Path, containerfile: Path) -> str:
    """Return the base's tag: 16 hex digits of the SHA-256 of the lock then the Containerfile.

    serving-base.yml computes the same with `cat LOCK CONTAINERFILE | sha256sum | cut -c1-16`.
    """
    digest = hashlib.sha256(lock.read_bytes())
    digest.update(containerfile.read_bytes())
    return digest.hexdigest()[:16]


def base_image(registry: str, service: str, lock: Path, containerfile: Path) -> str:
    """Return the base's reference in the registry: `<registry>/<service>-base:<tag>`."""
    return f"{registry.rstrip('/')}/{service}-base:{base_tag(lock, containerfile)}"


def locked_versions(lock_text: str) -> dict[str, Version]:
    """Return each package the lock pins, by its canonical name."""
    pinned: dict[str, Version] = {}
    for line in lock_text.splitlines():
        match = PINNED.match(line.strip())
        if match:
            try:
                pinned[canonicalize_name(match[1])] = Version(match[2])
            except InvalidVersion as error:
                raise ValueError(f"the lock pins {match[1]} to an invalid version {match[2]!r}") from error
    return pinned


def differences(requirements_text: str, locked: dict[str, Version]) -> list[str]:
    """Return, one line each, the requirements that the locked versions do not satisfy."""
    found = []
    for line in requirements_text.splitlines():
        text = line.split(" #", maxsplit=1)[0].strip()
        if not text or text.startswith(("#", "-")):  # comments, and options such as --index-url
            continue
        problem = _unsatisfied(text, locked)
        if problem:
            found.append(problem)
    return found


def _unsatisfied(text: str, locked: dict[str, Version]) -> str | None:
    """Return why the lock does not satisfy one requirement line, or None when it does."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return f"{text}: not a requirement the lock can be checked against"
    if requirement.marker and not requirement.marker.evaluate(BASE_ENVIRONMENT):
        return None  # not for the base's Python or platform
    version = locked.get(canonicalize_name(requirement.name))
    if requirement.url or version is None:
        return f"{text}: {'installed from a URL' if requirement.url else 'not in the base lock'}"
    if requirement.extras:
        return f"{text}: asks for extras the lock may not hold (locked {version})"
    if not requirement.specifier.contains(version, prereleases=True):
        return f"{text}: the base has {requirement.name} {version}"
    return None
