"""The backend interface: how the agent starts, stops and watches tasks on a node."""

from __future__ import annotations

import abc
import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import Request, RunnerTaskState, TaskReport, TaskSpec
from kohakuriver_lab.runner.errors import UnsupportedOperation

ENTRY_POINT_GROUP = "kohakuriver_lab.runner_backends"
FINAL_STATES = frozenset({"completed", "failed", "killed", "killed_oom", "stopped"})


@dataclass(frozen=True)
class TaskEvent:
    """A task changed state; final events carry the exit status."""

    task_id: int
    state: RunnerTaskState
    exit_code: int | None = None
    reason: str | None = None
    ssh_port: int | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class HostLink:
    """How a backend reaches the host over HTTP (environment image downloads and uploads)."""

    url: str
    token: str = field(repr=False)
    ssl_context: ssl.SSLContext | None = None


class Backend(abc.ABC):
    """Runs tasks on this node. State changes are put on :attr:`events`.

    Every order is idempotent where that makes sense: starting a known task does nothing,
    killing a finished task does nothing, forgetting an unknown task does nothing.
    """

    name: ClassVar[str] = ""
    supported_features: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        state_dir: Path,
        node: str,
        log: logging.Logger | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.node = node
        self.options = dict(options or {})  # backend-specific settings (RunnerApp.backend_options)
        self.log = log or logging.getLogger(f"kohakuriver.runner.backends.{self.name}")
        self.events: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self.host: HostLink | None = None

    def link_host(self, host: HostLink) -> None:
        """Give the backend the host's URL and this runner's token (never logged)."""
        self.host = host

    def backend_names(self) -> list[str]:
        """The backend names this node advertises in ``hello`` (a composite has several)."""
        return [self.name]

    async def images(self) -> list[str]:
        """Container images present on this node (reported so placement can prefer it)."""
        return []

    # ===== Lifecycle =====

    async def recover(self) -> None:  # noqa: B027 - optional hook
        """Find tasks left by an earlier runner and watch them again."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop watching (tasks keep running)."""

    # ===== Orders =====

    async def prepare(self, spec: TaskSpec) -> None:  # noqa: B027 - optional hook
        """Slow work before :meth:`start` (e.g. downloading an image); runs without blocking
        other orders and may be cancelled by a kill. Raises :class:`TaskStartError`."""

    @abc.abstractmethod
    async def start(self, spec: TaskSpec) -> None:
        """Start a task; raises :class:`TaskStartError` (task recorded as failed)."""

    @abc.abstractmethod
    async def kill(
        self, task_id: int, grace: float, *, stop: bool = False, snapshot: bool = False
    ) -> None:
        """TERM the task's processes, wait ``grace`` seconds, then KILL. ``stop`` (a VPS):
        it ends as ``stopped``, after a snapshot with ``snapshot``."""

    async def handle_request(self, request: Request) -> dict[str, Any]:
        """Serve a host request (environments, snapshots); the ``ack`` result."""
        raise UnsupportedOperation(f"the {self.name} backend does not handle {request.type}")

    @abc.abstractmethod
    async def pause(self, task_id: int) -> None:
        """Freeze a running task."""

    @abc.abstractmethod
    async def resume(self, task_id: int) -> None:
        """Thaw a paused task."""

    @abc.abstractmethod
    async def forget(self, task_id: int) -> None:
        """Delete a finished task's local state."""

    # ===== Inspection =====

    @abc.abstractmethod
    def knows(self, task_id: int) -> bool:
        """Whether the backend holds any state for the task."""

    @abc.abstractmethod
    async def list_tasks(self) -> list[TaskReport]:
        """Every task not yet forgotten: alive ones and finished ones with exit status."""

    @abc.abstractmethod
    def log_sizes(self, task_id: int) -> dict[LogStream, int]:
        """Current size in bytes of each output stream."""

    @abc.abstractmethod
    def read_log(self, task_id: int, stream: LogStream, offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of a stream from ``offset`` (empty at the end)."""


def load_backend_class(name: str) -> type[Backend]:
    """Find a backend class by short name in the ``kohakuriver_lab.runner_backends`` group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise TypeError(f"entry point {name!r} is not a Backend subclass")
            return cls
    available = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise LookupError(f"unknown runner backend {name!r} (available: {', '.join(available)})")
