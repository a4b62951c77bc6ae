"""The guest policy checks (the same code is secvirt.kvm.guest_policy's
report and the role's libvirt start hook), on literal XML and image files."""
import io
import json
import struct

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import guest_policy as gp

MAC = "52:54:00:aa:bb:01"
DOMAIN = "<domain type='qemu'><name>%s</name>%s<devices>%s</devices></domain>"
NIC = "<interface type='bridge'><mac address='%s'/><source bridge='br0'/>%s</interface>"
FILTER = "<filterref filter='clean-traffic'><parameter name='IP' value='10.0.0.5'/></filterref>"


def policy(default=None, guests=None):
    return gp.normalize_policy(dict({"graphics_listen": ["192.0.2.10"]}, **(default or {})), guests)


def check(devices, name="g", extra="", pol=None, read_facts=None, listens=None):
    return gp.check_domain(DOMAIN % (name, extra, devices), pol or policy(), read_facts=read_facts,
                           qemu_conf_listen=listens)


def checks_of(violations):
    return sorted(set(kind for kind, _reason in violations))


def test_a_compliant_guest_has_no_violation():
    devices = NIC % (MAC, FILTER) + "<graphics type='vnc' listen='192.0.2.10'/>"
    assert check(devices) == []


def test_interface_without_filter_or_with_another_filter():
    [(kind, reason)] = check(NIC % (MAC, ""))
    assert kind == "filter" and reason == "interface %s has no network filter (policy: clean-traffic)" % MAC
    [(_kind, other)] = check(NIC % (MAC, "<filterref filter='allow-all'/>"))
    assert other == "interface %s has filter allow-all, policy: clean-traffic" % MAC


def test_interface_ip_must_be_the_policys():
    pol = policy(guests={"g": {"interfaces": {MAC.upper(): {"ip": "10.0.0.6"}}}})
    [(_kind, reason)] = check(NIC % (MAC, FILTER), pol=pol)
    assert reason == "interface %s filter parameter IP is 10.0.0.5, policy: 10.0.0.6" % MAC
    # another guest keeps the default: no IP is required of it
    assert check(NIC % (MAC, FILTER), name="other", pol=pol) == []


def test_seclabel_none_and_unrelabelled_disks_are_refused():
    got = check("", extra="<seclabel type='none'/>")
    assert got == [("seclabel", "sVirt confinement switched off (<seclabel type='none' model=None>)")]
    disk = ("<disk type='file'><driver type='raw'/><source file='/var/lib/libvirt/images/a.img'>"
            "<seclabel model='dac' relabel='no'/></source><target dev='vda'/></disk>")
    assert checks_of(check(disk, pol=policy({"image_dirs": ["/var/lib/libvirt/images"]}))) == ["seclabel"]


def test_static_label_wanted():
    pol = policy(guests={"g": {"seclabel": {"type": "static", "model": "selinux",
                                            "label": "system_u:system_r:svirt_t:s0:c1,c2"}}})
    [(_kind, reason)] = check("", pol=pol)
    assert reason.startswith("static selinux label system_u:system_r:svirt_t:s0:c1,c2 wanted")
    ok = ("<seclabel type='static' model='selinux' relabel='yes'>"
          "<label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel>")
    assert check("", extra=ok, pol=pol) == []


@pytest.mark.parametrize("graphics, reason", [
    ("<graphics type='vnc' listen='0.0.0.0'/>", "vnc console listens on every address (0.0.0.0)"),
    ("<graphics type='vnc'><listen type='address' address='::'/></graphics>", "vnc console listens on every address (::)"),
    ("<graphics type='vnc' listen='198.51.100.1'/>", "vnc console listens on 198.51.100.1, policy allows 192.0.2.10"),
    ("<graphics type='vnc'><listen type='network' network='default'/></graphics>",
     "vnc console listens on network:default, policy allows 192.0.2.10"),
    ("<graphics type='spice' listen='192.0.2.10'/>", "spice console keeps a plaintext port (defaultMode is not 'secure')"),
])
def test_console_listens_and_modes(graphics, reason):
    assert check(graphics) == [("graphics", reason)]


def test_console_password_is_refused_and_the_default_listen_comes_from_qemu_conf():
    [(_kind, reason)] = check("<graphics type='vnc' listen='127.0.0.1' passwd='x'/>")
    assert reason.startswith("vnc console has a passwd= in the definition")
    assert check("<graphics type='vnc'/>", listens={"vnc": "192.0.2.10"}) == []
    assert check("<graphics type='vnc'/>", listens={"vnc": "0.0.0.0"}) == [
        ("graphics", "vnc console listens on every address (0.0.0.0)")]


def test_disks_declare_their_format_and_live_in_the_image_dirs():
    pol = policy({"image_dirs": ["/var/lib/libvirt/images"]})
    disk = "<disk type='file'>%s<source file='%s'/><target dev='vda'/></disk>"
    got = check(disk % ("", "/var/lib/libvirt/images/a.img"), pol=pol)
    assert got == [("disks", "disk vda (/var/lib/libvirt/images/a.img) does not declare its format "
                             "(<driver type>): libvirt would have to probe it")]
    got = check(disk % ("<driver type='raw'/>", "/var/lib/libvirt/images/../../../../etc/shadow"), pol=pol)
    assert got == [("disks", "disk vda /var/lib/libvirt/images/../../../../etc/shadow is outside the image "
                             "directories (/var/lib/libvirt/images)")]
    store = ("<disk type='file'><driver type='qcow2'/><source file='/var/lib/libvirt/images/a.qcow2'/>"
             "<backingStore type='file'><format type='raw'/><source file='/srv/base.raw'/></backingStore>"
             "<target dev='vda'/></disk>")
    assert check(store, pol=pol) == [("disks", "disk vda has a backing store /srv/base.raw (allowed only in: nowhere)")]
    assert check(store, pol=policy({"backing_dirs": ["/srv"]})) == []


def qcow2(path, size, backing=b""):
    header = b"QFI\xfb" + struct.pack(">IQI", 3, 104 if backing else 0, len(backing)) + struct.pack(">IQ", 0, size)
    path.write_bytes(header.ljust(104, b"\0") + backing)


def test_image_headers_are_read_for_backing_files_and_size(tmp_path):
    qcow2(tmp_path / "over.qcow2", 2 << 30, b"base.raw")
    qcow2(tmp_path / "small.qcow2", 1 << 20)
    (tmp_path / "fake.qcow2").write_bytes(b"\0" * 512)
    pol = policy({"image_dirs": [str(tmp_path)], "max_virtual_size": "1GiB"})
    disk = "<disk type='file'><driver type='%s'/><source file='%s/%s'/><target dev='vda'/></disk>"
    got = check(disk % ("qcow2", tmp_path, "over.qcow2"), pol=pol, read_facts=gp.read_image_facts)
    assert got == [
        ("disks", "disk vda %s/over.qcow2 has a backing file base.raw (allowed only in: nowhere)" % tmp_path),
        ("disks", "disk vda %s/over.qcow2 has a virtual size of 2147483648 bytes, above the bound of 1073741824"
         % tmp_path)]
    assert check(disk % ("qcow2", tmp_path, "small.qcow2"), pol=pol, read_facts=gp.read_image_facts) == []
    # relative backing files resolve next to the image
    allowed = policy({"image_dirs": [str(tmp_path)], "backing_dirs": [str(tmp_path)]})
    assert check(disk % ("qcow2", tmp_path, "over.qcow2"), pol=allowed, read_facts=gp.read_image_facts) == []
    [(_kind, fake)] = check(disk % ("qcow2", tmp_path, "fake.qcow2"), pol=pol, read_facts=gp.read_image_facts)
    assert fake.endswith("declared qcow2 but has no qcow2 header")


def test_hostdev_only_where_allowed():
    dev = ("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x03' slot='0x00' "
           "function='0x0'/></source></hostdev>")
    [(kind, reason)] = check(dev)
    assert kind == "hostdev" and "bus=0x03" in reason
    assert check(dev, pol=policy(guests={"g": {"allow_hostdev": True}})) == []


def test_limits():
    pol = policy({"limits": {"memory_hard_limit": "1GiB", "cpu_shares": 512,
                             "interface_inbound": {"average": 1000}}})
    got = check(NIC % (MAC, FILTER), pol=pol)
    assert got == [("limits", "cpu_shares is unset, policy: 512"),
                   ("limits", "memory_hard_limit is unset, policy: 1048576 KiB"),
                   ("limits", "interface %s inbound bandwidth is unlimited, policy: average=1000" % MAC)]
    nic = NIC % (MAC, FILTER + "<bandwidth><inbound average='1000'/></bandwidth>")
    extra = "<memtune><hard_limit unit='GiB'>1</hard_limit></memtune><cputune><shares>512</shares></cputune>"
    assert check(nic, extra=extra, pol=pol) == []


def test_checks_switched_off_refuse_nothing():
    pol = policy({"checks": ["graphics"]})
    assert check(NIC % (MAC, ""), extra="<seclabel type='none'/>", pol=pol) == []
    pol = policy(guests={"g": {"checks": []}})
    assert check("<graphics type='vnc' listen='0.0.0.0'/>", pol=pol) == []


@pytest.mark.parametrize("default, guests, message", [
    ({"checks": ["filter", "nope"]}, None, "unknown check(s) nope"),
    ({"limits": {"memory_hard_limit": "512"}}, None, "is below 1 MiB (a unit missing?)"),
    ({"limits": {"memory_hard_limit": "1 parsec"}}, None, "is not a size"),
    ({"limits": {"cpu_share": 5}}, None, "unknown key(s) cpu_share"),
    ({"limits": {"cpu_shares": 0}}, None, "cpu_shares: 0 is outside [1, 262144]"),
    ({"limits": {"interface_inbound": {"peak": 5}}}, None, "a mapping with average"),
    ({"image_dirs": ["images"]}, None, "'images' is not an absolute directory"),
    ({"graphics_listen": ["0.0.0.0"]}, None, "is a wildcard"),
    ({"colour": "red"}, None, "unknown key(s) colour"),
    ({}, {"g": {"interfaces": {"not-a-mac": {}}}}, "'not-a-mac' is not a MAC address"),
    ({}, {"g": {"seclabel": {"type": "none"}}}, "(dynamic or static; none is what the policy refuses)"),
    ({}, {"g": {"seclabel": {"type": "static"}}}, "a static label needs model and label"),
])
def test_bad_policy_is_refused(default, guests, message):
    with pytest.raises(gp.PolicyError) as err:
        gp.normalize_policy(default, guests)
    assert message in str(err.value)


def test_guest_overrides_merge_limits_with_the_default():
    pol = gp.normalize_policy({"limits": {"cpu_shares": 100, "memory_hard_limit": "1GiB"}},
                              {"g": {"limits": {"cpu_shares": 200}}})
    assert pol["guests"]["g"]["limits"] == {"cpu_shares": 200, "memory_hard_limit": 1048576}
    assert pol["default"]["limits"]["cpu_shares"] == 100


def test_fix_graphics_moves_the_console_and_drops_the_password():
    xml = DOMAIN % ("g", "", "<graphics type='vnc' listen='0.0.0.0' passwd='x'><listen type='address' "
                             "address='0.0.0.0'/></graphics><graphics type='spice' listen='127.0.0.1'/>")
    fixed, changes = gp.fix_graphics(xml, policy()["default"])
    assert changes == ["vnc console: passwd removed", "vnc console: listens on 192.0.2.10 (was 0.0.0.0)",
                       "spice console: defaultMode='secure'"]
    assert check(fixed.split("<devices>")[1].split("</devices>")[0]) == []
    assert gp.fix_graphics(fixed, policy()["default"])[1] == []


@pytest.mark.parametrize("listens", [None, {"vnc": "192.0.2.10"}], ids=["qemu.conf-default", "qemu.conf-mgmt"])
def test_fix_graphics_changes_only_what_the_check_refuses(listens):
    """A console on the default listen address of qemu.conf (127.0.0.1, or
    the management address qemu_tls sets) passes the check: the fix of its
    passwd= must not also move it (it used to rewrite every default-listen
    console to the policy's first address, which the check had accepted)."""
    devices = "<graphics type='vnc' passwd='x'/>"
    assert check(devices, listens=listens) == [
        ("graphics", "vnc console has a passwd= in the definition (readable by everyone who can read the XML): "
                     "use TLS client certificates or SASL")]
    fixed, changes = gp.fix_graphics(DOMAIN % ("g", "", devices), policy()["default"], qemu_conf_listen=listens)
    assert changes == ["vnc console: passwd removed"]
    assert "<graphics type=\"vnc\" />" in fixed
    assert check(fixed.split("<devices>")[1].split("</devices>")[0], listens=listens) == []
    # a default listen the policy does not allow is still moved
    wide = {"vnc": "0.0.0.0"}
    fixed, changes = gp.fix_graphics(DOMAIN % ("g", "", devices), policy()["default"], qemu_conf_listen=wide)
    assert changes == ["vnc console: passwd removed",
                       "vnc console: listens on 192.0.2.10 (was the default listen address 0.0.0.0)"]
    assert check(fixed.split("<devices>")[1].split("</devices>")[0], listens=wide) == []


def run_hook(tmp_path, argv, xml, pol=None):
    path = tmp_path / "policy.json"
    if pol is not False:
        path.write_text(json.dumps(pol or {"default": {"graphics_listen": ["192.0.2.10"]}, "guests": {}}))
    err = io.StringIO()
    code = gp.hook_main(argv, io.StringIO(xml), err, policy_file=str(path), qemu_conf=str(tmp_path / "none"))
    return code, err.getvalue()


def test_hook_refuses_a_violating_start_with_every_reason(tmp_path):
    xml = DOMAIN % ("bad", "", NIC % (MAC, "") + "<graphics type='vnc' listen='0.0.0.0'/>")
    code, err = run_hook(tmp_path, ["bad", "prepare", "begin", "-"], xml)
    assert code == 1
    assert err == ("secvirt guest policy: refusing to start bad: [filter] interface %s has no network filter "
                   "(policy: clean-traffic); [graphics] vnc console listens on every address (0.0.0.0)\n" % MAC)
    good = DOMAIN % ("good", "", NIC % (MAC, FILTER))
    assert run_hook(tmp_path, ["good", "prepare", "begin", "-"], good) == (0, "")


def test_hook_never_judges_other_operations(tmp_path):
    # reconnect: libvirt kills a running guest whose reconnect hook fails
    xml = DOMAIN % ("bad", "", NIC % (MAC, ""))
    for op in (["reconnect", "begin"], ["release", "end"], ["started", "begin"], ["stopped", "end"]):
        assert run_hook(tmp_path, ["bad"] + op + ["-"], xml) == (0, "")


def test_hook_fails_closed_without_its_policy(tmp_path):
    code, err = run_hook(tmp_path, ["g", "prepare", "begin", "-"], DOMAIN % ("g", "", ""), pol=False)
    assert code == 1 and "the policy %s/policy.json cannot be read" % tmp_path in err


def test_qemu_conf_listen_keys():
    text = 'vnc_listen = "192.0.2.10"\n# spice_listen = "0.0.0.0"\n'
    assert gp.qemu_conf_value(text, "vnc_listen") == "192.0.2.10"
    assert gp.qemu_conf_value(text, "spice_listen") is None


def test_a_link_in_the_image_directory_to_a_file_elsewhere_is_elsewhere(tmp_path):
    images, outside = tmp_path / "images", tmp_path / "etc"
    images.mkdir()
    outside.mkdir()
    (outside / "shadow").write_bytes(b"root:x")
    (images / "disk.raw").symlink_to(outside / "shadow")
    pol = policy({"image_dirs": [str(images)]})
    disk = "<disk type='file'><driver type='raw'/><source file='%s/disk.raw'/><target dev='vda'/></disk>" % images
    assert check(disk, pol=pol) == [("disks", "disk vda %s/disk.raw is outside the image directories (%s)"
                                     % (images, images))]
