"""SIPp (Debian sip-tester) as an independent GB/T 28181 device against our SIP core over UDP:
challenged with digest, then registered; its keepalive is accepted; a wrong password gets 403."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmesh.gb28181.digest import DigestServer, Verdict
from vmesh.gb28181.manscdp import Keepalive, decode_manscdp
from vmesh.gb28181.message import SipRequest, make_response
from vmesh.gb28181.transaction import Address, ServerTransaction
from vmesh.gb28181.transport import SipEndpoint

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp (Debian sip-tester) missing"),
]

SCENARIOS = Path(__file__).resolve().parents[1] / "peers" / "sipp"
PLATFORM = "34020000002000000001"
DEVICE = "34020000001320000001"
PASSWORD = "12345678"


@dataclass
class Registrar:
    """The smallest GB registrar over the core: digest, registrations and keepalives."""

    endpoint: SipEndpoint | None = None
    digest: DigestServer = field(default_factory=lambda: DigestServer("3402000000"))
    registered: dict[str, Address] = field(default_factory=dict)
    keepalives: list[tuple[str, int]] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)

    def on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        assert self.endpoint is not None
        if txn is None:
            return
        tag = secrets.token_hex(4)
        if req.method == "REGISTER":
            device = req.from_.uri.user or ""
            auth = req.headers.get("Authorization")
            if auth is None:
                resp = make_response(req, 401, to_tag=tag)
                resp.headers.add("WWW-Authenticate", self.digest.challenge(time.time()))
            else:
                v = self.digest.verify(auth, "REGISTER", {DEVICE: PASSWORD}.get, time.time())
                if v.ok and v.username == device:
                    self.registered[device] = source
                    resp = make_response(req, 200, to_tag=tag)
                    resp.headers.add("Expires", str(req.expires or 3600))
                    resp.headers.add("Date", time.strftime("%Y-%m-%dT%H:%M:%S"))
                elif v.verdict in (Verdict.stale, Verdict.bad_nonce):
                    resp = make_response(req, 401, to_tag=tag)
                    resp.headers.add("WWW-Authenticate", self.digest.challenge(time.time()))
                else:
                    self.refused.append((device, 403))
                    resp = make_response(req, 403, to_tag=tag)
        elif req.method == "MESSAGE":
            msg = decode_manscdp(req.body).message
            if isinstance(msg, Keepalive) and msg.device_id in self.registered:
                self.keepalives.append((msg.device_id, msg.sn))
                resp = make_response(req, 200, to_tag=tag)
            else:
                resp = make_response(req, 403, to_tag=tag)
        else:
            resp = make_response(req, 405, to_tag=tag)
        self.endpoint.respond(txn, resp)


async def _sipp(scenario: str, port: int, password: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-s",
        PLATFORM,
        "-key",
        "dev",
        DEVICE,
        "-au",
        DEVICE,
        "-ap",
        password,
        "-m",
        "1",
        "-t",
        "u1",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_sipp_device_registers_with_digest_and_keeps_alive(tmp_path: Path) -> None:
    reg = Registrar()
    ep = SipEndpoint(reg.on_request)
    reg.endpoint = ep
    _, port = await ep.start_udp("127.0.0.1", 0)
    try:
        rc, out = await _sipp("gb_register_keepalive.xml", port, PASSWORD)
        assert rc == 0, out[-3000:]
        assert DEVICE in reg.registered
        assert reg.registered[DEVICE][0] == "127.0.0.1"
        assert reg.keepalives == [(DEVICE, 2749)]
        assert reg.refused == []
    finally:
        ep.close()


async def test_sipp_device_with_wrong_password_is_refused(tmp_path: Path) -> None:
    reg = Registrar()
    ep = SipEndpoint(reg.on_request)
    reg.endpoint = ep
    _, port = await ep.start_udp("127.0.0.1", 0)
    try:
        rc, out = await _sipp("gb_register_wrong_password.xml", port, "not-the-password")
        assert rc == 0, out[-3000:]
        assert reg.registered == {}
        assert reg.refused == [(DEVICE, 403)]
    finally:
        ep.close()
