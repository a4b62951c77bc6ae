"""Copy-on-write clones of a scenario's VMs, for tests that change a host for good.

A test that locks the kernel's audit rules, reboots, or takes a host apart
runs on a clone of the converged VMs (``tests/harness/vm.py clone``: the
VMs are paused for about a second, their disks frozen and their memory
saved, and the clones resume from there on overlays of their own). The
originals stay as converge left them, so no other test depends on running
before or after it, and nothing has to be converged again to undo it::

    with clones.cloned("audit-locked", ["kvmhost"]) as clone:
        host = clone.host("kvmhost")
        ansible_cli.run_role("audit", "kvm_hosts", inventory=clone.inventory)

The clone's inventory is a copy of molecule's with the clones' SSH ports,
holding only the cloned hosts: a play against ``all`` cannot reach an
original by mistake.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys

import testinfra.utils.ansible_runner
import yaml

EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
VM_PY = os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ""), "tests", "harness", "vm.py")


class Clone:
    """The running clones: their inventory and testinfra hosts."""

    def __init__(self, state, inventory):
        self.state = state
        self.inventory = inventory
        self._runner = testinfra.utils.ansible_runner.AnsibleRunner(inventory)

    def host(self, name):
        return self._runner.get_host(name)

    def names(self, group="all"):
        return self._runner.get_hosts(group)


def _inventory_for(instances, into):
    """A copy of molecule's inventory directory that points at the clones only."""
    source = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    target = os.path.join(into, "inventory")
    shutil.copytree(source, target, symlinks=True)
    path = os.path.join(target, os.path.basename(os.environ["MOLECULE_INVENTORY_FILE"]))
    with open(path) as fh:
        inventory = yaml.safe_load(fh)
    ports = {i["instance"]: i for i in instances}
    for group in inventory.values():
        hosts = (group or {}).get("hosts") or {}
        for name in list(hosts):
            if name not in ports:
                del hosts[name]
                continue
            hosts[name]["ansible_port"] = ports[name]["port"]
            hosts[name]["ansible_private_key_file"] = ports[name]["identity_file"]
    with open(path, "w") as fh:
        yaml.safe_dump(inventory, fh, default_flow_style=False)
    return path


@contextlib.contextmanager
def cloned(label, names=None):
    """Clone the named VMs (default: all) of this scenario; throw the clones away afterwards."""
    state = os.path.join(EPHEMERAL, "vms")
    argv = [sys.executable, VM_PY, "clone", "--state", state, "--label", label]
    if names:
        argv += ["--names", ",".join(names)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    into = os.path.join(state, "clones", label)
    try:
        assert proc.returncode == 0, "vm.py clone failed:\n" + proc.stderr[-3000:]
        print(proc.stderr.strip())
        instances = json.loads(proc.stdout.strip().splitlines()[-1])
        yield Clone(into, _inventory_for(instances, into))
    finally:
        subprocess.run([sys.executable, VM_PY, "down", "--state", into], capture_output=True, check=False)
