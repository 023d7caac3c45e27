"""c2d.bulkio: files written around the page cache, byte for byte what was written, from any offset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from c2d import bulkio
from c2d.bulkio import ALIGN, STAGE_BYTES, BulkWriter, keep_freed_buffers

SIZES = [1, ALIGN - 1, ALIGN, STAGE_BYTES, STAGE_BYTES - 7, 3 * ALIGN + 5, 2 * STAGE_BYTES + 1]


def write_in_pieces(path: Path, start: int, data: bytes) -> BulkWriter:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, start)
        writer = BulkWriter(fd, start)
        at, n = 0, 0
        while at < len(data):
            size = SIZES[n % len(SIZES)]
            before = writer.position
            writer.write(data[at : at + size])
            assert before <= writer.position <= start + at + size  # never counts what it did not write
            assert os.fstat(fd).st_size >= writer.position
            at, n = at + size, n + 1
        writer.flush()
        assert writer.position == start + len(data)
        writer.close()
        return writer
    finally:
        os.close(fd)


@pytest.mark.parametrize("start", [0, 1, ALIGN, ALIGN + 17, STAGE_BYTES + 3])
@pytest.mark.parametrize("direct", [True, False])
def test_what_is_written_is_in_the_file(
    tmp_path: Path, start: int, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct:
        monkeypatch.setattr(bulkio, "O_DIRECT", 0)  # as on a system without it
    path = tmp_path / "f"
    prefix = os.urandom(start)
    path.write_bytes(prefix)
    data = os.urandom(5 * STAGE_BYTES + 12345)
    writer = write_in_pieces(path, start, data)
    assert not writer.direct
    assert path.read_bytes() == prefix + data


def test_direct_writes_where_the_file_system_has_them(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        writer = BulkWriter(fd, 0)
        probe = (
            os.open(tmp_path / "probe", os.O_RDWR | os.O_CREAT | bulkio.O_DIRECT) if bulkio.O_DIRECT else -1
        )
    except OSError:
        probe = -1
    if probe < 0:
        assert not writer.direct
    else:
        os.close(probe)
        assert writer.direct
    writer.close()
    os.close(fd)


def test_a_refused_direct_write_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes the O_DIRECT flag but refuses the write itself (EINVAL)."""
    real = os.pwrite
    refused = []

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        if bulkio.fcntl.fcntl(fd, bulkio.fcntl.F_GETFL) & bulkio.O_DIRECT:
            refused.append(offset)
            raise OSError(22, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    path = tmp_path / "f"
    data = os.urandom(3 * STAGE_BYTES + 99)
    write_in_pieces(path, 0, data)
    assert path.read_bytes() == data
    assert refused in ([], [0])  # at most the first staged write was refused


def test_malloc_tuning_is_idempotent() -> None:
    first = keep_freed_buffers()
    assert keep_freed_buffers() == first
