"""pod-publishing: ``python -m pods.publishing`` uploads a stage's results after its algorithm.

Uploads, each resumable (see :mod:`pods.upload`), in this order:

1. the outputs (see :mod:`pods.outputs`): one regular file as is, several files
   or any folder as ``outputs.zip`` (``archive = true``), nothing when empty;
2. ``logs/algorithm.log``, ``logs/configuration.log`` and ``logs/image.log``, when they exist;
3. ``logs/publishing.log``, this pod's own log, last, so it tells the rest.

It reports PUBLISHING_STARTED, then PUBLISHING_FINISHED (exit 0) or
PUBLISHING_FAILED with the names that did not get through (exit 1). A failed
upload does not stop the others: the logs matter most when something failed.
"""

from __future__ import annotations

import shutil
import sys

import grpc

from c2d.pod.v1 import pod_pb2
from pods.client import PodClient
from pods.entry import run_pod
from pods.env import PodEnv
from pods.failures import PodFailure, describe_rpc_error
from pods.outputs import plan
from pods.podlog import PodLog
from pods.upload import Upload, upload

Phase = pod_pb2.PodPhase
Kind = pod_pb2.UploadKind
LOG_NAME = "publishing.log"
WORKDIR_NAME = ".publishing"
# The logs published after the outputs, in order; this pod's own log comes last of all.
LOGS = (
    ("algorithm.log", Kind.UPLOAD_KIND_ALGORITHM_LOG),
    ("configuration.log", Kind.UPLOAD_KIND_CONFIGURATION_LOG),
    ("image.log", Kind.UPLOAD_KIND_IMAGE_LOG),  # when the engine built the algorithm's image
)


class Publishing:
    def __init__(self, env: PodEnv, client: PodClient, log: PodLog) -> None:
        self.env = env
        self.client = client
        self.log = log
        self.failures: list[str] = []

    def run(self) -> int:
        """Every upload, then the final report; the pod's exit status."""
        self.log.info("publishing started")
        try:
            self.client.update_status(Phase.POD_PHASE_PUBLISHING_STARTED)
        except grpc.RpcError as exc:
            self.log.info(f"could not report the start of publishing: {describe_rpc_error(exc)}")
            return 1
        try:
            self.publish_outputs()
        finally:
            shutil.rmtree(self.env.data / WORKDIR_NAME, ignore_errors=True)
        for name, kind in LOGS:
            if (self.env.logs / name).is_file():
                self.publish(Upload(self.env.logs / name, name, kind))
        self.log.info(f"uploading {LOG_NAME}")
        self.publish(Upload(self.env.logs / LOG_NAME, LOG_NAME, Kind.UPLOAD_KIND_PUBLISHING_LOG))
        return self.finish()

    def publish_outputs(self) -> None:
        try:
            output = plan(self.env.outputs, self.env.data / WORKDIR_NAME)
        except OSError as exc:
            self.log.private(f"packing the outputs failed: {exc}")
            self.failed(f"outputs: could not be packed ({exc.strerror or 'I/O error'})")
            return
        if output is None:
            self.log.info("outputs: none")
            return
        self.log.info(
            f"outputs: {output.name}" + (" (a zip of the outputs folder)" if output.archive else "")
        )
        self.publish(Upload(output.path, output.name, Kind.UPLOAD_KIND_OUTPUT, archive=output.archive))

    def publish(self, item: Upload) -> None:
        try:
            reply = upload(self.client, item)
        except PodFailure as failure:
            self.failed(failure.public)
        except grpc.RpcError as exc:
            self.log.private(f"{item.name}: {exc}")
            self.failed(f"{item.name}: {describe_rpc_error(exc)}")
        except OSError as exc:
            self.log.private(f"{item.name}: {exc}")
            self.failed(f"{item.name}: could not be read ({exc.strerror or 'I/O error'})")
        else:
            self.log.info(f"uploaded {item.name} ({reply.received} bytes)")

    def failed(self, message: str) -> None:
        self.log.info(f"upload failed: {message}")
        self.failures.append(message)

    def finish(self) -> int:
        phase, message = Phase.POD_PHASE_PUBLISHING_FINISHED, ""
        if self.failures:
            phase, message = Phase.POD_PHASE_PUBLISHING_FAILED, "; ".join(self.failures)
        try:
            self.client.update_status(phase, message)
        except grpc.RpcError as exc:
            self.log.info(f"could not report the end of publishing: {describe_rpc_error(exc)}")
            return 1
        self.log.info("publishing failed" if self.failures else "publishing finished")
        return 1 if self.failures else 0


def main() -> int:
    return run_pod(
        "pod-publishing",
        LOG_NAME,
        lambda env, client, log: Publishing(env, client, log).run(),
        Phase.POD_PHASE_PUBLISHING_FAILED,
    )


if __name__ == "__main__":
    sys.exit(main())
