"""``kohakuriver-runner``: the node daemon, a traitlets :class:`Application`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, List, Unicode, default
from traitlets.config import Application

import kohakuriver_lab
from kohakuriver_lab.runner.agent import RunnerAgent
from kohakuriver_lab.runner.backends.base import HostLink
from kohakuriver_lab.runner.backends.multi import build_backend
from kohakuriver_lab.runner.nvml import Nvml

TOKEN_ENV = "KOHAKURIVER_RUNNER_TOKEN"


def _config_dirs() -> list[str]:
    """Where ``kohakuriver_runner_config.py`` is looked for (later ones win)."""
    dirs = [
        "/etc/jupyter",
        os.path.join(sys.prefix, "etc", "jupyter"),
        os.environ.get("JUPYTER_CONFIG_DIR") or os.path.expanduser("~/.jupyter"),
        os.getcwd(),
    ]
    return list(dict.fromkeys(dirs))


class RunnerApp(Application):
    """Dials the host, reports this node, and runs the tasks it is given."""

    name = "kohakuriver-runner"
    version = kohakuriver_lab.__version__
    description = "The kohakuriver-lab node daemon: connects to the host and runs tasks."

    aliases = {
        "host-url": "RunnerApp.host_url",
        "token": "RunnerApp.token",
        "name": "RunnerApp.node_name",
        "backend": "RunnerApp.backend",
        "state-dir": "RunnerApp.state_dir",
        "log-level": "Application.log_level",
        "config": "RunnerApp.config_file",
    }

    config_file = Unicode("", help="Load this config file instead of searching for one.").tag(
        config=True
    )
    host_url = Unicode(
        "http://127.0.0.1:8888/",
        help="URL of the Jupyter server hosting the cluster, base URL included "
        "(e.g. http://host:8888/ or https://host/jupyter/).",
    ).tag(config=True)
    token = Unicode(
        help=f"Runner token issued by the host (default: ${TOKEN_ENV}). Never logged."
    ).tag(config=True)
    node_name = Unicode(
        help="Node name (default: the short hostname). Command line: --name. "
        "(Not `name`: that trait is the application's own name.)"
    ).tag(config=True)
    backend = Unicode(
        "local",
        help="Backend short name (entry point group kohakuriver_lab.runner_backends), or a "
        "comma-separated list (e.g. docker,local): each task runs in the backend it names.",
    ).tag(config=True)
    backend_options = Dict(
        help=(
            "Backend-specific settings. local: {'use_cgroups': False} turns off cgroups "
            "(memory limits then use RLIMIT_AS, and OOM cannot be told from other kills). "
            "docker: {'mounts': {'/data': '/data:ro'}, 'network_mode': 'none', 'pull': False, "
            "'default_image': None, 'init': True}. With several backends, a section named "
            "after a backend overrides the flat keys for it: {'docker': {...}}."
        ),
    ).tag(config=True)
    state_dir = Unicode(
        help="Where task state and logs are kept (default: "
        "$XDG_DATA_HOME/kohakuriver/runner/{name}, i.e. ~/.local/share/...)."
    ).tag(config=True)
    # ----- how the local backend confines tasks (docs/security.md) -----
    task_user = Unicode(
        "auto",
        help="Unix identity of local tasks: 'dynamic' (a uid per cluster user from uid_range), "
        "'mapped' (user_map / map_same_name accounts), 'runner' (the runner's own user: "
        "single-user nodes only), 'auto' (dynamic when the runner is root, else runner).",
    ).tag(config=True)
    user_map = Dict(
        value_trait=Unicode(), help="task_user='mapped': cluster user → Unix account."
    ).tag(config=True)
    map_same_name = Bool(
        False,
        help="task_user='mapped': a cluster user without a user_map entry runs as the "
        "Unix account of the same name.",
    ).tag(config=True)
    uid_range = Unicode(
        "61184-65519", help="task_user='dynamic': uids handed to cluster users (FIRST-LAST)."
    ).tag(config=True)
    allowed_workdirs = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="Node directories a local task may name as workdir (default: anywhere for "
        "task_user 'runner', the account's home for 'mapped', none for 'dynamic'; the task's "
        "own directory always). Command line: repeat --RunnerApp.allowed_workdirs=PATH.",
    ).tag(config=True)
    hidden_paths = List(
        Unicode(),
        help="Node directories that tasks of the local backend never see (the runner's state "
        "dir and, for a root runner, root's home always are; the embedded runner adds the "
        "host's data dir). Command line: repeat --RunnerApp.hidden_paths=PATH.",
    ).tag(config=True)
    reconnect_max_delay = Float(30.0, help="Longest wait between reconnect attempts (s).").tag(
        config=True
    )
    ca_file = Unicode("", help="CA bundle to verify the host's TLS certificate.").tag(config=True)
    verify_tls = Bool(True, help="Verify the host's TLS certificate (wss://).").tag(config=True)
    kill_tasks_on_exit = Bool(
        False,
        help="Kill this node's running and paused tasks when the runner stops (default: they "
        "keep running under their supervisors and the next runner adopts them).",
    ).tag(config=True)
    exit_kill_grace = Float(
        5.0, help="With kill_tasks_on_exit: seconds between SIGTERM and SIGKILL."
    ).tag(config=True)

    @default("token")
    def _default_token(self) -> str:
        return os.environ.get(TOKEN_ENV, "")

    @default("node_name")
    def _default_name(self) -> str:
        return socket.gethostname().split(".")[0]

    @default("state_dir")
    def _default_state_dir(self) -> str:
        data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return os.path.join(data, "kohakuriver", "runner", self.node_name)

    def initialize(self, argv: Any = None) -> None:
        self.parse_command_line(argv)
        cl_config = self.config
        if self.config_file:
            self.load_config_file(self.config_file)
        else:
            self.load_config_file("kohakuriver_runner_config.py", path=_config_dirs())
        self.update_config(cl_config)  # the command line wins over files

    def _backend_options(self) -> dict[str, Any]:
        """``backend_options`` over the confinement traits (hidden paths add up)."""
        options: dict[str, Any] = {
            "host_url": self.host_url,
            "task_user": self.task_user,
            "user_map": dict(self.user_map),
            "map_same_name": self.map_same_name,
            "uid_range": self.uid_range,
        }
        if self.allowed_workdirs is not None:
            options["allowed_workdirs"] = list(self.allowed_workdirs)
        options.update(self.backend_options)
        options["hidden_paths"] = [
            *self.hidden_paths,
            *self.backend_options.get("hidden_paths", []),
        ]
        return options

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def start(self) -> None:
        if not self.token:
            self.log.error("no runner token: set c.RunnerApp.token, --token or $%s", TOKEN_ENV)
            self.exit(1)
        self.exit(asyncio.run(self._run()))

    async def _run(self) -> int:
        state_dir = Path(self.state_dir).expanduser()
        backend = build_backend(
            self.backend,
            state_dir=state_dir,
            node=self.node_name,
            log=self.log,
            options=self._backend_options(),
        )
        https = self.host_url.startswith("https:")
        backend.link_host(
            HostLink(self.host_url, self.token, self.ssl_context() if https else None)
        )
        nvml = Nvml()
        agent = RunnerAgent(
            host_url=self.host_url,
            token=self.token,
            node=self.node_name,
            backend=backend,
            nvml=nvml,
            ssl_context=self.ssl_context(),
            reconnect_max_delay=self.reconnect_max_delay,
            log=self.log,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await backend.recover()
        self.log.info(
            "runner %s (backend %s, state %s) connecting to %s",
            self.node_name,
            ",".join(backend.backend_names()),
            state_dir,
            agent.url,
        )
        try:
            status = await agent.run()
        finally:
            if self.kill_tasks_on_exit:
                await stop_all_tasks(backend, self.exit_kill_grace, self.log)
            await backend.close()  # tasks left keep running under their supervisors
            nvml.shutdown()
        self.log.info(
            "runner stopped (%s)",
            "its tasks were killed" if self.kill_tasks_on_exit else "tasks keep running",
        )
        return status


ALIVE = frozenset({"running", "paused"})


async def stop_all_tasks(backend: Any, grace: float, log: Any) -> None:
    """Kill every running or paused task of ``backend`` and wait (``grace`` + 5 s at most)
    for them to end; their exit status is reported to the host at the next ``hello``."""
    alive = [t.task_id for t in await backend.list_tasks() if t.state in ALIVE]
    if not alive:
        return
    log.info("kill_tasks_on_exit: killing %d task(s): %s", len(alive), alive)
    for task_id in alive:
        try:
            await backend.kill(task_id, grace)
        except Exception as exc:  # one task's failure must not keep the others running
            log.warning("could not kill task %s: %s", task_id, exc)
    deadline = asyncio.get_running_loop().time() + grace + 5
    while alive and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        alive = [t.task_id for t in await backend.list_tasks() if t.state in ALIVE]
    if alive:
        log.warning("tasks still running after kill_tasks_on_exit: %s", alive)


main = RunnerApp.launch_instance
