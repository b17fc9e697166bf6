"""The one reader and the one writer of user files: regular files only, bounded reads, atomic replacing writes.

Reading: a path is `stat`ed first and must be a regular file no larger than the caller's bound; it is opened
with O_NONBLOCK (a FIFO swapped in after the check can never block) and the bound is enforced again while
reading. Writing: the bytes go to a temporary file in the target's directory, are fsync'ed, and the temporary
file is renamed over the target, so the old file is either intact or wholly replaced; the old file's mode is
kept; the temporary file is removed on any failure, KeyboardInterrupt and SystemExit included. A target that
is, or resolves to (symlink, hard link), one of the command's inputs is refused, as are directories and
special files.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Union

from rkcompile.errors import RkcompileError

__all__ = ["FileError", "read_bytes", "open_regular", "write_file", "write_figure", "same_file"]

#: What `write_file` accepts: bytes, text (written as UTF-8), or a function that writes into a binary file.
Content = Union[bytes, str, Callable[[BinaryIO], None]]


class FileError(RkcompileError):
    """A file cannot be read or written: missing, special, too large, one of the inputs, or an OS error."""

    def __init__(self, path: str | os.PathLike, reason: str, *, verb: str = "write") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot {verb} {self.path}: {reason}")


def _kind(mode: int) -> str:
    """Name the file type of a stat mode, for 'not a regular file' messages."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _os_reason(error: OSError) -> str:
    return f"[Errno {error.errno}] {error.strerror}" if error.errno and error.strerror else str(error)


# ---------------------------------------------------------------- reading
def open_regular(path: str | os.PathLike, *, limit: int, what: str = "file") -> BinaryIO:
    """Open a regular file of at most `limit` bytes for reading (never blocks); raise FileError otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileError(path, "no such file", verb="read") from None
    except (OSError, ValueError) as e:  # ValueError: an embedded NUL byte in the path
        raise FileError(path, _os_reason(e) if isinstance(e, OSError) else str(e), verb="read") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileError(path, f"is a directory, expected a {what}", verb="read")
    if not stat.S_ISREG(info.st_mode):
        raise FileError(path, f"is {_kind(info.st_mode)}, expected a regular {what}", verb="read")
    if info.st_size > limit:
        raise FileError(path, f"larger than {limit:,} bytes ({info.st_size:,})", verb="read")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FileError(path, _os_reason(e), verb="read") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:  # swapped between stat and open
        os.close(fd)
        raise FileError(path, "changed while being opened: not a regular file of the allowed size", verb="read")
    return os.fdopen(fd, "rb")


def read_bytes(path: str | os.PathLike, *, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file, refusing more than `limit` of them even if the file grows while read."""
    with open_regular(path, limit=limit, what=what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise FileError(path, _os_reason(e), verb="read") from None
    if len(data) > limit:
        raise FileError(path, f"larger than {limit:,} bytes", verb="read")
    return data


# ---------------------------------------------------------------- writing
def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name one file: the same path after resolving links, or the same inode."""
    try:
        if os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b):
            return True
    except (OSError, ValueError):
        pass
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def check_target(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """The file that writing `path` would replace (links resolved), or a FileError saying why it may not."""
    target = Path(os.path.realpath(path))
    for source in inputs:
        if source is not None and same_file(target, source):
            raise FileError(path, f"it is the input file {source}; write the result to another file")
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise FileError(path, _os_reason(e)) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise FileError(path, f"it is {_kind(info.st_mode)}, not a regular file")
    return target


def write_file(path: str | os.PathLike, content: Content, *, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Atomically replace `path` with `content` (temp file, fsync, rename); the old file survives any failure."""
    target = check_target(path, inputs)
    old = target.stat().st_mode if target.exists() else None
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = -1
    try:
        # O_EXCL: never write through a file or link someone else put there; 0o666 lets the umask decide
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old))
        with os.fdopen(fd, "wb") as f:
            fd = -1  # the file object owns it now
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:  # KeyboardInterrupt and SystemExit (SIGTERM) too: never leave the temp file
        if fd >= 0:
            os.close(fd)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise FileError(path, _os_reason(e)) from None
        raise
    _sync_directory(target.parent)
    return Path(path)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_figure(fig, path: str | os.PathLike, fmt: str = "png", *, inputs: Iterable[str | os.PathLike] = (),
                 dpi: int = 110) -> Path:
    """Render a matplotlib figure in memory (reproducible: no software/date stamp) and write it with `write_file`."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata={"Software": None} if fmt == "png" else {"Date": None})
    return write_file(path, buffer.getvalue(), inputs=inputs)
