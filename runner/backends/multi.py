"""Several backends on one node (``--backend docker,local``), behind the one-backend interface.

:class:`MultiBackend` routes ``start`` by ``TaskSpec.backend`` and every other order to the
backend that knows the task; all children share its :attr:`events` queue.
:func:`build_backend` makes the runner's backend from the configured names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import Request, TaskReport, TaskSpec
from kohakuriver_lab.runner.backends.base import Backend, HostLink, load_backend_class
from kohakuriver_lab.runner.errors import TaskNotFound, TaskStartError, UnsupportedOperation


class MultiBackend(Backend):
    """A composite: each task lives in exactly one child backend."""

    name = "multi"

    def __init__(
        self,
        backends: list[Backend],
        *,
        state_dir: Path,
        node: str,
        log: logging.Logger | None = None,
    ) -> None:
        super().__init__(state_dir=state_dir, node=node, log=log)
        if not backends:
            raise ValueError("MultiBackend needs at least one backend")
        self.backends = {b.name: b for b in backends}
        for backend in backends:
            backend.events = self.events

    def backend_names(self) -> list[str]:
        return list(self.backends)

    async def images(self) -> list[str]:
        found: set[str] = set()
        for backend in self.backends.values():
            found.update(await backend.images())
        return sorted(found)

    # ===== Lifecycle =====

    async def recover(self) -> None:
        for backend in self.backends.values():
            await backend.recover()

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()

    # ===== Orders =====

    async def start(self, spec: TaskSpec) -> None:
        backend = self.backends.get(spec.backend)
        if backend is None:
            names = ", ".join(self.backends)
            raise TaskStartError(f"node {self.node} has no '{spec.backend}' backend (has: {names})")
        await backend.start(spec)

    async def prepare(self, spec: TaskSpec) -> None:
        backend = self.backends.get(spec.backend)
        if backend is not None:
            await backend.prepare(spec)

    async def kill(
        self, task_id: int, grace: float, *, stop: bool = False, snapshot: bool = False
    ) -> None:
        await self._require(task_id).kill(task_id, grace, stop=stop, snapshot=snapshot)

    async def handle_request(self, request: Request) -> dict[str, Any]:
        backend = self.backends.get("docker")
        if backend is None:
            raise UnsupportedOperation(f"node {self.node} has no docker backend for {request.type}")
        return await backend.handle_request(request)

    def link_host(self, host: HostLink) -> None:
        super().link_host(host)
        for backend in self.backends.values():
            backend.link_host(host)

    async def pause(self, task_id: int) -> None:
        await self._require(task_id).pause(task_id)

    async def resume(self, task_id: int) -> None:
        await self._require(task_id).resume(task_id)

    async def forget(self, task_id: int) -> None:
        backend = self._owner(task_id)
        if backend is not None:
            await backend.forget(task_id)

    # ===== Inspection =====

    def knows(self, task_id: int) -> bool:
        return self._owner(task_id) is not None

    async def list_tasks(self) -> list[TaskReport]:
        reports: list[TaskReport] = []
        for backend in self.backends.values():
            reports.extend(await backend.list_tasks())
        return reports

    def log_sizes(self, task_id: int) -> dict[LogStream, int]:
        backend = self._owner(task_id)
        return backend.log_sizes(task_id) if backend else {s: 0 for s in LogStream}

    def read_log(self, task_id: int, stream: LogStream, offset: int, max_bytes: int) -> bytes:
        backend = self._owner(task_id)
        return backend.read_log(task_id, stream, offset, max_bytes) if backend else b""

    # ===== Internals =====

    def _owner(self, task_id: int) -> Backend | None:
        for backend in self.backends.values():
            if backend.knows(task_id):
                return backend
        return None

    def _require(self, task_id: int) -> Backend:
        backend = self._owner(task_id)
        if backend is None:
            raise TaskNotFound(f"unknown task {task_id}")
        return backend


# =============================================================================
# Construction
# =============================================================================


def backend_options(options: dict[str, Any], name: str, names: list[str]) -> dict[str, Any]:
    """One backend's settings: the flat keys, overridden by a section named after it.

    ``{"use_cgroups": False, "docker": {"network_mode": "none"}}`` gives ``local``
    ``{"use_cgroups": False}`` and ``docker`` ``{"use_cgroups": False, "network_mode": "none"}``.
    """
    merged = {k: v for k, v in options.items() if k not in names}
    section = options.get(name)
    if isinstance(section, dict):
        merged.update(section)
    return merged


def build_backend(
    spec: str,
    *,
    state_dir: Path,
    node: str,
    log: logging.Logger | None = None,
    options: dict[str, Any] | None = None,
) -> Backend:
    """``"local"`` → that backend in ``state_dir/local``; ``"docker,local"`` → a composite."""
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise LookupError("no runner backend configured")
    backends: list[Backend] = []
    for name in names:
        cls = load_backend_class(name)
        backends.append(
            cls(
                state_dir=state_dir / cls.name,
                node=node,
                log=log,
                options=backend_options(options or {}, name, names),
            )
        )
    if len(backends) == 1:
        return backends[0]
    return MultiBackend(backends, state_dir=state_dir, node=node, log=log)
