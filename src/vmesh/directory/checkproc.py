"""The checks of a big CSV import into an empty directory, in a process of their own.

From ``transfer.SEPARATE_CHECKS_ROWS`` lines (100,000; see there for what it saves;
``bench/directory.py --checks here|process`` compares),
``vmesh.directory.transfer`` starts ``python -m vmesh.directory.checkproc`` for a big CSV import
into an empty directory on SQLite: this process parses and checks the file (the same
``_Import._fields``, ``_place`` and ``judge_parents`` as in-process, so the same errors by row
and field) and sends each chunk's new rows back as ready statement parameters, while the node's
process only writes them. In one process the checks and aiosqlite's thread (binding each
statement's parameters) take turns at Python's GIL; here they run on two cores. An empty
directory needs no lookups in the database, which only the node's process (inside the import's
transaction) could make.

Protocol: stdin is one JSON line (``{"scope": …}``) followed by the file's text (UTF-8); stdout
is frames of a 4-byte little-endian length and a pickle (no memo: frames hold no cycles): a
``transfer.Checked`` per chunk (flat lists), then
``("end", errors, parse_errors)``, or ``("invalid", message, errors)`` for a file that cannot be
read at all (bad header, not CSV). Frames are pickles from our own child only.

Public: ``main``, ``write_frame``, ``read_frame``.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import pickle
import struct
import sys
from typing import Any, BinaryIO

from vmesh.directory import transfer
from vmesh.errors import ErrorList, InvalidInput

_LEN = struct.Struct("<I")


def write_frame(out: BinaryIO, obj: Any) -> None:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    # No memo: a frame holds no cycles (its shared strings are written again, which costs less
    # than remembering every object; a chunk's pickling took a third of the time this way).
    pickler.fast = True
    pickler.dump(obj)
    data = buf.getbuffer()
    out.write(_LEN.pack(len(data)))
    out.write(data)


async def read_frame(stream: asyncio.StreamReader) -> Any:
    (size,) = _LEN.unpack(await stream.readexactly(_LEN.size))
    return pickle.loads(await stream.readexactly(size))


def main() -> None:
    gc.disable()  # see transfer._gc_paused: nothing here is cyclic garbage
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    header = json.loads(stdin.readline())
    text_ = stdin.read().decode("utf-8")
    imp = transfer._Import.checks_only(header["scope"], sqlite=True)
    parse_errors = ErrorList()
    try:
        for chunk in transfer._csv_chunks(text_, parse_errors, cells=True):
            imp._place(imp._fields(chunk))
            if imp.errors:  # nothing of this file will be kept: only the errors matter now
                imp.entries, imp.tags, imp.names = [], [], []
            write_frame(
                out, transfer.Checked(len(chunk), imp.entries, imp.tags, imp.names, imp.next_id)
            )
            imp.entries, imp.tags, imp.names = [], [], []
    except InvalidInput as e:
        write_frame(out, ("invalid", e.detail, e.errors))
    else:
        imp.judge_parents()
        write_frame(out, ("end", imp.errors, parse_errors))
    out.flush()


if __name__ == "__main__":
    main()
