"""``ClusterHostApp``: the cluster host as a Jupyter server extension (and ``jupyter kohakuriver``)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Unicode, default

from kohakuriver_lab import __version__
from kohakuriver_lab.models import RunnerTokenCreate

from .client_mode import (
    ClientModeError,
    RemoteHost,
    describe,
    env_remote_url,
    remote_settings,
)
from .costs import CostLimits
from .db.engine import make_engine, make_sessionmaker, upgrade_schema
from .embedded import EMBEDDED_TOKEN_NAME, EmbeddedRunner, active_tasks_on
from .events import EventBus
from .gateway import RunnerGateway
from .handlers.proxy import proxy_routes
from .kernels import PROVISIONER_NAME, install_default_provisioner
from .logstore import LogStore
from .nodes import NodeRegistry
from .routes import handlers
from .scheduler import Scheduler
from .services import ClusterServices


class ClusterHostApp(ExtensionApp):
    """The kohakuriver-lab cluster host: database, scheduler, REST API and runner gateway."""

    name = "kohakuriver"
    description = "kohakuriver-lab cluster host (headless Jupyter server)"
    version = __version__
    load_other_extensions = False  # only used by ``jupyter kohakuriver`` (headless)
    serverapp_config = {"open_browser": False}
    default_url = "/kohakuriver/api/cluster"
    classes = [
        NodeRegistry,
        Scheduler,
        RunnerGateway,
        LogStore,
        EmbeddedRunner,
        EventBus,
        CostLimits,
    ]

    data_dir = Unicode(
        help="Directory for the host's database (SQLite default), task logs and runner state."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "kohakuriver")

    db_url = Unicode(
        help=(
            "SQLAlchemy database URL. Default: SQLite (WAL mode) in data_dir. PostgreSQL: "
            "'postgresql+psycopg://user:password@host/dbname'."
        )
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return "sqlite:///" + os.path.join(self.data_dir, "cluster.db")

    embedded_runner = Bool(
        False,
        help="Start a runner for this machine with the host (a one-node cluster, no Docker needed).",
    ).tag(config=True)

    export_kernel_env = Bool(
        True,
        help="Export KOHAKURIVER_URL and KOHAKURIVER_TOKEN to kernels so they find the host.",
    ).tag(config=True)

    jobs_dir = Unicode(
        "kohakuriver-jobs",
        help="Folder of the Jupyter contents where executed notebooks of jobs are saved "
        "(as <jobs_dir>/<task id>/output.ipynb).",
    ).tag(config=True)

    kernel_magics = Bool(
        True,
        help="Load the %kohaku magics into the IPython kernels this server starts (through a "
        "kernel provisioner; off when another default provisioner is configured).",
    ).tag(config=True)

    sweep_interval = Float(
        1.0, help="Seconds between background sweeps (liveness, stuck orders, queue)."
    ).tag(config=True)

    remote_url = Unicode(
        help="Client mode: the Jupyter base URL of a remote cluster host "
        "('https://host:8888/'). This server then serves the panel and magics by proxying "
        "to that host (no database, scheduler or runner here). Default: $KOHAKURIVER_URL "
        "when $KOHAKURIVER_TOKEN holds a personal API token (kra_...), else host mode. "
        "'jupyter kohakuriver' refuses it.",
    ).tag(config=True)

    @default("remote_url")
    def _default_remote_url(self) -> str:
        url = "" if self._standalone else env_remote_url(os.environ)
        if url:
            self._remote_source = "$KOHAKURIVER_URL"
        return url

    remote_token = Unicode(
        help="Client mode: your personal API token on the remote host (kra_..., from "
        "POST /kohakuriver/api/tokens there). Default: $KOHAKURIVER_TOKEN. Never logged.",
    ).tag(config=True)

    @default("remote_token")
    def _default_remote_token(self) -> str:
        return os.environ.get("KOHAKURIVER_TOKEN", "")

    remote_ca_certs = Unicode(
        help="Client mode: a CA bundle (PEM) to verify an https remote host with, e.g. a "
        "lab's own CA. Default: $KOHAKURIVER_CA_FILE, else the system's CAs.",
    ).tag(config=True)

    @default("remote_ca_certs")
    def _default_remote_ca_certs(self) -> str:
        return os.environ.get("KOHAKURIVER_CA_FILE", "")

    services: ClusterServices | None = None
    remote: RemoteHost | None = None
    _remote_source = "configuration"
    _sweeper: PeriodicCallback | None = None
    _embedded: EmbeddedRunner | None = None
    _sweeps = 0

    # =========================================================================
    # Set-up
    # =========================================================================

    @property
    def _standalone(self) -> bool:
        """Whether this is ``jupyter kohakuriver`` (the headless host)."""
        return getattr(self.serverapp, "starter_app", None) is self

    def initialize_settings(self) -> None:
        """Open the database (migrating it) and build the services; in client mode, only
        the connection to the remote host."""
        if self.remote_url:
            self._initialize_client_mode()
            return
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # the database, keys and logs are the host's alone
        engine = make_engine(self.db_url)
        upgrade_schema(engine, self.log)
        self.services = ClusterServices.build(
            engine, make_sessionmaker(engine), self.data_dir, parent=self
        )
        self.settings["kohakuriver_services"] = self.services
        if self.kernel_magics and install_default_provisioner():
            self.log.debug("kernels get the %%kohaku magics (%s)", PROVISIONER_NAME)
        self.log.info(
            "kohakuriver host: database %s", engine.url.render_as_string(hide_password=True)
        )

    def _initialize_client_mode(self) -> None:
        if self._standalone:
            self.log.critical(
                "jupyter kohakuriver is a cluster host and cannot run in client mode: remove "
                "ClusterHostApp.remote_url (client mode is for a JupyterLab or Jupyter server)"
            )
            self.exit(1)
        try:
            settings = remote_settings(
                self.remote_url, self.remote_token, self.remote_ca_certs, self._remote_source
            )
        except ClientModeError as exc:
            self.log.critical("%s", exc.message)
            raise
        self.remote = RemoteHost(settings)
        self.settings["kohakuriver_remote"] = self.remote
        if self.kernel_magics and install_default_provisioner():
            self.log.debug("kernels get the %%kohaku magics (%s)", PROVISIONER_NAME)
        self.log.info("%s", describe(settings))

    def initialize_handlers(self) -> None:
        """Register the REST API, the log stream and the runner socket (client mode: the
        proxy to the remote host)."""
        self.handlers.extend(proxy_routes() if self.remote is not None else handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the background sweep, the embedded runner and the kernel environment."""
        if self.remote is not None:  # client mode: kernels talk to the remote host directly
            if self.export_kernel_env:
                os.environ["KOHAKURIVER_URL"] = self.remote.url
                os.environ["KOHAKURIVER_TOKEN"] = self.remote.settings.token
                if self.remote.settings.ca_certs:
                    os.environ["KOHAKURIVER_CA_FILE"] = self.remote.settings.ca_certs
            return
        assert self.services is not None
        self._sweeper = PeriodicCallback(self._sweep, self.sweep_interval * 1000)
        self._sweeper.start()
        local_url = f"http://127.0.0.1:{serverapp.port}{serverapp.base_url}"
        if self.export_kernel_env:
            os.environ["KOHAKURIVER_URL"] = local_url
            token = getattr(serverapp.identity_provider, "token", "") or ""
            if token:
                os.environ["KOHAKURIVER_TOKEN"] = token
        if self.embedded_runner:
            self._start_embedded(local_url)
        self.services.scheduler.kick()

    def _start_embedded(self, host_url: str) -> None:
        assert self.services is not None
        tokens = self.services.tokens
        tokens.revoke_named(EMBEDDED_TOKEN_NAME)
        runner = EmbeddedRunner(
            host_url, "", os.path.join(self.data_dir, "embedded-runner"), parent=self
        )
        info = tokens.create(RunnerTokenCreate(name=EMBEDDED_TOKEN_NAME, node=runner.name), "host")
        runner._token = info.token or secrets.token_urlsafe(8)
        self._embedded = runner
        runner.start()

    def _active_on(self, node: str) -> int:
        """How many assigning, running or paused tasks the database puts on ``node``."""
        if self.services is None:
            return 0
        try:
            with self.services.db() as session:
                return active_tasks_on(session, node)
        except Exception:
            self.log.exception("could not count the tasks of node %s", node)
            return 0

    def _sweep(self) -> None:
        services = self.services
        if services is None:
            return
        self._sweeps += 1
        try:
            services.gateway.check_liveness()
            if self._sweeps % 5 == 0:
                services.scheduler.resend_stuck()
            if self._sweeps % 30 == 0:
                with services.db() as session:
                    services.registry.flush(session)
                    session.commit()
                services.api_tokens.flush_last_used()
            services.scheduler.kick()
        except Exception:
            self.log.exception("kohakuriver background sweep failed")

    async def stop_extension(self) -> None:
        """Stop background work; tasks on runners keep running."""
        if self.remote is not None:
            await self.remote.aclose()
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._embedded is not None:
            await self._embedded.stop(self._active_on(self._embedded.name))
        if self.services is not None:
            self.services.gateway.close_all()
            with self.services.db() as session:
                self.services.registry.flush(session)
                session.commit()
            self.services.api_tokens.flush_last_used()
            self.services.engine.dispose()


main = launch_new_instance = ClusterHostApp.launch_instance
