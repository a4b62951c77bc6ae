"""playbooks/posture.yml after site.yml (Debian 13, libvirt 11): every
control site.yml puts in force passes on both hypervisors, measured on the
live hosts by secvirt.kvm.posture (an actual TLS handshake without a client
certificate among them); the same module on a VM that site.yml did not make
a hypervisor (the station: plain Debian 13 with the libvirt client) reports
failures and the gate fails the run naming them. The four report files are
written and parsed here."""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

KVM = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_host("kvmhost")
NOCOLOR = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
# Controls site.yml with the demo inventory does not put in force, and why
# (anything else must pass or, with nothing to check, be not_applicable).
NOT_BY_SITE_YML = {
    # the audit role writes audit=1 to a GRUB drop-in for the next boot; the
    # harness boots its VMs' kernels directly (qemu -kernel), so it is never
    # on their command line: the control rightly fails (its evidence says so)
    "SVK-AUD-002": ("fail", "/proc/cmdline has no audit= parameter"),
    # the audit role's default is audit_level 1 (libvirt keeps running when
    # host auditing stops); 2 only on request (audit_libvirt_audit_level)
    "SVK-AUD-003": ("warn", "audit_level = 1"),
    # the demo inventory opens a LUKS volume but keeps the image directory
    # where it is: no guest disk is on dm-crypt
    "SVK-STO-002": ("warn", "not dm-crypt"),
}


def _report(tmp_path, hosts, more=None):
    out = tmp_path / "report"
    run = ansible_cli.run_playbook("posture.yml", env=NOCOLOR,
                                   extra_vars=dict({"posture_hosts": hosts, "posture_output_dir": str(out)}, **(more or {})))
    results = json.loads((out / "posture.json").read_text())
    return run, results, out


def test_after_site_yml_every_control_it_configures_passes_on_both_hypervisors(tmp_path):
    """With a guest running on kvmhost (a disk of its own, no NIC), so that
    the per-guest controls are measured on a live QEMU, not skipped."""
    guest = "posture1"
    nested_guests.define(KVM, guest, disk=True)
    try:
        KVM.check_output(nested_guests.VIRSH + " start %s", guest)
        # the gate: any failed control of high severity, and these two by name
        gate = {"posture_fail_on_severity": "high", "posture_required_controls": ["SVK-TLS-002", "SVK-MIG-001"]}
        run, results, out = _report(tmp_path, "kvm_hosts", gate)
    finally:
        nested_guests.remove(KVM, guest)
    assert sorted(results) == ["kvmhost", "kvmpeer"]
    for host, result in results.items():
        controls = {c["id"]: c for c in result["controls"]}
        assert len(controls) >= 20, controls
        bad = {i: (c["status"], c["evidence"]) for i, c in controls.items()
               if c["status"] not in ("pass", "not_applicable") and i not in NOT_BY_SITE_YML}
        assert not bad, (host, bad)
        for control, (status, why) in NOT_BY_SITE_YML.items():
            assert controls[control]["status"] == status and why in " ".join(controls[control]["evidence"]), controls[control]
        # the refusal was measured by a handshake, not read from a file
        assert controls["SVK-TLS-002"]["status"] == "pass", controls["SVK-TLS-002"]
    # the running guest's QEMU was looked at: confined, non-root, seccomp, explicit disk format
    for control in ("SVK-CNF-002", "SVK-CNF-003", "SVK-IMG-001"):
        measured = next(c for c in results["kvmhost"]["controls"] if c["id"] == control)
        assert measured["status"] == "pass" and guest in " ".join(measured["evidence"]), measured
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # JUnit: one suite per host, a case per control, failures only where the posture says fail
    suites = ET.parse(str(out / "posture.xml")).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == ["kvmhost", "kvmpeer"]
    for suite in suites:
        controls = results[suite.get("name")]["controls"]
        assert len(suite.findall("testcase")) == len(controls)
        failed = sorted(c["id"] for c in controls if c["status"] == "fail")
        assert failed == sorted(i for i, (status, _why) in NOT_BY_SITE_YML.items() if status == "fail")
        assert int(suite.get("failures")) == len(failed) == len(suite.findall("testcase/failure"))
    html = (out / "posture.html").read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", html) and "SVK-TLS-002" in html
    assert "SVK-TLS-002" in (out / "posture.md").read_text()
    assert "HTML report: %s/posture.html" % out in run.stdout


def test_on_a_vm_that_is_not_a_hardened_hypervisor_the_controls_fail_and_the_gate_says_which(tmp_path):
    run, results, out = _report(tmp_path, "management_stations", {"posture_fail_on_severity": "high"})
    failed = [c for c in results["station"]["controls"] if c["status"] == "fail"]
    ids = {c["id"] for c in failed}
    # no libvirtd listening for TLS, no qemu.conf TLS keys, no audit rules
    assert {"SVK-TLS-001", "SVK-CON-001", "SVK-MIG-001", "SVK-AUD-001"} <= ids, sorted(ids)
    assert all(c["evidence"] for c in failed), failed
    assert run.returncode != 0
    flat = " ".join((run.stdout + run.stderr).split())
    assert "The posture gate is broken by" in flat and "station: SVK-TLS-001 (high) fail" in flat, flat[-3000:]
    suite = ET.parse(str(out / "posture.xml")).getroot().find("testsuite")
    assert int(suite.get("failures")) == len(failed)
