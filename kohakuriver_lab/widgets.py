"""ipywidgets 8 views of tasks, sweeps and the cluster, fed by the shared events socket.

Every widget subscribes to :func:`kohakuriver_lab._events.get_hub` (one WebSocket per kernel)
and updates its children from that thread; nothing polls per task. A task widget follows the
task's log stream only while it is displayed and the task runs. The plain attributes
(``status``, ``done``/``total``, ``log_text``, ``counts``, ``nodes``) mirror what is shown,
so kernel-side code and tests can read the state.
"""

from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from kohakuriver_lab.models import NodeMetrics, TaskInfo, TaskStatus, format_memory

if TYPE_CHECKING:
    from kohakuriver_lab.cluster import Cluster, Sweep, Task

__all__ = ["ClusterWidget", "SweepWidget", "TaskWidget"]

COLORS = {
    "pending_approval": "#9e9e9e",
    "pending": "#9e9e9e",
    "assigning": "#03a9f4",
    "running": "#1e88e5",
    "paused": "#ffb300",
    "completed": "#43a047",
    "failed": "#e53935",
    "killed": "#6d4c41",
    "killed_oom": "#8e24aa",
    "lost": "#546e7a",
    "rejected": "#546e7a",
    "stopped": "#6d4c41",
}
TAIL_LINES = 30
TAIL_CHARS = 8000


def badge(status: str) -> str:
    """An inline-styled status badge (Lab gives widget HTML no table/badge CSS)."""
    color = COLORS.get(status, "#757575")
    return (
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px;'
        f'font-size:90%">{html.escape(status)}</span>'
    )


def _elapsed(info: TaskInfo | None) -> float | None:
    if info is None or info.started_at is None:
        return None
    end = info.finished_at or time.time()
    return max(0.0, end - info.started_at)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# =============================================================================
# Task
# =============================================================================


class TaskWidget(w.VBox):  # type: ignore[misc]
    """Status badge, elapsed time, node and GPUs, notebook progress, live log tail, kill."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.info: TaskInfo | None = task._info
        self.status = self.info.status.value if self.info else "pending"
        self.done = 0
        self.total = 0
        self.log_text = ""
        self.updates = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._following = False
        self.header = w.HTML()
        self.progress = w.IntProgress(
            min=0, max=1, value=0, description="cells", layout=w.Layout(display="none")
        )
        self.log_view = w.HTML()
        self.kill_button = w.Button(description="Kill", button_style="danger", icon="stop")
        self.kill_button.on_click(self._on_kill)
        super().__init__([w.HBox([self.header, self.kill_button]), self.progress, self.log_view])
        self._sub = task.cluster.hub.watch_task(task.task_id, self._on_event)
        if self.info is None:
            self._refresh()
        self._render()
        self._ticker = threading.Thread(target=self._tick, name="kohaku-task-tick", daemon=True)
        self._ticker.start()

    # ----- events -----

    def _on_event(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "task":
            self._set_info(TaskInfo.model_validate(frame["task"]))
        elif kind == "progress":
            self._set_progress(int(frame.get("done") or 0), int(frame.get("total") or 0))
        elif kind == "resync":
            self._refresh()

    def _refresh(self) -> None:
        try:
            self._set_info(self.task.refresh())
        except Exception:  # host away: keep the last state, the hub reconnects
            return

    def _set_info(self, info: TaskInfo) -> None:
        with self._lock:
            self.info = info
            self.task._info = info
            self.status = info.status.value
            progress = getattr(info, "progress", None) or (info.model_extra or {}).get("progress")
        if isinstance(progress, dict):
            self._set_progress(int(progress.get("done") or 0), int(progress.get("total") or 0))
        self._render()
        if info.status.is_final:
            self.kill_button.disabled = True
            if not self._following and self._displayed:
                self._load_tail()

    def _set_progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if total > 0:
            self.progress.max = total
            self.progress.value = min(done, total)
            self.progress.layout.display = None
            self.progress.description = f"{done}/{total}"
        self.updates += 1

    def _render(self) -> None:
        info = self.info
        name = html.escape(info.name) if info and info.name else "task"
        parts = [f"<b>{name}</b> <code>{self.task.task_id}</code>", badge(self.status)]
        parts.append(f"⏱ {_fmt_seconds(_elapsed(info))}")
        if info and info.node:
            gpus = ",".join(str(g) for g in info.assigned_gpus) or "-"
            parts.append(f"node <b>{html.escape(info.node)}</b> GPUs {gpus}")
        if info and info.reason and info.status.is_final and self.status != "completed":
            reason = html.escape(info.reason[:300])
            parts.append(f'<br><span style="color:#c62828;white-space:pre-wrap">{reason}</span>')
        self.header.value = " &nbsp; ".join(parts)
        self.updates += 1

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            if self.info is not None and self.info.status.is_final:
                return
            if self.status == TaskStatus.RUNNING.value:
                self._render()

    # ----- logs -----

    _displayed = False

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self._displayed = True
        self.start_log_tail()
        return super()._repr_mimebundle_(**kwargs)

    def start_log_tail(self) -> None:
        """Follow the task's output into the tail (only while it runs; once if it ended)."""
        if self._following:
            return
        if self.info is not None and self.info.status.is_final:
            self._load_tail()
            return
        self._following = True
        threading.Thread(target=self._follow, name="kohaku-task-log", daemon=True).start()

    def _follow(self) -> None:
        try:
            last = 0.0
            for _stream, text in self.task.follow():
                if self._closed.is_set():
                    return
                self._append(text, render=time.monotonic() - last > 0.1)
                last = time.monotonic()
            self._append("", render=True)
        except Exception as exc:
            self._append(f"\n[log stream ended: {exc}]\n", render=True)
        finally:
            self._following = False

    def _load_tail(self) -> None:
        try:
            self.log_text = ""
            self._append(self.task.logs("stdout")[-TAIL_CHARS:], render=True)
        except Exception:
            return

    def _append(self, text: str, *, render: bool) -> None:
        with self._lock:
            self.log_text = (self.log_text + text)[-TAIL_CHARS:]
            tail = "\n".join(self.log_text.splitlines()[-TAIL_LINES:])
        if render and tail:
            self.log_view.value = (
                '<pre style="max-height:16em;overflow:auto;margin:2px 0;font-size:85%;'
                f'background:#f7f7f7;padding:4px">{html.escape(tail)}</pre>'
            )

    def _on_kill(self, _button: Any) -> None:
        self.kill_button.disabled = True
        try:
            self._set_info(self.task.kill())
        except Exception as exc:
            self.kill_button.disabled = False
            self.header.value += f" <i>kill failed: {html.escape(str(exc))}</i>"

    def close(self) -> None:
        self._closed.set()
        self._sub.close()
        super().close()


# =============================================================================
# Sweep
# =============================================================================


class SweepWidget(w.VBox):  # type: ignore[misc]
    """A grid of task states (hover for the parameters) and an overall progress bar."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.statuses: dict[int, str] = {t.task_id: "pending" for t in sweep.tasks}
        self.params = {
            t.task_id: p for t, p in zip(sweep.tasks, sweep.parameter_sets, strict=False)
        }
        self.cells: dict[int, tuple[int, int]] = {}
        self.updates = 0
        self._lock = threading.Lock()
        self.header = w.HTML()
        self.progress = w.IntProgress(min=0, max=max(1, len(sweep.tasks)), value=0)
        self.grid = w.HTML()
        super().__init__([self.header, self.progress, self.grid])
        self._sub = sweep.cluster.hub.watch_batch(sweep.batch_id, self._on_event)
        self._resync()

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    @property
    def finished(self) -> int:
        return sum(1 for s in self.statuses.values() if TaskStatus(s).is_final)

    def _on_event(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "task":
            task = frame["task"]
            task_id = int(task["task_id"])
            if task_id in self.statuses:
                with self._lock:
                    self.statuses[task_id] = str(task["status"])
                self._render()
        elif kind == "progress":
            task_id = int(frame.get("task_id") or 0)
            if task_id in self.statuses:
                self.cells[task_id] = (int(frame.get("done") or 0), int(frame.get("total") or 0))
                self._render()
        elif kind == "resync":
            self._resync()

    def _resync(self) -> None:
        try:
            for info in self.sweep.cluster.client.iter_tasks(batch=self.sweep.batch_id, limit=500):
                if info.task_id in self.statuses:
                    self.statuses[info.task_id] = info.status.value
        except Exception:
            pass
        self._render()

    def _render(self) -> None:
        with self._lock:
            items = list(self.statuses.items())
        finished = self.finished
        self.progress.value = finished
        summary = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        self.header.value = (
            f"<b>sweep</b> <code>{self.sweep.batch_id}</code>: {finished}/{len(items)} "
            f"finished ({html.escape(summary)})"
        )
        squares = []
        for task_id, status in items:
            params = ", ".join(f"{k}={v!r}" for k, v in self.params.get(task_id, {}).items())
            cells = self.cells.get(task_id)
            extra = f" cells {cells[0]}/{cells[1]}" if cells else ""
            title = html.escape(f"{task_id} {status}{extra}: {params}", quote=True)
            squares.append(
                f'<span title="{title}" style="display:inline-block;width:14px;height:14px;'
                f'margin:1px;border-radius:2px;background:{COLORS.get(status, "#757575")}"></span>'
            )
        self.grid.value = f'<div style="line-height:0">{"".join(squares)}</div>'
        self.updates += 1

    def close(self) -> None:
        self._sub.close()
        super().close()


# =============================================================================
# Cluster
# =============================================================================


def _bar(description: str, value: float, maximum: float, style: str = "") -> Any:
    return w.FloatProgress(
        value=value,
        min=0,
        max=maximum,
        description=description,
        bar_style=style,
        layout=w.Layout(width="220px"),
        style={"description_width": "48px"},
    )


class ClusterWidget(w.VBox):  # type: ignore[misc]
    """One row per node: status, CPU, memory and per-GPU utilisation bars (live)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, Any] = {}
        self.updates = 0
        self.title = w.HTML("<b>kohakuriver cluster</b>")
        super().__init__([self.title])
        self._sub = cluster.hub.watch_nodes(self._on_event)
        self._resync()

    def _resync(self) -> None:
        try:
            nodes = self.cluster.nodes()
        except Exception:
            return
        for node in nodes:
            self.nodes[node.name] = {
                "status": node.status.value,
                "cores": len(node.cores),
                "memory_total": node.memory_total,
                "gpus": [g.index for g in node.gpus],
                "metrics": node.metrics,
            }
        self._rebuild()

    def _on_event(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "resync":
            self._resync()
            return
        name = str(frame.get("name"))
        if name not in self.nodes:
            self._resync()
            return
        if kind == "node":
            self.nodes[name]["status"] = str(frame.get("status"))
        elif kind == "metrics":
            self.nodes[name]["metrics"] = NodeMetrics.model_validate(frame["metrics"])
        self._update(name)

    def _rebuild(self) -> None:
        self.rows = {}
        for name in sorted(self.nodes):
            label = w.HTML()
            cpu = _bar("CPU", 0, 100)
            mem = _bar("mem", 0, 1, "info")
            gpus = [_bar(f"GPU{i}", 0, 100, "success") for i in self.nodes[name]["gpus"]]
            self.rows[name] = (label, cpu, mem, gpus)
        self.children = [self.title] + [
            w.HBox([label, cpu, mem, *gpus]) for label, cpu, mem, gpus in self.rows.values()
        ]
        for name in self.rows:
            self._update(name)

    def _update(self, name: str) -> None:
        node = self.nodes[name]
        label, cpu, mem, gpus = self.rows[name]
        metrics: NodeMetrics | None = node["metrics"]
        label.value = (
            f'<div style="width:190px"><b>{html.escape(name)}</b> {badge(node["status"])} '
            f"{node['cores']} cores</div>"
        )
        if metrics is not None:
            cpu.value = metrics.cpu_percent
            mem.value = metrics.memory_used / max(1, metrics.memory_total)
            mem.description = "mem"
            mem.tooltip = (
                f"{format_memory(metrics.memory_used)} / {format_memory(metrics.memory_total)}"
            )
            by_index = {g.index: g for g in metrics.gpus}
            for bar, index in zip(gpus, node["gpus"], strict=False):
                sample = by_index.get(index)
                bar.value = sample.utilization or 0 if sample else 0
        self.updates += 1

    def close(self) -> None:
        self._sub.close()
        super().close()
