"""Asset and policy checks for one stage, before anything is stored.

A stage may use registered datasets (by did) or consumer-supplied files,
never the node's local files; a registered algorithm's own container is the
one that runs, so trust by image digest means what it says.
"""

from __future__ import annotations

from google.protobuf import json_format

from c2d.compute.v1 import compute_pb2
from host import assets as asset_rules
from host import userdata
from host.assets import AssetRegistry
from host.errors import invalid
from host.files import parse_files
from host.orchestrator import imagebuild
from host.orchestrator.validation import StagePlan, check_image

DATASET = compute_pb2.AssetService.KIND_DATASET
ALGORITHM = compute_pb2.AssetService.KIND_ALGORITHM


def admit_stage(plan: StagePlan, registry: AssetRegistry, consumer: str) -> bool:
    """Checks the stage's inputs and algorithm against the registry; True if it may use the network.

    ``consumer`` empty (:data:`host.auth.ANYONE`, an unsigned InitializeCompute): the datasets'
    and algorithms' allowed consumers are not checked (they are at start), so the answer does not
    tell whether some address is on an allow list. Registered assets are read from the
    database: this runs on the database thread, within :func:`plan_workflow`'s unit.
    """
    stage, where = plan.stage, f"stage {plan.index}"
    algorithm = stage.algorithm
    algorithm_service = None
    if algorithm.did:
        _, algorithm_service = registry.service(algorithm.did, algorithm.service_id, ALGORITHM)
        algorithm_service = _for(algorithm_service, consumer)
        container = asset_rules.algorithm_container(algorithm, algorithm_service)
        if imagebuild.wants_build(container):  # the operator's Dockerfile: built like a consumer's
            imagebuild.check_build(container, where)
        else:
            check_image(container, where)
        consumer_credentials = algorithm.container.encrypted_registry_auth  # for the image, whichever runs
        algorithm.container.CopyFrom(container)
        algorithm.container.encrypted_registry_auth = consumer_credentials
    elif algorithm.files.ByteSize():
        parse_files(
            json_format.MessageToDict(algorithm.files),
            allow_local=False,
            label=f"{where} algorithm",
            reach=registry.consumer_reach,
        )
    dataset_services = []
    for item in stage.input:
        label = f"{where} input {item.index}"
        if item.did:
            asset, service = registry.service(item.did, item.service_id, DATASET)
            service = _for(service, consumer)
            asset_rules.check_compute(asset, service, algorithm, algorithm_service, consumer)
            userdata.resolve(service.consumer_parameters, item.user_data, label)
            dataset_services.append(service)
        elif item.files.ByteSize():
            parse_files(
                json_format.MessageToDict(item.files),
                allow_local=False,
                label=label,
                reach=registry.consumer_reach,
            )
            userdata.resolve_own(item.user_data, label)
        else:
            raise invalid(f"{label} has neither a did nor files")
    return plan.environment.network.allow_network and asset_rules.network_allowed(dataset_services)


def _for(service: compute_pb2.AssetService, consumer: str) -> compute_pb2.AssetService:
    """The service as checked for ``consumer``: for nobody in particular, without its allow list."""
    if consumer or not service.policy.allowed_consumers:
        return service
    copy = compute_pb2.AssetService()
    copy.CopyFrom(service)
    del copy.policy.allowed_consumers[:]
    return copy
