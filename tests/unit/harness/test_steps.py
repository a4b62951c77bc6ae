"""tests/harness/steps.py: the log copy and the molecule step times of the suite's closing table."""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = os.path.join(HERE, "..", "..", "harness", "steps.py")

# what molecule prints around its steps (in colour or not: create here)
OUTPUT = """\x1b[2mINFO    \x1b[0m [audit > destroy] Executing
PLAY [Destroy] ****
INFO     [audit > syntax] Executing
\x1b[36mINFO    \x1b[0m \x1b[32maudit\x1b[0m \u279c \x1b[33mcreate\x1b[0m: \x1b[36mExecuting\x1b[0m
INFO     [audit > converge] Executing
  TASK [secvirt.kvm.audit : Install auditd] ***
INFO     [audit > idempotence] Executing
INFO     [audit > verify] Executing
INFO     [audit > verify] Executing Testinfra tests found in /x/molecule/audit/tests/...
INFO     [audit > destroy] Executing
"""
# a guest console's bytes that are not UTF-8 must not stop the copy
RAW = OUTPUT.encode() + b"\xff not UTF-8\n"


def test_the_log_is_the_input_and_each_step_is_marked_once(tmp_path):
    log, steps = tmp_path / "log", tmp_path / "steps.tsv"
    proc = subprocess.run([sys.executable, STEPS, str(log), str(steps)], input=RAW,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == OUTPUT + "\ufffd not UTF-8\n"
    names = [line.split("\t")[0] for line in steps.read_text().splitlines()]
    # verify's second "Executing" is not a new step; destroy runs twice
    assert names == ["destroy", "syntax", "create", "converge", "idempotence", "verify", "destroy", "end"]


def test_durations_run_to_the_next_step_and_sum_a_repeated_one():
    spec = importlib.util.spec_from_file_location("secvirt_steps", STEPS)
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    lines = ["destroy\t100", "syntax\t103", "create\t110", "converge\t150", "idempotence\t400",
             "verify\t460", "destroy\t1000", "end\t1004"]
    assert steps.durations(lines) == [("destroy", 7), ("syntax", 7), ("create", 40), ("converge", 250),
                                      ("idempotence", 60), ("verify", 540)]
