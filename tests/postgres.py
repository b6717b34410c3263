"""A private PostgreSQL server for the tests: the real thing, started from Debian's binaries."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.processes import free_port


def postgres_bin() -> Path | None:
    """Return the newest installed PostgreSQL server's bin directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start a throwaway cluster on a free port and return its SQLAlchemy URL."""
    if url := os.environ.get("ORBIT_TEST_POSTGRES_URL"):
        yield url
        return
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    with running_postgres() as url:
        yield url


@contextlib.contextmanager
def running_postgres(settings: str = "") -> Iterator[str]:
    """Run a throwaway cluster on a free port (Debian's binaries) and yield its SQLAlchemy URL.

    `settings`: more of the server's options, as `-c name=value`.
    """
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: `make system-deps` installs it")
    # Not under pytest's temporary folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="orbit-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
    subprocess.run(
        _as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "orbit", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off {settings}"
    start = [
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "server.log"),
        "-w",
        "start",
    ]
    # The server must not inherit our pipes, or waiting for pg_ctl would wait for the server too.
    subprocess.run(_as_server_user(start), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"postgresql+psycopg://orbit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """Return the URL of a new, empty database on the test PostgreSQL server (dropped afterwards)."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
