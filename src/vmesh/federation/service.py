"""``NatsServer``: the node's nats-server, configured, supervised, health-checked and stopped.

``NatsServer.for_node(cfg)`` builds ``NatsSettings`` from the node's ``[federation]``
configuration (TLS files default to ``<data_dir>/federation/tls/{ca.pem,node.pem,node.key}``,
JetStream's store to ``<data_dir>/federation/jetstream``). ``start()`` checks the TLS files when
a leaf link uses them (they must come from the network CA and name this node: a clear error now
beats a refused link later), renders the configuration into ``<data_dir>/federation/
nats-server.conf`` (0600), starts ``nats-server`` under a ``SupervisedProcess`` (output in
``<data_dir>/logs/nats-server.log``) and waits until healthy: the monitoring port's ``/varz``
answers with our ``server_name`` (the node's code) and a version of at least 2.9. A crash or failed
health check restarts it with back-off; ``stop()`` stops it (SIGTERM, then SIGKILL).

``argv_prefix`` runs the server through a wrapper, e.g. ``ip netns exec NS`` in the test bed
(the wrapper must exec, so that the supervised PID is nats-server's).

``leafz()`` lists the leaf links the server holds (``/leafz``): the node's view of its uplink and
its children. ``drop_leafs_from(host)`` closes the children's leaf links from ``host``: a child
whose link died silently is kept for minutes by nats-server 2.9 on the parent's side (the hub
does not time it out as the child does), and its stale interest makes the child's move to its
second parent look like a loop (``Loop detected … Delaying attempt to reconnect for 30s``). There
is no API in 2.9 to close one connection, so the TCP socket is destroyed with ``ss -K``
(iproute2; needs CAP_NET_ADMIN, i.e. root or ``setcap``).

Public: ``NatsServer``, ``MIN_NATS_VERSION``, ``settings_for_node``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from vmesh.config import NodeConfig
from vmesh.federation.ca import check_node_cert
from vmesh.federation.natsconf import CONFIG_FILE, NatsSettings, render, write_config
from vmesh.node.supervisor import (
    DAEMON_RESTART,
    ProcessSpec,
    ProcessStatus,
    RestartPolicy,
    SupervisedProcess,
    require_program,
)

log = logging.getLogger(__name__)

MIN_NATS_VERSION = (2, 9)


def settings_for_node(cfg: NodeConfig, **overrides: Any) -> NatsSettings:
    """``NatsSettings`` of a node from its configuration; ``overrides`` replace fields."""
    fed = cfg.federation
    base = cfg.node.data_dir.resolve() / "federation"
    tls = base / "tls"
    s = NatsSettings(
        node_code=cfg.node.code,
        store_dir=base,  # nats-server keeps JetStream in <store_dir>/jetstream
        ca_file=Path(fed.ca_file) if fed.ca_file else tls / "ca.pem",
        cert_file=Path(fed.cert_file) if fed.cert_file else tls / "node.pem",
        key_file=Path(fed.key_file) if fed.key_file else tls / "node.key",
        client_port=fed.client_port,
        monitor_port=fed.monitor_port,
        leaf_host=fed.leaf_host,
        leaf_port=fed.leaf_port,
        advertise=fed.advertise,
        parents=tuple(fed.parents),
        ping_interval=fed.ping_interval_seconds,
    )
    return replace(s, **overrides)


def _version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+(?:\.\d+)*)", text)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


class NatsServer:
    """One nats-server process of this node; see the module docstring."""

    def __init__(
        self,
        settings: NatsSettings,
        *,
        config_path: Path,
        log_path: Path,
        binary: str = "nats-server",
        argv_prefix: Sequence[str] = (),
        restart: RestartPolicy | None = None,
        health_interval: float = 2.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.text = render(settings)  # validates before anything is written or started
        self.config_path = config_path
        self.log_path = log_path
        self.binary = binary
        self.version: str | None = None
        self._http = httpx.AsyncClient(timeout=3.0)
        self.process = SupervisedProcess(
            ProcessSpec(
                name="nats-server",
                argv=[*argv_prefix, binary, "-c", str(config_path)],
                cwd=config_path.parent,
                log_path=log_path,
                health=self._health,
                health_interval=health_interval,
                start_timeout=start_timeout,
                restart=restart or DAEMON_RESTART,
            )
        )

    @classmethod
    def for_node(cls, cfg: NodeConfig, **kwargs: Any) -> NatsServer:
        """The server of the node configured by ``cfg`` (``kwargs`` go to the constructor)."""
        data_dir = cfg.node.data_dir.resolve()
        return cls(
            settings_for_node(cfg),
            config_path=data_dir / "federation" / CONFIG_FILE,
            log_path=data_dir / "logs" / "nats-server.log",
            **kwargs,
        )

    # --- addresses --------------------------------------------------------------------------------

    @property
    def client_url(self) -> str:
        s = self.settings
        return f"nats://{s.client_host}:{s.client_port}"

    @property
    def monitor_url(self) -> str:
        s = self.settings
        host = f"[{s.monitor_host}]" if ":" in s.monitor_host else s.monitor_host
        return f"http://{host}:{s.monitor_port}"

    @property
    def status(self) -> ProcessStatus:
        return self.process.status

    # --- monitoring -------------------------------------------------------------------------------

    async def _get(self, path: str) -> dict[str, Any]:
        r = await self._http.get(self.monitor_url + path)
        r.raise_for_status()
        data = r.json()
        if not isinstance(data, dict):
            raise RuntimeError(f"{path}: unexpected answer {data!r:.200}")
        return data

    async def varz(self) -> dict[str, Any]:
        return await self._get("/varz")

    async def leafz(self) -> list[dict[str, Any]]:
        """The leaf links this server holds (uplink and children), as ``/leafz`` lists them."""
        data = await self._get("/leafz")
        return list(data.get("leafs") or [])

    async def drop_leafs_from(self, host: str) -> int:
        """Close the leaf links children hold to this server from ``host`` (see the module
        docstring); how many were closed."""
        port = self.settings.leaf_port
        ss = shutil.which("ss")
        if port == 0 or ss is None:
            return 0
        closed = 0
        for leaf in await self.leafz():
            if leaf.get("ip") != host or not isinstance(leaf.get("port"), int):
                continue
            proc = await asyncio.create_subprocess_exec(
                *(ss, "-K", "dst", host, "dport", "=", str(leaf["port"]), "sport", "=", str(port)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            if proc.returncode == 0 and str(leaf["port"]) in out.decode(errors="replace"):
                closed += 1
                log.info("nats-server leaf link from %s:%s closed (dead)", host, leaf["port"])
            else:
                log.warning(
                    "nats-server leaf link from %s:%s not closed: %s",
                    host,
                    leaf["port"],
                    err.decode(errors="replace").strip() or "ss -K found no such socket",
                )
        return closed

    async def _health(self) -> str:
        try:
            v = await self.varz()
        except httpx.HTTPError as e:
            reason = str(e) or type(e).__name__
            raise RuntimeError(f"monitoring port {self.monitor_url}: {reason}") from None
        name = v.get("server_name")
        if name != self.settings.node_code:
            raise RuntimeError(
                f"the monitoring port {self.settings.monitor_port} is answered by another "
                f"server ({name!r}, expected {self.settings.node_code!r})"
            )
        version = str(v.get("version", ""))
        if _version_tuple(version)[:2] < MIN_NATS_VERSION:
            raise RuntimeError(
                f"nats-server {version} is too old: vmesh needs "
                f"{'.'.join(map(str, MIN_NATS_VERSION))} or newer"
            )
        self.version = version
        return f"nats-server {version}"

    # --- control ----------------------------------------------------------------------------------

    def _check_tls(self) -> None:
        s = self.settings
        if s.leaf_port or s.parents:
            check_node_cert(s.ca_file, s.cert_file, s.key_file, s.node_code)

    async def start(self) -> ProcessStatus:
        """Check the TLS files, write the configuration, start nats-server, wait until healthy.

        Raises ``InvalidInput`` (bad TLS files) or ``ProcessFailed`` (naming the last error).
        """
        require_program(self.binary, "nats-server", "nats-server")
        self._check_tls()
        self.settings.store_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.text, self.config_path)
        st = await self.process.start_until_running()
        log.info(
            "nats-server running node=%s pid=%s version=%s client=%s parents=%s",
            self.settings.node_code,
            st.pid,
            self.version,
            self.client_url,
            list(self.settings.parents),
        )
        return st

    async def stop(self) -> ProcessStatus:
        """Stop nats-server; final for this object (make a new one to restart)."""
        st = await self.process.stop()
        await self._http.aclose()
        return st
