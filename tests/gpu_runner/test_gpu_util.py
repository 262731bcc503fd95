"""GPU utilisation is exported only where NVML answers; elsewhere it is absent, not zero."""

from __future__ import annotations

import importlib.util

import pytest

from gpu_runner.gpu_util import GpuUtilisation


def _nvml_works() -> bool:
    if importlib.util.find_spec("pynvml") is None:
        return False
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_works(), reason="this machine has an NVIDIA driver")
def test_without_nvml_there_is_no_sample_and_closing_is_harmless() -> None:
    util = GpuUtilisation(0)
    assert not util.available and util.sample() is None
    util.close()
    util.close()


@pytest.mark.gpu
@pytest.mark.skipif(not _nvml_works(), reason="needs an NVIDIA driver (NVML): none here")
def test_on_a_gpu_machine_a_sample_is_a_fraction() -> None:
    util = GpuUtilisation(0)
    try:
        value = util.sample()
        assert util.available and value is not None and 0.0 <= value <= 1.0
    finally:
        util.close()
