"""Kernels started by the host get the ``%kohaku`` magics without ``%load_ext``.

A kernel provisioner (jupyter_client's plug-in point for launching kernels) that is the stock
local provisioner plus ``--ext=kohakuriver_lab`` on the command line of IPython kernels; the
host makes it the default provisioner when the default is still the stock one. Kernels of
other languages, and kernel specs that name a provisioner of their own, are left alone.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

PROVISIONER_NAME = "kohakuriver-local-provisioner"
STOCK_PROVISIONER = "local-provisioner"
EXTENSION_ARG = "--ext=kohakuriver_lab"


def is_ipython_kernel(cmd: list[str]) -> bool:
    """Whether a kernel command line starts ipykernel."""
    return any("ipykernel" in part for part in cmd[:4])


class MagicsProvisioner(LocalProvisioner):  # type: ignore[misc]
    """The local provisioner, loading the kohakuriver IPython extension into IPython kernels."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Add the extension argument to an IPython kernel's command line."""
        kwargs = await super().pre_launch(**kwargs)
        cmd = list(kwargs.get("cmd") or [])
        if is_ipython_kernel(cmd) and EXTENSION_ARG not in cmd:
            kwargs["cmd"] = [*cmd, EXTENSION_ARG]
        return kwargs  # type: ignore[no-any-return]


def install_default_provisioner() -> bool:
    """Make :class:`MagicsProvisioner` the default, unless another one was configured."""
    factory = KernelProvisionerFactory.instance()
    if factory.default_provisioner_name != STOCK_PROVISIONER:
        return False
    factory.default_provisioner_name = PROVISIONER_NAME
    return True
