"""Wire models shared by the host, the runner and the clients (pydantic v2).

IDs are 64-bit snowflakes; they travel as strings so JavaScript does not round them.
"""

from __future__ import annotations

import enum
import posixpath
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from kohakuriver_lab.bounds import (
    MAX_COUNTER,
    MAX_ENV_KEY_CHARS,
    MAX_MEMORY,
    MAX_NUMA_NODE,
    MIN_MEMORY,
    check_env,
    check_gpu_index,
    check_memory,
    check_workdir,
)

# =============================================================================
# Scalars
# =============================================================================


def _parse_id(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("an ID is a string of digits")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    raise ValueError("an ID is a string of digits")


ENV_NAMES_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": f"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_KEY_CHARS - 1}}}$"}
}
"""Environment variable names as :func:`check_env` takes them, for the OpenAPI document."""

WORKDIR_SCHEMA: dict[str, Any] = {
    "pattern": r"^(/([^/.\x00-\x1f\x7f][^/\x00-\x1f\x7f]*|\.([^/.\x00-\x1f\x7f][^/\x00-\x1f\x7f]*)?"
    r"|\.\.[^/\x00-\x1f\x7f]+)?)+$"
}
""":func:`check_workdir` as a pattern: absolute, no ``..`` segment, no control characters."""

SnowflakeID = Annotated[
    int, BeforeValidator(_parse_id), PlainSerializer(lambda x: str(x), return_type=str)
]
"""A 64-bit ID: accepted as int or digit string, always serialized as a string."""

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


MEMORY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": MIN_MEMORY, "maximum": MAX_MEMORY},
        {
            "type": "string",
            "pattern": r"^\s*([0-9]+(\.[0-9]+)?)\s*([KMGTPkmgtp]?)([iI]?[bB]?)?\s*$",
        },
        {"type": "null"},
    ]
}
"""What a request may give as a memory size (the checks of :func:`parse_memory` follow)."""


def parse_memory(value: int | str) -> int:
    """Parse a memory size: bytes as an int, or a string like ``"512M"``, ``"8G"``, ``"1.5GiB"``.

    Units are binary (``1G`` = 2**30 bytes), as in Docker and Slurm.
    """
    if isinstance(value, bool):
        raise ValueError("memory must be a number of bytes or a size such as '512M' or '8G'")
    if isinstance(value, int):
        return check_memory(value)
    match = _MEMORY_RE.match(str(value))
    if not match:
        raise ValueError(
            f"cannot read memory size {value!r}: use bytes or a size such as '512M' or '8G'"
        )
    number, unit = float(match.group(1)), match.group(2).upper()
    size = number * _MEMORY_UNITS[unit]  # inf for "9" * 400: int(inf) would overflow
    if size != size or size > (1 << 62):
        raise ValueError("memory must be at most 1 EiB")
    return check_memory(int(size))


def format_memory(size: int) -> str:
    """Format bytes for people (``8.0 GiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


# =============================================================================
# Enums
# =============================================================================


class _Vocabulary(str, enum.Enum):
    """A string enum that prints as its wire value (``completed``, not ``TaskStatus.COMPLETED``)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class TaskStatus(_Vocabulary):
    """The twelve task statuses (the seed's state machine)."""

    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    PENDING = "pending"
    ASSIGNING = "assigning"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    KILLED_OOM = "killed_oom"
    LOST = "lost"
    STOPPED = "stopped"

    @property
    def is_final(self) -> bool:
        """Whether the task has ended (``lost`` counts: it may only be revived by its runner)."""
        return self in FINAL_STATUSES

    @property
    def holds_resources(self) -> bool:
        """Whether a task in this status keeps its cores, GPUs and memory reserved."""
        return self in ACTIVE_STATUSES


FINAL_STATUSES = frozenset(
    {
        TaskStatus.REJECTED,
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.KILLED,
        TaskStatus.KILLED_OOM,
        TaskStatus.STOPPED,
        TaskStatus.LOST,
    }
)
ACTIVE_STATUSES = frozenset({TaskStatus.ASSIGNING, TaskStatus.RUNNING, TaskStatus.PAUSED})


class TaskType(_Vocabulary):
    """What a task is: a one-shot command, a long-running VPS, or a papermill notebook job."""

    COMMAND = "command"
    VPS = "vps"
    NOTEBOOK = "notebook"


class NodeStatus(_Vocabulary):
    """Whether a node's runner is connected and heartbeating."""

    ONLINE = "online"
    OFFLINE = "offline"


class LogStream(_Vocabulary):
    """The two output streams a task has."""

    STDOUT = "stdout"
    STDERR = "stderr"


# =============================================================================
# Targets
# =============================================================================


class Target(BaseModel):
    """Where a task should run: ``node``, ``node:numa`` or ``node::gpu,gpu``."""

    model_config = ConfigDict(frozen=True)

    node: str
    numa: int | None = None
    gpus: tuple[int, ...] | None = None

    def __str__(self) -> str:
        text = self.node
        if self.numa is not None:
            text += f":{self.numa}"
        if self.gpus is not None:
            text += "::" + ",".join(str(g) for g in self.gpus)
        return text


_NODE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def validate_node_name(name: str) -> str:
    """Check a node name (hostname-like: letters, digits, ``.``, ``_``, ``-``; ≤ 63 chars)."""
    if not _NODE_NAME_RE.match(name):
        raise ValueError(
            f"invalid node name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)"
        )
    return name


TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(:[0-9]{1,3})?(::[0-9]{1,3}(,[0-9]{1,3})*)?$"
"""What :func:`parse_target` takes, for the document (narrower: no spaces, indices < 1000)."""


def parse_target(text: str) -> Target:
    """Parse ``node``, ``node:numa``, ``node::0,1`` or ``node:numa::0,1``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a target is 'node', 'node:numa' or 'node::gpu,gpu'")
    text = text.strip()
    gpus: tuple[int, ...] | None = None
    if "::" in text:
        text, gpu_text = text.split("::", 1)
        try:
            gpus = tuple(int(g) for g in gpu_text.split(",") if g.strip() != "")
        except ValueError:
            raise ValueError(f"GPU indices in target must be integers, got {gpu_text!r}") from None
        if not gpus or any(g < 0 for g in gpus):
            raise ValueError("'node::' must be followed by GPU indices such as 'node::0,1'")
        for gpu in gpus:
            check_gpu_index(gpu)
        if len(set(gpus)) != len(gpus):
            raise ValueError("a GPU index is repeated in the target")
    numa: int | None = None
    if ":" in text:
        text, numa_text = text.split(":", 1)
        if not (numa_text.isascii() and numa_text.isdigit()) or len(numa_text) > 4:
            raise ValueError(f"NUMA node in target must be a number, got {numa_text[:20]!r}")
        numa = int(numa_text)
        if numa > MAX_NUMA_NODE:
            raise ValueError(f"NUMA node in target must be at most {MAX_NUMA_NODE}")
    return Target(node=validate_node_name(text), numa=numa, gpus=gpus)


# =============================================================================
# REST: requests
# =============================================================================

_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$", re.IGNORECASE)
IMAGE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"
"""``_IMAGE_RE`` for JSON Schema (which has no case-insensitive flag)."""
"""Image references: ``name``, ``repo/name:tag``, ``name@sha256:...`` (no spaces, no options)."""


def normalize_image(ref: str) -> str:
    """``busybox`` → ``busybox:latest``; references with a tag or digest stay as they are."""
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return ref + ":latest"


_ENV_REF_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
"""``name`` (latest version) or ``name:tag`` of an environment."""
_SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/]{16,}={0,3}( [^\r\n]{0,200})?$"
)


def validate_ssh_public_key(key: str) -> str:
    """One OpenSSH public key line (``ssh-ed25519 AAAA... comment``)."""
    key = key.strip()
    if not _SSH_KEY_RE.match(key):
        raise ValueError(
            "not an OpenSSH public key: expected one line such as 'ssh-ed25519 AAAA... you@host'"
        )
    return key


def parse_mount_spec(text: str) -> tuple[str, str, bool]:
    """``/src:/dst[:ro|rw]`` → ``(source, target, read_only)``; both paths absolute."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValueError(f"mount {text!r}: use '/node/path:/container/path[:ro|rw]'")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ValueError(f"mount {text!r}: mode must be ro or rw, not {mode!r}")
    source, target = posixpath.normpath(parts[0]), posixpath.normpath(parts[1])
    if not (parts[0].startswith("/") and parts[1].startswith("/")):
        raise ValueError(f"mount {text!r}: both paths must be absolute")
    if "\x00" in text:
        raise ValueError("mount paths must not contain NUL bytes")
    return source, target, mode == "ro"


MAX_ARGV_ITEMS = 4096
MAX_ARGV_BYTES = 128 * 1024


ARGV_SCHEMA: dict[str, Any] = {"prefixItems": [{"type": "string", "minLength": 1}]}
"""An argv's program is not empty."""


def _given(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _kind(kind: str) -> dict[str, Any]:
    return {"required": ["task_type"], "properties": {"task_type": {"const": kind}}}


def _none_of(*names: str) -> dict[str, Any]:
    return {"allOf": [{"not": _given(name)} for name in names]}


_KEY_FLAG = {"required": ["generate_ssh_key"], "properties": {"generate_ssh_key": {"const": True}}}
_KEY_GIVEN = {"anyOf": [_given("ssh_public_key"), _KEY_FLAG]}
TASK_SUBMIT_RULES: dict[str, Any] = {
    "allOf": [
        {  # notebook jobs: a notebook, no command, parameters or parameter sets
            "if": _kind("notebook"),
            "then": {
                "allOf": [
                    _given("notebook"),
                    {
                        "properties": {
                            "notebook": {
                                "required": ["nbformat", "cells"],
                                "properties": {
                                    "nbformat": {"const": 4},
                                    "cells": {"type": "array"},
                                },
                            }
                        }
                    },
                    _none_of("command"),
                    {"not": {"allOf": [_given("parameters"), _given("parameter_sets")]}},
                    {
                        "if": _given("parameter_sets"),
                        "then": {"properties": {"targets": {"maxItems": 1}}},
                    },
                ]
            },
            "else": _none_of("notebook", "parameters", "parameter_sets"),
        },
        {  # a VPS: no command, an SSH key (given or generated, not both), an image or env
            "if": _kind("vps"),
            "then": {
                "allOf": [
                    _none_of("command"),
                    _KEY_GIVEN,
                    {"not": {"allOf": [_given("ssh_public_key"), _KEY_FLAG]}},
                    {"anyOf": [_given("image"), _given("environment")]},
                ]
            },
            "else": {"allOf": [{"not": _KEY_GIVEN}]},
        },
        {  # a command task (the default type) has a command
            "if": {"not": {"anyOf": [_kind("notebook"), _kind("vps")]}},
            "then": _given("command"),
        },
        {"not": {"allOf": [_given("image"), _given("environment")]}},
    ]
}
"""The cross-field rules of :class:`TaskSubmit` (its model validators), for the document."""


class TaskSubmit(BaseModel):
    """Body of ``POST /kohakuriver/api/tasks``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=TASK_SUBMIT_RULES)

    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="argv list, run without a shell (not for notebook jobs: the host sets it)",
        json_schema_extra=ARGV_SCHEMA,
    )
    name: str | None = Field(default=None, max_length=200)
    task_type: TaskType = TaskType.COMMAND
    cores: int = Field(default=1, ge=0, le=4096, description="CPU cores to reserve and pin")
    memory: Annotated[int | None, WithJsonSchema(MEMORY_SCHEMA, mode="validation")] = Field(
        default=None, description="bytes, or a size such as '8G'"
    )
    gpus: list[int] | int | None = Field(
        default=None, description="GPU indices, or a count the scheduler picks"
    )
    targets: list[str] | None = Field(
        default=None,
        max_length=256,
        description="'node', 'node:numa' or 'node::0,1'",
        json_schema_extra={"items": {"type": "string", "pattern": TARGET_PATTERN}},
    )
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=ENV_NAMES_SCHEMA)
    workdir: str | None = Field(default=None, max_length=4096, json_schema_extra=WORKDIR_SCHEMA)
    priority: int = Field(default=0, ge=-1000, le=1000)
    backend: str | None = Field(
        default=None, max_length=32, description="'local' or 'docker'; default: docker for an image"
    )
    image: str | None = Field(
        default=None,
        max_length=255,
        description="container image to run in (docker backend)",
        json_schema_extra={"pattern": IMAGE_PATTERN},
    )
    environment: str | None = Field(
        default=None,
        max_length=200,
        description="environment to run in: 'name' (its latest version) or 'name:tag'",
        json_schema_extra={"pattern": _ENV_REF_RE.pattern},
    )
    mounts: list[str] | None = Field(
        default=None,
        max_length=64,
        description="'/node/path:/container/path[:ro|rw]', within the admin's allow-list",
    )
    ssh_public_key: str | None = Field(
        default=None, max_length=16_384, description="VPS: the key allowed to log in as root"
    )
    generate_ssh_key: bool = Field(
        default=False, description="VPS: make a key pair; the private key is returned once"
    )
    notebook: dict[str, Any] | None = Field(
        default=None, description="notebook jobs: the nbformat 4 notebook to execute"
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="notebook jobs: papermill parameters"
    )
    parameter_sets: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=10_000,
        description="notebook jobs: a sweep, one task per parameter set (one batch)",
    )

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_ARGV_ITEMS:
            raise ValueError(f"command has more than {MAX_ARGV_ITEMS} arguments")
        if not value[0]:
            raise ValueError("command[0] (the program) must not be empty")
        if any("\x00" in part for part in value):
            raise ValueError("command arguments must not contain NUL bytes")
        if sum(len(part.encode()) for part in value) > MAX_ARGV_BYTES:
            raise ValueError("command is longer than 128 KiB")
        return value

    @field_validator("memory", mode="before")
    @classmethod
    def _check_memory(cls, value: Any) -> int | None:
        if value is None:
            return None
        return parse_memory(value)

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: list[int] | int | None) -> list[int] | int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0 or value > 64:
                raise ValueError("a GPU count must be between 0 and 64")
            return value or None
        if isinstance(value, list):
            if any(g < 0 for g in value):
                raise ValueError("GPU indices must not be negative")
            for gpu in value:
                check_gpu_index(gpu)
            if len(set(value)) != len(value):
                raise ValueError("a GPU index is repeated")
            return value or None
        return value

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for text in value:
                parse_target(text)
        return value or None

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        return check_env(value)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE_RE.match(value):
            raise ValueError(f"invalid image reference {value!r}")
        return value

    @field_validator("environment")
    @classmethod
    def _check_environment(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_REF_RE.match(value):
            raise ValueError(f"invalid environment {value!r}: use 'name' or 'name:tag'")
        return value

    @field_validator("mounts")
    @classmethod
    def _check_mounts(cls, value: list[str] | None) -> list[str] | None:
        for text in value or []:
            parse_mount_spec(text)
        return value or None

    @field_validator("ssh_public_key")
    @classmethod
    def _check_ssh_key(cls, value: str | None) -> str | None:
        return None if value is None else validate_ssh_public_key(value)

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, value: str | None) -> str | None:
        return check_workdir(value)

    @model_validator(mode="after")
    def _check_job_kind(self) -> TaskSubmit:
        if self.task_type is TaskType.NOTEBOOK:
            nb = self.notebook
            if nb is None:
                raise ValueError("notebook: required for a notebook job")
            if nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
                raise ValueError("notebook: must be an nbformat 4 notebook (with 'cells')")
            if self.command is not None:
                raise ValueError("command: not allowed for a notebook job (the host sets it)")
            if self.parameters is not None and self.parameter_sets is not None:
                raise ValueError("parameters: give either 'parameters' or 'parameter_sets'")
            if self.parameter_sets is not None and len(self.targets or []) > 1:
                raise ValueError("targets: a sweep takes at most one target")
        else:
            if self.command is None and self.task_type is not TaskType.VPS:
                raise ValueError("command: required")
            if any(v is not None for v in (self.notebook, self.parameters, self.parameter_sets)):
                raise ValueError("notebook: only notebook jobs take a notebook or parameters")
        if self.task_type is TaskType.VPS:
            if self.command is not None:
                raise ValueError("command: a VPS runs the image's SSH daemon, not a command")
            if self.ssh_public_key is None and not self.generate_ssh_key:
                raise ValueError(
                    "ssh_public_key: a VPS needs a public key, or generate_ssh_key: true"
                )
            if self.ssh_public_key is not None and self.generate_ssh_key:
                raise ValueError("ssh_public_key: give a key or generate_ssh_key, not both")
            if self.image is None and self.environment is None:
                raise ValueError("image: a VPS needs an image or an environment with sshd")
        elif self.ssh_public_key is not None or self.generate_ssh_key:
            raise ValueError("ssh_public_key: only VPS tasks take SSH keys")
        if self.image is not None and self.environment is not None:
            raise ValueError("environment: give either an image or an environment")
        return self

    @model_validator(mode="after")
    def _check_gpu_sources(self) -> TaskSubmit:
        if self.gpus is not None and any(parse_target(t).gpus for t in self.targets or []):
            raise ValueError("give GPUs either in 'gpus' or in the targets ('node::0,1')")
        return self

    def parsed_targets(self) -> list[Target]:
        """The targets as :class:`Target` objects (empty: any node)."""
        return [parse_target(t) for t in self.targets or []]


class RunnerTokenCreate(BaseModel):
    """Body of ``POST /kohakuriver/api/runner-tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    node: str | None = Field(
        default=None,
        description="bind the token to this node name",
        json_schema_extra={"pattern": _NODE_NAME_RE.pattern},
    )

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str | None) -> str | None:
        return None if value is None else validate_node_name(value)


# =============================================================================
# REST: responses
# =============================================================================


class SubmitResult(BaseModel):
    """Response of a submit: one task per target, all in one batch."""

    task_ids: list[SnowflakeID]
    batch_id: SnowflakeID
    ssh_private_key: str | None = Field(
        default=None, description="VPS with generate_ssh_key: shown only in this response"
    )


class TaskInfo(BaseModel):
    """A task as the API shows it."""

    task_id: SnowflakeID
    batch_id: SnowflakeID | None = None
    name: str | None = None
    task_type: TaskType
    owner: str
    status: TaskStatus
    command: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    priority: int = 0
    backend: str | None = None
    image: str | None = None
    environment: str | None = Field(default=None, description="'name:tag' it runs in")
    mounts: list[str] = Field(default_factory=list)
    ssh_port: int | None = Field(default=None, description="VPS: SSH port on the node")
    req_cores: int
    req_memory: int | None = None
    req_gpus: list[int] | int | None = None
    target: str | None = None
    node: str | None = None
    assigned_cores: list[int] = Field(default_factory=list)
    assigned_gpus: list[int] = Field(default_factory=list)
    numa: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    kill_requested: bool = False
    parameters: dict[str, Any] | None = None
    progress: dict[str, Any] | None = Field(
        default=None, description="notebook jobs: {done, total, cell, error}"
    )
    output_path: str | None = Field(
        default=None, description="notebook jobs: the executed notebook in the Jupyter contents"
    )
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None


class TaskEventInfo(BaseModel):
    """One recorded status transition."""

    event_id: SnowflakeID
    task_id: SnowflakeID
    from_status: TaskStatus | None
    to_status: TaskStatus
    actor: str
    reason: str | None = None
    at: float


class TaskPage(BaseModel):
    """A page of tasks; pass ``next_cursor`` back as ``cursor`` for the next page."""

    tasks: list[TaskInfo]
    next_cursor: str | None = None
    total: int | None = Field(default=None, description="with count=true: all matching tasks")


class GpuInfo(BaseModel):
    """A GPU as the runner discovered it (NVML)."""

    index: int
    name: str = ""
    uuid: str = ""
    memory_total: int = 0
    numa_node: int | None = None
    pci_bus_id: str = ""


class NumaNode(BaseModel):
    """A NUMA node: its CPU ids and memory."""

    id: int
    cores: list[int]
    memory_total: int = 0


class GpuMetrics(BaseModel):
    """Per-GPU sample in a heartbeat; ``None`` where NVML could not tell."""

    index: int
    utilization: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature: float | None = None
    power_watts: float | None = None


class NodeMetrics(BaseModel):
    """One heartbeat's worth of node metrics."""

    at: float
    cpu_percent: float
    memory_used: int
    memory_total: int
    load_1m: float | None = None
    gpus: list[GpuMetrics] = Field(default_factory=list)


class NodeUsage(BaseModel):
    """What the scheduler has reserved on a node."""

    cores_used: list[int] = Field(default_factory=list)
    gpus_used: dict[str, SnowflakeID] = Field(
        default_factory=dict, description="GPU index -> task id holding it"
    )
    memory_reserved: int = 0
    active_tasks: int = 0


class NodeInfo(BaseModel):
    """A node as the API shows it."""

    name: str
    status: NodeStatus
    hostname: str = ""
    cores: list[int]
    numa: list[NumaNode] = Field(default_factory=list)
    memory_total: int
    gpus: list[GpuInfo] = Field(default_factory=list)
    backends: list[str] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list, description="container images present")
    version: str = ""
    last_heartbeat: float | None = None
    usage: NodeUsage = Field(default_factory=NodeUsage)
    metrics: NodeMetrics | None = None
    history: list[NodeMetrics] | None = None


class RunnerTokenInfo(BaseModel):
    """A runner token without its secret."""

    token_id: SnowflakeID
    name: str
    node: str | None = None
    created_at: float
    last_used_at: float | None = None
    revoked: bool = False
    token: str | None = Field(default=None, description="only in the response to the create call")


class LogChunk(BaseModel):
    """Response of the log endpoint: bytes from ``offset``; continue at ``next_offset``."""

    task_id: SnowflakeID
    stream: LogStream
    offset: int
    next_offset: int
    data: str = Field(description="the bytes decoded as UTF-8 (invalid sequences replaced)")
    eof: bool = Field(description="the task has ended and no more output will come")


class JobProgress(BaseModel):
    """Body of ``POST /kohakuriver/api/tasks/{id}/progress`` (sent by a running job)."""

    model_config = ConfigDict(extra="forbid")

    done: int = Field(ge=0, le=MAX_COUNTER)
    total: int = Field(ge=0, le=MAX_COUNTER)
    cell: int | None = Field(default=None, ge=0, le=MAX_COUNTER)
    error: str | None = Field(default=None, max_length=4000)


class JobResult(BaseModel):
    """Body of ``POST /kohakuriver/api/tasks/{id}/results``: one glued value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    value: Any = None


# =============================================================================
# Environments and VPS snapshots
# =============================================================================

ENV_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class EnvironmentCreate(BaseModel):
    """Body of ``POST /kohakuriver/api/environments``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="lower-case letters, digits, '.', '_', '-'",
        json_schema_extra={"pattern": ENV_NAME_RE.pattern},
    )
    image: str = Field(
        max_length=255,
        description="base image, present on (or pullable by) the node",
        json_schema_extra={"pattern": IMAGE_PATTERN},
    )
    node: str | None = Field(
        default=None,
        description="node to build on (default: any docker node)",
        json_schema_extra={"pattern": _NODE_NAME_RE.pattern},
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not ENV_NAME_RE.match(value):
            raise ValueError(
                f"invalid environment name {value!r}: lower-case letters, digits, '.', '_', '-'"
            )
        return value

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if not _IMAGE_RE.match(value):
            raise ValueError(f"invalid image reference {value!r}")
        return value

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str | None) -> str | None:
        return None if value is None else validate_node_name(value)


class EnvironmentExec(BaseModel):
    """Body of ``POST /kohakuriver/api/environments/{name}/exec``: an argv, no shell."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(
        min_length=1,
        max_length=MAX_ARGV_ITEMS,
        json_schema_extra=ARGV_SCHEMA,
    )
    workdir: str | None = Field(default=None, max_length=4096, json_schema_extra=WORKDIR_SCHEMA)
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=ENV_NAMES_SCHEMA)
    timeout: float = Field(default=600, gt=0, le=86400)

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: list[str]) -> list[str]:
        if not value[0] or any("\x00" in part for part in value):
            raise ValueError("command[0] must not be empty and no argument may contain NUL")
        return value

    _env = field_validator("env")(check_env)
    _workdir = field_validator("workdir")(check_workdir)


class EnvironmentExecResult(BaseModel):
    """What a command in an environment printed (each stream capped at 1 MiB)."""

    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool = False
    timed_out: bool = False


class EnvironmentCommit(BaseModel):
    """Body of ``POST /kohakuriver/api/environments/{name}/versions``."""

    model_config = ConfigDict(extra="forbid")

    tag: str | None = Field(
        default=None,
        description="image tag (default: v{version})",
        json_schema_extra={"pattern": IMAGE_TAG_RE.pattern, "not": {"const": "latest"}},
    )

    @field_validator("tag")
    @classmethod
    def _check_tag(cls, value: str | None) -> str | None:
        if value is not None and (not IMAGE_TAG_RE.match(value) or value == "latest"):
            raise ValueError(
                f"invalid tag {value!r}: letters, digits, '_', '.', '-' (not 'latest')"
            )
        return value


class EnvironmentVersionInfo(BaseModel):
    """One committed and exported version of an environment."""

    name: str
    version: int
    tag: str
    image: str = Field(description="kohakuriver/{name}:{tag}")
    image_id: str
    size: int
    sha256: str
    created_at: float
    created_by: str


class EnvironmentInfo(BaseModel):
    """An environment: its build container and its versions (newest last)."""

    name: str
    node: str | None
    base_image: str
    status: str = Field(description="running, committing, failed or removed (container gone)")
    reason: str | None = None
    created_by: str
    created_at: float
    versions: list[EnvironmentVersionInfo] = Field(default_factory=list)


class VpsStop(BaseModel):
    """Body of ``POST /kohakuriver/api/tasks/{id}/stop``."""

    model_config = ConfigDict(extra="forbid")

    snapshot: bool = Field(default=True, description="commit the container before stopping")


class SnapshotInfo(BaseModel):
    """A Docker VPS snapshot image on its node."""

    tag: str
    image: str
    created: float
    size: int = 0


# =============================================================================
# Users, roles, API tokens, invitations, quotas, audit
# =============================================================================


class Role(_Vocabulary):
    """Cluster roles, each including the one before: viewer < user < operator < admin."""

    VIEWER = "viewer"
    USER = "user"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.VIEWER: 1, Role.USER: 2, Role.OPERATOR: 3, Role.ADMIN: 4}


class Scope(_Vocabulary):
    """What an API token may do, within its user's role."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
GROUPS_SCHEMA: dict[str, Any] = {"items": {"type": "string", "pattern": _GROUP_RE.pattern}}
"""The group-name rule of :func:`_check_groups`, for the OpenAPI document."""


def _check_groups(groups: list[str] | None) -> list[str] | None:
    for group in groups or []:
        if not _GROUP_RE.match(group):
            raise ValueError(f"invalid group name {group!r}")
    return groups


class Me(BaseModel):
    """Who the caller is to the cluster."""

    username: str
    role: Role
    groups: list[str] = Field(default_factory=list)
    scopes: list[Scope] | None = Field(default=None, description="API token scopes, if any")
    via: str = Field(description="'jupyter' (login or server token) or 'api-token'")


class UserInfo(BaseModel):
    """A cluster user."""

    username: str
    role: Role
    active: bool
    groups: list[str] = Field(default_factory=list)
    has_password: bool = False
    created_by: str
    created_at: float
    last_seen_at: float | None = None


class UserUpdate(BaseModel):
    """Body of ``PATCH /kohakuriver/api/users/{name}`` (admins)."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    groups: list[str] | None = Field(default=None, max_length=32, json_schema_extra=GROUPS_SCHEMA)

    _groups = field_validator("groups")(_check_groups)


class UserCreate(BaseModel):
    """Body of ``POST /kohakuriver/api/users`` (admins): add a member before their first login
    (a JupyterHub user, a service account)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")
    role: Role = Role.USER
    groups: list[str] = Field(default_factory=list, max_length=32, json_schema_extra=GROUPS_SCHEMA)

    _groups = field_validator("groups")(_check_groups)


class ApiTokenCreate(BaseModel):
    """Body of ``POST /kohakuriver/api/tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    username: str | None = Field(
        default=None, description="admins: issue the token to this user (default: yourself)"
    )
    scopes: list[Scope] | None = Field(
        default=None,
        description="none: everything the role may do",
        json_schema_extra={"minItems": 1},
    )
    expires_in_days: float | None = Field(default=90, gt=0, le=3650)


class ApiTokenInfo(BaseModel):
    """An API token without its secret (``token`` only in the create response)."""

    token_id: SnowflakeID
    username: str
    name: str
    scopes: list[Scope] | None = None
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked: bool = False
    token: str | None = Field(default=None, description="only in the response to the create call")


class InvitationCreate(BaseModel):
    """Body of ``POST /kohakuriver/api/invitations``."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Role.USER
    groups: list[str] = Field(default_factory=list, max_length=32, json_schema_extra=GROUPS_SCHEMA)
    max_uses: int = Field(default=1, ge=1, le=1000)
    expires_in_hours: float = Field(default=72, gt=0, le=720)

    _groups = field_validator("groups")(_check_groups)


class InvitationInfo(BaseModel):
    """An invitation without its secret (``token`` and ``url`` only when created)."""

    invitation_id: SnowflakeID
    role: Role
    groups: list[str] = Field(default_factory=list)
    max_uses: int
    uses: int
    created_by: str
    created_at: float
    expires_at: float
    revoked: bool = False
    token: str | None = None
    url: str | None = Field(default=None, description="the registration page for this invitation")


class Registration(BaseModel):
    """Body of ``POST /kohakuriver/register``: an invitation token, a user name, a password."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16, max_length=200)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=10, max_length=1024)

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9._-]{0,63}$", value):
            raise ValueError("user names are lower-case letters, digits, '.', '_', '-'")
        return value


class QuotaInfo(BaseModel):
    """Limits of a user (``user:NAME``) or a group (``group:NAME``); null: no limit."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(pattern=r"^(user|group):[A-Za-z0-9][A-Za-z0-9._@-]{0,199}$")
    max_gpus: int | None = Field(default=None, ge=0, le=1_000_000)
    max_cores: int | None = Field(default=None, ge=0, le=1_000_000)
    max_tasks: int | None = Field(default=None, ge=0, le=1_000_000)
    max_vps: int | None = Field(default=None, ge=0, le=1_000_000)


class ClusterSettings(BaseModel):
    """Run-time settings admins change (``GET``/``PATCH /kohakuriver/api/settings``)."""

    model_config = ConfigDict(extra="forbid")

    approvals_required: bool = Field(
        default=False, description="submissions of 'user' role wait in pending_approval"
    )


class TaskReject(BaseModel):
    """Body of ``POST /kohakuriver/api/tasks/{id}/reject``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class AuditEventInfo(BaseModel):
    """One audit log entry."""

    event_id: SnowflakeID
    at: float
    actor: str
    action: str
    target: str | None = None
    detail: dict[str, Any] | None = None
    address: str | None = None
