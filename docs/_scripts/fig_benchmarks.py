"""The figures and tables of docs/benchmarks.rst, drawn from benchmarks/results/*.json.

Reads every results file of ``benchmarks/bench_matrix.py`` (schema
``camseg-bench/1``) and writes, into the figures folder:

- ``bench_<machine>_{batch,growth,peers}.png`` (plots of ``benchmarks/_plots.py``);
- ``benchmarks_tables.inc``: reStructuredText included by ``benchmarks.rst``,
  one section per results file: the machine, the load, the targets table, the
  headline configurations' tables, the figures and the other scripts' costs.

No number is typed into the docs: all of them come from the results files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

import _plots  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _inc import write_inc  # noqa: E402

SCHEMA = "camseg-bench/1"
HEADLINE_GROUPS = ("peers", "k", "vit", "dtype", "depth", "family")


def load_results(folder: Path = RESULTS) -> list[tuple[str, dict[str, Any]]]:
    """``(stem, payload)`` of every matrix results file, CPU before GPU."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(payload, dict)
            and payload.get("schema") == SCHEMA
            and payload.get("suite") in ("cpu", "gpu", "full")
        ):
            out.append((path.stem, payload))
    return sorted(out, key=lambda kv: ("cuda" in kv[1]["device"], kv[0]))


def _esc(text: str) -> str:
    return text.replace("*", r"\*").replace("|", r"\|").replace("`", "")


def _table(header: list[str], rows: list[list[str]], widths: str | None = None) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {row[0] or ' '}")
        lines += [f"     - {c or ' '}" for c in row[1:]]
    return [*lines, ""]


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def config_table(cfg: dict[str, Any]) -> list[str]:
    rows = []
    for r in cfg["rows"]:
        t = r.get("time_s")
        if t is None:
            rows.append([_esc(r["candidate"]), _esc(r["status"]), "", "", "", ""])
            continue
        mem = r.get("peak_mem_bytes")
        rows.append(
            [
                _esc(r["candidate"]),
                f"{t['median'] * 1e3:.1f} ({t['q1'] * 1e3:.1f}–{t['q3'] * 1e3:.1f})",
                _fmt(r.get("time_vs_forward"), ".3f"),
                "–" if mem is None else f"{mem / 2**20:.1f}",
                _fmt(r.get("mem_vs_forward"), ".2f"),
                _fmt(r.get("agreement_max_abs_diff"), ".3g"),
            ]
        )
    return _table(
        [
            "candidate",
            "ms: median (IQR)",
            "× forward",
            "peak MiB",
            "× forward",
            "max abs diff vs camseg",
        ],
        rows,
        "34 22 10 10 10 14",
    )


def section(stem: str, payload: dict[str, Any], figures: dict[str, str]) -> list[str]:
    m = payload["machine"]
    load = payload["load"]
    title = f"{payload['machine_name']} (suite ``{payload['suite']}``)"
    lines = [title, "-" * len(title), ""]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    lines += [
        f"``benchmarks/results/{stem}.json``: {m['cpu_count']} CPUs{gpu}, "
        f"{m['torch_threads']} torch threads; Python {m['python']}, torch {m['torch']}, "
        f"torchvision {payload['versions']['torchvision']}; {m['date']}. Load average "
        f"(1/5/15 min) {' / '.join(str(v) for v in load['before'])} before and "
        f"{' / '.join(str(v) for v in load['after'])} after the run; median of "
        f"{payload['settings']['repeats']} interleaved rounds; run time "
        f"{payload['elapsed_s'] / 60:.1f} min. Command: ``{payload['command']}``.",
        "",
    ]
    peers = ", ".join(f"{k} {v}" for k, v in payload["versions"]["peers"].items() if v)
    missing = [k for k, v in payload["versions"]["peers"].items() if not v]
    lines += [
        f"Peers: {peers}" + (f" (not installed: {', '.join(missing)})" if missing else "") + ".",
        "",
    ]
    if payload["targets"]:
        met = sum(t["passed"] is True for t in payload["targets"])
        lines += [f"**Targets**: {met} of {len(payload['targets'])} met.", ""]
        rows = [
            [
                _esc(t["target"]),
                _esc(t["config"]),
                _fmt(t["value"], ".2f"),
                f"{t['op']} {t['limit']}",
                {True: "yes", False: "**no**", None: "–"}[t["passed"]],
            ]
            for t in payload["targets"]
        ]
        lines += _table(["target", "configuration", "value", "limit", "met"], rows, "40 32 9 9 10")
    for key, caption in (
        ("batch", "Time per image and peak memory against the batch size."),
        ("growth", "Cost growth with image size and batch (dotted: linear)."),
        ("peers", "The peers side by side."),
    ):
        if key in figures:
            lines += [
                f".. figure:: /_figures/{figures[key]}",
                "   :width: 100%",
                "",
                f"   {caption}",
                "",
            ]
    configs = payload["configs"]
    top_of_sweep = {}
    for c in configs:
        key = (c["model"], c["side"], c["depth"], c["dtype"], c["device"])
        if key not in top_of_sweep or c["batch"] > top_of_sweep[key]["batch"]:
            top_of_sweep[key] = c
    shown = [
        c
        for c in configs
        if len(configs) <= 20
        or set(c.get("groups", ())) & set(HEADLINE_GROUPS)
        or c in top_of_sweep.values()
    ]
    for cfg in shown:
        head = f"{cfg['id']}, layer ``{cfg['layer']}``"
        lines += [head, "~" * len(head), "", *config_table(cfg)]
    rest = [c["id"] for c in configs if c not in shown]
    if rest:
        lines += ["Also in the results file (same columns): " + ", ".join(rest) + ".", ""]
    extras = payload.get("extras") or {}
    if extras:
        rows = []
        for name, e in extras.items():
            rows.append(
                [
                    f"``{name}``",
                    _fmt(e.get("wall_s"), ".0f"),
                    str(e.get("returncode", "–")),
                    _esc(e.get("command", e.get("status", ""))),
                ]
            )
        lines += [
            "The other costs, collected by the same run (their tables: "
            "``benchmarks/results/<script>.md``):",
            "",
        ]
        lines += _table(["script", "wall s", "exit", "command"], rows, "25 10 10 55")
    return lines


def perturbation_section(path: Path) -> list[str]:
    """The ScoreCAM / AblationCAM / FullGrad table of ``bench_perturbation.py``, if it has run."""
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    cfg, secs = payload["config"], payload["seconds"]
    fwd = secs["no_grad forward"]["median"]
    head = "ScoreCAM, AblationCAM and FullGrad (``bench_perturbation.py``)"
    lines = [
        head,
        "~" * len(head),
        "",
        f"ResNet-18, {cfg['batch']} images of {cfg['side']} px, float32, CPU, median of "
        f"{cfg['repeats']} interleaved rounds; load before the run: "
        f"``{_esc(payload['load_before'].split('load average:')[-1].strip())}``.",
        "",
    ]
    rows = [
        [_esc(name), _fmt(s["median"], ".3f"), _fmt(s["median"] / fwd, ".1f")]
        for name, s in secs.items()
    ]
    lines += _table(["candidate", "s / call", "x forward"], rows, "60 20 20")
    diffs = payload["max_abs_diff_vs_pytorch_grad_cam"]
    rows = []
    for name, v in payload["speedup_vs_pytorch_grad_cam"].items():
        method_layer = " ".join(name.replace(",", " ").split()[:2])
        if "top_k" in name:
            diff = "other maps"
        elif "floor" in name:
            diff = "no maps (forwards only)"
        else:
            diff = _fmt(diffs.get(method_layer), ".1e")
        rows.append([_esc(name), _fmt(v, ".1f") + "x", diff])
    lines += _table(
        ["method, layer, setting", "speed-up over pytorch-grad-cam", "max abs diff of maps"],
        rows,
        "50 25 25",
    )
    return lines


def main(out: Path) -> list[Path]:
    """Write the figures and ``benchmarks_tables.inc`` into ``out``; return the files."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines: list[str] = []
    results = load_results()
    if not results:
        lines = ["No results file of ``benchmarks/bench_matrix.py`` is committed yet.", ""]
    for stem, payload in results:
        figs = {}
        for key, fig in _plots.figures(payload).items():
            name = f"bench_{payload['machine_name']}_{key}.png"
            written.append(_plots.save(fig, out / name, dpi=90))
            figs[key] = name
        lines += section(stem, payload, figs)
    lines += perturbation_section(RESULTS / "bench_perturbation.json")
    written.append(write_inc(out / "benchmarks_tables.inc", "\n".join(lines) + "\n"))
    return written


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
