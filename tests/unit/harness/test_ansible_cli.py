"""molecule/_harness/ansible_cli.py: the scenario tests' ssh retry, on a fake
ssh, and the batched refusal runs and the fact cache, on this machine.

No VM here: testinfra's ssh backend runs a local stand-in for ssh that fails
the way a dropped ControlMaster does, then answers; run_role_cases runs a
real role over a local connection with inputs it refuses before any change.
"""
import importlib.util
import json
import os
import sys

import pytest
from testinfra.backend import ssh

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "secvirt_ansible_cli", os.path.join(HERE, "..", "..", "..", "molecule", "_harness", "ansible_cli.py"))
ansible_cli = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ansible_cli)


def backend(monkeypatch, answers):
    """An ssh backend whose every ssh call returns the next (rc, stderr) of answers."""
    calls = []
    host = ssh.SshBackend("ssh://root@192.0.2.1")

    def run_local(self, command, *args):
        rc, stderr = answers[len(calls)]
        calls.append(command)
        return self.result(rc, self.encode(command), b"ok\n" if rc != 255 else b"", stderr.encode())

    monkeypatch.setattr(ssh.SshBackend, "run_local", run_local)
    monkeypatch.setattr(ansible_cli.time, "sleep", lambda s: None)
    return host, calls


def test_a_dropped_master_is_asked_again(monkeypatch):
    host, calls = backend(monkeypatch, [
        (255, "mux_client_request_session: read from master failed: Broken pipe"), (0, "")])
    assert host.run("true").rc == 0
    assert len(calls) == 2


def test_a_failing_command_is_not_run_twice(monkeypatch):
    # exit 255 of the command itself (auditctl does that), no ssh message
    host, calls = backend(monkeypatch, [(255, "Error sending add rule data request"), (0, "")])
    with pytest.raises(RuntimeError):
        host.run("auditctl -w /tmp")
    assert len(calls) == 1
    host, calls = backend(monkeypatch, [(1, "mux_client_request_session: x"), (0, "")])
    assert host.run("false").rc == 1 and len(calls) == 1


def test_retries_are_bounded(monkeypatch):
    host, calls = backend(monkeypatch, [(255, "ssh: connect to host 192.0.2.1 port 22: Connection refused")] * 3)
    with pytest.raises(RuntimeError):
        host.run("true")
    assert len(calls) == 3


def test_role_cases_are_refused_one_by_one_in_one_run(tmp_path):
    """run_role_cases with the real guest_policy role on this machine (local
    connection): inputs its argument specification and its validation refuse
    before any task touches the host, each refused on its own with its own
    message, the run itself successful."""
    inventory = tmp_path / "hosts"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    cases = [{"guest_policy_mode": "audit"}, {"guest_policy_guests": "web1"}, {"guest_policy_acl": "alice"}]
    outcomes = ansible_cli.run_role_cases("guest_policy", "localhost", "localhost", cases, inventory=str(inventory))
    assert [o["failed"] for o in outcomes] == [True, True, True]
    # each case is judged by its own failure, not by the previous case's
    assert "guest_policy_mode" in outcomes[0]["message"] and "report, fix, enforce" in outcomes[0]["message"]
    assert "guest_policy_guests" in outcomes[1]["message"] and "guest_policy_mode" not in outcomes[1]["message"]
    assert "guest_policy_acl" in outcomes[2]["message"] and "guest_policy_guests" not in outcomes[2]["message"]
    assert all(o["changed"] == [] for o in outcomes)


def test_case_outcomes_attribute_each_task_to_the_last_case_marker():
    document = {"plays": [{"tasks": [
        {"task": {"name": "Gathering Facts"}, "hosts": {"h": {}}},
        {"task": {"name": "secvirt case 0: the role"}, "hosts": {"h": {}}},
        {"task": {"name": "r : Write the file"}, "hosts": {"h": {"changed": True}, "other": {"failed": True}}},
        {"task": {"name": "secvirt case 1: the role"}, "hosts": {"h": {}}},
        {"task": {"name": "r : Check the input"},
         "hosts": {"h": {"failed": True, "msg": "bad\n  input", "argument_errors": ["x: wrong"]}}},
        {"task": {"name": "secvirt case 1: refused"}, "hosts": {"h": {}}},
    ]}]}
    assert ansible_cli.case_outcomes(document, "h", 2) == [
        {"failed": False, "message": "", "changed": ["Write the file"]},
        {"failed": True, "message": "bad input x: wrong", "changed": []}]


def gathered(inventory):
    """Run a one-task play with ansible_cli's play header; True when the run
    gathered facts itself (its JSON document lists the setup task)."""
    proc = ansible_cli._run_play({"tasks": [{"name": "one task", "ansible.builtin.debug": {
        "msg": "{{ ansible_facts['distribution'] }}"}}]}, "localhost", str(inventory), env=ansible_cli.JSON_OUTPUT)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    tasks = [task["task"]["name"] for play in json.loads(proc.stdout)["plays"] for task in play["tasks"]]
    assert tasks[-1] == "one task", tasks
    return "Gathering Facts" in tasks


def test_role_runs_share_their_facts_per_inventory_inside_molecule_only(tmp_path, monkeypatch):
    """fact_cache_env on real ansible-playbook runs over a local connection:
    inside a scenario (MOLECULE_EPHEMERAL_DIRECTORY set) the second run on an
    inventory reads the facts the first one gathered; another inventory (a
    clone set's) gathers its own; the opt-out and a run outside molecule
    always gather."""
    line = "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    first, clone = tmp_path / "hosts", tmp_path / "clone-hosts"
    first.write_text(line)
    clone.write_text(line)
    monkeypatch.delenv("MOLECULE_EPHEMERAL_DIRECTORY", raising=False)
    assert ansible_cli.fact_cache_env(str(first)) == {}
    assert [gathered(first), gathered(first)] == [True, True]

    (tmp_path / "ephemeral").mkdir()
    monkeypatch.setenv("MOLECULE_EPHEMERAL_DIRECTORY", str(tmp_path / "ephemeral"))
    monkeypatch.delenv("SECVIRT_TEST_FACT_CACHE", raising=False)
    assert [gathered(first), gathered(first)] == [True, False]
    assert gathered(clone)
    # the same file with other content (a new set of VMs on other ports) starts afresh
    first.write_text(line + "# other ports\n")
    assert gathered(first)
    assert ansible_cli.fact_cache_env(str(first))["ANSIBLE_CACHE_PLUGIN_CONNECTION"].startswith(
        str(tmp_path / "ephemeral" / "secvirt-facts"))

    monkeypatch.setenv("SECVIRT_TEST_FACT_CACHE", "0")
    assert [gathered(clone), gathered(clone)] == [True, True]
