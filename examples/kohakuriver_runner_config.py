# Example configuration for `kohakuriver-runner` (the node daemon).
#
# Put it in the directory you start the runner from, in ~/.jupyter/, or pass it
# with `kohakuriver-runner --config /path/to/kohakuriver_runner_config.py`.
# Command-line options (--host-url, --token, --name, --backend, --state-dir,
# --log-level) override what is set here.

c = get_config()  # type: ignore[name-defined]  # noqa: F821

# The Jupyter server that hosts the cluster, including its base URL if any.
c.RunnerApp.host_url = "http://127.0.0.1:8888/"

# The runner token issued by the host (POST /kohakuriver/api/runner-tokens).
# Prefer the environment variable KOHAKURIVER_RUNNER_TOKEN over writing it here.
# c.RunnerApp.token = "..."

# This node's name as the cluster shows it (default: the short hostname).
# c.RunnerApp.node_name = "gpu-node-01"   (command line: --name)

# How tasks run: "local" (plain processes with cgroups; needs nothing installed).
c.RunnerApp.backend = "local"

# Where task state and logs are kept until the host has them
# (default: ~/.local/share/kohakuriver/runner/<name>).
# c.RunnerApp.state_dir = "/var/lib/kohakuriver/runner"

# Longest wait between reconnect attempts, in seconds (backoff starts at 0.5 s).
# c.RunnerApp.reconnect_max_delay = 30.0

# TLS (https:// host URLs): a private CA bundle, or turn verification off (not advised).
# c.RunnerApp.ca_file = "/etc/ssl/certs/lab-ca.pem"
# c.RunnerApp.verify_tls = True

# c.RunnerApp.log_level = "INFO"

# Backend-specific settings. For "local": turn cgroups off (memory limits then fall back to
# RLIMIT_AS, and an out-of-memory death cannot be told apart from other failures).
# c.RunnerApp.backend_options = {"use_cgroups": False}
