"""The results store: files a stage's pods upload (outputs and logs), kept until the stage's results expire.

A result's bytes live at ``<root>/<job_id>/<index>``; the name the pod gave
it is kept only in the database, so whatever a pod calls its file, it cannot
write outside its stage's folder. Uploads are resumable: ``received`` counts
the bytes stored, and an upload continues exactly there. A file counts only
once its size and SHA-256 are verified and it has been fsynced; a SHA-256
mismatch drops the stored bytes, so the upload starts over from 0.

An upload stream (:meth:`ResultStore.receive`) keeps its file open from the
header to the end and never touches it on the event loop: each chunk is
written (``pwrite``) and hashed in a thread while the next one arrives, the
SHA-256 is kept running as the bytes are written (a resumed upload hashes the
prefix it stored before once, in a thread), and the check, the fsyncs and the
completion run off the loop too. The database hears of the bytes at the end of
the stream and every ``CHECKPOINT_BYTES`` in between, never per chunk: it may
lag the disk, never lead it, since a count is recorded only after its bytes
were written. After a crash, :meth:`ResultStore._reconcile` trusts the smaller
of the two and a resumed upload truncates whatever lies past ``received``, so
the pod resends at most the bytes since the last record.

The synchronous methods are units of the database thread (run them with
:func:`host.store.runner.run`); :meth:`ResultStore.receive` and
:meth:`ResultStore.chunks` are the streams' side, on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import peewee as pw

from c2d.bulkio import BulkWriter
from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from c2d.quoting import quoted
from host.errors import RequestError, invalid, not_found, precondition
from host.store import models, runner

DEFAULT_MAX_SIZE = 10 * 1024**3
# What one download message carries: measured on loopback, 1 MiB moves faster than 256 KiB
# (fewer messages) and than 4 MiB (buffers that still fit the caches). Pods upload the same.
DEFAULT_CHUNK = 1024 * 1024
CHECKPOINT_BYTES = 64 * 1024 * 1024  # how often a stream records its progress: what a crash may cost
HASH_BLOCK = 1024 * 1024
FILE_THREADS = 4
MAX_NAME = 255
# UploadKind and ResultKind share their numbers.
KINDS = frozenset(
    {
        compute_pb2.RESULT_KIND_OUTPUT,
        compute_pb2.RESULT_KIND_ALGORITHM_LOG,
        compute_pb2.RESULT_KIND_CONFIGURATION_LOG,
        compute_pb2.RESULT_KIND_PUBLISHING_LOG,
        compute_pb2.RESULT_KIND_IMAGE_LOG,
    }
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RETRIES = 5
GONE = "this upload was deleted (its stage's results expired or were removed)"

StageLike = models.Stage | str
UploadKey = tuple[str, int, str]  # job id, kind, name
T = TypeVar("T")


class ResultStore:
    """Result files of every stage under ``root``, described by the ``Result`` table."""

    def __init__(self, root: Path, max_size: int = DEFAULT_MAX_SIZE, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.max_size = max_size
        self.clock = clock
        self.root.mkdir(parents=True, exist_ok=True)
        self._writing: set[UploadKey] = set()  # uploads a stream (or store) is writing now
        self._writing_lock = threading.Lock()  # taken on the loop and on the database thread

    # Uploads.

    def offset(self, stage: StageLike, name: str, kind: int) -> int:
        """Bytes already stored for this upload (its size once complete); 0 when it never started.

        The name and kind are checked as an upload's header is: a name no upload could have is a
        clean INVALID_ARGUMENT, not a query for it."""
        _check_name_and_kind(name, kind)
        row = self._find(_job_id(stage), name, kind)
        if row is None:
            return 0
        return row.size if row.complete else self._reconcile(row)

    def exists(self, stage: StageLike, name: str, kind: int) -> bool:
        """Whether an upload of this result has begun (complete or not)."""
        return self._find(_job_id(stage), name, kind) is not None

    def begin(self, stage: StageLike, header: pod_pb2.UploadHeader) -> models.Result:
        """Starts or resumes an upload; the header's offset must be exactly what is stored so far.

        A complete upload with the same size and hash is returned as is, so a
        pod that retries after losing the answer does no harm.
        """
        job_id = _job_id(stage)
        sha256 = _validate_header(header, self.max_size)
        for attempt in range(_RETRIES):
            try:
                with _write_transaction():
                    return self._begin(job_id, header, sha256)
            except pw.IntegrityError:  # another upload of this stage took the same index or name
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _begin(self, job_id: str, header: pod_pb2.UploadHeader, sha256: str) -> models.Result:
        row = self._find(job_id, header.name, header.kind)
        if row is None:
            if header.offset != 0:
                raise precondition("nothing was received for this file yet: resume from 0")
            return self._create(job_id, header, sha256)
        same = row.size == header.size and row.sha256 == sha256 and row.archive == header.archive
        if row.complete:
            if not same:
                raise precondition(
                    f"result {quoted(header.name)} was already uploaded with another size or sha256"
                )
            return row
        if not same:
            return self._restart(row, header, sha256)
        received = self._reconcile(row)
        if header.offset != received:
            raise precondition(f"{received} bytes of this file are stored: resume from {received}")
        return row

    def _create(self, job_id: str, header: pod_pb2.UploadHeader, sha256: str) -> models.Result:
        """A new result with the next free index of its stage (unique per stage: a race retries)."""
        if not models.Stage.select().where(models.Stage.job_id == job_id).exists():
            raise not_found(f"no job {job_id}")
        last = (
            models.Result.select(pw.fn.MAX(models.Result.index)).where(models.Result.stage == job_id).scalar()
        )
        index = 0 if last is None else last + 1
        row = models.Result.create(
            stage=job_id,
            index=index,
            name=header.name,
            kind=header.kind,
            size=header.size,
            sha256=sha256,
            archive=header.archive,
            received=0,
            created_at=self.clock(),
        )
        self._file(row).parent.mkdir(parents=True, exist_ok=True)
        self._file(row).write_bytes(b"")
        return row

    def _restart(self, row: models.Result, header: pod_pb2.UploadHeader, sha256: str) -> models.Result:
        """The pod now sends different content under the same name: start over, keeping the index."""
        if header.offset != 0:
            raise precondition("the size or sha256 of this file changed: resume from 0")
        row.size, row.sha256, row.archive, row.received = header.size, sha256, header.archive, 0
        row.save()
        self._truncate(row)
        return row

    def store(self, stage: StageLike, name: str, kind: int, data: bytes) -> models.Result:
        """Keeps ``data`` whole as a result of the stage: what the node itself saves (an engine's log).

        A unit of the database thread, file work included: the data is small and already here."""
        header = pod_pb2.UploadHeader(
            name=name,
            kind=as_upload_kind(kind),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        job_id = _job_id(stage)
        key = self._claim(job_id, header)
        try:
            row = self.begin(job_id, header)
            if row.complete:
                return row
            writer = _Writer(self._file(row), row.received)
            try:
                writer.write(data)
                writer.hash(data)
                sealed = writer.seal(row.sha256, self._synced_dirs(row))
            finally:
                writer.close()
            return _sealed(row.id, row.size, sealed)
        finally:
            self._release(key)

    async def save(self, stage: StageLike, name: str, kind: int, data: bytes) -> models.Result:
        """:meth:`store` from the loop: the same result, its file work in threads (a log may be large)."""
        digest = await _in_thread(lambda: hashlib.sha256(data).hexdigest())
        header = pod_pb2.UploadHeader(name=name, kind=as_upload_kind(kind), size=len(data), sha256=digest)

        async def whole() -> AsyncIterator[bytes]:
            if data:
                yield data

        return await self.receive(stage, header, whole())

    async def receive(
        self, stage: StageLike, header: pod_pb2.UploadHeader, chunks: AsyncIterable[bytes]
    ) -> models.Result:
        """One upload stream: begins (or resumes) the upload ``header`` names, stores ``chunks`` from
        its offset and, once every byte is there, verifies and completes it; returns the row.

        The file is written and hashed off the loop, one chunk in flight while the next is read
        from the network. One stream per upload at a time: another one meanwhile is ABORTED (a pod
        whose earlier stream the node has not yet seen end retries that). Whatever ends the stream
        (its end, an error, the caller gone), the bytes written are recorded before it returns.
        """
        job_id = _job_id(stage)
        _validate_header(header, self.max_size)
        key = self._claim(job_id, header)
        try:
            row = await runner.run(self.begin, job_id, header)
            if row.complete:
                async for _ in chunks:
                    raise precondition(f"result {quoted(row.name)} is already complete")
                return row
            return await _Stream(self, row).run(chunks)
        finally:
            self._release(key)

    def _claim(self, job_id: str, header: pod_pb2.UploadHeader) -> UploadKey:
        key = (job_id, int(header.kind), header.name)
        with self._writing_lock:
            if key in self._writing:
                raise RequestError(
                    grpc.StatusCode.ABORTED,
                    f"another upload of {quoted(header.name)} is in progress: retry once it has ended",
                )
            self._writing.add(key)
        return key

    def _release(self, key: UploadKey) -> None:
        with self._writing_lock:
            self._writing.discard(key)

    def _synced_dirs(self, row: models.Result) -> tuple[Path, ...]:
        """The directory entries that lead to the row's file, fsynced with it."""
        return (self._file(row).parent, self.root)

    # Reading.

    def list(self, stage: StageLike) -> list[compute_pb2.ResultFile]:
        """The stage's complete results, by index."""
        query = (
            models.Result.select()
            .where((models.Result.stage == _job_id(stage)) & (models.Result.complete == True))
            .order_by(models.Result.index)
        )
        return [result_file(row) for row in query]

    def first_of_kind(self, stage: StageLike, kind: int) -> models.Result | None:
        """The stage's first complete result of ``kind`` (its algorithm log, say), if any."""
        return (
            models.Result.select()
            .where(
                (models.Result.stage == _job_id(stage))
                & (models.Result.kind == kind)
                & (models.Result.complete == True)
            )
            .order_by(models.Result.index)
            .first()
        )

    def get(self, stage: StageLike, index: int) -> models.Result:
        """A complete result by index, or NOT_FOUND."""
        row = models.Result.get_or_none(
            (models.Result.stage == _job_id(stage))
            & (models.Result.index == index)
            & (models.Result.complete == True)
        )
        if row is None:
            raise not_found(f"job {_job_id(stage)} has no result {index}")
        return row

    def chunks(self, row: models.Result, offset: int = 0, chunk: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        """A complete result's bytes from ``offset`` (see :func:`file_chunks`); the offset is checked now."""
        if offset < 0 or offset > row.size:
            raise invalid(f"offset {offset} is past the end of the file ({row.size} bytes)")
        gone = f"job {_job_id(row.stage_id)} has no result {row.index}"
        return file_chunks(self._file(row), offset, row.size, chunk, gone=gone)

    def path(self, stage: StageLike, index: int) -> Path:
        """Where a complete result's bytes are (internal use: e.g. to hand it to a later stage)."""
        return self._file(self.get(stage, index))

    # Removal.

    async def expire(self, now: float | None = None) -> int:
        """Deletes the results of stages whose ``results_expire_at`` has passed; returns how many files.

        The queries run on the database thread and the folders are removed in a file thread, one
        stage at a time, so neither the event loop nor other queries wait while a disk is emptied.
        """
        now = self.clock() if now is None else now
        removed = 0
        for job_id in await runner.run(_expired_job_ids, now):
            await _in_thread(shutil.rmtree, self.root / job_id, True)
            removed += await runner.run(_delete_rows, job_id)
        return removed

    def delete(self, stage: StageLike) -> int:
        """Deletes a stage's result files, then their rows; returns how many rows went."""
        job_id = _job_id(stage)
        shutil.rmtree(self.root / job_id, ignore_errors=True)
        return _delete_rows(job_id)

    # Helpers.

    def _find(self, job_id: str, name: str, kind: int) -> models.Result | None:
        return models.Result.get_or_none(
            (models.Result.stage == job_id) & (models.Result.kind == kind) & (models.Result.name == name)
        )

    def _file(self, row: models.Result) -> Path:
        """The row's file, built from job id and index only (never from anything a pod sent)."""
        return self.root / _job_id(row.stage_id) / str(int(row.index))

    def _reconcile(self, row: models.Result) -> int:
        """After a crash the database may count bytes that never reached the disk: trust the smaller."""
        try:
            on_disk = self._file(row).stat().st_size
        except FileNotFoundError:
            on_disk = 0
            self._file(row).parent.mkdir(parents=True, exist_ok=True)
            self._file(row).write_bytes(b"")
        if on_disk < row.received:
            models.Result.update(received=on_disk).where(models.Result.id == row.id).execute()
            row.received = on_disk
        return row.received

    def _truncate(self, row: models.Result) -> None:
        path = self._file(row)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb"):
            pass


def _job_id(stage: StageLike) -> str:
    """The stage's job id, checked to be a safe single path component."""
    job_id = stage if isinstance(stage, str) else stage.job_id
    if not _JOB_ID.fullmatch(job_id) or job_id in (".", ".."):
        raise ValueError("a job id must be a plain file name")
    return job_id


def _validate_header(header: pod_pb2.UploadHeader, max_size: int) -> str:
    """Refuses a malformed header; returns the lower-case sha256."""
    _check_name_and_kind(header.name, header.kind)
    if header.size > max_size:
        raise invalid(f"the upload is larger than this node accepts ({max_size} bytes)")
    sha256 = header.sha256.lower()
    if not _SHA256.fullmatch(sha256):
        raise invalid("the upload's sha256 must be 64 hex digits")
    return sha256


def as_upload_kind(kind: int) -> pod_pb2.UploadKind:
    """A kind kept as an int (a ResultKind, a database column) as the pods' UploadKind: the two
    share their numbers, and an enum value is a plain int at run time; the stubs' enum classes
    are each their own type."""
    return cast(pod_pb2.UploadKind, kind)


def as_result_kind(kind: int) -> compute_pb2.ResultKind:
    """A kind kept as an int (an UploadKind, a database column) as the consumers' ResultKind."""
    return cast(compute_pb2.ResultKind, kind)


def _check_name_and_kind(name: str, kind: int) -> None:
    if not name:
        raise invalid("the upload has no name")
    if len(name) > MAX_NAME or "/" in name or "\\" in name or name in (".", "..") or _CONTROL.search(name):
        raise invalid(f"the upload name must be a plain file name of at most {MAX_NAME} characters")
    if kind not in KINDS:
        raise invalid("the upload kind must be output or one of the logs")


def _write_transaction() -> AbstractContextManager[Any]:
    """A transaction that takes the write lock up front on SQLite, so concurrent uploads queue, not fail."""
    db = models.database_proxy.obj
    if isinstance(db, pw.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


async def file_chunks(
    path: Path, offset: int, size: int, chunk: int = DEFAULT_CHUNK, *, gone: str | None = None
) -> AsyncIterator[bytes]:
    """The bytes of ``path`` from ``offset`` up to ``size`` (never past it: a result is never served
    beyond its verified size), read in a thread one chunk ahead, so the disk reads the next chunk
    while the caller sends this one. NOT_FOUND (``gone``) when the file is not there."""
    try:
        fd = await _in_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise not_found(gone or "the file is gone") from None
    ahead: asyncio.Future[bytes] | None = None
    try:
        position = offset
        if position < size:
            ahead = _pread(fd, min(chunk, size - position), position)
        while ahead is not None:
            data = await ahead
            ahead = None
            if not data:
                return
            position += len(data)
            if position < size:
                ahead = _pread(fd, min(chunk, size - position), position)
            yield data
    finally:
        if ahead is not None:
            await asyncio.gather(ahead, return_exceptions=True)  # its thread still reads fd
        os.close(fd)


class _Writer:
    """The open file of one upload and the running SHA-256 of every byte in it; its methods block
    (they run in threads, or on the database thread for :meth:`ResultStore.store`). The bytes go
    to the file through a :class:`c2d.bulkio.BulkWriter` (around the page cache); ``position``
    counts those in the file, so a record of it never leads the disk."""

    def __init__(self, path: Path, received: int) -> None:
        """Opens the file at ``received``: what lies past it is cut off (an interrupted write the
        database never counted), and the stored prefix is hashed once, so the digest stays whole."""
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise not_found(GONE) from None
        try:
            os.ftruncate(self.fd, received)
            self.digest = hashlib.sha256()
            hashed = 0
            while hashed < received:
                block = os.pread(self.fd, min(HASH_BLOCK, received - hashed), hashed)
                if not block:  # shorter than the database says: _reconcile ran before, so it shrank since
                    raise RequestError(
                        grpc.StatusCode.ABORTED,
                        "the stored bytes changed meanwhile: ask for the offset again",
                    )
                self.digest.update(block)
                hashed += len(block)
            self.bulk = BulkWriter(self.fd, received)
        except BaseException:
            os.close(self.fd)
            raise
        self.dropped = False

    @property
    def position(self) -> int:
        return 0 if self.dropped else self.bulk.position

    def write(self, data: bytes) -> None:
        """Appends ``data`` to the file (staged: in the file once a buffer fills, or at flush)."""
        self.bulk.write(data)

    def hash(self, data: bytes) -> None:
        """Adds ``data`` to the running SHA-256 (may run beside :meth:`write`: both release the GIL)."""
        self.digest.update(data)

    def flush(self) -> None:
        """Everything staged into the file."""
        self.bulk.flush()

    def seal(self, sha256: str, directories: tuple[Path, ...]) -> bool:
        """True once the bytes match ``sha256`` and are durable with the directory entries leading
        to them; on a mismatch the bytes are dropped (the file emptied) and False."""
        self.flush()
        if self.digest.hexdigest() != sha256:
            os.ftruncate(self.fd, 0)
            self.dropped = True
            return False
        os.fsync(self.fd)
        try:
            for directory in directories:
                _fsync(directory)
        except FileNotFoundError:  # the stage's results were deleted meanwhile
            raise not_found(GONE) from None
        return True

    def close(self) -> None:
        self.bulk.close()
        os.close(self.fd)


class _Stream:
    """One upload stream's loop side: chunks handed to its writer's thread one at a time, while
    the next arrives; progress recorded every ``CHECKPOINT_BYTES`` and at the end."""

    def __init__(self, store: ResultStore, row: models.Result) -> None:
        self.store = store
        self.row = row
        self.writer: _Writer | None = None
        self.pending: asyncio.Future[Any] | None = None
        self.checkpoint: asyncio.Future[None] | None = None
        self.recorded = row.received

    async def run(self, chunks: AsyncIterable[bytes]) -> models.Result:
        row = self.row
        try:
            self.writer = await _in_thread(_Writer, self.store._file(row), row.received)
            queued = row.received
            async for data in chunks:
                queued += len(data)
                if queued > row.size:
                    raise invalid(f"the upload is longer than its declared size of {row.size} bytes")
                if self.pending is not None:
                    await self.pending
                self._checkpoint()
                self.pending = asyncio.gather(
                    _run_in_thread(self.writer.write, data), _run_in_thread(self.writer.hash, data)
                )
            if self.pending is not None:
                await self.pending
            if queued == row.size:
                return await self._finish()
        finally:
            await asyncio.shield(asyncio.ensure_future(self._close()))
        return row

    def _checkpoint(self) -> None:
        """Records what the writer has written, every CHECKPOINT_BYTES, without waiting for it."""
        assert self.writer is not None
        written = self.writer.position
        if written - self.recorded < CHECKPOINT_BYTES or (self.checkpoint and not self.checkpoint.done()):
            return
        self.recorded = written
        self.checkpoint = asyncio.ensure_future(runner.run(_progress, self.row.id, written))

    async def _finish(self) -> models.Result:
        """Verifies and seals the file in a thread, then completes the row (or restarts it at 0)."""
        assert self.writer is not None
        row = self.row
        if self.checkpoint is not None:
            await asyncio.gather(self.checkpoint, return_exceptions=True)
        sealed = await _in_thread(self.writer.seal, row.sha256, self.store._synced_dirs(row))
        self.recorded = self.writer.position  # sealed: size; dropped: 0 (both recorded by _sealed)
        return await runner.run(_sealed, row.id, row.size, sealed)

    async def _close(self) -> None:
        """However the stream ended: the last write settled, the file closed, the bytes recorded."""
        if self.pending is not None:
            await asyncio.gather(self.pending, return_exceptions=True)
        if self.checkpoint is not None:
            await asyncio.gather(self.checkpoint, return_exceptions=True)
        writer = self.writer
        if writer is None:
            return
        with contextlib.suppress(OSError):  # a full disk, say: what reached the file is recorded
            await _in_thread(writer.flush)
        await _in_thread(writer.close)
        self.row.received = writer.position
        if writer.position != self.recorded:
            self.recorded = writer.position
            await runner.run(_progress, self.row.id, writer.position)


def _progress(result_id: int, received: int) -> None:
    """Records the bytes an upload stream has written (a unit of the database thread)."""
    models.Result.update(received=received).where(
        (models.Result.id == result_id) & (models.Result.complete == False)
    ).execute()


def _sealed(result_id: int, size: int, sealed: bool) -> models.Result:
    """Completes a verified, fsynced upload; or records that its bytes were dropped (a unit of the
    database thread). NOT_FOUND when the stage's results were deleted meanwhile."""
    if sealed:
        updated = (
            models.Result.update(received=size, complete=True).where(models.Result.id == result_id).execute()
        )
    else:
        updated = models.Result.update(received=0).where(models.Result.id == result_id).execute()
    if not updated:
        raise not_found(GONE)
    if not sealed:
        raise invalid("sha256 mismatch: the stored bytes were dropped; upload the file again from 0")
    return models.Result.get_by_id(result_id)


_files_lock = threading.Lock()
_files: ThreadPoolExecutor | None = None


def _file_threads() -> ThreadPoolExecutor:
    """The threads result files are written, hashed, synced and read in (never the loop's)."""
    global _files
    with _files_lock:
        if _files is None:
            _files = ThreadPoolExecutor(max_workers=FILE_THREADS, thread_name_prefix="c2d-files")
        return _files


def _expired_job_ids(now: float) -> list[str]:
    """The stages that hold results past their ``results_expire_at``."""
    expired = (
        models.Stage.select(models.Stage.job_id)
        .join(models.Result)
        .where(models.Stage.results_expire_at.is_null(False) & (models.Stage.results_expire_at < now))
        .distinct()
    )
    return [stage.job_id for stage in expired]


def _delete_rows(job_id: str) -> int:
    """Deletes a stage's result rows; returns how many went."""
    # Result.delete() builds exactly this; the stubs declare it in a way mypy cannot read off a class.
    return int(pw.ModelDelete(models.Result).where(models.Result.stage == job_id).execute())


def _run_in_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` started now in a file thread (a future: the caller awaits it later)."""
    return asyncio.get_running_loop().run_in_executor(_file_threads(), fn, *args)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await _run_in_thread(fn, *args)


def _pread(fd: int, size: int, position: int) -> asyncio.Future[bytes]:
    return _run_in_thread(os.pread, fd, size, position)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def result_file(row: models.Result) -> compute_pb2.ResultFile:
    return compute_pb2.ResultFile(
        index=row.index, name=row.name, kind=as_result_kind(row.kind), size=row.size, sha256=row.sha256
    )
