"""Writing a file whole or not at all: to `<name>.tmp`, then renamed over the name.

Readers never see half a file, a crash leaves at most a `.tmp` that the next writer replaces,
and a full disk is one `DiskFull` line naming the file, with the `.tmp` removed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from blast_core.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(error: BaseException) -> bool:
    """Whether `error` (or what caused it: torch wraps the OSError) says the disk is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def atomic_write(path: Path, *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write `path` through; with `durable` it is fsynced before the rename
    (a checkpoint, a replay episode: what resuming relies on after a power cut)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if no_space(e):
            raise DiskFull(f"no space left on the disk of {path} (writing it failed; "
                           "what was written before is kept)") from e
        raise


def write_text(path: Path, text: str) -> None:
    """`path` replaced whole by `text`."""
    with atomic_write(path) as f:
        f.write(text.encode())
