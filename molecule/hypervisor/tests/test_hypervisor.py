"""secvirt.kvm.hypervisor on a Debian 12 KVM host, checked on live processes.

Two nested TCG guests (no OS: SeaBIOS finds an empty disk and halts) are
started after converge; their QEMU processes must run as the non-root QEMU
user, each under its own AppArmor profile in enforce mode, with a seccomp
filter, no effective capabilities and a mount namespace of their own. The
refusals run the role again with one bad setting and check the message and
that nothing changed; the reboot and the rollback each happen on a
copy-on-write clone of the converged host. The check-mode run is part of
converge.yml, on the blank host.
"""
import json
import os
import re
import sys
import time

import pytest

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
HOST = RUNNER.get_host("kvmhost")
VIRSH = nested_guests.VIRSH
IMAGES = nested_guests.IMAGES
# what the role manages, compared byte for byte around every refusal
MANAGED = ["/etc/libvirt/qemu.conf", "/etc/sysctl.d/60-secvirt-hypervisor.conf",
           "/etc/tmpfiles.d/secvirt-ksm.conf", "/etc/modprobe.d/secvirt-kvm-nested.conf"]
SYSCTLS = {"vm.unprivileged_userfaultfd": "0", "kernel.unprivileged_bpf_disabled": "1", "kernel.kptr_restrict": "2",
           "kernel.dmesg_restrict": "1", "kernel.yama.ptrace_scope": "2"}
FIXTURE_UNIT = "secvirt-fixture-listener.service"
FIXTURE_VARS = {"hypervisor_masked_services_extra": [FIXTURE_UNIT]}   # as converge.yml


def digests(host):
    return host.check_output("sha256sum " + " ".join(MANAGED))


def run_role(role_vars=None, inventory=None):
    """The role alone, as an operator's re-run, with ``role_vars``: (rc, stdout + stderr)."""
    proc = ansible_cli.run_role("hypervisor", "kvm_hosts", role_vars=dict(role_vars or {}, **FIXTURE_VARS),
                                inventory=inventory, env={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                                                          "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml"})
    return proc.returncode, proc.stdout + proc.stderr


def recap_changed(output):
    match = re.search(r"kvmhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output)
    assert match, output[-4000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def guests():
    """Two guests started after converge; stopped and removed afterwards."""
    names = ("guesta", "guestb")
    try:
        for name in names:
            nested_guests.remove(HOST, name)     # nothing left from an interrupted run
            nested_guests.define(HOST, name)
            HOST.check_output(VIRSH + " start %s", name)
        yield {name: nested_guests.qemu_process(HOST, name) for name in names}
    finally:
        for name in names:
            nested_guests.remove(HOST, name)


# ---------------------------------------------------------------- libvirt

def test_libvirt_runs_under_apparmor_and_offers_the_apparmor_driver():
    caps = HOST.check_output(VIRSH + " capabilities")
    assert re.search(r"<secmodel>\s*<model>apparmor</model>", caps), caps
    profiles = HOST.check_output("cat /sys/kernel/security/apparmor/profiles").splitlines()
    assert "libvirtd (enforce)" in profiles and "virt-aa-helper (enforce)" in profiles, profiles
    pid = HOST.check_output("systemctl show -P MainPID libvirtd.service").strip()
    assert HOST.check_output("cat /proc/%s/attr/current", pid).strip() == "libvirtd (enforce)"
    # loaded again at every boot
    assert HOST.check_output("systemctl is-enabled apparmor.service").strip() == "enabled"


def test_each_guest_qemu_runs_confined(guests):
    nested_guests.assert_confined(HOST, guests)


def test_a_guest_profile_denies_the_other_guests_image(guests):
    profile_a = "libvirt-" + guests["guesta"]["uuid"]
    own = HOST.run("aa-exec -p %s -- head -c 512 %s/guesta.img | wc -c", profile_a, IMAGES)
    assert own.rc == 0 and own.stdout.strip() == "512", own          # positive control: its own disk
    other = HOST.run("aa-exec -p %s -- head -c 512 %s/guestb.img", profile_a, IMAGES)
    assert other.rc != 0 and "Permission denied" in other.stderr, other
    # and AppArmor says it was the profile (root's DAC would have allowed it)
    log = HOST.check_output("grep -h 'apparmor=\"DENIED\"' /var/log/audit/audit.log 2>/dev/null || journalctl -k -q -o cat")
    assert re.search(r'apparmor="DENIED" operation="open" (class="file" )?profile="%s" name="%s/guestb.img"'
                     % (re.escape(profile_a), IMAGES), log), log[-2000:]


def test_an_unconfined_guest_is_refused_and_a_confined_one_starts():
    nested_guests.define(HOST, "unconfined", disk=False, seclabel="<seclabel type='none'/>")
    nested_guests.define(HOST, "confined", disk=False)
    try:
        refused = HOST.run(VIRSH + " start unconfined")
        assert refused.rc != 0 and "Unconfined guests are not allowed on this host" in refused.stderr, refused
        started = HOST.run(VIRSH + " start confined")   # positive control, same host, same moment
        assert started.rc == 0, started
        assert nested_guests.qemu_process(HOST, "confined")["label"].startswith("libvirt-")
    finally:
        nested_guests.remove(HOST, "unconfined")
        nested_guests.remove(HOST, "confined")


# ---------------------------------------------------------------- host

def test_sysctls_ksm_and_nested_settings_in_force():
    for key, value in SYSCTLS.items():
        assert HOST.check_output("cat /proc/sys/%s", key.replace(".", "/")).strip() == value, key
    assert HOST.check_output("cat /sys/kernel/mm/ksm/run").strip() == "0"
    nested = HOST.file("/etc/modprobe.d/secvirt-kvm-nested.conf").content_string
    assert "options kvm_intel nested=0" in nested and "options kvm_amd nested=0" in nested
    # qemu64, the test VMs' TCG CPU, offers SVM: kvm_amd is loaded, and keeps
    # the nested setting it was loaded with until it is reloaded (no guest
    # running) or the host reboots: checked after a reboot on a clone below
    assert HOST.file("/sys/module/kvm_amd/parameters/nested").exists


def test_the_fixture_listener_is_masked_and_closed_while_ssh_still_listens():
    assert HOST.run("systemctl is-enabled %s", FIXTURE_UNIT).stdout.strip() == "masked"
    assert HOST.run("systemctl is-active %s", FIXTURE_UNIT).stdout.strip() == "inactive"
    assert HOST.run("nc -z -w 2 127.0.0.1 22").rc == 0            # positive control
    closed = HOST.run("nc -z -w 2 127.0.0.1 5999")
    assert closed.rc != 0, closed


# ---------------------------------------------------------------- refusals

REFUSALS = [
    ({"hypervisor_security_driver": "selinux"},
     "SELinux is not enabled"),
    ({"hypervisor_sysctls_override": {"net.ipv4.ip_forward": 0}},
     "hypervisor_sysctls net.ipv4.ip_forward, but libvirt network(s) default forward guest traffic"),
    ({"hypervisor_sysctls_override": {"kernel.no_such_knob": 1}},
     "this kernel has no kernel.no_such_knob"),
    ({"hypervisor_daemon_mode": "modular"},
     "needs the modular daemons (virtqemud.service)"),
]


@pytest.fixture(scope="module", name="refused")
def fixture_refused():
    """Every refusal input in one ansible-playbook run (ansible_cli.run_role_cases:
    each case's failure rescued so that the next one runs), with the managed
    files' digests before and after. That a refusal fails an operator's run
    (rc != 0) is proven next to it by the baseline-file test's own run."""
    before = digests(HOST)
    outcomes = ansible_cli.run_role_cases("hypervisor", "kvm_hosts", "kvmhost",
                                          [dict(role_vars, **FIXTURE_VARS) for role_vars, _reason in REFUSALS])
    return {"before": before, "after": digests(HOST), "outcomes": outcomes}


@pytest.mark.parametrize("index", range(len(REFUSALS)), ids=[r[1][:30] for r in REFUSALS])
def test_host_dependent_refusals_change_nothing(refused, index):
    reason = REFUSALS[index][1]
    outcome = refused["outcomes"][index]
    assert outcome["failed"] and reason in outcome["message"] and "Nothing was changed" in outcome["message"], outcome
    assert outcome["changed"] == [], outcome
    assert refused["after"] == refused["before"]


def test_a_baseline_file_that_turns_forwarding_off_is_refused_next_to_a_passing_control():
    before = digests(HOST)
    rc, out = run_role()                                  # positive control: nothing to do
    assert rc == 0 and recap_changed(out) == 0, out[-3000:]
    HOST.check_output("printf 'net.ipv4.ip_forward = 0\\n' > /etc/sysctl.d/99-generic-baseline.conf")
    try:
        rc, out = run_role()
        flat = " ".join(out.split())
        assert rc != 0, out[-3000:]
        assert "/etc/sysctl.d/99-generic-baseline.conf (net.ipv4.ip_forward = 0)" in flat, out[-3000:]
        assert "libvirt network(s) default forward guest traffic" in flat
    finally:
        HOST.run("rm -f /etc/sysctl.d/99-generic-baseline.conf")
    assert digests(HOST) == before


# ---------------------------------------------------------------- clones

def test_a_qemu_conf_libvirt_rejects_is_rolled_back():
    """A QEMU user that does not exist: libvirtd refuses to start with it.
    The role must put the previous qemu.conf back and bring libvirt back."""
    with clones.cloned("rollback") as clone:
        host = clone.host("kvmhost")
        before = host.check_output("sha256sum /etc/libvirt/qemu.conf")
        rc, out = run_role({"hypervisor_qemu_user": "no-such-qemu-user"}, inventory=clone.inventory)
        flat = " ".join(out.split())
        assert rc != 0 and "did not serve with the new qemu.conf" in flat and "was restored" in flat, out[-4000:]
        assert "no-such-qemu-user" in flat    # the journal's reason is in the message
        assert host.check_output("sha256sum /etc/libvirt/qemu.conf") == before
        assert host.run(VIRSH + " uri").rc == 0
        assert host.check_output("systemctl is-active libvirtd.service").strip() == "active"


def test_check_mode_predicted_the_first_run():
    """converge.yml ran the role with --check on the blank host first: it
    changed nothing (asserted there, from a fingerprint of the files,
    services and sysctls) and predicted, task by task, the changes of the
    real run that followed (asserted there too); this is the record of that
    first converge."""
    record = json.loads(HOST.file("/root/secvirt-check-prediction.json").content_string)
    assert record["predicted"] == record["changed"], record
    predicted = record["predicted"]
    assert predicted["packages"] and predicted["qemu_conf"] and predicted["sysctl_file"], record
    assert predicted["ksm_file"] and predicted["nested_file"], record
    assert predicted["masked"] == [FIXTURE_UNIT], record


def test_a_reboot_keeps_the_mask_sysctls_ksm_nested_and_profiles():
    """On a clone: after a reboot the service stays masked, the sysctls,
    KSM and libvirt's profiles come back, kvm_amd loads with nested off,
    and a new guest starts confined."""
    with clones.cloned("reboot") as clone:
        host = clone.host("kvmhost")
        # Running guests would hold the reboot up: libvirt-guests shuts each
        # one down and waits up to 300 s for a guest without an OS (measured:
        # a 15-minute test). The clone may carry the guests fixture's guests.
        host.check_output("for g in $(%s list --name); do %s destroy $g; done" % (VIRSH, VIRSH))
        boot_id = host.check_output("cat /proc/sys/kernel/random/boot_id")
        started = time.time()
        ansible_cli.reboot("kvmhost", inventory=clone.inventory)
        print("reboot: %.0fs" % (time.time() - started))
        assert host.check_output("cat /proc/sys/kernel/random/boot_id") != boot_id
        assert host.run("systemctl is-enabled %s", FIXTURE_UNIT).stdout.strip() == "masked"
        assert host.run("nc -z -w 2 127.0.0.1 5999").rc != 0 and host.run("nc -z -w 2 127.0.0.1 22").rc == 0
        for key, value in SYSCTLS.items():
            assert host.check_output("cat /proc/sys/%s", key.replace(".", "/")).strip() == value, key
        assert host.check_output("cat /sys/kernel/mm/ksm/run").strip() == "0"
        assert host.check_output("cat /sys/module/kvm_amd/parameters/nested").strip() in ("0", "N")
        profiles = host.check_output("cat /sys/kernel/security/apparmor/profiles").splitlines()
        assert "libvirtd (enforce)" in profiles, profiles
        nested_guests.define(host, "afterboot", disk=False)
        host.check_output(VIRSH + " start afterboot")
        proc = nested_guests.qemu_process(host, "afterboot")
        assert proc["label"] == "libvirt-%s (enforce)" % proc["uuid"] and proc["seccomp"] == "2", proc
