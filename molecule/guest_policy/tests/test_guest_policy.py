"""secvirt.kvm.guest_policy on a real libvirt 9.0 (Debian 12), checked the way
an operator would: frames from the guest's side of its tap, virsh start of
guests defined by hand, byte-for-byte definitions, and the role's own
messages. The converge ran the role in enforce mode (web1 fixed, hook in)."""
import hashlib
import json
import os
import re
import sys
import time

import pytest

import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position
import frames  # noqa: E402  pylint: disable=wrong-import-position
import listeners  # noqa: E402  pylint: disable=wrong-import-position
import nested_guests  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOST_NAME = RUNNER.get_hosts("kvm_hosts")[0]
HOST = RUNNER.get_host(HOST_NAME)
VIRSH = nested_guests.VIRSH
HOOK = "/etc/libvirt/hooks/qemu.d/secvirt-guest-policy"
POLICY = "/etc/libvirt/secvirt-guest-policy.json"
WEB1_MAC = "52:54:00:5e:c1:01"
# the converge's role variables: every role run below starts from them
ROLE_VARS = {
    "guest_policy_mode": "enforce",
    "guest_policy_graphics_listen": ["127.0.0.1"],
    "guest_policy_max_virtual_size": "1GiB",
    "guest_policy_guests": {"web1": {"interfaces": {WEB1_MAC: {"ip": "10.77.0.50"}},
                                     "limits": {"cpu_shares": 512, "memory_hard_limit": "256MiB"}}},
    "guest_policy_acl": [{"user": "alice", "guests": ["acl-a"]},
                         {"user": "bob", "guests": ["acl-b"], "permissions": ["getattr", "read"]}],
}
FILTERED_NIC = ("<interface type='bridge'><source bridge='br-secvirt'/><model type='e1000'/><rom enabled='no'/>"
                "<filterref filter='clean-traffic'/></interface>")
BARE_NIC = "<interface type='bridge'><source bridge='br-secvirt'/><model type='e1000'/><rom enabled='no'/></interface>"


def sh(cmd, *args):
    return HOST.check_output(cmd, *args)


def role(extra=None, args=()):
    variables = dict(ROLE_VARS, **(extra or {}))
    # JSON results: YAML's would fold long messages (at a width that
    # depends on the environment, and inside words in double-quoted scalars)
    proc = ansible_cli.run_role("guest_policy", HOST_NAME, role_vars=variables, args=args,
                                env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_NOCOLOR": "1",
                                     "ANSIBLE_FORCE_COLOR": "0"})
    return proc, " ".join((proc.stdout + proc.stderr).split())


def role_ok(extra=None, args=()):
    proc, out = role(extra, args)
    assert proc.returncode == 0, out[-4000:]
    return out


def recap_changed(out):
    return int(re.search(r"changed=(\d+)", out.split("PLAY RECAP")[-1]).group(1))


def definition(name):
    """The persistent definition with its secrets, byte for byte."""
    return sh(VIRSH + " dumpxml --inactive --security-info %s", name)


def start(name):
    return HOST.run(VIRSH + " start %s", name)


def file_digest(path):
    return sh("sha256sum %s 2>/dev/null || echo absent", path).split()[0]


@pytest.fixture
def guests():
    """Guests a test defines by hand; removed afterwards whatever happened."""
    names = []
    yield names
    for name in names:
        nested_guests.remove(HOST, name)
        HOST.run("rm -f /var/lib/libvirt/images/%s.qcow2 /var/lib/libvirt/images/%s-base.raw" % (name, name))


# ------------------------------------------------ clean-traffic, through the role


def bridge_mac():
    return sh("cat /sys/class/net/br-secvirt/address").strip()


def udp_received(src_mac, src_ip, port):
    """Send one UDP datagram from web1's tap with these source addresses to
    the host; return what a listener on the host received."""
    HOST.run("rm -f /root/udp-%d.txt" % port)
    HOST.run("nohup timeout 25 python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
             "s.bind((\"10.77.0.1\",%d)); s.settimeout(20); "
             "[open(\"/root/udp-%d.txt\",\"a\").write(s.recvfrom(100)[0].decode()+\"\\n\") for _ in range(9)]' "
             ">/dev/null 2>&1 &" % (port, port))
    listeners.wait_bound(HOST, [port], "udp")
    frames.inject(HOST, "web1", [frames.udp_datagram(src_mac, bridge_mac(), src_ip, "10.77.0.1", port,
                                                     ("from %s" % src_ip).encode())])
    time.sleep(1)
    return HOST.run("cat /root/udp-%d.txt" % port).stdout


def test_role_put_clean_traffic_with_the_guests_ip_on_its_interface():
    xml = definition("web1")
    ref = re.search(r"<filterref filter='clean-traffic'>\s*<parameter name='IP' value='10.77.0.50'/>\s*</filterref>",
                    xml)
    assert ref, xml
    bindings = sh(VIRSH + " nwfilter-binding-list")
    tap = sh(VIRSH + " domiflist web1 | awk '$5 == \"%s\" {print $1}'" % WEB1_MAC).strip()
    assert re.search(r"^\s*%s\s+clean-traffic\s*$" % tap, bindings, re.M), bindings


def test_forged_mac_and_forged_ip_from_the_guest_are_dropped():
    # ARP: the genuine request teaches the host web1's address; a forged MAC
    # and a forged sender IP teach it nothing
    frames.inject(HOST, "web1", [frames.arp_request(WEB1_MAC, "10.77.0.50"),
                                 frames.arp_request("52:54:00:de:ad:02", "10.77.0.51"),
                                 frames.arp_request(WEB1_MAC, "10.77.0.52")])
    assert WEB1_MAC in sh("ip neigh show 10.77.0.50 dev br-secvirt")
    assert sh("ip neigh show 10.77.0.51 dev br-secvirt") == ""
    assert sh("ip neigh show 10.77.0.52 dev br-secvirt") == ""
    # IPv4: a datagram from web1's own address arrives, one with a forged
    # source address (web1's MAC, another IP) does not
    assert "from 10.77.0.50" in udp_received(WEB1_MAC, "10.77.0.50", 5551)
    assert udp_received(WEB1_MAC, "10.77.0.53", 5552) == ""


def test_role_applied_the_guests_limits_live_and_persistent():
    xml = definition("web1")
    assert "<shares>512</shares>" in xml
    assert re.search(r"<hard_limit unit='KiB'>262144</hard_limit>", xml), xml
    live = sh(VIRSH + " memtune web1")
    assert re.search(r"hard_limit\s*:\s*262144", live), live


# --------------------------------------------------------------- enforce hook


def backing_disk(name):
    """A qcow2 disk in the image directory whose backing file is a raw image
    beside it: a violation that fix leaves to the operator."""
    base, overlay = "/var/lib/libvirt/images/%s-base.raw" % name, "/var/lib/libvirt/images/%s.qcow2" % name
    sh("truncate -s 1M %s && qemu-img create -q -f qcow2 -b %s -F raw %s" % (base, base, overlay))
    return ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
            "<target dev='vda' bus='virtio'/></disk>" % overlay)


def test_hook_refuses_hand_defined_guests_that_violate_the_policy(guests):
    cases = {
        "gp-nofilter": (BARE_NIC, r"\[filter\] interface 52:54:00:[0-9a-f:]+ has no network filter "
                                  r"\(policy: clean-traffic\)"),
        "gp-backing": (backing_disk("gp-backing"),
                       r"\[disks\] disk vda /var/lib/libvirt/images/gp-backing.qcow2 has a backing file "
                       r"/var/lib/libvirt/images/gp-backing-base.raw \(allowed only in: nowhere\)"),
        "gp-vnc-any": ("<graphics type='vnc' listen='0.0.0.0'/>",
                       r"\[graphics\] vnc console listens on every address \(0.0.0.0\)"),
    }
    for name, (devices, _reason) in cases.items():
        guests.append(name)
        nested_guests.define(HOST, name, disk=False, devices=devices)
    # positive control: compliant (filtered NIC, raw disk in the image
    # directory, console on localhost), defined the same way, starts
    guests.append("gp-good")
    nested_guests.define(HOST, "gp-good", devices=FILTERED_NIC + "<graphics type='vnc' listen='127.0.0.1'/>")
    good = start("gp-good")
    assert good.rc == 0, good.stderr
    for name, (_devices, reason) in cases.items():
        refused = start(name)
        assert refused.rc != 0, name
        assert "secvirt guest policy: refusing to start %s" % name in refused.stderr, refused.stderr
        assert re.search(reason, refused.stderr), refused.stderr
        assert "shut off" in sh(VIRSH + " domstate %s", name)


def test_hook_judges_a_restore_like_a_start(guests):
    """A guest restored from a save file starts a new QEMU, and libvirt runs
    the hook's prepare step for it as for a start: a save file whose
    definition was edited into violation (virsh save-image-define, here
    without its filter) does not come back."""
    name, saved = "gp-saved", "/var/lib/libvirt/images/gp-saved.save"
    guests.append(name)
    nested_guests.define(HOST, name, disk=False, devices=FILTERED_NIC + "<graphics type='vnc' listen='127.0.0.1'/>")
    try:
        assert start(name).rc == 0
        sh(VIRSH + " save %s %s", name, saved)
        # positive control: the unedited save file restores
        restored = HOST.run(VIRSH + " restore %s", saved)
        assert restored.rc == 0, restored.stderr
        assert "running" in sh(VIRSH + " domstate %s", name)
        sh(VIRSH + " save %s %s", name, saved)
        xml = sh(VIRSH + " save-image-dumpxml --security-info %s", saved)
        edited = re.sub(r"<filterref[^>]*/>|<filterref.*?</filterref>", "", xml, flags=re.S)
        assert edited != xml and "filterref" not in edited
        sh("printf '%%s' %s > /root/gp-saved-edited.xml && " + VIRSH + " save-image-define %s /root/gp-saved-edited.xml",
           edited, saved)
        assert "filterref" not in sh(VIRSH + " save-image-dumpxml %s", saved)
        refused = HOST.run(VIRSH + " restore %s", saved)
        assert refused.rc != 0
        assert "secvirt guest policy: refusing to start %s" % name in refused.stderr, refused.stderr
        assert re.search(r"\[filter\] interface 52:54:00:[0-9a-f:]+ has no network filter \(policy: clean-traffic\)",
                         refused.stderr), refused.stderr
        assert "shut off" in sh(VIRSH + " domstate %s", name)
    finally:
        HOST.run("rm -f %s /root/gp-saved-edited.xml", saved)


def test_removed_hook_lets_violations_start_and_the_next_run_says_so_and_puts_it_back(guests):
    guests.append("gp-unhooked")
    nested_guests.define(HOST, "gp-unhooked", disk=False, devices=backing_disk("gp-unhooked"))
    assert start("gp-unhooked").rc != 0            # control: refused with the hook
    sh("rm -f %s" % HOOK)
    unhooked = start("gp-unhooked")                # what removing it costs
    assert unhooked.rc == 0, unhooked.stderr
    sh(VIRSH + " destroy gp-unhooked")
    out = role_ok()
    assert "the start hook %s was missing" % HOOK in out, out[-3000:]
    assert HOST.file(HOOK).mode == 0o755
    refused = start("gp-unhooked")
    assert refused.rc != 0 and "refusing to start gp-unhooked" in refused.stderr, refused.stderr


def test_hook_and_policy_files_are_roots_only():
    hook, policy = HOST.file(HOOK), HOST.file(POLICY)
    assert (hook.user, hook.group, hook.mode) == ("root", "root", 0o755)
    assert (policy.user, policy.group, policy.mode) == ("root", "root", 0o600)
    assert json.loads(sh("cat %s", POLICY))["guests"]["web1"]["interfaces"][WEB1_MAC]["ip"] == "10.77.0.50"


# ------------------------------------------------------------ report and fix

DRIFT_DEVICES = (BARE_NIC + "<graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0' passwd='s3cretvn'/>")


@pytest.fixture
def drift(guests):
    """A guest that violates the policy (no filter; VNC on every address with
    a password in its XML), then the converged enforce state back."""
    guests.append("gp-drift")
    nested_guests.define(HOST, "gp-drift", disk=False, devices=DRIFT_DEVICES)
    yield "gp-drift"
    HOST.run(VIRSH + " destroy gp-drift")
    role_ok()


def test_report_changes_nothing_then_check_mode_predicts_and_fix_brings_the_guest_into_policy(drift):
    before = definition(drift)
    assert "passwd='s3cretvn'" in before
    out = role_ok({"guest_policy_mode": "report"})
    assert re.search(r"gp-drift: interface 52:54:00:[0-9a-f:]+ has no network filter \(policy: clean-traffic\); "
                     r"vnc console has a passwd= in the definition", out), out[-3000:]
    assert "(mode report: not enforced)" in out
    assert definition(drift) == before                         # byte for byte
    assert not HOST.file(HOOK).exists                          # report mode uninstalls the role's hook
    # with the hook gone the violating guest starts: fix must say it needs a restart
    assert start(drift).rc == 0
    # fix, with bandwidth limits on this guest's interface as well
    bandwidth = {"interface_inbound": {"average": 1000, "peak": 2000, "burst": 1024},
                 "interface_outbound": {"average": 500}}
    fix = {"guest_policy_mode": "fix",
           "guest_policy_guests": dict(ROLE_VARS["guest_policy_guests"], **{drift: {"limits": bandwidth}})}
    check = role_ok(fix, args=["--check", "--diff"])
    assert recap_changed(check) > 0
    assert "guest gp-drift interface" in check and "clean-traffic" in check
    assert definition(drift) == before                         # check mode changed nothing
    tap = sh(VIRSH + " domiflist %s", drift).splitlines()[2].split()[0]
    assert "htb" not in sh("tc qdisc show dev %s", tap)        # control: no shaping before the fix
    fixed = role_ok(fix)
    assert "gp-drift keep running with their previous settings until they are restarted" in fixed
    after = definition(drift)
    assert "passwd=" not in after and "s3cretvn" not in after
    assert re.search(r"<graphics type='vnc'[^>]*listen='127.0.0.1'", after), after
    assert "<filterref filter='clean-traffic'" in after
    # the filter reached the running guest too (no restart needed for it)
    assert "clean-traffic" in sh(VIRSH + " dumpxml gp-drift")
    # the bandwidth: in the definition, and in force on the guest's tap (the
    # kernel shapes what the guest receives with htb, polices what it sends)
    assert re.search(r"<bandwidth>\s*<inbound average='1000' peak='2000' burst='1024'/>\s*"
                     r"<outbound average='500'/>\s*</bandwidth>", after), after
    tune = sh(VIRSH + " domiftune %s %s --live", drift, tap)
    assert re.search(r"inbound.average\s*:\s*1000\b", tune) and re.search(r"outbound.average\s*:\s*500\b", tune), tune
    qdiscs = sh("tc qdisc show dev %s", tap)
    assert "qdisc htb 1: root" in qdiscs and "qdisc ingress ffff:" in qdiscs, qdiscs
    # average 1000 KiB/s = 8192 kbit/s, peak twice that; iproute2 6.1 prints them rounded (8Mbit)
    classes = sh("tc class show dev %s", tap)
    assert re.search(r"class htb 1:1 .*rate (8192Kbit|8Mbit) ceil (16384Kbit|16Mbit)", classes), classes
    police = sh("tc filter show dev %s parent ffff:", tap)
    assert re.search(r"police .*rate (4096Kbit|4Mbit)", police), police
    again = role_ok(fix)
    assert recap_changed(again) == 0


# ------------------------------------------------------------ access control

ACL_KEY = "/root/.ssh/id_secvirt_acl"


@pytest.fixture(scope="module")
def acl_logins():
    """root on the KVM host may log in over SSH as alice and as bob (a key
    of its own): virsh then reaches libvirt as they do from a station."""
    sh("test -f %s || ssh-keygen -q -t ed25519 -N '' -f %s" % (ACL_KEY, ACL_KEY))
    for user in ("alice", "bob"):
        sh("install -d -m 0700 -o {u} -g {u} /home/{u}/.ssh && install -m 0600 -o {u} -g {u} {k}.pub "
           "/home/{u}/.ssh/authorized_keys".format(u=user, k=ACL_KEY))


def as_user(user, command):
    uri = "qemu+ssh://%s@localhost/system?keyfile=%s&no_verify=1" % (user, ACL_KEY)
    return HOST.run("virsh -c '%s' %s" % (uri, command))


def test_each_identity_sees_and_manages_only_its_guests_and_root_sees_all(guests, acl_logins):
    for name in ("acl-a", "acl-b"):
        guests.append(name)
        nested_guests.define(HOST, name, disk=False)
    assert {"acl-a", "acl-b", "web1"} <= set(sh(VIRSH + " list --all --name").split())
    # alice (acl-a, the default permissions) over SSH: lists and starts acl-a only
    listed = as_user("alice", "list --all --name")
    assert listed.rc == 0, listed.stderr
    assert listed.stdout.split() == ["acl-a"]
    started = as_user("alice", "start acl-a")
    assert started.rc == 0, started.stderr
    assert "running" in sh(VIRSH + " domstate acl-a")
    # acl-b does not exist for alice: libvirt answers its lookup as for a
    # guest that is not there (bob sees it below)
    refused = as_user("alice", "start acl-b")
    assert refused.rc != 0
    assert "error: failed to get domain 'acl-b'" in refused.stderr, refused.stderr
    assert "shut off" in sh(VIRSH + " domstate acl-b")
    stopped = as_user("alice", "destroy acl-a")
    assert stopped.rc == 0, stopped.stderr
    # bob (acl-b, getattr and read only): sees acl-b, may not start it
    seen = as_user("bob", "list --all --name")
    assert seen.rc == 0 and seen.stdout.split() == ["acl-b"], seen.stderr
    denied = as_user("bob", "start acl-b")
    assert denied.rc != 0
    assert "error: Failed to start domain 'acl-b'" in denied.stderr, denied.stderr
    assert "error: access denied: 'QEMU' denied access" in denied.stderr, denied.stderr
    assert "shut off" in sh(VIRSH + " domstate acl-b")


@pytest.fixture
def tcp_listener():
    """libvirtd also listening on TCP 16509 without authentication, for one
    test (a throw-away VM; libvirt_remote never does this), then as before."""
    sh("cp -p /etc/libvirt/libvirtd.conf /root/libvirtd.conf.before-tcp")
    sh("echo 'auth_tcp = \"none\"' >> /etc/libvirt/libvirtd.conf && systemctl stop libvirtd.service "
       "&& systemctl start libvirtd-tcp.socket && systemctl start libvirtd.service")
    yield "qemu+tcp://127.0.0.1/system"
    sh("systemctl stop libvirtd.service libvirtd-tcp.socket && cp -p /root/libvirtd.conf.before-tcp "
       "/etc/libvirt/libvirtd.conf && systemctl start libvirtd.service")


def test_with_access_control_a_tcp_client_gets_nothing(tcp_listener):
    # why guest_policy_acl refuses hosts where libvirt_remote listens: the
    # polkit driver cannot judge a client that has no UNIX process
    assert "web1" in sh(VIRSH + " list --all --name").split()         # control: root on the socket
    remote = HOST.run("virsh -c %s list --all --name" % tcp_listener)
    assert remote.rc != 0, remote.stdout
    # measured on libvirt 9.0: the connection itself is refused
    assert "error: failed to connect to the hypervisor" in remote.stderr, remote.stderr
    assert "error: access denied: 'QEMU' denied access" in remote.stderr, remote.stderr


# ------------------------------------------------------------- bad policy


BAD_POLICIES = [
    ({"guest_policy_filter": "no-such-filter"},
     r"network filter no-such-filter is not defined in libvirt"),
    ({"guest_policy_guests": {"web1": {"seclabel": {"type": "static", "model": "selinux",
                                                    "label": "system_u:system_r:svirt_t:s0:c5"}}}},
     r"guest web1 seclabel: .*categor"),
    ({"guest_policy_limits": {"memory_hard_limit": "512"}},
     r"memory_hard_limit: '512' is below 1 MiB \(a unit missing\?\)"),
    ({"guest_policy_limits": {"memory_hard_limit": "512MB/s"}},
     r"memory_hard_limit: '512MB/s' is not a size"),
    ({"guest_policy_mode": "audit"},
     r"guest_policy_mode.*(report, fix, enforce|choices)"),
    ({"guest_policy_acl": [{"user": "mallory", "guests": ["acl-a"]}]},
     r"guest_policy_acl: no such user on policyhost: mallory"),
    ({"guest_policy_acl": [{"user": "alice", "guests": ["acl-a"], "permissions": ["start", "fly"]}]},
     r"permissions are libvirt's domain permissions \(getattr, .*\): unknown fly"),
]


def test_bad_policy_fails_before_any_change():
    def state():
        return [file_digest(HOOK), file_digest(POLICY), hashlib.sha256(definition("web1").encode()).hexdigest()]
    before = state()
    # positive control: the converged policy passes and changes nothing
    assert recap_changed(role_ok(args=["--check"])) == 0
    # every bad policy in one ansible-playbook run, each refused on its own
    # (ansible_cli.run_role_cases); one of them also as a run of its own,
    # which must fail the play as an operator's run would
    outcomes = ansible_cli.run_role_cases("guest_policy", HOST_NAME, HOST_NAME,
                                          [dict(ROLE_VARS, **extra) for extra, _reason in BAD_POLICIES])
    for (extra, reason), outcome in zip(BAD_POLICIES, outcomes):
        assert outcome["failed"], (extra, outcome)
        assert re.search(reason, outcome["message"]), (extra, outcome)
        assert outcome["changed"] == [], (extra, outcome)
    extra, reason = BAD_POLICIES[0]
    proc, out = role(extra)
    assert proc.returncode != 0 and re.search(reason, out), out[-3000:]
    assert recap_changed(out) == 0
    assert state() == before
