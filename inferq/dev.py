"""``inferq dev``: the whole service on one machine with no system installs.

Starts nats-server and redis-server (from their wheels) as children with their data under the
state directory, builds the default model if missing, writes a dev API key and a tenants file,
then runs gateway, scheduler and one runner as child processes. Ctrl-C or SIGTERM stops
everything in reverse order, each child with a grace period and then a hard kill.

Nothing outlives it: every child gets SIGTERM from the kernel when ``inferq dev`` dies, even
by SIGKILL (``PR_SET_PDEATHSIG``), and an exclusive lock on the state directory refuses a
second instance there. Both refusals — the lock, a port in use — are one line, not a
traceback.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from core.config import Settings
from core.tenants import Tenant, TenantDirectory, hmac_key, write_tenants_file
from inferq.embedded import (
    EmbeddedServerError,
    ServerProcess,
    die_with_parent,
    free_port,
    nats_server,
    redis_server,
    terminate,
)
from inferq.nats_users import ADMIN, NatsUsers


class DevRefused(Exception):
    """``inferq dev`` cannot start here; the message is the one line the user sees."""


def lock_state_dir(state: Path) -> int:
    """An exclusive ``flock`` on ``<state>/lock``, held (by the returned descriptor) until
    this process exits, however it exits: the kernel drops it with the process. Children do
    not inherit it (Popen closes descriptors), so an orphan could never keep it."""
    path = state / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DevRefused(f"another inferq dev (pid {holder}) is running on {state}; stop it "
                         f"or use --state-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, before anything starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DevRefused(f"port {port} on {host} is in use; choose another with "
                                 f"--port") from None
            raise DevRefused(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _dev_key(state: Path, given: str | None) -> str:
    path = state / "dev-api-key"
    if given:
        key = given
    elif path.exists():
        key = path.read_text().strip()
    else:
        key = "iq_dev_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _pepper(state: Path, configured: str | None) -> str:
    """The configured pepper, else one kept in ``<state>/api-key-pepper`` (0600)."""
    if configured:
        return configured
    path = state / "api-key-pepper"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def _webhook_secret(state: Path) -> str:
    """The dev tenant's webhook signing secret (``whsec_``), kept in
    ``<state>/webhook-secret`` (0600) for receivers to verify with."""
    path = state / "webhook-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path.read_text().strip()


def _tenants_file(state: Path, key: str, base_file: str | None, pepper: str) -> Path:
    tenants: dict[str, Tenant] = {}
    if base_file:
        directory = TenantDirectory.load(base_file, pepper)
        tenants = {n: directory.get(n) for n in directory.weights()}  # type: ignore[misc]
    dev = tenants.get("dev") or Tenant(name="dev")
    hashes = sorted(set(dev.api_key_hmac) | {hmac_key(key, pepper)})
    tenants["dev"] = Tenant(name="dev", weight=dev.weight, requests_per_s=dev.requests_per_s,
                            items_per_min=dev.items_per_min, polls_per_s=dev.polls_per_s,
                            backlog_quota=dev.backlog_quota, api_key_hmac=hashes,
                            api_key_sha256=dev.api_key_sha256, webhook_url=dev.webhook_url,
                            webhook_secret=dev.webhook_secret or _webhook_secret(state))
    path = state / "tenants.toml"
    write_tenants_file(path, tenants)
    return path


def _banner(port: int, key: str, state: Path) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"""
inferq is running at {url}  (state in {state}, logs in {state}/logs)
API key (also in {state}/dev-api-key): {key}

  curl -s -X POST {url}/v1/jobs \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "minilm", "inputs": [{{"text": "hello world", "id": "a"}}]}}'

  curl -s {url}/v1/jobs/<job_id> -H "Authorization: Bearer {key}"
  curl -s {url}/v1/jobs/<job_id>/results -H "Authorization: Bearer {key}"

OpenAPI: {url}/schema   Metrics: {url}/metrics   Stop: Ctrl-C
"""


class StopFlag:
    """Set by the signal handlers, polled by the main loop. Not a ``threading.Event``: its
    ``set()`` takes a lock, and a second signal arriving inside the first handler's ``set()``
    (Ctrl-C twice, or a supervisor forwarding the signal it got) deadlocked on it."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Ask to stop (safe to call from a signal handler, any number of times)."""
        self._set = True

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early (within 50 ms) once set; is it set?"""
        deadline = time.monotonic() + timeout
        while not self._set and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._set


def run_dev(*, port: int, state_dir: Path, api_key: str | None, backend: str | None) -> int:
    """Run the embedded stack until SIGINT/SIGTERM (the handlers only set an event); returns
    the exit code, 1 when a child fails to start or exits, or when the state directory or
    the port is taken (one line on stderr)."""
    state = state_dir.resolve()
    try:
        (state / "logs").mkdir(parents=True, exist_ok=True)
        lock = lock_state_dir(state)
        base = Settings.load()
        check_port_free(base.http_host, port)
    except DevRefused as exc:
        print(f"inferq dev: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"inferq dev: cannot use the state directory {state}: {exc.strerror}",
              file=sys.stderr)
        return 1
    try:
        return _run(port, state, api_key, backend, base)
    finally:
        os.close(lock)


def _run(port: int, state: Path, api_key: str | None, backend: str | None,
         base: Settings) -> int:
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    print("inferq dev: preparing the default model (first run builds it, ~1 min)...", flush=True)
    from models.build import ensure_default_model

    ensure_default_model(Path(base.model_repo).expanduser())

    servers: list[ServerProcess] = []
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        # One NATS user per role with only the subjects it uses, fresh passwords each run
        # (in <state>/nats/nats.conf, 0600; the admin user is for the nats CLI).
        users = NatsUsers.generate(base.files_bucket)
        nats = nats_server(state / "nats", log_path=state / "logs" / "nats.log",
                           sync_always=True, users=users)
        redis = redis_server(state / "redis", log_path=state / "logs" / "redis.log")
        for server in (nats, redis):
            server.die_with_parent = True
            servers.append(server)  # stopped in `finally` even if it fails to start
            server.start()
        nats_url = f"nats://127.0.0.1:{nats.port}"
        _provision_streams(users.settings(replace(base, nats_url=nats_url), ADMIN))
        key = _dev_key(state, api_key)
        pepper = _pepper(state, base.api_key_pepper)
        env = dict(os.environ)
        env.update({
            "INFERQ_API_KEY_PEPPER": pepper,
            "INFERQ_NATS_URL": nats_url,
            "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "INFERQ_RESULTS_URL": env.get("INFERQ_RESULTS_URL")
            or f"sqlite:///{state / 'results.db'}",
            "INFERQ_MODEL_REPO": str(Path(base.model_repo).expanduser()),
            "INFERQ_TENANTS_FILE": str(_tenants_file(state, key, base.tenants_file, pepper)),
            "INFERQ_HTTP_PORT": str(port),
            "INFERQ_READY_REQUIRES_RUNNERS": "1",  # ready only once a runner serves the model
        })
        # Webhooks to a receiver on this machine (plain http, loopback): dev only.
        env.setdefault("INFERQ_WEBHOOK_ALLOW_HTTP", "1")
        env.setdefault("INFERQ_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
        if backend:
            env["INFERQ_BACKEND"] = backend
            if backend.startswith("tensorrt") or backend == "simulated":
                env.setdefault("INFERQ_TOKENIZER_PARALLEL", "1")  # no CPU inference to stall
        for role in ("runner", "scheduler", "gateway"):
            role_env = dict(env)
            role_env.update(users.env(role))
            if role != "gateway":
                role_env.setdefault("INFERQ_METRICS_PORT", str(free_port()))
            log = open(state / "logs" / f"{role}.log", "ab")
            children.append((role, subprocess.Popen(
                [sys.executable, "-m", "inferq.cli", role], env=role_env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent())))
            log.close()
        if not _wait_ready(port, children, stop):
            return 1
        print(_banner(port, key, state), flush=True)
        while not stop.wait(0.5):
            for role, proc in children:
                if proc.poll() is not None:
                    print(f"inferq dev: {role} exited with code {proc.returncode}; see "
                          f"{state}/logs/{role}.log", file=sys.stderr)
                    return 1
        print("inferq dev: stopping...", flush=True)
        return 0
    except EmbeddedServerError as exc:
        print(f"inferq dev: {exc}; see {state}/logs", file=sys.stderr)
        return 1
    finally:
        for _, proc in reversed(children):
            terminate(proc, grace=30.0)
        for s in reversed(servers):
            s.stop()


def _provision_streams(admin: Settings) -> None:
    """Create the streams as the NATS admin: the roles' users may not."""
    import asyncio

    from core import bus

    try:
        asyncio.run(bus.provision(admin))
    except bus.BusError as exc:
        raise EmbeddedServerError(f"cannot create the NATS streams: {exc}") from exc


def _wait_ready(port: int, children, stop: StopFlag, timeout: float = 180.0) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        for role, proc in children:
            if proc.poll() is not None:
                print(f"inferq dev: {role} failed to start (code {proc.returncode})",
                      file=sys.stderr)
                return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False
