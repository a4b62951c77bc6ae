"""The console analysis of secvirt.kvm.libvirt_graphics, on literal XML and
command lines (the command lines as libvirt 11.3 started them on Debian 13,
copied from a running guest)."""
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import qemu_graphics as qg

DOMAIN = "<domain type='qemu'><name>g</name><devices>%s</devices></domain>"


def test_spice_without_default_mode_keeps_a_plaintext_port():
    [spice] = qg.analyse_definition(DOMAIN % "<graphics type='spice' autoport='yes'/>")
    assert spice["plaintext"] and spice["default_mode"] == "any"


def test_spice_secure_by_default_unless_a_channel_is_insecure():
    [secure] = qg.analyse_definition(DOMAIN % "<graphics type='spice' autoport='yes' defaultMode='secure'/>")
    assert not secure["plaintext"]
    [mixed] = qg.analyse_definition(DOMAIN % ("<graphics type='spice' defaultMode='secure'>"
                                              "<channel name='inputs' mode='insecure'/></graphics>"))
    assert mixed["plaintext"]


def test_vnc_is_tls_under_vnc_tls_and_a_socket_listen_is_not_a_network_listen():
    vnc, spice = qg.analyse_definition(DOMAIN % ("<graphics type='vnc' autoport='yes'/>"
                                                 "<graphics type='spice'><listen type='socket'/></graphics>"))
    assert not vnc["plaintext"] and vnc["network"]
    assert not spice["network"] and not spice["plaintext"]


def test_secure_spice_xml_rewrites_only_what_keeps_plaintext():
    xml = DOMAIN % ("<graphics type='spice' port='5905' autoport='no'><channel name='main' mode='insecure'/></graphics>"
                    "<graphics type='vnc' autoport='yes'/>")
    fixed = ET.fromstring(qg.secure_spice_xml(xml))
    spice = fixed.find("./devices/graphics[@type='spice']")
    assert spice.get("defaultMode") == "secure" and spice.get("port") == "-1"
    assert spice.find("channel").get("mode") == "secure"
    assert fixed.find("./devices/graphics[@type='vnc']").attrib == {"type": "vnc", "autoport": "yes"}
    assert qg.secure_spice_xml(qg.secure_spice_xml(xml)) is None  # idempotent


def test_listens_outside_the_allowed_addresses():
    graphics = qg.analyse_definition(DOMAIN % ("<graphics type='vnc' listen='0.0.0.0'/>"
                                               "<graphics type='spice'><listen type='address' address='10.0.0.1'/>"
                                               "<listen type='network' network='guests'/></graphics>"))
    assert qg.listens_outside(graphics, ["10.0.0.1"]) == ["0.0.0.0", "network:guests"]


def test_cmdline_of_a_tls_vnc_and_a_secure_spice_guest():
    argv = ["/usr/bin/qemu-system-x86_64", "-vnc", "10.254.0.10:0,tls-creds=vnc-tls-creds0,audiodev=audio1",
            "-spice", "tls-port=5901,addr=10.254.0.10,disable-ticketing=on,x509-dir=/etc/pki/libvirt-spice,"
            "tls-channel=default,seamless-migration=on"]
    served = qg.analyse_cmdline(argv)
    assert served["vnc"] == [{"address": "10.254.0.10:0", "network": True, "tls": True, "plaintext": False}]
    assert served["spice"][0]["tls"] and not served["spice"][0]["plaintext"]


def test_cmdline_of_a_plaintext_vnc_and_spice_guest():
    served = qg.analyse_cmdline(["qemu", "-vnc", "127.0.0.1:0,audiodev=audio1",
                                 "-spice", "port=5901,tls-port=5902,addr=0.0.0.0,x509-dir=/x"])
    assert served["vnc"][0]["plaintext"]
    assert served["spice"][0]["plaintext"] and served["spice"][0]["tls"]
    assert not qg.analyse_cmdline(["qemu", "-vnc", "unix:/run/x.sock"])["vnc"][0]["plaintext"]


def test_proc_stat_start_time_with_spaces_in_the_name():
    stat = "2220 (qemu:g1 x) S 1 2220 2220 0 -1 4194560 " + " ".join(["0"] * 12) + " 4242 0"
    assert qg.parse_proc_stat_start(stat) == 4242


@pytest.mark.parametrize("started,state,can_reload,expect", [
    (200.0, {}, True, ([], [])),                                                          # started after the cert
    (50.0, {}, True, (["g"], [])),                                                        # older: reload VNC
    (50.0, {}, False, ([], ["g"])),                                                       # libvirt < 10.2: stale
    (50.0, {"u": {"pid": 7, "fingerprint": "f", "spice_stale": False}}, True, ([], [])),  # reloaded before
    (50.0, {"u": {"pid": 6, "fingerprint": "f"}}, True, (["g"], [])),                     # another process since
])
def test_certificate_reload_plan(started, state, can_reload, expect):
    running = {"u": {"name": "g", "pid": 7, "started": started, "vnc": True, "spice": False}}
    reload_names, stale, new_state = qg.certificate_reload_plan(running, 100.0, state, "f", can_reload)
    assert (reload_names, stale) == expect
    if expect[0] or started > 100:
        assert new_state["u"]["pid"] == 7 and new_state["u"]["fingerprint"] == "f"


def test_spice_cannot_reload_and_stays_stale_without_reloading_vnc_again():
    running = {"u": {"name": "g", "pid": 7, "started": 50.0, "vnc": True, "spice": True}}
    first = qg.certificate_reload_plan(running, 100.0, {}, "f", True)
    assert first[0] == ["g"] and first[1] == ["g"]
    second = qg.certificate_reload_plan(running, 100.0, first[2], "f", True)
    assert second[0] == [] and second[1] == ["g"]
