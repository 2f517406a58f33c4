"""Engines for the run database: SQLite tuned for many writer processes, or PostgreSQL.

Concurrency design (why no run ever fails on "database is locked"):
- every run process writes its own rows directly, each write one short transaction;
- SQLite runs in WAL mode, so readers (`blast status`, the live table) never block writers;
- write transactions start with BEGIN IMMEDIATE, taking the write lock up front. A deferred
  transaction that reads and then writes can fail with SQLITE_BUSY without waiting, because
  SQLite cannot upgrade a stale read snapshot; an immediate one waits in the busy handler instead;
- the busy timeout is a minute, and `retrying` retries a write a few times more with backoff.
PostgreSQL needs none of this; schema migrations take an advisory lock there.

WAL keeps its index in shared memory, so every process must be on one host and the file on a
local filesystem (sqlite.org/wal.html). A database on a network filesystem (an NFS home on a
cluster) falls back to the rollback journal, which relies on the filesystem's own locks, and
says so once per process: a shared PostgreSQL `--db` is the safe choice there.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from blast_core.errors import BlastError

BUSY_TIMEOUT_S = 60.0
WRITE_ATTEMPTS = 8
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant: PostgreSQL sessions migrating the schema queue on this advisory lock.
PG_MIGRATION_LOCK = 0xB1A57

NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs",
                        "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph", "fuse.sshfs", "9p",
                        "afs", "panfs", "wekafs"})
_warned: set[str] = set()


T = TypeVar("T")


class StoreError(BlastError):
    """A bad database URL, an unknown run, or a database that cannot be reached."""


def parse_url(url: str) -> URL:
    """`url` parsed, or a StoreError that names it."""
    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError(
            f"bad database URL {url!r}: expected sqlite:///PATH or postgresql+psycopg://..."
        ) from None


def make_engines(url: str) -> tuple[Engine, Engine]:
    """(reader, writer) engines on one pool; the writer's transactions take the write lock first."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver that is installed
    if backend == "sqlite":
        return _sqlite_engines(parsed)
    if backend == "postgresql":
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=4)
        return engine, engine
    raise StoreError(f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql")


def filesystem(path: Path, mounts: str | None = None) -> str:
    """The type of the filesystem that holds `path` (the longest mount point above it, from
    /proc/mounts or `mounts` in its format); "" when unknown (no /proc: not Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    path, best, kind = Path(os.path.realpath(path)), -1, ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (point == path or point in path.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def journal_mode(database: Path) -> str:
    """WAL on a local filesystem; the rollback journal (with a warning) on a network one."""
    kind = filesystem(database.parent)
    if kind not in NETWORK_FS:
        return "WAL"
    if str(database) not in _warned:
        _warned.add(str(database))
        print(f"warning: the SQLite database {database} is on a network filesystem ({kind}): "
              "WAL mode cannot work there, so it uses the rollback journal, which is only as "
              "safe as the filesystem's locks; for runs on many hosts give a PostgreSQL --db",
              file=sys.stderr)
    return "DELETE"


def _sqlite_engines(url) -> tuple[Engine, Engine]:
    mode = "WAL"
    if url.database and url.database != ":memory:":
        database = Path(url.database).expanduser()
        database.parent.mkdir(parents=True, exist_ok=True)
        mode = journal_mode(database)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA journal_mode={mode}")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        # NORMAL is durable across process crashes in WAL mode; only a power cut can lose the
        # last commits, which a resumed run rewrites anyway.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        immediate = conn.get_execution_options().get("blast_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine, engine.execution_options(blast_write=True)


def is_transient(error: BaseException) -> bool:
    """A lock, busy, serialization or dropped-connection error that a retry can fix."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    message = str(error.orig).lower()
    code = getattr(error.orig, "sqlstate", None) or ""
    return (
        "locked" in message
        or "busy" in message
        or code in ("40001", "40P01")  # serialization failure, deadlock
        or (isinstance(error, OperationalError) and code.startswith("08"))  # connection lost
    )


def is_disk_full(error: BaseException) -> bool:
    """SQLite's SQLITE_FULL or PostgreSQL's disk_full (53100)."""
    if not isinstance(error, DBAPIError):
        return False
    return ("disk is full" in str(error.orig).lower()
            or getattr(error.orig, "sqlstate", None) == "53100")


def retrying(fn: Callable[[], T], attempts: int = WRITE_ATTEMPTS) -> T:
    """Run a write transaction, retrying transient errors with jittered exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as e:
            if not is_transient(e) or attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.05 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(writer: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema in place, once even when many processes open the store."""
    if revision == "head" and current_revision(writer) == head_revision():
        return
    cfg = _alembic_config()
    with writer.begin() as conn:  # SQLite: BEGIN IMMEDIATE holds the write lock from here on
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        # Alembic reads the version inside this transaction, so a process that waited for the
        # lock finds the schema already upgraded and does nothing.
        command.upgrade(cfg, revision)
