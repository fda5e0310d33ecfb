"""The distribution: wheel and sdist build, the wheel installs and runs elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--wheel",
            "--sdist",
            "--outdir",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wheel = next(out.glob("camseg-*.whl"))
    sdist = next(out.glob("camseg-*.tar.gz"))
    return wheel, sdist


@pytest.mark.slow
def test_wheel_holds_the_package_and_nothing_else(dists):
    wheel, sdist = dists
    names = zipfile.ZipFile(wheel).namelist()
    assert "camseg/__init__.py" in names and "camseg/py.typed" in names
    assert "camseg/functional/weights.py" in names
    # the compiled kernels and their stub, not their source
    assert any(n.startswith("camseg/_cpu.") and n.endswith((".so", ".pyd")) for n in names)
    assert "camseg/_cpu.pyi" in names and "camseg/_cpu.c" not in names
    top = {n.split("/")[0] for n in names}
    assert top <= {"camseg", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/", "docs/")) for n in names)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("src/camseg/__init__.py") for m in members)
    # the sdist builds the extension: its source and setup.py travel with it
    assert any(m.endswith("src/camseg/_cpu.c") for m in members)
    assert any(m.endswith("/setup.py") for m in members)
    assert not any("/tests/" in m or "/benchmarks/" in m for m in members)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_gradcam(dists, tmp_path):
    wheel, _ = dists
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # the heavy dependencies (torch, numpy, scipy, scikit-image) come from this
    # environment's site-packages through a .pth file, so no download is needed;
    # camseg itself must come from the wheel.
    fresh_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(fresh_site) / "_deps_from_dev_env.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    script = textwrap.dedent(
        """
        import torch, camseg
        from torch import nn
        assert "fresh" in camseg.__file__, camseg.__file__
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        maps = camseg.GradCAM(model, "1")(torch.rand(2, 3, 16, 16), targets=1)
        assert maps.shape == (2, 16, 16) and float(maps.max()) == 1.0
        from camseg import _native
        assert _native.available() and "fresh" in _native._cpu.__file__
        masks = camseg.postprocess.cams_to_masks(maps, min_size=2)
        assert masks.dtype == torch.bool and masks.shape == (2, 16, 16)
        print("ok", camseg.__version__)
        """
    )
    res = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok ")
