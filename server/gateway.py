"""The runner gateway: one WebSocket session per runner, message handling, reconciliation.

Everything a runner says is validated against the protocol schema and checked against what
the host gave that runner: a node name belongs to one runner token
(:mod:`.runner_identity`), a runner may only report on tasks assigned to its own node
(:mod:`.runner_reports`), and each connection has a message rate (:mod:`.runner_limits`).
A bad message is refused and logged; the host keeps going.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import RunnerRequestFailed, RunnerUnavailable
from kohakuriver_lab.models import LogStream, NodeStatus, TaskStatus
from kohakuriver_lab.protocol import (
    Ack,
    ErrorMessage,
    Heartbeat,
    Hello,
    LogData,
    Request,
    TaskState,
    Welcome,
    encode,
    parse_runner_message,
)

from .audit import AuditLog
from .db.orm import Task
from .logstore import LogStore
from .nodes import NodeRegistry
from .runner_identity import CLOSE_REPLACED, claim
from .runner_limits import TokenBucket
from .runner_reports import ProtocolViolation, RunnerConnection, TaskReports
from .scheduler import ACTIVE_VALUES, Scheduler
from .statemachine import transition

__all__ = ["ProtocolViolation", "RunnerConnection", "RunnerGateway"]

AUDIT_EVERY = 60.0
"""Seconds between two audit entries for one token's refused hellos as one name."""


class RunnerGateway(TaskReports, LoggingConfigurable):
    """Connected runners and everything they report."""

    max_bad_messages = Integer(
        20, config=True, help="Close a runner's socket after this many refused messages."
    )
    max_messages_per_second = Float(
        500.0,
        config=True,
        help="Messages a second one runner connection may send on average; faster ones are "
        "read later (the runner is slowed down, nothing it sent is dropped).",
    )
    message_burst = Integer(
        2000, config=True, help="Messages a runner connection may send at once above its rate."
    )
    throttle_close_after = Float(
        300.0,
        config=True,
        help="Close a runner connection (1008) that stays over its message rate for this many "
        "seconds in a row (a slowed-down runner costs the host nothing more, so this only "
        "ends abuse; a long log resend stays well under it); 0 never closes.",
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
        self._buckets: dict[int, TokenBucket] = {}
        self._retired: set[int] = set()
        """Connections the host closed: whatever they still send is ignored."""
        self._audit = AuditLog(db, parent=self)
        self._audited: dict[tuple[int, str], float] = {}
        """(token, node) → when a refused hello was last audited (one entry a minute)."""

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
                self._retire(conn, 4001, "runner token revoked")
                closed += 1
        return closed

    def close_all(self) -> None:
        """Close every runner session (host shutdown)."""
        for conn in list(self._sessions.values()):
            self._retire(conn, 1001, "host shutting down")
        self._sessions.clear()

    def _retire(self, conn: RunnerConnection, code: int, reason: str) -> None:
        """Close a connection and forget its session; frames still in flight are ignored."""
        self._retired.add(id(conn))
        conn.close(code, reason)
        self._drop_session(conn)

    # -------------------------------------------------------------------------
    # Receiving
    # -------------------------------------------------------------------------

    async def receive(self, conn: RunnerConnection, raw: str | bytes) -> None:
        """Take one frame from a runner's socket: wait while the runner is over its message
        rate (the next frame is read only after this returns), then handle it."""
        if id(conn) in self._retired:
            return
        bucket = self._buckets.get(id(conn))
        if bucket is None:
            bucket = self._buckets[id(conn)] = TokenBucket(
                self.max_messages_per_second, self.message_burst, self.throttle_close_after
            )
        wait = bucket.take()
        if wait > 0:
            if bucket.abusive():
                self.log.warning(
                    "closing runner %s (token %s): over %.0f messages/s for %.0f s",
                    conn.node or "(no hello)",
                    conn.token_id,
                    self.max_messages_per_second,
                    self.throttle_close_after,
                )
                self._retire(conn, 1008, "message rate limit exceeded")
                return
            if bucket.delayed % 1000 == 1:
                self.log.warning(
                    "runner %s sends more than %.0f messages/s: slowing it down (%d delayed)",
                    conn.node or "(no hello)",
                    self.max_messages_per_second,
                    bucket.delayed,
                )
            await asyncio.sleep(wait)
            if id(conn) in self._retired:
                return
        self.handle(conn, raw)

    def handle(self, conn: RunnerConnection, raw: str | bytes) -> None:
        """Handle one frame from a runner; refuse and log what is invalid."""
        if id(conn) in self._retired:
            return
        try:
            message = parse_runner_message(raw)
            if conn.node is None and not isinstance(message, Hello):
                raise ProtocolViolation("the first message must be 'hello'")
            if isinstance(message, Hello):
                self.on_hello(conn, message)
            elif isinstance(message, Heartbeat):
                self._registry.heartbeat(self._node(conn), message.metrics)
            else:  # any frame shows the runner is alive (heartbeats may wait behind a backlog)
                self._registry.heartbeat(self._node(conn))
                if isinstance(message, TaskState):
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
            self._retire(conn, 1008, "protocol violation")

    # -------------------------------------------------------------------------
    # Hello and reconciliation
    # -------------------------------------------------------------------------

    def on_hello(self, conn: RunnerConnection, hello: Hello) -> None:
        """Check the token may be this node, register it, reconcile its tasks, welcome it,
        send what it missed. A session of the same node it replaces is closed."""
        if conn.node is not None:
            raise ProtocolViolation("'hello' may only be sent once")
        with self._db() as session:
            refusal = claim(session, conn.token_id, hello.node)
            if refusal is not None:
                session.rollback()
                self._refuse_hello(conn, hello.node, refusal.code, refusal.message)
                return
            conn.token_node = hello.node
            self._registry.register(session, hello, owner=conn.token_id)
            followups = self._reconcile(session, hello.node, hello.tasks)
            self._registry.set_status(session, hello.node, NodeStatus.ONLINE)
            session.commit()
        old = self._sessions.get(hello.node)
        if old is not None and old is not conn:
            self.log.warning("runner %s reconnected: closing its previous session", hello.node)
            self._retire(old, CLOSE_REPLACED, "replaced by a new session of this node")
        conn.node = hello.node
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

    def _refuse_hello(self, conn: RunnerConnection, node: str, code: int, text: str) -> None:
        self.log.warning("refused hello as %s from runner token %s: %s", node, conn.token_id, text)
        now = time.monotonic()
        key = (conn.token_id, node)
        if now - self._audited.get(key, -AUDIT_EVERY) >= AUDIT_EVERY:  # retries: once a minute
            if len(self._audited) > 10_000:
                self._audited.clear()
            self._audited[key] = now
            self._audit.record(
                f"runner_token:{conn.token_id}",
                "runner.refused",
                f"node:{node}",
                {"reason": text},
                address=conn.address,
            )
        try:
            conn.write_message(encode(ErrorMessage(message=text)))
        except Exception:
            pass
        self._retire(conn, code, text)

    # -------------------------------------------------------------------------
    # Disconnects and liveness
    # -------------------------------------------------------------------------

    def on_close(self, conn: RunnerConnection) -> None:
        """A socket closed: forget its session (the node stays online until its heartbeats
        are missed)."""
        self._bad.pop(id(conn), None)
        self._buckets.pop(id(conn), None)
        self._retired.discard(id(conn))
        self._drop_session(conn)

    def _drop_session(self, conn: RunnerConnection) -> None:
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
            conn = self._sessions.get(node)
            if conn is not None:
                self._retire(conn, 4002, "no heartbeat")
        return stale
