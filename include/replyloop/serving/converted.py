"""A model converted for an engine is written once per content hash, atomically: into a temporary folder
beside its destination, then renamed. A failed conversion leaves nothing behind; two processes converting the
same content keep the first folder that lands."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def written_once(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder to write into; on success it becomes `dest` (unless another process's copy
    got there first), on an exception it is removed."""
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(dest)
    except OSError:  # another process converted the same content meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
