"""Every call into the docker SDK, blocking, and the one place its errors are translated.

Run these from threads (the backend uses an executor and one watcher thread per container).
Containers are addressed by name (``kohakuriver-task-{id}``).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tarfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any, Protocol

import docker
import docker.errors
import docker.types
import docker.utils

from kohakuriver_lab.runner.backends.docker.confine import Kind, check_mounts, host_config_args
from kohakuriver_lab.runner.backends.docker.errors import (
    ContainerCreationError,
    ContainerExecutionError,
    ContainerNotFoundError,
    DockerConnectionError,
    DockerError,
    ImageExportError,
    ImageImportError,
    ImageNotFoundError,
    ResourceAllocationError,
)
from kohakuriver_lab.runner.backends.docker.options import DockerOptions

MANAGED_LABEL = "kohakuriver.managed"
TASK_ID_LABEL = "kohakuriver.task_id"
TASK_TYPE_LABEL = "kohakuriver.task_type"
NODE_LABEL = "kohakuriver.node"
ENV_LABEL = "kohakuriver.environment"
TASK_PREFIX = "kohakuriver-task-"
VPS_PREFIX = "kohakuriver-vps-"
ENV_PREFIX = "kohakuriver-env-"
NANO_CPUS_PER_CORE = 1_000_000_000
POOL_SIZE = 256  # each watched container holds two streaming connections


def task_container_name(task_id: int, task_type: str = "command") -> str:
    """``kohakuriver-vps-{id}`` for a VPS, ``kohakuriver-task-{id}`` for the others."""
    return f"{VPS_PREFIX if task_type == 'vps' else TASK_PREFIX}{task_id}"


def env_container_name(name: str) -> str:
    return f"{ENV_PREFIX}{name}"


def labels(task_id: int, task_type: str, node: str) -> dict[str, str]:
    """The seed's labels for a managed container."""
    return {
        MANAGED_LABEL: "true",
        TASK_ID_LABEL: str(task_id),
        TASK_TYPE_LABEL: task_type,
        NODE_LABEL: node,
    }


class LogStream(Protocol):
    """A following log stream: iterate for chunks; ``close()`` from another thread."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


# =============================================================================
# Error translation (the only place docker SDK exceptions are looked at)
# =============================================================================


@contextlib.contextmanager
def translate(what: str, default: type[DockerError] = DockerError) -> Iterator[None]:
    """Turn docker SDK / transport errors raised while doing ``what`` into ``DockerError``s."""
    try:
        yield
    except DockerError:
        raise
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFoundError(f"{what}: {_explain(exc)}") from exc
    except docker.errors.NotFound as exc:
        raise ContainerNotFoundError(f"{what}: {_explain(exc)}") from exc
    except docker.errors.APIError as exc:
        text = _explain(exc)
        if "could not select device driver" in text or "cpuset" in text.lower():
            raise ResourceAllocationError(f"{what}: {text}") from exc
        raise default(f"{what}: {text}") from exc
    except docker.errors.DockerException as exc:
        if "server API version" in str(exc):
            raise DockerConnectionError(f"{what}: Docker daemon unreachable ({exc})") from exc
        raise default(f"{what}: {exc}") from exc
    except OSError as exc:  # requests' connection errors are OSErrors
        raise DockerConnectionError(f"{what}: Docker daemon unreachable ({exc})") from exc


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if isinstance(exc.explanation, str) and exc.explanation else str(exc)
    return text.strip()


# =============================================================================
# Engine
# =============================================================================


class Engine:
    """A thread-safe wrapper of one low-level ``docker.APIClient``, created on first use."""

    def __init__(self, options: DockerOptions, protected: Sequence[str] = ()) -> None:
        self.options = options
        self._api: Any = None
        self._lock = threading.Lock()
        self._protected = [*protected, *options.protected_paths]
        self._daemon_paths: list[str] | None = None

    @property
    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                kwargs = docker.utils.kwargs_from_env()
                if self.options.base_url:
                    kwargs["base_url"] = self.options.base_url
                with translate("connecting to Docker", DockerConnectionError):
                    self._api = docker.APIClient(
                        version="auto", max_pool_size=POOL_SIZE, timeout=120, **kwargs
                    )
            return self._api

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None

    def protected_paths(self) -> list[str]:
        """Paths no container may mount: ours, the daemon's socket and data root."""
        if self._daemon_paths is None:
            paths = []
            base = self.options.base_url or os.environ.get("DOCKER_HOST", "")
            if base.startswith("unix://"):
                paths.append(base[len("unix://") :])
            with translate("asking Docker for its data root"):
                root = self.api.info().get("DockerRootDir")
            if isinstance(root, str) and root.startswith("/"):
                paths.append(root)
            self._daemon_paths = paths
        return [*self._protected, *self._daemon_paths]

    # ----- images -----

    def image_tags(self) -> list[str]:
        """Every tagged image on the daemon (``repo:tag``)."""
        with translate("listing images"):
            images = self.api.images()
        return sorted(
            {
                tag
                for image in images
                for tag in image.get("RepoTags") or []
                if tag != "<none>:<none>"
            }
        )

    def image_present(self, image: str) -> bool:
        try:
            with translate(f"inspecting image {image}"):
                self.api.inspect_image(image)
        except ImageNotFoundError:
            return False
        except ContainerNotFoundError:  # some daemons answer a plain 404
            return False
        return True

    def image_id(self, image: str) -> str | None:
        """The ID of a local image (``None`` when absent)."""
        try:
            with translate(f"inspecting image {image}"):
                info = self.api.inspect_image(image)
        except (ImageNotFoundError, ContainerNotFoundError):
            return None
        return str(info.get("Id"))

    def images_of(self, repository: str) -> list[dict[str, Any]]:
        """Local images of one repository (``docker images REPO`` rows)."""
        with translate(f"listing images of {repository}"):
            rows: list[dict[str, Any]] = self.api.images(name=repository)
        return rows

    def remove_image(self, image: str) -> None:
        """Untag/remove an image; a missing one is fine."""
        try:
            with translate(f"removing image {image}"):
                self.api.remove_image(image)
        except (ImageNotFoundError, ContainerNotFoundError):
            pass

    def image_config(self, image: str) -> dict[str, Any]:
        """An image's ``Config`` (CMD, ENV, ...)."""
        with translate(f"inspecting image {image}"):
            config: dict[str, Any] = self.api.inspect_image(image).get("Config") or {}
        return config

    def commit(self, name: str, repository: str, tag: str, changes: list[str] | None = None) -> str:
        """Commit a container (paused while committing) to ``repository:tag``; the image ID.
        ``changes`` are Dockerfile instructions applied to the image (e.g. ``CMD [...]``)."""
        with translate(f"committing container {name}", ImageExportError):
            result = self.api.commit(
                name, repository=repository, tag=tag, pause=True, changes=changes or None
            )
        return str(result.get("Id"))

    def save(self, image: str) -> Iterator[bytes]:
        """``docker save`` of one image, as chunks."""
        with translate(f"exporting image {image}", ImageExportError):
            chunks: Iterator[bytes] = self.api.get_image(image, chunk_size=1 << 20)
        return chunks

    def load(self, data: IO[bytes]) -> None:
        """``docker load`` from a file object."""
        with translate("loading an image", ImageImportError):
            for _ in self.api.load_image(data):
                pass

    def put_file(self, name: str, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write one file (parents as 0700 root dirs) into a created container."""
        buffer = io.BytesIO()
        parts = path.strip("/").split("/")
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for depth in range(1, len(parts)):
                info = tarfile.TarInfo("/".join(parts[:depth]))
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        with translate(f"writing {path} into container {name}", ContainerCreationError):
            self.api.put_archive(name, "/", buffer.getvalue())

    def host_port(self, name: str, port: int) -> int | None:
        """The node port published for a container port (``None`` if not published)."""
        ports = self.inspect(name).get("NetworkSettings", {}).get("Ports") or {}
        for binding in ports.get(f"{port}/tcp") or []:
            host_port = binding.get("HostPort")
            if host_port and str(host_port).isdigit():
                return int(host_port)
        return None

    def exec_run(
        self,
        name: str,
        command: list[str],
        *,
        workdir: str | None,
        env: dict[str, str],
        timeout: float,
        max_bytes: int,
    ) -> dict[str, Any]:
        """Run an argv in a running container; exit code and (capped) output. Past
        ``timeout`` the process is killed (by its PID on this node)."""
        with translate(f"running a command in container {name}", ContainerExecutionError):
            exec_id = self.api.exec_create(
                name, command, workdir=workdir, environment=env, stdout=True, stderr=True
            )["Id"]
            stream = self.api.exec_start(exec_id, stream=True, demux=True)
        output = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = False
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            with contextlib.suppress(Exception):
                pid = int(self.api.exec_inspect(exec_id).get("Pid") or 0)
                if pid > 0:
                    os.kill(pid, signal.SIGKILL)

        timer = threading.Timer(timeout, on_timeout)
        timer.start()
        try:
            with translate(f"reading a command's output in container {name}"):
                for out, err in stream:
                    for key, chunk in (("stdout", out), ("stderr", err)):
                        if not chunk:
                            continue
                        room = max_bytes - len(output[key])
                        truncated = truncated or len(chunk) > room
                        output[key] += chunk[: max(room, 0)]
        finally:
            timer.cancel()
        with translate(f"inspecting a command in container {name}"):
            code = self.api.exec_inspect(exec_id).get("ExitCode")
        return {
            "exit_code": code if isinstance(code, int) else None,
            "stdout": output["stdout"].decode("utf-8", errors="replace"),
            "stderr": output["stderr"].decode("utf-8", errors="replace"),
            "truncated": truncated,
            "timed_out": timed_out.is_set(),
        }

    def pull(self, image: str) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        with translate(f"pulling image {image}", ImageNotFoundError):
            self.api.pull(repository, tag=tag or "latest")

    def network_gateway(self, network: str) -> str:
        """The gateway address of a Docker network (the node's address on it)."""
        with translate(f"inspecting network {network}"):
            info = self.api.inspect_network(network)
        for config in (info.get("IPAM") or {}).get("Config") or []:
            gateway = config.get("Gateway")
            if isinstance(gateway, str) and gateway:
                return gateway.split("/")[0]
        raise DockerError(f"network {network} has no gateway address for the job relay")

    # ----- containers -----

    def create(
        self,
        *,
        name: str,
        image: str,
        command: list[str],
        labels: dict[str, str],
        env: dict[str, str],
        workdir: str | None,
        cores: list[int],
        numa: int | None,
        memory: int | None,
        gpus: list[int],
        mounts: Sequence[tuple[str, str, bool]] = (),
        ports: dict[int, tuple[str, None]] | None = None,
        hostname: str | None = None,
        kind: Kind = "command",
        network_mode: str | None = None,
    ) -> str:
        """Create (not start) a container, confined for its ``kind`` (``confine.py``); its id.

        ``mounts`` add to the configured ones as ``(node path, container path, read_only)``
        (every source is re-checked against :meth:`protected_paths`); ``ports`` publish
        container ports on a node address (a free port is chosen); ``network_mode``
        overrides the configured one."""
        opts = self.options
        device_requests = None
        if gpus:
            ids = [str(g) for g in gpus]
            device_requests = [docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
        log_config = docker.types.LogConfig(type=opts.log_driver, config=opts.log_options)
        binds = opts.binds()
        for source, target, read_only in mounts:
            binds[source] = {"bind": target, "mode": "ro" if read_only else "rw"}
        check_mounts(binds, self.protected_paths())
        with translate(f"creating container {name}", ContainerCreationError):
            host_config = self.api.create_host_config(
                cpuset_cpus=",".join(str(c) for c in cores) if cores else None,
                cpuset_mems=str(numa) if numa is not None else None,
                # a CFS quota of as many CPUs as cores assigned: the bound holds where the
                # cpuset controller is missing, and shows in ``docker inspect``
                nano_cpus=len(cores) * NANO_CPUS_PER_CORE if cores else None,
                mem_limit=memory,
                memswap_limit=memory,
                device_requests=device_requests,
                binds=binds or None,
                port_bindings=ports or None,
                network_mode=network_mode or opts.network_mode,
                init=opts.init or None,
                log_config=log_config,
                **host_config_args(kind, opts.pids_limit),
            )
            created = self.api.create_container(
                image,
                command=command,
                name=name,
                labels=labels,
                environment=env,
                working_dir=workdir,
                host_config=host_config,
                detach=True,
                tty=False,
                stdin_open=False,
                ports=list(ports) if ports else None,
                hostname=hostname,
            )
        return str(created["Id"])

    def start(self, name: str) -> None:
        with translate(f"starting container {name}", ContainerCreationError):
            self.api.start(name)

    def inspect(self, name: str) -> dict[str, Any]:
        with translate(f"inspecting container {name}"):
            result: dict[str, Any] = self.api.inspect_container(name)
        return result

    def wait(self, name: str) -> int:
        """Block until the container is not running; its exit code."""
        with translate(f"waiting for container {name}"):
            result = self.api.wait(name, timeout=None)
        return int(result.get("StatusCode", -1))

    def logs(self, name: str, stream: str) -> LogStream:
        """Follow one stream (``stdout`` or ``stderr``) from the container's first byte."""
        with translate(f"reading {stream} of container {name}"):
            result: LogStream = self.api.logs(
                name,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
            )
        return result

    def stop(self, name: str, grace: float) -> None:
        """TERM (the image's stop signal), ``grace`` seconds, then KILL."""
        with translate(f"stopping container {name}"):
            self.api.stop(name, timeout=max(0, round(grace)))

    def kill(self, name: str) -> None:
        with translate(f"killing container {name}"):
            self.api.kill(name)

    def pause(self, name: str) -> None:
        with translate(f"pausing container {name}"):
            self.api.pause(name)

    def unpause(self, name: str) -> None:
        with translate(f"resuming container {name}"):
            self.api.unpause(name)

    def remove(self, name: str) -> None:
        """Remove the container, killing it if needed; a missing one is fine."""
        try:
            with translate(f"removing container {name}"):
                self.api.remove_container(name, force=True)
        except ContainerNotFoundError:
            pass

    def managed(self, node: str) -> list[dict[str, Any]]:
        """Every task container this node manages (any state), as ``docker ps`` rows."""
        filters = {"label": [f"{MANAGED_LABEL}=true", f"{NODE_LABEL}={node}"]}
        with translate("listing containers"):
            rows: list[dict[str, Any]] = self.api.containers(all=True, filters=filters)
        prefixes = (TASK_PREFIX, VPS_PREFIX)
        return [r for r in rows if any(n.lstrip("/").startswith(prefixes) for n in r["Names"])]
