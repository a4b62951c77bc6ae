"""Rendering the seed's virt_* rule groups from the audit role's data, and reading auditctl back."""
import os

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.secvirt.kvm.plugins.module_utils import audit_kernel as ak
from ansible_collections.secvirt.kvm.plugins.module_utils import audit_rules as ar

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "audit")
QEMU_UID = {"libvirt-qemu": "64055"}


def role_data(os_family="Debian", mode="monolithic", **overrides):
    """The role's catalogue and subject classes, templated as Ansible would."""
    loader = DataLoader()
    variables = {}
    for name in ("defaults/main.yml", "vars/main.yml", "vars/%s.yml" % os_family):
        variables.update(loader.load_from_file(os.path.join(ROLE, name), trusted_as_template=True))
    variables["__audit_daemon_mode"] = mode
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    return templar.template(variables["__audit_groups"]), templar.template(variables["__audit_subjects"])


def debian_host(selinux=False, missing=(), users=("libvirt-qemu",), exes=None):
    """A Debian 12 KVM host: everything exists except the paths in ``missing``."""
    exes = set(exes if exes is not None else [
        "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/sbin/virtlockd", "/usr/sbin/logrotate"])

    def is_dir(path):
        return not any(path == m or path.startswith(m + "/") for m in missing)

    return ar.Host(selinux=selinux, path_exists=lambda p: p in exes, is_dir=is_dir,
                   user_exists=lambda u: u in users)


def uid_of(name):
    return QEMU_UID.get(name, name)


def test_debian_apparmor_host_gets_path_uid_and_exe_rules():
    groups, subjects = role_data()
    out = ar.render(groups, subjects, debian_host(missing=["/etc/pki"]))
    rules = out.rules
    # the exclusions: qemu by its account, logrotate by executable
    assert "-a never,exit -F path=/dev/kvm -F perm=rw -F uid=libvirt-qemu" in rules
    assert "-a never,exit -F dir=/dev/pts -F perm=rw -F uid=libvirt-qemu" in rules
    assert "-a never,exit -F dir=/var/log/libvirt -F perm=wa -F exe=/usr/sbin/logrotate" in rules
    # seed groups with modern syntax and virt_ keys
    assert "-a always,exit -F dir=/etc/libvirt -F perm=wa -F key=virt_libvirt_cfg" in rules
    assert "-a always,exit -F path=/etc/default/libvirtd -F perm=wa -F key=virt_libvirt_cfg" in rules
    assert "-a always,exit -F path=/etc/sasl2/libvirt.conf -F perm=wa -F key=virt_libvirt_cfg" in rules
    assert ("-a always,exit -F dir=/var/lib/libvirt/images -F perm=wa -F uid!=libvirt-qemu "
            "-F key=virt_image_change") in rules
    assert "-a always,exit -F path=/usr/bin/qemu-system-x86_64 -F perm=x -F key=virt_qemu_exec" in rules
    assert "-a always,exit -F path=/usr/sbin/libvirtd -F perm=wa -F key=virt_libvirtd_change" in rules
    # not_by libvirt_daemons: one never rule per daemon in front of the always rule
    i = rules.index("-a always,exit -F dir=/run/libvirt -F perm=wa -F key=virt_runtime_change")
    assert rules[i - 3:i] == [
        "-a never,exit -F dir=/run/libvirt -F perm=wa -F exe=/usr/sbin/libvirtd",
        "-a never,exit -F dir=/run/libvirt -F perm=wa -F exe=/usr/sbin/virtlogd",
        "-a never,exit -F dir=/run/libvirt -F perm=wa -F exe=/usr/sbin/virtlockd",
    ]
    # the SELinux-only catch-all becomes: every program the qemu account executes, both arches
    assert rules[-2:] == [
        "-a always,exit -F arch=b64 -S execve,execveat -F uid=libvirt-qemu -F key=virt_qemu_crossdomain",
        "-a always,exit -F arch=b32 -S execve,execveat -F uid=libvirt-qemu -F key=virt_qemu_crossdomain",
    ]
    assert not any("subj_type" in r or "obj_type" in r for r in rules)
    assert not any("exe!=" in r for r in rules)
    # no PKI yet: the TLS rules are left out with the reason, not loaded half-way
    reasons = {(s["group"], s["reason"]) for s in out.skipped}
    assert ("tls_privkey", "directory /etc/pki/libvirt/private does not exist "
            "(auditctl would stop loading here)") in reasons
    assert not any("virt_tls" in r for r in rules)
    # no dnsmasq installed, no initrc_t equivalent, virt_image_t only with SELinux
    assert {s["group"] for s in out.skipped} >= {"dont_audit", "image_change", "tls_cert"}
    assert any("subject class init_scripts has no path/exe equivalent" in s["reason"] for s in out.skipped)
    assert any("subject class dnsmasq has no installed executable" in s["reason"] for s in out.skipped)
    assert any(s["group"] == "image_change" and "SELinux is not enabled" in s["reason"] for s in out.skipped)
    assert {"/run/libvirt", "/etc/libvirt", "/dev", "/dev/pts", "/usr/bin"} <= out.directories
    assert not any(d.startswith("/etc/pki") for d in out.directories)
    assert out.keys() == sorted(["virt_libvirt_cfg", "virt_image_change", "virt_runtime_change",
                                 "virt_log_change", "virt_libvirtd_exec", "virt_libvirtd_change",
                                 "virt_qemu_exec", "virt_qemu_change", "virt_qemu_crossdomain"])


def test_tls_rules_follow_the_pki_paths():
    groups, subjects = role_data(audit_pki_libvirt_server_key="/srv/pki/server.key")
    out = ar.render(groups, subjects, debian_host(missing=["/etc/pki/libvirt-spice", "/etc/pki/qemu"]))
    rules = out.rules
    assert rules[rules.index("-a always,exit -F path=/srv/pki/server.key -F perm=rwa -F key=virt_tls_privkey") - 1] \
        == "-a never,exit -F path=/srv/pki/server.key -F perm=rwa -F exe=/usr/sbin/libvirtd"
    assert ("-a always,exit -F path=/etc/pki/libvirt-vnc/server-key.pem -F perm=rwa -F uid!=libvirt-qemu "
            "-F key=virt_tls_privkey") in rules
    assert "-a always,exit -F path=/etc/pki/CA/cacert.pem -F perm=wa -F key=virt_tls_cert" in rules
    assert not any("libvirt-spice" in r or "/etc/pki/qemu/" in r for r in rules)


def test_modular_daemons():
    groups, subjects = role_data("Debian", "modular")
    host = debian_host(users=("libvirt-qemu",),
                       exes=["/usr/sbin/virtqemud", "/usr/sbin/virtproxyd", "/usr/sbin/virtlogd"])
    rules = ar.render(groups, subjects, host).rules
    assert "-a always,exit -F path=/usr/bin/qemu-system-x86_64 -F perm=x -F key=virt_qemu_exec" in rules
    assert "-a always,exit -F path=/usr/sbin/virtqemud -F perm=x -F key=virt_libvirtd_exec" in rules
    assert "-a always,exit -F path=/etc/default/libvirtd -F perm=wa -F key=virt_libvirt_cfg" in rules
    assert "-a never,exit -F path=/etc/pki/libvirt/private/serverkey.pem -F perm=rwa -F exe=/usr/sbin/virtproxyd" \
        in rules
    assert "-a never,exit -F dir=/var/log/libvirt -F perm=wa -F exe=/usr/sbin/virtqemud" in rules
    assert "-a never,exit -F path=/dev/kvm -F perm=rw -F uid=libvirt-qemu" in rules


def test_selinux_host_gets_the_seed_subject_and_object_types():
    groups, subjects = role_data()
    rules = ar.render(groups, subjects, debian_host(selinux=True)).rules
    assert "-a never,exit -F path=/dev/kvm -F perm=rw -F subj_type=svirt_t" in rules
    assert "-a never,exit -F path=/dev/kvm -F perm=rw -F subj_type=svirt_tcg_t" in rules
    assert "-a never,exit -F dir=/var/cache/libvirt -F perm=wa -F subj_type=initrc_t" in rules
    assert "-a never,exit -F dir=/run/libvirt/network -F perm=wa -F subj_type=dnsmasq_t" in rules
    assert ("-a always,exit -F path=/etc/pki/libvirt/private/serverkey.pem -F perm=rwa -F subj_type!=virtd_t "
            "-F key=virt_tls_privkey") in rules
    assert ("-a always,exit -F perm=wa -F obj_type=virt_image_t -F subj_type!=svirt_t -F subj_type!=svirt_tcg_t "
            "-F key=virt_image_change") in rules
    assert ("-a always,exit -F dir=/run/libvirt -F perm=wa -F subj_type!=virtd_t -F subj_type!=virtlogd_t "
            "-F key=virt_runtime_change") in rules
    assert rules[-4:] == [
        "-a always,exit -F arch=b64 -S all -F perm=wxa -F obj_type!=svirt_image_t -F obj_type!=svirt_tmpfs_t "
        "-F subj_type=svirt_t -F key=virt_qemu_crossdomain",
        "-a always,exit -F arch=b64 -S all -F perm=wxa -F obj_type!=svirt_image_t -F obj_type!=svirt_tmpfs_t "
        "-F subj_type=svirt_tcg_t -F key=virt_qemu_crossdomain",
        "-a always,exit -F arch=b32 -S all -F perm=wxa -F obj_type!=svirt_image_t -F obj_type!=svirt_tmpfs_t "
        "-F subj_type=svirt_t -F key=virt_qemu_crossdomain",
        "-a always,exit -F arch=b32 -S all -F perm=wxa -F obj_type!=svirt_image_t -F obj_type!=svirt_tmpfs_t "
        "-F subj_type=svirt_tcg_t -F key=virt_qemu_crossdomain",
    ]
    assert not any("exe=" in r or "uid" in r for r in rules)


def test_switches_turn_groups_off_and_unknown_names_fail():
    groups, subjects = role_data()
    host = debian_host()
    everything = ar.render(groups, subjects, host)
    assert "virt_qemu_crossdomain" in everything.keys()
    out = ar.render(groups, subjects, host, switches={"qemu_crossdomain": False, "tls_cert": False})
    assert "virt_qemu_crossdomain" not in out.keys() and "virt_tls_cert" not in out.keys()
    assert [g["name"] for g, _l, _n in out.groups if g["name"] in ("qemu_crossdomain", "tls_cert")] == []
    off = [dict(g, enabled=False) if g["name"] == "qemu_exec" else g for g in groups]
    assert "virt_qemu_exec" in ar.render(off, subjects, host, switches={"qemu_exec": True}).keys()
    with pytest.raises(ar.RuleError, match="unknown groups: qemu_crosdomain"):
        ar.render(groups, subjects, host, switches={"qemu_crosdomain": False})
    with pytest.raises(ar.RuleError, match="must be true or false"):
        ar.render(groups, subjects, host, switches={"qemu_exec": "no"})


def test_only_b64_when_asked_and_bad_arch():
    groups, subjects = role_data()
    rules = ar.render(groups, subjects, debian_host(), arches=["b64"]).rules
    assert not any("arch=b32" in r for r in rules)
    with pytest.raises(ar.RuleError, match="arch must be one of"):
        ar.render(groups, subjects, debian_host(), arches=["i386"])


def test_missing_qemu_account():
    groups, subjects = role_data()
    out = ar.render(groups, subjects, debian_host(users=()))
    assert not any("uid" in r for r in out.rules)
    assert any(s["reason"] == "account libvirt-qemu (subject class qemu) does not exist" for s in out.skipped)
    # not_by an account that does not exist: nothing to exclude, the rule stays
    assert "-a always,exit -F dir=/var/lib/libvirt/images -F perm=wa -F key=virt_image_change" in out.rules


def test_shared_never_rules_are_written_once():
    subjects = {"q": {"user": "libvirt-qemu"}}
    groups = [
        {"name": "a", "rules": [{"action": "never", "path": "/dev/kvm", "perm": "rw", "by": "q"}]},
        {"name": "b", "key": "virt_b", "rules": [{"action": "never", "path": "/dev/kvm", "perm": "wr", "by": "q"},
                                                 {"path": "/dev/kvm/", "perm": "aw"}]},
    ]
    out = ar.render(groups, subjects, debian_host())
    assert out.rules == ["-a never,exit -F path=/dev/kvm -F perm=rw -F uid=libvirt-qemu",
                         "-a always,exit -F path=/dev/kvm -F perm=wa -F key=virt_b"]
    assert out.keys() == ["virt_b"]


def test_rules_file_text():
    groups, subjects = role_data()
    out = ar.render(groups, subjects, debian_host(missing=["/etc/pki"]))
    text = ar.render_file(out, "Managed by Ansible.\nSecond line")
    lines = text.splitlines()
    assert lines[:3] == ["## Managed by Ansible.", "## Second line", ""]
    assert "## Group libvirt_cfg (key virt_libvirt_cfg)" in lines
    assert "## Changes to libvirt's configuration." in lines
    assert any(line.startswith("## skipped: path=/etc/pki/libvirt/private/serverkey.pem") for line in lines)
    assert text.endswith("-F key=virt_qemu_crossdomain\n")
    assert [line for line in lines if line.startswith("-a")] == out.rules
    assert ar.render_file(out, "") .startswith("## Group dont_audit")


@pytest.mark.parametrize("groups,subjects,message", [
    ([{"name": "x", "key": "virt_x", "rules": [{"dir": "/a", "path": "/b"}]}], {}, "exclusive"),
    ([{"name": "x", "key": "virt_x", "rules": [{"syscalls": ["all"], "path": "/b"}]}], {}, "syscalls and path"),
    ([{"name": "x", "key": "virt_x", "rules": [{"perm": "wa"}]}], {}, "needs path, dir, syscalls"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "etc/x"}]}], {}, "absolute path"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a b"}]}], {}, "white space"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a", "perm": "rwq"}]}], {}, "perm must be"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a", "by": "nobody"}]}], {}, "unknown subject class"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a", "by": "s", "not_by": "s"}]}], {"s": {}}, "exclusive"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a", "action": "sometimes"}]}], {}, "always or never"),
    ([{"name": "x", "key": "virt_x", "rules": [{"obj_type": ["virt_image_t"], "perm": "w"}]}], {}, "selinux_only"),
    ([{"name": "x", "key": "virt_x", "rules": [{"obj_type": ["virt image"], "selinux_only": True}]}], {},
     "not an SELinux type"),
    ([{"name": "x", "key": "virt_x", "rules": [{"syscalls": ["open;rm"]}]}], {}, "not a syscall"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a", "bogus": 1}]}], {}, "unknown keys bogus"),
    ([{"name": "x", "key": "other_x", "rules": [{"path": "/a"}]}], {}, "must start with virt_"),
    ([{"name": "x", "rules": [{"path": "/a"}]}], {}, "key must be"),
    ([{"name": "x", "key": "virt_x", "rules": []}], {}, "has no rules"),
    ([{"name": "X", "key": "virt_x", "rules": [{"path": "/a"}]}], {}, "lower case"),
    ([{"name": "x", "key": "virt_x", "rules": [{"path": "/a"}]}] * 2, {}, "listed twice"),
    ([{"name": "x", "key": "virt_x", "oops": 1, "rules": [{"path": "/a"}]}], {}, "unknown keys oops"),
    ([{"key": "virt_x", "rules": [{"path": "/a"}]}], {}, "needs a name"),
    ([{"name": "x", "key": "virt_x", "rules": [{"syscalls": ["all"], "selinux_only": True,
                                                "fallback": [{"syscalls": ["x"], "selinux_only": True}]}]}], {},
     "fallback cannot"),
    ([], {"Bad": {}}, "subject class name"),
    ([], {"s": {"exes": ["usr/bin/x"]}}, "absolute path"),
    ([], {"s": {"selinux_types": ["qemu"]}}, "not an SELinux type"),
    ([], {"s": {"users": "x"}}, "unknown keys users"),
    ([], [], "subjects must be a dict"),
])
def test_invalid_data_is_refused(groups, subjects, message):
    with pytest.raises(ar.RuleError, match=message):
        ar.render(groups, subjects, debian_host())


# auditctl -l on the Debian 12 test VM (audit 3.0.9) for rules in our spelling.
LISTED = """\
-w /etc/libvirt -p wa -k virt_libvirt_cfg
-w /etc/sasl2/libvirt.conf -p wa -k virt_libvirt_cfg
-a never,exit -S all -F path=/dev/kvm -F perm=rw -F uid=64055
-a never,exit -S all -F dir=/run/libvirt -F perm=wa -F exe=/usr/sbin/libvirtd
-w /run/libvirt -p wa -k virt_runtime_change
-a always,exit -F arch=b64 -S execve,execveat -F uid=64055 -F key=virt_qemu_crossdomain
-a always,exit -F arch=b32 -S execve,execveat -F uid=64055 -F key=virt_qemu_crossdomain
-w /usr/bin/qemu-system-x86_64 -p x -k virt_qemu_exec
-a always,exit -S all -F dir=/var/lib/libvirt/images -F perm=wa -F uid!=64055 -F key=virt_image_change
-a always,exit -S all -F path=/tmp/t/f -F exe=/usr/bin/cat -F key=tcat
"""
OURS = [
    "-a always,exit -F dir=/etc/libvirt/ -F perm=aw -F key=virt_libvirt_cfg",
    "-a always,exit -F path=/etc/sasl2/libvirt.conf -F perm=wa -F key=virt_libvirt_cfg",
    "-a never,exit -F path=/dev/kvm -F perm=rw -F uid=libvirt-qemu",
    "-a never,exit -F dir=/run/libvirt -F perm=wa -F exe=/usr/sbin/libvirtd",
    "-a always,exit -F dir=/run/libvirt -F perm=wa -F key=virt_runtime_change",
    "-a always,exit -F arch=b64 -S execve,execveat -F uid=libvirt-qemu -F key=virt_qemu_crossdomain",
    "-a always,exit -F arch=b32 -S execveat,execve -F uid=libvirt-qemu -F key=virt_qemu_crossdomain",
    "-a always,exit -F path=/usr/bin/qemu-system-x86_64 -F perm=x -F key=virt_qemu_exec",
    "-a always,exit -F dir=/var/lib/libvirt/images -F perm=wa -F uid!=libvirt-qemu -F key=virt_image_change",
]


def test_canonical_matches_auditctl_listing():
    listed = [ak.canonical(line, uid_of) for line in LISTED.splitlines()]
    for line in OURS:
        assert ak.canonical(line, uid_of) in listed, line
    # the 2012 spelling and -k mean the same
    assert ak.canonical("-a exit,always -F path=/usr/bin/qemu-system-x86_64 -F perm=x -k virt_qemu_exec", uid_of) \
        == ak.canonical(OURS[7], uid_of)
    # exe!= is listed as exe= by auditctl 3.0: compared without the operator
    assert ak.canonical("-a always,exit -F path=/tmp/t/f -F exe!=/usr/bin/cat -k tcat", uid_of) == listed[-1]
    # different perm, action or arch are different rules
    assert ak.canonical("-w /etc/libvirt -p w -k virt_libvirt_cfg") != listed[0]
    assert ak.canonical("-a never,exit -F dir=/etc/libvirt -F perm=wa -F key=virt_libvirt_cfg") != listed[0]
    assert ak.canonical(OURS[5].replace("b64", "b32"), uid_of) != ak.canonical(OURS[5], uid_of)
    for junk in ("", "# comment", "-D", "-b 8192", "No rules", "-a always,exit -F ???"):
        assert ak.canonical(junk) is None


def test_compare_loaded():
    keys = ["virt_libvirt_cfg", "virt_runtime_change", "virt_qemu_crossdomain", "virt_qemu_exec",
            "virt_image_change", "virt_tls_cert"]
    res = ak.compare_loaded(OURS, LISTED, keys, uid_of)
    assert res == {"in_sync": True, "missing": [], "unexpected": []}
    # a group switched off in the file but still loaded, and a rule not loaded yet
    fewer = [r for r in OURS if "virt_qemu_exec" not in r] + [
        "-a always,exit -F path=/etc/pki/CA/cacert.pem -F perm=wa -F key=virt_tls_cert"]
    res = ak.compare_loaded(fewer, LISTED, keys, uid_of)
    assert not res["in_sync"]
    assert res["missing"] == ["-a always,exit -F path=/etc/pki/CA/cacert.pem -F perm=wa -F key=virt_tls_cert"]
    assert res["unexpected"] == ["-w /usr/bin/qemu-system-x86_64 -p x -k virt_qemu_exec"]
    # rules of other keys (someone else's) are none of our business
    assert "tcat" not in str(res)
    assert ak.compare_loaded([], "No rules\n", keys)["in_sync"]


def test_parse_status():
    text = ("enabled 1\nfailure 1\npid 1756\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0\n"
            "backlog_wait_time 60000\nbacklog_wait_time_actual 0\nloginuid_immutable 0 unlocked\n")
    st = ak.parse_status(text)
    assert st["enabled"] == 1 and st["backlog_limit"] == 8192 and st["loginuid_immutable"] == "0 unlocked"
    assert ak.parse_status("") == {}


def test_normalize_perm_and_real_uid_lookup():
    assert ar.normalize_perm("axwr") == "rwxa"
    with pytest.raises(ar.RuleError):
        ar.normalize_perm("")
    assert ak._uid_of("root") == "0"
    assert ak._uid_of("1234") == "1234"
    assert ak._uid_of("no-such-user-here") == "no-such-user-here"
    assert ar._user_exists("root") and not ar._user_exists("no-such-user-here")
