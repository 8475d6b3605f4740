# Example configuration of the kohakuriver-lab cluster host.
#
# Copy to ~/.jupyter/jupyter_server_config.py (or pass with --config) for the Jupyter server
# that hosts the cluster (`jupyter lab` with kohakuriver-lab installed, or the headless
# `jupyter kohakuriver`). Every option can also be given on the command line, e.g.
#   jupyter lab --ClusterHostApp.embedded_runner=True
# `jupyter kohakuriver --help-all` lists them all with their defaults.

c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)

# =============================================================================
# The host
# =============================================================================

# Where the host keeps its SQLite database, task logs and the embedded runner's state.
# Default: <jupyter data dir>/kohakuriver (e.g. ~/.local/share/jupyter/kohakuriver;
# scripts/run.sh uses .kohakuriver/ in the checkout).
# c.ClusterHostApp.data_dir = "/srv/kohakuriver"

# The database. Default: SQLite in WAL mode at <data_dir>/cluster.db.
# For PostgreSQL (pip install "kohakuriver-lab[postgres]"):
# c.ClusterHostApp.db_url = "postgresql+psycopg://kohakuriver:secret@db.lab.internal/kohakuriver"

# Start a runner for this machine together with the host: a one-node cluster that needs
# nothing else (the Quick start turns this on). Off by default.
c.ClusterHostApp.embedded_runner = True

# Node name and backends of that embedded runner (default: this machine's short host name;
# "docker,local" when a Docker daemon answers at start, else "local").
# c.EmbeddedRunner.node_name = "workstation"
# c.EmbeddedRunner.backend = "local"

# Stopping the server leaves the embedded node's tasks running (the log says how many) and
# the next start adopts them; on a laptop, kill them with the server instead:
# c.EmbeddedRunner.stop_tasks_on_exit = True

# Export KOHAKURIVER_URL / KOHAKURIVER_TOKEN to the kernels this server starts, so
# `from kohakuriver_lab.client import Client; Client()` finds the host with no arguments.
# c.ClusterHostApp.export_kernel_env = True

# =============================================================================
# Runners and scheduling
# =============================================================================

# Seconds between runner heartbeats (sent to runners when they connect). A node is marked
# offline, and its running tasks `lost`, after `offline_after` missed intervals.
# c.NodeRegistry.heartbeat_interval = 5.0
# c.NodeRegistry.offline_after = 3
# Metrics samples kept per node for charts (in memory; 120 x 5 s = 10 minutes).
# c.NodeRegistry.history_size = 120

# Seconds between SIGTERM and SIGKILL when a task is killed.
# c.Scheduler.kill_grace = 10.0
# Resend the start order of a task still `assigning` after this many seconds.
# c.Scheduler.assign_timeout = 30.0

# Close a runner's connection after this many refused (invalid) messages.
# c.RunnerGateway.max_bad_messages = 20

# =============================================================================
# The Jupyter server itself (standard options)
# =============================================================================

# Runners on other machines dial in to this server: listen beyond localhost and put it
# behind TLS (a reverse proxy or c.ServerApp.certfile / keyfile).
# c.ServerApp.ip = "0.0.0.0"
# c.ServerApp.port = 8888
