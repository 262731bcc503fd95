"""One NATS user per role, each allowed only the subjects its role uses (SECURITY.md).

The lists below are the whole of what each role publishes and subscribes to, found by reading
the code and checked by running the end-to-end tests against a server with exactly these
permissions (nats-server logs every refusal as a "Violation"; ``tests/inferq/
test_nats_permissions.py``, and any test under ``pytest --nats-users``). A role that starts
using another subject or stream API needs it added here, or the server refuses it.
``inferq dev`` writes them into its nats-server's configuration with a fresh random password
per user; deploy/nomad/nats.nomad.hcl carries the same lists (a test compares them).

- **gateway**: publishes job chunks and "work arrived" hints; reads stream info (provisioning
  check, operator view) and the oldest chunk of a lane (its age); owns the files buckets.
  Cannot read or publish batches, consume jobs, or touch the dead letters' content.
- **scheduler**: consumes JOBS through its lane consumers (create, pull, ack), reads the
  runners' BATCHES consumer (pull requests waiting) and publishes batches.
- **runner**: consumes BATCHES through its version's consumer and publishes dead letters
  and "batch wanted" hints. Cannot publish jobs or batches.
- **admin**: everything (creating and updating the streams: ``inferq bus provision``, and
  the operator's own tools). No role may create, update, purge or delete JOBS, BATCHES or DLQ.

Every request's reply comes to the role's own inbox prefix (``_INBOX.<role>``), and each user
may subscribe only to its own: otherwise a gateway could subscribe to ``_INBOX.>`` and read
the batches that runners pull.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from core.config import Settings
from schemas import subjects as s

ROLES = ("gateway", "scheduler", "runner")
ADMIN = "admin"
_STREAMS = (s.JOBS_STREAM, s.BATCHES_STREAM, s.DLQ_STREAM)
_API = "$JS.API"


def _stream_info() -> list[str]:
    return [f"{_API}.STREAM.INFO.{name}" for name in _STREAMS]


def _consume(stream: str) -> list[str]:
    """Create (or update) durable pull consumers on ``stream``, pull from them, ack."""
    return [f"{_API}.CONSUMER.CREATE.{stream}.>", f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.>",
            f"{_API}.CONSUMER.INFO.{stream}.>", f"{_API}.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.ACK.{stream}.>"]


def buckets(files_bucket: str) -> tuple[str, ...]:
    """The gateway's object-store buckets: native files and kept inputs (``files_bucket``),
    and the OpenAI Batch API's files beside them (gateway/openai/batchroutes.py)."""
    return (files_bucket, f"{files_bucket}-openai")


def _bucket(bucket: str) -> list[str]:
    """Own one bucket (store/objects.py): its stream (create, update, info, purge), direct
    reads of its chunks and meta, and publishing them. Stream names cannot be wildcarded
    within a token, so each bucket is spelled out."""
    obj = f"OBJ_{bucket}"
    return [f"{_API}.STREAM.{op}.{obj}" for op in ("CREATE", "UPDATE", "INFO", "PURGE")] + [
        f"{_API}.DIRECT.GET.{obj}", f"{_API}.DIRECT.GET.{obj}.>", f"$O.{bucket}.>"]


def permissions(role: str, files_bucket: str = "inferq-files") -> tuple[list[str], list[str]]:
    """(publish allow-list, subscribe allow-list) of ``role``; everything else is refused."""
    inbox = [f"_INBOX.{role}.>"]
    if role == "gateway":
        return ([f"{s.JOBS_PREFIX}.>", f"{s.SIGNAL_PREFIX}.work_arrived.>", *_stream_info(),
                 f"{_API}.STREAM.MSG.GET.{s.JOBS_STREAM}",
                 *(p for b in buckets(files_bucket) for p in _bucket(b))], inbox)
    if role == "scheduler":
        return ([f"{s.BATCHES_PREFIX}.>", *_stream_info(),
                 f"{_API}.STREAM.MSG.GET.{s.JOBS_STREAM}", *_consume(s.JOBS_STREAM),
                 f"{_API}.CONSUMER.INFO.{s.BATCHES_STREAM}.>"],
                [*inbox, s.BATCH_WANTED_FILTER, s.WORK_ARRIVED_FILTER])
    if role == "runner":
        return ([f"{s.DLQ_PREFIX}.>", f"{s.SIGNAL_PREFIX}.batch_wanted.>", *_stream_info(),
                 *_consume(s.BATCHES_STREAM)], inbox)
    raise ValueError(f"unknown role {role!r} (one of {ROLES})")


def _quoted(items: list[str], indent: str) -> str:
    return "\n".join(f'{indent}"{item}"' for item in items)


def user_block(role: str, password: str, files_bucket: str = "inferq-files") -> str:
    """One entry of nats.conf's ``authorization.users`` (the admin's has no permissions)."""
    head = f'    {{\n      user: "{role}"\n      password: "{password}"\n'
    if role == ADMIN:
        return head + "    }\n"
    pub, sub = permissions(role, files_bucket)
    return (head + "      permissions: {\n"
            f"        publish: {{allow: [\n{_quoted(pub, ' ' * 10)}\n        ]}}\n"
            f"        subscribe: {{allow: [\n{_quoted(sub, ' ' * 10)}\n        ]}}\n"
            "      }\n    }\n")


@dataclass(frozen=True)
class NatsUsers:
    """The users of one NATS deployment: a password per role and for the admin."""

    passwords: Mapping[str, str] = field(repr=False)
    files_bucket: str = "inferq-files"

    @classmethod
    def generate(cls, files_bucket: str = "inferq-files") -> NatsUsers:
        """Fresh random passwords (URL-safe) for every role and the admin."""
        return cls({u: secrets.token_urlsafe(24) for u in (*ROLES, ADMIN)}, files_bucket)

    def authorization(self) -> str:
        """nats.conf's ``authorization`` block granting each user its permissions."""
        users = "".join(user_block(u, self.passwords[u], self.files_bucket)
                        for u in (*ROLES, ADMIN))
        return f"authorization {{\n  users: [\n{users}  ]\n}}\n"

    def env(self, role: str) -> dict[str, str]:
        """The ``INFERQ_NATS_*`` variables that make a process connect as ``role``."""
        return {"INFERQ_NATS_USER": role, "INFERQ_NATS_PASSWORD": self.passwords[role]}

    def settings(self, base: Settings, role: str) -> Settings:
        """``base`` connecting to NATS as ``role``."""
        return replace(base, nats_user=role, nats_password=self.passwords[role])
