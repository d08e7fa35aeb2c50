"""``JanusEdge``: the node's Janus, configured, supervised, health-checked and stopped.

``JanusEdge.for_data_dir(data_dir, ...)`` takes the install's secrets from
``<data_dir>/janus/secrets.json`` (created on first use, 0600), finds the installed Janus modules
and builds ``JanusSettings``. ``start()`` renders the configuration into ``<data_dir>/janus/conf``,
starts ``janus`` under a ``SupervisedProcess`` (output in ``<data_dir>/logs/janus.log``) and waits
until its health check passes: the Janus API's ``info`` answers from our instance (its
``server-name``), the version is at least 1.1, and the Streaming and VideoRoom plugins are loaded.
The health detail (``status.health_detail``) reports the version, e.g. ``"Janus 1.1.2"``. A crash
or a failed health check restarts Janus with back-off; ``stop()`` stops it (SIGTERM, then SIGKILL).

``client`` (Janus API, with the API secret) and ``admin`` (admin API, with the admin secret) are
ready-made clients for the rest of the node. Sessions do not survive a Janus restart: users of
``client`` watch ``session.closed`` and create their objects again.

Public: ``JanusEdge``, ``MIN_JANUS_VERSION``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from vmesh.edge.config import (
    JANUS_CONFIG,
    PLUGIN_NAMES,
    SECRETS_FILE,
    JanusSettings,
    find_janus_lib_dir,
    load_or_create_secrets,
    render,
    write_config,
)
from vmesh.edge.janus import JanusAdmin, JanusClient
from vmesh.errors import InvalidInput
from vmesh.node.supervisor import (
    DAEMON_RESTART,
    ProcessSpec,
    ProcessStatus,
    RestartPolicy,
    SupervisedProcess,
    require_program,
)

log = logging.getLogger(__name__)

MIN_JANUS_VERSION = (1, 1)


class JanusEdge:
    """One Janus process of this node; see the module docstring."""

    def __init__(
        self,
        settings: JanusSettings,
        *,
        log_path: Path,
        binary: str = "janus",
        restart: RestartPolicy | None = None,
        health_interval: float = 5.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.rendered = render(settings)  # validates before anything is written or started
        self.binary = binary
        self.client = JanusClient(settings.api_url, api_secret=settings.secrets.api_secret)
        self.admin = JanusAdmin(settings.admin_url, settings.secrets.admin_secret)
        self._probe = JanusClient(settings.api_url, timeout=2.0)
        self.version: str | None = None
        self.process = SupervisedProcess(
            ProcessSpec(
                name="janus",
                argv=[
                    binary,
                    "-C",
                    str(settings.config_dir / JANUS_CONFIG),
                    "-F",
                    str(settings.config_dir),
                    "-o",
                ],
                cwd=settings.config_dir,
                log_path=log_path,
                health=self._health,
                health_interval=health_interval,
                start_timeout=start_timeout,
                restart=restart or DAEMON_RESTART,
            )
        )

    @classmethod
    def for_data_dir(
        cls,
        data_dir: Path,
        *,
        binary: str = "janus",
        lib_dir: Path | None = None,
        restart: RestartPolicy | None = None,
        health_interval: float = 5.0,
        **settings: Any,
    ) -> JanusEdge:
        """Settings for a node whose data folder is ``data_dir``; ``settings`` override defaults
        of ``JanusSettings`` (ports, ranges, ``sdp_address``, ``ice_enforce_list``...)."""
        data_dir = data_dir.resolve()
        lib = lib_dir or find_janus_lib_dir()
        if lib is None:
            raise InvalidInput.one(
                "janus",
                "Janus's modules were not found; install the Debian package: apt-get install janus",
            )
        secrets = load_or_create_secrets(data_dir / "janus" / SECRETS_FILE)
        base = JanusSettings(config_dir=data_dir / "janus" / "conf", lib_dir=lib, secrets=secrets)
        return cls(
            replace(base, **settings),
            log_path=data_dir / "logs" / "janus.log",
            binary=binary,
            restart=restart,
            health_interval=health_interval,
        )

    @property
    def status(self) -> ProcessStatus:
        return self.process.status

    async def _health(self) -> str:
        info = await self._probe.info()
        name = info.raw.get("server-name")
        if name != self.settings.server_name:
            raise RuntimeError(
                f"the Janus API port {self.settings.http_port} is answered by another server "
                f"({name!r}, expected {self.settings.server_name!r})"
            )
        if info.version_tuple[:2] < MIN_JANUS_VERSION:
            raise RuntimeError(
                f"Janus {info.version_string} is too old: vmesh needs "
                f"{'.'.join(map(str, MIN_JANUS_VERSION))} or newer"
            )
        missing = sorted(set(PLUGIN_NAMES) - set(info.plugins))
        if missing:
            raise RuntimeError(f"Janus did not load {', '.join(missing)}")
        self.version = info.version_string
        return f"Janus {info.version_string}"

    async def start(self) -> ProcessStatus:
        """Write the configuration, start Janus and wait until it is healthy.

        Raises ``ProcessFailed`` (naming the last error) if it never becomes healthy.
        """
        require_program(self.binary, "janus", "janus")
        write_config(self.rendered, self.settings.config_dir)
        st = await self.process.start_until_running()
        log.info(
            "janus running pid=%s version=%s api=%s", st.pid, self.version, self.settings.api_url
        )
        return st

    async def stop(self) -> ProcessStatus:
        """Stop Janus and close the clients; final for this object (make a new one to restart)."""
        await self.client.aclose()  # ends sessions' long polls before Janus goes away
        st = await self.process.stop()
        await self.admin.aclose()
        await self._probe.aclose()
        return st
