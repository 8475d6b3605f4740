"""The host's services, wired together once and shared by every handler."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import Configurable

from kohakuriver_lab.models import NodeStatus, TaskStatus

from .artifacts import ArtifactStore
from .audit import AuditLog
from .costs import ArtifactBudget, CostLimits
from .db.orm import Task
from .environments import EnvironmentService
from .events import EventBus
from .gateway import RunnerGateway
from .invitations import InvitationService
from .jobs import JobService
from .livesockets import SocketRegistry
from .logstore import LogStore
from .nodes import NodeRegistry
from .quotas import QuotaService
from .scheduler import Scheduler, current_loads
from .settings import SettingsService
from .tasks import TaskService, task_info
from .tasktokens import TaskTokens
from .tokens import RunnerTokenService
from .users import ApiTokenService, UserDirectory, host_owner


@dataclass
class ClusterServices:
    """Everything the handlers and background jobs use."""

    engine: Engine
    db: sessionmaker[Session]
    registry: NodeRegistry
    scheduler: Scheduler
    gateway: RunnerGateway
    logs: LogStore
    tasks: TaskService
    tokens: RunnerTokenService
    events: EventBus
    jobs: JobService
    task_tokens: TaskTokens
    environments: EnvironmentService
    invitations: InvitationService
    audit: AuditLog
    users: UserDirectory
    api_tokens: ApiTokenService
    cluster_settings: SettingsService
    quotas: QuotaService
    sockets: SocketRegistry
    costs: CostLimits = field(default_factory=CostLimits)

    @classmethod
    def build(
        cls, engine: Engine, db: sessionmaker[Session], data_dir: str, parent: Configurable
    ) -> ClusterServices:
        """Construct and connect the services (configured from ``parent``'s config)."""
        events = EventBus(parent=parent)
        events.attach(db)
        events.task_view = lambda task: task_info(task).model_dump(mode="json")
        registry = NodeRegistry(parent=parent)
        registry.events = events
        logs = LogStore(parent=parent, log_dir=os.path.join(data_dir, "logs"))
        task_tokens = TaskTokens(os.path.join(data_dir, "task-token.key"))
        artifacts = ArtifactStore(os.path.join(data_dir, "artifacts"))
        costs = CostLimits(parent=parent)
        budget = ArtifactBudget(costs, db, lambda task_id: str(artifacts.folder(task_id)))
        holder: dict[str, RunnerGateway] = {}

        def send(node: str, message: Any) -> bool:
            return holder["gateway"].send(node, message)

        scheduler = Scheduler(db, registry, send, task_tokens, parent=parent)
        gateway = RunnerGateway(db, registry, scheduler, logs, parent=parent)
        holder["gateway"] = gateway
        environments = EnvironmentService(
            db, registry, gateway, os.path.join(data_dir, "environments"), parent=parent
        )
        scheduler.environments = environments
        tasks = TaskService(
            db,
            registry,
            scheduler,
            gateway,
            artifacts,
            environments,
            budget,
            parent=parent,
        )
        jobs = JobService(db, artifacts, events, budget, parent=parent)
        tokens = RunnerTokenService(db, parent=parent)
        audit = AuditLog(db, parent=parent)
        users = UserDirectory(db, audit, host_owner(), parent=parent)
        api_tokens = ApiTokenService(db, audit, parent=parent)
        sockets = SocketRegistry(parent=parent)  # told of revocations and role changes
        users.sockets = api_tokens.sockets = sockets
        invitations = InvitationService(db, audit, users, parent=parent)
        cluster_settings = SettingsService(db, audit, parent=parent)
        quotas = QuotaService(db, audit, users.groups_of, parent=parent)
        scheduler.quotas = quotas
        with db() as session:
            registry.load(session)
        return cls(
            engine,
            db,
            registry,
            scheduler,
            gateway,
            logs,
            tasks,
            tokens,
            events,
            jobs,
            task_tokens,
            environments,
            invitations,
            audit,
            users,
            api_tokens,
            cluster_settings,
            quotas,
            sockets,
            costs=costs,
        )

    def summary(self) -> dict[str, int]:
        """Cluster totals for dashboards."""
        with self.db() as session:
            loads = current_loads(session)
            counts = dict(
                session.execute(
                    select(Task.status, func.count())
                    .where(Task.status.in_([TaskStatus.PENDING.value, TaskStatus.RUNNING.value]))
                    .group_by(Task.status)
                ).all()
            )
        names = self.registry.names()
        online = [n for n in names if self.registry.get(n).status is NodeStatus.ONLINE]  # type: ignore[union-attr]
        shapes = {s.name: s for s in self.registry.shapes()}
        return {
            "nodes_total": len(names),
            "nodes_online": len(online),
            "cores_total": sum(len(shapes[n].cores) for n in online),
            "cores_used": sum(len(loads[n].cores) for n in online if n in loads),
            "memory_total": sum(shapes[n].memory_total for n in online),
            "memory_reserved": sum(loads[n].memory for n in online if n in loads),
            "gpus_total": sum(len(shapes[n].gpus) for n in online),
            "gpus_used": sum(len(loads[n].gpus) for n in online if n in loads),
            "queued": int(counts.get(TaskStatus.PENDING.value, 0)),
            "running": int(counts.get(TaskStatus.RUNNING.value, 0)),
        }
