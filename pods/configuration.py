"""pod-configuration: ``python -m pods.configuration`` lays out ``$C2D_DATA`` before the algorithm runs.

It asks the node for the stage's provisioning (the inputs with their real
locations, the algorithm, its custom data), writes

```
$C2D_DATA/inputs/<folder>/<name>            every input file (zip archives unpacked)
$C2D_DATA/inputs/algoCustomData.json        the algorithm's custom data, when there is any
$C2D_DATA/transformations/algorithm         the algorithm file, mode 0755
$C2D_DATA/outputs/  $C2D_DATA/logs/         empty, for the algorithm and the pods
```

and reports PROVISIONING_FINISHED, exit status 0. A file's ``<name>`` is the one
the node gives, else the last segment of a consumer's own URL, else
``file-<index>``: never anything of an operator's URL or path, which are private. On a failure it reports
DATA_PROVISIONING_FAILED (an input) or ALGORITHM_PROVISIONING_FAILED with a
message naming the file by folder/name only (the consumer reads it; the
locations are private) and exits 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import grpc

from c2d.pod.v1 import pod_pb2
from pods.client import PodClient
from pods.entry import run_pod
from pods.env import PodEnv
from pods.failures import PodFailure, describe_rpc_error
from pods.names import name_from_url, safe_name, unique_name
from pods.netguard import node_addresses
from pods.podlog import PodLog
from pods.sources import fetch
from pods.unzip import unpack, unpacked_limit

Phase = pod_pb2.PodPhase
LOG_NAME = "configuration.log"
CUSTOM_DATA_NAME = "algoCustomData.json"
# Archives are downloaded here, outside the folder they unpack into, and removed.
WORKDIR_NAME = ".configuration"
ALGORITHM_MODE = 0o755


class InputFailure(PodFailure):
    """An input could not be provisioned: DATA_PROVISIONING_FAILED."""


class AlgorithmFailure(PodFailure):
    """The algorithm (or its custom data) could not be provisioned: ALGORITHM_PROVISIONING_FAILED."""


class Configuration:
    def __init__(self, env: PodEnv, client: PodClient, log: PodLog) -> None:
        self.env = env
        self.client = client
        self.log = log
        # The node's own addresses, which no consumer URL may lead to.
        self.own_addresses = frozenset(node_addresses(env.node_http_api))

    def run(self) -> int:
        """The whole provisioning; the pod's exit status."""
        try:
            self.prepare_folders()
            self.log.info("provisioning started")
            self.client.update_status(Phase.POD_PHASE_PROVISIONING_STARTED)
            provisioning = self.client.get_provisioning()
            self.provision_inputs(provisioning.inputs)
            self.provision_algorithm(provisioning)
        except InputFailure as failure:
            return self.fail(Phase.POD_PHASE_DATA_PROVISIONING_FAILED, failure)
        except AlgorithmFailure as failure:
            return self.fail(Phase.POD_PHASE_ALGORITHM_PROVISIONING_FAILED, failure)
        except grpc.RpcError as exc:
            unreachable = PodFailure(
                f"could not get the stage's inputs from the node: {describe_rpc_error(exc)}", str(exc)
            )
            return self.fail(Phase.POD_PHASE_DATA_PROVISIONING_FAILED, unreachable)
        except OSError as exc:
            unwritable = PodFailure(
                f"could not write the data folder ({exc.strerror or 'I/O error'})", str(exc)
            )
            return self.fail(Phase.POD_PHASE_DATA_PROVISIONING_FAILED, unwritable)
        self.log.info("provisioning finished")
        try:
            self.client.update_status(Phase.POD_PHASE_PROVISIONING_FINISHED)
        except grpc.RpcError as exc:
            self.log.info(f"could not report the end of provisioning: {describe_rpc_error(exc)}")
            return 1
        return 0

    def prepare_folders(self) -> None:
        for folder in (self.env.inputs, self.env.transformations, self.env.outputs, self.env.logs):
            folder.mkdir(parents=True, exist_ok=True)

    def fail(self, phase: pod_pb2.PodPhase, failure: PodFailure) -> int:
        """Logs and reports a failure (best effort: the node may be the thing that failed)."""
        self.log.info(f"provisioning failed: {failure.public}")
        self.log.private(failure.detail)
        try:
            self.client.update_status(phase, failure.public)
        except grpc.RpcError as exc:
            self.log.info(f"could not report the failure to the node: {describe_rpc_error(exc)}")
        return 1

    # Inputs ---------------------------------------------------------------------------

    def provision_inputs(self, inputs: Iterable[pod_pb2.ProvisionedInput]) -> None:
        for provisioned in inputs:
            folder_name = safe_name(provisioned.folder)
            if folder_name is None:
                raise InputFailure(
                    "an input folder name is not usable", f"input folder {provisioned.folder!r}"
                )
            folder = self.env.inputs / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            taken = set(os.listdir(folder))
            for index, source in enumerate(provisioned.files):
                self.provision_file(source, folder, index, taken)

    def provision_file(self, source: pod_pb2.FileSource, folder: Path, index: int, taken: set[str]) -> None:
        name = file_name(source, index)
        if source.archive:
            label = f"{folder.name}/{name}"
            workdir = self.env.data / WORKDIR_NAME
            workdir.mkdir(exist_ok=True)
            archive = workdir / f"archive-{index}.zip"
            try:
                self.fetch(source, archive, label, InputFailure)
                self.unpack(archive, folder, max(source.size, archive.stat().st_size), label)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            self.log.info(f"input {label}: unpacked")
            return
        name = unique_name(name, taken)
        label = f"{folder.name}/{name}"
        self.fetch(source, folder / name, label, InputFailure)
        self.log.info(f"input {label}: {(folder / name).stat().st_size} bytes")

    def unpack(self, archive: Path, folder: Path, size: int, label: str) -> None:
        try:
            unpack(archive, folder, unpacked_limit(size), label)
        except PodFailure as failure:
            raise InputFailure(failure.public, failure.detail) from None
        except Exception as exc:  # zlib and zipfile raise several types for corrupt data
            raise InputFailure(f"{label}: the archive could not be unpacked", f"{label}: {exc!r}") from None

    def fetch(self, source: pod_pb2.FileSource, target: Path, label: str, kind: type[PodFailure]) -> None:
        try:
            fetch(source, target, self.client, label, self.own_addresses)
        except PodFailure as failure:
            raise kind(failure.public, failure.detail) from None

    # The algorithm ---------------------------------------------------------------------

    def provision_algorithm(self, provisioning: pod_pb2.GetProvisioningResponse) -> None:
        if provisioning.HasField("algorithm") and has_file(provisioning.algorithm):
            target = self.env.transformations / "algorithm"
            self.fetch(provisioning.algorithm, target, "algorithm", AlgorithmFailure)
            os.chmod(target, ALGORITHM_MODE)
            self.log.info(f"algorithm: {target.stat().st_size} bytes")
        else:
            self.log.info("algorithm: none (the container's own entrypoint runs)")
        if provisioning.HasField("algorithm_custom_data"):
            self.write_custom_data(provisioning)

    def write_custom_data(self, provisioning: pod_pb2.GetProvisioningResponse) -> None:
        from google.protobuf import json_format  # only stages with custom data pay its import

        data = json_format.MessageToDict(provisioning.algorithm_custom_data)
        try:
            (self.env.inputs / CUSTOM_DATA_NAME).write_text(json.dumps(data, indent=1))
        except OSError as exc:
            raise AlgorithmFailure("the algorithm's custom data could not be written", str(exc)) from None
        self.log.info(f"algorithm custom data: {CUSTOM_DATA_NAME}")


def has_file(source: pod_pb2.FileSource) -> bool:
    return bool(source.type or source.url or source.data)


def file_name(source: pod_pb2.FileSource, index: int) -> str:
    """The source's name, else the last segment of a consumer's own URL, else ``file-<index>``.

    The consumer reads these names (``inputs/`` paths, the log, status
    messages); an operator's URL is private, so nothing of it names a file.
    """
    name = safe_name(source.name) if source.name else None
    consumers_url = source.type in ("url", "") and source.origin == pod_pb2.SOURCE_ORIGIN_CONSUMER
    if name is None and consumers_url and source.url:
        name = name_from_url(source.url)
    return name or f"file-{index}"


def main() -> int:
    return run_pod(
        "pod-configuration",
        LOG_NAME,
        lambda env, client, log: Configuration(env, client, log).run(),
        Phase.POD_PHASE_DATA_PROVISIONING_FAILED,
    )


if __name__ == "__main__":
    sys.exit(main())
