"""The results store: files a stage's pods upload (outputs and logs), kept until the stage's results expire.

A result's bytes live at ``<root>/<job_id>/<index>``; the name the pod gave
it is kept only in the database, so whatever a pod calls its file, it cannot
write outside its stage's folder. Uploads are resumable: ``received`` counts
the bytes stored, and an upload continues exactly there. A file counts only
once its size and SHA-256 are verified and it has been fsynced.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

import peewee as pw

from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from c2d.quoting import quoted
from host.errors import invalid, not_found, precondition
from host.store import models

DEFAULT_MAX_SIZE = 10 * 1024**3
DEFAULT_CHUNK = 256 * 1024
MAX_NAME = 255
# UploadKind and ResultKind share their numbers.
KINDS = frozenset(
    {
        compute_pb2.RESULT_KIND_OUTPUT,
        compute_pb2.RESULT_KIND_ALGORITHM_LOG,
        compute_pb2.RESULT_KIND_CONFIGURATION_LOG,
        compute_pb2.RESULT_KIND_PUBLISHING_LOG,
    }
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RETRIES = 5
GONE = "this upload was deleted (its stage's results expired or were removed)"

StageLike = models.Stage | str


class ResultStore:
    """Result files of every stage under ``root``, described by the ``Result`` table."""

    def __init__(self, root: Path, max_size: int = DEFAULT_MAX_SIZE, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.max_size = max_size
        self.clock = clock
        self.root.mkdir(parents=True, exist_ok=True)

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
            path=f"{job_id}/{index}",
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
        """Keeps ``data`` whole as a result of the stage: what the node itself saves (an engine's log)."""
        header = pod_pb2.UploadHeader(
            name=name,
            kind=kind,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),  # type: ignore[arg-type]
        )
        row = self.begin(stage, header)
        if not row.complete:
            if data:
                self.write(row, data)
            self.finish(row)
        return row

    def write(self, result: models.Result, data: bytes) -> int:
        """Appends ``data`` at ``received``; returns the new ``received``. Never past the declared size."""
        if result.complete:
            raise precondition(f"result {quoted(result.name)} is already complete")
        end = result.received + len(data)
        if end > result.size:
            raise invalid(f"the upload is longer than its declared size of {result.size} bytes")
        try:
            with open(self._file(result), "r+b") as f:
                f.seek(result.received)
                f.write(data)
                f.truncate()  # bytes past received (an interrupted earlier write) are not the file's
        except FileNotFoundError:
            raise not_found(GONE) from None
        updated = (
            models.Result.update(received=end)
            .where((models.Result.id == result.id) & (models.Result.received == result.received))
            .execute()
        )
        if not updated:
            raise precondition(f"another upload of {quoted(result.name)} is in progress")
        result.received = end
        return end

    def finish(self, result: models.Result) -> models.Result:
        """Verifies size and SHA-256, makes the file durable and marks it complete.

        On a hash mismatch the stored bytes are dropped, so the upload restarts from 0.
        """
        if result.complete:
            return result
        if result.received != result.size:
            raise precondition(f"the upload is incomplete: {result.received} of {result.size} bytes received")
        path = self._file(result)
        try:
            digest = _sha256_of(path)
        except FileNotFoundError:
            raise not_found(GONE) from None
        if digest != result.sha256:
            self._truncate(result)
            models.Result.update(received=0).where(models.Result.id == result.id).execute()
            result.received = 0
            raise invalid("sha256 mismatch: the stored bytes were dropped; upload the file again from 0")
        for synced in (path, path.parent, self.root):  # the bytes, and the directory entries leading to them
            _fsync(synced)
        models.Result.update(complete=True).where(models.Result.id == result.id).execute()
        result.complete = True
        return result

    # Reading.

    def list(self, stage: StageLike) -> list[compute_pb2.ResultFile]:
        """The stage's complete results, by index."""
        query = (
            models.Result.select()
            .where((models.Result.stage == _job_id(stage)) & (models.Result.complete == True))
            .order_by(models.Result.index)
        )
        return [_to_pb(row) for row in query]

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

    def read(
        self, stage: StageLike, index: int, offset: int = 0, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[bytes]:
        """The result's bytes from ``offset`` in chunks; validated now, read lazily."""
        row = self.get(stage, index)
        if offset < 0 or offset > row.size:
            raise invalid(f"offset {offset} is past the end of the file ({row.size} bytes)")
        path = self._file(row)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise not_found(f"job {_job_id(stage)} has no result {index}") from None
        return _chunks(f, offset, row.size, chunk)

    def path(self, stage: StageLike, index: int) -> Path:
        """Where a complete result's bytes are (internal use: e.g. to hand it to a later stage)."""
        return self._file(self.get(stage, index))

    # Removal.

    def expire(self, now: float | None = None) -> int:
        """Deletes the results of stages whose ``results_expire_at`` has passed; returns how many files."""
        now = self.clock() if now is None else now
        expired = (
            models.Stage.select(models.Stage.job_id)
            .join(models.Result)
            .where(models.Stage.results_expire_at.is_null(False) & (models.Stage.results_expire_at < now))
            .distinct()
        )
        return sum(self.delete(stage.job_id) for stage in list(expired))

    def delete(self, stage: StageLike) -> int:
        """Deletes a stage's result files, then their rows; returns how many rows went."""
        job_id = _job_id(stage)
        shutil.rmtree(self.root / job_id, ignore_errors=True)
        return models.Result.delete().where(models.Result.stage == job_id).execute()

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


def _chunks(f: BinaryIO, offset: int, size: int, chunk: int) -> Iterator[bytes]:
    """Reads at most ``size - offset`` bytes: a file is never served past its verified size."""
    with f:
        f.seek(offset)
        left = size - offset
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_pb(row: models.Result) -> compute_pb2.ResultFile:
    return compute_pb2.ResultFile(
        index=row.index, name=row.name, kind=row.kind, size=row.size, sha256=row.sha256
    )
