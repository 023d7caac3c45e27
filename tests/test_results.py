"""The results store (host.results): resumable, hashed uploads and ranged reads, on a real SQLite store.

Upload streams (``receive``) and reads (``chunks``) run on an event loop, as in the node; their
database steps go through the database thread (host.store.runner), their file work through threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import bulkio
from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from host import results
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
        id=f"wf-{job_id}", owner="0x" + "1" * 40, environment_id="env", free=True, created_at=0.0
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


async def _each(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def stream(store: ResultStore, stage: models.Stage | str, head: pod_pb2.UploadHeader, *chunks: bytes) -> Any:
    """One upload stream of ``chunks`` after ``head``, as PublishResult runs it."""
    return asyncio.run(store.receive(stage, head, _each(chunks)))


def upload(
    store: ResultStore, stage: models.Stage | str, name: str = "out.zip", data: bytes = DATA, **kw: Any
) -> Any:
    return stream(store, stage, header(name, data, **kw), data)


def read(
    store: ResultStore, stage: models.Stage | str, index: int, offset: int = 0, chunk: int = 1 << 20
) -> list[bytes]:
    """What a download of the result from ``offset`` sends, chunk by chunk."""

    async def collect() -> list[bytes]:
        return [c async for c in store.chunks(store.get(stage, index), offset, chunk)]

    return asyncio.run(collect())


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value.code, caught.value.message


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def test_upload_list_and_read(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    result = upload(store, stage, archive=True)
    assert result.complete and result.received == len(DATA)
    listed = store.list(stage)
    assert listed == [
        compute_pb2.ResultFile(
            index=0, name="out.zip", kind=OUTPUT, size=len(DATA), sha256=hashlib.sha256(DATA).hexdigest()
        )
    ]
    assert b"".join(read(store, stage, 0)) == DATA
    assert store.path(stage, 0) == tmp_path / "results" / "job-1" / "0"
    assert store.get("job-1", 0).archive


def test_an_empty_file(store: ResultStore, stage: models.Stage) -> None:
    assert stream(store, stage, header(data=b"")).complete
    assert read(store, stage, 0) == []


def test_a_large_upload_in_many_chunks_round_trips(tmp_path: Path, db: None) -> None:
    """Chunks of odd sizes, many of them, several checkpoints: the bytes read back are the bytes sent."""
    store = ResultStore(tmp_path / "results")
    make_stage("job-big")
    data = os.urandom(9 * 1024 * 1024 + 12345)
    sizes = [1, 1 << 20, 333_333, 7, 2 << 20]
    chunks, at = [], 0
    while at < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[at : at + size])
        at += size
    original = results.CHECKPOINT_BYTES
    results.CHECKPOINT_BYTES = 1 << 20  # several records of progress within this stream
    try:
        result = stream(store, "job-big", header("big.bin", data), *chunks)
    finally:
        results.CHECKPOINT_BYTES = original
    assert result.complete and result.received == len(data)
    got = read(store, "job-big", 0, chunk=1 << 20)
    assert b"".join(got) == data and max(map(len, got)) == 1 << 20
    assert b"".join(read(store, "job-big", 0, offset=len(data) - 5, chunk=2)) == data[-5:]


def test_resume_after_an_interrupted_upload(store: ResultStore, stage: models.Stage) -> None:
    half = len(DATA) // 2
    first = stream(store, stage, header(), DATA[:half])
    assert not first.complete and first.received == half
    assert store.offset(stage, "out.zip", OUTPUT) == half
    again = stream(store, stage, header(offset=half), DATA[half:])
    assert again.complete
    assert b"".join(read(store, stage, 0, chunk=1000)) == DATA
    assert store.offset(stage, "out.zip", OUTPUT) == len(DATA)


def test_a_stream_records_its_progress_while_it_runs(
    store: ResultStore, stage: models.Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CHECKPOINT_BYTES the database hears how far the stream got: only bytes that are in the
    file (a staged write counts once it is written), so the record never leads the disk."""
    monkeypatch.setattr(results, "CHECKPOINT_BYTES", 1000)
    monkeypatch.setattr(bulkio, "STAGE_BYTES", bulkio.ALIGN)
    path = tmp_path / "results" / "job-1" / "0"

    async def scenario() -> None:
        paused, resume = asyncio.Event(), asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            for at in range(0, 9000, 500):
                yield DATA[at : at + 500]
            paused.set()
            await resume.wait()
            yield DATA[9000:]

        upload = asyncio.create_task(store.receive(stage, header(), chunks()))
        await paused.wait()
        while store.offset(stage, "out.zip", OUTPUT) < 4096:  # the checkpoint lands on the database thread
            await asyncio.sleep(0.01)
        recorded = store.offset(stage, "out.zip", OUTPUT)
        assert 4096 <= recorded <= path.stat().st_size <= 9000
        resume.set()
        assert (await upload).complete

    run(scenario())
    assert b"".join(read(store, stage, 0)) == DATA


def test_one_stream_per_upload_at_a_time(store: ResultStore, stage: models.Stage) -> None:
    """A second stream of the same upload while one runs is ABORTED (pods retry it), and changes nothing."""

    async def scenario() -> None:
        paused, resume = asyncio.Event(), asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield DATA[:100]
            paused.set()
            await resume.wait()
            yield DATA[100:]

        first = asyncio.create_task(store.receive(stage, header(), chunks()))
        await paused.wait()
        with pytest.raises(RequestError) as caught:
            await store.receive(stage, header(), _each([DATA]))
        assert caught.value.code == grpc.StatusCode.ABORTED and "in progress" in caught.value.message
        resume.set()
        assert (await first).complete
        again = await store.receive(stage, header(offset=len(DATA)), _each([]))  # now it may: nothing to do
        assert again.complete

    run(scenario())
    assert b"".join(read(store, stage, 0)) == DATA


def test_wrong_offset_names_the_right_one(store: ResultStore, stage: models.Stage) -> None:
    stream(store, stage, header(), DATA[:100])
    for offset in (0, 50, 101):
        code, message = code_of(lambda o=offset: store.begin(stage, header(offset=o)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 100" in message
    code, message = code_of(lambda: stream(store, stage, header(offset=50), DATA[50:]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 100" in message
    code, message = code_of(lambda: store.begin(stage, header("new.txt", offset=7)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 0" in message
    assert store.offset(stage, "new.txt", OUTPUT) == 0


def test_sha_mismatch_drops_the_bytes(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    code, message = code_of(lambda: stream(store, stage, header(), DATA[:1000], DATA[1000:-1] + b"X"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("sha256 mismatch")
    assert store.offset(stage, "out.zip", OUTPUT) == 0
    assert (tmp_path / "results" / "job-1" / "0").stat().st_size == 0
    assert store.list(stage) == []
    upload(store, stage)
    assert b"".join(read(store, stage, 0)) == DATA


def test_a_resumed_upload_hashes_the_stored_prefix(
    store: ResultStore, stage: models.Stage, tmp_path: Path
) -> None:
    """The running hash of a resumed upload starts from the bytes on disk, not from trust: a prefix
    that changed while no stream ran makes the whole file fail its check, and it is dropped."""
    stream(store, stage, header(), DATA[:1000])
    path = tmp_path / "results" / "job-1" / "0"
    path.write_bytes(b"Z" + DATA[1:1000])  # the same length, other bytes
    code, message = code_of(lambda: stream(store, stage, header(offset=1000), DATA[1000:]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("sha256 mismatch")
    assert store.offset(stage, "out.zip", OUTPUT) == 0 and path.stat().st_size == 0
    assert store.list(stage) == []


def test_write_never_goes_past_the_size(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    code, message = code_of(lambda: stream(store, stage, header(data=b"12345"), b"123", b"456"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "declared size of 5 bytes" in message
    assert store.offset(stage, "out.zip", OUTPUT) == 3
    assert (tmp_path / "results" / "job-1" / "0").read_bytes() == b"123"


def test_an_incomplete_stream_is_not_complete(store: ResultStore, stage: models.Stage) -> None:
    result = stream(store, stage, header(), DATA[:10])
    assert (result.received, result.complete) == (10, False)
    assert code_of(lambda: read(store, stage, 0))[0] == grpc.StatusCode.NOT_FOUND


def test_a_completed_upload_is_idempotent(store: ResultStore, stage: models.Stage) -> None:
    first = upload(store, stage)
    again = stream(store, stage, header(offset=len(DATA)))
    assert (again.id, again.complete) == (first.id, True)
    code, _ = code_of(lambda: stream(store, stage, header(offset=len(DATA)), b"x"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, message = code_of(lambda: store.begin(stage, header(data=b"other")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "another size or sha256" in message


def test_changed_content_restarts_from_zero(store: ResultStore, stage: models.Stage) -> None:
    stream(store, stage, header(), DATA[:10])
    code, message = code_of(lambda: store.begin(stage, header(data=b"new", offset=10)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 0" in message
    upload(store, stage, data=b"new")
    assert b"".join(read(store, stage, 0)) == b"new"


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
    code, message = code_of(lambda: stream(store, stage, bad, b"x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in message
    assert models.Result.select().count() == 0


def test_names_never_reach_the_file_system(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    upload(store, stage, name="weird name; rm -rf ~ ✓.txt", data=b"x")
    assert [p.name for p in (tmp_path / "results" / "job-1").iterdir()] == ["0"]
    assert store.list(stage)[0].name == "weird name; rm -rf ~ ✓.txt"


def test_indices_follow_first_upload_and_stay(store: ResultStore, stage: models.Stage) -> None:
    stream(store, stage, header("a"))
    upload(store, stage, "b", data=b"bb", kind=ALGO_LOG)
    upload(store, stage, "a", data=b"aa", kind=ALGO_LOG)  # same name, another kind: another file
    stream(store, stage, header("a"), DATA)
    assert [(f.index, f.name, f.kind) for f in store.list(stage)] == [
        (0, "a", OUTPUT),
        (1, "b", ALGO_LOG),
        (2, "a", ALGO_LOG),
    ]


def test_concurrent_stores_get_distinct_indices(store: ResultStore, stage: models.Stage) -> None:
    """store() from many threads at once (each its own connection): the index race retries."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def one(n: int) -> None:
        try:
            barrier.wait()
            store.store("job-1", f"file-{n}", OUTPUT, f"data {n}".encode())
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
        assert b"".join(read(store, stage, f.index)) == f"data {f.name[5:]}".encode()


def test_concurrent_streams_of_one_stage(store: ResultStore, stage: models.Stage) -> None:
    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(store.receive(stage, header(f"f{n}", DATA[n:]), _each([DATA[n:]])) for n in range(6))
        )

    assert all(r.complete for r in run(scenario()))
    assert sorted(f.index for f in store.list(stage)) == list(range(6))
    for f in store.list(stage):
        assert b"".join(read(store, stage, f.index)) == DATA[int(f.name[1:]) :]


def test_store_and_save_keep_the_engines_log(store: ResultStore, stage: models.Stage) -> None:
    kept = store.store(stage, "algorithm.log", ALGO_LOG, b"log line\n")
    assert kept.complete and b"".join(read(store, stage, kept.index)) == b"log line\n"
    saved = run(store.save(stage, "other.log", OUTPUT, DATA))
    assert saved.complete and b"".join(read(store, stage, saved.index)) == DATA
    assert run(store.save(stage, "empty.log", OUTPUT, b"")).complete


def test_read_from_an_offset(store: ResultStore, stage: models.Stage) -> None:
    upload(store, stage)
    assert b"".join(read(store, stage, 0, 1000, chunk=333)) == DATA[1000:]
    assert all(len(c) <= 333 for c in read(store, stage, 0, 1000, chunk=333))
    assert read(store, stage, 0, len(DATA)) == []
    code, message = code_of(lambda: read(store, stage, 0, len(DATA) + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "past the end" in message


def test_a_read_never_passes_the_verified_size(
    store: ResultStore, stage: models.Stage, tmp_path: Path
) -> None:
    upload(store, stage)
    with open(tmp_path / "results" / "job-1" / "0", "ab") as f:
        f.write(b"appended later")
    assert b"".join(read(store, stage, 0, chunk=4096)) == DATA


def test_read_unknown_or_incomplete(store: ResultStore, stage: models.Stage) -> None:
    assert code_of(lambda: read(store, stage, 0))[0] == grpc.StatusCode.NOT_FOUND
    store.begin(stage, header())
    assert code_of(lambda: read(store, stage, 0))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: store.path(stage, 0))[0] == grpc.StatusCode.NOT_FOUND
    assert store.list(stage) == []


def test_unknown_stage_is_not_found(store: ResultStore, db: None) -> None:
    assert code_of(lambda: store.begin("nope", header()))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stream(store, "nope", header(), DATA))[0] == grpc.StatusCode.NOT_FOUND


def test_offset_trusts_the_disk_after_a_crash(
    store: ResultStore, stage: models.Stage, tmp_path: Path
) -> None:
    stream(store, stage, header(), DATA[:100])
    (tmp_path / "results" / "job-1" / "0").write_bytes(DATA[:60])  # the last bytes never reached the disk
    assert store.offset(stage, "out.zip", OUTPUT) == 60
    assert stream(store, stage, header(offset=60), DATA[60:]).complete
    assert b"".join(read(store, stage, 0)) == DATA


def test_a_resumed_write_cuts_what_the_database_never_counted(
    store: ResultStore, stage: models.Stage, tmp_path: Path
) -> None:
    """The database lags the disk after a crash between two records: the bytes past ``received``
    are cut off when the upload resumes there, so they cannot end up in the middle of the file."""
    stream(store, stage, header(), DATA[:100])
    with open(tmp_path / "results" / "job-1" / "0", "ab") as f:
        f.write(b"written, never recorded")
    assert store.offset(stage, "out.zip", OUTPUT) == 100
    assert stream(store, stage, header(offset=100), DATA[100:]).complete
    assert b"".join(read(store, stage, 0)) == DATA


def test_expiry_removes_files_and_rows(store: ResultStore, tmp_path: Path, db: None) -> None:
    now = time.time()
    old, fresh, keep = make_stage("old", now - 1), make_stage("fresh", now + 3600), make_stage("keep")
    for stage in (old, fresh, keep):
        upload(store, stage, "a", data=b"a")
        upload(store, stage, "b", data=b"b")
    assert asyncio.run(store.expire(now)) == 2
    assert not (tmp_path / "results" / "old").exists()
    assert store.list(old) == [] and models.Result.select().where(models.Result.stage == "old").count() == 0
    assert len(store.list(fresh)) == 2 and len(store.list(keep)) == 2
    assert asyncio.run(store.expire(now)) == 0
    assert asyncio.run(store.expire(now + 7200)) == 2


def test_delete_a_stage(store: ResultStore, stage: models.Stage, tmp_path: Path) -> None:
    upload(store, stage)
    assert store.delete(stage) == 1
    assert store.list(stage) == [] and not (tmp_path / "results" / "job-1").exists()
    assert store.delete(stage) == 0


def test_resuming_a_deleted_upload(store: ResultStore, stage: models.Stage) -> None:
    stream(store, stage, header(), DATA[:10])
    store.delete(stage)
    code, message = code_of(lambda: stream(store, stage, header(offset=10), DATA[10:]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resume from 0" in message


def test_deleted_while_a_stream_runs(store: ResultStore, stage: models.Stage) -> None:
    """The stage's results expire in the middle of an upload: it ends NOT_FOUND, nothing is left."""

    async def scenario() -> None:
        paused, resume = asyncio.Event(), asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield DATA[:100]
            paused.set()
            await resume.wait()
            yield DATA[100:]

        upload = asyncio.create_task(store.receive(stage, header(), chunks()))
        await paused.wait()
        store.delete(stage)
        resume.set()
        with pytest.raises(RequestError) as caught:
            await upload
        assert caught.value.code == grpc.StatusCode.NOT_FOUND

    run(scenario())
    assert models.Result.select().count() == 0 and store.list(stage) == []


def test_job_ids_must_be_plain_names(store: ResultStore, db: None) -> None:
    with pytest.raises(ValueError):
        store.offset("../x", "a", OUTPUT)
