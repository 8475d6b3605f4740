"""kohakuriver-lab: a GPU cluster for a research lab, run from Jupyter.

Importing this package is cheap on purpose (kernels import it for the magics): the host
(``kohakuriver_lab.server``) and the runner (``kohakuriver_lab.runner``) are only imported by
the hooks below, when Jupyter or the runner command asks for them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncCluster", "Cluster", "__version__", "glue", "load_ipython_extension"]

_LAZY = {
    "Cluster": "kohakuriver_lab.cluster",
    "AsyncCluster": "kohakuriver_lab.cluster",
    "glue": "kohakuriver_lab._glue",
}


def __getattr__(name: str) -> Any:
    """Import the notebook API on first use (``import kohakuriver_lab`` stays cheap)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kohakuriver_lab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kohakuriver_lab``: register the ``%kohaku`` magics (imported only now)."""
    from kohakuriver_lab.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kohakuriver_lab``: stop the live-event thread."""
    from kohakuriver_lab.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the cluster host extension lives (imported lazily)."""
    from kohakuriver_lab.server.app import ClusterHostApp

    return [{"module": "kohakuriver_lab.server.app", "app": ClusterHostApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab panel lives (built from ``labextension/``)."""
    return [{"src": "labextension", "dest": "kohakuriver-lab"}]
