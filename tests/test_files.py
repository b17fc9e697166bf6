"""rkcompile.files: the one reader (regular files, bounded, never blocking) and the one writer (atomic, mode kept)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rkcompile.files import FileError, read_bytes, same_file, write_file

ROOT = Path(__file__).resolve().parents[1]


def snapshot(path: Path) -> tuple[bytes, int]:
    """Content and permission bits: what 'untouched' means."""
    return path.read_bytes(), os.stat(path).st_mode & 0o7777


def only(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------- writing
def test_write_replaces_atomically_and_keeps_the_mode(tmp_path: Path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    os.chmod(target, 0o600)
    write_file(target, "new")
    assert snapshot(target) == (b"new", 0o600)
    assert only(tmp_path) == ["out.txt"]


def test_new_file_gets_the_umask_mode(tmp_path: Path):
    old = os.umask(0o027)
    try:
        write_file(tmp_path / "a.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert snapshot(tmp_path / "a.bin") == (b"\x00\x01", 0o640)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt(), SystemExit(143)])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, failure: BaseException):
    target = tmp_path / "model.pt"
    target.write_bytes(b"precious")
    os.chmod(target, 0o640)

    def half(f):
        f.write(b"half a fi")
        raise failure

    with pytest.raises(FileError if isinstance(failure, OSError) else type(failure)) as info:
        write_file(target, half)
    if isinstance(failure, OSError):
        assert str(info.value) == f"cannot write {target}: [Errno 28] No space left on device"
    assert snapshot(target) == (b"precious", 0o640)
    assert only(tmp_path) == ["model.pt"]


def test_refuses_an_input_by_name_symlink_and_hard_link(tmp_path: Path):
    spec = tmp_path / "net.yaml"
    spec.write_text("name: x\n")
    (tmp_path / "link.yaml").symlink_to(spec)
    os.link(spec, tmp_path / "hard.yaml")
    for target in ("net.yaml", "link.yaml", "hard.yaml", "./sub/../net.yaml"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(FileError) as info:
            write_file(tmp_path / target, "clobbered", inputs=[spec])
        assert str(info.value) == (f"cannot write {tmp_path / target}: it is the input file {spec}; "
                                   "write the result to another file")
    assert spec.read_text() == "name: x\n"


def test_writing_through_a_symlink_keeps_the_link(tmp_path: Path):
    real = tmp_path / "real.svg"
    real.write_text("old")
    (tmp_path / "link.svg").symlink_to(real)
    write_file(tmp_path / "link.svg", "new")
    assert (tmp_path / "link.svg").is_symlink() and real.read_text() == "new"


def test_refuses_directories_and_special_files(tmp_path: Path):
    with pytest.raises(FileError, match=r": it is a directory, not a regular file$"):
        write_file(tmp_path, "x")
    with pytest.raises(FileError, match=r"^cannot write /dev/null: it is a character device, not a regular file$"):
        write_file("/dev/null", "x")
    with pytest.raises(FileError, match=r"^cannot write .*/no/such/dir/x.svg: \[Errno 2\] No such file or directory$"):
        write_file(tmp_path / "no" / "such" / "dir" / "x.svg", "x")


def test_same_file():
    assert same_file("specs/../specs/pendulum-odenet.yaml", ROOT / "specs" / "pendulum-odenet.yaml")
    assert not same_file(ROOT / "specs" / "pendulum-odenet.yaml", ROOT / "specs" / "spirals-rk4.yaml")


# ---------------------------------------------------------------- reading
def test_reads_regular_files_within_the_bound(tmp_path: Path):
    f = tmp_path / "a.yaml"
    f.write_bytes(b"x" * 10)
    assert read_bytes(f, limit=10) == b"x" * 10
    with pytest.raises(FileError, match=r"^cannot read .*a.yaml: larger than 9 bytes \(10\)$"):
        read_bytes(f, limit=9)


def test_refuses_fifos_devices_and_directories_without_blocking(tmp_path: Path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(FileError, match=r"^cannot read .*pipe.yaml: is a FIFO, expected a regular YAML file$"):
        read_bytes(fifo, limit=100, what="YAML file")
    with pytest.raises(FileError, match=r"^cannot read /dev/zero: is a character device, expected a regular file$"):
        read_bytes("/dev/zero", limit=100)
    with pytest.raises(FileError, match=r"is a directory, expected a regular file$"):
        read_bytes(tmp_path, limit=100, what="regular file")
    with pytest.raises(FileError, match=r"no such file$"):
        read_bytes(tmp_path / "missing", limit=100)
    assert time.perf_counter() - start < 10


# ---------------------------------------------------------------- SIGTERM in the CLI
def test_sigterm_during_a_write_exits_cleanly_and_leaves_the_old_file(tmp_path: Path):
    """A write that SIGTERM interrupts: exit 143, one line, the old file as it was, no temp file."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    script = (
        "import os, signal, sys, time\n"
        "from rkcompile.cli import _terminate\n"
        "from rkcompile.files import write_file\n"
        "signal.signal(signal.SIGTERM, _terminate)\n"
        "def slow(f):\n"
        "    f.write(b'partial')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(30)\n"
        f"write_file({str(target)!r}, slow)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"writing\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert err.decode() == "error: terminated (SIGTERM); no output file was replaced\n"
    assert target.read_bytes() == b"old" and only(tmp_path) == ["out.bin"]
