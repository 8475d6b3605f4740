"""Heartbeat metrics: CPU, memory, load and per-GPU samples."""

from __future__ import annotations

import os
import time

import psutil

from kohakuriver_lab.models import GpuMetrics, NodeMetrics
from kohakuriver_lab.runner.nvml import Nvml


class MetricsSampler:
    """Takes :class:`NodeMetrics` samples; CPU percent is the delta since the last sample."""

    def __init__(self, nvml: Nvml) -> None:
        self.nvml = nvml
        psutil.cpu_percent(interval=None)  # prime the delta

    def sample(self) -> NodeMetrics:
        memory = psutil.virtual_memory()
        try:
            load: float | None = os.getloadavg()[0]
        except OSError:
            load = None
        return NodeMetrics(
            at=time.time(),
            cpu_percent=float(psutil.cpu_percent(interval=None)),
            memory_used=int(memory.total - memory.available),
            memory_total=int(memory.total),
            load_1m=load,
            gpus=[self._gpu(i) for i in range(self.nvml.device_count())],
        )

    def _gpu(self, index: int) -> GpuMetrics:
        nvml = self.nvml
        handle = nvml.handle(index)
        if handle is None:
            return GpuMetrics(index=index)
        util = nvml.call("nvmlDeviceGetUtilizationRates", handle)
        memory = nvml.call("nvmlDeviceGetMemoryInfo", handle)
        temperature = nvml.call("nvmlDeviceGetTemperature", handle, 0)  # NVML_TEMPERATURE_GPU
        power = nvml.call("nvmlDeviceGetPowerUsage", handle)  # milliwatts
        return GpuMetrics(
            index=index,
            utilization=float(util.gpu) if util is not None else None,
            memory_used=int(memory.used) if memory is not None else None,
            memory_total=int(memory.total) if memory is not None else None,
            temperature=float(temperature) if temperature is not None else None,
            power_watts=power / 1000.0 if power is not None else None,
        )
