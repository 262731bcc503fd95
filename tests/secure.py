"""What the security tests share: a certificate authority made by the test that uses it
(trustme) with the PEM files a TLS server and its clients need (nothing is fetched or shared
between tests), and the production Redis ACL, read from deploy/nomad/redis.nomad.hcl."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from inferq.embedded import ServerTls


@dataclass(frozen=True)
class Pki:
    """One CA's files: ``ca`` (PEM) to verify with, a server certificate for loopback
    (127.0.0.1 and localhost), and a client certificate for mutual TLS."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server(self, verify_clients: bool = False) -> ServerTls:
        """The server side: its certificate, and this CA for client certificates."""
        return ServerTls(self.server_cert, self.server_key, self.ca, verify_clients)


def _pkcs8(key_pem: bytes) -> bytes:
    """The key as unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), the one form every server
    here reads (Cassandra's PEM support reads no other)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(folder: Path, name: str = "ca") -> Pki:
    """A fresh CA under ``folder/name`` with a server and a client certificate."""
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    client = ca.issue_cert("inferq-client.test", key_type=trustme.KeyType.RSA)
    files = Pki(*(folder / f for f in ("ca.pem", "server.pem", "server-key.pem",
                                        "client.pem", "client-key.pem")))
    ca.cert_pem.write_to_path(str(files.ca))
    for leaf, cert, key in ((server, files.server_cert, files.server_key),
                            (client, files.client_cert, files.client_key)):
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(_pkcs8(leaf.private_key_pem.bytes()))
        key.chmod(0o600)
    return files


NOMAD_REDIS = Path(__file__).resolve().parents[1] / "deploy" / "nomad" / "redis.nomad.hcl"
REDIS_PASSWORD = "s3cret-for-this-test"
"""The password the tests give the production ACL's ``inferq`` user."""


def production_redis_acl(password: str = REDIS_PASSWORD) -> list[str]:
    """The ``user`` rules deploy/nomad/redis.nomad.hcl renders, with ``password`` in place of
    the Nomad variable: ``default`` off, and ``inferq``."""
    rules = re.findall(r"^\s*user (.+)$", NOMAD_REDIS.read_text(), re.M)
    assert rules and rules[0] == "default off", rules
    return [re.sub(r">\{\{.*?\{\{ end \}\}", ">" + password, r) for r in rules]
