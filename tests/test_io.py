"""Atomic writes: complete files with ordinary permissions, nothing left on failure."""

import os

import pytest

from ienet_tf.errors import DataError
from ienet_tf.io import read_bytes, write_atomically


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
