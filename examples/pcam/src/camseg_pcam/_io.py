"""Atomic file writes of the example: a ``*.part`` file beside the target, then a rename.

Every file the example writes (synthetic PCam files, decompressed caches, figures,
maps and masks of ``predict``) goes through :func:`atomic_target`:

- the part file is created like :func:`open` creates files, so its mode is
  ``0o666`` less the umask (``tempfile.mkstemp`` would make it ``0o600``), and
  :func:`os.replace` keeps that mode for the target;
- on any exception, ``KeyboardInterrupt`` included, the part file is removed; while
  a write is under way in the main thread, ``SIGTERM`` (``kill PID``) is turned into
  :class:`SystemExit` when the process has no handler of its own, so the same cleanup
  runs instead of the process dying with the part file left behind;
- a process killed outright (``kill -9``, power loss) cannot clean up: its part
  files carry its process id (``NAME.<pid>-<token>.part``), and the next write of
  the same target removes part files whose process no longer runs (and part files
  of the older ``NAME.<random>.part`` form).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

__all__ = ["atomic_target", "atomic_write_text", "remove_stale_parts", "scratch_part"]

_OURS = re.compile(r"^(\d+)-[0-9a-f]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def remove_stale_parts(target: str | os.PathLike[str]) -> list[Path]:
    """Remove part files of ``target`` left by processes that no longer run.

    Args:
        target: the final path of a write.

    Returns:
        The removed part files.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.h5.999999999-ab12.part").write_bytes(b"x")  # no such process
        >>> [p.name for p in remove_stale_parts(folder / "a.h5")]
        ['a.h5.999999999-ab12.part']
    """
    t = Path(target)
    removed: list[Path] = []
    if not t.parent.is_dir():
        return removed
    prefix = t.name + "."
    for p in t.parent.iterdir():
        name = p.name
        if not (name.startswith(prefix) and name.endswith(".part")):
            continue
        middle = name[len(prefix) : -len(".part")]
        if "." in middle:  # the part file of a longer name (e.g. NAME.gz)
            continue
        m = _OURS.match(middle)
        if m is not None and _alive(int(m.group(1))):
            continue
        try:
            p.unlink()
        except FileNotFoundError:  # removed by someone else meanwhile
            continue
        removed.append(p)
    return removed


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while the block runs, where that is safe."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # the process handles SIGTERM itself: leave it
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _new_part(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(target)
    part = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    # O_EXCL: never reuse a file; mode 0o666 filtered by the umask, as open() does
    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return part


@contextmanager
def atomic_target(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file atomically: yield a part file, rename it to ``target`` on success.

    The folder is created; stale part files of ``target`` are removed first
    (:func:`remove_stale_parts`). The part file exists (empty) when the block
    starts; write it by path (h5py, PIL, tifffile) or open it.

    Args:
        target: the final path.

    Yields:
        The part file's path, in ``target``'s folder.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_target(p) as part:
        ...     _ = part.write_text("hello")
        >>> p.read_text(), [q.name for q in p.parent.iterdir()]
        ('hello', ['a.txt'])
    """
    t = Path(target)
    part = _new_part(t)
    try:
        with _sigterm_as_exit():
            yield part
            os.replace(part, t)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@contextmanager
def scratch_part(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A part file beside ``target`` that is removed when the block ends, whatever happens.

    For an intermediate file (e.g. the HDF5 file that is then gzip-wrapped).

    Args:
        target: the path the scratch file is named after.

    Yields:
        The part file's path.

    Example:
        >>> import tempfile
        >>> with scratch_part(Path(tempfile.mkdtemp()) / "a.h5") as part:
        ...     _ = part.write_bytes(b"x")
        >>> part.exists()
        False
    """
    part = _new_part(Path(target))
    try:
        with _sigterm_as_exit():
            yield part
    finally:
        part.unlink(missing_ok=True)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    r"""Write ``text`` to ``target`` atomically (see :func:`atomic_target`).

    Args:
        target: the final path.
        text: the content (UTF-8).

    Returns:
        ``target`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> p = atomic_write_text(Path(tempfile.mkdtemp()) / "a.csv", "x,y\n")
        >>> p.read_text()
        'x,y\n'
    """
    t = Path(target)
    with atomic_target(t) as part, open(part, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return t
