"""The scenario tests' ssh retry (molecule/_harness/ansible_cli.py), on a fake ssh.

No VM here: testinfra's ssh backend runs a local stand-in for ssh that fails
the way a dropped ControlMaster does, then answers.
"""
import importlib.util
import os

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
