"""audit_rules and audit_report modules: file handling, check mode, diff, and the tools they run."""
import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.modules import audit_report, audit_rules

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "module_utils", "fixtures", "ausearch_raw.txt")

SUBJECTS = {"daemons": {"exes": ["/bin/sh"]}, "root_user": {"user": "root"}}
GROUPS = [
    {"name": "cfg", "key": "virt_libvirt_cfg", "rules": [{"dir": "/etc", "perm": "wa", "not_by": "daemons"}]},
    {"name": "img", "key": "virt_image_change", "rules": [{"dir": "/nonexistent/images", "perm": "wa"}]},
    {"name": "exec", "key": "virt_qemu_exec", "rules": [{"path": "/bin/true", "perm": "x", "by": "root_user"}]},
]


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def fake_tool(tmp_path, monkeypatch, name, script):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    return tool


def test_rules_file_written_once_with_mode_diff_and_backup(tmp_path, capsys):
    dest = tmp_path / "70-virt.rules"
    args = {"dest": str(dest), "groups": GROUPS, "subjects": SUBJECTS, "selinux": "disabled",
            "_ansible_diff": True}
    res = run(audit_rules, args, capsys)
    assert res["changed"] and res["selinux"] is False
    text = dest.read_text()
    assert "-a never,exit -F dir=/etc -F perm=wa -F exe=/bin/sh\n" in text
    assert "-a always,exit -F dir=/etc -F perm=wa -F key=virt_libvirt_cfg\n" in text
    assert "-a always,exit -F path=/bin/true -F perm=x -F uid=root -F key=virt_qemu_exec\n" in text
    assert "## skipped: dir=/nonexistent/images perm=wa: directory /nonexistent/images does not exist" in text
    assert res["skipped"][0]["group"] == "img"
    assert res["keys"] == ["virt_libvirt_cfg", "virt_qemu_exec"]
    assert res["directories"] == ["/bin", "/etc"]
    assert res["diff"]["before"] == "" and res["diff"]["after"] == text
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640
    again = run(audit_rules, dict(args, backup=True), capsys)
    assert not again["changed"] and "backup_file" not in again
    off = run(audit_rules, dict(args, backup=True, switches={"exec": False}), capsys)
    assert off["changed"] and os.path.exists(off["backup_file"])
    assert "virt_qemu_exec" not in dest.read_text() and "virt_qemu_exec" in off["diff"]["before"]


def test_check_mode_writes_nothing_and_mode_drift_is_fixed(tmp_path, capsys):
    dest = tmp_path / "70-virt.rules"
    args = {"dest": str(dest), "groups": GROUPS, "subjects": SUBJECTS, "selinux": "disabled"}
    res = run(audit_rules, dict(args, _ansible_check_mode=True), capsys)
    assert res["changed"] and not dest.exists()
    run(audit_rules, args, capsys)
    os.chmod(dest, 0o644)
    res = run(audit_rules, args, capsys)
    assert res["changed"] and stat.S_IMODE(os.stat(dest).st_mode) == 0o640


def test_bad_data_fails_before_writing(tmp_path, capsys):
    dest = tmp_path / "70-virt.rules"
    res = run(audit_rules, {"dest": str(dest), "groups": GROUPS, "subjects": {}}, capsys)
    assert res["failed"] and "unknown subject class" in res["msg"] and not dest.exists()
    res = run(audit_rules, {"dest": str(dest), "groups": GROUPS, "subjects": SUBJECTS,
                            "switches": {"nope": False}}, capsys)
    assert res["failed"] and "unknown groups: nope" in res["msg"]
    res = run(audit_rules, {"dest": str(tmp_path / "no" / "x.rules"), "groups": GROUPS, "subjects": SUBJECTS},
              capsys)
    assert res["failed"] and "is auditd installed" in res["msg"]


def test_compare_loaded_runs_auditctl(tmp_path, monkeypatch, capsys):
    fake_tool(tmp_path, monkeypatch, "auditctl", """\
[ "$1" = -l ] || exit 9
echo '-a never,exit -S all -F dir=/etc -F perm=wa -F exe=/bin/sh'
echo '-w /etc -p wa -k virt_libvirt_cfg'
echo '-w /usr/bin/qemu-system-x86_64 -p x -k virt_qemu_exec'
""")
    dest = tmp_path / "70-virt.rules"
    args = {"dest": str(dest), "groups": GROUPS, "subjects": SUBJECTS, "selinux": "disabled",
            "compare_loaded": True, "switches": {"exec": False}}
    res = run(audit_rules, args, capsys)
    assert res["loaded"] == {"in_sync": False, "missing": [],
                             "unexpected": ["-w /usr/bin/qemu-system-x86_64 -p x -k virt_qemu_exec"]}
    fake_tool(tmp_path, monkeypatch, "auditctl", "echo 'You must be root' >&2; exit 1\n")
    res = run(audit_rules, args, capsys)
    assert res["failed"] and "auditctl -l failed: You must be root" in res["msg"]


@pytest.fixture
def ausearch(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    fake_tool(tmp_path, monkeypatch, "ausearch", """\
echo "$@" >> %s
case "$*" in
  *"-k virt_"*) grep -v -e VIRT_ -e AVC %s ;;
  *"-m "*) grep -e VIRT_ -e AVC %s ;;
esac
""" % (log, FIXTURE, FIXTURE))
    return log


def test_report_returns_events_sessions_and_counts(ausearch, capsys):
    res = run(audit_report, {"since": "2026-11-23T10:00:00Z", "until": "2026-11-23T11:00:00Z"}, capsys)
    assert not res["changed"]
    calls = ausearch.read_text().splitlines()
    assert len(calls) == 2
    assert calls[0].startswith("--raw --input-logs -ts ") and calls[0].endswith("-k virt_")
    assert calls[1].endswith("-m VIRT_CONTROL,VIRT_RESOURCE,VIRT_MACHINE_ID,AVC")
    assert res["counts"]["total"] == 10
    assert res["counts"]["by_key"]["virt_libvirt_cfg"] == 2
    assert [s["vm"] for s in res["sessions"]] == ["audit-probe"]
    assert res["sessions"][0]["stop_reason"] == "destroyed"
    assert res["window"] == {"since": "2026-11-23T10:00:00.000Z", "until": "2026-11-23T11:00:00.000Z"}
    kinds = [e["kind"] for e in res["events"]]
    assert kinds.count("virt_control") == 2 and kinds.count("avc") == 2


def test_report_window_vm_filter_and_truncation(ausearch, capsys):
    res = run(audit_report, {"since": "boot", "vm": "audit-probe", "max_events": 2}, capsys)
    assert res["truncated"] and [e["serial"] for e in res["events"]] == [263, 265]
    assert res["counts"]["total"] == 5 and res["window"] == {"since": "boot", "until": None}
    assert "-ts boot" in ausearch.read_text()
    res = run(audit_report, {"since": "2026-11-23T10:24:30Z", "until": "2026-11-23T10:24:40Z",
                             "keys": [], "message_types": ["VIRT_CONTROL"]}, capsys)
    assert [e["serial"] for e in res["events"]] == [263]
    assert res["sessions"][0]["stop"] is None


def test_report_no_matches_and_errors(tmp_path, monkeypatch, capsys):
    fake_tool(tmp_path, monkeypatch, "ausearch", "echo '<no matches>' >&2; exit 1\n")
    res = run(audit_report, {}, capsys)
    assert res["events"] == [] and res["counts"]["total"] == 0 and not res["truncated"]
    # with --raw, Debian 12's ausearch 3.0.9 says nothing at all when nothing matches
    fake_tool(tmp_path, monkeypatch, "ausearch", "exit 1\n")
    res = run(audit_report, {}, capsys)
    assert not res.get("failed") and res["events"] == [] and res["counts"]["total"] == 0
    fake_tool(tmp_path, monkeypatch, "ausearch", "echo 'Invalid start date' >&2; exit 1\n")
    res = run(audit_report, {}, capsys)
    assert res["failed"] and "Invalid start date" in res["msg"]
    res = run(audit_report, {"since": "whenever"}, capsys)
    assert res["failed"] and "cannot understand time" in res["msg"]
    res = run(audit_report, {"since": "1h", "until": "2h"}, capsys)
    assert res["failed"] and "is before since" in res["msg"]
    res = run(audit_report, {"message_types": ["VIRT_CONTROL; rm"]}, capsys)
    assert res["failed"] and "not an audit record type" in res["msg"]
    res = run(audit_report, {"max_events": 0}, capsys)
    assert res["failed"] and "max_events" in res["msg"]
