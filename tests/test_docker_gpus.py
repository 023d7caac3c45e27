"""AMD and Intel GPUs on the docker engine: found in sysfs, offered by PCI address, passed per device node.

Detection reads fixture trees laid out as the kernel lays out sysfs
(``/sys/class/drm/cardN`` links into ``/sys/devices/.../<PCI address>``),
with a matching ``dev/`` and ``etc/group``; the container arguments are
built by the same pure functions StartJob uses. No GPU and no Docker needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit.fingerprint import Usage
from c2d_docker_engine import config as engine_config
from c2d_docker_engine import containers, drm, fingerprint, gpus, jobspec
from c2d_docker_engine.errors import EngineError

REPO_ROOT = Path(__file__).resolve().parent.parent
PROBE = REPO_ROOT / "plugins" / "docker_engine" / "scripts" / "gpu_probe.py"
GIB = 1 << 30
AMD_ADDRESS = "0000:03:00.0"
INTEL_ADDRESS = "0000:00:02.0"
GROUP_FILE = "root:x:0:\nvideo:x:44:alice\nrender:x:109:\nusers:x:100:\n"
PATHS = containers.HostPaths(data=Path("/state/jobs/j/data"), scratch=Path("/state/jobs/j/scratch"))


@dataclass
class Host:
    """A fixture machine: ``root`` holds sys/, dev/ and etc/ as a real host does."""

    root: Path

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    def card(
        self,
        number: int,
        address: str,
        vendor: str,
        device: str,
        render: int | None,
        attributes: dict[str, str] | None = None,
    ) -> Path:
        """A PCI GPU with its card node (and render node), linked from class/drm as the kernel does."""
        pci = self.sys / "devices" / "pci0000:00" / address
        (pci / "drm" / f"card{number}").mkdir(parents=True)
        files = {
            "vendor": f"{vendor}\n",
            "device": f"{device}\n",
            "uevent": f"DRIVER=gpu\nPCI_CLASS=30000\nPCI_ID={vendor[2:]}:{device[2:]}\nPCI_SLOT_NAME={address}\n",
            **(attributes or {}),
        }
        for name, text in files.items():
            (pci / name).write_text(text)
        self._link(f"card{number}", pci / "drm" / f"card{number}", pci)
        self._node(f"dri/card{number}")
        if render is not None:
            (pci / "drm" / f"renderD{render}").mkdir()
            self._link(f"renderD{render}", pci / "drm" / f"renderD{render}", pci)
            self._node(f"dri/renderD{render}")
        return pci

    def connector(self, name: str, card: int) -> None:
        """A display connector (``card0-HDMI-A-1``): in class/drm, but no card of its own."""
        target = self.sys / "devices" / "connectors" / name
        target.mkdir(parents=True)
        (target / "status").write_text("disconnected\n")
        (self.sys / "class" / "drm").mkdir(parents=True, exist_ok=True)
        (self.sys / "class" / "drm" / name).symlink_to(target)

    def kfd(self) -> None:
        self._node("kfd")

    def groups(self, text: str = GROUP_FILE) -> None:
        (self.root / "etc").mkdir(exist_ok=True)
        (self.root / "etc" / "group").write_text(text)

    def _link(self, name: str, node: Path, pci: Path) -> None:
        drm_class = self.sys / "class" / "drm"
        drm_class.mkdir(parents=True, exist_ok=True)
        (drm_class / name).symlink_to(node)
        (node / "device").symlink_to(pci)

    def _node(self, name: str) -> None:
        path = self.dev / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()  # a stand-in: detection only checks the node exists


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "host")


def amd_card(host: Host, number: int = 1, address: str = AMD_ADDRESS, render: int = 128) -> Path:
    host.kfd()
    return host.card(
        number,
        address,
        "0x1002",
        "0x740f",
        render,
        {"product_name": "AMD Instinct MI210\n", "mem_info_vram_total": f"{64 * GIB}\n"},
    )


def intel_card(host: Host, number: int = 0, render: int = 128) -> Path:
    return host.card(number, INTEL_ADDRESS, "0x8086", "0x46a6", render)


def settings(host: Host, **overrides: Any) -> drm.SysfsSettings:
    return drm.SysfsSettings(host_root=str(host.root), **overrides)


# Detection ------------------------------------------------------------------------------------


def test_an_amd_card_is_one_gpu_with_its_own_nodes_kfd_and_the_groups(host: Host) -> None:
    amd_card(host)
    host.groups()
    (gpu,) = drm.detect(settings(host))
    assert gpu == gpus.Gpu(
        id=AMD_ADDRESS,
        vendor="amd",
        model="AMD Instinct MI210",
        memory_gib=64.0,
        nodes=("/dev/dri/card1", "/dev/dri/renderD128", "/dev/kfd"),
        groups=("44", "109"),
    )


def test_an_intel_igpu_gets_its_card_and_render_node_and_a_pci_id_for_a_model(host: Host) -> None:
    intel_card(host)
    host.groups()
    (gpu,) = drm.detect(settings(host))
    assert (gpu.id, gpu.vendor, gpu.model, gpu.memory_gib) == (INTEL_ADDRESS, "intel", "PCI 8086:46a6", 0.0)
    assert gpu.nodes == ("/dev/dri/card0", "/dev/dri/renderD128") and gpu.groups == ("44", "109")


def test_a_machine_with_both_lists_each_card_once_in_card_order_and_leaves_nvidia_to_nvml(host: Host) -> None:
    intel_card(host, number=0, render=128)
    amd_card(host, number=1, render=129)
    host.card(2, "0000:41:00.0", "0x10de", "0x2330", 130)  # an H100: NVML's, not a DRM device here
    host.card(3, "0000:05:00.0", "0x1a03", "0x2000", None)  # a BMC's display controller
    host.connector("card0-HDMI-A-1", 0)
    host.groups()
    found = drm.detect(settings(host))
    assert [(g.id, g.vendor, g.nodes) for g in found] == [
        (INTEL_ADDRESS, "intel", ("/dev/dri/card0", "/dev/dri/renderD128")),
        (AMD_ADDRESS, "amd", ("/dev/dri/card1", "/dev/dri/renderD129", "/dev/kfd")),
    ]
    assert [g.id for g in drm.detect(settings(host, vendors=("amd",)))] == [AMD_ADDRESS]
    assert drm.detect(settings(host, vendors=())) == ()


# Each spoils the AMD card (its PCI folder given) of a machine that also has a sound Intel iGPU.
BROKEN = {
    "vendor missing": (lambda pci: (pci / "vendor").unlink(), "cannot read"),
    "vendor unreadable": (lambda pci: ((pci / "vendor").unlink(), (pci / "vendor").mkdir()), "cannot read"),
    "vendor garbage": (lambda pci: (pci / "vendor").write_text("banana\n"), "not a PCI id"),
    "device missing": (lambda pci: (pci / "device").unlink(), "cannot read"),
    "uevent missing": (lambda pci: (pci / "uevent").unlink(), "cannot read"),
    "no PCI address": (lambda pci: (pci / "uevent").write_text("DRIVER=amdgpu\n"), "no PCI_SLOT_NAME"),
    "no render node": (
        lambda pci: ((pci / "drm" / "renderD129" / "device").unlink(), (pci / "drm" / "renderD129").rmdir()),
        "no render node",
    ),
    "render node gone from /dev": (
        lambda pci: (pci.parents[3] / "dev" / "dri" / "renderD129").unlink(),
        "/dev/dri/renderD129 does not exist",
    ),
    "no /dev/kfd": (lambda pci: (pci.parents[3] / "dev" / "kfd").unlink(), "/dev/kfd does not exist"),
}


@pytest.mark.parametrize("damage", sorted(BROKEN))
def test_a_card_with_something_missing_is_skipped_with_the_reason_and_nothing_invented(
    host: Host, damage: str
) -> None:
    intel_card(host, number=0, render=128)
    broken = amd_card(host, number=1, render=129)
    host.groups()
    spoil, words = BROKEN[damage]
    spoil(broken)
    with capture_logs() as logs:
        found = drm.detect(settings(host))
    assert [g.id for g in found] == [INTEL_ADDRESS]
    (skipped,) = [e for e in logs if e["event"] == "GPU skipped"]
    assert skipped["card"].endswith("card1") and words in skipped["reason"]


def test_no_drm_class_means_no_gpus_and_says_so(host: Host) -> None:
    with capture_logs() as logs:
        assert drm.detect(settings(host)) == ()
    assert [e["event"] for e in logs] == ["no DRM devices in sysfs"]


def test_groups_are_the_hosts_gids_a_missing_one_left_out_and_names_kept_without_a_group_file(
    tmp_path: Path,
) -> None:
    group_file = tmp_path / "group"
    group_file.write_text("video:x:44:\nbroken line\nrender:x:not-a-number:\n")
    with capture_logs() as logs:
        assert drm.group_ids(["video", "render", "993", "video"], group_file) == ("44", "993")
    assert [(e["event"], e["group"]) for e in logs] == [("GPU group not on this host, not added", "render")]
    assert drm.group_ids(["video", "render"], tmp_path / "absent") == ("video", "render")


# The container -------------------------------------------------------------------------------


def environment(found: tuple[gpus.Gpu, ...]) -> engine_config.EnvironmentConfig:
    settings = engine_config.parse_settings({"environments": [{"id": "gpu", "gpus": "auto"}]})
    machine = engine_config.MachineSize(cpu=8, ram_gib=32, disk_gib=100, gpus=found)
    (env,) = engine_config.resolve(settings, machine)
    return env


def job(*device_ids: str) -> engine_pb2.JobSpec:
    return engine_pb2.JobSpec(
        job_id="j",
        workflow_id="wf",
        environment_id="gpu",
        container=engine_pb2.Container(image="rocm/pytorch", tag="1", command="python train.py"),
        resources=[
            common_pb2.GrantedResource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, amount=2),
            common_pb2.GrantedResource(
                id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, amount=len(device_ids), device_ids=device_ids
            ),
        ],
    )


def algorithm_kwargs(env: engine_config.EnvironmentConfig, spec: engine_pb2.JobSpec) -> dict[str, Any]:
    """As the driver builds it: from spec.json as written to disk and read back."""
    record = jobspec.build_spec(spec, engine_config.DockerSettings(), env, "node", "loop-ext4", None)
    return containers.algorithm_kwargs(json.loads(json.dumps(record)), PATHS, "sha256:img")


def two_amd_gpus_and_an_igpu(host: Host) -> tuple[gpus.Gpu, ...]:
    intel_card(host, number=0, render=128)
    amd_card(host, number=1, render=129)
    amd_card(host, number=2, address="0000:c3:00.0", render=130)
    host.groups()
    return drm.detect(settings(host))


def test_a_stage_granted_one_amd_gpu_gets_exactly_its_nodes_kfd_and_the_groups(host: Host) -> None:
    env = environment(two_amd_gpus_and_an_igpu(host))
    assert env.gpu_ids == (INTEL_ADDRESS, AMD_ADDRESS, "0000:c3:00.0")
    kwargs = algorithm_kwargs(env, job("0000:c3:00.0"))
    assert kwargs["devices"] == [
        "/dev/dri/card2:/dev/dri/card2:rwm",
        "/dev/dri/renderD130:/dev/dri/renderD130:rwm",
        "/dev/kfd:/dev/kfd:rwm",
    ]
    assert kwargs["group_add"] == ["44", "109"]
    assert "device_requests" not in kwargs and not kwargs.get("privileged")
    assert not [m for m in kwargs["mounts"] if m["Source"].startswith("/dev")]
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["user"] == "1000:1000"
    other = algorithm_kwargs(env, job(AMD_ADDRESS))
    assert other["devices"] == [
        "/dev/dri/card1:/dev/dri/card1:rwm",
        "/dev/dri/renderD129:/dev/dri/renderD129:rwm",
        "/dev/kfd:/dev/kfd:rwm",
    ]
    no_gpu = algorithm_kwargs(env, job())
    assert not {"devices", "group_add", "device_requests"} & set(no_gpu)


def test_a_mixed_grant_gets_nvidia_by_device_request_and_the_others_by_node(host: Host) -> None:
    found = (gpus.Gpu(id="GPU-aaa", index="0", model="A100"), *two_amd_gpus_and_an_igpu(host))
    kwargs = algorithm_kwargs(environment(found), job(INTEL_ADDRESS, "GPU-aaa", AMD_ADDRESS))
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["GPU-aaa"]
    assert kwargs["devices"] == [
        f"{node}:{node}:rwm"
        for node in (
            "/dev/dri/card0",
            "/dev/dri/renderD128",
            "/dev/dri/card1",
            "/dev/dri/renderD129",
            "/dev/kfd",
        )
    ]
    assert kwargs["group_add"] == ["44", "109"]


# What the engine reports, and its config -------------------------------------------------------


def test_the_fingerprint_lists_amd_and_intel_gpus_with_their_vendor(host: Host) -> None:
    found = (gpus.Gpu(id="GPU-aaa", index="0", model="A100"), *two_amd_gpus_and_an_igpu(host))
    env = environment(found)
    caps = fingerprint.capabilities("loop-ext4", (env,), runs_pods=False)
    assert list(caps.gpu_vendors) == ["amd", "intel", "nvidia"]
    listed = fingerprint.environment(env, Usage(), common_pb2.ENGINE_HEALTH_HEALTHY, {})
    (gpu,) = [r for r in listed.resources if r.id == "gpu"]
    assert gpu.total == 4
    assert [(d.id, d.vendor, d.model, d.memory_gib) for d in gpu.devices] == [
        ("GPU-aaa", "nvidia", "A100", 0.0),
        (INTEL_ADDRESS, "intel", "PCI 8086:46a6", 0.0),
        (AMD_ADDRESS, "amd", "AMD Instinct MI210", 64.0),
        ("0000:c3:00.0", "amd", "AMD Instinct MI210", 64.0),
    ]


def test_sysfs_detection_is_configured_off_restricted_or_pointed_elsewhere(host: Host) -> None:
    default = engine_config.parse_settings({}).gpu_sysfs
    assert default == drm.SysfsSettings(vendors=("amd", "intel"), groups=("video", "render"), host_root="/")
    raw = {"sysfs_gpu_vendors": [], "gpu_groups": ["render", 993], "host_root": "/host"}
    assert engine_config.parse_settings(raw).gpu_sysfs == drm.SysfsSettings((), ("render", "993"), "/host")
    assert engine_config.parse_settings({"sysfs_gpu_vendors": ["intel"]}).gpu_sysfs.vendors == ("intel",)
    for bad, words in (
        ({"sysfs_gpu_vendors": "amd"}, "sysfs_gpu_vendors must be a list of ['amd', 'intel']"),
        ({"sysfs_gpu_vendors": ["nvidia"]}, "sysfs_gpu_vendors must be"),
        ({"gpu_groups": ["video; rm -rf /"]}, "gpu_groups must be a list of group names or gids"),
        ({"gpu_groups": [True]}, "gpu_groups must be"),
        ({"host_root": "host"}, "host_root must be an absolute path"),
    ):
        with pytest.raises(EngineError) as raised:
            engine_config.parse_settings(bad)
        assert words in raised.value.message


def test_an_environment_picks_gpus_by_pci_address_and_an_absent_one_is_not_offered(host: Host) -> None:
    found = two_amd_gpus_and_an_igpu(host)
    machine = engine_config.MachineSize(cpu=8, ram_gib=32, disk_gib=100, gpus=found)
    raw = {
        "environments": [{"id": "one", "gpus": ["0000:C3:00.0", AMD_ADDRESS, "0000:c3:00.0", "0000:99:00.0"]}]
    }
    with capture_logs() as logs:
        (env,) = engine_config.resolve(engine_config.parse_settings(raw), machine)
    assert [(g.id, g.vendor) for g in env.gpus] == [("0000:c3:00.0", "amd"), (AMD_ADDRESS, "amd")]
    assert [e.get("gpu") for e in logs if e["log_level"] == "warning"] == ["0000:99:00.0"]


def test_the_probe_script_prints_what_detection_finds(host: Host) -> None:
    two_amd_gpus_and_an_igpu(host)
    env = {**os.environ, "PATH": "/nonexistent"}  # no nvidia-smi: only the fixture's GPUs
    result = subprocess.run(
        [sys.executable, str(PROBE), "--host-root", str(host.root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout + result.stderr
    assert lines[1].startswith(f"amd {AMD_ADDRESS} ") and "'AMD Instinct MI210' 64 GiB" in lines[1]
    assert "nodes=/dev/dri/card1,/dev/dri/renderD129,/dev/kfd groups=44,109" in lines[1]
