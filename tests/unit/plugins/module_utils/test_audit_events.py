"""ausearch --raw parsing: records captured on the Debian 12 test VM (audit 3.0.9, libvirt 9.0)."""
import os
import time

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import audit_events as ae

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "ausearch_raw.txt")
UUID = "5f665c2a-9c1d-444a-91af-e49c69e9f872"


@pytest.fixture(scope="module")
def events():
    with open(FIXTURE) as fh:
        return ae.parse_events(fh.read())


def by_serial(events, serial):
    return [e for e in events if e["serial"] == serial][0]


def test_records_group_into_events_in_time_order(events):
    serials = [e["serial"] for e in events]
    assert serials == [190, 242, 245, 251, 261, 263, 265, 300, 400, 500]
    assert [e["epoch"] for e in events] == sorted(e["epoch"] for e in events)


def test_syscall_event_with_enriched_names_and_paths(events):
    ev = by_serial(events, 190)
    assert ev["kind"] == "syscall"
    assert ev["types"] == ["SYSCALL", "CWD", "PATH", "PROCTITLE"]
    assert ev["key"] == "virt_libvirt_cfg" and ev["keys"] == ["virt_libvirt_cfg"]
    assert ev["syscall"] == "openat" and ev["success"] is True and ev["exit"] == 3
    assert ev["exe"] == "/usr/bin/touch" and ev["comm"] == "touch"
    assert ev["uid"] == "root" and ev["auid"] == "root" and ev["pid"] == 2296
    assert ev["cwd"] == "/root"
    assert ev["proctitle"] == "touch /etc/libvirt/libvirtd.conf"
    assert [p["name"] for p in ev["paths"]] == ["/etc/libvirt/", "/etc/libvirt/libvirtd.conf"]
    assert ev["paths"][1]["owner"] == "root"
    assert ev["time"] == "2026-11-23T10:23:14.100Z"
    assert ev["summary"] == ("virt_libvirt_cfg: touch (/usr/bin/touch as root, auid root) openat "
                             "/etc/libvirt/libvirtd.conf: success")


def test_failed_syscall_of_a_daemon_has_unset_auid(events):
    ev = by_serial(events, 242)
    assert ev["syscall"] == "mkdir" and ev["success"] is False and ev["exit"] == -17
    assert ev["auid"] == "unset" and ev["exe"] == "/usr/sbin/libvirtd"
    assert ev["proctitle"] == "/usr/sbin/libvirtd --timeout 120"
    assert "failed (-17)" in ev["summary"]


def test_virt_control_records(events):
    start = by_serial(events, 263)
    assert start["kind"] == "virt_control" and start["types"] == ["VIRT_CONTROL"]
    assert start["vm"] == "audit-probe" and start["uuid"] == UUID
    assert start["virt"]["op"] == "start" and start["virt"]["reason"] == "booted"
    assert start["virt"]["vm_pid"] == "2443" and start["result"] == "success"
    assert start["exe"] == "/usr/sbin/libvirtd" and start["uid"] == "root" and start["auid"] == "unset"
    assert start["keys"] == [] and start["key"] is None
    assert start["summary"] == "VM audit-probe: start (booted) success"
    stop = by_serial(events, 265)
    assert stop["virt"]["op"] == "stop" and stop["virt"]["reason"] == "destroyed"


def test_virt_resource_and_machine_id(events):
    cg = by_serial(events, 251)
    assert cg["kind"] == "virt_resource"
    assert cg["virt"]["resrc"] == "cgroup" and cg["virt"]["path"] == "/dev/null"
    assert cg["virt"]["cgroup"].startswith("/sys/fs/cgroup/machine.slice/")
    mem = by_serial(events, 261)
    assert mem["virt"]["new_mem"] == "98304" and mem["virt"]["old_mem"] == "0"
    assert mem["summary"] == "VM audit-probe: mem start 98304 success"
    mid = by_serial(events, 245)
    assert mid["kind"] == "virt_machine_id"
    assert mid["virt"]["model"] == "dac" and mid["virt"]["vm_ctx"] == "+64055:+64055"


def test_hex_encoded_multi_key_and_name(events):
    ev = by_serial(events, 300)
    assert ev["keys"] == ["virt_tls_privkey", "virt_tls_cert"]
    assert ev["paths"][0]["name"] == "/etc/pki/libvirt/private/server key.pem"
    assert ev["uid"] == "alice" and ev["success"] is False


def test_apparmor_and_selinux_denials(events):
    aa = by_serial(events, 400)
    assert aa["kind"] == "avc" and aa["uuid"] == UUID
    assert aa["avc"]["apparmor"] == "DENIED" and aa["avc"]["name"] == "/etc/shadow"
    assert aa["summary"].startswith("AppArmor DENIED open /etc/shadow by qemu-system-x86")
    se = by_serial(events, 500)
    assert se["avc"]["avc_result"] == "denied" and se["avc"]["avc_perms"] == ["read"]
    assert se["avc"]["scontext"] == "system_u:system_r:svirt_t:s0:c10,c20"
    assert "SELinux denied {read} shadow by qemu-kvm" in se["summary"]


def test_sessions_pair_start_and_stop(events):
    sess = ae.sessions(events)
    assert sess == [{
        "vm": "audit-probe", "uuid": UUID, "start": "2026-11-23T10:24:37.884Z", "start_reason": "booted",
        "start_result": "success", "vm_pid": 2443, "stop": "2026-11-23T10:24:45.648Z",
        "stop_reason": "destroyed", "user": "root"}]


def test_session_without_start_and_running_session():
    text = ("type=VIRT_CONTROL msg=audit(100.0:1): pid=1 uid=0 auid=1000 ses=1 msg='virt=qemu op=stop "
            "reason=shutdown vm=\"a\" uuid=u1 vm-pid=0 exe=\"/usr/sbin/libvirtd\" res=success'\n"
            "type=VIRT_CONTROL msg=audit(200.0:2): pid=1 uid=0 auid=1000 ses=1 msg='virt=qemu op=start "
            "reason=booted vm=\"b\" uuid=u2 vm-pid=9 exe=\"/usr/sbin/libvirtd\" res=success'\n")
    sess = ae.sessions(ae.parse_events(text))
    assert sess[0]["start"] is None and sess[0]["stop_reason"] == "shutdown"
    assert sess[1]["vm"] == "b" and sess[1]["stop"] is None and sess[1]["user"] == "1000"


def test_merge_filter_and_counts(events):
    merged = ae.merge_events(events, events[:3])
    assert len(merged) == len(events)
    only_vm = ae.filter_events(merged, vm="audit-probe")
    assert {e["serial"] for e in only_vm} == {245, 251, 261, 263, 265}
    by_uuid = ae.filter_events(merged, vm=UUID)
    assert 400 in {e["serial"] for e in by_uuid}
    window = ae.filter_events(merged, since=1795429460, until=1795429480)
    assert [e["serial"] for e in window] == [251, 261, 263]
    keyed = ae.filter_events(merged, key_prefixes=["virt_tls"], types=["AVC"])
    assert [e["serial"] for e in keyed] == [300, 400, 500]
    counts = ae.summarize(merged)
    assert counts["total"] == 10
    assert counts["by_key"] == {"virt_libvirt_cfg": 2, "virt_tls_privkey": 1, "virt_tls_cert": 1}
    assert counts["by_type"]["VIRT_CONTROL"] == 2 and counts["by_type"]["AVC"] == 2


def test_noise_and_unknown_lines_are_ignored():
    assert ae.parse_events("<no matches>\n----\ngarbage\n") == []
    ev = ae.parse_events("node=h1 type=USER_LOGIN msg=audit(5.5:7): pid=1 uid=0 msg='op=login res=failed'\n")[0]
    assert ev["node"] == "h1" and ev["kind"] == "user_login" and ev["other"][0]["fields"]["op"] == "login"
    assert ev["summary"] == "user_login event"


@pytest.mark.parametrize("value,expected", [
    ("boot", (None, "boot")),
    ("today", (None, "today")),
    ("now", (1000000.0, None)),
    ("15m", (1000000 - 900, None)),
    ("2h", (1000000 - 7200, None)),
    ("-1d", (1000000 - 86400, None)),
    ("1795429477", (1795429477.0, None)),
    ("2026-11-23T10:24:37Z", (1795429477, None)),
    ("2026-11-23 11:24:37+01:00", (1795429477, None)),
    ("2026-11-23T10:24:37-0130", (1795429477 + 5400, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_parse_when(value, expected):
    assert ae.parse_when(value, now=1000000.0) == expected


def test_parse_when_local_time_and_errors(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert ae.parse_when("2026-11-23 10:24")[0] == 1795429440
        assert ae.parse_when("2026-11-23")[0] == 1795392000
        assert ae.ausearch_time_args(1795429477.9, None) == ["11/23/26", "10:24:37"]
        assert ae.ausearch_time_args(None, "boot") == ["boot"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    with pytest.raises(ae.ReportError, match="cannot understand time"):
        ae.parse_when("last tuesday")
