"""The processes of the topology: role processes that can be killed, stopped and counted, the
environment that configures them, and pausing a server (SIGSTOP / SIGCONT)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from core.config import Settings
from inferq.embedded import ServerProcess


@dataclass
class RoleProcess:
    """One role process: started, killed or stopped; its starts and the restarts its
    supervisor made are counted. Its output goes to ``log`` (appended across restarts)."""

    role: str
    name: str
    env: dict[str, str]
    log: Path
    port: int
    """The gateway's HTTP port, or a scheduler's or runner's Prometheus port."""
    proc: subprocess.Popen | None = None
    starts: int = 0
    crashes: int = 0
    _log_from: int = field(default=0, repr=False)
    """Where the current process's output starts in ``log``."""
    exit_codes: list[int] = field(default_factory=list)
    """How each process that the supervisor found dead had exited (-9: SIGKILL; 86: a crash
    point of ``core/faults.py``)."""

    def start(self) -> None:
        env = dict(self.env)
        if "INFERQ_FAULTS_SEED" in env:  # reproducible, yet not the same draw every restart
            env["INFERQ_FAULTS_SEED"] = str(int(env["INFERQ_FAULTS_SEED"]) + self.starts)
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self._log_from = out.tell()
            self.proc = subprocess.Popen([sys.executable, "-m", "inferq.cli", self.role],
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1

    @property
    def started(self) -> bool:
        """The current process got through its start-up (it logged ``<Role> started``)."""
        with open(self.log, "rb") as fh:
            fh.seek(self._log_from)
            return b"Role started" in fh.read()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``INFERQ_*`` variables that make ``Settings.load()`` in a role equal ``settings``
    (every field that differs from its default)."""
    default, env = Settings(), {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is None or value == getattr(default, f.name):
            continue
        env[f"INFERQ_{f.name.upper()}"] = (("true" if value else "false")
                                           if isinstance(value, bool) else str(value))
    return env




def pause(server: ServerProcess) -> None:
    """SIGSTOP: the process keeps its sockets open and answers nothing, like a machine stuck
    in a long GC pause or a stalled disk; its peers see timeouts, not refused connections."""
    if server.running:
        server.proc.send_signal(signal.SIGSTOP)


def resume(server: ServerProcess) -> None:
    """SIGCONT (a no-op unless the server was paused)."""
    if server.running:
        server.proc.send_signal(signal.SIGCONT)
