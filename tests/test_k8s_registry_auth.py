"""Registry credentials on the Kubernetes engine: a per-job image pull Secret, against the API server
double (tests/k8s_double), whose kubelet pulls images of a loopback registry for real with the pod's
image pull secrets (Debian's ``docker-registry`` with htpasswd auth, tests/image_registry.py).

The operator's ``registries`` entry for the algorithm image's registry, or the job's own
credentials (``JobSpec.registry_auth``), become a ``kubernetes.io/dockerconfigjson`` Secret owned by
the job's root object and referenced by the algorithm's pod only; it goes when the job ends, is
destroyed, or is found as an orphan. The password is searched for in the engine's state dir, its
log lines, the job's events, its handle and the root ConfigMap. The double's own Secret validation
and pulls are pinned with the official client alone.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from image_registry import Registry
from kubernetes.client.exceptions import ApiException
from test_k8s_engine import (
    ALLOCATABLE,
    engine_config_for,
    job_objects,
    job_spec,
    k8s_target,
    statuses,
    write_kubeconfig,
)

from c2d.common.v1 import common_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, describe
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import pullcreds
from c2d_k8s_engine import config as engine_config
from c2d_k8s_engine import manifests, names
from nodeproc import wait_for

Status = common_pb2.JobStatus
pytestmark = pytest.mark.timeout(180)


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def double(docker_client: Any, busybox_image: str) -> Iterator[Any]:
    from k8s_double import ApiServerDouble

    server = ApiServerDouble(docker_client, node_allocatable=ALLOCATABLE)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def kubeconfig(double: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return double.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", context="c2d-double")


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


def registry_entry(registry: Registry, password: str | None = None) -> dict[str, str]:
    return {
        "server": registry.server,
        "username": registry.username,
        "password": password or registry.password,
    }


@pytest.fixture(scope="module")
def operator_engines(
    loop: EventLoopThread,
    kubeconfig: Path,
    image_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EngineFactory]:
    """Engines whose config has the test registry's credentials, and another registry's."""
    other = {"server": "ghcr.io", "username": "someone", "password": "pw-ghcr-never-sent"}
    config = engine_config_for(kubeconfig, registries=[registry_entry(image_registry), other])
    factory = EngineFactory(k8s_target(config), loop, tmp_path_factory.mktemp("k8s-op"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def bare_engines(
    loop: EventLoopThread, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineFactory]:
    """Engines with no registry credentials of their own."""
    factory = EngineFactory(
        k8s_target(engine_config_for(kubeconfig)), loop, tmp_path_factory.mktemp("k8s-bare")
    )
    yield factory
    factory.close()


def private_spec(
    image: str, command: str = "echo pulled", auth: engine_pb2.RegistryAuth | None = None
) -> Any:
    repository, _, tag = image.rpartition(":")
    spec = job_spec(command, image=repository, tag=tag)
    if auth is not None:
        spec.registry_auth.CopyFrom(auth)
    return spec


def docker_config(secret: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])))


def state_files_holding(engine: EngineProcess, secret: str) -> list[Path]:
    root = Path(engine.state_dir)
    return [p for p in sorted(root.rglob("*")) if p.is_file() and secret.encode() in p.read_bytes()]


def plugin_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the plugins wrote to stderr (their log), as the harness relays it."""
    return [r.getMessage() for r in caplog.records if r.name == "c2d.conformance.engine"]


def core_api(url: str) -> kubernetes.client.CoreV1Api:
    configuration = type.__call__(kubernetes.client.Configuration)
    configuration.host = url
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


# The engine ----------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_job_pulls_its_private_image_with_its_own_credentials_and_nothing_keeps_them(
    bare_engines: EngineFactory,
    double: Any,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="c2d.conformance.engine")
    engine = bare_engines.start()
    namespace = names.default_namespace(engine.host_id)
    anonymous = private_spec(registry_images(busybox_image))
    engine.start_job(anonymous)
    events = engine.watch(anonymous.job_id, timeout=60).events
    assert statuses(events)[-1] == "PULL_IMAGE_FAILED", describe(events)
    assert "could not be pulled" in events[-1].message and "lost" not in events[-1].message
    assert job_objects(double, namespace, anonymous.job_id)["secrets"] == []  # nothing to pull with

    auth = engine_pb2.RegistryAuth(
        username=image_registry.username, password=image_registry.password, server=image_registry.server
    )
    spec = private_spec(registry_images(busybox_image), "echo pulled; sleep 60", auth)
    handle = engine.start_job(spec)
    running = engine.watch_until_running(spec.job_id)
    assert statuses(running.events)[-1] == "RUNNING", describe(running.events)
    secret_name = names.pull_secret_name(spec.job_id)
    secret = double.get("secrets", namespace, secret_name)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert docker_config(secret)["auths"] == {
        image_registry.server: {
            "username": image_registry.username,
            "password": image_registry.password,
            "auth": base64.b64encode(
                f"{image_registry.username}:{image_registry.password}".encode()
            ).decode(),
        }
    }
    root = double.get("configmaps", namespace, names.job_base(spec.job_id))
    assert secret["metadata"]["ownerReferences"][0]["uid"] == root["metadata"]["uid"]
    pod = double.get("pods", namespace, names.pod_name(spec.job_id, names.ALGORITHM))
    assert pod["spec"]["imagePullSecrets"] == [{"name": secret_name}]
    password = image_registry.password
    assert password not in json.dumps(root) and password.encode() not in handle.SerializeToString()
    assert state_files_holding(engine, password) == []
    assert not any(password in e.message for e in running.events)

    engine.stop_job(spec.job_id, grace_seconds=1)
    ended = engine.watch(spec.job_id, timeout=30).events
    assert statuses(ended)[-1] == "STOPPED", describe(ended)
    assert job_objects(double, namespace, spec.job_id)["secrets"] == []  # gone when the job ended
    engine.destroy_job(spec.job_id)
    engine.destroy_job(spec.job_id)  # idempotent
    engine.jobs.discard(spec.job_id)
    assert not any(job_objects(double, namespace, spec.job_id).values())
    assert [line for line in plugin_lines(caplog) if password in line] == []


@pytest.mark.docker
def test_the_operators_credentials_serve_the_registry_they_name_only(
    operator_engines: EngineFactory,
    double: Any,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="c2d.conformance.engine")
    engine = operator_engines.start()
    namespace = names.default_namespace(engine.host_id)
    spec = private_spec(registry_images(busybox_image), "sleep 60")
    engine.start_job(spec)
    running = engine.watch_until_running(spec.job_id)
    assert statuses(running.events)[-1] == "RUNNING", describe(running.events)
    secret = double.get("secrets", namespace, names.pull_secret_name(spec.job_id))
    assert list(docker_config(secret)["auths"]) == [image_registry.server]  # not ghcr.io's
    engine.stop_job(spec.job_id, grace_seconds=1)
    engine.watch(spec.job_id, timeout=30)

    local = job_spec("true")  # c2d-test-busybox: Docker Hub, which has no entry
    engine.start_job(local)
    events = engine.watch(local.job_id, timeout=60).events
    assert statuses(events)[-1] == "FINISHED", describe(events)
    pod = double.get("pods", namespace, names.pod_name(local.job_id, names.ALGORITHM))
    assert pod is None or "imagePullSecrets" not in pod["spec"]
    assert not any(line for line in plugin_lines(caplog) if image_registry.password in line)
    assert not any(line for line in plugin_lines(caplog) if "pw-ghcr-never-sent" in line)


@pytest.mark.docker
def test_wrong_credentials_fail_the_pull_without_showing_the_password(
    bare_engines: EngineFactory,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="c2d.conformance.engine")
    engine = bare_engines.start()
    wrong = "pw-wrong-" + uuid.uuid4().hex
    auth = engine_pb2.RegistryAuth(
        username=image_registry.username, password=wrong, server=image_registry.server
    )
    spec = private_spec(registry_images(busybox_image), auth=auth)
    engine.start_job(spec)
    events = engine.watch(spec.job_id, timeout=60).events
    assert statuses(events)[-1] == "PULL_IMAGE_FAILED", describe(events)
    assert "unauthorized" in events[-1].message.lower(), events[-1].message
    assert not any(wrong in e.message for e in events)
    assert [line for line in plugin_lines(caplog) if wrong in line] == []


@pytest.mark.docker
def test_an_orphans_pull_secret_is_removed_with_it(
    bare_engines: EngineFactory,
    double: Any,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
) -> None:
    """A plugin whose state dir is lost (as after a crash that took it) leaves the job's objects, the
    pull Secret among them: the next plugin lists the job as an orphan, and destroying it removes them."""
    first = bare_engines.start()
    auth = engine_pb2.RegistryAuth(username=image_registry.username, password=image_registry.password)
    spec = private_spec(registry_images(busybox_image), "sleep 60", auth)
    first.start_job(spec)
    first.watch_until_running(spec.job_id)
    namespace = names.default_namespace(first.host_id)
    assert double.get("secrets", namespace, names.pull_secret_name(spec.job_id)) is not None
    second = bare_engines.start(host_id=first.host_id)  # the same node, another state dir
    try:
        orphans = {j.job_id: j for j in second.list_jobs()}
        assert orphans[spec.job_id].status == Status.JOB_STATUS_LOST
        second.destroy_job(spec.job_id)
        assert double.get("secrets", namespace, names.pull_secret_name(spec.job_id)) is None  # at once
        wait_for(lambda: not any(job_objects(double, namespace, spec.job_id).values()), 30, "the orphan gone")
    finally:
        bare_engines.close([second, first])


# Unit: config and manifests ---------------------------------------------------------------------


def test_the_registries_config_is_checked_without_quoting_a_password() -> None:
    parsed = engine_config.parse_settings(
        {
            "registries": [
                {"server": "https://Registry.Example.com:5000/v2/", "username": "u", "password": "pw-1"}
            ]
        }
    )
    assert parsed.registries == (pullcreds.Credentials("u", "pw-1", "registry.example.com:5000"),)
    assert "pw-1" not in repr(parsed)
    bad: list[Any] = [
        "x",
        [{"server": "a.io", "username": "u"}],
        [{"server": "a.io", "username": "u", "password": "pw-2", "email": "e"}],
        [
            {"server": "a.io", "username": "u", "password": "pw-3"},
            {"server": "A.io", "username": "v", "password": "pw-4"},
        ],
    ]
    for raw in bad:
        with pytest.raises(Exception) as caught:
            engine_config.parse_settings({"registries": raw})
        assert "[engines.kubernetes] registries" in str(caught.value)
        assert "pw-" not in str(caught.value), caught.value


def test_the_pull_secret_has_one_entry_for_the_images_registry() -> None:
    record = {"job_id": "j-1", "host_id": "0xnode", "workflow_id": "w"}
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "root", "uid": "u-1"}
    hub = manifests.pull_secret(record, "ns", owner, pullcreds.Credentials("me", "pw", "docker.io"))
    assert hub["type"] == "kubernetes.io/dockerconfigjson" and hub["metadata"]["ownerReferences"] == [owner]
    assert list(docker_config(hub)["auths"]) == ["https://index.docker.io/v1/"]
    assert pullcreds.entry_for((pullcreds.Credentials("u", "p", "ghcr.io"),), "ghcr.io/org/algo") is not None
    assert pullcreds.entry_for((pullcreds.Credentials("u", "p", "ghcr.io"),), "quay.io/org/algo") is None


# The double ----------------------------------------------------------------------------------


def _secret(name: str, kind: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "type": kind, "data": data}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_double_validates_docker_config_secrets_as_an_api_server_does(double: Any) -> None:
    core = core_api(double.url)
    namespace = f"sec-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kind = "kubernetes.io/dockerconfigjson"
    cases = [
        (_secret("no-key", kind, {"other": _b64("{}")}), 422, "data[.dockerconfigjson]: Required value"),
        (
            _secret("not-json", kind, {".dockerconfigjson": _b64("{pw-not-json")}),
            422,
            'data[.dockerconfigjson]: Invalid value: "<secret contents redacted>"',
        ),
        (_secret("not-b64", "Opaque", {"k": "***"}), 400, "illegal base64 data"),
    ]
    for body, code, text in cases:
        with pytest.raises(ApiException) as caught:
            core.create_namespaced_secret(namespace, body)
        body_text = caught.value.body or ""
        message = json.loads(body_text)["message"]
        assert caught.value.status == code and text in message, message
        assert "pw-not-json" not in body_text
    good = _secret("good", kind, {".dockerconfigjson": _b64('{"auths": {}}')})
    core.create_namespaced_secret(namespace, good)
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_secret("good", namespace, {**good, "type": "Opaque"})
    assert (
        caught.value.status == 422
        and 'type: Invalid value: "Opaque": field is immutable'
        in json.loads(caught.value.body or "{}")["message"]
    )
    core.delete_namespaced_secret("good", namespace)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_secret("good", namespace)
    assert caught.value.status == 404


def _refused(reason_of: Callable[[str], str], name: str) -> bool:
    return reason_of(name) in ("ErrImagePull", "ImagePullBackOff")


@pytest.mark.docker
def test_the_doubles_kubelet_pulls_a_private_image_only_with_the_right_secret(
    double: Any, busybox_image: str, image_registry: Registry, registry_images: Any
) -> None:
    core = core_api(double.url)
    namespace = f"pull-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    image = registry_images(busybox_image)

    def config_for(password: str) -> str:
        entry = {"username": image_registry.username, "password": password}
        return _b64(json.dumps({"auths": {f"http://{image_registry.server}/v2/": entry}}))

    kind = "kubernetes.io/dockerconfigjson"
    core.create_namespaced_secret(
        namespace, _secret("wrong", kind, {".dockerconfigjson": config_for("nope")})
    )
    core.create_namespaced_secret(
        namespace, _secret("right", kind, {".dockerconfigjson": config_for(image_registry.password)})
    )

    def create(name: str, secrets: list[str], policy: str = "IfNotPresent") -> None:
        container = {"name": "c", "image": image, "command": ["true"], "imagePullPolicy": policy}
        spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        if secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in secrets]
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})

    def waiting(name: str) -> dict[str, Any]:
        pod = double.get("pods", namespace, name)
        found = (pod.get("status") or {}).get("containerStatuses") or []
        return dict((found[0].get("state") or {}).get("waiting") or {}) if found else {}

    def refused(name: str) -> None:
        wait_for(
            partial(_refused, lambda n: str(waiting(n).get("reason") or ""), name), 30, f"{name} refused"
        )
        assert double.get("pods", namespace, name)["status"]["phase"] == "Pending"
        message = str(waiting(name).get("message") or "").lower()
        assert "unauthorized" in message or "no basic auth" in message, message

    create("none", [])
    create("wrong", ["wrong", "missing"])  # a missing secret is skipped, as the kubelet does
    refused("none")
    refused("wrong")  # the image is not on the node yet: both are refused by the registry
    create("right", ["wrong", "right"])
    double.wait_for_pod_phase(namespace, "right", ("Succeeded",), timeout=60)
    # Now on the node: IfNotPresent uses it without credentials (Kubernetes does); Always pulls again.
    create("cached", [])
    double.wait_for_pod_phase(namespace, "cached", ("Succeeded",), timeout=60)
    create("always", [], policy="Always")
    refused("always")


# A plugin restart before the pull Secret is made ----------------------------------------------


class HoldingProxy:
    """An HTTP proxy to the double that holds the creation of a job's pull Secret (never forwarding
    it): a plugin that is certainly between recording the job and making its Secret, while the test
    kills it. Everything else is forwarded, one request per connection."""

    def __init__(self, target: str) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        outer = self
        upstream = urllib.parse.urlsplit(target)

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.endswith("/secrets") and b"-pull" in body:
                    outer.held.set()
                    outer.release.wait()
                    self.send_error(503)
                    return
                connection = http.client.HTTPConnection(
                    upstream.hostname or "127.0.0.1", upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _killed_before_its_secret(
    loop: EventLoopThread, double: Any, tmp_path: Path, spec: engine_pb2.JobSpec
) -> tuple[EngineFactory, HoldingProxy, EngineProcess, engine_pb2.JobHandle]:
    """A plugin that recorded the job and was SIGKILLed while it made the job's pull Secret."""
    proxy = HoldingProxy(double.url)
    kubeconfig = write_kubeconfig(tmp_path / "via-proxy", proxy.url)
    factory = EngineFactory(k8s_target(engine_config_for(kubeconfig)), loop, tmp_path / "first")
    first = factory.start()
    handle = first.start_job(spec)
    wait_for(proxy.held.is_set, 60, "the pull Secret's creation to be held")
    first.kill()
    return factory, proxy, first, handle


@pytest.mark.docker
def test_a_restarted_plugin_makes_the_pull_secret_with_the_credentials_recover_job_hands_over(
    loop: EventLoopThread,
    double: Any,
    bare_engines: EngineFactory,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
    tmp_path: Path,
) -> None:
    auth = engine_pb2.RegistryAuth(username=image_registry.username, password=image_registry.password)
    spec = private_spec(registry_images(busybox_image), auth=auth)
    factory, proxy, first, handle = _killed_before_its_secret(loop, double, tmp_path, spec)
    try:
        assert (
            double.get("secrets", names.default_namespace(first.host_id), names.pull_secret_name(spec.job_id))
            is None
        )
        second = bare_engines.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        second.recover_job(handle, auth)
        events = second.watch(spec.job_id, timeout=60).events
        assert statuses(events)[-1] == "FINISHED", describe(events)
        assert state_files_holding(second, image_registry.password) == []
    finally:
        proxy.close()
        factory.close()


@pytest.mark.docker
def test_a_job_recovered_without_its_credentials_fails_its_pull_saying_so(
    loop: EventLoopThread,
    double: Any,
    bare_engines: EngineFactory,
    busybox_image: str,
    image_registry: Registry,
    registry_images: Any,
    tmp_path: Path,
) -> None:
    auth = engine_pb2.RegistryAuth(username=image_registry.username, password=image_registry.password)
    spec = private_spec(registry_images(busybox_image), auth=auth)
    factory, proxy, first, handle = _killed_before_its_secret(loop, double, tmp_path, spec)
    try:
        second = bare_engines.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        second.recover_job(handle)  # a node that no longer has them
        events = second.watch(spec.job_id, timeout=60).events
        assert statuses(events)[-1] == "PULL_IMAGE_FAILED", describe(events)
        assert "lost when the engine plugin restarted" in events[-1].message, events[-1].message
    finally:
        proxy.close()
        factory.close()
