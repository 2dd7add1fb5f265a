"""Group commit (embkit.atomic_batch.BatchWriter): temporaries, one flush, then names; and the direct
reader for torch's zips (embkit.formats.stored_zip.parse_zip) against zipfile."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

import embkit
from embkit import Embedding, atomic, atomic_batch
from embkit.errors import EmbkitError, TargetExistsError, UnsafeFileError, WriteError
from embkit.formats import torchfile  # noqa: F401
from embkit.formats.stored_zip import parse_zip


def _names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_batch_writes_every_group_and_leaves_no_temporaries(tmp_path):
    groups = [[(str(tmp_path / f"f{i}.bin"), [b"head", bytes([i]) * 100])] for i in range(10)]
    errors = atomic_batch.write_many(groups)
    assert errors == [None] * 10
    assert _names(tmp_path) == sorted(f"f{i}.bin" for i in range(10))
    for i in range(10):
        assert (tmp_path / f"f{i}.bin").read_bytes() == b"head" + bytes([i]) * 100


def test_commit_publishes_progressively(tmp_path):
    bw = atomic_batch.BatchWriter(commit_every=4)
    for i in range(3):
        bw.submit([(str(tmp_path / f"f{i}"), b"x")])
    # nothing has a name before the commit: only hidden temporaries exist
    assert all(atomic.is_temp(n) for n in _names(tmp_path)) and len(_names(tmp_path)) == 3
    bw.submit([(str(tmp_path / "f3"), b"x")])  # the 4th file commits the batch
    assert _names(tmp_path) == ["f0", "f1", "f2", "f3"]
    bw.submit([(str(tmp_path / "f4"), b"x")])
    assert "f4" not in _names(tmp_path)
    assert bw.finish() == [None] * 5
    assert _names(tmp_path) == ["f0", "f1", "f2", "f3", "f4"]


def test_flush_happens_before_any_name(tmp_path, monkeypatch):
    """The data is made durable while the targets do not exist yet (names come after)."""
    seen: list[list[str]] = []
    real = atomic_batch._flush

    def watching(tmps):
        seen.append(_names(tmp_path))
        return real(tmps)

    monkeypatch.setattr(atomic_batch, "_flush", watching)
    if atomic_batch._syncfs() is None:
        pytest.skip("no syncfs here: each file is fsync'ed as it is written")
    errors = atomic_batch.write_many([[(str(tmp_path / f"t{i}"), b"data")] for i in range(5)])
    assert errors == [None] * 5
    assert len(seen) == 1 and len(seen[0]) == 5 and all(atomic.is_temp(n) for n in seen[0])
    assert _names(tmp_path) == [f"t{i}" for i in range(5)]


def test_existing_target_is_kept_without_overwrite(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    errors = atomic_batch.write_many([[(str(tmp_path / "a"), b"new")], [(str(tmp_path / "b"), b"new")]])
    assert isinstance(errors[0], TargetExistsError) and errors[1] is None
    assert (tmp_path / "a").read_bytes() == b"old"
    assert _names(tmp_path) == ["a", "b"]
    assert atomic_batch.write_many([[(str(tmp_path / "a"), b"new")]], overwrite=True) == [None]
    assert (tmp_path / "a").read_bytes() == b"new"


def test_a_failed_pair_leaves_nothing(tmp_path):
    pair = [(str(tmp_path / "one"), b"1"), (str(tmp_path / "missing" / "two"), b"2")]
    errors = atomic_batch.write_many([pair, [(str(tmp_path / "ok"), b"ok")]])
    assert isinstance(errors[0], WriteError) and errors[1] is None
    assert _names(tmp_path) == ["ok"]


def test_pair_all_or_nothing_when_second_target_appears(tmp_path):
    (tmp_path / "p_2").write_bytes(b"theirs")
    errors = atomic_batch.write_many([[(str(tmp_path / "p"), b"1"), (str(tmp_path / "p_2"), b"2")]])
    assert isinstance(errors[0], TargetExistsError)
    assert _names(tmp_path) == ["p_2"] and (tmp_path / "p_2").read_bytes() == b"theirs"


def test_portable_path_without_syncfs(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_batch, "_SYNCFS", [None])
    bw = atomic_batch.BatchWriter()
    assert bw._sync_each
    bw.submit([(str(tmp_path / "x"), b"abc")])
    assert bw.finish() == [None]
    assert (tmp_path / "x").read_bytes() == b"abc"


def test_failed_syncfs_falls_back_to_fsync_per_file(tmp_path, monkeypatch):
    calls = []

    def failing_syncfs(fd):
        calls.append(fd)
        return -1

    monkeypatch.setattr(atomic_batch, "_SYNCFS", [failing_syncfs])
    errors = atomic_batch.write_many([[(str(tmp_path / f"y{i}"), b"abc")] for i in range(3)])
    assert calls and errors == [None] * 3
    assert _names(tmp_path) == ["y0", "y1", "y2"]


def test_folders_by_syncfs_makes_the_names_durable_with_one_syncfs(tmp_path, monkeypatch):
    """A batch spread over many folders (ingest's content-addressed tree): after the names are
    given, one syncfs per file system instead of an fsync per folder."""
    calls: list[list[str]] = []

    def counting_syncfs(fd):
        calls.append(_names(tmp_path / "f0"))
        return 0

    monkeypatch.setattr(atomic_batch, "_SYNCFS", [counting_syncfs])
    fsynced: list[str] = []
    monkeypatch.setattr(atomic_batch, "fsync_dir", fsynced.append)
    folders = [tmp_path / f"f{i}" for i in range(8)]
    for folder in folders:
        folder.mkdir()
    with atomic_batch.BatchWriter(folders_by_syncfs=True) as bw:
        for folder in folders:
            bw.submit([(str(folder / "x"), b"abc")])
        assert bw.finish() == [None] * 8
    # one syncfs for the data (before the names), one for the names; no fsync per folder
    assert len(calls) == 2 and atomic.is_temp(calls[0][0]) and calls[1] == ["x"] and fsynced == []
    assert all((folder / "x").read_bytes() == b"abc" for folder in folders)


def test_interrupt_leaves_no_temporaries(tmp_path):
    def chunks():
        yield b"part"
        raise KeyboardInterrupt

    bw = atomic_batch.BatchWriter()
    bw.submit([(str(tmp_path / "done"), b"x")])
    with pytest.raises(KeyboardInterrupt):
        bw.submit([(str(tmp_path / "broken"), chunks())])
    assert _names(tmp_path) == []


def test_temp_names_are_unique_and_hidden(tmp_path):
    names = {atomic.temp_name(str(tmp_path / "t.pt")) for _ in range(1000)}
    assert len(names) == 1000
    assert all(os.path.basename(n).startswith(".t.pt") and atomic.is_temp(n) for n in names)
    assert atomic.temp_name("t.pt").startswith(".t.pt")  # same folder, even for a bare name


def test_writev_writes_every_chunk(tmp_path):
    chunks = [b"a" * 3, bytearray(b"b" * 5), memoryview(b"c" * 7), b""]
    atomic.write_bytes(tmp_path / "v", chunks)
    assert (tmp_path / "v").read_bytes() == b"aaabbbbbccccccc"


# -- the direct zip reader -------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_zip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("z") / "e.pt"
    rng = np.random.default_rng(0)
    embkit.write(Embedding("e", {"clip_l": rng.standard_normal((3, 768)).astype(np.float32)}), path)
    return path.read_bytes()


def _zipfile_members(data: bytes):
    zf = zipfile.ZipFile(io.BytesIO(data))
    return [(i.filename, zf.read(i)) for i in zf.infolist()]


def test_direct_reader_matches_zipfile(torch_zip):
    archive = parse_zip(torch_zip)
    assert [(m.filename, archive.read(m)) for m in archive.infolist()] == _zipfile_members(torch_zip)


def test_direct_reader_reads_deflated_members_and_refuses_ambiguous_layouts(torch_zip):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"x" * 100)
    archive = parse_zip(buf.getvalue())
    assert [(m.filename, archive.read(m)) for m in archive.infolist()] == _zipfile_members(buf.getvalue())
    with pytest.raises(UnsafeFileError, match="zip-layout"):
        parse_zip(b"junk" + torch_zip)  # prepended data: zipfile shifts every offset, miniz does not
    with_comment = bytearray(torch_zip)
    with_comment[-2:] = (3).to_bytes(2, "little")
    with pytest.raises(UnsafeFileError, match="zip-end-record"):
        parse_zip(bytes(with_comment) + b"abc")


def test_direct_reader_never_disagrees_with_zipfile(torch_zip):
    """Mutated files: the strict reader either refuses (an embkit error) or reads exactly what
    zipfile reads; a CRC mismatch is an error in both."""
    rng = np.random.default_rng(1)
    taken = 0
    for _ in range(4000):
        data = bytearray(torch_zip)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        data = bytes(data)
        try:
            archive = parse_zip(data)
            ours = [(m.filename, archive.read(m)) for m in archive.infolist()]
        except EmbkitError:
            continue
        taken += 1
        assert ours == _zipfile_members(data)
    # most changes hit member data (a CRC error in both) or a checked field; some land on fields
    # neither reader uses (times, attributes)
    assert taken > 20


# -- the lean plain-file reader convert goes through ----------------------------------------------


def test_convert_reader_matches_read_all_and_its_errors(tmp_path):
    from embkit.errors import BrokenFileError, EmbkitError
    from embkit.io import _read_bytes

    rng = np.random.default_rng(2)
    good = tmp_path / "good.pt"
    embkit.write(Embedding("good", {"clip_l": rng.standard_normal((2, 768)).astype(np.float32)}, metadata={"step": 3}), good)
    assert _read_bytes(str(good)) == good.read_bytes()
    mine, theirs = embkit.read_all(str(good)), embkit.read(good)
    assert len(mine) == 1 and mine[0].same_vectors(theirs) and mine[0].metadata == theirs.metadata
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(BrokenFileError, match="empty"):
        embkit.read_all(str(tmp_path / "empty.pt"))
    with pytest.raises(EmbkitError, match="no such file"):
        embkit.read_all(str(tmp_path / "missing.pt"))
    with pytest.raises(EmbkitError, match="is a directory"):
        _read_bytes(str(tmp_path))
