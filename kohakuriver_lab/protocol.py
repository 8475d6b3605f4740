"""The runner protocol: JSON messages over one WebSocket per runner.

The runner dials ``WS {host}/kohakuriver/api/runners/connect`` with
``Authorization: Bearer <runner token>`` and speaks first.

Runner → host: ``hello`` (once, first), ``heartbeat``, ``task_state``, ``log``, ``ack``.
Host → runner: ``welcome`` (reply to hello), ``start_task``, ``kill_task``, ``pause_task``,
``resume_task``, ``forget_task``, ``error``, and the requests ``env_create``, ``env_exec``,
``env_commit``, ``env_remove`` (environment containers) and ``snapshot`` (Docker VPS), each
answered by an ``ack`` whose ``result`` carries the outcome.

Every message carries ``v`` (the protocol version) and ``type``. Unknown fields are refused,
so a mistyped message is an error rather than silently half-read. Both sides validate with
:func:`parse_runner_message` / :func:`parse_host_message`.

Reconciliation: ``hello`` lists every task the runner still knows (running, paused, or
exited but not yet forgotten, with exit status). The host answers ``welcome`` with the byte
offsets of the logs it already has for those tasks, and the runner resends the rest. After
the host records a task's final status it sends ``forget_task`` and the runner may delete the
task's local state. Orders are idempotent: a repeated ``start_task`` for a known task is
acknowledged without starting it twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

from kohakuriver_lab.models import (
    GpuInfo,
    LogStream,
    NodeMetrics,
    NumaNode,
    SnowflakeID,
)

PROTOCOL_VERSION: Literal[1] = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest message either side accepts; a log chunk carries at most :data:`MAX_LOG_CHUNK`."""
MAX_LOG_CHUNK = 256 * 1024
RUNNER_CONNECT_PATH = "kohakuriver/api/runners/connect"

# Bounds of what a runner may say (a node may lie: nothing it sends may cost the host more
# than linear work, overflow a column, or put markup or paths where a name goes).
NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""Node names, as in :func:`kohakuriver_lab.models.validate_node_name` (``$``: end of text)."""
MAX_CORES = 4096
MAX_CORE_ID = 65535
MAX_NODE_MEMORY = 2**56
"""64 PiB: far above any node, far below a BIGINT."""
MAX_GPU_INDEX = 1023
MAX_NUMA_ID = 1023
MAX_TASK_REPORTS = 50_000
MAX_BYTES_COUNT = 2**62
"""Log sizes and offsets."""
MIN_EXIT_CODE, MAX_EXIT_CODE = -(2**31), 2**31 - 1
MAX_REASON_CHARS = 4000
"""Longer reasons and errors are cut (never refused: a runner's report must get through)."""
BACKEND_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


def runner_socket_url(host_url: str) -> str:
    """``http://h:8888/base/`` → ``ws://h:8888/base/kohakuriver/api/runners/connect``."""
    base = host_url if host_url.endswith("/") else host_url + "/"
    parts = urlsplit(urljoin(base, RUNNER_CONNECT_PATH))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"host_url must be http(s):// or ws(s)://, got {host_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = PROTOCOL_VERSION


# =============================================================================
# Shared pieces
# =============================================================================


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_REASON_CHARS:
        return value[: MAX_REASON_CHARS - 1] + "…"
    return value


Reason = Annotated[str | None, BeforeValidator(_cut)]
"""A free-text reason or error from a runner, cut to :data:`MAX_REASON_CHARS`."""
ExitCode = Annotated[int, Field(ge=MIN_EXIT_CODE, le=MAX_EXIT_CODE)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_BYTES_COUNT)]
NodeName = Annotated[str, Field(pattern=NODE_NAME_PATTERN, max_length=63)]
Memory = Annotated[int, Field(ge=0, le=MAX_NODE_MEMORY)]


def _within(what: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}")


def _short(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")


def _unique(what: str, values: list[int]) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} are repeated")


def _check_gpu(gpu: GpuInfo) -> GpuInfo:
    _within("a GPU index", gpu.index, 0, MAX_GPU_INDEX)
    _within("a GPU's NUMA node", gpu.numa_node, 0, MAX_NUMA_ID)
    _within("a GPU's memory", gpu.memory_total, 0, MAX_NODE_MEMORY)
    for what, text in (("GPU name", gpu.name), ("GPU UUID", gpu.uuid), ("bus id", gpu.pci_bus_id)):
        _short(what, text, 255)
    return gpu


def _check_numa(numa: NumaNode) -> NumaNode:
    _within("a NUMA node id", numa.id, 0, MAX_NUMA_ID)
    _within("a NUMA node's memory", numa.memory_total, 0, MAX_NODE_MEMORY)
    if len(numa.cores) > MAX_CORES:
        raise ValueError(f"a NUMA node has at most {MAX_CORES} cores")
    return numa


def _check_metrics(metrics: NodeMetrics) -> NodeMetrics:
    for what, number in (("at", metrics.at), ("cpu_percent", metrics.cpu_percent)):
        if not -1e12 <= number <= 1e12:  # also NaN
            raise ValueError(f"metrics {what} is out of range")
    if metrics.load_1m is not None and not -1e12 <= metrics.load_1m <= 1e12:
        raise ValueError("metrics load_1m is out of range")
    _within("memory_used", metrics.memory_used, 0, MAX_NODE_MEMORY)
    _within("memory_total", metrics.memory_total, 0, MAX_NODE_MEMORY)
    if len(metrics.gpus) > MAX_GPU_INDEX + 1:
        raise ValueError(f"at most {MAX_GPU_INDEX + 1} GPUs")
    for gpu in metrics.gpus:
        _within("a GPU index", gpu.index, 0, MAX_GPU_INDEX)
        for amount in (gpu.memory_used, gpu.memory_total):
            _within("GPU memory", amount, 0, MAX_NODE_MEMORY)
        for value in (gpu.utilization, gpu.temperature, gpu.power_watts):
            if value is not None and not -1e12 <= value <= 1e12:
                raise ValueError("a GPU metric is out of range")
    return metrics


RunnerGpu = Annotated[GpuInfo, AfterValidator(_check_gpu)]
RunnerNuma = Annotated[NumaNode, AfterValidator(_check_numa)]
RunnerMetrics = Annotated[NodeMetrics, AfterValidator(_check_metrics)]


RunnerTaskState = Literal[
    "running", "paused", "completed", "failed", "killed", "killed_oom", "stopped"
]
"""Statuses a runner may report; the host maps them onto the task state machine."""


class TaskReport(BaseModel):
    """What a runner knows about one task (in ``hello``)."""

    model_config = ConfigDict(extra="forbid")

    task_id: SnowflakeID
    state: RunnerTaskState
    exit_code: ExitCode | None = None
    reason: Reason = None
    log_sizes: dict[LogStream, ByteCount] = Field(default_factory=dict)
    ssh_port: int | None = Field(default=None, ge=1, le=65535, description="VPS: node port")


class Mount(BaseModel):
    """A bind mount into a task's container (checked against the host's allow-list)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="absolute path on the node")
    target: str = Field(description="absolute path in the container")
    read_only: bool = False


class ImageFetch(BaseModel):
    """Where a runner gets an environment image it lacks: a tarball stored by the host."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="URL path under the host's base URL (runner-token auth)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    image_id: str = Field(description="the image ID the tarball loads as")


class VpsSpec(BaseModel):
    """What a ``vps`` task needs beyond a command task."""

    model_config = ConfigDict(extra="forbid")

    ssh_public_keys: list[str] = Field(min_length=1, max_length=16)
    restore_snapshot: bool = Field(
        default=False, description="start from the VPS's latest snapshot on this node, if any"
    )


class TaskSpec(BaseModel):
    """Everything a runner needs to start a task; resources are already chosen by the host."""

    model_config = ConfigDict(extra="forbid")

    task_id: SnowflakeID
    task_type: Literal["command", "vps", "notebook"] = "command"
    owner: str | None = Field(
        default=None, max_length=256, description="cluster user; the node runs the task as them"
    )
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    cores: list[int] = Field(default_factory=list, description="core ids to pin to")
    gpus: list[int] = Field(default_factory=list, description="GPU indices to expose")
    memory: int | None = Field(default=None, description="memory limit in bytes")
    numa: int | None = None
    backend: str = "local"
    image: str | None = Field(default=None, description="container image (docker backend)")
    fetch: ImageFetch | None = Field(
        default=None, description="environment image: fetch it from the host when missing"
    )
    mounts: list[Mount] = Field(default_factory=list, max_length=64)
    vps: VpsSpec | None = None
    kill_grace: float = Field(default=10.0, ge=0, le=3600)


# =============================================================================
# Runner → host
# =============================================================================


class Hello(_Message):
    """First message: who the runner is, what it has, what it runs (every field bounded)."""

    type: Literal["hello"] = "hello"
    node: NodeName
    hostname: str = Field(default="", max_length=255)
    version: str = Field(default="", max_length=64)
    cores: list[Annotated[int, Field(ge=0, le=MAX_CORE_ID)]] = Field(max_length=MAX_CORES)
    numa: list[RunnerNuma] = Field(default_factory=list, max_length=MAX_NUMA_ID + 1)
    memory_total: Memory
    gpus: list[RunnerGpu] = Field(default_factory=list, max_length=MAX_GPU_INDEX + 1)
    backends: list[Annotated[str, Field(pattern=BACKEND_PATTERN)]] = Field(
        default_factory=list, max_length=16
    )
    images: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=10_000, description="container images present"
    )
    tasks: list[TaskReport] = Field(default_factory=list, max_length=MAX_TASK_REPORTS)

    @model_validator(mode="after")
    def _check_shape(self) -> Hello:
        """Cores and GPU indices unique; NUMA ids unique, their cores the node's, disjoint."""
        _unique("core ids", self.cores)
        _unique("GPU indices", [g.index for g in self.gpus])
        _unique("NUMA node ids", [n.id for n in self.numa])
        cores = set(self.cores)
        seen: set[int] = set()
        for numa in self.numa:
            for core in numa.cores:
                if core not in cores or core in seen:
                    raise ValueError(
                        f"NUMA node {numa.id} lists core {core}, which is not one of the "
                        "node's cores or is on another NUMA node"
                    )
                seen.add(core)
        return self


class Heartbeat(_Message):
    """Periodic liveness + metrics."""

    type: Literal["heartbeat"] = "heartbeat"
    metrics: RunnerMetrics


class TaskState(_Message):
    """A task changed state on the runner (started, paused, resumed, exited)."""

    type: Literal["task_state"] = "task_state"
    task_id: SnowflakeID
    state: RunnerTaskState
    exit_code: ExitCode | None = None
    reason: Reason = None
    ssh_port: int | None = Field(default=None, ge=1, le=65535, description="VPS: node port")


class LogData(_Message):
    """A chunk of a task's output; ``offset`` is where ``data`` starts in the stream."""

    type: Literal["log"] = "log"
    task_id: SnowflakeID
    stream: LogStream
    offset: int = Field(ge=0, le=MAX_BYTES_COUNT)
    data: str = Field(description="base64 of the raw bytes", max_length=MAX_LOG_CHUNK * 4 // 3 + 8)


class Ack(_Message):
    """Result of an order (``ok=False`` carries the error)."""

    type: Literal["ack"] = "ack"
    order_id: SnowflakeID
    ok: bool = True
    error: Reason = None
    result: dict[str, Any] | None = Field(default=None, description="a request's outcome")


RunnerMessage = Annotated[
    Hello | Heartbeat | TaskState | LogData | Ack, Field(discriminator="type")
]


# =============================================================================
# Host → runner
# =============================================================================


class Welcome(_Message):
    """Reply to ``hello``: settings and the log offsets the host already holds."""

    type: Literal["welcome"] = "welcome"
    node: str
    heartbeat_interval: float
    log_offsets: dict[str, dict[LogStream, int]] = Field(
        default_factory=dict, description="task id -> stream -> bytes already stored"
    )


class StartTask(_Message):
    """Start a task (idempotent)."""

    type: Literal["start_task"] = "start_task"
    order_id: SnowflakeID
    task: TaskSpec


class KillTask(_Message):
    """Kill a task: TERM, ``grace`` seconds, then KILL, for the whole process group.

    ``stop`` (a VPS): the task ends as ``stopped``; with ``snapshot`` its container is first
    committed to ``kohakuriver-snapshot/vps-{id}:{timestamp}``."""

    type: Literal["kill_task"] = "kill_task"
    order_id: SnowflakeID
    task_id: SnowflakeID
    grace: float = Field(default=10.0, ge=0, le=3600)
    stop: bool = False
    snapshot: bool = False


class PauseTask(_Message):
    """Freeze a running task."""

    type: Literal["pause_task"] = "pause_task"
    order_id: SnowflakeID
    task_id: SnowflakeID


class ResumeTask(_Message):
    """Thaw a paused task."""

    type: Literal["resume_task"] = "resume_task"
    order_id: SnowflakeID
    task_id: SnowflakeID


class ForgetTask(_Message):
    """The host has stored the task's final state and logs; local state may go."""

    type: Literal["forget_task"] = "forget_task"
    task_id: SnowflakeID


ENV_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""Environment names: also the Docker repository ``kohakuriver/{name}``."""
IMAGE_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class EnvCreate(_Message):
    """Create and start the environment container ``kohakuriver-env-{name}``."""

    type: Literal["env_create"] = "env_create"
    order_id: SnowflakeID
    name: str = Field(pattern=ENV_NAME_PATTERN)
    image: str
    fetch: ImageFetch | None = None


class EnvExec(_Message):
    """Run a command (argv) in an environment container; ``result``: exit code and output."""

    type: Literal["env_exec"] = "env_exec"
    order_id: SnowflakeID
    name: str = Field(pattern=ENV_NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=600, gt=0, le=86400)


class EnvCommit(_Message):
    """Commit the container to ``kohakuriver/{name}:{tag}`` and upload ``docker save`` of it
    to ``upload_path`` (``Authorization: Upload <upload_token>``); ``result``: image id,
    size, sha256."""

    type: Literal["env_commit"] = "env_commit"
    order_id: SnowflakeID
    name: str = Field(pattern=ENV_NAME_PATTERN)
    tag: str = Field(pattern=IMAGE_TAG_PATTERN)
    upload_path: str
    upload_token: str


class EnvRemove(_Message):
    """Remove an environment container (its committed images stay)."""

    type: Literal["env_remove"] = "env_remove"
    order_id: SnowflakeID
    name: str = Field(pattern=ENV_NAME_PATTERN)


class Snapshot(_Message):
    """Docker VPS snapshots: ``create`` (commit the running container), ``list`` or
    ``delete`` (``tag``); ``result``: ``{"snapshots": [{"tag", "image", "created", "size"}]}``."""

    type: Literal["snapshot"] = "snapshot"
    order_id: SnowflakeID
    task_id: SnowflakeID
    action: Literal["create", "list", "delete"]
    tag: str | None = Field(default=None, pattern=IMAGE_TAG_PATTERN)


class ErrorMessage(_Message):
    """The host refused a message (it stays connected unless it closes the socket)."""

    type: Literal["error"] = "error"
    message: str


Request = EnvCreate | EnvExec | EnvCommit | EnvRemove | Snapshot
"""Host → runner messages answered by an ``ack`` with a ``result``."""

HostMessage = Annotated[
    Welcome
    | StartTask
    | KillTask
    | PauseTask
    | ResumeTask
    | ForgetTask
    | ErrorMessage
    | EnvCreate
    | EnvExec
    | EnvCommit
    | EnvRemove
    | Snapshot,
    Field(discriminator="type"),
]

_runner_adapter: TypeAdapter[RunnerMessage] = TypeAdapter(RunnerMessage)
_host_adapter: TypeAdapter[HostMessage] = TypeAdapter(HostMessage)


def parse_runner_message(raw: str | bytes) -> RunnerMessage:
    """Validate a runner → host message; raises ``pydantic.ValidationError``."""
    return _runner_adapter.validate_json(raw)


def parse_host_message(raw: str | bytes) -> HostMessage:
    """Validate a host → runner message; raises ``pydantic.ValidationError``."""
    return _host_adapter.validate_json(raw)


def encode(message: BaseModel) -> str:
    """Serialize a message for the wire."""
    return message.model_dump_json()
