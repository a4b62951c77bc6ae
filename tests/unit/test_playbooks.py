"""The collection's playbooks, run from the built and installed collection.

The collection is built (``ansible-galaxy collection build``) into a
temporary directory and installed from the tarball (``ansible-galaxy
collection install -p``) into a temporary collections path. Every
``ansible-playbook`` / ``ansible-galaxy`` call here sees that path only: it
runs in a temporary directory (not next to the checkout's ansible.cfg and its
``.cache/collections`` link) with an empty ansible.cfg,
``ANSIBLE_COLLECTIONS_PATH`` set to the temporary path alone, no scan of
Python's ``sys.path`` for collections and no ``ANSIBLE_*`` or ``PYTHONPATH``
from the calling environment. ``test_the_installed_copy_is_the_one_used``
proves it: ``ansible-galaxy collection list`` finds secvirt.kvm there and
nowhere else, the playbooks are read from there, and with an empty
collections path ``secvirt.kvm.site`` is not found at all.

``secvirt.kvm.site`` and each area playbook (``secvirt.kvm.pki``, ...) pass
``--syntax-check`` and ``--list-tasks`` against a throw-away inventory (two
hypervisors and a station, no variables). Each area playbook's task list is
a subset of site.yml's: exactly the tasks site.yml lists for the area's roles,
in the same order, on the same host groups, with the same tags. The area's
tag (site.yml's tag of each of its roles: ``remote`` has two, one per role)
selects the area: ``--tags`` on site.yml lists all of the area's tasks and,
of the other roles, only tasks tagged ``always`` (their ``--skip-tags`` guard
and Ansible's argument spec check); on the area playbook it lists all of it.
"""
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
COLLECTION = "secvirt.kvm"

# site.yml's roles in the order it runs them; each role's tag in site.yml
# is the role's name (both checked in test_areas_cover_site_yml).
SITE_ROLES = ["hypervisor", "pki", "libvirt_remote", "audit", "qemu_tls", "guest_policy", "vlan_bridges",
              "encrypted_storage",
              "libvirt_client"]
# area playbook -> its roles, in the order it runs them
AREAS = {
    "confinement": ["hypervisor"],
    "pki": ["pki"],
    "remote": ["libvirt_remote", "libvirt_client"],
    "audit": ["audit"],
    "consoles": ["qemu_tls"],
    "guests": ["guest_policy"],
    "network": ["vlan_bridges"],
    "storage": ["encrypted_storage"],
}
PLAYBOOKS = ["site"] + sorted(AREAS)

INVENTORY = """\
kvm_hosts:
  hosts:
    kvm1.example.org: {}
    kvm2.example.org: {}
management_stations:
  hosts:
    station1.example.org: {}
"""

_PLAY = re.compile(r"^  play #[0-9]+ \((?P<hosts>[^)]*)\): (?P<name>.*)\tTAGS: \[(?P<tags>.*)\]$")
_TASK = re.compile(r"^      (?:(?P<role>[A-Za-z0-9_.]+) : )?(?P<name>.*)\tTAGS: \[(?P<tags>.*)\]$")


def _tool(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: `make setup` installs ansible-core into {BIN}")
    return path


class Installed(object):
    """The collection built and installed into a temporary collections path."""

    def __init__(self, base):
        self.base = base
        self.collections = os.path.join(base, "collections")
        self.path = os.path.join(self.collections, "ansible_collections", "secvirt", "kvm")
        for sub in ("build", "home", "local", "work"):
            os.makedirs(os.path.join(base, sub))
        self.cwd = os.path.join(base, "work")
        config = os.path.join(base, "ansible.cfg")
        with open(config, "w", encoding="utf-8") as f:
            f.write("[defaults]\n")
        self.inventory = os.path.join(base, "hosts.yml")
        with open(self.inventory, "w", encoding="utf-8") as f:
            f.write(INVENTORY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
        env.update(ANSIBLE_CONFIG=config, ANSIBLE_COLLECTIONS_PATH=self.collections,
                   ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False", ANSIBLE_HOME=os.path.join(base, "home"),
                   ANSIBLE_LOCAL_TEMP=os.path.join(base, "local"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_RETRY_FILES_ENABLED="0")
        self.env = env

    def run(self, tool, *args, env=None):
        proc = subprocess.run([_tool(tool), *args], cwd=self.cwd, env=env or self.env, capture_output=True, text=True,
                              timeout=120, check=False)
        return proc

    def playbook(self, name, *args):
        return self.run("ansible-playbook", "-i", self.inventory, f"{COLLECTION}.{name}", *args)


class Task(object):
    def __init__(self, hosts, role, name, tags):
        self.hosts, self.role, self.name, self.tags = hosts, role, name, tags

    def key(self):
        return (self.hosts, self.role, self.name, self.tags)

    def __repr__(self):
        return f"[{self.hosts}] {self.role} : {self.name}  TAGS: {sorted(self.tags)}"


def parse_list_tasks(output):
    """(playbook path, [Task, ...]) from ``ansible-playbook --list-tasks``; every TAGS line must parse."""
    path, hosts, tasks = None, None, []
    for line in output.splitlines():
        if line.startswith("playbook: "):
            path = line[len("playbook: "):].strip()
            continue
        play = _PLAY.match(line)
        if play:
            hosts = play.group("hosts")
            continue
        task = _TASK.match(line)
        if task:
            assert hosts is not None, f"task before any play: {line!r}"
            tags = frozenset(t.strip() for t in task.group("tags").split(",") if t.strip())
            tasks.append(Task(hosts, task.group("role") or "", task.group("name"), tags))
            continue
        assert "TAGS:" not in line, f"line of --list-tasks not understood: {line!r}"
    return path, tasks


def role_of(task):
    return task.role[len(COLLECTION) + 1:] if task.role.startswith(COLLECTION + ".") else task.role


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    inst = Installed(str(tmp_path_factory.mktemp("installed")))
    build = inst.run("ansible-galaxy", "collection", "build", "--output-path", os.path.join(inst.base, "build"), ROOT)
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = [os.path.join(inst.base, "build", n) for n in os.listdir(os.path.join(inst.base, "build"))]
    assert len(tarballs) == 1 and tarballs[0].endswith(".tar.gz"), tarballs
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())
    missing = [p for p in PLAYBOOKS if f"playbooks/{p}.yml" not in names]
    assert not missing, f"not in the built collection: {missing}"
    install = inst.run("ansible-galaxy", "collection", "install", "-p", inst.collections, tarballs[0])
    assert install.returncode == 0, install.stdout + install.stderr
    assert os.path.isdir(inst.path) and not os.path.islink(inst.path), inst.path
    assert not os.path.realpath(inst.path).startswith(ROOT + os.sep)
    return inst


@pytest.fixture(scope="module")
def listed(installed):
    """playbook -> [Task, ...] of its --list-tasks (checked to come from the installed copy)."""
    result = {}
    for name in PLAYBOOKS:
        proc = installed.playbook(name, "--list-tasks")
        assert proc.returncode == 0, f"{name} --list-tasks:\n{proc.stdout}\n{proc.stderr}"
        path, tasks = parse_list_tasks(proc.stdout)
        assert path == os.path.join(installed.path, "playbooks", name + ".yml"), path
        result[name] = tasks
    return result


def test_areas_cover_site_yml():
    """Every role of site.yml is in exactly one area, tagged with its name; every area has its playbook."""
    with open(os.path.join(ROOT, "playbooks", "site.yml"), encoding="utf-8") as f:
        site = yaml.safe_load(f)
    tags = {}
    for play in site:
        for entry in play.get("roles", []):
            role = entry["role"].split(".")[-1]
            tags[role] = set(play.get("tags", [])) | set(entry.get("tags", []))
    assert list(tags) == SITE_ROLES, f"site.yml runs the roles {list(tags)}"
    area_roles = [r for roles in AREAS.values() for r in roles]
    assert sorted(area_roles) == sorted(SITE_ROLES), "site.yml's roles are not each in exactly one area"
    assert all(tags[r] == {r} for r in tags), f"site.yml tags a role with other than its name: {tags}"
    files = {n[:-4] for n in os.listdir(os.path.join(ROOT, "playbooks")) if n.endswith(".yml")}
    assert set(AREAS) <= files, f"missing area playbooks: {set(AREAS) - files}"


def test_the_installed_copy_is_the_one_used(installed):
    listing = installed.run("ansible-galaxy", "collection", "list", COLLECTION, "--format", "yaml")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    found = yaml.safe_load(listing.stdout)
    assert list(found) == [os.path.join(installed.collections, "ansible_collections")], found
    # nothing else offers secvirt.kvm: with an empty collections path it is not found
    empty = os.path.join(installed.base, "empty")
    os.makedirs(empty)
    proc = installed.run("ansible-playbook", "-i", installed.inventory, f"{COLLECTION}.site", "--syntax-check",
                         env=dict(installed.env, ANSIBLE_COLLECTIONS_PATH=empty))
    assert proc.returncode != 0, proc.stdout
    assert "secvirt.kvm.site could not be found" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_syntax_check(installed, name):
    proc = installed.playbook(name, "--syntax-check")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert f"playbook: {os.path.join(installed.path, 'playbooks', name + '.yml')}" in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_list_tasks(listed, name):
    roles = [role_of(t) for t in listed[name]]
    expected = SITE_ROLES if name == "site" else AREAS[name]
    assert list(dict.fromkeys(roles)) == expected, f"{name} runs the roles {list(dict.fromkeys(roles))}"


@pytest.mark.parametrize("area", sorted(AREAS))
def test_area_tasks_are_site_tasks(listed, area):
    area_tasks = [t.key() for t in listed[area]]
    site_tasks = [t.key() for t in listed["site"]]
    assert set(area_tasks) <= set(site_tasks), [t for t in listed[area] if t.key() not in set(site_tasks)]
    # and all of site.yml's tasks of the area's roles, in site.yml's order
    assert area_tasks == [t.key() for t in listed["site"] if role_of(t) in AREAS[area]]


@pytest.mark.parametrize("area", sorted(AREAS))
def test_area_tag_selects_the_area(installed, listed, area):
    tags = ",".join(AREAS[area])
    proc = installed.playbook("site", "--list-tasks", "--tags", tags)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _path, selected = parse_list_tasks(proc.stdout)
    ours = [t.key() for t in selected if role_of(t) in AREAS[area]]
    assert ours == [t.key() for t in listed[area]], f"--tags {tags} on site.yml does not select the whole area"
    others = [t for t in selected if role_of(t) not in AREAS[area] and "always" not in t.tags]
    assert not others, f"--tags {tags} on site.yml also selects: {others}"
    proc = installed.playbook(area, "--list-tasks", "--tags", tags)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [t.key() for t in parse_list_tasks(proc.stdout)[1]] == [t.key() for t in listed[area]]
