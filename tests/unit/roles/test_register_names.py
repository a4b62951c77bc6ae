"""A task must never `register:` a name that the role also defines in
defaults/ or vars/.

A registered result outranks both (include_vars included), so the
variable silently changes meaning for every later task: libvirt_remote
registered the SASL template result over `__libvirt_remote_sasl_conf`,
the SASL file's path from vars/Debian.yml, and the rollback after a failed
restart then tried to copy the old file to a dict-valued destination.
"""
import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "roles", "*")) if os.path.isdir(p))


def defined_names(role):
    names = {}
    for sub in ("defaults", "vars"):
        for path in glob.glob(os.path.join(ROOT, "roles", role, sub, "*.yml")):
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
            for name in data:
                names[name] = os.path.relpath(path, ROOT)
    return names


def registered_names(node):
    if isinstance(node, list):
        for item in node:
            yield from registered_names(item)
    elif isinstance(node, dict):
        if isinstance(node.get("register"), str):
            yield node["register"]
        for key in ("block", "rescue", "always"):
            yield from registered_names(node.get(key) or [])


@pytest.mark.parametrize("role", ROLES)
def test_no_task_registers_over_a_role_variable(role):
    defined = defined_names(role)
    clashes = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", role, "tasks", "*.yml")) +
                       glob.glob(os.path.join(ROOT, "roles", role, "handlers", "*.yml"))):
        with open(path) as fh:
            tasks = yaml.safe_load(fh) or []
        for name in registered_names(tasks):
            if name in defined:
                clashes.append("%s registers %s, defined in %s" % (os.path.relpath(path, ROOT), name, defined[name]))
    assert not clashes, clashes


def test_the_check_sees_registers_inside_blocks():
    tasks = [{"block": [{"name": "a", "register": "x"}], "rescue": [{"name": "b", "register": "y"}]}]
    assert sorted(registered_names(tasks)) == ["x", "y"]
