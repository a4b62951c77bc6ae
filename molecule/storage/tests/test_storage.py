"""Encrypted guest storage, checked on the host the way an operator would.

No test depends on another's order: each test that runs Ansible checks its
own output for the passphrases (assert_no_passphrase_in), and the scans of
the VM's files and disk blocks hold whenever they run (they are last in the
file, so that they also see what every other test wrote).
"""
import json
import mmap
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_harness"))
import ansible_cli  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOSTS = RUNNER.get_hosts("kvm_hosts")
EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
KDF = {"pbkdf_memory": 65536, "pbkdf_iterations": 4, "pbkdf_parallel": 1}
MIB = 1024 * 1024
KVM01_LV = "/dev/vg_guests/kvm01_luks"
VAULT01_LV = "/dev/vg_guests/vault01_luks"
SCRATCH_LV = "/dev/vg_guests/scratch"
VIRSH = "virsh --connect qemu:///system "


@pytest.fixture(scope="module", params=HOSTS)
def host(request):
    machine = RUNNER.get_host(request.param)
    machine.inventory_name = request.param
    return machine


@pytest.fixture(scope="module")
def secrets(host):
    found = {k: v for k, v in RUNNER.get_variables(host.inventory_name).items() if k.startswith("secvirt_test_")}
    assert len(found) == 5
    return found


def module(host, name, args, check=False, diff=False):
    """Run one of our modules ad hoc; it must succeed. The arguments travel as
    JSON through Ansible's pipelined module input, not as argv on the VM."""
    result = ansible_cli.run_module(host.inventory_name, name, args, check=check, diff=diff)
    assert not result["failed"], result
    return result


def refused(host, name, args, check=False):
    """Run one of our modules ad hoc; it must fail. Returns its result."""
    result = ansible_cli.run_module(host.inventory_name, name, args, check=check)
    assert result["failed"], result
    return result


def unlocks(host, device, passphrase):
    """Whether a passphrase opens a keyslot. It reaches cryptsetup on stdin
    from the shell's printf builtin: never a process argument of its own,
    never a file, never an Ansible module argument (which would be logged)."""
    result = host.run("printf '%%s' %s | cryptsetup open --test-passphrase %s"
                      % (shlex.quote(passphrase), device))
    assert result.rc in (0, 2), result.stderr  # 2: no key available with this passphrase
    return result.rc == 0


# --- LVM and LUKS2 ---------------------------------------------------------

def test_volume_group_on_the_data_disk_holds_the_logical_volumes(host):
    assert host.check_output("pvs --noheadings -o pv_name,vg_name").split() == ["/dev/vdb", "vg_guests"]
    lvs = host.check_output("lvs --noheadings -o lv_name vg_guests").split()
    assert {"kvm01_luks", "vault01_luks"} <= set(lvs)


@pytest.mark.parametrize("device", [KVM01_LV, VAULT01_LV])
def test_luks_header_is_luks2_aes_xts_512_argon2id(host, device):
    dump = host.check_output("cryptsetup luksDump %s" % device)
    assert re.search(r"^Version:\s+2$", dump, re.M)
    assert re.search(r"^\s+cipher:\s+aes-xts-plain64$", dump, re.M)
    assert re.search(r"^\s+PBKDF:\s+argon2id$", dump, re.M)
    assert re.search(r"^\s+Key:\s+512 bits$", dump, re.M)
    assert re.search(r"^\s+Memory:\s+65536$", dump, re.M)
    assert re.search(r"^\s+Time cost:\s+4$", dump, re.M)


def test_opened_volume_is_a_usable_mapper_device(host):
    mapper = host.file("/dev/mapper/kvm01")
    assert mapper.exists
    assert host.run("test -b /dev/mapper/kvm01").rc == 0
    status = host.check_output("cryptsetup status kvm01")
    assert "/dev/mapper/kvm01 is active" in status
    assert re.search(r"type:\s+LUKS2", status)
    assert re.search(r"device:\s+/dev/mapper/vg_guests-kvm01_luks", status)
    # usable: the kernel reports its size (96 MiB LV minus the 16 MiB LUKS2 header)
    assert int(host.check_output("blockdev --getsize64 /dev/mapper/kvm01")) == 80 * MIB


def test_closed_volume_has_no_mapper_device(host):
    assert not host.file("/dev/mapper/vault01").exists
    assert host.run("cryptsetup status vault01").rc == 4


def test_passphrase_unlocks_and_a_wrong_one_does_not(host, secrets):
    assert unlocks(host, VAULT01_LV, secrets["secvirt_test_passphrase_vault01"])
    assert not unlocks(host, VAULT01_LV, "not the passphrase")


# --- migration and the nested guest ---------------------------------------

def test_image_migrated_byte_for_byte(host):
    size = 64 * MIB
    assert host.file("/root/kvm01.reference.img").size == size
    assert host.run("cmp -n %d /root/kvm01.reference.img /dev/mapper/kvm01" % size).rc == 0


def test_guest_definition_points_at_the_mapper_device(host):
    xml = host.check_output(VIRSH + "dumpxml --inactive kvm01")
    assert re.search(r"<disk type='block' device='disk'>", xml)
    assert "<source dev='/dev/mapper/kvm01'" in xml
    assert re.search(r"<driver name='qemu' type='raw' cache='none'/>", xml)
    assert "kvm01.img" not in xml


def test_nested_guest_runs_on_the_encrypted_volume(host):
    """kvm01 (nested TCG, direct kernel boot of the VM's own kernel) runs with
    its disk on the mapper device; it is paused again afterwards so that its
    emulated vCPU does not slow down the remaining tests."""
    assert host.check_output(VIRSH + "domstate kvm01") in ("paused", "running")
    host.run_expect([0], VIRSH + "resume kvm01 || true")
    try:
        assert host.check_output(VIRSH + "domstate kvm01") == "running"
        blk = host.check_output(VIRSH + "domblklist kvm01 --details")
        assert re.search(r"block\s+disk\s+vda\s+/dev/mapper/kvm01", blk)
        # qemu itself opened the device and reports its size to libvirt
        info = host.check_output(VIRSH + "domblkinfo kvm01 vda")
        assert re.search(r"Capacity:\s+%d" % (80 * MIB), info)
        pid = host.check_output("cat /run/libvirt/qemu/kvm01.pid")
        dm = host.check_output("readlink -f /dev/mapper/kvm01")
        fds = host.check_output("ls -l /proc/%s/fd" % pid)
        assert dm in fds, "qemu does not hold %s open" % dm
        assert "kvm01.img" not in host.check_output("cat /proc/%s/cmdline | tr '\\0' ' '" % pid)
        time.sleep(5)
        assert host.check_output(VIRSH + "domstate kvm01") == "running"
    finally:
        host.run(VIRSH + "suspend kvm01")


def test_closing_a_volume_a_running_guest_uses_is_refused(host, secrets):
    err = refused(host, "secvirt.kvm.luks_volume", dict(name="kvm01", device=KVM01_LV, state="closed",
                                                        passphrase=secrets["secvirt_test_passphrase_kvm01"], **KDF))
    assert "guest(s) kvm01 still use /dev/mapper/kvm01" in err["msg"]
    assert host.run("cryptsetup status kvm01").rc == 0


def test_migrating_a_running_guest_is_refused(host):
    err = refused(host, "secvirt.kvm.libvirt_guest_disk", dict(domain="kvm01", target="vda", dev="/dev/mapper/vault01"))
    assert "refusing to move disk vda of guest kvm01" in err["msg"]
    assert "shut it down first" in err["msg"]


# --- signatures and force -------------------------------------------------

def test_device_with_a_signature_is_not_formatted_without_force(host, secrets):
    if host.run("blkid -p -s TYPE -o value %s" % SCRATCH_LV).stdout.strip() != "ext4":
        host.run_expect([0], "wipefs -aq %s && mkfs.ext4 -q %s" % (SCRATCH_LV, SCRATCH_LV))
    args = dict(name="scratch", device=SCRATCH_LV, state="closed",
                passphrase=secrets["secvirt_test_passphrase_scratch"], **KDF)
    err = refused(host, "secvirt.kvm.luks_volume", args)
    assert "refusing to format %s: it holds ext4 filesystem" % SCRATCH_LV in err["msg"]
    assert host.check_output("blkid -p -s TYPE -o value %s" % SCRATCH_LV) == "ext4"

    forced = module(host, "secvirt.kvm.luks_volume", dict(args, force=True))
    assert forced["changed"] and forced["actions"] == ["wipefs", "format"]
    assert host.check_output("blkid -p -s TYPE -o value %s" % SCRATCH_LV) == "crypto_LUKS"
    # force never reformats a LUKS header: the same call again changes nothing
    assert not module(host, "secvirt.kvm.luks_volume", dict(args, force=True))["changed"]


# --- image directories and libvirt secrets --------------------------------

def test_image_directory_and_images_are_private(host):
    images = host.file("/var/lib/libvirt/images")
    assert images.user == "root" and images.group == "root" and images.mode == 0o711
    image = host.file("/var/lib/libvirt/images/kvm01.img")
    assert image.mode == 0o600


def test_libvirt_secret_is_private_ephemeral_and_not_on_disk(host, secrets):
    listing = host.check_output(VIRSH + "secret-list")
    line = [ln for ln in listing.splitlines() if "/var/lib/libvirt/images/guest03.qcow2" in ln]
    assert len(line) == 1
    uuid = line[0].split()[0]
    xml = host.check_output(VIRSH + "secret-dumpxml %s" % uuid)
    assert "ephemeral='yes'" in xml and "private='yes'" in xml
    denied = host.run(VIRSH + "secret-get-value %s" % uuid)
    assert denied.rc != 0 and "private" in denied.stderr
    assert secrets["secvirt_test_secret_value"] not in denied.stdout + denied.stderr
    assert not host.file("/etc/libvirt/secrets/%s.base64" % uuid).exists
    assert not host.file("/etc/libvirt/secrets/%s.xml" % uuid).exists


def test_libvirt_secret_check_mode_defines_nothing_and_never_shows_the_value(host, secrets):
    args = dict(usage_type="volume", usage_id="/var/lib/libvirt/images/guest04.qcow2",
                description="check-mode probe", value=secrets["secvirt_test_secret_value"] + "-new")
    result = module(host, "secvirt.kvm.libvirt_secret", args, check=True, diff=True)
    assert result["changed"]
    assert "guest04" not in host.check_output(VIRSH + "secret-list")
    assert secrets["secvirt_test_secret_value"] not in result["_cli_stdout"]


# --- image_check -----------------------------------------------------------

@pytest.fixture(scope="module")
def images(host):
    d = "/root/imgtest"
    host.run_expect([0], " && ".join([
        "rm -rf %s" % d, "mkdir -m 0700 %s" % d,
        "qemu-img create -q -f qcow2 %s/good.qcow2 16M" % d,
        "qemu-img create -q -f qcow2 -F qcow2 -b %s/good.qcow2 %s/backed.qcow2" % (d, d),
        "qemu-img create -q -f raw %s/plain.raw 4M" % d,
        "qemu-img create -q -f qcow2 %s/huge.qcow2 8T" % d,
        "ln -s %s/good.qcow2 %s/link.qcow2" % (d, d),
    ]))
    return d


def check(host, path, fmt, limit="1G"):
    # image_check only reads: run it in check mode, as a cautious operator would
    return module(host, "secvirt.kvm.image_check", dict(path=path, format=fmt, max_virtual_size=limit), check=True)


def check_refused(host, path, fmt, limit="1G"):
    return refused(host, "secvirt.kvm.image_check", dict(path=path, format=fmt, max_virtual_size=limit), check=True)


def test_image_check_accepts_a_good_image(host, images):
    result = check(host, images + "/good.qcow2", "qcow2")
    assert result["accepted"] and result["reasons"] == []
    assert result["image"]["format"] == "qcow2" and result["image"]["virtual_size"] == 16 * MIB
    assert result["image"]["backing_file"] is None


@pytest.mark.parametrize("name,fmt,reason", [
    ("backed.qcow2", "qcow2", "backing file"),
    ("plain.raw", "qcow2", "not in the declared format qcow2"),
    ("huge.qcow2", "qcow2", "exceeds the limit of 1073741824 bytes"),
    ("good.qcow2", "raw", "starts with a qcow2 header"),
    ("link.qcow2", "qcow2", "symbolic link"),
])
def test_image_check_rejects(host, images, name, fmt, reason):
    err = check_refused(host, "%s/%s" % (images, name), fmt)
    assert err["accepted"] is False
    assert any(reason in r for r in err["reasons"]), err["reasons"]


# --- header backups --------------------------------------------------------

HEADERS = os.path.join(EPHEMERAL, "luks-headers")


@pytest.mark.parametrize("name", ["kvm01", "vault01"])
def test_luks_header_backup_fetched_to_the_controller_only(host, name):
    path = os.path.join(HEADERS, host.inventory_name, "%s.luksheader" % name)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    # only the controller's user may even list the backups
    for directory in (HEADERS, os.path.dirname(path)):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    # the fetched copy was renamed into place: no partial file is left
    assert sorted(os.listdir(os.path.dirname(path))) == ["kvm01.luksheader", "vault01.luksheader"]
    # ... and the scratch directory it was fetched into is gone, with anything a transfer left there
    assert [entry for entry in os.listdir(HEADERS) if entry.startswith(".")] == []
    assert st.st_size >= 16 * MIB
    with open(path, "rb") as fh:
        assert fh.read(6) == b"LUKS\xba\xbe"
    assert not host.file("/run/secvirt-luks-headers").exists


# --- key rotation through the role, with Ansible's output captured --------

def playbook(tmp, volume_vars, **extra):
    path = os.path.join(tmp, "rotate.yml")
    with open(path, "w") as fh:
        fh.write(json.dumps([{
            "name": "Run the role on one volume",
            "hosts": "kvm_hosts",
            "vars": dict(encrypted_storage_vg="vg_guests", encrypted_storage_pbkdf_memory=65536,
                         encrypted_storage_pbkdf_iterations=4, encrypted_storage_pbkdf_parallel=1,
                         encrypted_storage_volumes=[volume_vars], **extra),
            "roles": [{"role": "secvirt.kvm.encrypted_storage"}],
        }]))
    return path


def run_playbook(path, check=False):
    argv = ["ansible-playbook", "-vvv", "-i", os.environ["MOLECULE_INVENTORY_FILE"], path]
    if check:
        argv += ["--check", "--diff"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"), check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def changed_tasks(output):
    """Names of the tasks that reported a change, read from the default
    callback's output ("TASK [role : name]" headers, "changed: [host]" lines)."""
    names = set()
    for block in re.split(r"^TASK \[", output, flags=re.M)[1:]:
        header = block.split("]", 1)[0]
        # "changed: [kvmhost]", or "changed: [kvmhost -> localhost]" when delegated
        if re.search(r"^changed: \[kvmhost[] ]", block, re.M):
            names.add(header.split(" : ", 1)[-1])
    return names


def header_sha256_on_the_host(host, lv):
    """A fresh luksHeaderBackup of the volume, hashed on the VM (byte copy of
    the header area: equal hashes mean the same keyslots)."""
    out = host.check_output("f=$(mktemp -u /run/hdr.XXXXXX) && cryptsetup luksHeaderBackup --batch-mode "
                            "--header-backup-file $f %s && sha256sum $f && rm -f $f" % lv)
    return out.split()[0]


def sha256_of(path):
    import hashlib  # pylint: disable=import-outside-toplevel
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


LUKS_TASK = "Format, open or close the encrypted volumes and align their keyslots"
BACKUP_TASK = "Write the LUKS header backups"


def assert_no_passphrase_in(outputs, secrets):
    """Ansible's output of a test (-vvv, --diff) holds no passphrase, and
    shows that a value was censored where one was passed."""
    text = "".join(outputs)
    for value in all_passphrases(secrets):
        assert value not in text
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in text or "censored" in text


def test_passphrase_rotation_and_recovery_keyslot_with_the_role(host, secrets):
    old = secrets["secvirt_test_passphrase_vault01"]
    new = secrets["secvirt_test_passphrase_rotated"]
    recovery = new + "-recovery"
    base = dict(name="vault01", size="32M", state="closed")
    backup = os.path.join(HEADERS, host.inventory_name, "vault01.luksheader")
    converged = sha256_of(backup)
    assert converged == header_sha256_on_the_host(host, VAULT01_LV)  # positive control
    with tempfile.TemporaryDirectory() as tmp:
        out = run_playbook(playbook(tmp, dict(base, passphrase=new, previous_passphrase=old,
                                              add_passphrases=[recovery]),
                                    encrypted_storage_header_backup_dir=HEADERS))
        outputs = [out]
        # the keyslots changed, so the controller's header backup was taken again
        assert changed_tasks(out) == {LUKS_TASK, BACKUP_TASK}
        assert sha256_of(backup) == header_sha256_on_the_host(host, VAULT01_LV) != converged
        assert unlocks(host, VAULT01_LV, new)
        assert unlocks(host, VAULT01_LV, recovery)
        assert not unlocks(host, VAULT01_LV, old)
        # back to the converge passphrase, dropping the recovery keyslot
        out = run_playbook(playbook(tmp, dict(base, passphrase=old, previous_passphrase=new,
                                              remove_passphrases=[recovery]),
                                    encrypted_storage_header_backup_dir=HEADERS))
        outputs.append(out)
        assert changed_tasks(out) == {LUKS_TASK, BACKUP_TASK}
    # the backup on the controller no longer holds the rotated-away keyslots
    assert sha256_of(backup) == header_sha256_on_the_host(host, VAULT01_LV)
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert unlocks(host, VAULT01_LV, old)
    assert not unlocks(host, VAULT01_LV, new)
    assert not unlocks(host, VAULT01_LV, recovery)
    assert_no_passphrase_in(outputs, secrets)


def test_check_mode_predicts_the_changes_of_the_real_run(host, secrets):
    """--check --diff on a volume that does not exist yet reports a change on
    exactly the tasks the real run then changes (lvcreate, luksFormat, the
    header backup), and changes nothing; the same for its destruction."""
    probe = dict(name="probe", size="32M", state="closed", passphrase=secrets["secvirt_test_passphrase_scratch"])
    lv = "/dev/vg_guests/probe_luks"
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        headers = os.path.join(tmp, "headers")
        steps = [
            (probe, {"Create the logical volumes that will hold the LUKS headers", LUKS_TASK, BACKUP_TASK,
                     "Keep the header backup directories on the controller private to its user"}),
            (dict(probe, state="absent", wipe=True), {LUKS_TASK, "Remove the logical volumes of destroyed volumes"}),
        ]
        for volume, expected in steps:
            path = playbook(tmp, volume, encrypted_storage_header_backup_dir=headers)
            before = host.run("lvs --noheadings -o lv_name vg_guests").stdout.split()
            predicted = run_playbook(path, check=True)
            outputs.append(predicted)
            assert host.run("lvs --noheadings -o lv_name vg_guests").stdout.split() == before
            assert changed_tasks(predicted) == expected, predicted[-6000:]
            done = run_playbook(path)
            outputs.append(done)
            assert changed_tasks(done) == expected, done[-6000:]
    assert "probe_luks" not in host.check_output("lvs --noheadings -o lv_name vg_guests")
    assert host.run("test -e %s" % lv).rc == 1
    assert_no_passphrase_in(outputs, secrets)


def all_passphrases(secrets):
    values = list(secrets.values())
    return values + [secrets["secvirt_test_passphrase_rotated"] + "-recovery"]


# Kernel pseudo filesystems: no file in them is written by a program.
PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "bpf",
             "pstore", "mqueue", "hugetlbfs", "configfs", "fusectl", "autofs", "binfmt_misc", "efivarfs"}


def test_passphrases_absent_from_the_vm_filesystem(host, secrets):
    """Every file the VM holds outside its root filesystem: tmpfs (/run,
    /dev/shm), and anything mounted from a mapper device, whose blocks are
    encrypted or not on the VM's disk images at all. The root filesystem
    (/dev/vda) is scanned block by block from outside by the next test,
    deleted files and free blocks included, which a grep through the VM
    (226 s under TCG, 2026-12-03) never saw."""
    host.run_expect([0], "sync")
    mounts = [line.split() for line in host.check_output("findmnt -rn -o TARGET,SOURCE,FSTYPE").splitlines()]
    assert ["/", "/dev/vda", "ext4"] in mounts, mounts
    targets = [target for target, source, fstype in mounts
               if fstype not in PSEUDO_FS and source != "/dev/vda"]
    assert "/run" in targets and "/dev/shm" in targets, mounts   # the scan reaches tmpfs
    patterns = " ".join("-e %s" % shlex.quote(v) for v in all_passphrases(secrets))
    # -xdev: each mount is scanned once, by its own entry
    found = host.run("for m in %s; do find \"$m\" -xdev -type f -print0; done | xargs -0 -r grep -lsF %s"
                     % (" ".join(shlex.quote(t) for t in targets), patterns))
    assert found.stdout.strip() == "", "passphrase found in: %s" % found.stdout
    # positive control: the same scan finds a planted value on tmpfs
    canary = "secvirt-fs-canary-" + os.urandom(8).hex()   # holds no passphrase
    host.run_expect([0], "umask 077; printf '%%s' %s > /run/secvirt-canary" % shlex.quote(canary))
    try:
        hit = host.run("for m in %s; do find \"$m\" -xdev -type f -print0; done | xargs -0 -r grep -lsF -e %s"
                       % (" ".join(shlex.quote(t) for t in targets), shlex.quote(canary)))
        assert hit.stdout.split() == ["/run/secvirt-canary"], hit.stdout
    finally:
        host.run("rm -f /run/secvirt-canary")


def test_passphrases_absent_from_every_block_the_vm_wrote(host, secrets):
    """Scan the VM's disk images from outside: deleted files and free blocks too.

    Everything the VM wrote since the base image is in its two overlays (the
    base image was built before any passphrase existed), so this also covers
    every file of its root filesystem, which the filesystem test leaves to it.
    """
    # positive control: a value written to a file on the root filesystem
    canary = ("secvirt-block-canary-" + os.urandom(8).hex()).encode()   # holds no passphrase
    host.run_expect([0], "umask 077; printf '%%s' %s > /var/tmp/secvirt-canary && sync"
                    % shlex.quote(canary.decode()))
    host.run_expect([0], "rm -f /var/tmp/secvirt-canary && sync")
    needles = re.compile(b"|".join(re.escape(v.encode()) for v in all_passphrases(secrets)))
    vms = os.path.join(EPHEMERAL, "vms")
    disks = [os.path.join(vms, f) for f in os.listdir(vms) if f.endswith(".qcow2")]
    assert len(disks) == 2  # the root overlay and the data disk
    canary_seen = []
    for disk in disks:
        with open(disk, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            match = needles.search(data)
            assert match is None, "%s holds a passphrase at offset %d" % (disk, match.start())
            if data.find(canary) >= 0:
                canary_seen.append(os.path.basename(disk))
    assert canary_seen == ["kvmhost.qcow2"], canary_seen   # deleted, and still found in the root overlay
