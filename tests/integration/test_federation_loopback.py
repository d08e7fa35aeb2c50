"""Province and city nats-servers on loopback, joined by a mutual-TLS leaf link (no namespaces).

A request from the province reaches a responder at the city; a city whose certificate comes from
another CA is refused; a node without its certificate does not start; a crashed nats-server is
restarted and the bus works again.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netns.fednodes import CITY, CITY2, PROV, free_ports, log_text, make_ca, node_server, wait_until
from vmesh.errors import InvalidInput
from vmesh.federation.bus import Bus, NodeUnreachable, RemoteError
from vmesh.federation.service import NatsServer
from vmesh.node.supervisor import ProcessState

pytestmark = pytest.mark.integration


def _prov(tmp: Path, ca: Path) -> NatsServer:
    client, mon, leaf = free_ports(3)
    return node_server(
        tmp,
        PROV,
        ca_dir=ca,
        sans=["127.0.0.1"],
        label="prov",
        client_port=client,
        monitor_port=mon,
        leaf_host="127.0.0.1",
        leaf_port=leaf,
        advertise=f"127.0.0.1:{leaf}",
        ping_interval=2,
    )


def _child(tmp: Path, ca: Path, code: str, label: str, prov: NatsServer) -> NatsServer:
    client, mon = free_ports(2)
    return node_server(
        tmp,
        code,
        ca_dir=ca,
        sans=["127.0.0.1"],
        label=label,
        client_port=client,
        monitor_port=mon,
        leaf_port=0,
        parents=(f"nats-leaf://127.0.0.1:{prov.settings.leaf_port}",),
        ping_interval=2,
    )


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[list[NatsServer]]:
    started: list[NatsServer] = []
    yield started
    for s in reversed(started):
        await s.stop()


async def _echo_bus(url: str, code: str) -> Bus:
    bus = await Bus.connect(url, code)

    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("fail"):
            raise InvalidInput.one("fail", "asked to fail", body["fail"])
        return {"echo": body, "node": code}

    await bus.serve("echo", echo)
    return bus


async def test_request_from_province_is_answered_at_the_city(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    ca = make_ca(tmp_path)
    prov = _prov(tmp_path, ca)
    await prov.start()
    servers.append(prov)
    city = _child(tmp_path, ca, CITY, "city", prov)
    await city.start()
    servers.append(city)
    assert prov.status.health_detail == "nats-server " + (prov.version or "")

    leafs = await wait_until(prov.leafz, "the city's leaf link at the province")
    assert len(leafs) == 1
    city_bus = await _echo_bus(city.client_url, CITY)
    prov_bus = await Bus.connect(prov.client_url, PROV)
    try:
        reply = await wait_until(
            lambda: prov_bus.call(CITY, "echo", {"text": "省到市"}, timeout=2),
            "an answer from the city's echo service",
        )
        assert reply == {"echo": {"text": "省到市"}, "node": CITY}
        # The remote's refusal comes back with its field and reason.
        with pytest.raises(RemoteError) as refused:
            await prov_bus.call(CITY, "echo", {"fail": "x"})
        assert refused.value.status == 422 and refused.value.errors[0].field == "fail"
        # A service nobody runs: no waiting for a timeout, the error names the node.
        with pytest.raises(NodeUnreachable) as e:
            await prov_bus.call(CITY, "no-such-service", {}, timeout=30)
        assert e.value.node_code == CITY and "no responder" in e.value.detail
    finally:
        await prov_bus.close()
        await city_bus.close()


async def test_city_with_a_certificate_of_another_ca_is_refused(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    ca = make_ca(tmp_path)
    rogue_ca = make_ca(tmp_path / "rogue", name="another network")
    prov = _prov(tmp_path, ca)
    await prov.start()
    servers.append(prov)
    rogue = _child(tmp_path, rogue_ca, CITY2, "rogue", prov)
    # It trusts the real CA for the province, but presents a certificate of its own CA.
    rogue.settings.ca_file.write_bytes((ca / "ca.pem").read_bytes())
    with pytest.raises(InvalidInput) as bad:
        await rogue.start()  # our own start refuses it first, naming the file
    assert bad.value.errors[0].field == "federation.cert_file"
    assert "not issued by the network CA" in bad.value.errors[0].reason

    # Started anyway (as a node not running vmesh's checks would), the province refuses it.
    rogue._check_tls = lambda: None  # type: ignore[method-assign]
    await rogue.start()
    servers.append(rogue)
    await wait_until(
        lambda: _count(log_text(prov), "TLS leafnode handshake error") >= 2,
        "the province logging refused TLS handshakes from the rogue city",
    )
    assert "certificate" in _lines(log_text(prov), "TLS leafnode handshake error")[-1]
    assert await prov.leafz() == []
    prov_bus = await Bus.connect(prov.client_url, PROV)
    rogue_bus = await _echo_bus(rogue.client_url, CITY2)
    try:
        with pytest.raises(NodeUnreachable) as e:
            await prov_bus.call(CITY2, "echo", {}, timeout=2)
        assert e.value.node_code == CITY2
    finally:
        await prov_bus.close()
        await rogue_bus.close()


def _lines(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


def _count(text: str, needle: str) -> int:
    return len(_lines(text, needle))


async def test_node_without_its_certificate_does_not_start(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    ca = make_ca(tmp_path)
    prov = _prov(tmp_path, ca)
    await prov.start()
    servers.append(prov)
    city = _child(tmp_path, ca, CITY, "city", prov)
    city.settings.cert_file.unlink()
    with pytest.raises(InvalidInput) as e:
        await city.start()
    assert e.value.errors[0].field == "federation.cert_file"
    assert "vmesh ca issue" in e.value.errors[0].reason
    assert city.status.state is ProcessState.STOPPED
    # A certificate issued for another node is refused too.
    other = _child(tmp_path, ca, CITY2, "other", prov)
    city.settings.cert_file.write_bytes(other.settings.cert_file.read_bytes())
    with pytest.raises(InvalidInput) as e:
        await city.start()
    assert f"issued for node '{CITY2}'" in e.value.errors[0].reason


async def test_crashed_nats_server_is_restarted_and_the_bus_works_again(
    tmp_path: Path, servers: list[NatsServer]
) -> None:
    ca = make_ca(tmp_path)
    prov = _prov(tmp_path, ca)
    await prov.start()
    servers.append(prov)
    city = _child(tmp_path, ca, CITY, "city", prov)
    await city.start()
    servers.append(city)
    city_bus = await _echo_bus(city.client_url, CITY)
    prov_bus = await Bus.connect(prov.client_url, PROV)
    try:
        await wait_until(lambda: prov_bus.call(CITY, "echo", {}, timeout=2), "first answer")
        old_pid = city.status.pid
        await city.process.kill(signal.SIGKILL)
        st = await city.process.wait_for(ProcessState.RUNNING, starts=2)
        assert st.pid != old_pid
        # The city's responder reconnected to its restarted server, the leaf came back.
        reply = await wait_until(
            lambda: prov_bus.call(CITY, "echo", {"n": 2}, timeout=2), "answer after restart"
        )
        assert reply["node"] == CITY
    finally:
        await prov_bus.close()
        await city_bus.close()


def test_nats_server_accepts_a_rendered_file_with_two_parents(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    server = node_server(
        tmp_path,
        CITY,
        ca_dir=ca,
        sans=["10.1.0.2"],
        advertise="10.1.0.2:7422",
        parents=("nats-leaf://10.1.0.1:7422", "tls://hub2.example:7433"),
    )
    conf = tmp_path / "n.conf"
    conf.write_text(server.text)
    r = subprocess.run(["nats-server", "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
