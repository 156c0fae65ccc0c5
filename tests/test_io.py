"""Atomic writes: complete files with ordinary permissions, nothing left on failure."""

import os

import pytest

from ienet_tf.io import write_atomically


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
