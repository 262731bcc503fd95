"""The device gate: the device's slots are never exceeded, and when a run ends the next batch
is a waiting urgent one if any, else the one that has waited longest."""

from __future__ import annotations

import threading
import time

import pytest

from gpu_runner.gate import DeviceGate


def wait_for(cond, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Device:
    """Runs named batches through a gate; each holds its slot until released."""

    def __init__(self, slots: int):
        self.gate = DeviceGate(slots)
        self.order: list[str] = []
        self.on_device: set[str] = set()
        self.most = 0
        self._release: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, name: str, *, urgent: bool = False) -> None:
        self._release[name] = threading.Event()
        waiting = self.gate.waiting

        def run() -> None:
            with self.gate.hold(urgent=urgent):
                with self._lock:
                    self.order.append(name)
                    self.on_device.add(name)
                    self.most = max(self.most, len(self.on_device))
                self._release[name].wait(5)
                with self._lock:
                    self.on_device.discard(name)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)
        # it is on the device or queued before the next submit
        wait_for(lambda: name in self.order or self.gate.waiting > waiting)

    def finish(self, name: str) -> None:
        self._release[name].set()

    def join(self) -> None:
        for t in self._threads:
            t.join(5)


def test_an_urgent_batch_goes_before_batch_work_that_waited_longer() -> None:
    dev = Device(1)
    dev.submit("running")
    dev.submit("bulk-1")
    dev.submit("bulk-2")
    dev.submit("urgent", urgent=True)
    for name in ("running", "urgent", "bulk-1", "bulk-2"):
        wait_for(lambda n=name: n in dev.on_device)
        dev.finish(name)
    dev.join()
    assert dev.order == ["running", "urgent", "bulk-1", "bulk-2"]
    assert dev.most == 1


def test_a_device_with_two_slots_runs_two_and_queues_the_rest_in_arrival_order() -> None:
    dev = Device(2)
    for name in ("a", "b", "c", "d"):
        dev.submit(name)
    wait_for(lambda: dev.on_device == {"a", "b"})
    assert dev.gate.waiting == 2
    dev.finish("b")
    wait_for(lambda: dev.on_device == {"a", "c"})
    dev.finish("a")
    wait_for(lambda: dev.on_device == {"c", "d"})
    dev.finish("c")
    dev.finish("d")
    dev.join()
    assert dev.order == ["a", "b", "c", "d"] and dev.most == 2


def test_a_run_that_fails_frees_its_slot() -> None:
    gate = DeviceGate(1)
    with pytest.raises(RuntimeError), gate.hold():
        raise RuntimeError("the device failed")
    with gate.hold():  # would wait forever if the slot were lost
        pass
    assert gate.waiting == 0


def test_a_device_has_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        DeviceGate(0)
