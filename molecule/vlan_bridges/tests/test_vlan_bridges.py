"""VLAN guest bridges on two real hosts sharing a trunk, before and after a reboot.

kvmhost uses ifupdown (Debian's default) and libvirt, kvmpeer systemd-networkd.
Every test runs twice: as converged, then after both VMs were rebooted with
ansible.builtin.reboot, which proves the configuration is persistent.
"""
import json
import os
import sys
import time

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import clones  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
HOSTS = RUNNER.get_hosts("kvm_hosts")
NETWORKS = {  # bridge: (port, vlan id, stp)
    "br-a": ("eth1.100", 100, True),
    "br-b": ("eth1.200", 200, False),
}
# Test-only endpoints: one namespace per host and VLAN, all in ONE subnet, so
# that only the VLAN separates A from B.
ENDPOINT_IP = {("kvmhost", "a"): "198.51.100.1", ("kvmpeer", "a"): "198.51.100.2",
               ("kvmhost", "b"): "198.51.100.11", ("kvmpeer", "b"): "198.51.100.12"}


def reboot_all():
    started = time.monotonic()
    ansible_cli.reboot("kvm_hosts")
    print("rebooted both VMs in %.0fs" % (time.monotonic() - started))


@pytest.fixture(scope="module", params=["as converged", "after reboot"])
def phase(request):
    if request.param == "after reboot":
        reboot_all()
    return request.param


@pytest.fixture(params=HOSTS)
def host(request, phase):
    machine = RUNNER.get_host(request.param)
    machine.inventory_name = request.param
    return machine


def link(host, name):
    cmd = host.run("ip -d -j addr show dev %s" % name)
    assert cmd.rc == 0, "%s: %s does not exist: %s" % (host.inventory_name, name, cmd.stderr)
    return json.loads(cmd.stdout)[0]


def test_vlan_ports_carry_the_right_8021q_id_and_sit_in_the_right_bridge(host):
    for bridge, (port, vlan, _stp) in NETWORKS.items():
        info = link(host, port)
        assert info["linkinfo"]["info_kind"] == "vlan"
        assert info["linkinfo"]["info_data"]["protocol"] == "802.1Q"
        assert info["linkinfo"]["info_data"]["id"] == vlan
        assert info["link"] == "eth1"
        assert info["master"] == bridge
        assert "UP" in info["flags"]
        # exactly one VLAN per bridge: no other vlan/physical port
        others = host.check_output("ls /sys/class/net/%s/brif" % bridge).split()
        assert [p for p in others if not p.startswith("vt")] == [port]


def test_bridges_run_stp_as_configured(host):
    for bridge, (_port, _vlan, stp) in NETWORKS.items():
        info = link(host, bridge)
        assert info["linkinfo"]["info_kind"] == "bridge"
        assert info["linkinfo"]["info_data"]["stp_state"] == (1 if stp else 0)
        assert host.file("/sys/class/net/%s/bridge/stp_state" % bridge).content_string.strip() == str(int(stp))
    assert link(host, "br-a")["linkinfo"]["info_data"]["forward_delay"] == 200


def test_no_host_address_on_bridges_ports_or_trunk(host):
    for bridge, (port, _vlan, _stp) in NETWORKS.items():
        for name in (bridge, port, "eth1"):
            assert link(host, name)["addr_info"] == [], "%s has addresses" % name
        assert host.run("sysctl -n net.ipv6.conf.%s.disable_ipv6" % bridge).stdout.strip() == "1"
        assert host.run("sysctl -n net.ipv4.conf.%s.arp_ignore" % bridge).stdout.strip() == "8"


def test_bridge_netfilter_is_loaded_and_off(host):
    assert host.file("/sys/module/br_netfilter").is_directory
    for table in ("iptables", "ip6tables", "arptables"):
        assert host.check_output("sysctl -n net.bridge.bridge-nf-call-%s" % table) == "0"
    assert "br_netfilter" in host.file("/etc/modules-load.d/secvirt-br_netfilter.conf").content_string
    assert 'KERNEL=="br_netfilter"' in host.file("/etc/udev/rules.d/90-secvirt-br_netfilter.rules").content_string


def test_br_netfilter_loaded_late_still_gets_the_sysctls(host, phase):
    """The udev rule closes the race: reload the module after boot, values stay 0."""
    if phase != "after reboot":
        pytest.skip("once is enough")
    # rmmod, not modprobe -r: that would also unload the unused-looking
    # bridge module, and with it every bridge on the host.
    cmd = host.run("rmmod br_netfilter && modprobe br_netfilter && udevadm settle && "
                   "sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables "
                   "net.bridge.bridge-nf-call-arptables")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split() == ["0", "0", "0"]


def test_configuration_is_written_for_the_hosts_network_stack(host):
    if host.inventory_name == "kvmhost":
        text = host.file("/etc/network/interfaces.d/secvirt-vlan-br-a").content_string
        assert "iface br-a inet manual" in text and "bridge_ports eth1.100" in text
        assert "address" not in text.lower().replace("no address", "")
        assert not host.file("/etc/systemd/network/60-secvirt-vlan-br-a.netdev").exists
    else:
        assert "Kind=bridge" in host.file("/etc/systemd/network/60-secvirt-vlan-br-a.netdev").content_string
        assert "VLAN=eth1.100" in host.file("/etc/systemd/network/60-secvirt-trunk-eth1.network").content_string
        assert host.service("systemd-networkd").is_running
        assert not host.file("/etc/network/interfaces.d/secvirt-vlan-br-a").exists


def test_removed_network_is_gone(host):
    assert not host.file("/sys/class/net/br-old").exists
    assert not host.file("/sys/class/net/eth1.300").exists
    assert not host.file("/etc/network/interfaces.d/secvirt-vlan-br-old").exists
    assert not host.file("/etc/systemd/network/60-secvirt-vlan-br-old.netdev").exists
    if host.inventory_name == "kvmhost":
        assert "old" not in host.check_output("virsh -c qemu:///system net-list --all --name").split()


def test_libvirt_networks_attach_guests_to_the_bridges(host):
    if host.inventory_name != "kvmhost":
        pytest.skip("libvirt runs on kvmhost only")
    for bridge, name in (("br-a", "vlan-a"), ("br-b", "vlan-b")):
        info = dict(line.split(":", 1) for line in
                    host.check_output("virsh -c qemu:///system net-info %s" % name).splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        assert info["Active"] == "yes" and info["Persistent"] == "yes" and info["Autostart"] == "yes"
        assert info["Bridge"] == bridge
        xml = host.check_output("virsh -c qemu:///system net-dumpxml %s" % name)
        assert "<forward mode='bridge'/>" in xml


def test_libvirt_default_nat_network_is_removed(host):
    if host.inventory_name != "kvmhost":
        pytest.skip("libvirt runs on kvmhost only")
    assert "default" not in host.check_output("virsh -c qemu:///system net-list --all --name").split()
    assert not host.file("/sys/class/net/virbr0").exists


def test_networking_service_was_never_restarted(host, phase):
    """networking.service (which owns eth0) last started during boot, never by the role."""
    if phase != "as converged":
        pytest.skip("only meaningful after the converge runs")
    boot_done = int(host.check_output("systemctl show -p FinishTimestampMonotonic --value"))
    started = int(host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value networking.service"))
    assert 0 < started <= boot_done
    assert host.interface("eth0").addresses


# ---------------------------------------------------------------------------
# VLAN isolation between the two hosts, through test-only endpoints
# ---------------------------------------------------------------------------

def endpoints_up(machine, name):
    script = []
    for vlan in ("a", "b"):
        ns, outside, inside = "vt%s" % vlan, "vt%s0" % vlan, "vt%s1" % vlan
        script += [
            "ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null; true" % (ns, outside),
            "ip netns add %s" % ns,
            "ip link add %s type veth peer name %s netns %s" % (outside, inside, ns),
            "ip link set %s master br-%s up" % (outside, vlan),
            "ip -n %s addr add %s/24 dev %s" % (ns, ENDPOINT_IP[(name, vlan)], inside),
            "ip -n %s link set %s up" % (ns, inside),
            # a route to the host's own lab address, to ask it over the guest VLAN
            "ip -n %s route add 10.254.0.0/24 dev %s" % (ns, inside),
        ]
    cmd = machine.run(" && ".join(script))
    assert cmd.rc == 0, cmd.stderr


def endpoints_down(machine):
    machine.run("ip netns del vta; ip netns del vtb; ip link del vta0; ip link del vtb0; true")


def ping(machine, ns, address, tries):
    return machine.run("ip netns exec %s ping -n -c %d -i 0.5 -W 1 %s" % (ns, tries, address)).rc == 0


@pytest.fixture
def endpoints(phase):
    machines = {name: RUNNER.get_host(name) for name in HOSTS}
    for name, machine in machines.items():
        endpoints_up(machine, name)
    # br-a runs STP with a 2 s forward delay: the new port forwards after 4 s.
    time.sleep(5)
    yield machines
    for machine in machines.values():
        endpoints_down(machine)


def test_vlan_a_reaches_the_peers_vlan_a_and_not_vlan_b(endpoints):
    host, peer = endpoints["kvmhost"], endpoints["kvmpeer"]
    assert ping(host, "vta", ENDPOINT_IP[("kvmpeer", "a")], 10), "VLAN 100 does not reach the peer's VLAN 100"
    assert ping(peer, "vtb", ENDPOINT_IP[("kvmhost", "b")], 10), "VLAN 200 does not reach the peer's VLAN 200"
    # Same subnet, other VLAN: nothing may get through, across hosts or
    # between the two bridges of one host.
    assert not ping(host, "vta", ENDPOINT_IP[("kvmpeer", "b")], 3), "VLAN 100 leaks into the peer's VLAN 200"
    assert not ping(host, "vta", ENDPOINT_IP[("kvmhost", "b")], 3), "br-a leaks into br-b on the same host"
    assert not ping(peer, "vtb", ENDPOINT_IP[("kvmpeer", "a")], 3), "br-b leaks into br-a on the peer"


def test_host_does_not_answer_guests_for_its_own_addresses(endpoints):
    """No address on the bridge is not enough: without arp_ignore the host
    would answer ARP for its lab address (10.254.0.x) on a guest VLAN."""
    for name, machine in endpoints.items():
        own_lab_ip = machine.check_output("ip -o -4 addr show dev eth2").split()[3].split("/")[0]
        assert not ping(machine, "vta", own_lab_ip, 3), "%s answers guests on VLAN 100" % name


def icmp_in_echos(machine):
    lines = [line.split() for line in machine.check_output("grep '^Icmp:' /proc/net/snmp").splitlines()]
    return int(lines[1][lines[0].index("InEchos")])


def test_guests_cannot_reach_the_host_even_knowing_its_mac(endpoints):
    """A guest that learned the bridge's MAC (STP sends it) and forges a source
    address of the management network must still not reach the host: the
    host drops what guest bridges send to it (nftables, secvirt_vlan_bridges)."""
    machine = endpoints["kvmhost"]
    own_lab_ip = machine.check_output("ip -o -4 addr show dev eth2").split()[3].split("/")[0]
    bridge_mac = json.loads(machine.check_output("ip -j link show dev br-a"))[0]["address"]
    forged = "10.254.0.77"  # inside the lab (management) network, owned by nobody
    machine.check_output(
        f"ip -n vta addr add {forged}/32 dev vta1 && "
        f"ip -n vta neigh replace {own_lab_ip} lladdr {bridge_mac} dev vta1 nud permanent")
    # positive control in the same namespace: the bridge still forwards between guests
    assert ping(machine, "vta", ENDPOINT_IP[("kvmpeer", "a")], 10), "VLAN 100 does not reach the peer's VLAN 100"
    echos = icmp_in_echos(machine)
    ping(machine, "vta", f"-I {forged} {own_lab_ip}", 5)
    machine.run(f"ip netns exec vta timeout 5 bash -c 'echo > /dev/tcp/{own_lab_ip}/22'")
    syn_recv = machine.check_output("ss -Htn state syn-recv '( sport = :22 )'")
    counters = machine.check_output("nft list table inet secvirt_vlan_bridges")
    assert icmp_in_echos(machine) == echos, "the host took echo requests from a guest bridge"
    assert forged not in syn_recv and "198.51.100." not in syn_recv, syn_recv
    # ... because the host filter dropped them, not because the frames got lost
    dropped = [int(word) for line in counters.splitlines() if "counter packets" in line
               for word in [line.split("counter packets")[1].split()[0]]]
    assert dropped and dropped[0] >= 6, counters


def test_check_mode_predicts_the_real_run_and_changes_nothing():
    """On a clone of kvmhost drifted from what the role put in force (br-b
    and its VLAN port gone with their ifupdown file, bridge-nf-call-iptables
    back on, the host filter unloaded), --check --diff reports the changes
    and makes none; the real run then changes exactly what was predicted
    (the check-mode stand-ins for the sysctl apply and the filter load, which
    check mode skips, map to the real tasks) and br-b is back."""
    with clones.cloned("check-mode", ["kvmhost"]) as clone:
        host = clone.host("kvmhost")
        host.check_output("ifdown br-b >/dev/null 2>&1; ip link del br-b 2>/dev/null; ip link del eth1.200 2>/dev/null; "
                          "grep -l -r -w br-b /etc/network/interfaces.d | xargs rm -f; "
                          "sysctl -q -w net.bridge.bridge-nf-call-iptables=1; nft delete table inet secvirt_vlan_bridges")
        state = ("ls /sys/class/net; find /etc/network/interfaces.d /etc/sysctl.d /etc/nftables.d -type f -exec sha256sum {} + "
                 "| sort; sysctl -n net.bridge.bridge-nf-call-iptables; nft list tables")
        drifted = host.check_output(state)
        assert "br-b" not in drifted.split() and "table inet secvirt_vlan_bridges" not in drifted

        def nothing_changed():
            assert host.check_output(state) == drifted

        predicted, made = ansible_cli.check_then_real("vlan_bridges", "kvm_hosts", "kvmhost", clone.inventory, nothing_changed)
        real_name = {"Predict the bridge netfilter settings the real run applies (check mode)": "Apply the bridge netfilter settings now",
                     "Predict the load of the host filter (check mode)": "Load the host filter (the running one is not the intended one)"}
        assert set(real_name) | {"Bring the VLAN bridges to the wanted state without touching the management link"} <= set(predicted), predicted
        assert made == [real_name.get(name, name) for name in predicted], (predicted, made)
        assert link(host, "eth1.200")["master"] == "br-b"
        assert host.check_output("sysctl -n net.bridge.bridge-nf-call-iptables") == "0"
        assert host.run("nft list table inet secvirt_vlan_bridges").rc == 0
