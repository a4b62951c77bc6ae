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


def _module():
    spec = importlib.util.spec_from_file_location("secvirt_steps", STEPS)
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    return steps


STEP_LINES = ["destroy\t100", "syntax\t103", "create\t110", "converge\t150", "idempotence\t400",
              "verify\t460", "destroy\t1000", "end\t1004"]
# what secvirt_runs.py wrote: converge, idempotence, three runs in verify
# (one of them ad hoc), destroy's playbook, and a line cut short
RUN_LINES = ["151\t390\t80\t160\tconverge.yml", "401\t455\t80\t160\tconverge.yml",
             "470\t530\t40\t41\ttmpab12.yml", "600\t606\t1\t2\tadhoc:ansible.builtin.command",
             "700\t790\t60\t61\tsite.yml", "1001\t1003\t2\t2\tdestroy.yml", "1010\t10"]


def test_durations_run_to_the_next_step_and_sum_a_repeated_one():
    assert _module().durations(STEP_LINES) == [("destroy", 7), ("syntax", 7), ("create", 40), ("converge", 250),
                                               ("idempotence", 60), ("verify", 540)]


def test_runs_are_counted_in_the_step_they_began_in():
    steps = _module()
    runs = steps.runs(RUN_LINES)
    assert len(runs) == 6  # the cut line is skipped
    assert steps.in_step(STEP_LINES, runs, "verify") == (3, 104, 60 + 6 + 90)
    assert steps.in_step(STEP_LINES, runs, "converge") == (1, 160, 239)
    assert steps.in_step(STEP_LINES, runs, "destroy") == (1, 2, 2)


def test_row_and_executions_from_the_command_line(tmp_path):
    step_file, run_file = tmp_path / "steps.tsv", tmp_path / "runs.tsv"
    step_file.write_text("\n".join(STEP_LINES) + "\n")
    run_file.write_text("\n".join(RUN_LINES) + "\n")

    def cli(*argv):
        proc = subprocess.run([sys.executable, STEPS] + [str(a) for a in argv], capture_output=True, text=True,
                              check=True)
        return proc.stdout.strip()

    assert cli("--executions", run_file) == str(160 + 160 + 41 + 2 + 61 + 2)
    assert cli("--row", "audit", step_file, run_file).split() == [
        "audit", "0:07", "0:40", "4:10", "1:00", "9:00", "0:07", "3", "104", "2:36"]
    # no runs file (a scenario that died before its first run): dashes, no error
    assert cli("--executions", tmp_path / "none.tsv") == ""
    assert cli("--row", "audit", step_file, tmp_path / "none.tsv").split()[-3:] == ["-", "-", "-"]


def test_top_tasks_sum_by_name_and_by_module():
    lines = ["1\t10.0\tsecvirt.kvm.deb_packages\tpki : Install openssl",
             "2\t5.5\tsecvirt.kvm.deb_packages\tpki : Install openssl",
             "2\t4.5\tansible.builtin.template\tpki : Write the config",
             "3\t20.0\tgather_facts\tGathering Facts", "cut\tshort"]
    table = _module().top_tasks(lines, 2).splitlines()
    assert "40 s in Ansible tasks" in table[0]
    assert table[1].split() == ["20", "50.0%", "1", "Gathering", "Facts"]
    assert table[2].split() == ["15", "38.8%", "2", "pki", ":", "Install", "openssl"]
    assert table[3] == ""
    assert table[4].split() == ["20", "50.0%", "1", "gather_facts"]
    assert table[5].split() == ["15", "38.8%", "2", "secvirt.kvm.deb_packages"]


CALLBACKS = os.path.join(HERE, "..", "..", "..", "molecule", "_harness", "callback_plugins")


def test_the_callback_records_each_run_with_its_tasks_and_executions(tmp_path):
    """secvirt_runs.py, loaded as molecule's configuration loads it, on real
    ansible-playbook and ansible runs against localhost."""
    record = tmp_path / "runs.tsv"
    playbook = tmp_path / "play.yml"
    # two hosts (both local): each task executes once per host; a loop is
    # one execution, a skipped task counts, and so does the failed one that
    # ends the run
    playbook.write_text("""- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: "{{ item }}"}
      loop: [1, 2, 3]
    - ansible.builtin.debug: {msg: skipped}
      when: false
    - ansible.builtin.fail: {msg: stop}
    - ansible.builtin.debug: {msg: never}
""")
    env = dict(os.environ, SECVIRT_ANSIBLE_RUNS=str(record), ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
               ANSIBLE_CALLBACKS_ENABLED="secvirt_runs", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    bindir = os.path.dirname(sys.executable)
    inventory = "one,two,"
    common = ["-i", inventory, "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable]
    play = subprocess.run([os.path.join(bindir, "ansible-playbook"), str(playbook)] + common,
                          env=env, capture_output=True, text=True, check=False)
    assert play.returncode == 2, play.stdout[-2000:]
    adhoc = subprocess.run([os.path.join(bindir, "ansible"), "one"] + common + ["-m", "ansible.builtin.ping"],
                           env=env, capture_output=True, text=True, check=False)
    assert adhoc.returncode == 0, adhoc.stdout[-2000:]
    lines = [line.split("\t") for line in record.read_text().splitlines()]
    assert [fields[2:] for fields in lines] == [["3", "6", "play.yml"], ["1", "1", "adhoc:ansible.builtin.ping"]]
    for fields in lines:
        assert int(fields[0]) <= int(fields[1])
    # each task's cost, with the start of the run it belongs to
    tasks = [line.split("\t") for line in (tmp_path / "runs-tasks.tsv").read_text().splitlines()]
    assert [(t[0], t[2], t[3]) for t in tasks] == [
        (lines[0][0], "ansible.builtin.debug", "ansible.builtin.debug"),
        (lines[0][0], "ansible.builtin.debug", "ansible.builtin.debug"),
        (lines[0][0], "ansible.builtin.fail", "ansible.builtin.fail"),
        (lines[1][0], "ansible.builtin.ping", "ansible.builtin.ping")]
    assert all(float(t[1]) >= 0 for t in tasks)
    assert sum(float(t[1]) for t in tasks[:3]) <= int(lines[0][1]) - int(lines[0][0]) + 1
    # without the variable the callback writes nothing
    del env["SECVIRT_ANSIBLE_RUNS"]
    subprocess.run([os.path.join(bindir, "ansible"), "one"] + common + ["-m", "ansible.builtin.ping"],
                   env=env, capture_output=True, check=False)
    assert len(record.read_text().splitlines()) == 2
    assert len((tmp_path / "runs-tasks.tsv").read_text().splitlines()) == 4
