"""Assets the node operator registers: datasets and algorithms, their private files and compute policies.

An asset's ``files`` say where its data really is, so they never leave the
node except towards the pods of the stages that use them: :meth:`AssetRegistry.list`
clears them, and no error message here repeats them. Registration validates
everything before anything is stored, so a registered asset can always be used.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import json_format

from c2d.compute.v1 import compute_pb2
from c2d.netpolicy import Reach
from host import userdata
from host.errors import RequestError, denied, invalid, not_found
from host.files import FileRef, parse_files, resolve_local
from host.orchestrator import imagebuild
from host.store import assets as rows
from host.store import models

AssetPb = compute_pb2.Asset
ServicePb = compute_pb2.AssetService
DATASET = compute_pb2.AssetService.KIND_DATASET
ALGORITHM = compute_pb2.AssetService.KIND_ALGORITHM
# Keyed by any int: a stored or requested kind may be one no name is known for.
KIND_NAMES: dict[int, str] = {DATASET: "dataset", ALGORITHM: "algorithm"}

MAX_ID = 255
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A Docker image reference without tag or digest: [registry[:port]/]path/components.
_DOMAIN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d+)?/)?"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(f"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*")


def already_exists(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.ALREADY_EXISTS, message)


class AssetRegistry:
    """The registered assets, in the ``Asset`` table (files included: internal use only).

    ``data_root`` is the config's ``assets.data_root``: registration checks that
    every local file resolves inside it, so the operator learns of a typo at once.
    ``consumer_reach`` is where consumers' own files may be fetched from (the
    config's ``[security]`` exceptions to public-only); the registry is what
    decides which files a stage may use, so admission and provisioning read it here.

    Its methods read and write the database (through :mod:`host.store.assets`), so they run on
    the database thread: the services call them inside :func:`host.store.runner.run` units
    (admission and provisioning are whole units of their own).
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        consumer_reach: Reach | None = None,
    ):
        self.data_root = data_root
        self.clock = clock
        self.consumer_reach = consumer_reach or Reach()

    def register(self, asset: AssetPb, replace: bool = False) -> AssetPb:
        """Validates and stores ``asset``; ALREADY_EXISTS for a known did unless ``replace``."""
        clean = self.validate(asset)
        services = [json_format.MessageToDict(s) for s in clean.services]
        if not rows.save(clean.did, clean.name, services, self.clock(), replace=replace):
            raise already_exists(f"asset {clean.did} is already registered; set replace to overwrite it")
        return clean

    def validate(self, asset: AssetPb) -> AssetPb:
        """A normalized copy of ``asset`` (lower-case addresses and digests), or INVALID_ARGUMENT."""
        clean = AssetPb()
        clean.CopyFrom(asset)
        clean.did = _identifier(asset.did, "asset did")
        if not clean.services:
            raise invalid(f"asset {clean.did} has no services")
        seen: set[str] = set()
        for position, service in enumerate(clean.services):
            self._validate_service(service, f"asset {clean.did} service {position}", seen)
        return clean

    def _validate_service(self, service: ServicePb, where: str, seen: set[str]) -> None:
        service.service_id = _identifier(service.service_id, f"{where}: service_id")
        if service.service_id in seen:
            raise invalid(f"{where}: service_id {service.service_id!r} is used twice")
        seen.add(service.service_id)
        where = f"{where} ({service.service_id})"
        if service.kind not in KIND_NAMES:
            raise invalid(f"{where}: kind must be dataset or algorithm")
        if service.kind == DATASET:
            self._validate_dataset(service, where)
        else:
            self._validate_algorithm(service, where)
        _normalize_policy(service.policy, where)

    def _validate_dataset(self, service: ServicePb, where: str) -> None:
        if not service.HasField("files"):
            raise invalid(f"{where}: a dataset service needs files")
        if service.HasField("container"):
            raise invalid(f"{where}: a dataset service has no container (algorithms only)")
        self._check_files(service, where)
        userdata.validate_declared(service.consumer_parameters, where)

    def _validate_algorithm(self, service: ServicePb, where: str) -> None:
        has_container = service.HasField("container")
        if not has_container and not service.HasField("files"):
            raise invalid(f"{where}: an algorithm service needs a container or files")
        if service.consumer_parameters:
            raise invalid(f"{where}: consumer parameters are for dataset services")
        if has_container:
            _validate_container(service.container, where)
        if service.HasField("files"):
            self._check_files(service, where)

    def _check_files(self, service: ServicePb, where: str) -> None:
        """Parses the files and, for local ones, checks they exist under the data root now."""
        for ref in parse_files(service.files, allow_local=True, label=where):
            if ref.type == "local":
                resolve_local(self.data_root, ref.location)

    def list(self) -> list[AssetPb]:
        """Every asset, ordered by did, with every ``files`` cleared: safe to send to the operator."""
        assets = [_to_pb(row) for row in rows.every()]
        for asset in assets:
            for service in asset.services:
                service.ClearField("files")
        return assets

    def get(self, did: str) -> AssetPb:
        """The asset with its files (internal use only), or NOT_FOUND."""
        row = rows.find(did)
        if row is None:
            raise not_found(f"no asset with did {did!r} is registered on this node")
        return _to_pb(row)

    def remove(self, did: str) -> None:
        """Forgets the asset; NOT_FOUND if it is not registered."""
        if not rows.delete(did):
            raise not_found(f"no asset with did {did!r} is registered on this node")

    def service(self, did: str, service_id: str, kind: int) -> tuple[AssetPb, ServicePb]:
        """The asset and its service of ``kind`` (AssetService.Kind); NOT_FOUND says which part is missing."""
        asset = self.get(did)
        wanted = KIND_NAMES.get(kind, "unknown")
        for service in asset.services:
            if service.service_id != service_id:
                continue
            if service.kind != kind:
                found = KIND_NAMES.get(service.kind, "unknown")
                raise not_found(f"service {service_id!r} of asset {did!r} is {found}, not {wanted}")
            return asset, service
        raise not_found(f"asset {did!r} has no {wanted} service {service_id!r}")

    @staticmethod
    def check_compute(
        dataset_asset: AssetPb,
        dataset_service: ServicePb,
        algorithm: compute_pb2.Algorithm,
        algorithm_service: ServicePb | None,
        consumer: str,
    ) -> None:
        """See :func:`check_compute`."""
        check_compute(dataset_asset, dataset_service, algorithm, algorithm_service, consumer)

    @staticmethod
    def network_allowed(dataset_services: Iterable[ServicePb]) -> bool:
        """See :func:`network_allowed`."""
        return network_allowed(dataset_services)


def service_files(service: ServicePb) -> list[FileRef]:
    """The files of a registered service (validated at registration); none for an image-only algorithm."""
    if not service.HasField("files"):
        return []
    return parse_files(service.files, allow_local=True, label=f"service {service.service_id}")


def algorithm_container(
    algorithm: compute_pb2.Algorithm, algorithm_service: ServicePb | None
) -> compute_pb2.AlgorithmContainer:
    """The container that runs: a registered algorithm's own one wins over what the request says.

    Trust by image digest is only meaningful if the digest checked is the one
    that runs, so the policy check and the orchestrator both use this.
    """
    if algorithm_service is not None and (
        algorithm_service.container.image or imagebuild.wants_build(algorithm_service.container)
    ):
        return algorithm_service.container
    return algorithm.container


def check_compute(
    dataset_asset: AssetPb,
    dataset_service: ServicePb,
    algorithm: compute_pb2.Algorithm,
    algorithm_service: ServicePb | None,
    consumer: str,
) -> None:
    """PERMISSION_DENIED unless the dataset's policy lets ``consumer`` run ``algorithm`` on it.

    ``algorithm_service`` is the registered algorithm's service when
    ``algorithm.did`` names one, else None. Code the consumer supplies (rawcode,
    files, or an unregistered image) needs ``allow_raw_code``, except an
    unregistered image whose digest is trusted; a registered algorithm must be
    trusted by did or image digest unless ``allow_any_algorithm``. Messages
    name dids and service ids only, never file locations.
    """
    subject = f"dataset {dataset_asset.did} service {dataset_service.service_id}"
    policy = dataset_service.policy
    _check_consumer(policy, consumer, subject)
    if algorithm_service is not None:
        algo_subject = f"algorithm {algorithm.did} service {algorithm_service.service_id}"
        _check_consumer(algorithm_service.policy, consumer, algo_subject)
    digest = algorithm_container(algorithm, algorithm_service).checksum.lower()
    digest_trusted = bool(digest) and digest in {d.lower() for d in policy.trusted_image_digests}
    if (
        _supplies_code(algorithm)
        and not policy.allow_raw_code
        and not _trusted_bare_image(algorithm, digest_trusted)
    ):
        raise denied(f"{subject} does not allow raw algorithms (code or images the consumer supplies)")
    if algorithm.did and not (
        policy.allow_any_algorithm or digest_trusted or algorithm.did in policy.trusted_algorithm_dids
    ):
        raise denied(f"{subject} does not trust algorithm {algorithm.did} (by did or by image digest)")


def _supplies_code(algorithm: compute_pb2.Algorithm) -> bool:
    """Whether the consumer brings its own code: rawcode, files, or an algorithm not registered here."""
    return bool(algorithm.rawcode) or algorithm.HasField("files") or not algorithm.did


def _trusted_bare_image(algorithm: compute_pb2.Algorithm, digest_trusted: bool) -> bool:
    """An unregistered algorithm that is only an image (no code of its own), pinned to a trusted digest."""
    return not algorithm.did and not algorithm.rawcode and not algorithm.HasField("files") and digest_trusted


def _check_consumer(policy: compute_pb2.ComputePolicy, consumer: str, subject: str) -> None:
    allowed = {address.lower() for address in policy.allowed_consumers}
    if allowed and consumer.lower() not in allowed:
        raise denied(f"{subject} is not available to consumer {consumer.lower()}")


def network_allowed(dataset_services: Iterable[ServicePb]) -> bool:
    """Whether the algorithm may have network: only if every dataset it reads allows it."""
    return all(service.policy.allow_network for service in dataset_services)


def _to_pb(row: models.Asset) -> AssetPb:
    asset = AssetPb(did=row.did, name=row.name)
    for service in row.services:
        json_format.ParseDict(service, asset.services.add())
    return asset


def _identifier(value: str, what: str) -> str:
    """A did or service id: non-empty, printable, without surrounding spaces."""
    if not value:
        raise invalid(f"{what} is empty")
    if len(value) > MAX_ID or value != value.strip() or not value.isprintable():
        raise invalid(f"{what} must be at most {MAX_ID} printable characters without surrounding spaces")
    return value


def _validate_container(container: compute_pb2.AlgorithmContainer, where: str) -> None:
    """An image with a tag or a digest (a moving default tag is not a reproducible algorithm), or a
    Dockerfile with the files of its build context, bounded as a consumer's are."""
    if container.encrypted_registry_auth:
        raise invalid(
            f"{where}: a registered algorithm carries no registry credentials; the operator's go in "
            "the engine's config ([engines.docker] registries)"
        )
    if imagebuild.wants_build(container):
        imagebuild.check_build(container, where)
        return
    if not container.image:
        raise invalid(f"{where}: the container has no image (give an image, or a dockerfile to build one)")
    if not _IMAGE.fullmatch(container.image):
        raise invalid(f"{where}: the container image is not a valid image name (put the tag in tag)")
    if not container.tag and not container.checksum:
        raise invalid(f"{where}: the container image needs a tag or a digest (checksum)")
    if container.tag and not _TAG.fullmatch(container.tag):
        raise invalid(f"{where}: the container tag is not a valid image tag")
    if container.checksum:
        container.checksum = _digest(container.checksum, f"{where}: the container checksum")


def _normalize_policy(policy: compute_pb2.ComputePolicy, where: str) -> None:
    """Lower-cases addresses and digests, refuses malformed entries, drops duplicates."""
    consumers = [
        _address(a, f"{where}: allowed_consumers[{i}]") for i, a in enumerate(policy.allowed_consumers)
    ]
    digests = [
        _digest(d, f"{where}: trusted_image_digests[{i}]") for i, d in enumerate(policy.trusted_image_digests)
    ]
    dids = [
        _identifier(d, f"{where}: trusted_algorithm_dids[{i}]")
        for i, d in enumerate(policy.trusted_algorithm_dids)
    ]
    _replace(policy.allowed_consumers, consumers)
    _replace(policy.trusted_image_digests, digests)
    _replace(policy.trusted_algorithm_dids, dids)


def _replace(field: Any, values: list[str]) -> None:
    del field[:]
    field.extend(dict.fromkeys(values))


def _address(value: str, what: str) -> str:
    if not _ADDRESS.fullmatch(value.lower()):
        raise invalid(f"{what} is not an address (0x and 40 hex digits)")
    return value.lower()


def _digest(value: str, what: str) -> str:
    if not _DIGEST.fullmatch(value.lower()):
        raise invalid(f"{what} is not an image digest (sha256: and 64 hex digits)")
    return value.lower()
