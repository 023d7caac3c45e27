"""Image retention in the docker engine, against a real Docker engine and the plugin as a real process.

The images are tiny ones imported offline (one file each; no registry), or
extra tags of the busybox test image. Nothing waits days: the test writes
the engine's record of pulled images (``images.json`` in its state dir)
with last uses a month ago, then starts the plugin, whose first check runs
at once; the record counts the checks, which is what the tests wait for.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from test_docker_engine import CONFIG, docker_target, job_spec, run, statuses

from c2d.conformance.harness import EngineFactory, EventLoopThread
from c2d_docker_engine import config as engine_config
from c2d_docker_engine import retention
from c2d_docker_engine.engine import images_in_use
from c2d_docker_engine.errors import EngineError
from c2d_docker_engine.store import JobStore

pytestmark = pytest.mark.timeout(120)
REPOSITORY = "c2d-test-retention"
MONTH_AGO = time.time() - 30 * retention.DAY_SECONDS
WAIT_SECONDS = 60.0


def tiny_image(client: Any, tag: str) -> str:
    """An image of one file, unique to this call (so it shares its id with no other image)."""
    data = f"{tag} {uuid.uuid4()}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = f"{REPOSITORY}:{tag}-{uuid.uuid4().hex[:8]}"
    repository, _, image_tag = name.rpartition(":")
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=image_tag)
    return name


def exists(client: Any, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def write_record(state_dir: str, entries: dict[str, float]) -> None:
    images = {ref: {"id": "", "pulled_at": used, "last_used": used} for ref, used in entries.items()}
    (Path(state_dir) / retention.RECORD_FILE).write_text(json.dumps({"images": images}))


def read_record(state_dir: str) -> dict[str, Any]:
    path = Path(state_dir) / retention.RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Polls a state the engine writes; the deadline only ends a test that would otherwise hang."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture
def made(docker_client: Any) -> Iterator[list[str]]:
    """Names of the images (and ids of containers) a test made, removed after it."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            docker_client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.images.remove(name, force=True)


def test_unused_pulled_images_go_and_nothing_else_does(
    loop: EventLoopThread, tmp_path: Path, docker_client: Any, busybox_image: str, made: list[str]
) -> None:
    """A month unused: gone. Kept: a running job's image, the pod image, one the engine did not pull,
    and one a foreign container uses (its removal fails, is logged, and succeeds once that container is gone)."""
    old = tiny_image(docker_client, "old")
    by_hand = tiny_image(docker_client, "by-hand")
    blocked = tiny_image(docker_client, "blocked")
    pod = tiny_image(docker_client, "pod")
    repository, tag = REPOSITORY, f"running-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(busybox_image).tag(repository, tag)
    running = f"{repository}:{tag}"
    made.extend([old, by_hand, blocked, pod, running])
    config = {**CONFIG, "pod_image": pod, "image_retention_days": 7, "image_retention_check_seconds": 1}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        first = factory.start()
        spec = job_spec(first, "sleep 600", tag=tag, image=repository)
        first.start_job(spec)
        first.jobs.add(spec.job_id)
        first.watch_until_running(spec.job_id)
        first.kill()
        write_record(
            first.state_dir, {old: MONTH_AGO, blocked: MONTH_AGO, pod: MONTH_AGO, running: MONTH_AGO}
        )
        foreign = docker_client.containers.create(blocked, command=["/hello"])
        made.append(foreign.id)

        second = factory.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        wait_until(lambda: read_record(first.state_dir).get("checks", 0) >= 1, "the first check ran")
        assert not exists(docker_client, old), "a month unused, pulled by the engine: removed"
        assert all(exists(docker_client, name) for name in (by_hand, blocked, pod, running))
        in_use = images_in_use(JobStore(Path(first.state_dir) / "jobs", first.host_id))
        assert in_use == {running}, "the job directories name the image of the job that has not ended"
        kept = read_record(first.state_dir)["images"]
        assert set(kept) == {blocked, pod, running}
        assert kept[running]["last_used"] > MONTH_AGO, "an image a job runs counts as used now"

        foreign.remove(force=True)
        wait_until(
            lambda: blocked not in read_record(first.state_dir)["images"],
            "a later check removed the blocked image and dropped it from the record",
        )
        assert not exists(docker_client, blocked)
        second.stop_job(spec.job_id)
    finally:
        factory.close()


def test_a_job_using_a_pulled_image_records_the_use_and_zero_days_keeps_everything(
    loop: EventLoopThread, tmp_path: Path, docker_client: Any, busybox_image: str, made: list[str]
) -> None:
    repository, tag = REPOSITORY, f"used-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(busybox_image).tag(repository, tag)
    used = f"{repository}:{tag}"
    old = tiny_image(docker_client, "never")
    made.extend([used, old])
    config = {**CONFIG, "image_retention_days": 0, "image_retention_check_seconds": 1}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        state_dir = factory.new_state_dir()
        write_record(state_dir, {used: MONTH_AGO, old: MONTH_AGO})
        engine = factory.start(state_dir=state_dir)
        spec = job_spec(engine, "true", tag=tag, image=repository)
        assert statuses(run(engine, spec))[-1] == "FINISHED"
        record = read_record(state_dir)
        assert record["images"][used]["last_used"] > MONTH_AGO
        assert record["images"][old]["last_used"] == MONTH_AGO
        assert "checks" not in record, "0 days: no check runs"
        assert exists(docker_client, old)
    finally:
        factory.close()


def test_a_check_spares_the_images_jobs_will_use(tmp_path: Path, docker_client: Any, made: list[str]) -> None:
    """An image no container holds yet (a job accepted, not started) stays, and counts as used now."""
    queued, unused = tiny_image(docker_client, "queued"), tiny_image(docker_client, "unused")
    made.extend([queued, unused])
    record = retention.ImageRecord(tmp_path)
    write_record(str(tmp_path), {queued: MONTH_AGO, unused: MONTH_AGO})
    result = record.check(docker_client, retention.Policy(days=7, check_seconds=60), [queued], None)
    assert result == retention.CheckResult(removed=(unused,), failed=())
    assert exists(docker_client, queued) and not exists(docker_client, unused)
    assert record.images()[queued].last_used > MONTH_AGO


# No Docker needed ------------------------------------------------------------------------------


def test_retention_settings_default_to_a_week_hourly_and_refuse_nonsense() -> None:
    settings = engine_config.parse_settings({})
    assert (settings.image_retention_days, settings.image_retention_check_seconds) == (7, 3600)
    assert engine_config.parse_settings({"image_retention_days": 0}).image_retention_days == 0
    for bad in (
        {"image_retention_days": -1},
        {"image_retention_days": "7"},
        {"image_retention_check_seconds": 0},
    ):
        with pytest.raises(EngineError) as info:
            engine_config.parse_settings(bad)
        assert next(iter(bad)) in info.value.message


def test_the_record_keeps_pulls_and_uses_and_drops_what_it_did_not_write(tmp_path: Path) -> None:
    now = [1000.0]
    record = retention.ImageRecord(tmp_path, clock=lambda: now[0])
    record.pulled("algo:1", "sha256:aa")
    now[0] = 2000.0
    record.used("algo:1")
    record.used("operator:1")  # not pulled by the engine: not recorded
    assert record.images() == {"algo:1": retention.Pulled("algo:1", "sha256:aa", 1000.0, 2000.0)}
    data = json.loads((tmp_path / retention.RECORD_FILE).read_text())
    data["images"]["junk"] = {"id": "x"}
    data["images"]["worse"] = "text"
    (tmp_path / retention.RECORD_FILE).write_text(json.dumps(data))
    assert set(record.images()) == {"algo:1"}
