"""Durable file writes on the node: one atomic writer for configuration, keys and state files.

``write_atomic`` writes the whole content to a temp file beside the target (created with the
requested mode before any byte is written, so a private file is never readable by others, not
even half-written), fsyncs it and renames it into place: readers see the old file or the new one,
never a torn one. The temp file is removed if anything fails. Used for the Janus configuration and
secrets, the nats-server configuration, the federation CA's keys and certificates, the audit
anchor and the demo site's files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, data: str | bytes, mode: int = 0o600, *, sync_dir: bool = False
) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) with permission bits ``mode``.

    With ``sync_dir`` the folder is fsynced after the rename too, so the new name itself survives
    a power cut (for files whose loss would be noticed, like the audit anchor).
    """
    body = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
