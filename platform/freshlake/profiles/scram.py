"""SCRAM-SHA-256/512 (RFC 5802, RFC 7677): server-side credentials and the server's three steps.

Credentials keep salt, iterations, StoredKey and ServerKey, never the password, the way Kafka's
`kafka-configs --alter --add-config SCRAM-SHA-512=[password=...]` stores them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
DEFAULT_ITERATIONS = 4096


class ScramError(Exception):
    """The exchange failed; the message is safe to send back to the client."""


@dataclass(frozen=True, kw_only=True)
class Credential:
    mechanism: str
    salt: str  # base64
    iterations: int
    stored_key: str  # base64
    server_key: str  # base64


def make_credential(
    password: str, *, mechanism: str = "SCRAM-SHA-512", iterations: int = DEFAULT_ITERATIONS
) -> Credential:
    digest = MECHANISMS[mechanism]
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    return Credential(
        mechanism=mechanism,
        salt=_b64(salt),
        iterations=iterations,
        stored_key=_b64(hashlib.new(digest, client_key).digest()),
        server_key=_b64(server_key),
    )


def write_users(path: Path, users: dict[str, Credential]) -> Path:
    """The gateway's user file: name -> credential (mode 0600, no passwords in it)."""
    path.write_text(json.dumps({name: asdict(c) for name, c in users.items()}, indent=1))
    path.chmod(0o600)
    return path


def read_users(path: Path) -> dict[str, Credential]:
    return {name: Credential(**fields) for name, fields in json.loads(path.read_text()).items()}


class ServerExchange:
    """One client's SCRAM conversation: `first()` then `final()`, each returning the reply."""

    def __init__(self, *, mechanism: str, users: dict[str, Credential]) -> None:
        self.mechanism, self.digest, self.users = mechanism, MECHANISMS[mechanism], users
        self.user: str | None = None
        self._auth_prefix = b""
        self._nonce = ""
        self._credential: Credential | None = None

    def first(self, message: bytes) -> bytes:
        text = message.decode("utf-8", "strict")
        parts = text.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            raise ScramError("malformed client-first-message")
        bare = parts[2]
        fields = dict(item.split("=", 1) for item in bare.split(",") if "=" in item)
        if "n" not in fields or "r" not in fields:
            raise ScramError("client-first-message lacks n= or r=")
        self.user = fields["n"].replace("=2C", ",").replace("=3D", "=")
        self._gs2 = f"{parts[0]},{parts[1]},"
        credential = self.users.get(self.user)
        if credential is None or credential.mechanism != self.mechanism:
            # Go on with a throwaway credential so an unknown user looks like a wrong password.
            credential = make_credential(os.urandom(16).hex(), mechanism=self.mechanism, iterations=4096)
            credential = Credential(**{**asdict(credential), "stored_key": _b64(b"\0" * 8)})
        self._credential = credential
        self._nonce = fields["r"] + _b64(os.urandom(18))
        server_first = f"r={self._nonce},s={credential.salt},i={credential.iterations}"
        self._auth_prefix = f"{bare},{server_first},".encode()
        return server_first.encode()

    def final(self, message: bytes) -> bytes:
        """Check the proof; return server-final-message, or raise ScramError."""
        assert self._credential is not None, "first() comes before final()"
        text = message.decode("utf-8", "strict")
        without_proof, _, proof_field = text.rpartition(",p=")
        fields = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
        if fields.get("r") != self._nonce or not proof_field:
            raise ScramError("nonce mismatch")
        if base64.b64decode(fields.get("c", "")) != self._gs2.encode():
            raise ScramError("channel binding mismatch")
        auth_message = self._auth_prefix + without_proof.encode()
        stored_key = base64.b64decode(self._credential.stored_key)
        signature = hmac.new(stored_key, auth_message, self.digest).digest()
        proof = base64.b64decode(proof_field)
        if len(proof) != len(signature):
            raise ScramError("bad proof")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.digest, client_key).digest(), stored_key):
            raise ScramError("invalid credentials")
        server_key = base64.b64decode(self._credential.server_key)
        return f"v={_b64(hmac.new(server_key, auth_message, self.digest).digest())}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
