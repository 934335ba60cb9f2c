"""A real PostgreSQL for the tests: ``initdb`` + ``pg_ctl`` into a temporary folder.

``PgCluster`` runs the Debian ``postgresql`` package's binaries (/usr/lib/postgresql/*/bin,
or on PATH) on a free loopback port, trusting local connections.  Running as root (as
in CI containers), the cluster runs as ``nobody`` (PostgreSQL refuses root) with its
folder owned by that user.  ``stop()``/``start()`` take the server down and up again on
the same port and data (the tests' "database outage").

``postgres_binaries()`` finds the binaries; a test skips when they are missing, except
under ``CI=true`` where a missing PostgreSQL is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_AS = "nobody"


def postgres_binaries() -> Path | None:
    """The folder holding initdb/pg_ctl/postgres, newest version first; None if absent."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit()
                         else 0, reverse=True):
        if Path(folder, "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def require_postgres() -> Path:
    """The binaries, or skip (fail in CI) saying how to get them."""
    binaries = postgres_binaries()
    if binaries is None:
        message = ("PostgreSQL binaries (initdb, pg_ctl) not found: install the Debian "
                   "'postgresql' package (apt-get install -y postgresql)")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message + " -- CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(message)
    return binaries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One throwaway PostgreSQL server (see the module docstring)."""

    def __init__(self, binaries: Path, base: Path | None = None) -> None:
        self.bin = binaries
        self.port = free_port()
        # Under /tmp rather than pytest's tmp_path: ``nobody`` must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="mcp-gw-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_root = os.geteuid() == 0
        self.user = RUN_AS if self._as_root else pwd.getpwuid(os.geteuid()).pw_name
        if self._as_root:
            entry = pwd.getpwnam(RUN_AS)
            self.root.chmod(0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale", "C")

    def _run(self, tool: str, *args: str, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=self.root, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}"
                               f"\n{self.log.read_text() if self.log.exists() else ''}")
        return result

    def start(self, *, durable: bool = False) -> None:
        """Start (again); ``durable=False`` (tests) turns fsync off: throwaway data on a
        loaded machine.  Benchmarks start it durable, as a deployment runs."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
                   " -c max_connections=200 -c shared_buffers=128MB")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.durable = durable
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                           "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql)
        return result.stdout.strip()

    def destroy(self) -> None:
        """Stop the server and remove its files.  The removal runs detached: a session's
        cluster holds hundreds of databases, and on a loaded machine deleting them
        outlasted the last test's 60 s timeout (its teardown failed, every test passed)."""
        self.stop("immediate")
        gone = self.root.with_name(self.root.name + "-gone")
        try:
            self.root.rename(gone)
        except OSError:
            gone = self.root
        try:
            subprocess.Popen(["rm", "-rf", "--", str(gone)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        except OSError:  # no rm: removed here, then
            shutil.rmtree(gone, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[PgCluster]:
    """A started PostgreSQL server, destroyed afterwards (skips, or fails in CI, without one)."""
    cluster = PgCluster(require_postgres())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server for the whole session."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh database on the session's server."""
    return pg_cluster.create_database()
