"""Registry credentials a consumer hands the node for one job, encrypted to the node's key.

A consumer whose algorithm image is in a private registry puts its
credentials in ``AlgorithmContainer.encrypted_registry_auth``: the JSON
``{"username", "password", "server"?}`` encrypted with ECIES to the node's
secp256k1 public key (``GetEnvironmentsResponse.node_public_key``), so only
that node can read them and they never cross the network in the clear.

The scheme is the one of the ``eciesjs``/``eciespy`` libraries in their
default configuration, which Ocean's nodes use for
``encryptedDockerRegistryAuth``: an ephemeral secp256k1 key, ECDH with the
node's key, HKDF-SHA256 over the ephemeral public key and the shared point
(both uncompressed, no salt, no info) to a 32-byte key, and AES-256-GCM with
a 16-byte nonce. The blob is ``ephemeral public key (65) || nonce (16) ||
tag (16) || ciphertext``. A blob made for an Ocean node therefore works here,
and the other way round.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

EPHEMERAL_KEY_BYTES = 65
NONCE_BYTES = 16
TAG_BYTES = 16
OVERHEAD = EPHEMERAL_KEY_BYTES + NONCE_BYTES + TAG_BYTES
MAX_BLOB_BYTES = 4096  # the node refuses larger ones
MAX_FIELD_CHARS = 1024
FIELDS = ("username", "password", "server")


class RegistryAuthError(ValueError):
    """The blob cannot be read with this key, or what it holds is not registry credentials."""


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str
    server: str = ""  # the registry's host[:port]; empty: the image's own registry

    def __repr__(self) -> str:
        """Never the password: a repr ends up in logs and tracebacks."""
        return f"RegistryCredentials(username={self.username!r}, server={self.server!r})"

    def to_json(self) -> bytes:
        values = {"username": self.username, "password": self.password}
        if self.server:
            values["server"] = self.server
        return json.dumps(values).encode()


def public_key_of(private_key: str) -> bytes:
    """The 33-byte compressed secp256k1 public key of a hex private key (the node publishes its own)."""
    return coincurve.PrivateKey(bytes.fromhex(private_key.removeprefix("0x"))).public_key.format(
        compressed=True
    )


def encrypt(node_public_key: bytes | str, username: str, password: str, server: str = "") -> bytes:
    """The blob for ``AlgorithmContainer.encrypted_registry_auth``; ``node_public_key`` as bytes or hex."""
    credentials = parse(json.loads(RegistryCredentials(username, password, server).to_json()))
    return seal(_public_key(node_public_key), credentials.to_json())


def decrypt(private_key: str, blob: bytes) -> RegistryCredentials:
    """The credentials in ``blob``; RegistryAuthError saying what is wrong (never what it holds)."""
    plaintext = unseal(private_key, blob)
    try:
        value = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RegistryAuthError("it does not hold JSON") from None
    return parse(value)


def parse(value: object) -> RegistryCredentials:
    """Credentials from their JSON form: a username and a password, a server optionally."""
    if not isinstance(value, dict):
        raise RegistryAuthError('it must hold a JSON object {"username", "password", "server"?}')
    unknown = sorted(str(k) for k in value if k not in FIELDS)
    if unknown:
        raise RegistryAuthError(f"it has unknown keys {unknown} (allowed: {list(FIELDS)})")
    texts = {key: value.get(key, "") for key in FIELDS}
    for key, text in texts.items():
        if not isinstance(text, str) or len(text) > MAX_FIELD_CHARS:
            raise RegistryAuthError(f"{key} must be a string of at most {MAX_FIELD_CHARS} characters")
    if not texts["username"] or not texts["password"]:
        raise RegistryAuthError("it needs a username and a password")
    server = normalize_server(texts["server"]) if texts["server"] else ""
    return RegistryCredentials(username=texts["username"], password=texts["password"], server=server)


def normalize_server(server: str) -> str:
    """``host[:port]`` from what people write: a URL with a scheme and a path, Docker Hub's aliases."""
    host = server.strip().lower()
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


def registry_of(image: str) -> str:
    """The registry host of an image name, by Docker's rule: a first component with a dot, a colon
    or ``localhost`` names a host, anything else is on Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return normalize_server(first)
    return DOCKER_HUB


# ECIES -------------------------------------------------------------------------------------


def seal(public_key: coincurve.PublicKey, plaintext: bytes) -> bytes:
    ephemeral = coincurve.PrivateKey()
    ephemeral_public = ephemeral.public_key.format(compressed=False)
    key = _derive(ephemeral_public, public_key.multiply(ephemeral.secret))
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)  # ciphertext || tag
    return ephemeral_public + nonce + sealed[-TAG_BYTES:] + sealed[:-TAG_BYTES]


def unseal(private_key: str, blob: bytes) -> bytes:
    if len(blob) <= OVERHEAD:
        raise RegistryAuthError(f"it is {len(blob)} bytes, too short for ECIES (at least {OVERHEAD + 1})")
    if len(blob) > MAX_BLOB_BYTES:
        raise RegistryAuthError(f"it is {len(blob)} bytes, more than {MAX_BLOB_BYTES}")
    ephemeral_public = blob[:EPHEMERAL_KEY_BYTES]
    try:
        point = coincurve.PublicKey(ephemeral_public)
    except ValueError:
        raise RegistryAuthError("it does not start with a secp256k1 public key") from None
    secret = bytes.fromhex(private_key.removeprefix("0x"))
    key = _derive(ephemeral_public, point.multiply(secret))
    nonce = blob[EPHEMERAL_KEY_BYTES : EPHEMERAL_KEY_BYTES + NONCE_BYTES]
    tag = blob[EPHEMERAL_KEY_BYTES + NONCE_BYTES : OVERHEAD]
    try:
        return AESGCM(key).decrypt(nonce, blob[OVERHEAD:] + tag, None)
    except InvalidTag:
        raise RegistryAuthError("it was not encrypted to this node's public key, or was altered") from None


def _derive(ephemeral_public: bytes, shared: coincurve.PublicKey) -> bytes:
    master = ephemeral_public + shared.format(compressed=False)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=None).derive(master)


def _public_key(value: bytes | str) -> coincurve.PublicKey:
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    except ValueError:
        raise RegistryAuthError("the node's public key is not hex") from None
    if len(raw) == 64:  # an Ethereum-style key without its 0x04 prefix
        raw = b"\x04" + raw
    try:
        return coincurve.PublicKey(raw)
    except ValueError:
        raise RegistryAuthError("the node's public key is not a secp256k1 public key") from None
