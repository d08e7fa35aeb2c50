"""MANSRTSP: the RTSP-like bodies of in-dialog INFO that control a GB/T 28181 playback. Pure.

A platform pauses, resumes, seeks and changes the speed of a device's playback (``s=Playback``)
with ``INFO`` carrying ``Content-Type: Application/MANSRTSP`` and one of:

    PAUSE RTSP/1.0 / CSeq: n / PauseTime: now
    PLAY RTSP/1.0  / CSeq: n / Range: npt=now-        (resume)
    PLAY RTSP/1.0  / CSeq: n / Range: npt=<seconds>-  (seek, seconds from the playback's start)
    PLAY RTSP/1.0  / CSeq: n / Scale: 2.000000         (speed)

Devices answer 200 with ``RTSP/1.0 200 OK`` in the body. :func:`encode` writes a request,
:func:`parse` reads one (for the simulator, and to check what we send) and raises
:class:`MansrtspError` naming the header that is wrong.

Public: ``CONTENT_TYPE``, ``MansrtspRequest``, ``MansrtspError``, ``pause``, ``resume``,
``seek``, ``scale``, ``encode``, ``parse``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vmesh.errors import FieldError, InvalidInput
from vmesh.gb28181.message import ascii_digits

CONTENT_TYPE = "Application/MANSRTSP"
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


class MansrtspError(InvalidInput):
    def __init__(self, field: str, reason: str, value: object | None = None) -> None:
        v = None if value is None else str(value)[:100]
        super().__init__(f"{field}: {reason}", errors=[FieldError(field, reason, v)])
        self.field = field


@dataclass(frozen=True, slots=True)
class MansrtspRequest:
    method: str  # PLAY or PAUSE
    cseq: int
    npt: float | None = None  # PLAY Range: npt=<npt>- (None: "now", i.e. resume)
    scale: float | None = None  # PLAY Scale

    @property
    def is_seek(self) -> bool:
        return self.method == "PLAY" and self.npt is not None


def pause(cseq: int) -> MansrtspRequest:
    return MansrtspRequest("PAUSE", cseq)


def resume(cseq: int) -> MansrtspRequest:
    return MansrtspRequest("PLAY", cseq)


def seek(cseq: int, npt: float) -> MansrtspRequest:
    if not math.isfinite(npt) or npt < 0:
        raise MansrtspError("npt", "must be a number of seconds ≥ 0", npt)
    return MansrtspRequest("PLAY", cseq, npt=npt)


def scale(cseq: int, value: float) -> MansrtspRequest:
    if value not in SCALES:
        raise MansrtspError("scale", f"must be one of {', '.join(f'{s:g}' for s in SCALES)}", value)
    return MansrtspRequest("PLAY", cseq, scale=value)


def encode(req: MansrtspRequest) -> bytes:
    lines = [f"{req.method} RTSP/1.0", f"CSeq: {req.cseq}"]
    if req.method == "PAUSE":
        lines.append("PauseTime: now")
    elif req.scale is not None:
        lines.append(f"Scale: {req.scale:.6f}")
    else:
        lines.append("Range: npt=" + ("now" if req.npt is None else f"{req.npt:g}") + "-")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse(body: bytes) -> MansrtspRequest:
    """One MANSRTSP request; :class:`MansrtspError` names what is wrong."""
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n").strip()
    if not text:
        raise MansrtspError("body", "is empty")
    first, *rest = text.split("\n")
    parts = first.split()
    if len(parts) != 2 or parts[1].upper() != "RTSP/1.0":
        raise MansrtspError("request-line", "must be 'PLAY RTSP/1.0' or 'PAUSE RTSP/1.0'", first)
    method = parts[0].upper()
    if method not in ("PLAY", "PAUSE"):
        raise MansrtspError("method", "must be PLAY or PAUSE", parts[0])
    headers: dict[str, str] = {}
    for line in rest:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    raw_cseq = headers.get("cseq", "")
    if not ascii_digits(raw_cseq):
        raise MansrtspError("CSeq", "must be a number", raw_cseq or None)
    npt: float | None = None
    sc: float | None = None
    if method == "PLAY" and "scale" in headers:
        try:
            sc = float(headers["scale"])
        except ValueError:
            raise MansrtspError("Scale", "must be a number", headers["scale"]) from None
        if not math.isfinite(sc) or sc <= 0:
            raise MansrtspError("Scale", "must be a positive number", headers["scale"])
    if method == "PLAY" and "range" in headers:
        rng = headers["range"].replace(" ", "")
        if not rng.lower().startswith("npt=") or "-" not in rng:
            raise MansrtspError("Range", "must be 'npt=<seconds>-' or 'npt=now-'", rng)
        start = rng[4:].split("-", 1)[0]
        if start.lower() != "now":
            try:
                npt = float(start)
            except ValueError:
                raise MansrtspError(
                    "Range", "must be 'npt=<seconds>-' or 'npt=now-'", rng
                ) from None
            if not math.isfinite(npt) or npt < 0:
                raise MansrtspError("Range", "npt must be ≥ 0", rng)
    return MansrtspRequest(method, int(raw_cseq), npt=npt, scale=sc)
