"""selfrepair.files: a file a command writes is whole or absent, and a place that cannot take
it is one SelfRepairError naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfrepair.errors import SelfRepairError
from selfrepair.files import atomic_file, make_directory, write_atomically


def test_a_write_cut_short_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as handle:
            handle.write("half of the new")
            raise KeyboardInterrupt  # as a signal would, mid-write
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "results.jsonl"
    ]


def test_the_file_keeps_its_mode_and_a_link_keeps_pointing_at_it(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o751)
    link = tmp_path / "link.sh"
    link.symlink_to(script)
    write_atomically(link, "echo new\n")
    assert link.is_symlink() and script.read_text() == "echo new\n"
    assert script.stat().st_mode & 0o777 == 0o751


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/out.jsonl", "no such directory"),
        (".", "it is a directory"),
        (
            "/dev/full",
            "no space left on the device",
        ),  # a device is written directly, never replaced
    ],
)
def test_a_place_that_cannot_take_the_file_is_one_error(
    tmp_path: Path, where: str, message: str
) -> None:
    path = Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(SelfRepairError, match=message):
        write_atomically(path, "x" * 100_000)
    assert Path("/dev/full").is_char_device()


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SelfRepairError, match="a file is in the way"):
        make_directory(tmp_path / "file")
    with pytest.raises(SelfRepairError, match="cannot make the folder /proc/selfrepair-test"):
        make_directory(Path("/proc/selfrepair-test"))
