"""secvirt.kvm libvirt modules, checked on the KVM host the way an operator would:
virsh, ps, the guest's cgroup files, ebtables/nft, and frames sent from the
guest's side of its tap device."""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import frames  # noqa: E402  pylint: disable=wrong-import-position

# Every module call of these tests (nwfilter, nwfilter_binding, seclabel,
# domain_limits) goes through Ansible's own strategy, the stock AnsiballZ
# path, not the mitogen strategy the scenario's converge runs under: one
# scenario keeps the modules proven on the path operators use by default
# (docs/testing.md, "Why the scenarios run under mitogen").
os.environ["ANSIBLE_STRATEGY"] = "linear"

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOST_NAME = RUNNER.get_hosts("kvm_hosts")[0]
HOST = RUNNER.get_host(HOST_NAME)
GUEST = "nested1"
MAC = "52:54:00:5e:c0:01"
GUEST_UID = 970
QEMU_GID = int(HOST.check_output("getent group libvirt-qemu").split(":")[2])
LABEL = f"+{GUEST_UID}:+{QEMU_GID}"


def sh(cmd):
    return HOST.check_output(cmd)


def module(module_name, check=False, diff=False, **args):
    """Run one of our modules on the KVM host (as the play would); it must succeed."""
    result = ansible_cli.run_module(HOST_NAME, f"secvirt.kvm.{module_name}", args, check=check, diff=diff)
    assert not result["failed"], result
    return result


def module_fails(module_name, extra_vars=None, **args):
    result = ansible_cli.run_module(HOST_NAME, f"secvirt.kvm.{module_name}", args, extra_vars=extra_vars)
    assert result["failed"], result
    return result


@pytest.fixture(scope="module")
def tapdev():
    return sh(f"virsh domiflist {GUEST} | awk '$5 == \"{MAC}\" {{print $1}}'")


@pytest.fixture(scope="module")
def qemu_pid():
    return int(sh(f"cat /run/libvirt/qemu/{GUEST}.pid"))


@pytest.fixture(scope="module")
def cgroup(qemu_pid):
    """The guest's libvirt cgroup (v2): <machine scope>/libvirt, whose emulator
    child holds qemu's main thread. libvirt 9.0 under systemd puts memory and
    io.max here, and cpu.weight / io.weight on the scope (via systemd)."""
    path = sh(f"cat /proc/{qemu_pid}/cgroup").split("::", 1)[1]
    return "/sys/fs/cgroup" + re.sub(r"/emulator$", "", path)


def cgroup_file(cgroup, name):
    # the scope's name holds a literal "\x2d": quote it for the shell
    return sh(f"cat {shlex.quote(cgroup + '/' + name)}")


# ------------------------------------------------------------------ nwfilter

def test_seed_filter_defined_as_written():
    xml = sh("virsh nwfilter-dumpxml mysecfilter")
    assert "<filter name='mysecfilter' chain='root'>" in xml
    assert re.search(r"<rule action='drop' direction='out' priority='500'>\s*<tcp dstportstart='25' dstportend='25'/>", xml)
    assert re.search(r"<rule action='drop' direction='in' priority='500'>\s*<tcp dstportstart='23' dstportend='23'/>", xml)
    assert "<filterref filter='clean-traffic'/>" in xml


def test_raw_xml_filter_defined():
    xml = sh("virsh nwfilter-dumpxml secvirt-ipv4-only")
    assert "chain='mac' priority='-790'" in xml
    assert "srcmacaddr='$MAC'" in xml
    assert "protocolid='ipv4'" in xml or "protocolid='0x800'" in xml


def test_filter_lifecycle_define_update_check_mode_undefine():
    name = "secvirt-lifecycle"
    first = module("libvirt_nwfilter", name=name, chain="ipv4",
                   rules=[{"action": "drop", "direction": "out", "protocol": "udp",
                           "match": {"dstportstart": 53}}])
    assert first["changed"]
    assert "dstportstart='53'" in sh(f"virsh nwfilter-dumpxml {name}")
    uuid = sh(f"virsh nwfilter-dumpxml {name} | sed -n 's:.*<uuid>\\(.*\\)</uuid>.*:\\1:p'")
    same = module("libvirt_nwfilter", name=name, chain="ipv4",
                  rules=[{"action": "drop", "direction": "out", "protocol": "udp", "match": {"dstportstart": 53}}])
    assert not same["changed"]
    # check mode predicts the update and leaves the filter alone
    update = dict(name=name, chain="ipv4",
                  rules=[{"action": "drop", "direction": "out", "protocol": "udp", "match": {"dstportstart": 5353}}])
    predicted = module("libvirt_nwfilter", check=True, diff=True, **update)
    assert predicted["changed"]
    # --diff shows the filter's XML before and after: the port, and nothing
    # of what libvirt added on its own (chain and rule priorities, uuid)
    lines = predicted["_cli_stdout"].splitlines()
    assert [ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")] == ['<udp dstportstart="53" />']
    assert [ln[1:].strip() for ln in lines if ln.startswith("+") and not ln.startswith("+++")] == ['<udp dstportstart="5353" />']
    assert "dstportstart='53'" in sh(f"virsh nwfilter-dumpxml {name}")
    assert module("libvirt_nwfilter", **update)["changed"]
    dumped = sh(f"virsh nwfilter-dumpxml {name}")
    assert "dstportstart='5353'" in dumped and uuid in dumped
    assert module("libvirt_nwfilter", name=name, state="absent")["changed"]
    assert name not in sh("virsh nwfilter-list")
    assert not module("libvirt_nwfilter", name=name, state="absent")["changed"]


def test_filter_referenced_by_a_guest_and_a_filter_is_not_undefined():
    result = module_fails("libvirt_nwfilter", name="clean-traffic", state="absent")
    assert "refusing to undefine network filter clean-traffic" in result["msg"]
    assert result["referenced_by"]["guests"] == [GUEST]
    assert "mysecfilter" in result["referenced_by"]["filters"]
    assert "clean-traffic" in sh("virsh nwfilter-list")


# ------------------------------------------------------------------ binding

def test_clean_traffic_in_persistent_and_live_definition(tapdev):
    for flags in ("--inactive", ""):
        xml = sh(f"virsh dumpxml {flags} {GUEST}")
        ref = re.search(r"<filterref filter='clean-traffic'>(.*?)</filterref>", xml, re.S)
        assert ref, xml
        assert "<parameter name='IP' value='10.77.0.50'/>" in ref.group(1)
        assert "<parameter name='CTRL_IP_LEARNING' value='none'/>" in ref.group(1)
    assert re.search(rf"^\s*{tapdev}\s+clean-traffic\s*$", sh("virsh nwfilter-binding-list"), re.M)


def test_ebtables_rules_instantiated_for_the_tap(tapdev):
    # Debian 12's ebtables is ebtables-nft: libvirt's chains are nft chains too
    chains = sh("ebtables -t nat -L")
    assert f"-i {tapdev} -j libvirt-I-{tapdev}" in chains
    assert f"-o {tapdev} -j libvirt-O-{tapdev}" in chains
    # no-mac-spoofing: the guest's own source MAC returns, anything else is dropped
    assert re.search(rf"Bridge chain: I-{tapdev}-mac, entries: 2, policy: RETURN\n"
                     rf"-s {MAC} -j RETURN\n-j DROP\n", chains), chains
    nft = sh("nft list table bridge nat")
    assert f'iifname "{tapdev}"' in nft


def inject_arp(src_mac, src_ip):
    frames.inject(HOST, GUEST, [frames.arp_request(src_mac, src_ip)])


def neighbour(ip):
    return sh(f"ip neigh show {ip} dev br-secvirt")


def test_frame_with_spoofed_source_mac_is_dropped():
    # control: a correct ARP request from the guest reaches the host, which
    # learns the guest's address
    inject_arp(MAC, "10.77.0.50")
    assert MAC in neighbour("10.77.0.50")
    # the same request from a forged MAC never reaches the bridge
    inject_arp("52:54:00:de:ad:01", "10.77.0.51")
    assert neighbour("10.77.0.51") == ""


def test_binding_check_mode_and_detach_reattach(tapdev):
    other = dict(domain=GUEST, mac=MAC, filter="mysecfilter", parameters={"IP": "10.77.0.50"})
    predicted = module("libvirt_nwfilter_binding", check=True, **other)
    assert predicted["changed"] and predicted["live_changed"]
    assert "clean-traffic" in sh("virsh nwfilter-binding-list")
    # through the target device this time, then back to the converged state
    swapped = module("libvirt_nwfilter_binding", domain=GUEST, target_dev=tapdev, filter="mysecfilter",
                     parameters={"IP": "10.77.0.50"})
    assert swapped["changed"] and not swapped["restart_required"]
    assert re.search(rf"^\s*{tapdev}\s+mysecfilter\s*$", sh("virsh nwfilter-binding-list"), re.M)
    restored = module("libvirt_nwfilter_binding", domain=GUEST, mac=MAC, filter="clean-traffic",
                      parameters={"IP": "10.77.0.50", "CTRL_IP_LEARNING": "none"})
    assert restored["changed"]
    assert re.search(rf"^\s*{tapdev}\s+clean-traffic\s*$", sh("virsh nwfilter-binding-list"), re.M)


# ------------------------------------------------- layer-3 rules, br_netfilter

BRIDGE_NF = "/proc/sys/net/bridge"


def module_with_warnings(module_name, **args):
    """Like module(), plus the warnings the ansible CLI printed: module.warn()
    reaches the operator on stderr, not in the JSON result."""
    cmd = [ansible_cli._tool(), HOST_NAME, "-i", ansible_cli.INVENTORY,  # pylint: disable=protected-access
           "-m", f"secvirt.kvm.{module_name}", "-a", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_cli._env(),  # pylint: disable=protected-access
                          timeout=900, check=False)
    head = re.search(rf"^{re.escape(HOST_NAME)} \| ([A-Z]+!?) => ", proc.stdout, re.M)
    assert head, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.JSONDecoder().raw_decode(proc.stdout, head.end())[0]
    assert head.group(1) in ("SUCCESS", "CHANGED"), result
    warnings = [" ".join(text.split()) for text in proc.stderr.split("[WARNING]: ")[1:]]
    return result, warnings


@pytest.fixture
def bridge_nf_restored():
    """Put back br_netfilter and the net.bridge.bridge-nf-call-* sysctls as
    found, and the converged clean-traffic binding, whatever the test did."""
    loaded = HOST.run(f"test -d {BRIDGE_NF}").rc == 0
    saved = {}
    if loaded:
        for name in ("iptables", "ip6tables", "arptables"):
            saved[name] = sh(f"cat {BRIDGE_NF}/bridge-nf-call-{name}").strip()
    yield
    # first the binding: libvirt then drops mysecfilter's iptables rules
    module("libvirt_nwfilter_binding", domain=GUEST, mac=MAC, filter="clean-traffic",
           parameters={"IP": "10.77.0.50", "CTRL_IP_LEARNING": "none"})
    if loaded:
        for name, value in saved.items():
            sh(f"echo {value} > {BRIDGE_NF}/bridge-nf-call-{name}")
    elif HOST.run("modprobe -r br_netfilter").rc != 0:
        # still in use: keep bridged traffic out of iptables, as without it
        for name in ("iptables", "ip6tables", "arptables"):
            sh(f"echo 0 > {BRIDGE_NF}/bridge-nf-call-{name}")


def test_layer3_rules_bypassed_without_bridge_nf_call_iptables(bridge_nf_restored, tapdev):
    # mysecfilter (converge) drops tcp 25/23: libvirt implements that with
    # iptables, which bridged frames skip with bridge-nf-call-iptables=0 (the
    # vlan_bridges role's setting). br_netfilter is loaded first so that the
    # kernel cannot load it mid-test (libvirt's physdev match would).
    sh(f"modprobe br_netfilter && echo 0 > {BRIDGE_NF}/bridge-nf-call-iptables")
    args = dict(domain=GUEST, mac=MAC, filter="mysecfilter", parameters={"IP": "10.77.0.50"})

    refused = module_fails("libvirt_nwfilter_binding", bridge_netfilter="fail", **args)
    assert "mysecfilter" in refused["msg"] and "tcp" in refused["msg"], refused["msg"]
    assert "net.bridge.bridge-nf-call-iptables is 0" in refused["msg"], refused["msg"]
    assert refused["layer3_protocols"] == ["tcp"] and refused["layer3_rules_enforced"] is False
    assert re.search(rf"^\s*{tapdev}\s+clean-traffic\s*$", sh("virsh nwfilter-binding-list"), re.M)
    assert "<filterref filter='clean-traffic'>" in sh(f"virsh dumpxml --inactive {GUEST}")

    warned, warnings = module_with_warnings("nwfilter_binding", **args)
    assert warned["changed"] and warned["layer3_rules_enforced"] is False, warned
    assert warned["layer3_protocols"] == ["tcp"]
    assert warned["bridge_nf_call"]["iptables"] == 0 and warned["bridge_nf_call"]["bridge"] == "br-secvirt"
    ours = [w for w in warnings if "network filter mysecfilter" in w]
    assert len(ours) == 1, warnings
    assert "tcp" in ours[0] and "net.bridge.bridge-nf-call-iptables is 0" in ours[0], ours[0]
    assert re.search(rf"^\s*{tapdev}\s+mysecfilter\s*$", sh("virsh nwfilter-binding-list"), re.M)

    # positive control: the same call once bridged frames pass iptables
    sh(f"echo 1 > {BRIDGE_NF}/bridge-nf-call-iptables")
    enforced, warnings = module_with_warnings("nwfilter_binding", **args)
    assert not enforced["changed"] and enforced["layer3_rules_enforced"] is True, enforced
    assert enforced["bridge_nf_call"]["iptables"] == 1
    assert not [w for w in warnings if "mysecfilter" in w], warnings


# ------------------------------------------------------------------ seclabel

def test_static_dac_label_in_definition_and_on_the_process(qemu_pid):
    xml = sh(f"virsh dumpxml {GUEST}")
    label = re.escape(LABEL)
    assert re.search(rf"<seclabel type='static' model='dac' relabel='yes'>\s*<label>{label}</label>\s*"
                     rf"<imagelabel>{label}</imagelabel>", xml), xml
    assert sh(f"ps -o uid= -p {qemu_pid}").strip() == str(GUEST_UID)
    assert sh(f"ps -o gid= -p {qemu_pid}").strip() == str(QEMU_GID)
    assert sh(f"ps -o user= -p {qemu_pid}").strip() == "svirt-nested1"


def test_live_label_reported_matches_process():
    result = module("libvirt_seclabel", domain=GUEST, model="dac", type="static", label=LABEL, relabel=True)
    assert not result["changed"]
    dac = [lab for lab in result["live_labels"] if lab["model"] == "dac"]
    assert dac[0]["label"] == LABEL


def test_seclabel_change_on_running_guest_needs_restart():
    result = module("libvirt_seclabel", check=True, domain=GUEST, model="dac", type="static", label="+971:+971")
    assert result["changed"] and result["restart_required"]
    assert LABEL in sh(f"virsh dumpxml --inactive {GUEST}")


def test_duplicate_mcs_pair_refused():
    # SELinux is not available on Debian 12 (libvirt refuses selinux labels on
    # this host, see converge); the uniqueness check runs against libvirt's
    # test driver, whose node file holds a guest with a static SELinux label.
    HOST.run("cat > /root/mcs-node.xml <<'EOF'\n"
             "<node><domain type='test'><name>mcs-holder</name><memory>65536</memory><os><type>hvm</type></os>"
             "<seclabel type='static' model='selinux' relabel='no'><label>system_u:system_r:svirt_t:s0:c32,c256"
             "</label></seclabel></domain><domain type='test'><name>mcs-newcomer</name><memory>65536</memory>"
             "<os><type>hvm</type></os></domain></node>\nEOF")
    args = dict(uri="test:///root/mcs-node.xml", domain="mcs-newcomer", model="selinux", type="static",
                require_host_model=False)
    result = module_fails("libvirt_seclabel", label="system_u:system_r:svirt_t:s0:c32,c256", **args)
    assert "already used by mcs-holder" in result["msg"]
    assert result["conflicts"] == [{"domain": "mcs-holder", "label": "system_u:system_r:svirt_t:s0:c32,c256"}]
    assert module("libvirt_seclabel", label="system_u:system_r:svirt_t:s0:c33,c257", **args)["changed"]


# ------------------------------------------------------------------ limits

def test_schedinfo(cgroup):
    out = sh(f"virsh schedinfo {GUEST}")
    assert re.search(r"cpu_shares\s*:\s*512", out)
    assert re.search(r"vcpu_period\s*:\s*100000", out)
    assert re.search(r"vcpu_quota\s*:\s*50000", out)
    assert cgroup_file(cgroup, "../cpu.weight") == "512"
    assert cgroup_file(cgroup, "vcpu0/cpu.max") == "50000 100000"


def test_memtune(cgroup):
    out = sh(f"virsh memtune {GUEST}")
    assert re.search(r"hard_limit\s*:\s*524288", out)
    assert re.search(r"soft_limit\s*:\s*393216", out)
    assert cgroup_file(cgroup, "memory.max") == str(512 * 1024 * 1024)
    assert cgroup_file(cgroup, "memory.high") == str(384 * 1024 * 1024)


def test_blkiotune(cgroup):
    out = sh(f"virsh blkiotune {GUEST}")
    assert re.search(r"^weight\s*:\s*300", out, re.M)
    assert re.search(r"device_read_iops_sec\s*:\s*/dev/vdb,200", out)
    assert re.search(r"device_write_bytes_sec\s*:\s*/dev/vdb,10485760", out)
    majmin = sh("lsblk -dno MAJ:MIN /dev/vdb").strip()
    assert f"{majmin} rbps=max wbps=10485760 riops=200 wiops=max" in cgroup_file(cgroup, "io.max")
    assert cgroup_file(cgroup, "../io.weight").splitlines()[0] == "default 300"


def test_interface_bandwidth(tapdev):
    out = sh(f"virsh domiftune {GUEST} {tapdev}")
    assert re.search(r"inbound.average\s*:\s*1000", out)
    assert re.search(r"outbound.average\s*:\s*500", out)
    # libvirt shapes traffic to the guest with an htb qdisc on the tap
    assert "htb" in sh(f"tc qdisc show dev {tapdev}")


def test_limits_check_mode_and_diff():
    result = module("libvirt_domain_limits", check=True, diff=True, domain=GUEST, cpu_shares=1024)
    assert result["changed"] and result["config_changed"] and result["live_changed"]
    assert re.search(r"^-.*512", result["_cli_stdout"], re.M), result["_cli_stdout"]
    assert re.search(r"^\+.*1024", result["_cli_stdout"], re.M), result["_cli_stdout"]
    assert re.search(r"cpu_shares\s*:\s*512", sh(f"virsh schedinfo {GUEST}"))
    assert not module("libvirt_domain_limits", domain=GUEST, cpu_shares=512, memory_hard_limit="512MiB")["changed"]


# ------------------------------------------------------------------ errors

def test_clear_error_when_the_daemon_is_not_there():
    # a libvirt URI whose socket does not exist: what a host without a running
    # daemon gives (stopping the real one would also stop the nested guest)
    result = module_fails("libvirt_nwfilter_info", uri="qemu:///system?socket=/run/secvirt-no-such-libvirt-sock")
    assert "cannot connect to libvirt at qemu:///system?socket=/run/secvirt-no-such-libvirt-sock" in result["msg"]
    assert "the daemon is not running or its socket is missing" in result["msg"], result["msg"]


def test_clear_error_when_libvirt_python_is_missing():
    # Python without site-packages: the same interpreter, but no python3-libvirt
    HOST.run_expect([0], "printf '#!/bin/sh\\nexec /usr/bin/python3 -S \"$@\"\\n' > /root/python3-nosite"
                         " && chmod 0755 /root/python3-nosite")
    assert HOST.run("/root/python3-nosite -c 'import libvirt'").rc != 0
    for name, args in (("nwfilter", {"name": "x-missing", "chain": "ipv4"}),
                       ("seclabel", {"domain": GUEST, "model": "dac", "type": "dynamic"}),
                       ("domain_limits", {"domain": GUEST, "cpu_shares": 512})):
        result = module_fails(name, extra_vars={"ansible_python_interpreter": "/root/python3-nosite"}, **args)
        assert "python3-libvirt" in result["msg"], (name, result["msg"])
    assert "x-missing" not in sh("virsh nwfilter-list")
