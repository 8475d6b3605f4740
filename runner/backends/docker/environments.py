"""Environment containers on a node: ``kohakuriver-env-{name}``, built interactively, then
committed to ``kohakuriver/{name}:{tag}`` and uploaded to the host (see ``transfer.py``)."""

from __future__ import annotations

import json
from typing import Any

from kohakuriver_lab.protocol import EnvCommit, EnvCreate, EnvExec, EnvRemove
from kohakuriver_lab.runner.backends.docker.engine import (
    ENV_LABEL,
    MANAGED_LABEL,
    NODE_LABEL,
    Engine,
    env_container_name,
)
from kohakuriver_lab.runner.backends.docker.errors import (
    ContainerNotFoundError,
    ImageNotFoundError,
)
from kohakuriver_lab.runner.backends.docker.options import DockerOptions
from kohakuriver_lab.runner.backends.docker.transfer import ImageTransfer

IDLE_COMMAND = ["tail", "-f", "/dev/null"]
"""What an environment container runs while people work in it."""
MAX_OUTPUT = 1 << 20
ENV_REPOSITORY = "kohakuriver"


class EnvironmentContainers:
    """Serves the host's ``env_*`` requests (blocking: call from a thread)."""

    def __init__(
        self, engine: Engine, transfer: ImageTransfer, options: DockerOptions, node: str
    ) -> None:
        self.engine = engine
        self.transfer = transfer
        self.options = options
        self.node = node

    def create(self, order: EnvCreate) -> dict[str, Any]:
        image = order.image
        if order.fetch is not None:
            self.transfer.ensure(image, order.fetch)
        elif not self.engine.image_present(image):
            if not self.options.pull:
                raise ImageNotFoundError(f"base image {image} not found on node {self.node}")
            self.engine.pull(image)
        name = env_container_name(order.name)
        try:
            state = self.engine.inspect(name)["State"]
            if state.get("Running"):
                return {"container": name, "existed": True}
            self.engine.remove(name)
        except ContainerNotFoundError:
            pass
        self.engine.create(
            name=name,
            image=image,
            command=IDLE_COMMAND,
            labels={MANAGED_LABEL: "true", NODE_LABEL: self.node, ENV_LABEL: order.name},
            env={},
            workdir=None,
            cores=[],
            numa=None,
            memory=None,
            gpus=[],
            kind="environment",
        )
        self.engine.start(name)
        return {"container": name, "existed": False}

    def exec(self, order: EnvExec) -> dict[str, Any]:
        return self.engine.exec_run(
            env_container_name(order.name),
            order.command,
            workdir=order.workdir,
            env=order.env,
            timeout=order.timeout,
            max_bytes=MAX_OUTPUT,
        )

    def commit(self, order: EnvCommit) -> dict[str, Any]:
        name = env_container_name(order.name)
        base = self.engine.inspect(name).get("Config", {}).get("Image")
        changes = self._restore_cmd(str(base)) if base else []
        repository = f"{ENV_REPOSITORY}/{order.name}"
        image_id = self.engine.commit(name, repository, order.tag, changes=changes)
        uploaded = self.transfer.upload(
            f"{repository}:{order.tag}", order.upload_path, order.upload_token
        )
        return {"image": f"{repository}:{order.tag}", "image_id": image_id, **uploaded}

    def _restore_cmd(self, base_image: str) -> list[str]:
        """The base image's CMD (the container ran :data:`IDLE_COMMAND` instead)."""
        try:
            cmd = self.engine.image_config(base_image).get("Cmd")
        except ImageNotFoundError:
            return []
        return [f"CMD {json.dumps(cmd)}"] if isinstance(cmd, list) else []

    def remove(self, order: EnvRemove) -> dict[str, Any]:
        self.engine.remove(env_container_name(order.name))
        return {}
