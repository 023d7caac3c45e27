"""The node's own key: its Ethereum identity (admin calls, nodePeerId) and its storage key.

Created on first start in the data dir with 0600 rights. Pod keys are stored
encrypted with a key derived from it (HKDF-SHA256), so a copy of the database
alone does not let anyone impersonate a running stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from c2d import auth, registry_auth

KEY_FILE = "node_key"
NONCE_BYTES = 12


@dataclass(frozen=True)
class NodeIdentity:
    private_key: str
    address: str  # lower-case

    @cached_property
    def public_key(self) -> bytes:
        """The compressed secp256k1 public key consumers encrypt registry credentials to."""
        return registry_auth.public_key_of(self.private_key)

    def _cipher(self) -> AESGCM:
        secret = bytes.fromhex(self.private_key.removeprefix("0x"))
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"c2d pod keys v1").derive(
            secret
        )
        return AESGCM(derived)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """Encrypts ``plaintext`` bound to ``context`` (a job id): a sealed value cannot be moved."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher().encrypt(nonce, plaintext, context)

    def unseal(self, sealed: bytes, context: bytes) -> bytes:
        return self._cipher().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)


def load_identity(data_dir: Path) -> NodeIdentity:
    """Reads the node key, creating it (0600) on first start."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(auth.new_private_key() + "\n")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    key = path.read_text().strip()
    return NodeIdentity(private_key=key, address=auth.address_of(key))
