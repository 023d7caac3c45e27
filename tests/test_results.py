"""The results store (host.results): resumable, hashed uploads and ranged reads, on a real SQLite store."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from host.errors import RequestError
from host.results import ResultStore
from host.store import models
from host.store.db import open_database

OUTPUT = pod_pb2.UPLOAD_KIND_OUTPUT
ALGO_LOG = pod_pb2.UPLOAD_KIND_ALGORITHM_LOG
DATA = bytes(range(256)) * 40 + b"tail"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[None]:
    database = open_database(tmp_path / "node")
    yield
    database.close()


def make_stage(job_id: str, expire_at: float | None = None) -> models.Stage:
    """A stage row with only what the results store needs."""
    workflow = models.Workflow.create(
        id=f"wf-{job_id}", owner="0x" + "1" * 40, environment_id="env", free=True, request={}, created_at=0.0
    )
    return models.Stage.create(
        job_id=job_id,
        workflow=workflow,
        index=0,
        owner=workflow.owner,
        environment_id="env",
        engine="stub",
        status=40,
        spec={},
        max_duration_seconds=60,
        created_at=0.0,
        results_expire_at=expire_at,
    )


@pytest.fixture
def stage(db: None) -> models.Stage:
    return make_stage("job-1")


@pytest.fixture
def store(tmp_path: Path, db: None) -> ResultStore:
    return ResultStore(tmp_path / "results", max_size=1024 * 1024)


def header(name: str = "out.zip", data: bytes = DATA, offset: int = 0, **kw: Any) -> pod_pb2.UploadHeader:
    kw.setdefault("kind", OUTPUT)
    return pod_pb2.UploadHeader(
        name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), offset=offset, **kw
    )


def upload(
    store: ResultStore, stage: models.Stage, name: str = "out.zip", data: bytes = DATA, **kw: Any
) -> Any:
    result = store.begin(stage, header(name, data, **kw))
    store.write(result, data)
    return store.finish(result)


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value.code, caught.value.message


def test_upload_list_and_read(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    result = upload(store, stage, archive=True)
    assert result.complete and result.received == len(DATA)
    listed = store.list(stage)
    assert listed == [
        compute_pb2.ResultFile(
            index=0, name="out.zip", kind=OUTPUT, size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest()
        )
    ]
    assert b"".join(store.read(stage, 0, 0)) == DATA
    assert store.path(stage, 0) == tmp_path / "results" / "job-1" / "0"
    assert store.get("job-1", 0).archive


def test_an_empty_file(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header(data=b""))
    assert store.finish(result).complete
    assert list(store.read(stage, 0, 0)) == []


def test_resume_after_an_interrupted_upload(store: ResultStore, stage: models.Stage) -> None:
    half = len(DATA) // 2
    first = store.begin(stage, header())
    store.write(first, DATA[:half])
    assert store.offset(stage, "out.zip", OUTPUT) == half
    again = store.begin(stage, header(offset=half))
    store.write(again, DATA[half:])
    store.finish(again)
    assert b"".join(store.read(stage, 0, 0, chunk=1000)) == DATA
    assert store.offset(stage, "out.zip", OUTPUT) == len(DATA)


def test_wrong_offset_names_the_right_one(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header())
    store.write(result, DATA[:100])
    for offset in (0, 50, 101):
        code, message = code_of(lambda o=offset: store.begin(stage, header(offset=o)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 100" in message
    code, message = code_of(lambda: store.begin(stage, header("new.txt", offset=7)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 0" in message
    assert store.offset(stage, "new.txt", OUTPUT) == 0


def test_sha_mismatch_drops_the_bytes(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    bad = store.begin(stage, header())
    store.write(bad, DATA[:-1] + b"X")
    code, message = code_of(lambda: store.finish(bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("sha256 mismatch")
    assert store.offset(stage, "out.zip", OUTPUT) == 0
    assert (tmp_path / "results" / "job-1" / "0").stat().st_size == 0
    assert store.list(stage) == []
    upload(store, stage)
    assert b"".join(store.read(stage, 0, 0)) == DATA


def test_write_never_goes_past_the_size(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header(data=b"12345"))
    store.write(result, b"123")
    code, message = code_of(lambda: store.write(result, b"456"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "declared size of 5 bytes" in message
    assert store.offset(stage, "out.zip", OUTPUT) == 3


def test_finish_needs_every_byte(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header())
    store.write(result, DATA[:10])
    code, message = code_of(lambda: store.finish(result))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"10 of {len(DATA)}" in message


def test_a_completed_upload_is_idempotent(store: ResultStore, stage: models.Stage) -> None:
    first = upload(store, stage)
    again = store.begin(stage, header(offset=len(DATA)))
    assert (again.id, again.complete) == (first.id, True)
    assert store.finish(again).complete
    code, _ = code_of(lambda: store.write(again, b"x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, message = code_of(lambda: store.begin(stage, header(data=b"other")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "another size or sha256" in message


def test_changed_content_restarts_from_zero(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header())
    store.write(result, DATA[:10])
    code, message = code_of(lambda: store.begin(stage, header(data=b"new", offset=10)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 0" in message
    upload(store, stage, data=b"new")
    assert b"".join(store.read(stage, 0, 0)) == b"new"


BAD_HEADERS = [
    (header(name=""), "no name"),
    (header(name="a/b"), "plain file name"),
    (header(name="../escape"), "plain file name"),
    (header(name="a\\b"), "plain file name"),
    (header(name="a\x00b"), "plain file name"),
    (header(name=".."), "plain file name"),
    (header(name="x" * 256), "plain file name"),
    (header(kind=pod_pb2.UPLOAD_KIND_UNSPECIFIED), "kind"),
    (header(kind=17), "kind"),
    (pod_pb2.UploadHeader(name="big", kind=OUTPUT, size=1024 * 1024 + 1, sha256="0" * 64), "larger than"),
    (pod_pb2.UploadHeader(name="x", kind=OUTPUT, size=1, sha256="xyz"), "64 hex digits"),
]


@pytest.mark.parametrize(("bad", "fragment"), BAD_HEADERS)
def test_bad_headers_are_refused(store: ResultStore, stage: models.Stage, bad: Any, fragment: str) -> None:
    code, message = code_of(lambda: store.begin(stage, bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in message
    assert models.Result.select().count() == 0


def test_names_never_reach_the_file_system(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    upload(store, stage, name="weird name; rm -rf ~ ✓.txt", data=b"x")
    assert [p.name for p in (tmp_path / "results" / "job-1").iterdir()] == ["0"]
    assert store.list(stage)[0].name == "weird name; rm -rf ~ ✓.txt"


def test_indices_follow_first_upload_and_stay(store: ResultStore, stage: models.Stage) -> None:
    a = store.begin(stage, header("a"))
    upload(store, stage, "b", data=b"bb", kind=ALGO_LOG)
    upload(store, stage, "a", data=b"aa", kind=ALGO_LOG)  # same name, another kind: another file
    store.write(a, DATA)
    store.finish(a)
    assert [(f.index, f.name, f.kind) for f in store.list(stage)] == [
        (0, "a", OUTPUT),
        (1, "b", ALGO_LOG),
        (2, "a", ALGO_LOG),
    ]


def test_concurrent_uploads_get_distinct_indices(store: ResultStore, stage: models.Stage) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def one(n: int) -> None:
        try:
            barrier.wait()
            upload(store, "job-1", f"file-{n}", data=f"data {n}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    listed = store.list(stage)
    assert sorted(f.index for f in listed) == list(range(8))
    for f in listed:
        assert b"".join(store.read(stage, f.index, 0)) == f"data {f.name[5:]}".encode()


def test_read_from_an_offset(store: ResultStore, stage: models.Stage) -> None:
    upload(store, stage)
    assert b"".join(store.read(stage, 0, 1000, chunk=333)) == DATA[1000:]
    assert all(len(c) <= 333 for c in store.read(stage, 0, 1000, chunk=333))
    assert list(store.read(stage, 0, len(DATA))) == []
    code, message = code_of(lambda: store.read(stage, 0, len(DATA) + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "past the end" in message


def test_read_unknown_or_incomplete(store: ResultStore, stage: models.Stage) -> None:
    assert code_of(lambda: store.read(stage, 0, 0))[0] == grpc.StatusCode.NOT_FOUND
    store.begin(stage, header())
    assert code_of(lambda: store.read(stage, 0, 0))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: store.path(stage, 0))[0] == grpc.StatusCode.NOT_FOUND
    assert store.list(stage) == []


def test_unknown_stage_is_not_found(store: ResultStore, db: None) -> None:
    assert code_of(lambda: store.begin("nope", header()))[0] == grpc.StatusCode.NOT_FOUND


def test_offset_trusts_the_disk_after_a_crash(
    store: ResultStore, stage: models.Stage, tmp_path: Path
) -> None:
    result = store.begin(stage, header())
    store.write(result, DATA[:100])
    (tmp_path / "results" / "job-1" / "0").write_bytes(DATA[:60])  # the last bytes never reached the disk
    assert store.offset(stage, "out.zip", OUTPUT) == 60
    resumed = store.begin(stage, header(offset=60))
    store.write(resumed, DATA[60:])
    store.finish(resumed)
    assert b"".join(store.read(stage, 0, 0)) == DATA


def test_expiry_removes_files_and_rows(store: ResultStore, tmp_path: Path, db: None) -> None:
    now = time.time()
    old, fresh, keep = make_stage("old", now - 1), make_stage("fresh", now + 3600), make_stage("keep")
    for stage in (old, fresh, keep):
        upload(store, stage, "a", data=b"a")
        upload(store, stage, "b", data=b"b")
    assert store.expire(now) == 2
    assert not (tmp_path / "results" / "old").exists()
    assert store.list(old) == [] and models.Result.select().where(models.Result.stage == "old").count() == 0
    assert len(store.list(fresh)) == 2 and len(store.list(keep)) == 2
    assert store.expire(now) == 0
    assert store.expire(now + 7200) == 2


def test_delete_a_stage(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    upload(store, stage)
    assert store.delete(stage) == 1
    assert store.list(stage) == [] and not (tmp_path / "results" / "job-1").exists()
    assert store.delete(stage) == 0


def test_writing_to_a_deleted_upload(store: ResultStore, stage: models.Stage) -> None:
    result = store.begin(stage, header())
    store.delete(stage)
    assert code_of(lambda: store.write(result, b"x"))[0] == grpc.StatusCode.NOT_FOUND


def test_job_ids_must_be_plain_names(store: ResultStore, db: None) -> None:
    with pytest.raises(ValueError):
        store.offset("../x", "a", OUTPUT)
