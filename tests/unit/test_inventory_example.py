"""docs/inventory-example/ as Ansible reads it, checked against the roles' argument specs.

The example is copied to a temporary directory and given the vault it
expects: ``group_vars/all/vault.yml`` with the names of ``vault.yml.example``
and fake values, encrypted with ``ansible-vault`` (password file in the
temporary directory). Then:

- ``ansible-inventory --list`` reads it (with the vault password): the groups
  and hosts site.yml plays on, and every variable is a role's variable that
  the role's ``meta/argument_specs.yml`` declares (a misspelt name is
  reported), set only on hosts the role runs on in site.yml, or a connection
  variable (``ansible_*``), a host address the example defines
  (``secvirt_*``) or a vault variable (``vault_*``);
- the variables a user has to set (``MUST_SET``) are set;
- secrets: every option the argument specs mark ``no_log``, and every
  password or passphrase, is set only as a vault reference (exactly
  ``"{{ vault_<name> }}"``); vault.yml.example names exactly the vault
  variables the example references and shows no value;
- ``ansible.builtin.validate_argument_spec`` validates, for every host, the
  variables of each role site.yml runs there against each entry point of the
  role's argument specs: a playbook with site.yml's hosts and roles, run
  without facts and without connecting (the action needs no connection). The
  action templates the values first. Every template in the example refers
  only to inventory variables (``inventory_dir``, ``secvirt_*``) and vault
  variables, which the fake vault supplies, so every value is validated
  resolved; a template that referred to a fact would fail the run as
  undefined. The recap must show each validation ok on each host. A copy
  with two bad values shows that the run does fail, naming them.
"""
import json
import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "inventory-example")
VAULT_EXAMPLE = os.path.join(EXAMPLE, "group_vars", "all", "vault.yml.example")
BIN = os.path.dirname(sys.executable)

# What a user has to set for each role (required, or required in practice
# per the role's README: TLS without an allowed DN list, qemu_tls without
# addresses and networks are refused; the other lists are what the role is
# for), on every host the role runs on.
MUST_SET = {
    "pki": ["pki_ca_dir", "pki_ca_passphrase", "pki_organization", "pki_subject_base"],
    "hypervisor": ["hypervisor_security_driver"],
    "libvirt_remote": ["libvirt_remote_tls_allowed_dn_list", "libvirt_remote_management_cidrs"],
    "audit": ["audit_immutable", "audit_reboot"],
    "qemu_tls": ["qemu_tls_console_listen", "qemu_tls_migration_address", "qemu_tls_management_cidrs"],
    "guest_policy": ["guest_policy_mode"],
    "vlan_bridges": ["vlan_bridges_management_interface", "vlan_bridges_networks"],
    "encrypted_storage": ["encrypted_storage_vg", "encrypted_storage_volumes"],
    "libvirt_client": ["libvirt_client_users", "libvirt_client_uri_aliases"],
}
# Variables that are nobody's role variable.
OTHER_VARIABLES = re.compile(r"^(ansible_[a-z_]+|secvirt_[a-z_]+|vault_[a-z0-9_]+)$")
VAULT_REFERENCE = re.compile(r"^\{\{ (vault_[a-z0-9_]+) \}\}$")
SECRET_NAME = re.compile(r"pass(word|phrase)|secret|key_content")
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=([0-9]+)\s+changed=[0-9]+\s+unreachable=([0-9]+)\s+failed=([0-9]+)\s+"
                    r"skipped=([0-9]+)\s+rescued=[0-9]+\s+ignored=([0-9]+)", re.M)


def _tool(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: `make setup` installs ansible-core into {BIN}")
    return path


def _load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def role_specs():
    """{role: {entry point: options}} from every role's meta/argument_specs.yml."""
    roles_dir = os.path.join(ROOT, "roles")
    return {role: {entry: spec.get("options", {}) for entry, spec in
                   _load(os.path.join(roles_dir, role, "meta", "argument_specs.yml"))["argument_specs"].items()}
            for role in sorted(os.listdir(roles_dir))
            if os.path.exists(os.path.join(roles_dir, role, "meta", "argument_specs.yml"))}


def site_plays():
    """[(hosts pattern, [role, ...])] of site.yml's plays that run roles."""
    site = _load(os.path.join(ROOT, "playbooks", "site.yml"))
    return [(play["hosts"], [entry["role"].split(".")[-1] for entry in play["roles"]]) for play in site if play.get("roles")]


def role_of(name, roles):
    owners = [r for r in roles if name.startswith(r + "_")]
    return max(owners, key=len) if owners else None


def declared(specs, role):
    """Every option of the role, whatever its entry point: {name: spec}."""
    options = {}
    for entry in specs[role].values():
        options.update(entry)
    return options


def unknown_variables(hostvars, specs, hosts_of_role):
    """(host, variable, why) for every variable that is not a declared variable of a role running on the host."""
    problems = []
    for host, variables in sorted(hostvars.items()):
        for name in sorted(variables):
            role = role_of(name, specs)
            if role is None:
                if not OTHER_VARIABLES.match(name):
                    problems.append((host, name, "no role's variable, nor ansible_*, secvirt_* or vault_*"))
            elif name not in declared(specs, role):
                problems.append((host, name, f"not in roles/{role}/meta/argument_specs.yml"))
            elif host not in hosts_of_role[role]:
                problems.append((host, name, f"site.yml does not run {role} on this host"))
    return problems


def _sensitive(name, spec):
    """no_log, or a free-form string (list of strings) named like a secret (not sasl_store_password's bool)."""
    text = spec.get("type", "str") == "str" or (spec.get("type") == "list" and spec.get("elements") == "str")
    return spec.get("no_log", False) or (text and "choices" not in spec and bool(SECRET_NAME.search(name)))


def secrets_in_clear(value, spec, path):
    """(path, value) of every sensitive option under ``value`` that is not exactly a vault reference."""
    found = []
    name = path.split(".")[-1].split("[")[0]
    if _sensitive(name, spec):
        values = value if isinstance(value, list) else [value]
        found += [(path, v) for v in values if not (isinstance(v, str) and VAULT_REFERENCE.match(v))]
    elif spec.get("options") and value:
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            for key, sub in (item or {}).items():
                if key in spec["options"]:
                    found += secrets_in_clear(sub, spec["options"][key], f"{path}[{index}].{key}")
    return found


def _env(base):
    config = os.path.join(base, "ansible.cfg")
    with open(config, "w", encoding="utf-8") as f:
        f.write("[defaults]\n")
    for sub in ("home", "local"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=config, ANSIBLE_HOME=os.path.join(base, "home"), ANSIBLE_LOCAL_TEMP=os.path.join(base, "local"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    return env


class Example(object):
    """A copy of the example with an encrypted fake vault, and what ansible-inventory reads from it."""

    def __init__(self, base):
        self.base = base
        self.env = _env(base)
        self.inventory = os.path.join(base, "inventory")
        shutil.copytree(EXAMPLE, self.inventory)
        self.vault_names = list(_load(VAULT_EXAMPLE))
        self.fake = {name: f"fake-{name}-{secrets.token_hex(12)}" for name in self.vault_names}
        vault = os.path.join(self.inventory, "group_vars", "all", "vault.yml")
        with open(vault, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.fake, f)
        self.password_file = os.path.join(base, "vault-password")
        with open(self.password_file, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(16) + "\n")
        proc = self.run("ansible-vault", "encrypt", "--vault-password-file", self.password_file, vault)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with open(vault, encoding="utf-8") as f:
            assert f.read().startswith("$ANSIBLE_VAULT;"), "the fake vault is not encrypted"
        proc = self.run("ansible-inventory", "-i", self.inventory, "--vault-password-file", self.password_file, "--list")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stderr, proc.stderr
        self.listed = json.loads(proc.stdout)
        self.hostvars = self.listed["_meta"]["hostvars"]

    def run(self, tool, *args):
        return subprocess.run([_tool(tool), *args], cwd=self.base, env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)

    def group(self, name):
        return set(self.listed.get(name, {}).get("hosts", []))

    def hosts(self, pattern):
        return set().union(*(self.group(g) for g in pattern.split(":")))

    def validate(self, specs, inventory=None):
        """Run validate_argument_spec for every role and entry point site.yml runs on each host; (proc, recap)."""
        # descriptions and defaults are not needed to validate given values,
        # and two defaults are templates of the role's other variables
        def strip(options):
            return {name: {k: (strip(v) if k == "options" else v) for k, v in spec.items() if k not in ("description", "default")}
                    for name, spec in options.items()}
        stripped = {role: {entry: strip(options) for entry, options in entries.items()} for role, entries in specs.items()}
        with open(os.path.join(self.base, "specs.json"), "w", encoding="utf-8") as f:
            json.dump({"secvirt_argument_specs": stripped}, f)
        plays = []
        for hosts, roles in site_plays():
            tasks = [{"name": f"Validate {role} ({entry})",
                      "ansible.builtin.validate_argument_spec": {
                          "argument_spec": "{{ secvirt_argument_specs['%s']['%s'] }}" % (role, entry),
                          "validate_args_context": {"role": role, "entry_point": entry}},
                      "ignore_errors": True}
                     for role in roles for entry in specs[role]]
            plays.append({"name": f"Validate the variables of {', '.join(roles)}", "hosts": hosts, "gather_facts": False,
                          "tasks": tasks})
        with open(os.path.join(self.base, "validate.yml"), "w", encoding="utf-8") as f:
            json.dump(plays, f, indent=1)
        proc = self.run("ansible-playbook", "-i", inventory or self.inventory, "--vault-password-file", self.password_file,
                        "-e", "@" + os.path.join(self.base, "specs.json"), "-e", "ansible_connection=local",
                        os.path.join(self.base, "validate.yml"))
        recap = {host: dict(zip(("ok", "unreachable", "failed", "skipped", "ignored"), map(int, counts)))
                 for host, *counts in _RECAP.findall(proc.stdout)}
        return proc, recap

    def expected_validations(self, specs):
        counts = {}
        for hosts, roles in site_plays():
            for host in self.hosts(hosts):
                counts[host] = counts.get(host, 0) + sum(len(specs[r]) for r in roles)
        return counts


@pytest.fixture(scope="module")
def specs():
    return role_specs()


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return Example(str(tmp_path_factory.mktemp("inventory-example")))


def hosts_of_roles(example):
    result = {}
    for hosts, roles in site_plays():
        for role in roles:
            result.setdefault(role, set()).update(example.hosts(hosts))
    return result


def test_groups_and_hosts(example):
    assert example.group("kvm_hosts") and example.group("management_stations"), example.listed
    assert not example.group("kvm_hosts") & example.group("management_stations")
    for hosts, _roles in site_plays():
        assert example.hosts(hosts), f"no host in {hosts}"


def test_every_variable_is_declared_by_a_role_running_there(example, specs):
    assert set(hosts_of_roles(example)) == set(specs), "site.yml does not run every role"
    assert unknown_variables(example.hostvars, specs, hosts_of_roles(example)) == []


def test_a_misspelt_variable_is_reported(example, specs):
    hostvars = json.loads(json.dumps(example.hostvars))
    host = sorted(example.group("management_stations"))[0]
    hostvars[host].update(pki_ca_dirr="/tmp/ca", qemu_tls_vnc=True, secret_thing="x")
    assert unknown_variables(hostvars, specs, hosts_of_roles(example)) == [
        (host, "pki_ca_dirr", "not in roles/pki/meta/argument_specs.yml"),
        (host, "qemu_tls_vnc", "site.yml does not run qemu_tls on this host"),
        (host, "secret_thing", "no role's variable, nor ansible_*, secvirt_* or vault_*"),
    ]


def test_what_a_user_must_set_is_set(example):
    missing = [(role, name, host) for role, hosts in sorted(hosts_of_roles(example).items())
               for name in MUST_SET[role] for host in sorted(hosts) if name not in example.hostvars[host]]
    assert missing == []


def test_secrets_are_vault_references_only(example, specs):
    clear, referenced = [], set()
    for host, variables in sorted(example.hostvars.items()):
        for name, value in variables.items():
            role = role_of(name, specs)
            if role is not None and name in declared(specs, role):
                clear += [(host, path, v) for path, v in secrets_in_clear(value, declared(specs, role)[name], name)]
            if not name.startswith("vault_"):
                referenced.update(re.findall(r"\bvault_[a-z0-9_]+", json.dumps(value)))
    assert clear == [], "secrets that are not a vault reference"
    assert referenced == set(example.vault_names), "vault.yml.example and the references differ"
    shown = {name: value for name, value in _load(VAULT_EXAMPLE).items() if value not in ("", None)}
    assert shown == {}, "vault.yml.example shows values"
    # the fake vault was decrypted and reached the hosts
    assert all(example.hostvars[h]["vault_pki_ca_passphrase"] == example.fake["vault_pki_ca_passphrase"] for h in example.hostvars)


def test_a_secret_in_clear_is_reported(specs):
    volumes = [{"name": "guest01", "size": "1G", "passphrase": "correct horse battery staple",
                "add_passphrases": ["{{ vault_ok }}", "hunter2hunter2"]}]
    spec = declared(specs, "encrypted_storage")["encrypted_storage_volumes"]
    assert secrets_in_clear(volumes, spec, "encrypted_storage_volumes") == [
        ("encrypted_storage_volumes[0].passphrase", "correct horse battery staple"),
        ("encrypted_storage_volumes[0].add_passphrases", "hunter2hunter2"),
    ]
    spec = declared(specs, "pki")["pki_ca_passphrase"]
    assert secrets_in_clear("{{ vault_pki_ca_passphrase }}", spec, "pki_ca_passphrase") == []
    assert secrets_in_clear("{{ vault_pki_ca_passphrase }} x", spec, "pki_ca_passphrase") != []
    # options named like secrets that are not (a bool, a choice)
    assert not _sensitive("libvirt_client_sasl_store_password", declared(specs, "libvirt_client")["libvirt_client_sasl_store_password"])
    assert not _sensitive("libvirt_remote_sasl_update_password", declared(specs, "libvirt_remote")["libvirt_remote_sasl_update_password"])


def test_variables_pass_the_roles_argument_specs(example, specs):
    proc, recap = example.validate(specs)
    expected = example.expected_validations(specs)
    assert proc.returncode == 0 and set(recap) == set(expected), proc.stdout[-6000:] + proc.stderr
    assert {h: r["ok"] for h, r in recap.items()} == expected, proc.stdout[-6000:]
    assert all(r["failed"] == r["ignored"] == r["skipped"] == r["unreachable"] == 0 for r in recap.values()), proc.stdout[-6000:]
    assert "undefined" not in proc.stdout.lower(), proc.stdout[-6000:]


def test_bad_values_fail_the_validation(example, specs):
    bad = os.path.join(example.base, "bad")
    shutil.copytree(example.inventory, bad)
    host = sorted(example.group("kvm_hosts"))[-1]
    with open(os.path.join(bad, "host_vars", host + ".yml"), "a", encoding="utf-8") as f:
        f.write("pki_key_type: dsa-1024\nqemu_tls_vnc_sasl: perhaps\n")
    # a fact (none is gathered) fails like a bad value: values are validated resolved
    station = sorted(example.group("management_stations"))[0]
    with open(os.path.join(bad, "host_vars", station + ".yml"), "w", encoding="utf-8") as f:
        f.write("libvirt_client_uri_default: \"qemu+tls://{{ ansible_facts['fqdn'] }}/system\"\n")
    proc, recap = example.validate(specs, inventory=bad)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr  # the validations' errors are ignored, and counted
    assert {h: r["ignored"] for h, r in recap.items()} == {h: {host: 2, station: 1}.get(h, 0) for h in recap}, \
        proc.stdout[-6000:]
    assert "pki_key_type must be one of" in proc.stdout, proc.stdout[-6000:]
    assert "qemu_tls_vnc_sasl" in proc.stdout and "bool" in proc.stdout, proc.stdout[-6000:]
    assert "fqdn" in proc.stdout, proc.stdout[-6000:]
