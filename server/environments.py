"""Container environments: a build container on one node, committed and exported as versions.

The flow (the seed's "a container is a portable virtualenv"): ``create`` starts
``kohakuriver-env-{name}`` from a base image on a docker node; ``exec`` runs commands in it;
``commit`` makes ``kohakuriver/{name}:{tag}`` there and the node uploads ``docker save`` of it
to the host, which stores it as ``{data_dir}/environments/{name}/{version}.tar`` (written to a
temp file, checked against the node's SHA-256, then renamed). Tasks naming the environment
carry the version's checksum; a node that lacks the image fetches the tarball from the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RunnerRequestFailed,
    RunnerUnavailable,
)
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import (
    EnvironmentCommit,
    EnvironmentCreate,
    EnvironmentExec,
    EnvironmentExecResult,
    EnvironmentInfo,
    EnvironmentVersionInfo,
    NodeStatus,
    normalize_image,
)
from kohakuriver_lab.protocol import EnvCommit, EnvCreate, EnvExec, EnvRemove, ImageFetch

from .db.orm import Environment, EnvironmentVersion
from .gateway import RunnerGateway
from .nodes import NodeRegistry

IMAGE_REPOSITORY = "kohakuriver"
API_PATH = "kohakuriver/api/environments"


def env_image(name: str, tag: str) -> str:
    """The Docker image of an environment version."""
    return f"{IMAGE_REPOSITORY}/{name}:{tag}"


def version_info(row: EnvironmentVersion) -> EnvironmentVersionInfo:
    """The API view of a version row."""
    return EnvironmentVersionInfo(
        name=row.name,
        version=row.version,
        tag=row.tag,
        image=env_image(row.name, row.tag),
        image_id=row.image_id,
        size=row.size,
        sha256=row.sha256,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def image_fetch(row: EnvironmentVersion) -> ImageFetch:
    """How a runner downloads this version."""
    return ImageFetch(
        path=f"{API_PATH}/{row.name}/versions/{row.version}/image",
        sha256=row.sha256,
        size=row.size,
        image_id=row.image_id,
    )


MAX_VERSION = 2**31 - 1
"""Versions are numbered in an INTEGER column: 32 bits on PostgreSQL."""


def _version_row(session: Session, name: str, version: int) -> EnvironmentVersion | None:
    """One stored version; None for a number no version can have (PostgreSQL would refuse
    to compare it with the column)."""
    if not 0 <= version <= MAX_VERSION:
        return None
    return session.get(EnvironmentVersion, (name, version))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Upload:
    """A tarball being received for one version (see :meth:`EnvironmentService.commit`)."""

    name: str
    version: int
    token_hash: str
    path: Path
    max_bytes: int
    size: int = 0
    sha256: str | None = None
    _digest: Any = field(default_factory=hashlib.sha256)
    _file: IO[bytes] | None = None

    def open(self) -> None:
        """Start (or restart: a retried upload replaces a partial one) receiving."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115  closed in finish()/abort()
        self._digest = hashlib.sha256()
        self.size = 0
        self.sha256 = None

    def write(self, chunk: bytes) -> None:
        """Append a chunk (413-style refusal beyond the size limit)."""
        assert self._file is not None
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise InvalidRequest(f"environment image is larger than {self.max_bytes} bytes")
        self._digest.update(chunk)
        self._file.write(chunk)

    def finish(self, declared_sha256: str | None) -> str:
        """Flush to disk; the SHA-256, which must equal what the sender declared."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        digest: str = self._digest.hexdigest()
        if declared_sha256 is not None and declared_sha256.lower() != digest:
            self.path.unlink(missing_ok=True)
            raise InvalidRequest(
                f"upload corrupted: SHA-256 {digest} does not match the declared {declared_sha256}"
            )
        self.sha256 = digest
        return digest

    def abort(self) -> None:
        """Drop what was received."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


class EnvironmentService(LoggingConfigurable):
    """Create, run commands in, commit, export, list and remove environments."""

    versions_kept = Integer(
        5,
        config=True,
        help="Exported versions kept per environment; older tarballs are deleted (0: keep all).",
    )
    max_image_bytes = Integer(
        64 << 30, config=True, help="Largest environment tarball the host accepts (bytes)."
    )
    create_timeout = Float(
        300.0, config=True, help="Seconds to wait for a node to start an environment container."
    )
    commit_timeout = Float(
        3600.0, config=True, help="Seconds to wait for a node to commit and upload a version."
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        registry: NodeRegistry,
        gateway: RunnerGateway,
        store_dir: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._registry = registry
        self._gateway = gateway
        self.store_dir = Path(store_dir)
        self._uploads: dict[tuple[str, int], Upload] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -------------------------------------------------------------------------
    # Queries
    # -------------------------------------------------------------------------

    def _info(self, session: Session, env: Environment) -> EnvironmentInfo:
        versions = session.scalars(
            select(EnvironmentVersion)
            .where(EnvironmentVersion.name == env.name)
            .order_by(EnvironmentVersion.version)
        ).all()
        return EnvironmentInfo(
            name=env.name,
            node=env.node,
            base_image=env.base_image,
            status=env.status,
            reason=env.reason,
            created_by=env.created_by,
            created_at=env.created_at,
            versions=[version_info(v) for v in versions],
        )

    def list_environments(self) -> list[EnvironmentInfo]:
        """Every environment, by name."""
        with self._db() as session:
            rows = session.scalars(select(Environment).order_by(Environment.name)).all()
            return [self._info(session, env) for env in rows]

    def get(self, name: str) -> EnvironmentInfo:
        """One environment with its versions."""
        with self._db() as session:
            return self._info(session, self._load(session, name))

    @staticmethod
    def _load(session: Session, name: str) -> Environment:
        env = session.get(Environment, name)
        if env is None:
            raise NotFound(f"environment {name!r} not found")
        return env

    def resolve(self, ref: str) -> tuple[str, ImageFetch, str]:
        """``name`` (latest version) or ``name:tag`` → (image, fetch, ``name:tag``); 400 when
        the environment or tag is unknown or nothing was exported yet."""
        name, _, tag = ref.partition(":")
        with self._db() as session:
            if session.get(Environment, name) is None:
                raise InvalidRequest(f"unknown environment {name!r}")
            query = select(EnvironmentVersion).where(EnvironmentVersion.name == name)
            if tag:
                query = query.where(EnvironmentVersion.tag == tag)
            row = session.scalars(query.order_by(EnvironmentVersion.version.desc())).first()
            if row is None:
                if tag:
                    raise InvalidRequest(f"environment {name!r} has no version tagged {tag!r}")
                raise InvalidRequest(
                    f"environment {name!r} has no committed version yet (commit it first)"
                )
            return env_image(row.name, row.tag), image_fetch(row), f"{row.name}:{row.tag}"

    def fetch_for(self, session: Session, ref: str | None) -> ImageFetch | None:
        """The download of a task's environment version (``None`` once it was deleted)."""
        if not ref:
            return None
        name, _, tag = ref.partition(":")
        row = session.scalars(
            select(EnvironmentVersion).where(
                EnvironmentVersion.name == name, EnvironmentVersion.tag == tag
            )
        ).first()
        return image_fetch(row) if row is not None else None

    def _fetch_for_image(self, image: str) -> ImageFetch | None:
        """An environment version named as a base image (``kohakuriver/{name}:{tag}``)."""
        prefix = IMAGE_REPOSITORY + "/"
        if not image.startswith(prefix):
            return None
        with self._db() as session:
            return self.fetch_for(session, image[len(prefix) :])

    # -------------------------------------------------------------------------
    # Create, exec, remove
    # -------------------------------------------------------------------------

    def _pick_node(self, wanted: str | None, image: str) -> str:
        candidates = []
        for name in self._registry.names():
            node = self._registry.get(name)
            if node is None or node.status is not NodeStatus.ONLINE:
                continue
            if "docker" not in node.shape.backends or not self._gateway.is_connected(name):
                continue
            candidates.append(node)
        if wanted is not None:
            if wanted not in self._registry.names():
                raise Conflict(f"unknown node {wanted!r}")  # as for tasks: the cluster's state
            if not any(n.name == wanted for n in candidates):
                raise RunnerUnavailable(
                    f"node {wanted!r} is not online with the docker backend right now"
                )
            return wanted
        if not candidates:
            raise RunnerUnavailable("no node with the docker backend is online")
        normalized = normalize_image(image)
        candidates.sort(key=lambda n: (normalized not in n.shape.images, n.name))
        return candidates[0].name

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def create(self, body: EnvironmentCreate, actor: str) -> EnvironmentInfo:
        """Start the environment's container on a docker node (409 if the name is taken)."""
        async with self._lock(body.name):
            with self._db() as session:
                env = session.get(Environment, body.name)
                if env is not None and env.status != "removed":
                    raise Conflict(f"environment {body.name!r} already exists")
                node = self._pick_node(body.node, body.image)
                if env is None:
                    env = Environment(name=body.name, created_by=actor, created_at=time.time())
                    session.add(env)
                env.node, env.base_image, env.status, env.reason = (
                    node,
                    body.image,
                    "creating",
                    None,
                )
                session.commit()
            order = EnvCreate(
                order_id=new_id(),
                name=body.name,
                image=body.image,
                fetch=self._fetch_for_image(body.image),
            )
            try:
                await self._gateway.request(node, order, self.create_timeout)
            except (RunnerRequestFailed, RunnerUnavailable) as exc:
                self._set_status(body.name, "failed", exc.message)
                raise
            self._set_status(body.name, "running", None)
            self.log.info("environment %s created on %s from %s", body.name, node, body.image)
            return self.get(body.name)

    def _set_status(self, name: str, status: str, reason: str | None) -> None:
        with self._db() as session:
            env = self._load(session, name)
            env.status, env.reason = status, reason
            session.commit()

    def _running_node(self, name: str) -> str:
        with self._db() as session:
            env = self._load(session, name)
            if env.status not in ("running", "committing") or env.node is None:
                raise Conflict(f"environment {name!r} has no running container ({env.status})")
            return env.node

    async def exec(self, name: str, body: EnvironmentExec) -> EnvironmentExecResult:
        """Run an argv in the environment's container and return its output."""
        node = self._running_node(name)
        order = EnvExec(
            order_id=new_id(),
            name=name,
            command=body.command,
            workdir=body.workdir,
            env=body.env,
            timeout=body.timeout,
        )
        result = await self._gateway.request(node, order, body.timeout + 30)
        return EnvironmentExecResult.model_validate(result)

    async def remove(self, name: str, *, versions: bool) -> None:
        """Remove the container (and, with ``versions``, every stored version). A node that
        is away keeps the container (said in the log); the environment is removed anyway."""
        async with self._lock(name):
            with self._db() as session:
                env = self._load(session, name)
                node, status = env.node, env.status
            if node is not None and status in ("running", "committing", "failed"):
                order = EnvRemove(order_id=new_id(), name=name)
                try:
                    await self._gateway.request(node, order, self.create_timeout)
                except RunnerUnavailable as exc:
                    self.log.warning(
                        "environment %s: container kohakuriver-env-%s left on node %s (%s)",
                        name,
                        name,
                        node,
                        exc.message,
                    )
            with self._db() as session:
                env = self._load(session, name)
                if versions:
                    rows = session.scalars(
                        select(EnvironmentVersion).where(EnvironmentVersion.name == name)
                    ).all()
                    for row in rows:
                        self._tarball(name, row.version).unlink(missing_ok=True)
                    session.execute(
                        delete(EnvironmentVersion).where(EnvironmentVersion.name == name)
                    )
                    session.delete(env)
                else:
                    env.status, env.reason = "removed", "container removed; versions kept"
                session.commit()

    def delete_version(self, name: str, version: int) -> None:
        """Delete one stored version (nodes keep images they already loaded)."""
        with self._db() as session:
            row = _version_row(session, name, version)
            if row is None:
                raise NotFound(f"environment {name!r} has no version {version}")
            session.delete(row)
            session.commit()
        self._tarball(name, version).unlink(missing_ok=True)

    # -------------------------------------------------------------------------
    # Commit + export
    # -------------------------------------------------------------------------

    def _tarball(self, name: str, version: int) -> Path:
        return self.store_dir / name / f"{version}.tar"

    async def commit(
        self, name: str, body: EnvironmentCommit, actor: str
    ) -> EnvironmentVersionInfo:
        """Commit the container to ``kohakuriver/{name}:{tag}`` on its node, receive the
        node's upload of the image and store it as the next version."""
        async with self._lock(name):
            node = self._running_node(name)
            with self._db() as session:
                last = session.scalars(
                    select(EnvironmentVersion.version)
                    .where(EnvironmentVersion.name == name)
                    .order_by(EnvironmentVersion.version.desc())
                ).first()
                version = (last or 0) + 1
                tag = body.tag or f"v{version}"
                taken = session.scalars(
                    select(EnvironmentVersion).where(
                        EnvironmentVersion.name == name, EnvironmentVersion.tag == tag
                    )
                ).first()
                if taken is not None:
                    raise Conflict(f"environment {name!r} already has a version tagged {tag!r}")
            token = secrets.token_urlsafe(32)
            final = self._tarball(name, version)
            upload = Upload(
                name=name,
                version=version,
                token_hash=_token_hash(token),
                path=final.with_name(f".{version}.{new_id()}.part"),
                max_bytes=self.max_image_bytes,
            )
            self._uploads[(name, version)] = upload
            self._set_status(name, "committing", None)
            order = EnvCommit(
                order_id=new_id(),
                name=name,
                tag=tag,
                upload_path=f"{API_PATH}/{name}/versions/{version}/upload",
                upload_token=token,
            )
            try:
                result = await self._gateway.request(node, order, self.commit_timeout)
                if upload.sha256 is None or upload.sha256 != result.get("sha256"):
                    raise RunnerRequestFailed(
                        f"node {node} reported a commit but its upload did not arrive intact"
                    )
                os.replace(upload.path, final)
            except BaseException:
                upload.abort()
                self._set_status(name, "running", None)
                raise
            finally:
                self._uploads.pop((name, version), None)
            with self._db() as session:
                row = EnvironmentVersion(
                    name=name,
                    version=version,
                    tag=tag,
                    image_id=str(result.get("image_id", "")),
                    size=upload.size,
                    sha256=upload.sha256,
                    created_by=actor,
                    created_at=time.time(),
                )
                session.add(row)
                env = self._load(session, name)
                env.status, env.reason = "running", None
                session.commit()
                info = version_info(row)
            self._prune(name)
            self.log.info(
                "environment %s version %d (%s) stored, %d bytes", name, version, tag, info.size
            )
            return info

    def _prune(self, name: str) -> None:
        if self.versions_kept <= 0:
            return
        with self._db() as session:
            rows = session.scalars(
                select(EnvironmentVersion)
                .where(EnvironmentVersion.name == name)
                .order_by(EnvironmentVersion.version.desc())
            ).all()
            old = rows[self.versions_kept :]
            for row in old:
                session.delete(row)
            session.commit()
            versions = [row.version for row in old]
        for version in versions:
            self._tarball(name, version).unlink(missing_ok=True)

    def begin_upload(self, name: str, version: int, token: str) -> Upload:
        """The pending upload this one-time token is for (403 otherwise)."""
        upload = self._uploads.get((name, version))
        if upload is None or not hmac.compare_digest(upload.token_hash, _token_hash(token)):
            raise Forbidden(f"no upload of {name} version {version} is expected with this token")
        upload.open()
        return upload

    def tarball(self, name: str, version: int) -> tuple[Path, EnvironmentVersionInfo]:
        """A stored version's file and description (404 when gone)."""
        with self._db() as session:
            row = _version_row(session, name, version)
            if row is None:
                raise NotFound(f"environment {name!r} has no version {version}")
            info = version_info(row)
        path = self._tarball(name, version)
        if not path.is_file():
            raise NotFound(f"the tarball of {name} version {version} is missing on the host")
        return path, info
