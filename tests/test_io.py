"""Atomic writes (complete files with ordinary permissions, nothing left on failure), the
one exclusive lock, and reads that fail as one line."""

import os
import subprocess
import sys

import pytest

from ienet_tf.errors import DataError
from ienet_tf.io import LockHeld, exclusive_lock, read_bytes, write_atomically


def test_written_file_has_the_permissions_of_a_plain_open(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "a.json", "{}")
        with open(tmp_path / "b.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(umask)
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").read_text() == "{}"


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(TypeError):
        write_atomically(tmp_path / "a.bin", 3)  # not bytes or str
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_file_or_a_directory_is_one_line_naming_it(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"\x00\x01")
    assert read_bytes(tmp_path / "f.bin", "IDX file", DataError) == b"\x00\x01"
    with pytest.raises(DataError, match=r"^IDX file .*absent\.bin does not exist\.$"):
        read_bytes(tmp_path / "absent.bin", "IDX file", DataError)
    with pytest.raises(DataError, match=r"does not exist \(it is a directory\)\.$"):
        read_bytes(tmp_path, "IDX file", DataError)


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, wait=False) as fd:
        os.pwrite(fd, b"4242\n", 0)
        with pytest.raises(LockHeld) as held, exclusive_lock(lock, wait=False):
            pass  # flock: a second open of the file is a second holder, even in one process
        assert held.value.holder == "4242"
    with exclusive_lock(lock, wait=False) as fd:  # released with the block
        assert fd is not None


def test_a_dead_holders_lock_is_no_lock(tmp_path):
    lock = tmp_path / ".lock"
    script = "import sys; from ienet_tf.io import exclusive_lock\n"
    script += "with exclusive_lock(sys.argv[1]): sys.exit(0)"
    subprocess.run([sys.executable, "-c", script, str(lock)], check=True)
    assert lock.exists()
    with exclusive_lock(lock, wait=False) as fd:
        assert fd is not None


def test_a_folder_lock_serializes_writers_of_that_folder(tmp_path):
    with exclusive_lock(tmp_path) as fd:
        assert fd is not None
        with pytest.raises(LockHeld), exclusive_lock(tmp_path, wait=False):
            pass
