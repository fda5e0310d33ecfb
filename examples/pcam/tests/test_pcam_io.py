"""Atomic writes of the example: file modes, part files after failures, interrupts and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from camseg_pcam._io import atomic_target, atomic_write_text, remove_stale_parts
from camseg_pcam.data import FILE_PREFIX, PCamH5, find_pcam_files
from camseg_pcam.synthetic_io import write_pcam, write_split


def _parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part"))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("gzip_wrap", [False, True])
def test_synthetic_files_follow_the_umask(
    tmp_path: Path, umask: int, mode: int, gzip_wrap: bool
) -> None:
    old = os.umask(umask)
    try:
        written = write_pcam(tmp_path, n=(4, 2, 2), seed=0, gzip_wrap=gzip_wrap)
    finally:
        os.umask(old)
    files = [p for paths in written.values() for p in paths]
    assert len(files) == 12
    for p in files:
        assert p.stat().st_mode & 0o777 == mode, p.name
    assert _parts(tmp_path) == []
    if gzip_wrap:  # the uncompressed step is not left behind
        assert not any(p.suffix == ".h5" for p in tmp_path.iterdir())


def test_decompressed_cache_follows_the_umask(tmp_path: Path) -> None:
    x = np.zeros((3, 96, 96, 3), np.uint8)
    write_split(tmp_path, "test", x, np.array([0, 1, 0]), gzip_wrap=True)
    old = os.umask(0o027)
    try:
        files = find_pcam_files(tmp_path, "test", cache_dir=tmp_path / "cache")
    finally:
        os.umask(old)
    assert files.x.stat().st_mode & 0o777 == 0o640
    assert _parts(tmp_path) == []


def test_a_failed_write_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: h5py.Group, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C in the middle of the 'x' file

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        write_pcam(tmp_path, n=4, seed=0)
    with pytest.raises(KeyboardInterrupt):
        write_pcam(tmp_path, n=4, seed=0, gzip_wrap=True)
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_removes_part_files_of_dead_processes(tmp_path: Path) -> None:
    name = f"{FILE_PREFIX}train_x.h5"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = [
        tmp_path / f"{name}.{int(dead.stdout)}-0a1b2c3d.part",  # a killed writer
        tmp_path / f"{name}.k2j4_x9q.part",  # the older mkstemp naming
    ]
    live = tmp_path / f"{name}.{os.getppid()}-0a1b2c3d.part"  # a writer that still runs
    other = tmp_path / f"{name}.gz.{int(dead.stdout)}-0a1b2c3d.part"  # another target's
    for p in [*stale, live, other]:
        p.write_bytes(b"\0" * 1024)
    write_pcam(tmp_path, n=4, seed=0)
    assert _parts(tmp_path) == sorted([live.name, other.name])
    assert remove_stale_parts(tmp_path / f"{name}.gz") == [other]
    PCamH5(find_pcam_files(tmp_path, "train"))  # the files themselves are complete


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from camseg_pcam._io import atomic_target
    with atomic_target(Path(sys.argv[1])) as part:
        part.write_bytes(b"x" * 4096)
        print("writing", flush=True)
        time.sleep(60)
    """
)


def _start_writer(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_sigterm_during_a_write_removes_the_part_file(tmp_path: Path) -> None:
    target = tmp_path / "big.h5"
    proc = _start_writer(target)
    assert len(_parts(tmp_path)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert proc.stdout is not None
    proc.stdout.close()
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leaves_a_part_file_that_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "big.h5"
    proc = _start_writer(target)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()
    (left,) = _parts(tmp_path)
    assert left.startswith(f"big.h5.{proc.pid}-")
    atomic_write_text(target, "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5"]


def test_atomic_target_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_target(target) as part:
        part.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert _parts(tmp_path) == []
