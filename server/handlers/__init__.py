"""Tornado handlers of the host: the REST API, the log stream and the runner socket."""
