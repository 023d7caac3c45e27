"""The Kubernetes API server double (tests/k8s_double) driven by the official client only.

These tests pin what the Kubernetes engine's tests rely on: the wire protocol as the real
``kubernetes`` client sees it (status codes, watch streams, selectors), and pods really running
in Docker with the statuses, logs, limits and security settings a kubelet would report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_double import LABEL_INSTANCE, ApiServerDouble
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture
def api_client(k8s_kubeconfig: Path) -> Iterator[client.ApiClient]:
    """An ApiClient configured from the double's kubeconfig, as an engine would load it."""
    api = config.new_client_from_config(config_file=str(k8s_kubeconfig), context="c2d-double")
    yield api
    api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for the test."""
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def meta(name: str, **labels: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, labels=labels or None)


def pod(
    name: str,
    image: str,
    script: str,
    *,
    labels: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    volumes: list[client.V1Volume] | None = None,
    mounts: list[client.V1VolumeMount] | None = None,
    grace: int = 1,
    **spec: Any,
) -> client.V1Pod:
    """A one-container ``restartPolicy: Never`` pod running ``sh -c script``."""
    container = client.V1Container(
        name="main",
        image=image,
        image_pull_policy="IfNotPresent",  # the double never pulls anyway
        command=["sh", "-c", script],
        resources=client.V1ResourceRequirements(limits=limits) if limits else None,
        volume_mounts=mounts,
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=grace,
            containers=[container],
            volumes=volumes,
            **spec,
        ),
    )


def wait_phase(
    core: client.CoreV1Api, ns: str, name: str, phases: tuple[str, ...], timeout: float = 30
) -> client.V1Pod:
    """Follow the pod with a watch (no polling) until it reaches one of ``phases``."""
    found = core.read_namespaced_pod(name, ns)
    if found.status.phase in phases:
        return found
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        ns,
        field_selector=f"metadata.name={name}",
        resource_version=found.metadata.resource_version,
        timeout_seconds=int(timeout),
    )
    for event in stream:
        if event["object"].status.phase in phases:
            return event["object"]
    raise AssertionError(f"pod {ns}/{name} did not reach {phases} in {timeout} s")


def wait_until(predicate: Any, timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# the API -------------------------------------------------------------------------------------


def test_discovery_and_version(api_client: client.ApiClient) -> None:
    assert client.VersionApi(api_client).get_code().git_version == "v1.31.0-c2d-double"
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert "networking.k8s.io" in groups
    core_resources = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"pods", "pods/log", "pods/status", "namespaces", "nodes", "resourcequotas"} <= core_resources
    networking = {r.name for r in client.NetworkingV1Api(api_client).get_api_resources().resources}
    assert "networkpolicies" in networking


def test_node_reports_the_configured_allocatable(core: client.CoreV1Api) -> None:
    nodes = core.list_node().items
    assert len(nodes) == 1
    assert nodes[0].status.allocatable == {
        "cpu": "4",
        "memory": "8Gi",
        "ephemeral-storage": "20Gi",
        "pods": "110",
        "nvidia.com/gpu": "2",
    }
    assert nodes[0].status.conditions[0].type == "Ready"


def test_crud_and_error_statuses(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("cm"), data={"k": "v"}))
    assert created.metadata.uid and int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("cm")))
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", ns)
    body = status_of(missing.value)
    assert missing.value.status == 404
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["details"] == {"name": "nope", "kind": "configmaps"}

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("no-such-ns", client.V1ConfigMap(metadata=meta("cm")))
    assert (
        no_namespace.value.status == 404
        and 'namespaces "no-such-ns" not found' in status_of(no_namespace.value)["message"]
    )

    invalid_pod = client.V1Pod(metadata=meta("bad"), spec=client.V1PodSpec(containers=[]))
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(ns, invalid_pod)
    assert invalid.value.status == 422 and status_of(invalid.value)["reason"] == "Invalid"
    assert "spec.containers: Required value" in status_of(invalid.value)["message"]

    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("cm2", job="did:op:123")))
    assert bad_label.value.status == 422

    created.data = {"k": "v2"}
    replaced = core.replace_namespaced_config_map("cm", ns, created)
    assert replaced.data == {"k": "v2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cm", ns, created)  # still carries the old resourceVersion
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"

    deleted = core.delete_namespaced_config_map("cm", ns)  # a Status, as a dict: client 37 types it "object"
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "cm"
    with pytest.raises(ApiException) as gone:
        core.delete_namespaced_config_map("cm", ns)
    assert gone.value.status == 404


def test_patch_flavours(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("cm", a="1"), data={"x": "1"}))
    strategic = core.patch_namespaced_config_map("cm", ns, {"metadata": {"labels": {"b": "2"}}})
    assert strategic.metadata.labels == {"a": "1", "b": "2"}
    merge = {"metadata": {"labels": {"a": None}}, "data": {"y": "2"}}
    merged = core.patch_namespaced_config_map("cm", ns, merge, _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"b": "2"} and merged.data == {"x": "1", "y": "2"}
    json_patched = core.patch_namespaced_config_map(
        "cm", ns, [{"op": "replace", "path": "/data/x", "value": "9"}]
    )
    assert json_patched.data["x"] == "9"


def test_label_and_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, labels in {
        "a": {"app": "x", "tier": "web"},
        "b": {"app": "x", "tier": "db"},
        "c": {"app": "y"},
        "d": {},
    }.items():
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta(name, **labels)))

    def names(**kwargs: Any) -> list[str]:
        return [item.metadata.name for item in core.list_namespaced_config_map(ns, **kwargs).items]

    assert names(label_selector="app=x") == ["a", "b"]
    assert names(label_selector="app==x,tier!=db") == ["a"]
    assert names(label_selector="tier in (web, db)") == ["a", "b"]
    assert names(label_selector="app notin (x)") == ["c", "d"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="metadata.name!=c,metadata.namespace=" + ns) == ["a", "b", "d"]
    page = core.list_namespaced_config_map(ns, limit=3)
    assert len(page.items) == 3 and page.metadata._continue
    assert [
        i.metadata.name
        for i in core.list_namespaced_config_map(ns, limit=3, _continue=page.metadata._continue).items
    ] == ["d"]
    with pytest.raises(ApiException) as bad:
        names(label_selector="app in x")
    assert bad.value.status == 400
    with pytest.raises(ApiException) as unsupported:
        names(field_selector="spec.foo=1")
    assert (
        unsupported.value.status == 400
        and "field label not supported" in status_of(unsupported.value)["message"]
    )


def test_deletecollection_by_label(core: client.CoreV1Api, ns: str) -> None:
    for name, role in (("a", "tmp"), ("b", "tmp"), ("c", "keep")):
        core.create_namespaced_secret(
            ns, client.V1Secret(metadata=meta(name, role=role), string_data={"k": name})
        )
    core.delete_collection_namespaced_secret(ns, label_selector="role=tmp")
    remaining = core.list_namespaced_secret(ns).items
    assert [s.metadata.name for s in remaining] == ["c"]
    assert remaining[0].data == {"k": "Yw=="}  # stringData folded into base64 data


def test_watch_from_resource_version_and_410_after_compaction(
    core: client.CoreV1Api, ns: str, k8s_api: ApiServerDouble
) -> None:
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("w", app="x")))
    core.patch_namespaced_config_map("w", ns, {"data": {"k": "v"}})
    core.patch_namespaced_config_map("w", ns, {"metadata": {"labels": {"app": "other"}}})
    core.delete_namespaced_config_map("w", ns)

    def events(**kwargs: Any) -> list[tuple[str, str]]:
        stream = watch.Watch().stream(
            core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=1, **kwargs
        )
        return [(e["type"], e["object"].metadata.resource_version) for e in stream]

    seen = events()
    assert [kind for kind, _ in seen] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    versions = [int(rv) for _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == 4
    # Selected by label: leaving the selection looks like a deletion, as with a real watch cache.
    assert [kind for kind, _ in events(label_selector="app=x")] == ["ADDED", "MODIFIED", "DELETED"]

    k8s_api.compact()
    with pytest.raises(ApiException) as expired:
        events()
    assert expired.value.status == 410


def test_watch_without_resource_version_lists_first(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("one")))
    stream = watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("ADDED", "one")]


def test_bearer_token_is_required_when_configured(docker_client: Any, tmp_path: Path) -> None:
    with ApiServerDouble(docker_client, token="s3cret") as double:
        anonymous = client.Configuration(host=double.url)
        with client.ApiClient(anonymous) as api, pytest.raises(ApiException) as refused:
            client.CoreV1Api(api).list_namespace()
        assert refused.value.status == 401 and status_of(refused.value)["reason"] == "Unauthorized"
        kubeconfig = double.write_kubeconfig(tmp_path / "kc", context="tok")
        with config.new_client_from_config(config_file=str(kubeconfig), context="tok") as api:
            assert "default" in [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]


def test_kubeconfig_works_from_another_process(k8s_kubeconfig: Path) -> None:
    script = (
        "import sys; from kubernetes import client, config\n"
        "config.load_kube_config(config_file=sys.argv[1], context='c2d-double')\n"
        "print(sorted(n.metadata.name for n in client.CoreV1Api().list_namespace().items))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(k8s_kubeconfig)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "'default'" in out.stdout and "'kube-system'" in out.stdout


# pods in Docker ------------------------------------------------------------------------------


def test_pod_succeeds_with_logs_and_status_events(
    core: client.CoreV1Api, ns: str, busybox_image: str
) -> None:
    created = core.create_namespaced_pod(
        ns, pod("hello", busybox_image, "echo to-stderr >&2; sleep 0.2; echo hello; echo bye")
    )
    assert created.status.phase == "Pending" and created.spec.restart_policy == "Never"
    phases = []
    stream = watch.Watch().stream(
        core.list_namespaced_pod, ns, resource_version=created.metadata.resource_version, timeout_seconds=30
    )
    for event in stream:
        phases.append(event["object"].status.phase)
        if event["object"].status.phase == "Succeeded":
            break
    assert phases[-1] == "Succeeded" and phases.count("Succeeded") == 1
    done = core.read_namespaced_pod("hello", ns)
    assert done.spec.node_name == "c2d-double-node"
    terminated = done.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert terminated.started_at is not None and terminated.finished_at is not None
    assert done.status.start_time is not None
    log = core.read_namespaced_pod_log("hello", ns, container="main")
    assert log.split() == ["to-stderr", "hello", "bye"]
    assert core.read_namespaced_pod_log("hello", ns, tail_lines=1) == "bye\n"
    assert core.read_namespaced_pod_log("hello", ns, limit_bytes=3) == "to-"


def test_pod_exit_code_is_reported(core: client.CoreV1Api, ns: str, busybox_image: str) -> None:
    core.create_namespaced_pod(ns, pod("fails", busybox_image, "exit 3"))
    failed = wait_phase(core, ns, "fails", ("Succeeded", "Failed"))
    assert failed.status.phase == "Failed"
    terminated = failed.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


def test_memory_limit_is_an_oom_kill(core: client.CoreV1Api, ns: str, python_image: str) -> None:
    script = "python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'"
    core.create_namespaced_pod(ns, pod("hog", python_image, script, limits={"memory": "64Mi", "cpu": "1"}))
    failed = wait_phase(core, ns, "hog", ("Succeeded", "Failed"))
    terminated = failed.status.container_statuses[0].state.terminated
    assert failed.status.phase == "Failed"
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_active_deadline_fails_the_pod(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    core.create_namespaced_pod(ns, pod("slow", busybox_image, "sleep 30", active_deadline_seconds=1))
    failed = wait_phase(core, ns, "slow", ("Succeeded", "Failed"))
    assert failed.status.phase == "Failed" and failed.status.reason == "DeadlineExceeded"
    assert "deadline" in failed.status.message
    wait_until(
        lambda: "terminated" in k8s_api.get("pods", ns, "slow")["status"]["containerStatuses"][0]["state"],
        what="the container killed",
    )


def test_pvc_is_shared_by_sequential_pods(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    claim = client.V1PersistentVolumeClaim(
        metadata=meta("work"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    core.create_namespaced_persistent_volume_claim(ns, claim)
    wait_until(
        lambda: core.read_namespaced_persistent_volume_claim("work", ns).status.phase == "Bound",
        what="PVC bound",
    )
    volume = [
        client.V1Volume(
            name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="work")
        )
    ]
    mount = [client.V1VolumeMount(name="data", mount_path="/data")]
    as_user = client.V1PodSecurityContext(run_as_user=1000, run_as_group=1000)
    core.create_namespaced_pod(
        ns,
        pod(
            "writer",
            busybox_image,
            "echo shared > /data/out.txt",
            volumes=volume,
            mounts=mount,
            security_context=as_user,
        ),
    )
    assert wait_phase(core, ns, "writer", ("Succeeded", "Failed")).status.phase == "Succeeded"
    core.create_namespaced_pod(
        ns, pod("reader", busybox_image, "cat /data/out.txt", volumes=volume, mounts=mount)
    )
    assert wait_phase(core, ns, "reader", ("Succeeded", "Failed")).status.phase == "Succeeded"
    assert core.read_namespaced_pod_log("reader", ns) == "shared\n"
    path = k8s_api.pvc_path(ns, "work")
    assert (path / "out.txt").stat().st_uid == 1000

    core.delete_namespaced_persistent_volume_claim("work", ns)
    wait_until(lambda: not path.exists(), what="the claim's directory removed")


def test_network_policy_denying_egress_means_no_network(
    core: client.CoreV1Api,
    api_client: client.ApiClient,
    ns: str,
    busybox_image: str,
    k8s_api: ApiServerDouble,
) -> None:
    policy = client.V1NetworkPolicy(
        metadata=meta("deny-egress"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels={"role": "algo"}), policy_types=["Egress"]
        ),
    )
    client.NetworkingV1Api(api_client).create_namespaced_network_policy(ns, policy)
    core.create_namespaced_pod(
        ns, pod("isolated", busybox_image, "ls /sys/class/net", labels={"role": "algo"})
    )
    core.create_namespaced_pod(ns, pod("connected", busybox_image, "ls /sys/class/net"))
    for name in ("isolated", "connected"):
        wait_phase(core, ns, name, ("Succeeded", "Failed"))
    assert core.read_namespaced_pod_log("isolated", ns).split() == ["lo"]
    assert "eth0" in core.read_namespaced_pod_log("connected", ns).split()
    (isolated,) = k8s_api.containers_for(ns, "isolated")
    assert isolated.attrs["HostConfig"]["NetworkMode"] == "none"


def test_security_context_is_applied(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    secure = pod("secure", busybox_image, "id -u; id -G; touch /root-file 2>/dev/null || echo read-only")
    secure.spec.security_context = client.V1PodSecurityContext(
        run_as_user=1000, run_as_group=1000, fs_group=2000, run_as_non_root=True
    )
    secure.spec.containers[0].security_context = client.V1SecurityContext(
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
    )
    core.create_namespaced_pod(ns, secure)
    assert wait_phase(core, ns, "secure", ("Succeeded", "Failed")).status.phase == "Succeeded"
    uid, groups, root_fs = core.read_namespaced_pod_log("secure", ns).splitlines()
    assert uid == "1000" and "2000" in groups.split() and root_fs == "read-only"
    (container,) = k8s_api.containers_for(ns, "secure")
    host = container.attrs["HostConfig"]
    assert (
        host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    )
    assert container.attrs["Config"]["User"] == "1000:1000"


def test_run_as_non_root_refuses_a_root_image(core: client.CoreV1Api, ns: str, busybox_image: str) -> None:
    rooted = pod(
        "rooted", busybox_image, "true", security_context=client.V1PodSecurityContext(run_as_non_root=True)
    )
    core.create_namespaced_pod(ns, rooted)

    def waiting() -> Any:
        statuses = core.read_namespaced_pod("rooted", ns).status.container_statuses or []
        return (
            statuses
            and statuses[0].state.waiting
            and statuses[0].state.waiting.reason == "CreateContainerConfigError"
            and statuses[0].state.waiting
        )

    state = wait_until(waiting, what="CreateContainerConfigError")
    assert "runAsNonRoot and image will run as root" in state.message
    assert core.read_namespaced_pod("rooted", ns).status.phase == "Pending"


def test_env_and_config_volumes(core: client.CoreV1Api, ns: str, busybox_image: str) -> None:
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=meta("settings"), data={"mode": "fast", "file.txt": "from-cm"})
    )
    core.create_namespaced_secret(ns, client.V1Secret(metadata=meta("creds"), string_data={"token": "t0k"}))
    env = [
        client.V1EnvVar(
            name="MODE",
            value_from=client.V1EnvVarSource(
                config_map_key_ref=client.V1ConfigMapKeySelector(name="settings", key="mode")
            ),
        ),
        client.V1EnvVar(
            name="TOKEN",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="creds", key="token")
            ),
        ),
        client.V1EnvVar(
            name="POD",
            value_from=client.V1EnvVarSource(
                field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
            ),
        ),
        client.V1EnvVar(name="BOTH", value="$(MODE)-$(POD)"),
    ]
    volumes = [client.V1Volume(name="cfg", config_map=client.V1ConfigMapVolumeSource(name="settings"))]
    mounts = [client.V1VolumeMount(name="cfg", mount_path="/etc/cfg")]
    spec = pod(
        "envy",
        busybox_image,
        'echo "$MODE $TOKEN $POD $BOTH"; cat /etc/cfg/file.txt',
        volumes=volumes,
        mounts=mounts,
    )
    spec.spec.containers[0].env = env
    core.create_namespaced_pod(ns, spec)
    assert wait_phase(core, ns, "envy", ("Succeeded", "Failed")).status.phase == "Succeeded"
    assert core.read_namespaced_pod_log("envy", ns).splitlines() == ["fast t0k envy fast-envy", "from-cm"]


def test_init_containers_run_first_and_logs_follow(
    core: client.CoreV1Api, ns: str, busybox_image: str
) -> None:
    shared = [client.V1VolumeMount(name="work", mount_path="/work")]
    spec = pod(
        "staged",
        busybox_image,
        "cat /work/f; for i in 1 2 3; do echo line-$i; sleep 0.2; done",
        mounts=shared,
    )
    spec.spec.volumes = [client.V1Volume(name="work", empty_dir=client.V1EmptyDirVolumeSource())]
    spec.spec.init_containers = [
        client.V1Container(
            name="prepare",
            image=busybox_image,
            command=["sh", "-c", "echo prepared > /work/f"],
            volume_mounts=shared,
        )
    ]
    core.create_namespaced_pod(ns, spec)
    wait_phase(core, ns, "staged", ("Running", "Succeeded", "Failed"))
    lines = list(
        watch.Watch().stream(core.read_namespaced_pod_log, "staged", ns, container="main", follow=True)
    )
    assert lines == ["prepared", "line-1", "line-2", "line-3"]
    done = wait_phase(core, ns, "staged", ("Succeeded", "Failed"))
    assert done.status.phase == "Succeeded"
    assert done.status.init_container_statuses[0].state.terminated.reason == "Completed"


def test_missing_image_is_never_pulled(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod("ghost", "c2d-no-such-image:0", "true"))

    def reason() -> str | None:
        statuses = core.read_namespaced_pod("ghost", ns).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff") else None

    assert wait_until(reason, what="ErrImagePull")
    with pytest.raises(ApiException) as waiting_log:
        core.read_namespaced_pod_log("ghost", ns)
    assert waiting_log.value.status == 400 and "waiting to start" in status_of(waiting_log.value)["message"]


def test_unschedulable_pod_stays_pending(core: client.CoreV1Api, ns: str, busybox_image: str) -> None:
    core.create_namespaced_pod(ns, pod("huge", busybox_image, "true", limits={"cpu": "8"}))

    def condition() -> Any:
        for item in core.read_namespaced_pod("huge", ns).status.conditions or []:
            if item.type == "PodScheduled" and item.status == "False":
                return item
        return None

    scheduled = wait_until(condition, what="PodScheduled=False")
    assert scheduled.reason == "Unschedulable" and "Insufficient cpu" in scheduled.message


def test_resource_quota_is_enforced(core: client.CoreV1Api, ns: str, busybox_image: str) -> None:
    hard = {
        "limits.memory": "256Mi",
        "requests.cpu": "1",
        "pods": "2",
        "requests.nvidia.com/gpu": "1",
        "persistentvolumeclaims": "1",
    }
    core.create_namespaced_resource_quota(
        ns, client.V1ResourceQuota(metadata=meta("q"), spec=client.V1ResourceQuotaSpec(hard=hard))
    )
    core.create_namespaced_pod(
        ns, pod("fits", busybox_image, "sleep 5", limits={"memory": "128Mi", "cpu": "500m"})
    )
    with pytest.raises(ApiException) as exceeded:
        core.create_namespaced_pod(
            ns, pod("big", busybox_image, "true", limits={"memory": "200Mi", "cpu": "500m"})
        )
    message = status_of(exceeded.value)["message"]
    assert exceeded.value.status == 403 and status_of(exceeded.value)["reason"] == "Forbidden"
    assert (
        "exceeded quota: q, requested: limits.memory=200Mi, used: limits.memory=128Mi, limited: limits.memory=256Mi"
        in message
    )
    with pytest.raises(ApiException) as gpus:
        core.create_namespaced_pod(
            ns,
            pod(
                "gpus", busybox_image, "true", limits={"memory": "8Mi", "cpu": "100m", "nvidia.com/gpu": "2"}
            ),
        )
    assert gpus.value.status == 403 and "requests.nvidia.com/gpu=2" in status_of(gpus.value)["message"]
    with pytest.raises(ApiException) as unspecified:
        core.create_namespaced_pod(ns, pod("bare", busybox_image, "true"))
    assert (
        unspecified.value.status == 403
        and "must specify limits.memory" in status_of(unspecified.value)["message"]
    )

    def used() -> dict[str, str] | None:
        status = core.read_namespaced_resource_quota("q", ns).status
        return status.used if status and status.used and status.used.get("pods") == "1" else None

    assert wait_until(used, what="quota status")["limits.memory"] == "128Mi"


def test_owner_references_cascade(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    owner = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("owner")))
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    dependent = pod("dependent", busybox_image, "sleep 30")
    dependent.metadata.owner_references = [reference]
    created = core.create_namespaced_pod(ns, dependent)
    grandchild = client.V1Secret(metadata=meta("grandchild"))
    grandchild.metadata.owner_references = [
        client.V1OwnerReference(api_version="v1", kind="Pod", name="dependent", uid=created.metadata.uid)
    ]
    core.create_namespaced_secret(ns, grandchild)
    wait_phase(core, ns, "dependent", ("Running",))
    assert k8s_api.containers_for(ns, "dependent")

    core.delete_namespaced_config_map("owner", ns)
    k8s_api.wait_gone("pods", ns, "dependent", timeout=15)
    k8s_api.wait_gone("secrets", ns, "grandchild", timeout=15)
    wait_until(lambda: not k8s_api.containers_for(ns, "dependent"), what="the dependent's containers removed")


def test_foreground_deletion_waits_for_dependents(
    core: client.CoreV1Api, ns: str, k8s_api: ApiServerDouble
) -> None:
    owner = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("owner")))
    child = client.V1ConfigMap(metadata=meta("child"))
    child.metadata.owner_references = [
        client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    ]
    core.create_namespaced_config_map(ns, child)
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Foreground")
    k8s_api.wait_gone("configmaps", ns, "child", timeout=10)
    k8s_api.wait_gone("configmaps", ns, "owner", timeout=10)


def test_graceful_pod_deletion(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    script = "trap 'echo stopping; exit 0' TERM; while true; do sleep 0.1; done"
    core.create_namespaced_pod(ns, pod("graceful", busybox_image, script, grace=10))
    wait_phase(core, ns, "graceful", ("Running",))
    deleting = core.delete_namespaced_pod("graceful", ns, grace_period_seconds=5)
    assert (
        deleting.metadata.deletion_timestamp is not None
        and deleting.metadata.deletion_grace_period_seconds == 5
    )
    stream = watch.Watch().stream(
        core.list_namespaced_pod, ns, resource_version=deleting.metadata.resource_version, timeout_seconds=10
    )
    last = None
    for event in stream:
        last = event
        if event["type"] == "DELETED":
            break
    assert last is not None and last["type"] == "DELETED"
    final = last["object"].status.container_statuses[0].state.terminated
    assert final.exit_code == 0  # the trap ran: SIGTERM first
    assert not k8s_api.containers_for(ns, "graceful")


def test_namespace_deletion_cleans_everything(
    core: client.CoreV1Api, ns: str, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("cm")))
    claim = client.V1PersistentVolumeClaim(
        metadata=meta("claim"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    core.create_namespaced_persistent_volume_claim(ns, claim)
    volume = [
        client.V1Volume(
            name="d", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="claim")
        )
    ]
    core.create_namespaced_pod(
        ns,
        pod(
            "runner",
            busybox_image,
            "sleep 30",
            volumes=volume,
            mounts=[client.V1VolumeMount(name="d", mount_path="/d")],
        ),
    )
    wait_phase(core, ns, "runner", ("Running",))
    claim_dir = k8s_api.pvc_path(ns, "claim")

    terminating = core.delete_namespace(ns)  # the Namespace, as a dict: client 37 types it "object"
    assert terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=meta("late")))
    assert refused.value.status == 403 and "being terminated" in status_of(refused.value)["message"]
    k8s_api.wait_gone("namespaces", "", ns, timeout=20)
    assert not k8s_api.objects("pods", ns) and not k8s_api.objects("configmaps", ns)
    assert not k8s_api.containers_for(ns, "runner")
    wait_until(lambda: not claim_dir.exists(), what="the claim's directory removed")


def test_close_removes_every_container(docker_client: Any, busybox_image: str, tmp_path: Path) -> None:
    double = ApiServerDouble(docker_client)
    double.start()
    work_dir = double.work_dir
    with config.new_client_from_config(config_file=str(double.write_kubeconfig(tmp_path / "kc"))) as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod("default", pod("lingering", busybox_image, "sleep 60", grace=30))
        empty_dir = [
            client.V1Volume(
                name="m", empty_dir=client.V1EmptyDirVolumeSource(medium="Memory", size_limit="1Mi")
            )
        ]
        core.create_namespaced_pod(
            "default",
            pod(
                "tmpfs",
                busybox_image,
                "sleep 60",
                volumes=empty_dir,
                mounts=[client.V1VolumeMount(name="m", mount_path="/m")],
            ),
        )
        wait_phase(core, "default", "lingering", ("Running",))
        wait_phase(core, "default", "tmpfs", ("Running",))
    label = f"{LABEL_INSTANCE}={double.instance_id}"
    assert docker_client.volumes.list(filters={"label": label})
    double.close()
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
    assert not work_dir.exists()


def test_a_client_killed_mid_watch_changes_nothing(
    core: client.CoreV1Api, k8s_kubeconfig: Path, busybox_image: str, k8s_api: ApiServerDouble
) -> None:
    """An engine SIGKILLed while it watches: its pod runs on, a new client finds it by label."""
    script = (
        "import sys; from kubernetes import client, config, watch\n"
        "config.load_kube_config(config_file=sys.argv[1], context='c2d-double')\n"
        "v1 = client.CoreV1Api()\n"
        f"v1.create_namespaced_pod('default', {{'metadata': {{'name': 'orphan', 'labels': {{'job': 'j1'}}}},"
        f" 'spec': {{'restartPolicy': 'Never', 'containers': [{{'name': 'main', 'image': '{busybox_image}',"
        " 'command': ['sh', '-c', 'sleep 1; echo done']}]}})\n"
        "print('watching', flush=True)\n"
        "for event in watch.Watch().stream(v1.list_namespaced_pod, 'default'): pass\n"
    )
    engine = subprocess.Popen(
        [sys.executable, "-c", script, str(k8s_kubeconfig)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert engine.stdout is not None and engine.stdout.readline().strip() == "watching"
    finally:
        engine.kill()
        engine.wait()
    (found,) = core.list_namespaced_pod("default", label_selector="job=j1").items
    assert (
        wait_phase(core, "default", found.metadata.name, ("Succeeded", "Failed")).status.phase == "Succeeded"
    )
    assert core.read_namespaced_pod_log("orphan", "default") == "done\n"
