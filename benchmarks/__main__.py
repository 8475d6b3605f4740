"""``python -m benchmarks [--quick] [--only NAME ...]``: run, print a table, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from . import (
    confinement,
    docker_overhead,
    heartbeat_cpu,
    host_rss,
    local_backend,
    local_throughput,
    notebook_jobs,
    submit_latency,
    throughput,
)
from ._common import Outcome, Row, stop_all_hosts

MODULES: list[ModuleType] = [
    submit_latency,
    throughput,
    local_backend,
    local_throughput,
    confinement,
    docker_overhead,
    heartbeat_cpu,
    host_rss,
    notebook_jobs,
]
RESULTS = Path(__file__).parent / "results" / "latest.json"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    header = ["benchmark", "measured", "target", "baseline (same run)", "ratio", "pass/fail"]
    lines = [
        [
            f"{r.benchmark}.{r.metric}",
            _fmt(r.measured, r.unit),
            f"{'≥' if r.higher_is_better else '≤'} {_fmt(r.target, r.unit)}",
            f"{_fmt(r.baseline, r.unit)} ({r.baseline_label})",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            "SKIP" if getattr(r, "skipped", False) else "PASS" if r.passed else "FAIL",
        ]
        for r in rows
    ]
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(header)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    notes = [f"  {r.benchmark}.{r.metric}: {r.notes}" for r in rows if r.notes]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    names = [m.NAME for m in MODULES]
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter windows and fewer samples")
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(names)}",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    selected = [m for m in MODULES if not args.only or m.NAME in args.only]
    rows: list[Row] = []
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    started = time.time()
    try:
        for module in selected:
            run: Callable[[bool], Outcome] = module.run
            print(f"[{time.time() - started:6.1f}s] {module.NAME} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                outcome = run(args.quick)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                traceback.print_exc()
                errors[module.NAME] = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                stop_all_hosts()
            rows += outcome.rows
            details[module.NAME] = {**outcome.details, "wall_s": time.perf_counter() - t0}
    except KeyboardInterrupt:
        print("interrupted; hosts stopped", file=sys.stderr)
        return 130
    finally:
        stop_all_hosts()
    print()
    print(table(rows))
    for name, error in errors.items():
        print(f"ERROR {name}: {error}")
    payload = {
        "started_at": started,
        "wall_s": time.time() - started,
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": [r.as_dict() for r in rows],
        "details": details,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2))
    print(f"\nJSON: {args.json}  (total {time.time() - started:.0f} s)")
    return 0 if not errors and all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
