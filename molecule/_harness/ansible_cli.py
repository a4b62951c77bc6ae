"""Run Ansible modules on a scenario's VMs from a testinfra test.

testinfra's ``host.ansible()`` reads the files that ``ansible --tree`` writes;
under ansible-core 2.19 in molecule's environment they stay empty, so the
tests call the ``ansible`` CLI themselves and parse its JSON result.

Scenario tests import this file with::

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
    import ansible_cli
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


def _env():
    return dict(os.environ, ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0")


def _tool(name="ansible"):
    # the ansible of the virtualenv that runs pytest, not one from PATH
    sibling = os.path.join(os.path.dirname(sys.executable), name)
    return sibling if os.path.exists(sibling) else name


def run_role(role, hosts, role_vars=None, extra_vars=None, env=None, timeout=900, inventory=None, args=()):
    """Run ``secvirt.kvm.<role>`` on ``hosts`` with ansible-playbook, as an
    operator's re-run would (the facts site.yml gathers, the role alone).
    ``args`` go to ansible-playbook as they are (``--check``, ``--diff``).

    Returns the CompletedProcess; ansible-core 2.19 prints task errors on
    stderr, so a test that reads the errors reads both streams.
    """
    return _run_play({"roles": [{"role": "secvirt.kvm." + role, "vars": role_vars or {}}]}, hosts, inventory, args,
                     extra_vars, env, timeout)


def fact_cache_env(inventory):
    """The environment that lets the tests' role runs on one set of VMs share
    their facts: the first run gathers them (the subset site.yml gathers), the
    later ones read them from a JSON cache instead of gathering again.

    Why: every ansible-playbook run under TCG pays for the facts module
    (2.1 s on an idle VM; the 71 gatherings in the tests of one suite run
    took 720 s, mitogen's connection included). A test's role run is an
    operator's re-run of the role on the same host, whose facts (its
    distribution, names, addresses) the test did not change.

    The cache is kept per inventory file and content, in molecule's ephemeral
    directory: a clone set (its own inventory, with the clones' ports) never
    reads the facts of its originals, and VMs on other ports start empty. A
    scenario whose tests change the facts the roles read (its interfaces:
    vlan_bridges) sets SECVIRT_TEST_FACT_CACHE=0, and every one of its runs
    gathers. Outside molecule (the unit tests' local runs) nothing is
    cached."""
    base = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if not base or os.environ.get("SECVIRT_TEST_FACT_CACHE", "1") == "0":
        return {}
    digest = hashlib.sha256(os.path.abspath(inventory).encode())
    with open(inventory, "rb") as handle:
        digest.update(handle.read())
    return {"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": os.path.join(base, "secvirt-facts", digest.hexdigest()[:16]),
            "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "86400"}


def _run_play(body, hosts, inventory, args=(), extra_vars=None, env=None, timeout=900):
    """ansible-playbook on one play over ``hosts`` with the facts site.yml
    gathers (from the scenario's fact cache once a run gathered them, see
    ``fact_cache_env``), ``body`` being the play's roles or tasks; the
    CompletedProcess."""
    play = dict({"hosts": hosts, "gather_facts": True, "gather_subset": ["min", "network"]}, **body)
    inventory = inventory or INVENTORY
    # outside the checkout: the suite lints and builds the collection while
    # other scenarios' tests run, and a playbook appearing and vanishing in
    # molecule/<scenario>/ would be linted or packed half-way
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or None
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=ephemeral, delete=False) as handle:
        # JSON is YAML: the variables go in as they are, with no quoting to get wrong
        json.dump([play], handle)
    cmd = [_tool("ansible-playbook"), "-i", inventory, handle.name] + list(args)
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    try:
        return subprocess.run(cmd, env={**os.environ, **fact_cache_env(inventory), **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        os.unlink(handle.name)


JSON_OUTPUT = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def changed_tasks(proc, host):
    """Names (without the role prefix) of the tasks that reported changed for
    ``host``, in order, in a run made with ``env=JSON_OUTPUT``."""
    result = json.loads(proc.stdout)
    return [task["task"]["name"].split(" : ", 1)[-1] for play in result["plays"] for task in play["tasks"]
            if task["hosts"].get(host, {}).get("changed")]


def check_then_real(role, hosts, host, inventory, between, role_vars=None, timeout=900):
    """The ``--check --diff`` run of ``role``, ``between()`` (the test's proof
    that the check run changed nothing), then the real run, as an operator
    checks a change before making it. Both runs must succeed; returns the
    changed task names of each for ``host``: (predicted, made)."""
    runs = []
    for args in (["--check", "--diff"], []):
        proc = run_role(role, hosts, role_vars=role_vars, env=JSON_OUTPUT, timeout=timeout, inventory=inventory, args=args)
        assert proc.returncode == 0, (args, proc.stdout[-4000:], proc.stderr[-2000:])
        runs.append(changed_tasks(proc, host))
        if args:
            between()
    return runs[0], runs[1]


def run_role_cases(role, hosts, host, cases, inventory=None, timeout=900):
    """Run ``role`` with each entry of ``cases`` (a dict of role variables)
    in **one** ansible-playbook run, for refusal tests that try many bad
    inputs: each case includes the role in a block whose rescue lets the
    next case run. One run pays once for what every run costs under TCG
    (Ansible's start, mitogen's connection, the facts) instead of once per
    input. The role itself runs as it does for an operator, argument
    specification included (``include_role`` validates it too).

    Returns, per case, ``{"failed": bool, "message": str, "changed": [task
    names]}`` for ``host``: the message of the task that failed (its
    ``msg``, then any argument error of a failed specification check that
    the ``msg`` does not already hold, on one line) and the tasks that
    reported a change. The run itself must succeed (every failure rescued).
    """
    tasks = []
    for index, role_vars in enumerate(cases):
        tasks.append({
            "name": "secvirt case %d" % index,
            "block": [{"name": "secvirt case %d: the role" % index,
                       "ansible.builtin.include_role": {"name": "secvirt.kvm." + role},
                       "vars": role_vars}],
            "rescue": [{"name": "secvirt case %d: refused" % index,
                        "ansible.builtin.debug": {"msg": "case %d refused" % index}}],
        })
    proc = _run_play({"tasks": tasks}, hosts, inventory, env=JSON_OUTPUT, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-2000:])
    return case_outcomes(json.loads(proc.stdout), host, len(cases))


_CASE = re.compile(r"^secvirt case (\d+): ")


def case_outcomes(result, host, count):
    """The per-case outcomes of a ``run_role_cases`` run from the JSON
    callback's document: a task belongs to the case whose include came last."""
    outcomes = [{"failed": False, "message": "", "changed": []} for _case in range(count)]
    current = None
    for play in result["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            marker = _CASE.match(name)
            if marker:
                current = int(marker.group(1))
                continue
            outcome = task["hosts"].get(host)
            if current is None or outcome is None:
                continue
            if outcome.get("changed"):
                outcomes[current]["changed"].append(name.split(" : ", 1)[-1])
            if outcome.get("failed"):
                msg = str(outcome.get("msg", ""))
                text = [msg] + [str(e) for e in outcome.get("argument_errors", []) if str(e) not in msg]
                outcomes[current]["failed"] = True
                outcomes[current]["message"] = " ".join(" ".join(text).split())
    return outcomes


_HEAD = re.compile(r"^(\S+) \| ([A-Z]+!?) => ", re.M)


def run_playbook(playbook, extra_vars=None, env=None, timeout=900, inventory=None, args=(), cwd=None):
    """Run one of the collection's playbooks (``playbooks/<name>.yml``) as an
    operator would; returns the CompletedProcess (task errors are on stderr)."""
    path = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "playbooks", playbook)
    cmd = [_tool("ansible-playbook"), "-i", inventory or INVENTORY, path] + list(args)
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    return subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=cwd)


def run_module_all(pattern, module, args=None, check=False, diff=False, timeout=900, extra_vars=None,
                   inventory=None):
    """Run one module on the hosts matching ``pattern``; return {host: result}.

    ``args`` is a dict (sent as JSON) or a ``k=v`` string. Each result's
    ``failed`` is set from the CLI's status word as well as from the result.
    """
    if isinstance(args, dict):
        args = json.dumps(args)
    cmd = [_tool(), pattern, "-i", inventory or INVENTORY, "-m", module]
    if args:
        cmd += ["-a", args]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, check=False)
    results = {}
    decoder = json.JSONDecoder()
    for head in _HEAD.finditer(proc.stdout):
        # --diff prints the diff after the JSON document: decode that document only
        result, _end = decoder.raw_decode(proc.stdout, head.end())
        result["failed"] = bool(result.get("failed")) or head.group(2) not in ("SUCCESS", "CHANGED")
        results[head.group(1)] = result
    for result in results.values():
        # what the CLI printed (with --diff, the diff as an operator sees it)
        result["_cli_stdout"] = proc.stdout
    if not results:
        raise AssertionError("no module result from %s:\n%s\n%s" % (module, proc.stdout[-2000:], proc.stderr[-2000:]))
    return results


def run_module(host, module, args=None, check=False, diff=False, timeout=900, extra_vars=None, inventory=None):
    """Run one module on one host and return its result dict."""
    results = run_module_all(host, module, args, check=check, diff=diff, timeout=timeout, extra_vars=extra_vars,
                             inventory=inventory)
    assert len(results) == 1, "%s matched %s" % (host, sorted(results))
    return next(iter(results.values()))


def reboot(pattern, timeout=900, attempts=3, inventory=None):
    """Reboot the matching hosts with ansible.builtin.reboot; fail the test if any does not return.

    The reboot command is ``systemctl reboot``, not the module's default
    ``shutdown -r 0``: with a second scenario loading the 2 cores, shutdown
    failed once with "Failed to connect to bus: Broken pipe" (issue 22).
    shutdown needs dbus-daemon (it asks logind to schedule the shutdown), and
    dbus-daemon closes a client that has not authenticated within the system
    bus's auth_timeout, which a starved guest can exceed; shutdown then gives
    up. systemctl reboot asks logind too but, when the bus fails, asks
    systemd itself over its private socket (pki's test_harness.py proves
    both on a clone whose dbus-daemon drops every client). A host whose
    reboot command still failed never went down, so asking again is safe;
    any other failure fails at once.
    """
    results = {}
    pending = pattern
    for attempt in range(attempts):
        batch = run_module_all(pending, "ansible.builtin.reboot",
                               "reboot_command='systemctl reboot' reboot_timeout=%d post_reboot_delay=5" % timeout,
                               timeout=timeout + 120, inventory=inventory)
        results.update(batch)
        retry = [host for host, result in batch.items()
                 if result["failed"] and "Reboot command failed" in str(result.get("msg", ""))]
        if not retry or attempt == attempts - 1:
            break
        print("reboot command failed on %s, asking again: %s" % (
            ", ".join(retry), "; ".join(str(batch[h].get("msg", ""))[:200] for h in retry)))
        time.sleep(10)
        pending = ":".join(retry)
    for host, result in results.items():
        assert not result["failed"], (host, result)
    return results


# What ssh prints when the connection broke before the command could run:
# testinfra shares Ansible's ControlMaster sockets (~/.ansible/cp), and a
# master whose keepalives ran out while the VM was busy (ServerAliveInterval 5,
# CountMax 6) leaves its clients with "mux_client_request_session: read from
# master failed: Broken pipe" (CI, libvirt_remote, 2026-12-01).
_DROPPED = ("mux_client_request_session", "Control socket connect", "kex_exchange_identification",
            "Connection timed out during banner exchange", "Connection refused")


def _retry_dropped_connections(attempts=3, pause=5):
    """Make testinfra's ssh backend ask again when ssh itself failed (exit 255
    with one of the messages above); any other result, a failing command
    included, is returned or raised as before."""
    from testinfra.backend import ssh  # pylint: disable=import-outside-toplevel

    original = ssh.SshBackend.run_ssh
    if getattr(original, "secvirt_retries", False):
        return

    def run_ssh(self, command):
        for attempt in range(attempts):
            try:
                return original(self, command)
            except RuntimeError as exc:
                stderr = str(getattr(exc.args[0], "stderr", "")) if exc.args else ""
                if attempt == attempts - 1 or not any(mark in stderr for mark in _DROPPED):
                    raise
                print("ssh to %s dropped (%s), asking again" % (self.host.name, stderr.strip()[-200:]))
                time.sleep(pause)
        raise AssertionError("unreachable")

    run_ssh.secvirt_retries = True
    ssh.SshBackend.run_ssh = run_ssh


_retry_dropped_connections()
