"""Tiny nested TCG guests for the confinement checks (hypervisor, debian13).

A guest has 32 MiB, one vCPU, no OS and, optionally, a 1 MiB raw disk of
its own in /var/lib/libvirt/images: SeaBIOS finds nothing to boot and halts
(rebootTimeout -1), so the guest costs almost no CPU while its QEMU process,
labels and namespaces are real. ``host`` is a testinfra host.
"""
VIRSH = "virsh -c qemu:///system"
IMAGES = "/var/lib/libvirt/images"

GUEST_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
<features><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features>
<devices>{disk}{devices}<memballoon model='none'/></devices>{seclabel}</domain>"""
DISK_XML = ("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{path}'/>"
            "<target dev='vda' bus='virtio'/></disk>")


def define(host, name, disk=True, seclabel="", devices=""):
    """Define the guest (and create its disk image, mode 0600); ``devices``
    is more device XML (consoles)."""
    disk_xml = ""
    if disk:
        path = "%s/%s.img" % (IMAGES, name)
        host.check_output("truncate -s 1M %s && chmod 0600 %s", path, path)
        disk_xml = DISK_XML.format(path=path)
    xml = GUEST_XML.format(name=name, disk=disk_xml, seclabel=seclabel, devices=devices)
    host.check_output("printf '%%s' %s > /root/%s.xml && " + VIRSH + " define /root/%s.xml", xml, name, name)


def remove(host, name):
    host.run(VIRSH + " destroy %s; " + VIRSH + " undefine %s; rm -f %s/%s.img /root/%s.xml", name, name, IMAGES, name, name)


def qemu_process(host, name):
    """What the kernel says about the guest's QEMU process."""
    pid = int(host.check_output("cat /run/libvirt/qemu/%s.pid", name))
    lines = host.check_output("cat /proc/%d/status" % pid).splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    return {
        "pid": pid,
        "uuid": host.check_output(VIRSH + " domuuid %s", name).strip(),
        "label": host.check_output("cat /proc/%d/attr/current" % pid).strip(),
        "uid": status["Uid"].split(),
        "seccomp": status["Seccomp"].strip(),
        "capeff": status["CapEff"].strip(),
        "mnt": host.check_output("readlink /proc/%d/ns/mnt" % pid),
    }


def assert_confined(host, procs):
    """Each process: the QEMU user (never root), its own libvirt-<uuid>
    profile enforced, seccomp filter mode, no capabilities, its own mount
    namespace; and no two share a profile or a namespace."""
    qemu_uid = host.check_output("id -u libvirt-qemu").strip()
    root_mnt = host.check_output("readlink /proc/1/ns/mnt")
    for name, proc in procs.items():
        assert proc["uid"] == [qemu_uid] * 4, (name, proc)                         # real, effective, saved, fs
        assert proc["label"] == "libvirt-%s (enforce)" % proc["uuid"], (name, proc)  # its own profile, enforced
        assert proc["seccomp"] == "2", (name, proc)                                 # seccomp filter mode
        assert int(proc["capeff"], 16) == 0, (name, proc)                           # no capabilities
        assert proc["mnt"] != root_mnt, (name, proc)                                # a mount namespace of its own
    assert len({p["label"] for p in procs.values()}) == len(procs)
    assert len({p["mnt"] for p in procs.values()}) == len(procs)
