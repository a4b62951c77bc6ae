"""tests/harness/speed.py: the machine-speed figure printed with the suite's stage timings."""
import importlib.util
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPEED = os.path.join(HERE, "..", "..", "harness", "speed.py")


def _module():
    spec = importlib.util.spec_from_file_location("speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_work_is_the_same_every_round():
    speed = _module()
    assert speed.work() == speed.work()


def test_the_fastest_round_is_the_figure(monkeypatch):
    """A round slowed by something else on the machine does not count: the
    figure is the fastest round, not the mean."""
    speed = _module()
    delays = iter([0.3, 0.05, 0.2])
    monkeypatch.setattr(speed, "work", lambda: time.sleep(next(delays)))
    figure = speed.measure(3)
    assert 0.05 <= figure < 0.2, figure


def test_the_script_prints_seconds_with_two_decimals():
    proc = subprocess.run([sys.executable, SPEED, "--rounds", "1"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d+\.\d\d\n", proc.stdout), proc.stdout
    assert float(proc.stdout) > 0
