"""posture_report: JUnit, Markdown, HTML reports and the gate from the results of secvirt.kvm.posture on two hosts."""
import copy
import re
import xml.etree.ElementTree as ET

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.secvirt.kvm.plugins.filter.posture_report import (
    FilterModule, posture_gate, posture_html, posture_junit, posture_markdown)

SCRIPT = '<script>alert("x")</script>'


def _control(cid, status, severity, area, title, evidence, references=()):
    return {"id": cid, "title": title, "area": area, "severity": severity, "status": status,
            "evidence": list(evidence), "references": list(references)}


def _result(controls):
    summary = dict((s, sum(1 for c in controls if c["status"] == s)) for s in ("pass", "fail", "warn", "not_applicable"))
    return {"changed": False, "failed": False, "controls": controls, "summary": summary}


KVMHOST = [
    _control("SVK-TLS-001", "pass", "high", "tls", "libvirtd listens with TLS only",
             ["/etc/libvirt/libvirtd.conf: listen_tls = 1"], ["https://libvirt.org/remote.html"]),
    _control("SVK-TLS-002", "fail", "high", "tls", "QEMU VNC uses TLS",
             ["/etc/libvirt/qemu.conf: vnc_tls = 0", "second line"]),
    _control("SVK-CON-001", "warn", "medium", "consoles", "VNC consoles listen on a management address",
             ["guest web1 listens on 0.0.0.0 | all interfaces"]),
    _control("SVK-STO-001", "fail", "low", "storage", "Guest images are not world-readable",
             ["/var/lib/libvirt/images/x.qcow2 is 0644 " + SCRIPT + " & 'quoted'"]),
    _control("SVK-MIG-001", "not_applicable", "medium", "migration", "Migration uses TLS",
             ["no migration peers configured"]),
]
KVMPEER = [
    _control("SVK-TLS-001", "pass", "high", "tls", "libvirtd listens with TLS only", ["listen_tls = 1"]),
    _control("SVK-AUD-001", "fail", "medium", "audit", "auditd loads the virt rules", ["auditctl -l: no virt_ rules"]),
    _control("SVK-NET-001", "not_applicable", "high", "network", "Guest bridges filter spoofed traffic", []),
]
RESULTS = {"kvmhost": _result(KVMHOST), "kvmpeer": _result(KVMPEER)}
ALL_IDS = sorted(set(c["id"] for c in KVMHOST + KVMPEER))


def test_the_filters_are_registered():
    filters = FilterModule().filters()
    assert filters == {"posture_junit": posture_junit, "posture_markdown": posture_markdown,
                       "posture_html": posture_html, "posture_gate": posture_gate}


# --- JUnit -------------------------------------------------------------------

def test_junit_parses_with_one_suite_per_host_and_the_right_counts():
    root = ET.fromstring(posture_junit(RESULTS).encode("utf-8"))
    assert root.tag == "testsuites"
    suites = dict((s.get("name"), s) for s in root.findall("testsuite"))
    assert sorted(suites) == ["kvmhost", "kvmpeer"]
    host, peer = suites["kvmhost"], suites["kvmpeer"]
    assert (host.get("tests"), host.get("failures"), host.get("errors"), host.get("skipped")) == ("5", "2", "0", "1")
    assert (peer.get("tests"), peer.get("failures"), peer.get("errors"), peer.get("skipped")) == ("3", "1", "0", "1")
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "3", "2")
    # the counts agree with the elements
    for suite in (host, peer):
        cases = suite.findall("testcase")
        assert len(cases) == int(suite.get("tests"))
        assert len([c for c in cases if c.find("failure") is not None]) == int(suite.get("failures"))
        assert len([c for c in cases if c.find("skipped") is not None]) == int(suite.get("skipped"))


def test_junit_testcases_name_host_area_id_and_title_and_carry_the_evidence():
    root = ET.fromstring(posture_junit(RESULTS).encode("utf-8"))
    cases = dict((c.get("name"), c) for c in root.find("testsuite[@name='kvmhost']").findall("testcase"))
    tls2 = cases["SVK-TLS-002 QEMU VNC uses TLS"]
    assert tls2.get("classname") == "kvmhost.tls"
    failure = tls2.find("failure")
    assert failure.get("message") == "SVK-TLS-002 (high): /etc/libvirt/qemu.conf: vnc_tls = 0"
    assert failure.get("type") == "high"
    assert "second line" in failure.text
    # the <script> in the evidence survives the round trip as text, escaped in the document
    storage = cases["SVK-STO-001 Guest images are not world-readable"].find("failure")
    assert SCRIPT in storage.get("message") and SCRIPT in storage.text
    assert SCRIPT not in posture_junit(RESULTS)
    # warn passes with the evidence in system-out; n/a is skipped; pass has neither failure nor skipped
    warn = cases["SVK-CON-001 VNC consoles listen on a management address"]
    assert warn.find("failure") is None and warn.find("skipped") is None
    assert warn.find("system-out").text.startswith("WARN (medium): guest web1 listens")
    assert cases["SVK-MIG-001 Migration uses TLS"].find("skipped") is not None
    passed = cases["SVK-TLS-001 libvirtd listens with TLS only"]
    assert passed.find("failure") is None and passed.find("skipped") is None
    assert "https://libvirt.org/remote.html" in passed.find("system-out").text


def test_junit_stays_valid_xml_with_control_characters_and_reports_a_host_without_result():
    results = copy.deepcopy(RESULTS)
    results["kvmhost"]["controls"][1]["evidence"] = ["bad \x00\x1b[0m byte", "\"quotes\" & <tags>"]
    results["kvmdown"] = {"unreachable": True, "msg": "Failed to connect to the host via ssh", "changed": False}
    text = posture_junit(results)
    root = ET.fromstring(text.encode("utf-8"))
    assert "\\x00" in text and "\\x1b" in text
    down = root.find("testsuite[@name='kvmdown']")
    assert (down.get("tests"), down.get("errors")) == ("1", "1")
    assert "unreachable" in down.find("testcase/error").get("message")
    assert root.get("errors") == "1"


# --- Markdown ----------------------------------------------------------------

def _tables(text):
    """{host: [row cells]} of the Markdown tables, each under its '## host' heading."""
    tables, host = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            host = line[3:]
        elif line.startswith("| ") and not line.startswith("| ID ") and host:
            tables.setdefault(host, []).append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return tables


def test_markdown_has_a_summary_and_a_table_per_host_fails_first():
    text = posture_markdown(RESULTS)
    assert "**kvmhost**: 2 fail, 1 warn, 1 pass, 1 not applicable (5 controls)" in text
    assert "**kvmpeer**: 1 fail, 0 warn, 1 pass, 1 not applicable (3 controls)" in text
    assert text.count("| ID | Status | Severity | Title | Evidence |") == 2
    tables = _tables(text)
    assert [row[0] for row in tables["kvmhost"]] == ["SVK-TLS-002", "SVK-STO-001", "SVK-CON-001", "SVK-TLS-001", "SVK-MIG-001"]
    assert [row[1] for row in tables["kvmhost"]] == ["**FAIL**", "**FAIL**", "WARN", "PASS", "N/A"]
    assert [row[0] for row in tables["kvmpeer"]] == ["SVK-AUD-001", "SVK-TLS-001", "SVK-NET-001"]
    assert all(len(row) == 5 for rows in tables.values() for row in rows)
    assert tables["kvmhost"][0][4] == "`/etc/libvirt/qemu.conf: vnc_tls = 0` (+1 more)"


def test_markdown_cells_cannot_break_the_table_or_carry_html():
    text = posture_markdown(RESULTS)
    console = [row for row in _tables(text)["kvmhost"] if row[0] == "SVK-CON-001"][0]
    assert console[4] == "`guest web1 listens on 0.0.0.0 \\| all interfaces`"
    results = copy.deepcopy(RESULTS)
    results["kvmpeer"]["controls"][0]["title"] = "a | b <b>bold</b>\nnext"
    row = _tables(posture_markdown(results))["kvmpeer"][1]
    assert row[3] == "a \\| b &lt;b&gt;bold&lt;/b&gt; next"


# --- HTML --------------------------------------------------------------------

def test_html_is_self_contained_escaped_and_names_every_control():
    page = posture_html(RESULTS)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page.replace("https://libvirt.org/remote.html", ""))
    assert not re.search(r"\b(src|href)\s*=", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<script" not in page.lower()
    assert html_escaped(SCRIPT) in page
    # the one URL in the input is a reference, shown as text
    assert "<li>https://libvirt.org/remote.html</li>" in page
    for cid in ALL_IDS:
        assert cid in page
    assert page.count("<table>") == 2
    assert page.count("<style>") == 1
    for status in ("fail", "warn", "pass", "not_applicable"):
        assert 'tr.%s td.status { background' % status in page
        assert '<tr class="%s">' % status in page
    assert page.count("<details>") == 7       # every control with evidence or references


def html_escaped(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


def test_html_shows_a_host_without_result():
    page = posture_html({"kvmdown": {"failed": True, "msg": "<b>module failed</b>"}})
    assert '<p class="error">no posture result (failed): &lt;b&gt;module failed&lt;/b&gt;</p>' in page


# --- Gate --------------------------------------------------------------------

def test_the_default_gate_holds_whatever_fails():
    assert posture_gate(RESULTS) == []
    assert posture_gate(RESULTS, fail_on_severity=None) == []


@pytest.mark.parametrize("threshold, expected", [
    ("high", ["kvmhost: SVK-TLS-002 (high) fail: /etc/libvirt/qemu.conf: vnc_tls = 0"]),
    ("medium", ["kvmhost: SVK-TLS-002 (high) fail: /etc/libvirt/qemu.conf: vnc_tls = 0",
                "kvmpeer: SVK-AUD-001 (medium) fail: auditctl -l: no virt_ rules"]),
    ("low", ["kvmhost: SVK-TLS-002 (high) fail: /etc/libvirt/qemu.conf: vnc_tls = 0",
             "kvmhost: SVK-STO-001 (low) fail: /var/lib/libvirt/images/x.qcow2 is 0644 " + SCRIPT + " & 'quoted'",
             "kvmpeer: SVK-AUD-001 (medium) fail: auditctl -l: no virt_ rules"]),
])
def test_the_severity_threshold(threshold, expected):
    assert posture_gate(RESULTS, fail_on_severity=threshold) == expected
    assert posture_gate(RESULTS, [], threshold.upper()) == expected


def test_a_required_control_breaks_the_gate_when_it_fails_or_is_missing():
    broken = posture_gate(RESULTS, required=["SVK-STO-001", "SVK-AUD-001"])
    assert broken == [
        "kvmhost: SVK-STO-001 (low) fail: /var/lib/libvirt/images/x.qcow2 is 0644 " + SCRIPT + " & 'quoted'",
        "kvmhost: SVK-AUD-001 is required but missing from the results",
        "kvmpeer: SVK-AUD-001 (medium) fail: auditctl -l: no virt_ rules",
        "kvmpeer: SVK-STO-001 is required but missing from the results",
    ]


def test_warn_and_not_applicable_never_break_the_gate_even_when_required():
    required = ["SVK-CON-001", "SVK-MIG-001", "SVK-NET-001", "SVK-TLS-001"]
    # only the hosts that do not report a control at all break the gate
    assert posture_gate(RESULTS, required=required) == [
        "kvmhost: SVK-NET-001 is required but missing from the results",
        "kvmpeer: SVK-CON-001 is required but missing from the results",
        "kvmpeer: SVK-MIG-001 is required but missing from the results"]
    soft = [c for c in KVMHOST if c["status"] in ("warn", "not_applicable")]
    only_soft = {"h": _result(soft + [_control("SVK-X-001", "not_applicable", "high", "tls", "x", [])])}
    assert posture_gate(only_soft, required=["SVK-CON-001", "SVK-MIG-001", "SVK-X-001"], fail_on_severity="low") == []


def test_a_host_without_result_breaks_the_gate():
    results = {"kvmdown": {"unreachable": True, "msg": "Failed to connect"}, "kvmpeer": _result(KVMPEER[:1])}
    assert posture_gate(results) == ["kvmdown: no posture result (unreachable): Failed to connect"]


def test_a_first_line_without_evidence_is_the_title():
    results = {"h": _result([_control("SVK-X-002", "fail", "high", "tls", "Some title", ["", "  "])])}
    assert posture_gate(results, fail_on_severity="high") == ["h: SVK-X-002 (high) fail: Some title"]


@pytest.mark.parametrize("call", [
    lambda: posture_gate(RESULTS, fail_on_severity="critical"),
    lambda: posture_gate(RESULTS, required=5),
    lambda: posture_junit([RESULTS]),
    lambda: posture_markdown({"h": {"controls": [{"id": "X", "status": "broken"}]}}),
    lambda: posture_html({"h": {"controls": ["not a dict"]}}),
])
def test_bad_input_is_an_error(call):
    with pytest.raises(AnsibleFilterError):
        call()
