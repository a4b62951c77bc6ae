"""secvirt.kvm.deb_packages: dpkg's answer parsed, and the action run for real.

The parsing tests need nothing. The playbook tests run ansible-playbook on
this machine (connection local, the system Python with python3-apt): the
packages dpkg reports installed never reach apt; a missing one does, and
apt's own refusal of an unknown name is the proof that it, and only it,
got that name.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils.deb_packages import (
    installed_versions, is_installed, queryable)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

QUERY = ("libvirt-clients\tamd64\tii \t9.0.0-4\n"
         "firewalld\tall\trc \t1.3.0-1\n"
         "libc6\tamd64\tii \t2.36-9\n"
         "libc6\ti386\tun \t\n"
         "broken\tamd64\tiHR\t1.0\n"
         "held\tamd64\thi \t2.0\n")


def test_installed_and_missing_from_dpkg_query_output():
    installed, missing = installed_versions(
        ["libvirt-clients", "firewalld", "libc6", "libc6:i386", "libc6:amd64", "broken", "held", "absent"], QUERY)
    assert installed == {"libvirt-clients": "9.0.0-4", "libc6": "2.36-9", "libc6:amd64": "2.36-9", "held": "2.0"}
    # removed with its config left (rc), another architecture, reinstall-required, unknown
    assert missing == ["firewalld", "libc6:i386", "broken", "absent"]


def test_names_dpkg_cannot_answer_for_go_to_apt():
    assert queryable(["libvirt-clients", "qemu-system-x86:amd64", "foo=1.0", "lib*", "./x.deb"]) == (
        ["libvirt-clients", "qemu-system-x86:amd64"], ["foo=1.0", "lib*", "./x.deb"])
    installed, missing = installed_versions(["libvirt-clients=9.0.0-4"], QUERY)
    assert installed == {} and missing == ["libvirt-clients=9.0.0-4"]


STATUSES = [("ii ", True), ("hi ", True), ("iU ", False), ("rc ", False), ("iiR", False), ("", False)]


@pytest.mark.parametrize("status,expected", STATUSES)
def test_status_letters(status, expected):
    assert is_installed(status) is expected


def run(tmp_path, names, check=False):
    if not (os.path.exists(PLAYBOOK) and shutil.which("dpkg-query") and os.path.exists("/usr/bin/python3")):
        pytest.skip("needs ansible-playbook next to pytest and a Debian system Python")
    out = tmp_path / "result.json"
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Install", "secvirt.kvm.deb_packages": {"name": names}, "register": "result",
         "ignore_errors": True},
        {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out),
                                                             "mode": "0600"},
         "check_mode": False}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    cmd = [PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3",
           str(tmp_path / "play.yml")] + (["--check", "--diff"] if check else [])
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_installed_packages_never_reach_apt_and_a_missing_one_does(tmp_path):
    # positive control: what dpkg has is reported with its version, apt is not asked
    result = run(tmp_path, ["dpkg", "libc6"])
    assert not result.get("failed") and not result["changed"], result
    assert result["missing"] == [] and set(result["installed"]) == {"dpkg", "libc6"}
    assert "apt" not in result
    # the unknown name, and only it, went to apt, which refused it by name
    result = run(tmp_path, ["dpkg", "secvirt-no-such-package"])
    assert result["failed"] and result["missing"] == ["secvirt-no-such-package"], result
    assert result["apt"]["msg"] == "No package matching 'secvirt-no-such-package' is available", result
    assert "secvirt-no-such-package" in result["msg"]


def test_check_mode_reports_the_missing_package_and_installs_nothing(tmp_path):
    result = run(tmp_path, ["dpkg", "secvirt-no-such-package"], check=True)
    assert result["missing"] == ["secvirt-no-such-package"], result
    assert result["apt"]["msg"] == "No package matching 'secvirt-no-such-package' is available", result
    result = run(tmp_path, ["dpkg"], check=True)
    assert not result["changed"] and "apt" not in result, result
