"""papermill engine ``kohakuriver``: execute a notebook on the cluster from anywhere.

    papermill in.ipynb out.ipynb -p alpha 0.1 --engine kohakuriver

papermill parameterizes the notebook locally (so the injected-parameters cell is there as
usual); this engine submits the parameterized notebook as a notebook job, prints its live
output while it runs, and puts the executed notebook from the node into papermill's notebook
object, which papermill then writes to the output path through its own I/O (any path or URL
papermill supports). A failed cell fails the command as papermill's own engine does.

Resources come from the notebook's metadata ``{"kohakuriver": {"cores": 2, "memory": "8G",
"gpus": 1, "targets": ["node1"], "image": ...}}`` or the environment
(``KOHAKURIVER_CORES``, ``_MEMORY``, ``_GPUS``, ``_TARGETS`` comma-separated, ``_IMAGE``,
``_PRIORITY``); the host from ``KOHAKURIVER_URL`` / ``KOHAKURIVER_TOKEN``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV_RESOURCES = {
    "cores": "KOHAKURIVER_CORES",
    "memory": "KOHAKURIVER_MEMORY",
    "gpus": "KOHAKURIVER_GPUS",
    "targets": "KOHAKURIVER_TARGETS",
    "image": "KOHAKURIVER_IMAGE",
    "priority": "KOHAKURIVER_PRIORITY",
}


def resources_for(nb: Any) -> dict[str, Any]:
    """Resources from the environment, overridden by the notebook's ``kohakuriver`` metadata."""
    found: dict[str, Any] = {}
    for field, var in ENV_RESOURCES.items():
        value = os.environ.get(var)
        if not value:
            continue
        if field in ("cores", "priority"):
            found[field] = int(value)
        elif field == "gpus":
            found[field] = [int(g) for g in value.split(",")] if "," in value else int(value)
        elif field == "targets":
            found[field] = [t for t in value.split(",") if t]
        else:
            found[field] = value
    meta = dict(nb.get("metadata", {}).get("kohakuriver") or {})
    found.update({k: v for k, v in meta.items() if k in (*ENV_RESOURCES, "name", "env")})
    return found


def _make_engine(base: type[Any]) -> type[Any]:
    """Build the engine class on papermill's ``Engine``."""

    class KohakuRiverEngine(base):  # type: ignore[misc,valid-type]
        """Runs the managed notebook as a kohakuriver notebook job and adopts its output."""

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            import nbformat
            from papermill.execute import remove_error_markers

            from kohakuriver_lab.cluster import Cluster

            from_dict: Any = nbformat.from_dict
            nb = nb_man.nb
            # the job re-adds papermill's metadata; send the notebook as parameterized here
            payload = from_dict(nb)
            payload.metadata.pop("papermill", None)
            resources = resources_for(nb)
            input_path = kwargs.get("input_path")
            if isinstance(input_path, str):
                resources.setdefault("name", os.path.basename(input_path))
            cluster = Cluster()
            try:
                task = cluster.run_notebook(payload, {}, **resources)
                print(f"kohakuriver: task {task.task_id} submitted", file=sys.stderr, flush=True)
                try:  # live output, as papermill --log-output would show it
                    for stream, text in task.follow():
                        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
                except Exception:  # the log stream is a courtesy; wait() decides
                    pass
                info = task.wait()
                try:
                    # papermill marks the failing cell again when it writes the output
                    executed = remove_error_markers(from_dict(task.output_notebook()))
                except Exception as exc:
                    raise RuntimeError(
                        f"kohakuriver task {task.task_id} ended {info.status.value} without an output "
                        f"notebook ({info.reason or exc})"
                    ) from None
                local = dict(nb.metadata.get("papermill", {}))
                remote = executed.metadata.setdefault("papermill", {})
                for key in ("parameters", "input_path", "output_path", "default_parameters"):
                    if key in local:
                        remote[key] = local[key]  # the job saw them already injected
                remote["kohakuriver_task_id"] = str(task.task_id)
                nb_man.nb = executed
                if info.status.value != "completed" and not _has_error(executed):
                    raise RuntimeError(
                        f"kohakuriver task {task.task_id} ended {info.status.value}: {info.reason or ''}"
                    )
            finally:
                cluster.close()
            return nb_man.nb

    return KohakuRiverEngine


def __getattr__(name: str) -> Any:
    """``KohakuRiverEngine``, built on first access.

    Importing papermill loads every ``papermill.engine`` entry point, this one included, so
    a class statement at module level would make ``import kohakuriver_lab.papermill_engine``
    before papermill a circular import. Built here, the re-entrant access during papermill's
    import finds ``Engine`` already defined and caches the class for the outer one.
    """
    if name != "KohakuRiverEngine":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from papermill.engines import Engine  # may re-enter this function (entry points)

    engine = globals().get("KohakuRiverEngine")
    if engine is None:
        engine = globals()["KohakuRiverEngine"] = _make_engine(Engine)
    return engine


def _has_error(nb: Any) -> bool:
    return bool(nb.get("metadata", {}).get("papermill", {}).get("exception"))
