"""kohakuriver-lab: a GPU cluster for a research lab, run from Jupyter.

Importing this package is cheap on purpose (kernels import it for the magics): the host
(``kohakuriver_lab.server``) and the runner (``kohakuriver_lab.runner``) are only imported by
the hooks below, when Jupyter or the runner command asks for them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Tell jupyter_server where the cluster host extension lives (imported lazily)."""
    from kohakuriver_lab.server.app import ClusterHostApp

    return [{"module": "kohakuriver_lab.server.app", "app": ClusterHostApp}]
