"""Client TLS for the connections to NATS, Redis and Cassandra: one way to build the context.

A ``TlsFiles`` names PEM files: a CA bundle to verify the server with (None: the system's
trust store) and, for mutual TLS, this client's certificate and key. The context always
verifies the server's certificate and its name (an IP address must be in the certificate's
subjectAltName), because an unverified TLS connection protects against nothing a passive
attacker cannot also do.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


class TlsConfigError(ValueError):
    """The TLS settings are inconsistent (a key without a certificate, an unreadable file)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one client TLS configuration; ``enabled`` when any is set."""

    ca: str | None = None
    """CA bundle that signed the server's certificate; None: the system's trust store."""
    cert: str | None = None
    """This client's certificate (mutual TLS), with ``key``."""
    key: str | None = None
    """The private key of ``cert`` (unencrypted PEM)."""

    @property
    def enabled(self) -> bool:
        """Whether any file is configured (the caller may also enable TLS by URL scheme)."""
        return bool(self.ca or self.cert or self.key)

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the server (certificate and host name) against
        ``ca``, presenting ``cert``/``key`` when given. Reads the files now, so a wrong path
        fails at start-up with the path in the message."""
        if bool(self.cert) != bool(self.key):
            raise TlsConfigError("a TLS client certificate needs its key, and a key its "
                                 "certificate")
        try:
            ctx = ssl.create_default_context(cafile=self.ca or None)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot load TLS files {self!r}: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
