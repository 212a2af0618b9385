"""The CLI's error handling: a user's mistake is one line naming the path, not a traceback."""

from __future__ import annotations

from lmisa.cli.app import _one_line


def test_os_errors_read_as_the_path_and_the_reason() -> None:
    rename = IsADirectoryError(21, "Is a directory", "/data/.out.json.1a2b.tmp", None, "/data/out.json")
    assert _one_line(rename) == "/data/out.json: Is a directory"  # the destination, not the temporary file
    assert _one_line(FileExistsError(17, "File exists", "/data/x")) == "/data/x: File exists"
    assert _one_line(FileNotFoundError("/data/y: not found")) == "/data/y: not found"  # lmisa's own text stays
