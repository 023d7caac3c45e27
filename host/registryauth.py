"""A consumer's registry credentials for their algorithm image: checked at start, opened at launch.

``AlgorithmContainer.encrypted_registry_auth`` is stored as it arrived (encrypted to the node's
key, see :mod:`c2d.registry_auth`), in the stage's spec. The node decrypts it twice: when the
workflow is checked, so that a blob it cannot read is refused at once (INVALID_ARGUMENT, nothing
stored), and when the stage is handed to its engine, which gets the credentials for the pull
only (``JobSpec.registry_auth``). The clear text lives in memory for those moments, never in the
database, a log line or an error message (which say what is wrong, never what the blob holds).
"""

from __future__ import annotations

from c2d import registry_auth
from c2d.compute.v1 import compute_pb2
from c2d.engine.v1 import engine_pb2
from c2d.quoting import quoted
from host.errors import invalid
from host.identity import NodeIdentity

FIELD = "algorithm.container.encrypted_registry_auth"


def check_stage(stage: compute_pb2.Stage, identity: NodeIdentity, where: str) -> None:
    """INVALID_ARGUMENT when the stage carries credentials the node cannot use."""
    container = stage.algorithm.container
    if container.encrypted_registry_auth:
        open_for(container, identity, where)


def open_for(
    container: compute_pb2.AlgorithmContainer, identity: NodeIdentity, where: str
) -> registry_auth.RegistryCredentials:
    """The container's credentials in the clear; INVALID_ARGUMENT saying why they cannot be used."""
    try:
        credentials = registry_auth.decrypt(identity.private_key, container.encrypted_registry_auth)
    except registry_auth.RegistryAuthError as exc:
        raise invalid(
            f"{where}: {FIELD} cannot be used: {exc} (encrypt it to the node_public_key of "
            "GetEnvironments, e.g. with c2d.registry_auth.encrypt)"
        ) from None
    image_registry = registry_auth.registry_of(container.image)
    if credentials.server and credentials.server != image_registry:
        raise invalid(
            f"{where}: {FIELD} is for registry {quoted(credentials.server)}, "
            f"but the image {quoted(container.image)} is on {quoted(image_registry)}"
        )
    return credentials


def for_engine(
    container: compute_pb2.AlgorithmContainer, identity: NodeIdentity
) -> engine_pb2.RegistryAuth | None:
    """What StartJob carries for the pull, or None when the consumer sent no credentials."""
    if not container.encrypted_registry_auth:
        return None
    credentials = open_for(container, identity, "the stage")
    return engine_pb2.RegistryAuth(
        username=credentials.username,
        password=credentials.password,
        server=credentials.server or registry_auth.registry_of(container.image),
    )
