"""A thin NVML wrapper: initialized once; no driver means no GPUs, never a crash."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kohakuriver.runner.nvml")


class Nvml:
    """Lazily initialized NVML session; every call degrades to ``None``/``[]``."""

    def __init__(self) -> None:
        self._mod: Any = None
        self._tried = False

    def _init(self) -> Any:
        if self._tried:
            return self._mod
        self._tried = True
        try:
            import pynvml
        except ImportError:
            log.info("nvidia-ml-py is not installed: no GPUs")
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # covers LibraryNotFound, DriverNotLoaded, ...
            log.info("NVML unavailable (%s): no GPUs", exc)
            return None
        self._mod = pynvml
        return pynvml

    @property
    def available(self) -> bool:
        return self._init() is not None

    def device_count(self) -> int:
        mod = self._init()
        if mod is None:
            return 0
        try:
            return int(mod.nvmlDeviceGetCount())
        except mod.NVMLError as exc:
            log.warning("NVML device count failed: %s", exc)
            return 0

    def handle(self, index: int) -> Any:
        mod = self._init()
        return None if mod is None else self.call("nvmlDeviceGetHandleByIndex", index)

    def call(self, name: str, *args: Any) -> Any:
        """Call ``pynvml.<name>(*args)``; ``None`` when NVML cannot answer."""
        mod = self._init()
        if mod is None:
            return None
        try:
            return getattr(mod, name)(*args)
        except mod.NVMLError:  # NVMLError_NotSupported and friends
            return None

    def shutdown(self) -> None:
        if self._mod is not None:
            try:
                self._mod.nvmlShutdown()
            except self._mod.NVMLError as exc:
                log.debug("nvmlShutdown failed: %s", exc)
        self._mod = None
        self._tried = False


def as_text(value: Any) -> str:
    """NVML returns bytes in old bindings and str in new ones."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)
