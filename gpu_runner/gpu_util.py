"""GPU utilisation from NVML, where NVML exists: the runner exports it next to its busy ratio.

``nvidia-ml-py`` (the ``gpu`` extra) is a ctypes binding to the driver's libnvidia-ml; on a
machine without the driver (every CPU runner) ``sample()`` is None and nothing is exported.
"""

from __future__ import annotations

import logging

log = logging.getLogger("inferq.runner")


class GpuUtilisation:
    """NVML's utilisation of one GPU; absent (every sample None) where NVML is."""

    def __init__(self, device: int = 0) -> None:
        self._nvml = None
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device)
            self._nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - no module, no driver, no device: all "absent"
            log.info("GPU utilisation not exported: NVML unavailable (%s)", exc)

    @property
    def available(self) -> bool:
        """Whether NVML answered for the device."""
        return self._handle is not None

    def sample(self) -> float | None:
        """Fraction of the last sample period the GPU was executing kernels (0..1)."""
        if self._nvml is None:
            return None
        try:
            return self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0
        except Exception:  # a transient NVML error skips one sample
            log.debug("NVML sample failed", exc_info=True)
            return None

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            self._nvml = self._handle = None
