"""The runner gateway: one WebSocket session per runner, message handling, reconciliation.

Everything a runner says is validated against the protocol schema and checked against what
the host gave that runner: a runner may only report on tasks assigned to its own node. A bad
message is refused and logged; the host keeps going.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any, Protocol

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import RunnerRequestFailed, RunnerUnavailable
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import LogStream, NodeStatus, TaskStatus
from kohakuriver_lab.protocol import (
    Ack,
    ErrorMessage,
    ForgetTask,
    Heartbeat,
    Hello,
    KillTask,
    LogData,
    Request,
    TaskReport,
    TaskState,
    Welcome,
    encode,
    parse_runner_message,
)

from .db.orm import Task
from .events import note_task_changed
from .logstore import LogStore
from .nodes import NodeRegistry
from .scheduler import ACTIVE_VALUES, Scheduler
from .statemachine import can_transition, transition

ALIVE = {"running": TaskStatus.RUNNING, "paused": TaskStatus.PAUSED}


class RunnerConnection(Protocol):
    """What the gateway needs from a runner's socket."""

    node: str | None
    token_id: int
    token_node: str | None

    def write_message(self, message: str) -> Any:
        """Send one text frame."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket."""


class ProtocolViolation(Exception):
    """A runner message that is well-formed but not allowed."""


class RunnerGateway(LoggingConfigurable):
    """Connected runners and everything they report."""

    max_bad_messages = Integer(
        20, config=True, help="Close a runner's socket after this many refused messages."
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        registry: NodeRegistry,
        scheduler: Scheduler,
        logs: LogStore,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._registry = registry
        self._scheduler = scheduler
        self._logs = logs
        self._sessions: dict[str, RunnerConnection] = {}
        self._bad: dict[int, int] = {}
        self._task_nodes: dict[int, str] = {}
        self._pending_forget: dict[int, dict[LogStream, int]] = {}
        self._state_reports: list[tuple[RunnerConnection, TaskState]] = []
        self._requests: dict[int, tuple[str, asyncio.Future[Ack]]] = {}

    # -------------------------------------------------------------------------
    # Sending
    # -------------------------------------------------------------------------

    def is_connected(self, node: str) -> bool:
        """Whether the node's runner has a session now."""
        return node in self._sessions

    def send(self, node: str, message: Any) -> bool:
        """Send a message to a node's runner; False when it is not connected."""
        conn = self._sessions.get(node)
        if conn is None:
            return False
        try:
            conn.write_message(encode(message))
        except Exception as exc:  # a closing socket
            self.log.info("could not send to runner %s: %s", node, exc)
            return False
        return True

    async def request(self, node: str, message: Request, timeout: float) -> dict[str, Any]:
        """Send a request and wait for its ``ack``; its ``result``.

        Raises ``RunnerUnavailable`` (not connected, disconnected meanwhile, no answer in
        ``timeout`` s) or ``RunnerRequestFailed`` (the runner's error message)."""
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._requests[message.order_id] = (node, future)
        try:
            if not self.send(node, message):
                raise RunnerUnavailable(f"node {node} is not connected")
            try:
                ack = await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise RunnerUnavailable(
                    f"node {node} did not answer {message.type} within {timeout:.0f} s"
                ) from None
        finally:
            self._requests.pop(message.order_id, None)
        if not ack.ok:
            raise RunnerRequestFailed(ack.error or f"node {node} refused {message.type}")
        return ack.result or {}

    def _on_ack(self, conn: RunnerConnection, ack: Ack) -> None:
        waiting = self._requests.get(ack.order_id)
        if waiting is not None and waiting[0] == conn.node:
            if not waiting[1].done():
                waiting[1].set_result(ack)
        elif not ack.ok:
            self.log.warning("runner %s refused order %s: %s", conn.node, ack.order_id, ack.error)

    def disconnect_token(self, token_id: int) -> int:
        """Close every session opened with a (revoked) token."""
        closed = 0
        for conn in list(self._sessions.values()):
            if conn.token_id == token_id:
                conn.close(4001, "runner token revoked")
                self.on_close(conn)
                closed += 1
        return closed

    def close_all(self) -> None:
        """Close every runner session (host shutdown)."""
        for conn in list(self._sessions.values()):
            conn.close(1001, "host shutting down")
        self._sessions.clear()

    # -------------------------------------------------------------------------
    # Receiving
    # -------------------------------------------------------------------------

    def handle(self, conn: RunnerConnection, raw: str | bytes) -> None:
        """Handle one frame from a runner; refuse and log what is invalid."""
        try:
            message = parse_runner_message(raw)
            if conn.node is None and not isinstance(message, Hello):
                raise ProtocolViolation("the first message must be 'hello'")
            if isinstance(message, Hello):
                self.on_hello(conn, message)
            elif isinstance(message, Heartbeat):
                self._registry.heartbeat(self._node(conn), message.metrics)
            elif isinstance(message, TaskState):
                self.on_task_state(conn, message)
            elif isinstance(message, LogData):
                self.on_log(conn, message)
            elif isinstance(message, Ack):
                self._on_ack(conn, message)
        except (pydantic.ValidationError, ProtocolViolation) as exc:
            self._refuse(conn, exc)

    def _refuse(self, conn: RunnerConnection, exc: Exception) -> None:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if isinstance(exc, pydantic.ValidationError):
            text = f"invalid message: {exc.error_count()} error(s); first: {exc.errors()[0]['msg']}"
        self.log.warning("refused a message from runner %s: %s", conn.node or "(no hello)", text)
        count = self._bad.get(id(conn), 0) + 1
        self._bad[id(conn)] = count
        try:
            conn.write_message(encode(ErrorMessage(message=text)))
        except Exception:
            pass
        if conn.node is None or count >= self.max_bad_messages:
            conn.close(1008, "protocol violation")

    @staticmethod
    def _node(conn: RunnerConnection) -> str:
        assert conn.node is not None
        return conn.node

    def _check_owner(self, conn: RunnerConnection, task_id: int) -> None:
        """Refuse reports about tasks not assigned to the sender's node (cached per task)."""
        node = self._task_nodes.get(task_id)
        if node is None:
            with self._db() as session:
                task = session.get(Task, task_id)
            if task is None or task.node is None:
                raise ProtocolViolation(f"task {task_id} is not assigned to node {conn.node}")
            node = self._task_nodes[task_id] = task.node
        if node != conn.node:
            raise ProtocolViolation(f"task {task_id} is not assigned to node {conn.node}")

    # -------------------------------------------------------------------------
    # Hello and reconciliation
    # -------------------------------------------------------------------------

    def on_hello(self, conn: RunnerConnection, hello: Hello) -> None:
        """Register the node, reconcile its tasks, welcome it, send what it missed."""
        if conn.node is not None:
            raise ProtocolViolation("'hello' may only be sent once")
        if conn.token_node is not None and conn.token_node != hello.node:
            conn.node = None
            self.log.warning(
                "runner token bound to %s used for node %s", conn.token_node, hello.node
            )
            conn.write_message(
                encode(ErrorMessage(message=f"this token is for node {conn.token_node}"))
            )
            conn.close(1008, "token is bound to another node")
            return
        if hello.node in self._sessions:
            # Two runners with one name would keep replacing each other: the live one stays.
            # (A runner that died has its socket closed by the kernel, so this only waits out
            # half-open connections, which the heartbeat timeout ends.)
            self.log.warning("refused a second runner for node %s", hello.node)
            text = f"node {hello.node} is already connected from another runner"
            conn.write_message(encode(ErrorMessage(message=text)))
            conn.close(4003, "node already connected")
            return
        conn.node = hello.node
        followups: list[Any] = []
        with self._db() as session:
            self._registry.register(session, hello)
            followups = self._reconcile(session, hello.node, hello.tasks)
            self._registry.set_status(session, hello.node, NodeStatus.ONLINE)
            session.commit()
        self._sessions[hello.node] = conn
        offsets = {
            str(r.task_id): {s: self._logs.size(r.task_id, s) for s in LogStream}
            for r in hello.tasks
        }
        welcome = Welcome(
            node=hello.node,
            heartbeat_interval=self._registry.heartbeat_interval,
            log_offsets=offsets,
        )
        conn.write_message(encode(welcome))
        for message in followups:
            self.send(hello.node, message)
        for report in hello.tasks:
            self._maybe_forget(report.task_id)
        self.log.info(
            "runner %s connected (%d cores, %d GPUs, %d tasks reported)",
            hello.node,
            len(hello.cores),
            len(hello.gpus),
            len(hello.tasks),
        )
        self._scheduler.kick()

    def _reconcile(self, session: Session, node: str, reports: list[TaskReport]) -> list[Any]:
        actor = f"runner:{node}"
        followups: list[Any] = []
        reported = {r.task_id for r in reports}
        for report in reports:
            task = session.get(Task, report.task_id)
            alive = report.state in ALIVE
            if task is None or task.node != node:
                self.log.warning("runner %s reports unknown task %s", node, report.task_id)
                followups.append(
                    self._kill(report.task_id, 0) if alive else ForgetTask(task_id=report.task_id)
                )
                continue
            self._task_nodes[task.task_id] = node
            status = TaskStatus(task.status)
            if alive:
                new = ALIVE[report.state]
                if status.is_final and status is not TaskStatus.LOST:
                    followups.append(self._kill(task.task_id, 0))
                    continue
                if status is not new:
                    transition(
                        session,
                        task,
                        new,
                        actor=actor,
                        reason="reported by the runner on (re)connect",
                    )
                if report.ssh_port is not None:
                    task.ssh_port = report.ssh_port
                if task.kill_requested:
                    followups.append(self._kill(task.task_id, self._scheduler.kill_grace))
            else:
                self._apply_outcome(
                    session, task, report.state, report.exit_code, report.reason, actor
                )
                self._pending_forget[task.task_id] = dict(report.log_sizes)
        missing = session.scalars(
            select(Task).where(Task.node == node, Task.status.in_(ACTIVE_VALUES))
        ).all()
        for task in missing:
            if task.task_id in reported:
                continue
            if task.status == TaskStatus.ASSIGNING.value and task.kill_requested:
                transition(
                    session, task, TaskStatus.KILLED, actor=actor, reason="killed before it started"
                )
            elif task.status == TaskStatus.ASSIGNING.value:
                followups.append(self._scheduler.order_for(task))
            else:
                transition(
                    session,
                    task,
                    TaskStatus.LOST,
                    actor=actor,
                    reason=f"runner {node} no longer has this task",
                )
        return followups

    def _kill(self, task_id: int, grace: float) -> KillTask:
        return KillTask(order_id=new_id(), task_id=task_id, grace=grace)

    def _apply_outcome(
        self,
        session: Session,
        task: Task,
        state: str,
        exit_code: int | None,
        reason: str | None,
        actor: str,
    ) -> bool:
        outcome = TaskStatus(state)
        current = TaskStatus(task.status)
        if current is outcome or not can_transition(current, outcome):
            if current is not outcome:
                self.log.info(
                    "ignoring %s for task %s (already %s)", state, task.task_id, current.value
                )
            return False
        task.exit_code = exit_code
        job_error = (task.progress or {}).get("error")
        if outcome is TaskStatus.FAILED and job_error:
            reason = str(job_error)  # the job said what failed (e.g. the notebook cell)
        transition(session, task, outcome, actor=actor, reason=reason)
        return True

    def _maybe_forget(self, task_id: int) -> None:
        expected = self._pending_forget.get(task_id)
        if expected is None:
            return
        if all(self._logs.size(task_id, s) >= size for s, size in expected.items()):
            node = self._task_nodes.pop(task_id, None)
            del self._pending_forget[task_id]
            if node:
                self.send(node, ForgetTask(task_id=task_id))
            self._logs.notify(task_id)

    # -------------------------------------------------------------------------
    # Task state and logs
    # -------------------------------------------------------------------------

    def on_task_state(self, conn: RunnerConnection, message: TaskState) -> None:
        """Queue a runner's report of a task's new state; reports arriving in one loop turn
        are applied in one transaction."""
        self._state_reports.append((conn, message))
        if len(self._state_reports) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.apply_state_reports)
            except RuntimeError:  # no loop (unit tests): apply now
                self.apply_state_reports()

    def apply_state_reports(self) -> None:
        """Apply every queued task-state report in one transaction, then send follow-ups."""
        reports, self._state_reports = self._state_reports, []
        if not reports:
            return
        followups: list[tuple[str, Any]] = []
        ended: list[int] = []
        refused: list[tuple[RunnerConnection, ProtocolViolation]] = []
        with self._db() as session:
            ids = {m.task_id for _, m in reports}
            tasks = {
                t.task_id: t for t in session.scalars(select(Task).where(Task.task_id.in_(ids)))
            }
            for conn, message in reports:
                node = self._node(conn)
                task = tasks.get(message.task_id)
                if task is None:  # e.g. an orphan the host told it to kill: let it go
                    self.log.info("runner %s reports unknown task %s", node, message.task_id)
                    if message.state in ALIVE:
                        followups.append((node, self._kill(message.task_id, 0)))
                    else:
                        followups.append((node, ForgetTask(task_id=message.task_id)))
                    continue
                if task.node != node:
                    refused.append(
                        (
                            conn,
                            ProtocolViolation(
                                f"task {message.task_id} is not assigned to node {node}"
                            ),
                        )
                    )
                    continue
                status = TaskStatus(task.status)
                actor = f"runner:{node}"
                if message.state in ALIVE:
                    new = ALIVE[message.state]
                    if status.is_final and status is not TaskStatus.LOST:
                        followups.append((node, self._kill(task.task_id, 0)))
                    elif status is not new:
                        transition(session, task, new, actor=actor, reason=message.reason)
                    if message.ssh_port is not None and task.ssh_port != message.ssh_port:
                        task.ssh_port = message.ssh_port
                        note_task_changed(session, task)
                    continue
                if self._apply_outcome(
                    session, task, message.state, message.exit_code, message.reason, actor
                ):
                    ended.append(task.task_id)
                # The runner sends every log byte before a final state: the logs are complete.
                followups.append((node, ForgetTask(task_id=message.task_id)))
            session.commit()
        for conn, violation in refused:
            self._refuse(conn, violation)
        for node, order in followups:
            self.send(node, order)
            if isinstance(order, ForgetTask):
                self._task_nodes.pop(order.task_id, None)
                self._logs.notify(order.task_id)
        if ended:
            self._scheduler.kick()

    def on_log(self, conn: RunnerConnection, message: LogData) -> None:
        """Store a log chunk."""
        self._check_owner(conn, message.task_id)
        try:
            data = base64.b64decode(message.data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolViolation("log data is not valid base64") from None
        try:
            self._logs.write(message.task_id, message.stream, message.offset, data)
        except ValueError as exc:
            self.log.debug("task %s: %s", message.task_id, exc)
            return
        if message.task_id in self._pending_forget:
            self._maybe_forget(message.task_id)

    # -------------------------------------------------------------------------
    # Disconnects and liveness
    # -------------------------------------------------------------------------

    def on_close(self, conn: RunnerConnection) -> None:
        """Forget a closed session (the node stays online until its heartbeats are missed)."""
        self._bad.pop(id(conn), None)
        if conn.node is not None and self._sessions.get(conn.node) is conn:
            del self._sessions[conn.node]
            self.log.info("runner %s disconnected", conn.node)
            for node, future in list(self._requests.values()):
                if node == conn.node and not future.done():
                    future.set_exception(
                        RunnerUnavailable(f"node {node} disconnected before answering")
                    )

    def check_liveness(self) -> list[str]:
        """Mark nodes that missed their heartbeats offline and their active tasks lost."""
        stale = self._registry.stale()
        if not stale:
            return []
        window = self._registry.offline_after * self._registry.heartbeat_interval
        with self._db() as session:
            for node in stale:
                self._registry.set_status(session, node, NodeStatus.OFFLINE)
                tasks = session.scalars(
                    select(Task).where(Task.node == node, Task.status.in_(ACTIVE_VALUES))
                ).all()
                for task in tasks:
                    transition(
                        session,
                        task,
                        TaskStatus.LOST,
                        actor="host",
                        reason=f"node {node} went offline (no heartbeat for {window:.0f} s)",
                    )
                    self._logs.notify(task.task_id)
                self.log.warning("node %s is offline; %d task(s) lost", node, len(tasks))
            session.commit()
        for node in stale:
            conn = self._sessions.pop(node, None)
            if conn is not None:
                conn.close(4002, "no heartbeat")
        return stale

    def waiting_for_logs(self, task_id: int) -> bool:
        """Whether a finished task's logs are still being resent by its runner."""
        return task_id in self._pending_forget
