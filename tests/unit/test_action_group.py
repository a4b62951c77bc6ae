"""The `secvirt.kvm.libvirt` action group: `uri` set once in module_defaults.

Runs ansible-playbook for real on this machine (connection local) against
libvirt's own test driver (`test:///default`, a libvirt built into
libvirt-python's library that needs no daemon): guest_disk reads domain
"test", which only that driver has. With the default URI (qemu:///system)
the same task cannot connect, which is the positive control that the group,
not a default, chose the driver.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

pytestmark = pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="ansible-playbook not installed next to pytest")


def modules_with_a_uri_option():
    found = set()
    for name in os.listdir(os.path.join(ROOT, "plugins", "modules")):
        if not name.endswith(".py"):  # e.g. a __pycache__ left by py_compile
            continue
        with open(os.path.join(ROOT, "plugins", "modules", name)) as fh:
            text = fh.read()
        if re.search(r"^\s+(uri=dict\(|\*\*uri_argument_spec\(\))", text, re.M):
            found.add(name[:-3])
    return found


def test_every_module_with_a_uri_option_is_in_the_group():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as fh:
        groups = yaml.safe_load(fh)["action_groups"]
    assert set(groups["libvirt"]) == modules_with_a_uri_option()
    assert len(groups["libvirt"]) >= 9


def run(tmp_path, module_defaults, module="secvirt.kvm.libvirt_guest_disk", output=None):
    pytest.importorskip("libvirt")
    play = [{"name": "uri from the action group", "hosts": "localhost", "gather_facts": False,
             "module_defaults": module_defaults,
             "tasks": [{"name": "Read a disk of the test driver's domain",
                        module: {"domain": "test", "target": "vda", "state": "query"},
                        "register": "disk", "ignore_errors": True},
                       {"name": "Show it", "ansible.builtin.debug": {"msg": "RESULT={{ disk | to_json }}"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    for sub in ("home", "local"):
        (tmp_path / sub).mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"), ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([PLAYBOOK, "-i", "localhost,", "-c", "local", "-e",
                           "ansible_python_interpreter=%s" % sys.executable, str(tmp_path / "play.yml")],
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    match = re.search(r'"msg": "RESULT=(.*)"\n', proc.stdout)
    assert match, proc.stdout[-3000:]
    if output is not None:
        output.append(proc.stdout)
    return json.loads(match.group(1).encode().decode("unicode_escape"))


def test_uri_set_once_for_the_group_reaches_the_module(tmp_path):
    result = run(tmp_path, {"group/secvirt.kvm.libvirt": {"uri": "test:///default"}})
    assert not result.get("failed"), result
    assert result["disk"]["source"] == "/guest/diskimage1"


def test_without_the_group_default_the_module_uses_its_own_uri(tmp_path):
    result = run(tmp_path, {})
    assert result["failed"] and "qemu:///system" in result["msg"], result


def test_the_old_module_name_still_works_and_names_the_new_one(tmp_path):
    """guest_disk was renamed libvirt_guest_disk: meta/runtime.yml redirects
    the old name, with a deprecation warning, and the group default still
    reaches the redirected module."""
    output = []
    result = run(tmp_path, {"group/secvirt.kvm.libvirt": {"uri": "test:///default"}},
                 module="secvirt.kvm.guest_disk", output=output)
    assert not result.get("failed"), result
    assert result["disk"]["source"] == "/guest/diskimage1"
    text = " ".join(output[0].split())
    assert "secvirt.kvm.guest_disk has been deprecated" in text, output[0][-3000:]
    assert "Use secvirt.kvm.libvirt_guest_disk instead" in text, output[0][-3000:]


def test_every_old_module_name_redirects_to_an_existing_module():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as fh:
        routing = yaml.safe_load(fh)["plugin_routing"]["modules"]
    assert sorted(routing) == ["domain_limits", "guest_disk", "nwfilter", "nwfilter_binding", "nwfilter_info", "seclabel"]
    for old, entry in routing.items():
        new = entry["redirect"]
        assert new == "secvirt.kvm.libvirt_" + old
        assert os.path.exists(os.path.join(ROOT, "plugins", "modules", new.split(".")[-1] + ".py"))
        assert not os.path.exists(os.path.join(ROOT, "plugins", "modules", old + ".py"))
        assert entry["deprecation"]["removal_version"] == "1.0.0"
