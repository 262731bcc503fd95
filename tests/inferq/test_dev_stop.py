"""`inferq dev` stops on a second signal that arrives while the first is being handled (Ctrl-C
twice, or a supervisor forwarding the signal it got too). Its stop flag used to be a
``threading.Event``, whose ``set()`` takes a lock: the second handler, run inside the first
``set()``, waited on that lock forever. Two SIGINTs 100 µs apart hung that version about one
time in three; 15 tries make a pass by luck about 0.2 % likely."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

# The same handler and loop as ``run_dev``.
LOOP = """
import signal
from inferq.dev import StopFlag
stop = StopFlag()
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
print("ready", flush=True)
while not stop.wait(0.5):
    pass
"""


def test_two_signals_in_quick_succession_still_stop_the_dev_loop() -> None:
    hung = 0
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, "-c", LOOP], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.0001:
            pass
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            hung += 1
            proc.kill()
            proc.wait()
    assert hung == 0, f"{hung} of 15 hung after two SIGINTs"
