"""Phase tags of the roles, checked with ansible-playbook itself.

Every role's tasks/main.yml is a list of phases. Each phase carries the role
tag and a tag of its own, ``<role>_<phase>``; a phase whose results a later
phase reads also carries the later phase's tag. The validation entries (the
platform check, the per-OS variables, validation, detection, preflight)
carry the role tag and every phase tag instead of ``always``: any phase tag,
the role tag or a tag the play puts on the role selects them, another role's
tag does not. Skipping one phase tag would skip them too, so the first task,
the guard (the only one tagged ``always``), refuses a ``--skip-tags`` that
names some of the role's phase tags but neither the role tag nor all of them.

What each tag is meant to run is written down here (VALIDATION, PHASES),
independently of the roles' YAML; ``ansible-playbook --list-tasks`` must
list exactly that. ``--list-tasks`` shows the tasks of an imported file but
only the include task of a dynamic include, so the runs at the end check
that the include hands its tags on to the tasks it includes (``apply``),
that validation refuses bad input whatever phase is selected and that the
guard refuses a partial ``--skip-tags`` before anything else runs.
"""
import json
import os
import re
import subprocess

import pytest
import yaml

from test_role_validation import (COLLECTIONS, PLATFORM_CONTROLS, PLATFORM_TASK, PLAYBOOK, ROOT, VOLUME,
                                  accepted, platform_facts, refused, run_cases, volumes)

pytestmark = pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="ansible-playbook not installed next to pytest")

# The validation entries of each tasks/main.yml (tagged with the role tag and
# every phase tag), named as entry_key() names them: a task file by its
# name, an inline task by its module (the platform check: "platform").
VALIDATION = {
    "audit": ["platform", "include_vars", "detect", "validate"],
    "encrypted_storage": ["platform", "include_vars", "validate"],
    # hypervisor's report (last) reads whatever phases ran, with defaults for the others
    "hypervisor": ["platform", "include_vars", "validate", "detect", "preflight", "report"],
    "libvirt_client": ["platform", "include_vars", "assert"],
    "libvirt_remote": ["platform", "include_vars", "validate", "detect", "preflight"],
    "pki": ["platform", "include_vars", "validate"],
    "vlan_bridges": ["setup", "platform", "include_vars", "validate"],
}

# tag -> the entries it runs besides the guard and VALIDATION: the phase,
# and the earlier phases whose registered results it reads. The phase tags
# in the order of tasks/main.yml (the guard lists them in that order).
PHASES = {
    "audit": {
        "audit_auditd": ["auditd"],
        "audit_kernel_cmdline": ["kernel_cmdline"],
        "audit_rules": ["auditd", "rules"],  # __audit_locked, __audit_kernel_before
        "audit_libvirt": ["libvirt"],
        # __audit_rules, __audit_bootloader_managed, __audit_locked
        "audit_status": ["auditd", "kernel_cmdline", "rules", "status"],
    },
    "encrypted_storage": {
        "encrypted_storage_packages": ["deb_packages"],
        "encrypted_storage_image_dirs": ["image_dirs"],
        "encrypted_storage_selinux": ["selinux"],
        "encrypted_storage_lvm": ["lvm"],
        "encrypted_storage_volumes": ["lvm", "volumes"],  # __encrypted_storage_lvs
        "encrypted_storage_migrate": ["migrate"],
        "encrypted_storage_libvirt_secrets": ["libvirt_secrets"],
        "encrypted_storage_header_backup": ["header_backup"],
    },
    "hypervisor": {
        "hypervisor_packages": ["deb_packages"],
        "hypervisor_lsm": ["lsm"],
        # a changed qemu.conf is proven by the restart (or rolled back) in the same phase
        "hypervisor_qemu": ["qemu"],
        "hypervisor_kernel": ["kernel"],
        "hypervisor_services": ["services"],
    },
    "libvirt_client": {
        "libvirt_client_packages": ["deb_packages"],
        "libvirt_client_certificates": ["certificates"],
        "libvirt_client_users": ["users"],
        "libvirt_client_uri": ["libvirt_config"],
        "libvirt_client_sasl": ["sasl"],
    },
    "libvirt_remote": {
        "libvirt_remote_install": ["install"],
        # a changed configuration or socket is proven by the restart (or rolled
        # back); "debug" is the restart's check-mode stand-in (the only debug
        # task of main.yml), which goes with it
        "libvirt_remote_config": ["config", "restart", "debug"],
        "libvirt_remote_firewall": ["firewall", "firewalld"],
        # the port filter is in force before a socket listens
        "libvirt_remote_sockets": ["firewall", "firewalld", "sockets", "restart", "debug"],
        "libvirt_remote_restart": ["restart", "debug"],
        "libvirt_remote_sasl_users": ["sasl_users"],
    },
    "pki": {
        "pki_packages": ["packages"],
        "pki_ca": ["ca"],
        "pki_keys": ["keys"],
        "pki_sign": ["ca", "keys", "sign"],  # __pki_ca, __pki_requests
        "pki_install": ["ca", "keys", "sign", "install", "meta"],  # ... __pki_identities, __pki_signed
        "pki_verify": ["ca", "keys", "verify"],  # __pki_ca, __pki_users
    },
    "vlan_bridges": {
        "vlan_bridges_packages": ["deb_packages"],
        "vlan_bridges_bridge_netfilter": ["bridge_netfilter"],
        "vlan_bridges_networks": ["networks"],
        "vlan_bridges_host_isolation": ["host_isolation"],
        "vlan_bridges_libvirt": ["libvirt"],
    },
}

ROLES = sorted(PHASES)
SPEC_TASK = "Validating arguments against arg spec 'main'"
GUARD_TASK = "Refuse a --skip-tags that would leave out the validation while phases still run"
GUARD = "guard"
IMPORT, INCLUDE = "ansible.builtin.import_tasks", "ansible.builtin.include_tasks"


def role_file(role, name):
    with open(os.path.join(ROOT, "roles", role, "tasks", name)) as handle:
        return yaml.safe_load(handle)


def entry_file(entry):
    for action in (IMPORT, INCLUDE):
        if action in entry:
            spec = entry[action]
            return action, spec if isinstance(spec, str) else spec["file"]
    return None, None


def entry_key(entry):
    action, name = entry_file(entry)
    if action:
        return os.path.splitext(name)[0]
    if entry["name"] == PLATFORM_TASK:
        return "platform"
    if entry["name"] == GUARD_TASK:
        return GUARD
    return [key for key in entry if "." in key][0].rsplit(".", 1)[1]


def listed_names(tasks):
    """The task names --list-tasks shows for a task file: a block's own tasks, not its rescue or always."""
    names = []
    for task in tasks:
        names.extend(listed_names(task["block"]) if "block" in task else [task["name"]])
    return names


def entry_listing(role, entry):
    """What --list-tasks shows for an entry of tasks/main.yml: an import's tasks, or the entry."""
    action, name = entry_file(entry)
    return listed_names(role_file(role, name)) if action == IMPORT else [entry["name"]]


def expected(role, keys):
    """--list-tasks of the role, restricted to the entries ``keys``, in the order of tasks/main.yml."""
    names = [SPEC_TASK]
    for entry in role_file(role, "main.yml"):
        if entry_key(entry) in keys:
            names.extend(entry_listing(role, entry))
    return names


def everything(role):
    """--list-tasks of the role without tags: every entry of tasks/main.yml, in order."""
    return [SPEC_TASK] + [name for entry in role_file(role, "main.yml") for name in entry_listing(role, entry)]


def ansible_playbook(work, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_HOME=str(work / "home"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([PLAYBOOK] + list(args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


def parse_listing(output):
    """--list-tasks output: {role: [(task name, tags)]}, in order."""
    listing = {}
    for role, name, tags in re.findall(r"^\s+secvirt\.kvm\.(\w+) : (.*?)\tTAGS: \[(.*)\]$", output, re.M):
        # the argument spec task's name ends with the spec's short description
        listing.setdefault(role, []).append((SPEC_TASK if name.startswith(SPEC_TASK) else name, tags.split(", ")))
    return listing


def list_play(tmp_path, roles, *args):
    """``ansible-playbook --list-tasks`` of one play that applies ``roles`` (a role entry of
    a play: a name, or a dict with ``role`` and ``tags``): {role: [(task name, tags)]}."""
    work = tmp_path / ("list%d" % len(list(tmp_path.glob("list*"))))
    work.mkdir()
    entries = [dict(entry, role="secvirt.kvm." + entry["role"]) if isinstance(entry, dict) else "secvirt.kvm." + entry
               for entry in roles]
    play = [{"name": "Phases", "hosts": "localhost", "gather_facts": False, "roles": entries}]
    (work / "play.yml").write_text(json.dumps(play))
    return parse_listing(ansible_playbook(work, "-i", "localhost,", "--list-tasks", *(list(args) + [str(work / "play.yml")])))


def list_tasks(tmp_path, role, *args):
    """``ansible-playbook --list-tasks`` of a play that applies the role: [(task name, tags)]."""
    listing = list_play(tmp_path, [role], *args)
    assert listing.get(role), listing
    return listing[role]


def names(listing):
    return [name for name, _tags in listing]


# --- the tags in tasks/main.yml ------------------------------------------------

def guard_phase_tags(role):
    guard = role_file(role, "main.yml")[0]
    return guard["vars"]["__%s_phase_tags" % role]


@pytest.mark.parametrize("role", ROLES)
def test_main_yml_declares_exactly_these_phases(role):
    """The tags in tasks/main.yml are the ones written down above, and every include hands them on."""
    entries = role_file(role, "main.yml")
    keys = [entry_key(entry) for entry in entries]
    assert len(keys) == len(set(keys)), keys
    # first the guard, the one entry tagged always: an assert (an action that
    # runs on the controller), unconditional, with the phase tags in order
    assert keys[0] == GUARD, keys
    guard = entries[0]
    assert sorted(guard["tags"]) == sorted([role, "always"])
    assert "ansible.builtin.assert" in guard and "when" not in guard and "delegate_to" not in guard
    assert guard_phase_tags(role) == list(PHASES[role])
    phase_tags = [role] + list(PHASES[role])
    for entry in entries[1:]:
        tags = entry.get("tags")
        assert tags and role in tags and "always" not in tags, entry["name"]
        if entry_key(entry) in VALIDATION[role]:
            # every phase selects the validation, and skipping any phase skips it (hence the guard)
            assert sorted(tags) == sorted(phase_tags), entry["name"]
        else:
            assert sorted(tags) == sorted([role] + [tag for tag, run in PHASES[role].items() if entry_key(entry) in run]), \
                entry["name"]
        action, _name = entry_file(entry)
        if action == INCLUDE:
            # without apply the included tasks would not carry the tags: --tags <phase> would run an empty include
            assert entry[INCLUDE].get("apply", {}).get("tags") == tags, entry["name"]
    # every entry is the guard, validation, or runs under some phase tag
    assert set(keys) == {GUARD}.union(VALIDATION[role], *PHASES[role].values())


# --- what each tag lists ------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_no_tags_lists_every_task_of_every_phase_in_order(tmp_path, role):
    """Without tags the role runs what it ran before, after the guard: every entry of tasks/main.yml, in order."""
    listing = list_tasks(tmp_path, role)
    assert names(listing) == everything(role)
    assert names(listing)[:2] == [SPEC_TASK, GUARD_TASK]
    # every task carries the role tag, but the argument spec check (which Ansible tags always)
    assert [name for name, tags in listing if role not in tags] == [SPEC_TASK]
    # always: Ansible's argument spec check and the guard, nothing else
    assert [name for name, tags in listing if "always" in tags] == [SPEC_TASK, GUARD_TASK]
    assert list_tasks(tmp_path, role, "--tags", role) == listing


@pytest.mark.parametrize("role", ROLES)
def test_each_phase_tag_lists_the_guard_validation_and_that_phase(tmp_path, role):
    validation = expected(role, VALIDATION[role])
    assert len(validation) > 2  # the spec check, the platform check, the per-OS variables and more
    for tag, run in sorted(PHASES[role].items()):
        listing = list_tasks(tmp_path, role, "--tags", tag)
        assert names(listing) == expected(role, [GUARD] + VALIDATION[role] + run), tag
        # the validation tasks are listed because they carry the phase tag; only the guard and the spec check are always
        for name, tags in listing:
            assert tag in tags if name not in (SPEC_TASK, GUARD_TASK) else "always" in tags, (tag, name, tags)
        assert set(validation) <= set(names(listing)), tag


@pytest.mark.parametrize("role", ROLES)
def test_a_tag_the_play_puts_on_the_role_lists_everything(tmp_path, role):
    listing = list_play(tmp_path, [{"role": role, "tags": ["mine"]}], "--tags", "mine")[role]
    assert names(listing) == everything(role)


@pytest.mark.parametrize("role", ROLES)
def test_another_roles_tag_lists_only_the_guard_of_this_role(tmp_path, role):
    """G2: --tags <other role> (or one of its phases) in a play with both roles lists, of this
    role, only Ansible's argument spec check and the guard: no validation, detection or preflight."""
    other = ROLES[(ROLES.index(role) + 1) % len(ROLES)]
    for tag in (other, list(PHASES[other])[0]):
        listing = list_play(tmp_path, [role, other], "--tags", tag)
        assert names(listing[role]) == [SPEC_TASK, GUARD_TASK], (tag, listing[role])
        assert set(expected(other, VALIDATION[other])) <= set(names(listing[other])), tag


@pytest.mark.parametrize("role", ROLES)
def test_skip_tags_lists(tmp_path, role):
    # skipping the role: only Ansible's argument spec check is left (it carries always, not the role tag)
    assert names(list_tasks(tmp_path, role, "--skip-tags", role)) == [SPEC_TASK]
    # skipping every phase: the guard (which lets that pass), nothing else
    assert names(list_tasks(tmp_path, role, "--skip-tags", ",".join(PHASES[role]))) == [SPEC_TASK, GUARD_TASK]
    # skipping one phase lists validation and other phases: the guard refuses that at run time
    one = list(PHASES[role])[0]
    assert names(list_tasks(tmp_path, role, "--skip-tags", one))[:2] == [SPEC_TASK, GUARD_TASK]
    # --skip-tags always (the user's explicit choice) leaves out the guard and the spec check, not the validation
    assert names(list_tasks(tmp_path, role, "--skip-tags", "always")) == everything(role)[2:]


# site.yml applies every role, with its role tag on it (pki and
# libvirt_client by play tags, the others by role tags).
SITE_INVENTORY = "[kvm_hosts]\nkvm01\n\n[management_stations]\nstation01\n"


def test_site_yml_tags_of_two_roles_list_only_the_guards_of_the_others(tmp_path):
    (tmp_path / "inventory").write_text(SITE_INVENTORY)
    listing = parse_listing(ansible_playbook(tmp_path, "-i", str(tmp_path / "inventory"), "--list-tasks",
                                             "--tags", "audit,encrypted_storage",
                                             os.path.join(ROOT, "playbooks", "site.yml")))
    # qemu_tls and guest_policy have one tag for the whole role (no phases, no guard): only their spec check
    # is tagged always
    assert sorted(listing) == sorted(ROLES + ["qemu_tls", "guest_policy"]), listing
    assert names(listing["qemu_tls"]) == [SPEC_TASK]
    assert names(listing["guest_policy"]) == [SPEC_TASK]
    for role in ("audit", "encrypted_storage"):
        assert names(listing[role]) == everything(role), role
    for role in ("hypervisor", "pki", "libvirt_remote", "vlan_bridges", "libvirt_client"):
        assert names(listing[role]) == [SPEC_TASK, GUARD_TASK], role


# --- the guard's condition ----------------------------------------------------

def guard_cases(role):
    """(label, skip tags, refused?) for the guard of ``role``."""
    phases = list(PHASES[role])
    other = [tag for name in ROLES if name != role for tag in (name, list(PHASES[name])[0])]
    return [
        ("no --skip-tags", [], False),
        ("the role", [role], False),
        ("the role and one phase", [role, phases[0]], False),
        ("every phase", phases, False),
        ("every phase, backwards", phases[::-1], False),
        ("other roles and their phases", other, False),
        ("all (only always tasks run)", ["all", phases[0]], False),
        ("the first phase", [phases[0]], True),
        ("the last phase", [phases[-1]], True),
        ("all phases but one", phases[1:], True),
        ("one phase among other roles' tags", other + [phases[1]], True),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_the_guard_refuses_exactly_a_partial_skip_of_the_phases(tmp_path, role):
    """The guard task itself, with the skip list per case instead of --skip-tags (one run for all cases)."""
    guard = dict(role_file(role, "main.yml")[0])
    guard["vars"] = dict(guard["vars"], **{"__%s_skip_tags" % role: "{{ case_skip_tags }}"})
    cases = guard_cases(role)
    results = run_cases(tmp_path, [guard], [(label, {"case_skip_tags": skip}) for label, skip, _refused in cases])
    phases = list(PHASES[role])
    for (_label, skip, refuse), case in zip(cases, results):
        if not refuse:
            accepted(case)
            continue
        skipped = [tag for tag in phases if tag in skip]
        refused(case, GUARD_TASK, "secvirt.kvm.%s: --skip-tags %s would also skip %s's validation, which every phase "
                "shares, while other %s phases still run." % (role, ",".join(skipped), role, role),
                "(e.g. --tags %s)" % ",".join(tag for tag in phases if tag not in skip),
                "or skip the whole role with --skip-tags %s." % role, "Nothing was changed")


# --- real runs ----------------------------------------------------------------

def fake_platform_then_role(role):
    """The role after faked Debian facts (the faking tagged always, or --tags would skip it)."""
    return [
        {"name": "Pretend to be the case's platform", "tags": ["always"],
         "ansible.builtin.set_fact": {
             "distribution": "{{ fake_facts.distribution }}",
             "distribution_major_version": "{{ fake_facts.distribution_major_version }}",
             "distribution_version": "{{ fake_facts.distribution_version }}",
             "os_family": "{{ fake_facts.os_family }}", "interfaces": [], "cacheable": True}},
        {"name": "Run the role", "ansible.builtin.import_role": {"name": "secvirt.kvm." + role}},
    ]


def task_ran(case, role, name):
    return ("TASK [secvirt.kvm.%s : %s]" % (role, name)) in case.output


def tasks_run(case, role):
    """The role's tasks the run started, in order (the spec check without its description)."""
    found = re.findall(r"^TASK \[secvirt\.kvm\.%s : (.*?)\] \*+$" % role, case.output, re.M)
    return [SPEC_TASK if name.startswith(SPEC_TASK) else name for name in found]


# A late phase of each role that changes the host: bad input must be refused
# before it, by the validation that every phase tag selects.
LATE_PHASE = {
    "audit": "audit_rules",
    "encrypted_storage": "encrypted_storage_volumes",
    "hypervisor": "hypervisor_qemu",
    "libvirt_client": "libvirt_client_certificates",
    "libvirt_remote": "libvirt_remote_sockets",
    "pki": "pki_install",
    "vlan_bridges": "vlan_bridges_networks",
}


@pytest.mark.parametrize("role", ROLES)
def test_a_phase_tag_never_skips_the_validation(tmp_path, role):
    role_input, refusal = PLATFORM_CONTROLS[role]
    bad, fedora = run_cases(tmp_path, fake_platform_then_role(role), [
        ("Debian 13, input validation refuses", dict(role_input, **platform_facts("Debian", "13.2", "Debian"))),
        ("Fedora 41", dict(role_input, **platform_facts("Fedora", "41", "RedHat"))),
    ], args=["--tags", LATE_PHASE[role]])
    refused(bad, refusal)
    refused(fedora, PLATFORM_TASK, "this host runs Fedora 41.", "Nothing was changed")
    # the guard ran first and let --tags (no --skip-tags) pass
    assert tasks_run(fedora, role)[:2] == [SPEC_TASK, GUARD_TASK] and PLATFORM_TASK in tasks_run(fedora, role), fedora


@pytest.mark.parametrize("role", ROLES)
def test_skipping_one_phase_is_refused_before_anything_runs(tmp_path, role):
    """G3: --skip-tags <one phase> would skip the validation too while the other phases run:
    the guard refuses it, and nothing of the role runs after it. The controls: --skip-tags
    <role> passes (nothing of the role runs), --skip-tags <every phase> passes the guard."""
    role_input, _refusal = PLATFORM_CONTROLS[role]
    debian = dict(role_input, **platform_facts("Debian", "13.2", "Debian"))
    phases = list(PHASES[role])
    late = LATE_PHASE[role]
    case, = run_cases(tmp_path, fake_platform_then_role(role), [("Debian 13", debian)], args=["--skip-tags", late])
    refused(case, GUARD_TASK,
            "secvirt.kvm.%s: --skip-tags %s would also skip %s's validation, which every phase shares, "
            "while other %s phases still run." % (role, late, role, role),
            "Select the phases to run with --tags instead (e.g. --tags %s)" % ",".join(t for t in phases if t != late),
            "or skip the whole role with --skip-tags %s. Nothing was changed." % role)
    assert tasks_run(case, role) == [SPEC_TASK, GUARD_TASK], case
    whole, = run_cases(tmp_path, fake_platform_then_role(role), [("Debian 13", debian)], args=["--skip-tags", role])
    accepted(whole)
    assert tasks_run(whole, role) == [SPEC_TASK], whole
    every, = run_cases(tmp_path, fake_platform_then_role(role), [("Debian 13", debian)],
                       args=["--skip-tags", ",".join(phases)])
    accepted(every)
    assert tasks_run(every, role) == [SPEC_TASK, GUARD_TASK], every


def test_a_phase_tag_runs_the_included_phase_after_validation(tmp_path):
    """--tags encrypted_storage_lvm: validation first, refusing a short passphrase; then the
    included lvm.yml's own tasks (apply), and nothing of the other phases."""
    debian = platform_facts("Debian", "13.2", "Debian")
    good, short = run_cases(tmp_path, fake_platform_then_role("encrypted_storage"), [
        ("valid volume", dict(volumes(VOLUME, encrypted_storage_manage_packages=True), **debian)),
        ("short passphrase", dict(volumes(dict(VOLUME, passphrase="Zq7")), **debian)),
    ], args=["--tags", "encrypted_storage_lvm"])
    refused(short, "Refuse passphrases shorter than encrypted_storage_passphrase_min_length",
            "at least 12 characters", "too short in: guest01.", "Nothing was changed")
    # Past validation: the first task of lvm.yml ran (this build host has no
    # LVM, so the vgs call may fail there, but not earlier).
    assert task_ran(good, "encrypted_storage", "List the volume groups on the host"), good
    assert good.failed_task is None or good.failed_task.endswith("List the volume groups on the host"), good
    for other in ("Install cryptsetup, LVM, qemu-img and the libvirt bindings", "Make the image directories root-owned and 0711",
                  "Format, open or close the encrypted volumes and align their keyslots"):
        assert not task_ran(good, "encrypted_storage", other), other


def test_an_imported_phase_alone_runs_clean_after_validation(tmp_path):
    """--tags encrypted_storage_image_dirs in check mode: validation passes, the phase runs, nothing else."""
    case, = run_cases(tmp_path, fake_platform_then_role("encrypted_storage"), [
        ("valid volume", dict(volumes(VOLUME, encrypted_storage_image_dirs=[str(tmp_path / "images")]),
                              **platform_facts("Debian", "13.2", "Debian"))),
    ], args=["--tags", "encrypted_storage_image_dirs"])
    accepted(case)
    assert task_ran(case, "encrypted_storage", "Refuse passphrases shorter than encrypted_storage_passphrase_min_length")
    assert task_ran(case, "encrypted_storage", "Make the image directories root-owned and 0711")
    assert not task_ran(case, "encrypted_storage", "Create the volume group and the logical volumes")


# --- vlan_bridges: the defaults of the guest networks --------------------------

NORMALISE_TASK = "Fill in the defaults of each guest network"

# The loop this one expression replaced, kept here as the reference.
FORMER_LOOP = [
    {"name": "Start from an empty list (former way)", "ansible.builtin.set_fact": {"former_nets": []}},
    {"name": "Fill in the defaults one network at a time (former way)",
     "ansible.builtin.set_fact": {
         "former_nets": "{{ former_nets + [{'stp': true, 'state': 'present'}"
                        " | combine(item, {'vlan_id': item['vlan_id'] | int})] }}"},
     "loop": "{{ vlan_bridges_networks }}"},
]

NETWORKS = {
    "none": [],
    "one, vlan_id as text": [{"name": "web", "vlan_id": "0100", "trunk": "eth1", "bridge": "br-web"}],
    "several, user keys win": [
        {"name": "web", "vlan_id": 100, "trunk": "eth1", "bridge": "br-web"},
        {"name": "db", "vlan_id": "200", "trunk": "eth1", "bridge": "br-db", "stp": False, "state": "absent"},
        {"name": "dmz", "vlan_id": 4094, "trunk": "bond0", "bridge": "br-dmz", "mtu": 9000, "forward_delay": 4,
         "stp": True, "state": "present"},
    ],
}


def normalised(network):
    return dict({"stp": True, "state": "present"}, **dict(network, vlan_id=int(network["vlan_id"])))


def test_vlan_bridges_fill_in_the_network_defaults_in_one_expression(tmp_path):
    task, = [task for task in role_file("vlan_bridges", "validate.yml") if task.get("name") == NORMALISE_TASK]
    assert "loop" not in task and list(task["ansible.builtin.set_fact"]) == ["__vlan_bridges_nets"]
    out = tmp_path / "out"
    out.mkdir()
    write = {"name": "Write both lists", "ansible.builtin.copy": {
        "content": "{{ {'nets': __vlan_bridges_nets, 'former': former_nets} | to_json }}",
        "dest": str(out) + "/{{ inventory_hostname }}.json", "mode": "0600"}}
    labels = sorted(NETWORKS)
    cases = run_cases(tmp_path, [task] + FORMER_LOOP + [write],
                      [(label, {"vlan_bridges_networks": NETWORKS[label]}) for label in labels], check=False)
    for index, (label, case) in enumerate(zip(labels, cases)):
        accepted(case)
        result = json.loads((out / ("c%d.json" % index)).read_text())
        assert result["nets"] == [normalised(network) for network in NETWORKS[label]], label
        assert result["nets"] == result["former"], label
        assert all(isinstance(network["vlan_id"], int) and not isinstance(network["vlan_id"], bool)
                   for network in result["nets"]), label
