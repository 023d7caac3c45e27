"""What a stage's pod-configuration receives: every input with its real location, for that pod only.

Files the node holds itself (operator-local dataset files, outputs of
earlier stages) are handed out as opaque tokens that only this stage's pod
can redeem through FetchInput; their paths never leave the node. Nor do
their names: a file is named by the operator's ``name`` or, by the pod, by its
index (``file-<n>``), never by the last segment of a private path or URL.
Consumers' own files are marked as theirs, so the pod fetches them from
public addresses only (see :mod:`pods.netguard`).

Both :meth:`Provisioner.provisioning` and :meth:`Provisioner.open_token` read the
database (assets, earlier stages' results): each runs as one unit on the database
thread (:func:`host.store.runner.run`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format

from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from host import userdata
from host.assets import AssetRegistry, service_files
from host.errors import denied, invalid
from host.files import FileRef, parse_files, resolve_local, to_file_source
from host.orchestrator import stagespec
from host.results import ResultStore
from host.store import jobs
from host.store.models import Stage

DATASET = compute_pb2.AssetService.KIND_DATASET
ALGORITHM = compute_pb2.AssetService.KIND_ALGORITHM


class Provisioner:
    def __init__(self, assets: AssetRegistry, results: ResultStore, settings: dict[str, Any]) -> None:
        self.assets = assets
        self.results = results
        self.settings = settings

    def provisioning(self, stage: Stage) -> pod_pb2.GetProvisioningResponse:
        stage_pb = _stage_pb(stage)
        reply = pod_pb2.GetProvisioningResponse(job_id=stage.job_id)
        for item in stage_pb.input:
            reply.inputs.append(
                pod_pb2.ProvisionedInput(folder=str(item.index), files=self._input_files(item))
            )
        for job_id in stage.run_after:
            reply.inputs.append(pod_pb2.ProvisionedInput(folder=job_id, files=self._outputs_of(job_id)))
        reply.algorithm.CopyFrom(self._algorithm(stage_pb.algorithm))
        if stage_pb.algorithm.custom_data.ByteSize():
            reply.algorithm_custom_data.CopyFrom(stage_pb.algorithm.custom_data)
        return reply

    def _input_files(self, item: compute_pb2.StageInput) -> list[pod_pb2.FileSource]:
        where = f"input {item.index}"
        if item.did:
            _, service = self.assets.service(item.did, item.service_id, DATASET)
            refs = service_files(service)
            sources = [
                self._source(ref, f"asset:{item.did}:{item.service_id}:{n}") for n, ref in enumerate(refs)
            ]
            query = userdata.resolve(service.consumer_parameters, item.user_data, where)
        else:
            refs = self._consumer_files(item.files)
            sources = [self._consumer_source(ref) for ref in refs]
            query = userdata.resolve_own(item.user_data, where)
        for ref, source in zip(refs, sources, strict=True):
            if ref.type == "url":  # as on ocean-node, only http(s) files take the parameters
                source.url = userdata.with_query(source.url, query)
        return sources

    def _consumer_files(self, files: Any) -> list[FileRef]:
        reach = self.assets.consumer_reach
        return parse_files(json_format.MessageToDict(files), allow_local=False, reach=reach)

    def _consumer_source(self, ref: FileRef) -> pod_pb2.FileSource:
        return to_file_source(ref, self.settings, consumer_reach=self.assets.consumer_reach)

    def _source(self, ref: FileRef, token: str) -> pod_pb2.FileSource:
        """An operator's file: no name unless the operator gave one (the pod then uses the index)."""
        return to_file_source(ref, self.settings, token if ref.type == "local" else None)

    def _outputs_of(self, job_id: str) -> list[pod_pb2.FileSource]:
        sources = []
        for result in jobs.complete_results(job_id):
            if result.kind != compute_pb2.RESULT_KIND_OUTPUT:
                continue
            sources.append(
                pod_pb2.FileSource(
                    type="node",
                    url=f"job:{job_id}:{result.index}",
                    name=result.name,
                    checksum=f"sha256:{result.sha256}",
                    size=result.size,
                    archive=result.archive,
                )
            )
        return sources

    def _algorithm(self, algorithm: compute_pb2.Algorithm) -> pod_pb2.FileSource:
        if algorithm.rawcode:
            return pod_pb2.FileSource(type="data", data=algorithm.rawcode.encode(), name="algorithm")
        if algorithm.did:
            _, service = self.assets.service(algorithm.did, algorithm.service_id, ALGORITHM)
            refs = service_files(service)
            if not refs:  # a registered algorithm may be its image alone
                return pod_pb2.FileSource(type="data", data=b"", name="algorithm")
            return self._source(refs[0], f"asset:{algorithm.did}:{algorithm.service_id}:0")
        refs = self._consumer_files(algorithm.files)
        if not refs:
            return pod_pb2.FileSource(type="data", data=b"", name="algorithm")
        return self._consumer_source(refs[0])

    # -- FetchInput --------------------------------------------------------------

    def open_token(self, stage: Stage, token: str) -> tuple[Path, int]:
        """The file behind a token this stage was given, and its size; refused for any other stage."""
        kind, _, rest = token.partition(":")
        if kind == "job":
            job_id, _, index = rest.rpartition(":")
            if job_id not in stage.run_after or not index.isdigit():
                raise denied("this stage was not given that input")
            path = self.results.path(job_id, int(index))
            return path, path.stat().st_size
        if kind == "asset":
            did_service, _, index = rest.rpartition(":")
            did, _, service_id = did_service.rpartition(":")
            if not index.isdigit() or not self._stage_uses(stage, did, service_id):
                raise denied("this stage was not given that input")
            _, service = self.assets.service(did, service_id, _kind_of(stage, did))
            refs = service_files(service)
            if int(index) >= len(refs) or refs[int(index)].type != "local":
                raise invalid("unknown input token")
            path = resolve_local(self.settings.get("data_root"), refs[int(index)].location)
            return path, path.stat().st_size
        raise invalid("unknown input token")

    @staticmethod
    def _stage_uses(stage: Stage, did: str, service_id: str) -> bool:
        stage_pb = _stage_pb(stage)
        pairs = {(i.did, i.service_id) for i in stage_pb.input}
        pairs.add((stage_pb.algorithm.did, stage_pb.algorithm.service_id))
        return (did, service_id) in pairs


def _kind_of(stage: Stage, did: str) -> int:
    return ALGORITHM if _stage_pb(stage).algorithm.did == did else DATASET


def _stage_pb(stage: Stage) -> compute_pb2.Stage:
    return stagespec.decode(stage.spec)
