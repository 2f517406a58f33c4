"""Shared fixtures: a real PostgreSQL server and a real one-node SLURM cluster.

The server is Debian's postgresql package (installed by scripts/setup.sh), started once per test
session in a temporary directory on 127.0.0.1 with trust authentication, and stopped at the end.
PostgreSQL refuses to run as root, so under root it runs as the `postgres` system user.

The cluster is `scripts/slurm-local.sh` (munged, MariaDB, slurmdbd, slurmctld, slurmd on this
machine), started once per test session when it is not up already and stopped at the end only if
this session started it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under `--dist loadgroup`, fail a grouped test before its fixtures start when xdist did not
    group it: the SLURM tests share one cluster, and with pytest 9.2 and xdist 3.8 the grouping
    silently stops (pytest-xdist#1386; the `test` extra pins pytest below 9.2), so that two
    workers would start and use the one cluster at the same time."""
    if (getattr(item.config.option, "loadgroup", False)  # set in xdist's workers
            and item.get_closest_marker("xdist_group") and "@" not in item.nodeid):
        pytest.fail("--dist loadgroup did not group this test (pytest-xdist#1386): pin "
                    "pytest<9.2", pytrace=False)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    pytest.fail("PostgreSQL server binaries not found: run scripts/setup.sh (installs postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="blast-pg-"))
        self.data = self.root / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "blast", "-E", "UTF8",
                  "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://blast@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"blast_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=blast dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A URL to a fresh, empty PostgreSQL database on the session's server."""
    return postgres_server.create_database()


SLURM_LOCAL = Path(__file__).resolve().parents[1] / "scripts" / "slurm-local.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A one-node SLURM with accounting on localhost, for `--executor slurm`."""
    up = subprocess.run([SLURM_LOCAL, "status"], capture_output=True).returncode == 0
    if not up:
        started = subprocess.run([SLURM_LOCAL, "start"], capture_output=True, text=True,
                                 timeout=900)
        if started.returncode != 0:
            pytest.fail(f"scripts/slurm-local.sh start failed:\n{started.stdout}{started.stderr}")
    try:
        yield
    finally:
        if not up:
            subprocess.run([SLURM_LOCAL, "stop"], capture_output=True, timeout=300)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`small_disk(kib, read_only=False)`: a real tmpfs of that size (a full or read-only disk
    as the kernel reports it; mounting needs root, as the SLURM tests do). `grow(path, kib)`
    is `small_disk.grow`. Every mount is undone at teardown."""
    mounts: list[Path] = []

    def mount(kib: int, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        options = f"size={kib}k" + (",ro" if read_only else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounts.append(point)
        return point

    def grow(point: Path, kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(point)], check=True)

    mount.grow = grow  # type: ignore[attr-defined]
    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], check=False)
