"""Province and city as hosts of their own (network namespaces of the test bed), joined by a
mutual-TLS leaf link over the lab bridge.

Each node's nats-server runs inside its namespace with clients on the namespace's loopback; the
responder and the caller are ``busprobe`` processes inside the nodes (the real ``Bus``). The test
process watches the servers through the lab's root leg (monitoring port on the node's address).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netns.fednodes import CITY, CITY2, PROV, log_text, make_ca, node_server, wait_until
from netns.lab import Lab, lab_factory  # noqa: F401 (fixture)
from vmesh.federation.service import NatsServer

pytestmark = pytest.mark.integration

PROBE = str(Path(__file__).resolve().parents[1] / "netns" / "busprobe.py")
LOCAL = "nats://127.0.0.1:4222"  # each node's own server, on its namespace's loopback


@dataclass
class Net:
    lab: Lab
    prov: NatsServer
    servers: dict[str, NatsServer]
    ca: Path


def _server(tmp: Path, lab: Lab, node: str, code: str, ca: Path, **kw: Any) -> NatsServer:
    ip = lab[node].ip
    return node_server(
        tmp,
        code,
        ca_dir=ca,
        sans=[ip],
        label=node,
        argv_prefix=lab[node].wrap,
        monitor_host=ip,
        ping_interval=2,
        **kw,
    )


@pytest.fixture
async def net(tmp_path: Path, lab_factory: Callable[..., Lab]) -> AsyncIterator[Net]:  # noqa: F811
    lab = lab_factory("prov", "city", "rogue")
    ca = make_ca(tmp_path)
    prov_ip = lab["prov"].ip
    prov = _server(tmp_path, lab, "prov", PROV, ca, leaf_host=prov_ip, advertise=f"{prov_ip}:7422")
    servers = {"prov": prov}
    try:
        await prov.start()
        yield Net(lab, prov, servers, ca)
    finally:
        for s in reversed(list(servers.values())):
            await s.stop()  # processes first; the lab fixture then removes links and namespaces


def _uplink(net: Net) -> tuple[str, ...]:
    return (f"nats-leaf://{net.lab['prov'].ip}:7422",)


async def _call(lab: Lab, node: str, src: str, dst: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request by a ``busprobe`` inside ``node`` (in a thread: the servers' supervisors keep
    running on the event loop meanwhile)."""
    argv = [sys.executable, PROBE, "call", LOCAL, src, dst, "echo", json.dumps(body), "3"]
    r = await asyncio.to_thread(lab.run, node, argv)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


async def _leaf_ips(server: NatsServer) -> set[str]:
    return {str(leaf.get("ip")) for leaf in await server.leafz()}


async def test_request_crosses_the_leaf_link_fails_on_cut_and_recovers(
    net: Net, tmp_path: Path
) -> None:
    lab = net.lab
    city = _server(tmp_path, lab, "city", CITY, net.ca, leaf_port=0, parents=_uplink(net))
    net.servers["city"] = city
    await city.start()
    city_ip = lab["city"].ip
    await wait_until(lambda: _has(net.prov, city_ip), "the city's leaf link")

    responder = lab.spawn(
        "city", [sys.executable, PROBE, "serve", LOCAL, CITY], tmp_path / "responder.log"
    )
    await wait_until(
        lambda: "ready" in (tmp_path / "responder.log").read_text(), "the city's responder"
    )

    async def call() -> dict[str, Any]:
        return await _call(lab, "prov", PROV, CITY, {"text": "你好"})

    async def answered() -> dict[str, Any] | None:
        r = await call()
        return r if r["ok"] else None

    ok = await wait_until(answered, "an answer from the city")
    assert ok["result"] == {"echo": {"text": "你好"}, "node": CITY}

    lab.cut("city")
    failed = await call()
    assert failed["ok"] is False and failed["error"] == "NodeUnreachable"
    assert failed["node"] == CITY and CITY in failed["detail"]

    # Once the province's pings notice the dead link, it refuses at once: nobody answers there.
    await wait_until(lambda: _no_leaf(net.prov, city_ip), "the province dropping the dead link")
    failed = await call()
    assert failed["error"] == "NodeUnreachable" and "no responder" in failed["detail"]
    assert responder.poll() is None  # the city itself kept running

    lab.restore("city")
    await wait_until(lambda: _has(net.prov, city_ip), "the city's leaf link back")
    ok = await wait_until(answered, "an answer after the restore")
    assert ok["result"]["node"] == CITY


async def _has(server: NatsServer, ip: str) -> bool:
    return ip in await _leaf_ips(server)


async def _no_leaf(server: NatsServer, ip: str) -> bool:
    return ip not in await _leaf_ips(server)


async def test_city_with_a_certificate_of_another_ca_is_refused(net: Net, tmp_path: Path) -> None:
    lab = net.lab
    rogue_ca = make_ca(tmp_path / "rogue", name="another network")
    rogue = _server(tmp_path, lab, "rogue", CITY2, rogue_ca, leaf_port=0, parents=_uplink(net))
    # It trusts the real CA for the province but presents a certificate of its own CA; vmesh's
    # own start refuses that, so skip the check, as a node not running vmesh would.
    rogue.settings.ca_file.write_bytes((net.ca / "ca.pem").read_bytes())
    rogue._check_tls = lambda: None  # type: ignore[method-assign]
    net.servers["rogue"] = rogue
    await rogue.start()
    rogue_ip = lab["rogue"].ip

    def refusals() -> list[str]:
        return [
            ln
            for ln in log_text(net.prov).splitlines()
            if rogue_ip in ln and "TLS leafnode handshake error" in ln
        ]

    await wait_until(lambda: len(refusals()) >= 2, "the province refusing the rogue city twice")
    assert "certificate" in refusals()[-1], refusals()[-1]
    assert rogue_ip not in await _leaf_ips(net.prov)
    assert await rogue.leafz() == []  # the rogue has no uplink either
    lab.spawn("rogue", [sys.executable, PROBE, "serve", LOCAL, CITY2], tmp_path / "rogue.log")
    await wait_until(lambda: "ready" in (tmp_path / "rogue.log").read_text(), "rogue responder")
    failed = await _call(lab, "prov", PROV, CITY2, {})
    assert failed["error"] == "NodeUnreachable" and failed["node"] == CITY2
