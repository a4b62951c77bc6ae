"""Role input validation, run for real with ansible-playbook against localhost.

Every refusal runs the role's own validation (tasks/validate.yml through
include_role, or the role's meta/argument_specs.yml through
validate_argument_spec, which is what the role's main entry point runs
first) with one bad value, and checks that the run failed, that the failing
task is the validation task of that rule, and that the message names the
rule. Next to the refusals, positive controls run the same input with the bad
value corrected and must pass.

One ansible-playbook run covers several cases: each case is an inventory
host of its own (all of them this machine, connection local) with its own
variables, so each case fails or passes on its own, at its own task, with its
own message, and the recap counts it.

Only the validation phase is ever run: this machine is a build host, not a
KVM host. The plays gather no facts and run in check mode; the validation
tasks only read variables, run read-only probes (``systemctl is-active`` /
``is-enabled``, ``stat`` of a keytab, ``/proc/cmdline``) or run a module in
check mode. Ansible's own temporary files go to pytest's tmp_path.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

pytestmark = pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="ansible-playbook not installed next to pytest")

_RECAP = re.compile(r"^(c[0-9]+)\s+:\s+ok=[0-9]+\s+changed=[0-9]+\s+unreachable=[0-9]+\s+failed=([0-9]+)", re.M)


class Case(object):
    """What one inventory host (one case) did in a run."""

    def __init__(self, label, output):
        self.label = label
        self.output = output
        self.failed = None
        self.failed_task = None
        self.message = ""

    @property
    def flat(self):
        # the YAML result format folds long messages and doubles the quote in
        # single-quoted scalars: compare with whitespace collapsed and '' as '
        return " ".join(self.message.split()).replace("''", "'")

    def __repr__(self):
        return "case %r: failed=%s failed_task=%r\nmessage: %s\n--- run output (tail) ---\n%s" % (
            self.label, self.failed, self.failed_task, self.flat, self.output[-3000:])


def run_cases(tmp_path, tasks, cases, vars_files=(), args=(), check=True):
    """One play over one inventory host per case (connection local, no facts, check mode).

    ``cases`` is a list of ``(label, variables)``; returns a Case for each.
    ``args`` go to ansible-playbook as they are (``--tags``, ``--skip-tags``);
    ``check=False`` runs without ``--check`` (for plays that only compute
    and write into pytest's tmp_path).
    """
    work = tmp_path / ("run%d" % len(list(tmp_path.glob("run*"))))
    (work / "host_vars").mkdir(parents=True)
    for sub in ("home", "local", "remote"):
        (work / sub).mkdir()
    hosts = ["c%d" % index for index in range(len(cases))]
    lines = ["[cases]"]
    for host, (_label, variables) in zip(hosts, cases):
        lines.append("%s ansible_connection=local ansible_python_interpreter=%s" % (host, sys.executable))
        (work / "host_vars" / (host + ".json")).write_text(json.dumps(variables))
    (work / "inventory").write_text("\n".join(lines) + "\n")
    play = [{"name": "Validation only", "hosts": "cases", "gather_facts": False,
             "vars_files": list(vars_files), "tasks": tasks}]
    (work / "play.yml").write_text(json.dumps(play, indent=1))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_HOME=str(work / "home"),
               ANSIBLE_LOCAL_TEMP=str(work / "local"), ANSIBLE_REMOTE_TEMP=str(work / "remote"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_FORKS="8",
               ANSIBLE_CALLBACK_RESULT_FORMAT="yaml", ANSIBLE_STDOUT_CALLBACK="default")
    env.pop("ANSIBLE_CONFIG", None)
    command = [PLAYBOOK] + (["--check"] if check else []) + list(args)
    proc = subprocess.run(command + ["-i", str(work / "inventory"), str(work / "play.yml")], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=600, check=False)
    output = proc.stdout
    results = dict((host, Case(label, output)) for host, (label, _vars) in zip(hosts, cases))
    task, block = None, None
    for line in output.splitlines():
        if block is not None and (not line.strip() or line[0].isspace()):
            block.message += line + "\n"
            continue
        block = None
        if line.startswith("TASK ["):
            task = line[len("TASK ["):].split("]")[0].strip()
        match = re.match(r"^fatal: \[(c[0-9]+)\]", line)
        if match and results[match.group(1)].failed_task is None:
            block = results[match.group(1)]
            block.failed_task = task
            block.message = line + "\n"
    for host, failed in _RECAP.findall(output):
        results[host].failed = failed != "0"
    if proc.returncode not in (0, 2):  # 2: some host failed; anything else is a broken run
        pytest.fail("ansible-playbook rc=%d\n%s" % (proc.returncode, output[-5000:]))
    return [results[host] for host in hosts]


def validate_role(tmp_path, role, cases, before=(), vars_files=()):
    """The role's tasks/validate.yml (after the role's read-only tasks_from in ``before``)."""
    tasks = [{"name": "Run %s of %s" % (entry, role),
              "ansible.builtin.include_role": {"name": "secvirt.kvm." + role, "tasks_from": entry, "public": False}}
             for entry in tuple(before) + ("validate",)]
    return run_cases(tmp_path, tasks, cases, vars_files)


def validate_spec(tmp_path, role, cases):
    """What the role's main entry point runs first: its meta/argument_specs.yml."""
    spec = os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")
    task = {"name": "Validating arguments against arg spec main",
            "ansible.builtin.validate_argument_spec": {
                "argument_spec": "{{ (lookup('ansible.builtin.file', %r) | from_yaml).argument_specs.main.options }}"
                                 % spec}}
    return run_cases(tmp_path, [task], cases)


def refused(case, task, *words):
    assert case.failed is True, case
    assert case.failed_task is not None and task in case.failed_task, case
    for word in words:
        assert word in case.flat, (word, case)


def accepted(case):
    assert case.failed is False and case.failed_task is None, case


def check(tmp_path, validate, refusals, controls):
    """``refusals``: (label, variables, task, words); ``controls``: (label, variables)."""
    for (_label, _vars, task, words), case in zip(refusals, validate(tmp_path, [r[:2] for r in refusals])):
        refused(case, task, *words)
    for case in validate(tmp_path, controls):
        accepted(case)
    return True


# --- encrypted_storage -------------------------------------------------------

VOLUME = {"name": "guest01", "size": "1G", "passphrase": "correct-horse-01"}


def storage(tmp_path, cases):
    return validate_role(tmp_path, "encrypted_storage", cases)


def volumes(*items, **more):
    return dict(more, encrypted_storage_volumes=list(items))


def test_storage_refuses_short_passphrases(tmp_path):
    short = "Refuse passphrases shorter than encrypted_storage_passphrase_min_length"
    guest02 = dict(VOLUME, name="guest02", add_passphrases=["Recovery-key-1"])
    cases = check(tmp_path, storage, [
        ("short passphrase", volumes(dict(VOLUME, passphrase="Zq7")), short,
         ["at least 12 characters", "encrypted_storage_passphrase_min_length", "too short in: guest01."]),
        ("short add_passphrases entry", volumes(VOLUME, dict(guest02, add_passphrases=["Recovery-key-1", "Tq9"])),
         short, ["add_passphrases", "too short in: guest02."]),
        ("minimum below the floor", volumes(dict(VOLUME, passphrase="8-chars!"), encrypted_storage_passphrase_min_length=7),
         "Refuse a passphrase minimum below 8", ["encrypted_storage_passphrase_min_length is 7"]),
        ("no passphrase", volumes({"name": "guest01", "size": "1G"}),
         "Refuse volumes without a size or a passphrase", ["check: ['guest01']"]),
        ("empty passphrase", volumes(dict(VOLUME, passphrase="")),
         "Refuse volumes without a size or a passphrase", ["check: ['guest01']"]),
    ], [
        ("long passphrase", volumes(VOLUME)),
        # previous and removed passphrases only need to unlock: no minimum for them
        ("long add_passphrases entry", volumes(VOLUME, dict(guest02, previous_passphrase="old", remove_passphrases=["Tq9"]))),
        ("minimum at the floor", volumes(dict(VOLUME, passphrase="8-chars!"), encrypted_storage_passphrase_min_length=8)),
    ])
    assert cases


def test_storage_passphrases_never_appear_in_the_output(tmp_path):
    case, = storage(tmp_path, [("short", volumes(dict(VOLUME, passphrase="Zq7", add_passphrases=["Tq9"])))])
    refused(case, "Refuse passphrases shorter than")
    assert "Zq7" not in case.output and "Tq9" not in case.output


def test_storage_refuses_to_destroy_a_volume_without_wipe(tmp_path):
    assert check(tmp_path, storage, [
        ("absent without wipe", volumes(VOLUME, {"name": "guest09", "state": "absent"}),
         "Refuse to destroy volumes without wipe", ["wipe: true", "missing on: guest09.", "unrecoverable"]),
        ("absent with wipe false", volumes(VOLUME, {"name": "guest09", "state": "absent", "wipe": False}),
         "Refuse to destroy volumes without wipe", ["missing on: guest09."]),
    ], [
        ("absent with wipe", volumes(VOLUME, {"name": "guest09", "state": "absent", "wipe": True})),
    ])


def test_storage_argument_spec_declares_the_new_options(tmp_path):
    wiped = {"name": "guest09", "state": "absent", "wipe": True}
    spec = "Validating arguments against arg spec main"
    assert check(tmp_path, lambda tmp, cases: validate_spec(tmp, "encrypted_storage", cases), [
        ("minimum not an int", volumes(wiped, encrypted_storage_passphrase_min_length="twelve"), spec,
         ["encrypted_storage_passphrase_min_length"]),
        ("wipe not a bool", volumes(dict(wiped, wipe="perhaps")), spec, ["wipe"]),
    ], [
        ("both valid", volumes(wiped, encrypted_storage_passphrase_min_length=12)),
    ])


# --- audit -------------------------------------------------------------------

def audit(tmp_path, cases):
    # What tasks/main.yml does before validation on Debian: the OS variables and
    # the read-only detection (systemctl is-enabled, /proc/cmdline).
    return validate_role(tmp_path, "audit", cases, before=("detect",),
                         vars_files=[os.path.join(ROOT, "roles", "audit", "vars", "Debian.yml")])


def test_audit_refuses_kernel_arguments_grub_would_execute(tmp_path):
    task = "Refuse kernel arguments that are not plain NAME or NAME=VALUE words"
    assert check(tmp_path, audit, [
        (bad, {"audit_kernel_args": [bad, "audit_backlog_limit=8192"]}, task, ["refusing audit_kernel_args"])
        for bad in ["audit=1 $(touch /tmp/pwned)", 'a";reboot;"', "audit=1\nGRUB_TIMEOUT=0", "audit=1\n", "`id`"]
    ], [
        ("plain arguments", {"audit_kernel_args": ["audit=1", "audit_backlog_limit=8192"]}),
    ])
    assert not os.path.exists("/tmp/pwned")


# --- hypervisor --------------------------------------------------------------

def hypervisor(tmp_path, cases):
    return validate_role(tmp_path, "hypervisor", cases,
                         vars_files=[os.path.join(ROOT, "roles", "hypervisor", "vars", "Debian.yml")])


def test_hypervisor_refuses_unsafe_settings_before_any_change(tmp_path):
    assert check(tmp_path, hypervisor, [
        ("qemu as root", {"hypervisor_qemu_user": "root"}, "Refuse running QEMU as root", ["must not run as root"]),
        ("qemu group 0", {"hypervisor_qemu_group": 0}, "Refuse running QEMU as root", ["must not run as root"]),
        ("driver none, no reason", {"hypervisor_security_driver": "none"},
         "Refuse turning confinement off without a reason", ["hypervisor_security_driver_none_reason"]),
        ("baseline key as extra", {"hypervisor_qemu_extra_settings": {"seccomp_sandbox": 0, "vnc_tls": 1}},
         "Refuse baseline keys in the extra qemu.conf settings", ["sets seccomp_sandbox, which the baseline owns"]),
        ("device outside /dev", {"hypervisor_cgroup_device_acl": ["/dev/null", "/etc/shadow"]},
         "Refuse device paths outside /dev", ["refused: /etc/shadow"]),
        ("mask ssh", {"hypervisor_masked_services_extra": ["ssh.service"]},
         "Refuse masking a service the host needs", ["refusing to mask ssh.service"]),
        ("mask libvirtd socket", {"hypervisor_masked_services_extra": ["libvirtd.socket"]},
         "Refuse masking a service the host needs", ["refusing to mask libvirtd.socket"]),
        ("sysctl value with a newline", {"hypervisor_sysctls_override": {"kernel.kptr_restrict": "2\nvm.x = 1"}},
         "Refuse sysctl names and values", ["refused: kernel.kptr_restrict"]),
        ("sysctl name with a slash", {"hypervisor_sysctls_override": {"../../etc": 1}},
         "Refuse sysctl names and values", ["refused: ../../etc"]),
    ], [
        ("defaults", {}),
        ("driver none with a reason", {"hypervisor_security_driver": "none",
                                       "hypervisor_security_driver_none_reason": "lab host, guests are disposable"}),
        ("extra keys the baseline does not own", {"hypervisor_qemu_extra_settings": {"vnc_tls": 1}}),
        ("a sysctl left out, one added", {"hypervisor_sysctls_override": {"kernel.yama.ptrace_scope": None,
                                                                          "kernel.perf_event_paranoid": 3}}),
    ])


# --- qemu_tls ----------------------------------------------------------------

QEMU_TLS = {"qemu_tls_console_listen": "192.0.2.10", "qemu_tls_migration_address": "198.51.100.10",
            "qemu_tls_management_cidrs": ["192.0.2.0/24"],
            "fake_ips": ["192.0.2.10", "198.51.100.10", "10.0.2.15", "192.168.122.1"]}


def qemu_tls(tmp_path, cases):
    # the addresses the host has, as gathered facts (cacheable set_fact)
    tasks = [{"name": "Pretend to have the case's addresses",
              "ansible.builtin.set_fact": {"all_ipv4_addresses": "{{ fake_ips }}", "all_ipv6_addresses": [],
                                           "interfaces": ["eth0", "virbr0", "br-web"],
                                           "eth0": {"ipv4": {"address": "192.0.2.10"}},
                                           "virbr0": {"ipv4": {"address": "192.168.122.1"}},
                                           "br_web": {"ipv4": {"address": "198.51.100.10"}},
                                           "cacheable": True}},
             {"name": "Run validate of qemu_tls",
              "ansible.builtin.include_role": {"name": "secvirt.kvm.qemu_tls", "tasks_from": "validate", "public": False}}]
    return run_cases(tmp_path, tasks, [(label, dict(QEMU_TLS, **more)) for label, more in cases],
                     vars_files=[os.path.join(ROOT, "roles", "qemu_tls", "vars", "Debian.yml")])


def test_qemu_tls_refuses_unsafe_listens_and_ports_before_any_change(tmp_path):
    assert check(tmp_path, qemu_tls, [
        ("no console listen", {"qemu_tls_console_listen": ""}, "Refuse missing listen addresses",
         ["set qemu_tls_console_listen"]),
        ("wildcard console", {"qemu_tls_console_listen": "0.0.0.0"}, "Refuse a wildcard listen address without the opt-in",
         ["0.0.0.0 listens on every address of the host", "qemu_tls_allow_wildcard_listen"]),
        ("wildcard v6 migration", {"qemu_tls_migration_address": "::"},
         "Refuse a wildcard listen address without the opt-in", [":: listens on every address"]),
        ("address of another host", {"qemu_tls_migration_address": "198.51.100.99"},
         "Refuse listen addresses this host does not have", ["the host does not have 198.51.100.99",
                                                             "(it has 192.0.2.10, 198.51.100.10, 10.0.2.15, 192.168.122.1)"]),
        ("libvirt's NAT bridge", {"qemu_tls_console_listen": "192.168.122.1"},
         "Refuse listen addresses on a bridge guests are attached to", ["192.168.122.1 is on virbr0: a guest on that bridge"]),
        ("a VLAN guest bridge", {"qemu_tls_guest_bridges": ["br-web"]},
         "Refuse listen addresses on a bridge guests are attached to", ["198.51.100.10 is on br-web"]),
        ("ranges overlap", {"qemu_tls_migration_port_min": 5950, "qemu_tls_migration_port_max": 6100},
         "Refuse port ranges that are empty, overlap each other or take libvirt's ports",
         ["the console range 5900-5999 overlaps the migration range 5950-6100"]),
        ("range takes libvirt's TLS port", {"qemu_tls_migration_port_min": 16000, "qemu_tls_migration_port_max": 16600},
         "Refuse port ranges", ["the migration (qemu_tls_migration_port_min/max) range 16000-16600 takes port 16509"]),
        ("empty range", {"qemu_tls_display_port_min": 6000, "qemu_tls_display_port_max": 5990},
         "Refuse port ranges", ["range 6000-5990 is empty"]),
        ("privileged ports", {"qemu_tls_display_port_min": 80, "qemu_tls_display_port_max": 90},
         "Refuse port ranges", ["ports must be within 1024-65535"]),
        ("no management networks", {"qemu_tls_management_cidrs": []}, "Refuse console ports open to nobody, or to everybody",
         ["must name the management networks"]),
        ("everybody", {"qemu_tls_management_cidrs": ["0.0.0.0/0"]}, "Refuse console ports open to nobody, or to everybody",
         ["0.0.0.0/0 is too broad"]),
        # (firewalld is not running where these tests run)
        ("firewalld that does not run", {"qemu_tls_firewall_backend": "firewalld"},
         "Refuse nftables rules next to an active firewalld, and firewalld rules without it",
         ["qemu_tls_firewall_backend is firewalld but firewalld.service is not active"]),
        ("console logins without users", {"qemu_tls_vnc_sasl": True}, "Refuse per-user console logins that nobody could use",
         ["qemu_tls_vnc_sasl_users must name at least one user with a non-empty password"]),
        ("console login without a password", {"qemu_tls_vnc_sasl": True, "qemu_tls_vnc_sasl_users": [{"name": "ann"}]},
         "Refuse per-user console logins that nobody could use", ["at least one user with a non-empty password"]),
        ("console login with an empty password", {"qemu_tls_vnc_sasl": True, "qemu_tls_vnc_sasl_users": [{"name": "ann", "password": ""}]},
         "Refuse per-user console logins that nobody could use", ["at least one user with a non-empty password"]),
        ("only removed console users", {"qemu_tls_vnc_sasl": True,
                                        "qemu_tls_vnc_sasl_users": [{"name": "ann", "password": "x", "state": "absent"}]},
         "Refuse per-user console logins that nobody could use", ["at least one user"]),
        ("weak SCRAM iterations", {"qemu_tls_vnc_sasl": True, "qemu_tls_vnc_sasl_users": [{"name": "ann", "password": "s3cret-pw"}],
                                   "qemu_tls_vnc_sasl_scram_iterations": 1000},
         "Refuse per-user console logins that nobody could use", ["4096 to 65536"]),
    ], [
        ("control", {}),
        ("wildcard with the opt-in", {"qemu_tls_console_listen": "0.0.0.0", "qemu_tls_allow_wildcard_listen": True}),
        ("no firewall, no networks", {"qemu_tls_firewall_backend": "none", "qemu_tls_management_cidrs": []}),
        ("auto without firewalld: nftables", {"qemu_tls_firewall_backend": "auto"}),
        ("console logins with a user", {"qemu_tls_vnc_sasl": True, "qemu_tls_vnc_sasl_users": [{"name": "ann", "password": "s3cret-pw"}]}),
        ("console logins on VNC that is off", {"qemu_tls_vnc": False, "qemu_tls_vnc_sasl": True}),
        ("consoles and migration off", {"qemu_tls_vnc": False, "qemu_tls_spice": False, "qemu_tls_migration": False,
                                        "qemu_tls_console_listen": "", "qemu_tls_migration_address": ""}),
    ])


# --- libvirt_remote ----------------------------------------------------------

REMOTE = {"libvirt_remote_tls_allowed_dn_list": ["C=DE,O=secvirt,OU=operators,CN=*"],
          "libvirt_remote_management_cidrs": ["10.254.0.0/24", "2001:db8:10::/64"]}


def remote(tmp_path, cases):
    return validate_role(tmp_path, "libvirt_remote", [(label, dict(REMOTE, **more)) for label, more in cases])


def test_remote_refuses_a_weak_tls_priority(tmp_path):
    task = "Refuse a GnuTLS priority string that allows old protocols or weak ciphers"
    assert check(tmp_path, remote, [
        (priority, {"libvirt_remote_tls_priority": priority}, task, ["refusing", "libvirt_remote_tls_priority"] + words)
        for priority, words in [
            ("NORMAL:+VERS-TLS1.0", ["enables TLS1.0, TLS1.1"]),
            ("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-SSL3.0", ["enables SSL3.0"]),
            ("SECURE256:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.1", ["enables TLS1.1"]),
            ("NORMAL", ["enables TLS1.0, TLS1.1"]),
            ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+VERS-ALL", ["enables SSL3.0, TLS1.0, TLS1.1"]),
            ("LEGACY:-VERS-ALL:+VERS-TLS1.2", ["LEGACY"]),
            ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+NULL", ["'+NULL' enables no encryption"]),
            ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+ARCFOUR-128", ["'+ARCFOUR-128' enables RC4"]),
            ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+RSA-EXPORT", ["'+RSA-EXPORT' enables export-grade"]),
        ]
    ], [
        ("default", {}),
        ("pinned TLS 1.3", {"libvirt_remote_tls_priority": "SECURE256:-VERS-ALL:+VERS-TLS1.3"}),
    ])


def test_remote_refuses_a_malformed_cidr_and_names_it(tmp_path):
    task = "Refuse malformed management CIDRs"
    assert check(tmp_path, remote, [
        (bad, {"libvirt_remote_management_cidrs": ["10.254.0.0/24", bad]}, task,
         ["libvirt_remote_management_cidrs", repr(bad)])
        for bad in ["10.254.0.300/24", "10.254.0.0/33", "10.254.0.1/24", "2001:db8::/129",
                    "10.0.0.0/255.0.0.0", "10.254.0.0/24; accept", "example.org"]
    ], [
        ("networks and an address", {"libvirt_remote_management_cidrs": ["10.254.0.0/24", "10.254.1.7", "2001:db8::/48"]}),
    ])


def test_remote_refuses_any_source_without_opt_in(tmp_path):
    task = "Refuse management CIDRs wider than the minimum prefix"
    cases = [(broad, {"libvirt_remote_management_cidrs": ["10.254.0.0/24", broad]}, task,
              [broad, "libvirt_remote_allow_any_source"]) for broad in ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31"]]
    cases.append(("wider than a raised minimum", {"libvirt_remote_management_cidrs": ["10.254.0.0/23"],
                                                  "libvirt_remote_min_cidr_prefix_v4": 24},
                  task, ["10.254.0.0/23", "/24 (IPv4, libvirt_remote_min_cidr_prefix_v4)"]))
    cases.append(("impossible minimum", {"libvirt_remote_min_cidr_prefix_v6": 129},
                  "Refuse minimum CIDR prefixes outside", ["libvirt_remote_min_cidr_prefix_v6 (129)"]))
    assert check(tmp_path, remote, cases, [
        ("opt-in", {"libvirt_remote_management_cidrs": ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31"],
                    "libvirt_remote_allow_any_source": True}),
        ("at a raised minimum", {"libvirt_remote_management_cidrs": ["10.254.0.0/24"],
                                 "libvirt_remote_min_cidr_prefix_v4": 24}),
        ("at the default minimums", {"libvirt_remote_management_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}),
    ])


def test_remote_checks_the_merged_daemon_settings(tmp_path):
    keytab = tmp_path / "krb5.tab"
    keytab.write_text("not a real keytab; only its existence is checked\n")
    kerberos = dict(libvirt_remote_tcp_enabled=True, libvirt_remote_sasl_mech="gssapi",
                    libvirt_remote_sasl_allowed_usernames=["alice"], libvirt_remote_sasl_keytab=str(keytab))

    def extra(settings, **more):
        return dict(more, libvirt_remote_extra_settings=settings)
    assert check(tmp_path, remote, [
        ("listen_tcp behind the role's back", extra({"auth_tcp": "none", "listen_tcp": 1}),
         "Refuse a merged TCP listener without SASL", ["listen_tcp 1", 'auth_tcp "none"', "libvirt_remote_extra_settings"]),
        ("auth_tcp none with TCP on", extra({"auth_tcp": "none"}, **kerberos),
         "Refuse a merged TCP listener without SASL", ['auth_tcp "none"']),
        ("no certificate verification", extra({"tls_no_verify_certificate": 1}),
         "Refuse merged settings that turn off the client certificate checks",
         ["tls_no_verify_certificate (1)", "libvirt_remote_extra_settings"]),
        ("no certificate sanity check", extra({"tls_no_sanity_certificate": True}),
         "Refuse merged settings that turn off the client certificate checks", ["tls_no_sanity_certificate (True)"]),
        ("any certificate", extra({"tls_allowed_dn_list": ["C=DE,O=secvirt,OU=operators,CN=*", "*"]}),
         "Refuse a merged tls_allowed_dn_list that lets any certificate in", ['"*"', "libvirt_remote_extra_settings"]),
        ("empty DN list", extra({"tls_allowed_dn_list": []}),
         "Refuse a merged tls_allowed_dn_list that lets any certificate in", ["tls_allowed_dn_list []"]),
        ("weak priority", extra({"tls_priority": "NORMAL"}),
         "Refuse a GnuTLS priority string", ["tls_priority in libvirt_remote_extra_settings", "enables TLS1.0"]),
        ("world-writable socket", extra({"unix_sock_rw_perms": "0777"}),
         "Refuse a merged read-write socket", ['unix_sock_rw_perms "0777"', "auth_unix_rw"]),
        ("SASL login over TLS dropped", extra({"auth_tls": "none"}, libvirt_remote_auth_tls="sasl"),
         "Refuse merged settings that weaken auth_tls", ['merged auth_tls is "none"', "libvirt_remote_extra_settings"]),
        ("auth_tls polkit", extra({"auth_tls": "polkit"}),
         "Refuse merged settings that weaken auth_tls", ['"polkit"']),
        ("every principal", extra({"sasl_allowed_username_list": ["*"]}, **kerberos),
         "Refuse a merged sasl_allowed_username_list that lets anyone in", ['["*"]', "libvirt_remote_extra_settings"]),
    ], [
        ("harmless keys and the guarded keys at safe values", extra({
            "max_workers": 20, "auth_tcp": "sasl", "listen_tcp": 0, "tls_no_verify_certificate": 0,
            "tls_no_sanity_certificate": 0, "tls_allowed_dn_list": ["C=DE,O=secvirt,OU=admins,CN=*"],
            "tls_priority": "SECURE256:-VERS-ALL:+VERS-TLS1.3", "unix_sock_rw_perms": "0770"})),
        ("auth_tcp sasl with TCP on", extra({"auth_tcp": "sasl"}, **kerberos)),
        ("SASL login over TLS kept", extra({"auth_tls": "sasl"}, libvirt_remote_auth_tls="sasl")),
        ("world-writable socket with polkit", extra({"unix_sock_rw_perms": "0777", "auth_unix_rw": "polkit"})),
        ("named principals", extra({"sasl_allowed_username_list": ["alice", "bob"]}, **kerberos)),
    ])


def test_remote_each_former_rule_names_itself(tmp_path):
    """Every rule of the former single assert still refuses, now in a task of its own."""
    rules = [
        ({"libvirt_remote_tls_allowed_dn_list": []}, {}, "Refuse TLS without an allowed client DN list",
         ["refusing", "libvirt_remote_tls_allowed_dn_list"]),
        ({"libvirt_remote_tls_allowed_dn_list": [" "]}, {}, "Refuse blank entries in the allowed client DN list",
         ["libvirt_remote_tls_allowed_dn_list"]),
        ({"libvirt_remote_tcp_enabled": True, "libvirt_remote_auth_tcp": "none"},
         {"libvirt_remote_tcp_enabled": False, "libvirt_remote_auth_tcp": "none"},
         "Refuse plain TCP without SASL authentication", ["libvirt_remote_auth_tcp"]),
        ({"libvirt_remote_tcp_enabled": True}, {"libvirt_remote_tcp_enabled": False},
         "Refuse SASL over plain TCP without Kerberos", ["libvirt_remote_sasl_mech", "gssapi"]),
        ({"libvirt_remote_management_cidrs": []},
         {"libvirt_remote_management_cidrs": [], "libvirt_remote_firewall": "none"},
         "Refuse a port filter without management networks", ["libvirt_remote_management_cidrs"]),
        ({"libvirt_remote_sasl_users": [{"name": "a", "password": "pw-1"}, {"name": "a", "password": "pw-2"}]},
         {"libvirt_remote_sasl_users": [{"name": "a", "password": "pw-1"}, {"name": "b", "password": "pw-2"}]},
         "Refuse duplicate SASL user names", ["libvirt_remote_sasl_users need unique names"]),
        ({"libvirt_remote_sasl_users": [{"name": "a"}, {"name": "b", "state": "present"}]},
         {"libvirt_remote_sasl_users": [{"name": "a", "password": "pw-1"}, {"name": "b", "state": "absent"}]},
         "Refuse SASL users without a password", ["libvirt_remote_sasl_users need a password"]),
        ({"libvirt_remote_auth_tls": "sasl", "libvirt_remote_sasl_mech": "gssapi"},
         {"libvirt_remote_auth_tls": "none", "libvirt_remote_sasl_mech": "gssapi"},
         "Refuse Kerberos without a list of allowed principals", ["libvirt_remote_sasl_allowed_usernames"]),
        ({"libvirt_remote_sasl_allowed_usernames": ["alice", ""]}, {"libvirt_remote_sasl_allowed_usernames": ["alice"]},
         "Refuse blank entries in the allowed SASL user names", ["libvirt_remote_sasl_allowed_usernames"]),
        ({"libvirt_remote_sasl_scram_iterations": 100}, {"libvirt_remote_sasl_scram_iterations": 4096},
         "Refuse SCRAM iteration counts outside 4096..65536", ["libvirt_remote_sasl_scram_iterations (100)"]),
    ]
    assert check(tmp_path, remote, [(task, bad, task, words) for bad, _good, task, words in rules],
                 [(task, good) for _bad, good, task, _words in rules])


def test_remote_argument_spec_declares_the_new_variables(tmp_path):
    new = {"libvirt_remote_allow_any_source": True, "libvirt_remote_min_cidr_prefix_v4": 8,
           "libvirt_remote_min_cidr_prefix_v6": 32}
    spec = "Validating arguments against arg spec main"
    assert check(tmp_path, lambda tmp, cases: validate_spec(tmp, "libvirt_remote", cases), [
        ("opt-in not a bool", dict(new, libvirt_remote_allow_any_source="perhaps"), spec,
         ["libvirt_remote_allow_any_source"]),
        ("v4 minimum not an int", dict(new, libvirt_remote_min_cidr_prefix_v4="wide"), spec,
         ["libvirt_remote_min_cidr_prefix_v4"]),
        ("v6 minimum not an int", dict(new, libvirt_remote_min_cidr_prefix_v6="wide"), spec,
         ["libvirt_remote_min_cidr_prefix_v6"]),
    ], [
        ("all valid", new),
    ])


# --- pki -----------------------------------------------------------------------

PKI = {"pki_ca_dir": "/nonexistent/ca", "pki_ca_passphrase": "unit-test-passphrase", "pki_fqdn": "kvm01.example.org", "pki_server": False,
       "pki_qemu_tls": False}


def test_pki_refuses_bad_revocation_and_rollover_input(tmp_path):
    spec = "Validating arguments against arg spec main"
    assert check(tmp_path, lambda tmp, cases: validate_spec(tmp, "pki", cases), [
        ("unknown reason", dict(PKI, pki_revoke=[{"name": "station/client", "reason": "certificate_hold"}]), spec,
         ["reason", "certificate_hold", "key_compromise"]),
        ("unknown rollover phase", dict(PKI, pki_ca_rollover="later"), spec, ["pki_ca_rollover", "prepare, reissue, finish"]),
        ("CRL lifetime not a number", dict(PKI, pki_crl_validity_days="month"), spec, ["pki_crl_validity_days"]),
    ], [
        ("revocations and a rollover phase", dict(PKI, pki_revoke=[{"host": "laptop-17"}, {"serial": "3A:0F", "reason": "superseded"}],
                                                  pki_ca_rollover="reissue")),
    ])
    task = "Refuse a CRL renewal window as long as the CRL's lifetime"
    assert check(tmp_path, lambda tmp, cases: validate_role(tmp, "pki", cases), [
        ("window as long as the lifetime", dict(PKI, pki_crl_validity_days=7, pki_crl_renew_before_days=7), task,
         ["pki_crl_renew_before_days (7)", "pki_crl_validity_days (7)"]),
        ("negative window", dict(PKI, pki_crl_renew_before_days=-1), task, ["between 0 and"]),
    ], [
        ("defaults", PKI),
    ])


# --- every role: the platforms it was tested on --------------------------------

PLATFORM_TASK = "Refuse a platform the role was never tested on, before any change"
# Input each role's argument spec accepts but its validation refuses: the
# positive control on Debian 13 must get past the platform check and stop at
# that later refusal, before any change.
PLATFORM_CONTROLS = {
    "audit": ({"audit_kernel_args": ["audit=1 $(id)"]},
              "Refuse kernel arguments that are not plain NAME or NAME=VALUE words"),
    "encrypted_storage": (volumes(dict(VOLUME, passphrase="Zq7")), "Refuse passphrases shorter than"),
    "hypervisor": ({"hypervisor_qemu_user": "root"}, "Refuse running QEMU as root"),
    "libvirt_client": ({"libvirt_client_sasl_credentials": [{"host": "kvm01.example.org", "username": "u",
                                                             "password": "p"}]},
                       "Refuse a SASL password file that was not explicitly accepted"),
    "libvirt_remote": (dict(REMOTE, libvirt_remote_tls_allowed_dn_list=[]), "Refuse TLS without an allowed client DN list"),
    "pki": ({"pki_ca_dir": "/nonexistent/ca", "pki_ca_passphrase": "short"},
            "Refuse to run without a CA directory and a strong passphrase"),
    "vlan_bridges": ({"vlan_bridges_backend": "networkmanager"}, "Refuse a network stack this role cannot drive"),
    "qemu_tls": ({"qemu_tls_console_listen": ""}, "Refuse missing listen addresses"),
}


def platform_facts(distribution, version, family):
    return {"fake_facts": {"distribution": distribution, "distribution_major_version": version.split(".")[0],
                           "distribution_version": version, "os_family": family}}


@pytest.mark.parametrize("role", sorted(PLATFORM_CONTROLS))
def test_role_refuses_a_platform_it_was_never_tested_on(tmp_path, role):
    # The facts the role reads, set as facts (cacheable set_fact); the
    # interfaces are there so that vlan_bridges does not gather real ones.
    tasks = [
        {"name": "Pretend to be the case's platform",
         "ansible.builtin.set_fact": {
             "distribution": "{{ fake_facts.distribution }}",
             "distribution_major_version": "{{ fake_facts.distribution_major_version }}",
             "distribution_version": "{{ fake_facts.distribution_version }}",
             "os_family": "{{ fake_facts.os_family }}", "interfaces": [], "cacheable": True}},
        {"name": "Run the role", "ansible.builtin.include_role": {"name": "secvirt.kvm." + role, "public": False}},
    ]
    role_input, later_refusal = PLATFORM_CONTROLS[role]
    cases = [
        ("Fedora 41", dict(role_input, **platform_facts("Fedora", "41", "RedHat"))),
        ("Debian 11", dict(role_input, **platform_facts("Debian", "11.11", "Debian"))),
        ("Ubuntu 24.04", dict(role_input, **platform_facts("Ubuntu", "24.04", "Debian"))),
        ("Debian 13 (control)", dict(role_input, **platform_facts("Debian", "13.2", "Debian"))),
    ]
    fedora, debian11, ubuntu, control = run_cases(tmp_path, tasks, cases)
    for case, shown in ((fedora, "Fedora 41"), (debian11, "Debian 11.11"), (ubuntu, "Ubuntu 24.04")):
        refused(case, PLATFORM_TASK, "secvirt.kvm.%s is tested on Debian 12 (bookworm) and Debian 13 (trixie) only"
                % role, "this host runs %s." % shown, "Nothing was changed")
    refused(control, later_refusal)


# --- guest_policy ------------------------------------------------------------

# "nobody" exists on every Debian host, this build host included.
GUEST_POLICY_ACL = {"guest_policy_acl": [{"user": "nobody", "guests": ["web1"]}]}


def guest_policy(tmp_path, cases):
    # the whole role from its start, on this build host posing as Debian 12:
    # its validation reads only variables and the passwd database, and the
    # first task after it (the report module) needs a libvirt daemon this
    # host does not run: a case that fails there passed every validation
    tasks = [{"name": "Pretend to be Debian 12",
              "ansible.builtin.set_fact": {"ansible_distribution": "Debian", "ansible_distribution_major_version": "12",
                                           "ansible_distribution_version": "12.12", "cacheable": True}},
             {"name": "Run guest_policy",
              "ansible.builtin.include_role": {"name": "secvirt.kvm.guest_policy", "public": False}}]
    return run_cases(tmp_path, tasks, cases)


def test_guest_policy_refuses_an_access_list_before_any_change(tmp_path):
    report = "Check every guest against the policy"
    cases = [
        ("acl where libvirt_remote listens on TLS", dict(GUEST_POLICY_ACL, libvirt_remote_tls_enabled=True)),
        ("acl where libvirt_remote listens on TCP", dict(GUEST_POLICY_ACL, libvirt_remote_tcp_enabled=True)),
        ("a user this host does not have", {"guest_policy_acl": [{"user": "secvirt-no-such-user", "guests": ["a"]}]}),
        ("root", {"guest_policy_acl": [{"user": "root", "guests": ["a"]}]}),
        ("twice the same user", {"guest_policy_acl": [{"user": "nobody", "guests": ["a"]},
                                                      {"user": "nobody", "guests": ["b"]}]}),
        ("unknown permission", {"guest_policy_acl": [{"user": "nobody", "guests": ["a"], "permissions": ["fly"]}]}),
        # positive controls: past every validation, to the report module
        ("the opt-in", dict(GUEST_POLICY_ACL, libvirt_remote_tls_enabled=True,
                            guest_policy_acl_allow_remote_lockout=True)),
        ("no remote listener", dict(GUEST_POLICY_ACL, libvirt_remote_tls_enabled=False)),
        ("no access list where libvirt_remote listens", {"libvirt_remote_tls_enabled": True}),
    ]
    results = guest_policy(tmp_path, cases)
    lockout = "Refuse access control where remote clients would lose every permission"
    refused(results[0], lockout, "qemu+ssh://", "guest_policy_acl_allow_remote_lockout: true")
    refused(results[1], lockout, "libvirt_remote's TLS or TCP listener")
    refused(results[2], "Refuse an access list naming users this host does not have",
            "no such user on c2: secvirt-no-such-user")
    for case in results[3:5]:
        refused(case, "Refuse a malformed access list", "a distinct UNIX user name (not root")
    refused(results[5], "Refuse a malformed access list", "unknown fly")
    for case in results[6:]:
        assert case.failed is True and case.failed_task is not None and report in case.failed_task, case
