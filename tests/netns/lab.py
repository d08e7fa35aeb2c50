"""Network-namespace test bed: node hosts joined by a bridge, links to cut and restore.

Layout (research/netns_testbed.md §1.1, the tested recipe):

    namespace <tag>-lab:  bridge br0, one veth end ``vb-<node>`` per node (+ ``vb-host``)
    namespace <tag>-<node>: veth ``eth0`` = 10.77.<net>.<11+i>/24, ``lo``; no default route
    root namespace (optional leg): ``vl<tag>`` = 10.77.<net>.1/24, so the test process reaches
    the nodes' addresses

Every name carries a tag made of this process's PID and a counter, so labs of parallel runs never
collide; the root leg's subnet takes the first free ``10.77.<net>.0/24`` of the root namespace
(a lab without a root leg always uses 10.77.0.0/24: nothing outside it sees it).

``Lab.down()`` tears down in order, also after a failed test: processes first (those spawned
here, by handle: SIGTERM, then SIGKILL after 5 s; then anything still inside the lab's
namespaces, by PID from ``ip netns pids``: a process left inside keeps a deleted namespace alive),
then the root leg, then the namespaces (the ``lab`` one last). ``up()`` runs ``down()`` itself
when a step fails. Every lab still up at interpreter exit is torn down (``atexit``), and ``up()``
first removes labs left by runs whose process is gone (a ``kill -9`` of pytest).

``impair(node, delay_ms, loss_pct)`` / ``clear_impair(node)`` delay and lose the node's egress:
``tc netem`` when the kernel has it, else an iptables NFQUEUE rule and ``nfq_delay.py`` (this
kernel has no netem; research/netns_testbed.md §4). The namespace's rules go with it.

``cut(node)`` / ``restore(node)`` take the node's link down and up at the bridge ("outer" end:
the node's ``eth0`` loses carrier and packets vanish silently, like a dead WAN) or at the node
("inner" end: its route goes away and senders get ENETUNREACH).

Needs root and iproute2; ``netns_unavailable()`` says why not (tests skip with that reason).
The pytest fixture ``lab_factory`` makes labs and always tears them down.

Public: ``Lab``, ``LabNode``, ``netns_unavailable``, ``lab_factory``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

log = logging.getLogger(__name__)

_counter = itertools.count(1)
_live: list[Lab] = []
_TAG = re.compile(r"^vm(\d+)n(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


@functools.cache
def netns_unavailable() -> str | None:
    """``None`` when namespaces can be made here, else the reason (for ``pytest.skip``)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (Debian package iproute2) is not installed"
    probe = f"vm{os.getpid()}n0-probe"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _ns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in r.stdout.split()] if r.returncode == 0 else []


def _kill_pids(pids: Sequence[int], grace: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def sweep_stale() -> None:
    """Remove namespaces and root legs left by lab runs whose process no longer exists."""
    r = _ip("netns", "list", check=False)
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    stale = [n for n in names if (m := _TAG.match(n)) and not _pid_alive(int(m.group(1)))]
    for ns in stale:
        _kill_pids(_ns_pids(ns), grace=2.0)
    links = _ip("-o", "link", "show", check=False).stdout
    for m in re.finditer(r"^\d+: (vmnet([0-9a-f]+)n\d+)[@:]", links, flags=re.M):
        if not _pid_alive(int(m.group(2), 16)):
            _ip("link", "del", m.group(1), check=False)
    for ns in sorted(stale, key=lambda n: n.endswith("-lab")):
        log.warning("lab: removing stale namespace %s", ns)
        _ip("netns", "del", ns, check=False)


@dataclass(frozen=True)
class LabNode:
    name: str
    ns: str
    ip: str

    @property
    def wrap(self) -> list[str]:
        """argv prefix that runs a program inside this node (``ip netns exec`` execs it)."""
        return ["ip", "netns", "exec", self.ns]


class Lab:
    """One test bed; see the module docstring."""

    def __init__(self, nodes: Sequence[str], *, root_leg: bool = True) -> None:
        if not nodes or len(set(nodes)) != len(nodes):
            raise ValueError(f"node names must be given and unique: {nodes}")
        for n in nodes:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", n):
                raise ValueError(f"node name {n!r}: 1-12 lower-case letters and digits")
        self.tag = f"vm{os.getpid()}n{next(_counter)}"
        self.root_leg = root_leg
        self.lab_ns = f"{self.tag}-lab"
        # "vmnet…": both Janus (its default ice_ignore_list) and Chromium's WebRTC (which skips
        # vmnet*, vnic* and vboxnet* interfaces) leave it out of ICE, so a browser and a Janus in
        # the root namespace never pick a path over a lab that goes away under them.
        self.host_link = f"vmnet{os.getpid():x}n{self.tag.rsplit('n', 1)[1]}"
        if len(self.host_link) > 15:
            raise RuntimeError(f"interface name {self.host_link} is over 15 characters")
        self.net = 0
        self._names = list(nodes)
        self.nodes: dict[str, LabNode] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._up = False
        self._impaired: dict[str, subprocess.Popen[bytes] | None] = {}

    # --- building ---------------------------------------------------------------------------------

    def _free_net(self) -> int:
        used = set(
            int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", _ip("-4", "-o", "addr").stdout)
        )
        for n in range(256):
            if n not in used:
                return n
        raise RuntimeError("no free 10.77.x.0/24 subnet in the root namespace")

    def up(self) -> Lab:
        sweep_stale()
        _live.append(self)
        self._up = True
        try:
            self.net = self._free_net() if self.root_leg else 0
            ns = self.lab_ns
            _ip("netns", "add", ns)
            self._sysctl(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", ns, "link", "set", "br0", "up")
            if self.root_leg:
                _ip("link", "add", self.host_link, "type", "veth", "peer", "name", "vb-host",
                    "netns", ns)  # fmt: skip
                with contextlib.suppress(OSError):
                    Path(f"/proc/sys/net/ipv6/conf/{self.host_link}/disable_ipv6").write_text("1")
                _ip("-n", ns, "link", "set", "vb-host", "master", "br0", "up")
                _ip("addr", "add", f"10.77.{self.net}.1/24", "dev", self.host_link)
                _ip("link", "set", self.host_link, "up")
            for i, name in enumerate(self._names):
                self._add_node(name, f"10.77.{self.net}.{11 + i}")
        except BaseException:
            self.down()
            raise
        log.info("lab %s up: %s", self.tag, {n.name: n.ip for n in self.nodes.values()})
        return self

    def _sysctl(self, ns: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip

    def _add_node(self, name: str, ip: str) -> None:
        ns = f"{self.tag}-{name}"
        _ip("netns", "add", ns)
        self.nodes[name] = LabNode(name, ns, ip)
        self._sysctl(ns)
        _ip("-n", self.lab_ns, "link", "add", f"vb-{name}", "type", "veth", "peer", "name",
            "eth0", "netns", ns)  # fmt: skip
        _ip("-n", self.lab_ns, "link", "set", f"vb-{name}", "master", "br0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    def __getitem__(self, name: str) -> LabNode:
        return self.nodes[name]

    # --- processes --------------------------------------------------------------------------------

    def spawn(
        self, node: str, argv: Sequence[str], log_path: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node`` (own session); stopped by ``down()`` at the latest."""
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            f = open(log_path, "ab")  # noqa: SIM115 (closed by down())
            self._logs.append(f)
            out = f
        p = subprocess.Popen(
            [*self[node].wrap, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs.append(p)
        return p

    def run(
        self, node: str, argv: Sequence[str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``node`` to completion; its output as text."""
        return subprocess.run(
            [*self[node].wrap, *argv], capture_output=True, text=True, timeout=timeout
        )

    # --- faults -----------------------------------------------------------------------------------

    def _link(self, node: str, state: str, end: str) -> None:
        if end == "outer":
            _ip("-n", self.lab_ns, "link", "set", f"vb-{node}", state)
        elif end == "inner":
            _ip("-n", self[node].ns, "link", "set", "eth0", state)
        else:
            raise ValueError(f"end must be 'outer' or 'inner', not {end!r}")

    def impair(self, node: str, delay_ms: float, loss_pct: float) -> str:
        """Delay and lose the node's eth0 egress (every link leaving it); returns the mechanism:
        "netem" when the kernel has it, else "nfqueue" (an iptables NFQUEUE rule and
        ``nfq_delay.py`` in the node; needs the Debian package iptables)."""
        self.clear_impair(node)
        r = self.run(node, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
                            "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"])  # fmt: skip
        if r.returncode == 0:
            self._impaired[node] = None
            return "netem"
        if shutil.which("iptables") is None:
            raise RuntimeError("no netem in this kernel and no iptables (Debian package iptables)")
        script = Path(__file__).with_name("nfq_delay.py")
        proc = self.spawn(
            node,
            [sys.executable, str(script), "--queue", "7", "--delay", str(delay_ms),
             "--loss", str(loss_pct / 100)],
        )  # fmt: skip
        self._impaired[node] = proc
        for argv in (["-N", "LABFAULT"],
                     ["-A", "LABFAULT", "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"],
                     ["-A", "OUTPUT", "-o", "eth0", "-j", "LABFAULT"]):  # fmt: skip
            r = self.run(node, ["iptables", *argv])
            if r.returncode != 0:
                raise RuntimeError(f"iptables {' '.join(argv)} in {node}: {r.stderr.strip()}")
        return "nfqueue"

    def clear_impair(self, node: str) -> None:
        if node not in self._impaired:
            return
        proc = self._impaired.pop(node)
        if proc is None:
            self.run(node, ["tc", "qdisc", "del", "dev", "eth0", "root"])
            return
        self.run(node, ["iptables", "-D", "OUTPUT", "-o", "eth0", "-j", "LABFAULT"])
        self.run(node, ["iptables", "-F", "LABFAULT"])
        self.run(node, ["iptables", "-X", "LABFAULT"])
        proc.terminate()
        proc.wait(5)

    def cut(self, node: str, end: str = "outer") -> None:
        self._link(node, "down", end)

    def restore(self, node: str, end: str = "outer") -> None:
        self._link(node, "up", end)

    # --- teardown ---------------------------------------------------------------------------------

    def down(self) -> None:
        """Processes, then links, then namespaces. Safe to call twice and after a failed up()."""
        procs, self._procs = self._procs, []
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for f in self._logs:
            f.close()
        self._logs.clear()
        names = [f"{self.tag}-{n}" for n in self._names] + [self.lab_ns]
        existing = set(_ip("netns", "list", check=False).stdout.split())
        names = [n for n in names if n in existing]
        for ns in names:
            leftovers = _ns_pids(ns)
            if leftovers:
                log.warning(
                    "lab %s: processes left in %s: %s; stopping them", self.tag, ns, leftovers
                )
                _kill_pids(leftovers)
        for name in self._names:
            if self.lab_ns in existing:
                _ip("-n", self.lab_ns, "link", "del", f"vb-{name}", check=False)
        if self.root_leg:
            _ip("link", "del", self.host_link, check=False)
        for ns in names:
            _ip("netns", "del", ns, check=False)
        self.nodes.clear()
        if self in _live:
            _live.remove(self)
        self._up = False


@atexit.register
def _down_all() -> None:
    for lab in list(_live):
        with contextlib.suppress(Exception):
            lab.down()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """``make(*nodes, root_leg=True)`` builds a lab; every lab is torn down after the test."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network-namespace test bed unavailable: {reason}")
    labs: list[Lab] = []

    def make(*nodes: str, root_leg: bool = True) -> Lab:
        lab = Lab(nodes, root_leg=root_leg)
        labs.append(lab)
        return lab.up()

    try:
        yield make
    finally:
        for lab in reversed(labs):
            lab.down()
