"""Registers the engine with the node: the entry point ``c2d.engines: kubernetes`` names this module."""

from __future__ import annotations

import sys

from c2d.plugin import EngineSpec, hookimpl
from c2d_k8s_engine import __version__

# The image the conformance suite runs its sh/echo/sleep jobs in (tests build it: a busybox image).
CONFORMANCE_IMAGE = {"image": "c2d-test-busybox", "tag": "1"}


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name="kubernetes",
            argv=[sys.executable, "-m", "c2d_k8s_engine"],
            version=__version__,
            description="Each stage as Kubernetes pods: quotas, GPUs, no egress unless allowed",
            # Credentials detected: the pod's service account in a cluster, else ~/.kube/config
            # ($KUBECONFIG). Without either, Configure says what to set.
            default_config={},
            conformance=dict(CONFORMANCE_IMAGE),
        )
    ]
