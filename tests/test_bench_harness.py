"""The benchmark harness itself works: one tiny configuration end to end.

Runs ``benchmarks/bench_matrix.py``'s engine on ResNet-18 at 32 px, batch 2
(forward, autograd bound, Grad-CAM at 1 and 2 targets, memory in fresh
processes), writes the results files and the docs' tables, and checks the
schema; the target logic is checked on hand-made rows. No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str, path: Path) -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import _harness, _common, _plots
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pytest.importorskip("torchvision")
pytestmark = pytest.mark.slow  # ~10 s: imports, a forkserver, one tiny configuration


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    bm = _load("bench_matrix", BENCH / "bench_matrix.py")
    H = sys.modules["_harness"]
    cfg = H.Config("resnet18", 32, 2, ks=(1, 2), extractors=("GradCAM",), groups=("sweep",))
    messages: list[str] = []
    out = bm.run([cfg], suite="test", devices=["cpu"], repeats=2, warmup=1, log=messages.append)
    path = tmp_path_factory.mktemp("bench") / "matrix-test.json"
    bm.write_outputs(out, path)
    return out, path


def test_schema_and_rows(payload: tuple[dict[str, Any], Path]) -> None:
    out, path = payload
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(out))
    assert loaded["schema"] == "camseg-bench/1"
    for key in ("machine", "versions", "load", "settings", "configs", "targets", "elapsed_s"):
        assert key in loaded
    assert len(loaded["load"]["before"]) == 3
    assert set(loaded["versions"]["peers"]) == {"pytorch-grad-cam", "torchcam", "captum", "monai"}
    (cfg,) = loaded["configs"]
    assert (cfg["model"], cfg["side"], cfg["batch"], cfg["layer"]) == ("resnet18", 32, 2, "layer4")
    rows = {r["candidate"]: r for r in cfg["rows"]}
    assert set(rows) == {
        "forward (no_grad)",
        "autograd lower bound",
        "camseg GradCAM",
        "camseg GradCAM K=2",
    }
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["status"])
        t = row["time_s"]
        assert t["n"] == 2 and len(t["samples"]) == 2
        assert 0 < t["q1"] <= t["median"] <= t["q3"]
        assert isinstance(row["peak_mem_bytes"], int), row.get("memory_error")
        assert row["time_vs_forward"] > 0
    assert rows["forward (no_grad)"]["time_vs_forward"] == 1.0
    assert rows["camseg GradCAM K=2"]["k"] == 2 and rows["camseg GradCAM K=2"]["time_vs_k1"] > 0
    assert path.with_suffix(".md").read_text().startswith("# camseg benchmark matrix")
    assert path.with_suffix(".png").stat().st_size > 1000


def test_docs_tables_from_results(payload: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    out, _ = payload
    fig = _load("_docs_fig_benchmarks", ROOT / "docs" / "_scripts" / "fig_benchmarks.py")
    lines = fig.section("matrix-test", out, {"batch": "x.png"})
    text = "\n".join(lines)
    median = out["configs"][0]["rows"][0]["time_s"]["median"] * 1e3
    assert f"{median:.1f}" in text  # the numbers come from the results
    assert ".. figure:: /_figures/x.png" in text


def _cfg(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    base = {
        "id": "c",
        "model": "resnet18",
        "side": 96,
        "depth": "last",
        "dtype": "fp32",
        "device": "cpu",
        "family": "cnn",
        "groups": [],
    }
    return {**base, **kw, "rows": rows}


def _r(
    name: str, impl: str, method: str, t: float, mem: int | None = None, k: int = 1, **extra: Any
) -> dict[str, Any]:
    row = {
        "candidate": name,
        "impl": impl,
        "method": method,
        "k": k,
        "status": "ok",
        "time_s": {"median": t},
        **extra,
    }
    if mem is not None:
        row["peak_mem_bytes"] = mem
    return row


def test_targets_pass_and_fail() -> None:
    H = _load("_harness", BENCH / "_harness.py")
    rows = [
        _r("forward (no_grad)", "torch", "forward", 1.0, 100),
        _r(
            "camseg GradCAM",
            "camseg",
            "GradCAM",
            1.02,
            105,
            time_vs_forward=1.02,
            mem_vs_forward=1.05,
        ),
        _r(
            "camseg GradCAMPlusPlus",
            "camseg",
            "GradCAMPlusPlus",
            1.2,
            130,
            time_vs_forward=1.2,
            mem_vs_forward=1.3,
        ),
        _r("camseg GradCAM K=10", "camseg", "GradCAM", 1.5, k=10, time_vs_k1=1.47),
    ]
    checks = {t["target"]: t for t in H.evaluate_targets([_cfg(rows)])}
    assert checks["GradCAM time <= 1.05x forward"]["passed"] is True
    assert checks["GradCAM peak memory <= 1.10x forward"]["passed"] is True
    assert checks["GradCAMPlusPlus time <= 1.05x forward"]["passed"] is False
    assert checks["GradCAMPlusPlus peak memory <= 1.10x forward"]["passed"] is False
    assert checks["GradCAM K=10 time <= 1.3x K=1"]["passed"] is False

    peers = [
        _r("camseg GradCAM", "camseg", "GradCAM", 1.0, 100),
        _r("pytorch-grad-cam GradCAM", "pytorch-grad-cam", "GradCAM", 3.5, 400),
        _r("monai GradCAM", "monai", "GradCAM", 2.0, 400),
        _r("torchcam GradCAM", "torchcam", "GradCAM", 1.1, 350),
        _r("captum GradCAM", "captum", "GradCAM", 1.1, 250),
    ]
    checks = {t["target"]: t for t in H.evaluate_targets([_cfg(peers, model="resnet50", side=224)])}
    assert checks["GradCAM >= 3x faster than pytorch-grad-cam"]["passed"] is True
    assert checks["GradCAM >= 3x faster than monai"]["passed"] is False
    assert checks["GradCAM >= 3x less memory than torchcam"]["passed"] is True
    assert checks["GradCAM >= 3x less memory than captum"]["passed"] is False
