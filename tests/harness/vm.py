#!/usr/bin/env python3
"""Disposable Debian 12 VMs for the molecule scenarios (stdlib only).

    vm.py up    --state DIR --platforms JSON   boot VMs, print molecule instance config
    vm.py down  --state DIR                    stop them and delete every overlay
    vm.py reap                                 kill any harness qemu/hub left on this machine
    vm.py clone --state DIR [--names a,b] [--label L]
                                               copy-on-write clones of running VMs
    vm.py ssh   --state DIR NAME [CMD...]      shell into a VM (debugging)
    vm.py image                                build or reuse the cached base image

Every VM boots a throw-away qcow2 overlay on the cached raw base image (backing
format given explicitly, so the base is never probed nor modified) and gets:

* eth0: qemu user networking; SSH forwarded from 127.0.0.1:<free port>;
* eth1: the "trunk" segment, a private L2 hub shared by the scenario's VMs and
  left unconfigured for the roles (VLAN tests);
* eth2: the "lab" segment, another hub, with a static address 10.254.0.(10+i)/24
  and the name <instance>.secvirt.test in every VM's /etc/hosts, so that one VM
  can reach another as real clients do (management station -> KVM host);
* /dev/vdb: a blank spare data disk (LVM/LUKS tests).

A VM does not boot its kernel each time: the first VM of a given shape
(image, memory, vCPUs, data disk size, position in the scenario) boots once,
waits until systemd reports the boot finished, and is saved (RAM and device
state through a qemu migration to a file, its disk as a qcow2 layer) beside
the cached image. Every later VM of that shape resumes from that state on its
own overlay in seconds, instead of a 3.5-6.5 min boot under TCG. A resumed
VM's clock is set to the controller's, and its kernel RNG gets fresh bytes
from the controller and is forced to reseed (RNDRESEEDCRNG), so two VMs
resumed from one state neither share a clock from the past nor random
numbers. Set SECVIRT_SNAPSHOTS=0 to boot every VM from its kernel.

Platform keys: name, memory_mb, cpus, data_disk_gb, ssh_port, suite
("bookworm", Debian 12, the default; or "trixie", Debian 13: one suite for
all the platforms of a scenario), and image:
"plain" (default, a minimal Debian), "virt" (the same with the
virtualization stack already installed) or "station" (plain plus a Kerberos
KDC and tcpdump, for libvirt_remote's station); see build-image.sh.

The facts a scenario needs about its lab network are in
/etc/ansible/facts.d/secvirt_lab.fact on each VM (ansible_local.secvirt_lab).
"""
import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DISKS = {"plain": "disk.raw", "virt": "disk-virt.raw", "station": "disk-station.raw"}
CACHE = os.environ.get("SECVIRT_CACHE", os.path.expanduser("~/.cache/secvirt-kvm"))
MARKER = "secvirt-harness"
# With KVM, hide IA32_ARCH_CAPABILITIES: some hosts' KVM refuses to set that
# MSR ("failed to set MSR 0x10a") and qemu aborts at vCPU start.
KVM_CPU = "host,-arch-capabilities"          # appears in every qemu/hub command line we start
# Under TCG: the plain x86-64 baseline CPU and no Spectre-class mitigations in
# the guest kernel. Measured on one VM (virt image, 2 vCPUs, nothing else
# running), `-cpu max` with the stock command line against this: Python
# imports 2.25 -> 1.49 s, a Python loop 4.45 -> 3.05 s, 300 fork+exec
# 12.7 -> 9.0 s, sha256 of 80 MB 4.6 -> 2.2 s (glibc and OpenSSL pick
# SSE2 code paths instead of AVX2 ones, which TCG emulates slowly; the
# kernel skips retpolines and barriers that only cost under emulation).
# What the roles configure does not depend on either: no test guest asks
# for a CPU model, and nothing checks CPU flags. See docs/testing.md.
# benchmarks/tcg_cpu compares them; SECVIRT_TCG_CPU / SECVIRT_TCG_KERNEL_ARGS
# override them (saved boots are keyed by both).
# tsc=reliable: under TCG every vCPU reads its TSC from the same host clock,
# but the kernel's checks see the vCPUs' turns on one host thread as drift:
# in the fe5bc69 run debian13's kvmhost marked the TSC unstable after 971 s
# (watchdog: "excessive read-back delay") and vlan_bridges' host at the boot
# after its reboot ("TSCs unsynchronized"); both then ran on the HPET, which
# costs 3-7 % in the guest (python imports 2.18 -> 2.28 s, 100 fork+exec
# 2.43 -> 2.60 s, one 1-vCPU VM, clocksource switched at run time).
TCG_CPU = os.environ.get("SECVIRT_TCG_CPU", "qemu64")
TCG_ACCEL = "tcg,thread=single"  # see boot()
TCG_KERNEL_ARGS = os.environ.get("SECVIRT_TCG_KERNEL_ARGS", "mitigations=off tsc=reliable")
LAB_NET = "10.254.0"
DOMAIN = "secvirt.test"
# A KVM host (2 vCPUs) booting while the other lane converges took more than
# 420 s to answer SSH (seen at d3e6eb4: killed at 420 s and booted again,
# throwing away seven minutes of a boot that was still progressing).
BOOT_TIMEOUT = int(os.environ.get("SECVIRT_BOOT_TIMEOUT", "900"))


def die(msg, code=2):
    print(f"vm.py: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg):
    print(f"vm.py: {msg}", file=sys.stderr, flush=True)


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        die(f"required tool(s) not installed: {', '.join(missing)} (run `make setup` as root)")


SUITES = ("bookworm", "trixie")


def build_image(suite="bookworm"):
    need("debootstrap", "mkfs.ext4", "qemu-img", "ssh-keygen")
    started = time.monotonic()
    proc = subprocess.run([os.path.join(HERE, "build-image.sh")], stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, SECVIRT_SUITE=suite))
    if proc.returncode != 0:
        die("building the base image failed (see the messages above)")
    path = proc.stdout.strip().splitlines()[-1]
    log(f"base image {path} ready in {time.monotonic() - started:.1f}s")
    return path


def free_port(wanted=0):
    """A free TCP port on 127.0.0.1: `wanted` if given (error if taken), else any."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(wanted)))
        except OSError as exc:
            die(f"SSH port 127.0.0.1:{wanted} is already taken ({exc.strerror}); "
                "choose another ssh_port or stop what uses it")
        return s.getsockname()[1]


# Bump when the qemu command line or the saved boot changes, so that states
# saved by an older harness are never resumed by a newer one.
SNAPSHOT_FORMAT = 2


def qemu_command():
    """The qemu-system-x86_64 that runs the VMs, with its firmware directories.

    The copy tests/harness/fetch-qemu.sh unpacked into the cache (QEMU 10 from
    bookworm-backports on a Debian 12 machine: under TCG, Debian 12's own 7.2
    takes 1.1-1.4 times as long for the guests' Python and boots, six times
    as long for fork+exec; benchmarks/tcg_cpu, docs/testing.md), else the
    machine's. SECVIRT_QEMU=system forces the machine's (benchmarks).
    """
    root = os.path.join(CACHE, "qemu", "current")
    binary = os.path.join(root, "usr", "bin", "qemu-system-x86_64")
    if os.environ.get("SECVIRT_QEMU", "auto") != "system" and os.access(binary, os.X_OK):
        # Its own firmware first (SeaBIOS and option ROMs of its version),
        # then qemu's built-in search path (the machine's iPXE ROMs).
        return [binary, "-L", os.path.join(root, "usr", "share", "qemu"),
                "-L", os.path.join(root, "usr", "share", "seabios")]
    return ["qemu-system-x86_64"]


def qemu_version():
    out = subprocess.run([qemu_command()[0], "--version"], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    return out.splitlines()[0].strip()


def snapshot_dir(image, plat, index, accel):
    """Where the saved boot for a VM of this shape lives (inside the image's cache dir).

    Everything that the saved RAM and device state depend on is in the key:
    qemu's version, the accelerator (and under TCG the CPU model and the guest
    kernel's extra arguments), the disk image, memory, vCPUs, the data
    disk's size (the guest read it at boot) and the VM's position (its MAC
    addresses, which virtio-net saves with its state).
    """
    key = "|".join(str(x) for x in (SNAPSHOT_FORMAT, qemu_version(), accel, TCG_CPU, TCG_KERNEL_ARGS,
                                     plat.get("image", "plain"),
                                     plat.get("memory_mb", 2048), plat.get("cpus", 2),
                                     plat.get("data_disk_gb", 4), index))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(image, "snapshots", digest), key


def qmp(sock_path, *commands, timeout=600):
    """Run QMP commands on a qemu monitor socket; return the last reply."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        stream = s.makefile("rw")
        json.loads(stream.readline())  # greeting
        reply = None
        for cmd in ({"execute": "qmp_capabilities"},) + commands:
            stream.write(json.dumps(cmd) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    break
            if "error" in reply:
                raise RuntimeError(f"qmp {cmd['execute']}: {reply['error'].get('desc')}")
        return reply


def kvm_usable(image):
    """Probe once per image whether -accel kvm really runs a vCPU here.

    On some hosts /dev/kvm opens but vCPU setup fails ("failed to set MSR
    0x10a"); then we use TCG. The answer is cached beside the image.
    """
    forced = os.environ.get("SECVIRT_ACCEL", "auto")
    if forced in ("kvm", "tcg"):
        return forced == "kvm"
    probe = os.path.join(image, ".accel")
    if os.path.exists(probe):
        with open(probe) as fh:
            return fh.read().strip() == "kvm"
    ok = False
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        # Success means the guest kernel really ran (printed its banner),
        # not merely that qemu did not exit.
        proc = subprocess.Popen(
            qemu_command() + ["-accel", "kvm", "-cpu", KVM_CPU, "-m", "256", "-nodefaults",
             "-display", "none", "-serial", "stdio", "-no-reboot",
             "-kernel", os.path.join(image, "vmlinuz"), "-append", "console=ttyS0 panic=-1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stdout.read() or b""
            if b"Linux version" in seen:
                ok = True
                break
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    with open(probe, "w") as fh:
        fh.write("kvm" if ok else "tcg")
    return ok


def ssh_base(identity, port):
    return ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
            "-o", "LogLevel=ERROR", "-i", identity, "-p", str(port), "root@127.0.0.1"]


def alive(pid):
    # A child of ours that exited stays a zombie (kill(pid, 0) succeeds on
    # it) until reaped: reap it here (the build hubs of a saved boot).
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_pid(path, wait=10.0):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                return int(fh.read().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.1)
    return None


def start_hub(state, segment):
    sock = os.path.join(state, f"{segment}.sock")
    log_path = os.path.join(state, f"hub-{segment}.log")
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "hub.py"), sock],
                                stdout=out, stderr=out, start_new_session=True,
                                env=dict(os.environ, SECVIRT_MARKER=MARKER))
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > deadline or proc.poll() is not None:
            die(f"the {segment} hub did not start (see {log_path})")
        time.sleep(0.05)
    return proc.pid, sock


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except FileNotFoundError:
        return "(no console output)"


def clock_and_rng_script(now, seed_hex):
    """Shell lines that set the guest's clock to `now` and reseed its RNG."""
    return f"""set -e
date -u -s @{now:.3f} >/dev/null
# Fresh bytes from the controller into the kernel's pool, then force the
# CRNG to reseed from it (RNDRESEEDCRNG = _IO('R', 7)).
python3 -c 'import fcntl, os; fd = os.open("/dev/urandom", os.O_WRONLY); os.write(fd, bytes.fromhex("{seed_hex}")); fcntl.ioctl(fd, 0x5207)'
"""


def lab_script(name, index, hosts, now, seed_hex):
    host_lines = "\n".join(f"{LAB_NET}.{10 + i} {h}.{DOMAIN} {h}" for i, h in enumerate(hosts))
    fact = json.dumps({"ip": f"{LAB_NET}.{10 + index}", "fqdn": f"{name}.{DOMAIN}",
                       "hostname": name, "domain": DOMAIN, "prefix": 24,
                       "lab_interface": "eth2", "trunk_interface": "eth1",
                       "management_interface": "eth0", "data_disk": "/dev/vdb",
                       "peers": {h: f"{LAB_NET}.{10 + i}" for i, h in enumerate(hosts)}})
    return clock_and_rng_script(now, seed_hex) + f"""hostnamectl set-hostname {name} 2>/dev/null || echo {name} >/etc/hostname
hostname {name}
cat >/etc/hosts <<'EOF'
127.0.0.1 localhost
{host_lines}
EOF
mkdir -p /etc/network/interfaces.d /etc/ansible/facts.d /var/lib/apt/periodic
# The package lists are the image's (its .debs are in the apt cache): the
# roles' apt tasks (cache_valid_time: 86400) would otherwise refresh them
# from the network once the image is a day old, under TCG, in every task.
touch /var/lib/apt/periodic/update-success-stamp
cat >/etc/network/interfaces.d/secvirt-lab <<'EOF'
# Test harness lab network (eth2); eth1 is left to the roles as a trunk.
auto eth2
iface eth2 inet static
    address {LAB_NET}.{10 + index}/24
EOF
ifup eth2 >/dev/null 2>&1 || true
cat >/etc/ansible/facts.d/secvirt_lab.fact <<'EOF'
{fact}
EOF
"""


def cmd_image(args):
    print(build_image(args.suite))


def use_every_cpu():
    """Let this process and every qemu and hub it starts run on every CPU.

    Molecule's create step runs vm.py from an Ansible task, and mitogen's
    strategy pins its workers and their children: on a 2-CPU machine every
    subprocess gets CPU 1 only (ansible_mitogen/affinity.py, "small SMP":
    CPU 0 is kept for its multiplexer). Inherited by qemu, that put every
    VM of both lanes on one core, while the other stayed ~95% idle
    (/proc/stat per CPU, and `taskset -p` on the qemu processes: mask 2).
    """
    try:
        wanted = os.sched_getaffinity(1)
    except OSError:
        wanted = set(range(os.cpu_count() or 1))
    if os.sched_getaffinity(0) != wanted:
        os.sched_setaffinity(0, wanted)


def cmd_up(args):
    need("qemu-system-x86_64", "qemu-img", "ssh")
    try:
        boot(args)
    except BaseException:
        # Never leave a half-started scenario behind: stop whatever did
        # start and delete the overlays, then report the original failure.
        if os.path.exists(os.path.join(args.state, "vms.json")):
            log("boot failed: stopping the VMs that did start")
            quiet_down(args)
        raise


def quiet_down(args):
    """cmd_down without its stdout: `up` must print only the instance list."""
    with open(os.devnull, "w") as null:
        saved, sys.stdout = sys.stdout, null
        try:
            cmd_down(args)
        finally:
            sys.stdout = saved


def qemu_argv(plat, index, image, accel, cpu, overlay, data, port, segments, console, pidfile, qmp_sock):
    """qemu's command line for the VM of `plat` at position `index` (a boot,
    a resumed saved boot or a clone: the devices must be the same for all)."""
    mac = f"{index + 1:02x}"
    return qemu_command() + [
        "-name", f"{MARKER}-{plat['name']}",
        "-accel", accel, "-cpu", cpu,
        "-m", str(plat.get("memory_mb", 2048)), "-smp", str(plat.get("cpus", 2)),
        "-kernel", os.path.join(image, "vmlinuz"), "-initrd", os.path.join(image, "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0" + ("" if accel == "kvm" else " " + TCG_KERNEL_ARGS),
        # Fixed PCI slots: the kernel names disks and NICs in slot order,
        # so the root disk is always vda, the data disk vdb, eth0..eth2.
        "-drive", f"file={overlay},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root,serial=secvirt-root,addr=0x4",
        "-drive", f"file={data},if=none,id=data,format=qcow2,cache=unsafe",
        "-device", "virtio-blk-pci,drive=data,serial=secvirt-data,addr=0x5",
        "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac=52:54:00:00:00:{mac},addr=0x6",
        "-netdev", f"stream,id=trunk,server=off,addr.type=unix,addr.path={segments['trunk']}",
        "-device", f"virtio-net-pci,netdev=trunk,mac=52:54:00:01:00:{mac},addr=0x7",
        "-netdev", f"stream,id=lab,server=off,addr.type=unix,addr.path={segments['lab']}",
        "-device", f"virtio-net-pci,netdev=lab,mac=52:54:00:02:00:{mac},addr=0x8",
        "-object", "rng-random,filename=/dev/urandom,id=rng0",
        "-device", "virtio-rng-pci,rng=rng0,addr=0x9",
        "-nodefaults", "-display", "none", "-serial", f"file:{console}",
        "-daemonize", "-pidfile", pidfile,
        "-qmp", f"unix:{qmp_sock},server=on,wait=off",
    ]


def boot(args):
    platforms = json.loads(args.platforms)
    if not platforms:
        die("no platforms given")
    names = [p["name"] for p in platforms]
    if len(set(names)) != len(names):
        die(f"platform names must be unique: {names}")
    for plat in platforms:
        if plat.get("image", "plain") not in DISKS:
            die(f"{plat['name']}: unknown image {plat['image']!r} (choose from {', '.join(sorted(DISKS))})")
    suites = {plat.get("suite", "bookworm") for plat in platforms}
    if len(suites) != 1 or not suites <= set(SUITES):
        die(f"platforms must share one suite of {', '.join(SUITES)}: {sorted(suites)}")
    image = build_image(suites.pop())
    os.makedirs(args.state, exist_ok=True)
    if os.path.exists(os.path.join(args.state, "vms.json")):
        log("stale VMs found in the state directory: destroying them first")
        quiet_down(args)
        os.makedirs(args.state, exist_ok=True)
    identity = os.path.join(args.state, "id_ed25519")
    shutil.copy(os.path.join(image, "id_ed25519"), identity)
    os.chmod(identity, 0o600)
    # Single-threaded TCG: every vCPU of a VM on one host thread, in turn.
    # With one thread per vCPU (thread=multi) a guest kernel died now and
    # then with "Oops: int3" in __schedule: the kernel flips static keys by
    # patching its own code through int3 breakpoints and syncing every CPU,
    # and another vCPU thread still ran a translation of the half-patched
    # code (CI runs on 2026-12-03 and 2026-12-04: Debian 13 kvmpeer, then
    # kvmhost with two vCPUs, right after nftables or libvirtd started).
    # One thread runs the vCPUs in turn, so none runs stale code. The lanes'
    # VMs still share both cores of the machine (use_every_cpu).
    accel = "kvm" if kvm_usable(image) else TCG_ACCEL
    cpu = KVM_CPU if accel == "kvm" else TCG_CPU
    log(f"accelerator: {accel}; {qemu_version()} ({qemu_command()[0]})")

    record = {"image": image, "accel": accel, "cpu": cpu, "names": names, "hubs": [], "vms": []}
    for segment in ("trunk", "lab"):
        pid, sock = start_hub(args.state, segment)
        record["hubs"].append({"segment": segment, "pid": pid, "socket": sock})
    socks = {h["segment"]: h["socket"] for h in record["hubs"]}

    def save():
        with open(os.path.join(args.state, "vms.json"), "w") as fh:
            json.dump(record, fh, indent=2)
    save()

    def launch(i, plat, snap=None, build=None, hubs=None):
        """Start one VM; return its record (not yet reachable).

        Default: boot the kernel on a fresh overlay of the base image. snap:
        resume the saved boot in that directory on a fresh overlay of its
        disk. build: boot the kernel with the root and data disks in that
        directory and a QMP socket, so that the boot can be saved there;
        hubs: its own {segment: socket} (a hub exits when its last VM does).
        """
        segments = hubs or socks
        name = plat["name"]
        where = build or args.state
        overlay = os.path.join(where, "root.qcow2" if build else f"{name}.qcow2")
        data = os.path.join(where, "data.qcow2" if build else f"{name}-data.qcow2")
        for path in (overlay, data):
            if os.path.exists(path):
                os.unlink(path)
        if snap:
            backing, backing_fmt = os.path.join(snap, "root.qcow2"), "qcow2"
        else:
            backing, backing_fmt = os.path.join(image, DISKS[plat.get("image", "plain")]), "raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", backing, overlay],
                       check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", data,
                        f"{plat.get('data_disk_gb', 4)}G"], check=True)
        port = free_port(plat.get("ssh_port", 0))
        console = os.path.join(args.state, f"{name}-console.log")
        pidfile = os.path.join(args.state, f"{name}.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        qmp_sock = os.path.join(build, "qmp.sock") if build else os.path.join(args.state, f"{name}-qmp.sock")
        qemu = qemu_argv(plat, i, image, accel, cpu, overlay, data, port, segments, console, pidfile, qmp_sock)
        if snap:
            # The state file is read by qemu itself: exec: runs no shell
            # words from us but the fixed path of the cache.
            qemu += ["-incoming", f"exec:cat {os.path.join(snap, 'state')}"]
        proc = subprocess.run(qemu, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            if "host forwarding" in proc.stdout or "Address already in use" in proc.stdout:
                die(f"{name}: SSH port 127.0.0.1:{port} is already taken: {proc.stdout.strip()}")
            die(f"{name}: qemu failed to start: {proc.stdout.strip()}")
        return {"name": name, "pid": read_pid(pidfile), "port": port, "overlay": overlay, "data": data,
                "console": console, "index": i, "ip": f"{LAB_NET}.{10 + i}", "started": time.monotonic(),
                "resumed": bool(snap), "plat": plat, "qmp": qmp_sock}

    def wait_ssh(vm):
        deadline = vm["started"] + BOOT_TIMEOUT
        while True:
            if not alive(vm["pid"]):
                return "qemu exited during boot"
            probe = subprocess.run(ssh_base(identity, vm["port"]) + ["true"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if probe.returncode == 0:
                return None
            if time.monotonic() > deadline:
                return f"no SSH after {BOOT_TIMEOUT}s"
            time.sleep(0.5 if vm["resumed"] else 2)

    def until_ssh(vm, **how):
        """Wait for a launched VM's SSH; one that does not answer is launched once
        more (same way, fresh overlay) before the scenario fails. Returns the VM."""
        problem = wait_ssh(vm)
        if problem:
            log(f"{vm['name']}: {problem}; console:\n{tail(vm['console'])}\n"
                f"{vm['name']}: booting it once more on a fresh overlay")
            kill(vm["pid"], vm["name"])
            vm = launch(vm["index"], platforms[vm["index"]], **how)
            problem = wait_ssh(vm)
            if problem:
                kill(vm["pid"], vm["name"])
                die(f"{vm['name']}: {problem} (second boot); console:\n{tail(vm['console'])}")
        log(f"{vm['name']}: SSH up {time.monotonic() - vm['started']:.1f}s after start "
            f"({'resumed' if vm['resumed'] else 'booted'}, 127.0.0.1:{vm['port']})")
        return vm

    def saved_boot(i, plat):
        """The directory of this VM shape's saved boot, saving it first if needed."""
        snap, key = snapshot_dir(image, plat, i, accel)
        if os.path.exists(os.path.join(snap, ".complete")):
            return snap
        building = snap + ".building"
        shutil.rmtree(building, ignore_errors=True)
        os.makedirs(building)
        log(f"{plat['name']}: no saved boot for this shape yet ({key}): booting once to save one")
        started = time.monotonic()
        # Its own hubs: the scenario's hubs exit when their last VM goes, and
        # this VM goes first.
        own = {segment: start_hub(building, segment) for segment in ("trunk", "lab")}
        how = {"build": building, "hubs": {seg: sock for seg, (_, sock) in own.items()}}
        vm = until_ssh(launch(i, plat, **how), **how)
        try:
            # Save a finished boot, not one with start-up jobs still running.
            settled = subprocess.run(ssh_base(identity, vm["port"]) + ["systemctl", "is-system-running", "--wait"],
                                     stdout=subprocess.PIPE, text=True, timeout=BOOT_TIMEOUT)
            if settled.stdout.strip() not in ("running", "degraded"):
                die(f"{plat['name']}: boot did not finish: systemd says {settled.stdout.strip()!r}")
            sock = os.path.join(building, "qmp.sock")
            # Migrated while running (qemu pauses it at the end): a state
            # saved from a paused VM would resume paused.
            qmp(sock, {"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 8 << 30}},
                {"execute": "migrate", "arguments": {"uri": f"exec:cat > {os.path.join(building, 'state')}"}})
            while True:
                status = qmp(sock, {"execute": "query-migrate"})["return"].get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled", None):
                    die(f"{plat['name']}: saving the boot failed (migration {status})")
                time.sleep(0.5)
            qmp(sock, {"execute": "quit"})
        finally:
            kill(vm["pid"], vm["name"])
            for pid, _ in own.values():
                kill(pid, "build hub")
        for leftover in ("data.qcow2", "qmp.sock", "trunk.sock", "lab.sock", "hub-trunk.log", "hub-lab.log"):
            if os.path.exists(os.path.join(building, leftover)):
                os.unlink(os.path.join(building, leftover))
        with open(os.path.join(building, "key"), "w") as fh:
            fh.write(key + "\n")
        os.rename(building, snap)
        open(os.path.join(snap, ".complete"), "w").close()
        log(f"{plat['name']}: saved its boot in {time.monotonic() - started:.0f}s "
            f"({os.path.getsize(os.path.join(snap, 'state')) >> 20} MiB of state)")
        return snap

    # One scenario boots at a time on this machine: two lanes booting four
    # VMs at once on 2 cores took more than BOOT_TIMEOUT, twice in a row
    # (CI-like run at aca1f54: both KVM hosts timed out on first and second
    # boot). The lock is held until every VM of this scenario answers SSH;
    # the other lane's scenario waits for it, then boots on quieter cores.
    # It also makes one scenario at a time save a missing boot.
    os.makedirs(CACHE, exist_ok=True)
    boot_lock = open(os.path.join(CACHE, "boot.lock"), "w")  # held until the VMs answer SSH
    waited = time.monotonic()
    fcntl.flock(boot_lock, fcntl.LOCK_EX)
    if time.monotonic() - waited > 1:
        log(f"waited {time.monotonic() - waited:.0f}s for another scenario's VMs to boot")

    use_snapshots = os.environ.get("SECVIRT_SNAPSHOTS", "1") != "0"
    snaps = [saved_boot(i, plat) if use_snapshots else None for i, plat in enumerate(platforms)]
    for i, plat in enumerate(platforms):
        record["vms"].append(launch(i, plat, snap=snaps[i]))
        save()

    for n, vm in enumerate(record["vms"]):
        vm = record["vms"][n] = until_ssh(vm, snap=snaps[vm["index"]])
        save()
        # The clock and RNG lines matter for a resumed VM (its clock stopped
        # when the boot was saved; its RNG state is the saved one) and cost
        # nothing on a booted one.
        script = lab_script(vm["name"], vm["index"], names, time.time(), os.urandom(64).hex())
        # The script is idempotent. A guest that only just answered SSH on
        # loaded cores can drop the next connection (ssh exit 255, seen with
        # three scenarios at once): ask again before giving up.
        for attempt in range(4):
            done = subprocess.run(ssh_base(identity, vm["port"]) + ["sh", "-s"], input=script, text=True,
                                  check=False)
            if done.returncode != 255 or attempt == 3:
                break
            log(f"{vm['name']}: SSH dropped the lab set-up (exit 255), asking again")
            time.sleep(10)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args)

    fcntl.flock(boot_lock, fcntl.LOCK_UN)
    boot_lock.close()

    instances = [{"instance": vm["name"], "address": "127.0.0.1", "user": "root",
                  "port": vm["port"], "identity_file": identity,
                  "become_method": "sudo"} for vm in record["vms"]]
    print(json.dumps(instances))


def kill(pid, what):
    # The process may exit on its own between alive() and the signal (a
    # loaded machine: qemu needed more than 5 s to stop after SIGTERM and was
    # gone when SIGKILL came): that is the outcome we wanted, not an error.
    if not pid or not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not alive(pid):
                return
            time.sleep(0.1)
        log(f"{what} ({pid}) ignored SIGTERM; killing it")
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def cmd_down(args):
    clones = os.path.join(args.state, "clones")
    if os.path.isdir(clones):
        for label in os.listdir(clones):
            quiet_down(argparse.Namespace(state=os.path.join(clones, label)))
    path = os.path.join(args.state, "vms.json")
    if os.path.exists(path):
        with open(path) as fh:
            record = json.load(fh)
        for vm in record.get("vms", []):
            kill(vm.get("pid"), f"qemu {vm['name']}")
        for hub in record.get("hubs", []):
            kill(hub.get("pid"), f"hub {hub['segment']}")
        keep_consoles(args.state, record)
    if os.path.isdir(args.state):
        shutil.rmtree(args.state)
    print("[]")


def load_record(state):
    path = os.path.join(state, "vms.json")
    if not os.path.exists(path):
        die(f"no VMs in {state}")
    with open(path) as fh:
        return json.load(fh)


def cmd_clone(args):
    """Copy-on-write clones of running VMs, as they are at this instant.

    For each VM: pause it, freeze its disks (QMP blockdev-snapshot-sync: the
    files it wrote so far become read-only backing files and it goes on
    writing to new overlays), save its RAM and device state to a file (a
    migration of the paused VM), let it run again. Each clone resumes that
    state on its own qcow2 overlays of the frozen files (backing format
    given explicitly) and on hubs of its own, so the clones of a scenario's
    VMs reach each other under their usual names and addresses and never
    the originals. A clone's clock is the controller's and its RNG reseeded,
    as for a resumed saved boot. What a test does on a clone stays there:
    `vm.py down --state <clone dir>` throws it away; `down` of the source
    also downs its clones. Costs seconds, against minutes for a boot and a
    converge under TCG.
    """
    need("qemu-system-x86_64", "qemu-img", "ssh")
    src = load_record(args.state)
    wanted = args.names.split(",") if args.names else [vm["name"] for vm in src["vms"]]
    vms = [vm for vm in src["vms"] if vm["name"] in wanted]
    if len(vms) != len(wanted):
        die(f"no VM named {sorted(set(wanted) - {vm['name'] for vm in vms})} in {args.state}")
    into = os.path.join(args.state, "clones", args.label)
    if os.path.exists(os.path.join(into, "vms.json")):
        quiet_down(argparse.Namespace(state=into))
    os.makedirs(into)
    identity = os.path.join(into, "id_ed25519")
    shutil.copy(os.path.join(args.state, "id_ed25519"), identity)
    os.chmod(identity, 0o600)
    record = {"image": src["image"], "accel": src["accel"], "cpu": src["cpu"], "names": src["names"],
              "clone_of": args.state, "hubs": [], "vms": []}
    for segment in ("trunk", "lab"):
        pid, sock = start_hub(into, segment)
        record["hubs"].append({"segment": segment, "pid": pid, "socket": sock})
    segments = {h["segment"]: h["socket"] for h in record["hubs"]}

    def save(rec, state):
        with open(os.path.join(state, "vms.json"), "w") as fh:
            json.dump(rec, fh, indent=2)
    save(record, into)

    started = time.monotonic()
    for vm in vms:
        name = vm["name"]
        state_file = os.path.join(into, f"{name}.state")
        generation = vm.get("generation", 0) + 1
        frozen = {"root": vm["overlay"], "data": vm["data"]}
        active = {drive: f"{path}.{generation}" for drive, path in
                  (("root", os.path.join(args.state, f"{name}.qcow2")),
                   ("data", os.path.join(args.state, f"{name}-data.qcow2")))}
        t0 = time.monotonic()
        qmp(vm["qmp"], {"execute": "stop"})
        try:
            for drive in ("root", "data"):
                qmp(vm["qmp"], {"execute": "blockdev-snapshot-sync",
                                "arguments": {"device": drive, "snapshot-file": active[drive], "format": "qcow2",
                                              "mode": "absolute-paths"}})
            vm["overlay"], vm["data"], vm["generation"] = active["root"], active["data"], generation
            save(src, args.state)
            qmp(vm["qmp"], {"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 8 << 30}},
                {"execute": "migrate", "arguments": {"uri": f"exec:cat > {state_file}"}})
            while True:
                status = qmp(vm["qmp"], {"execute": "query-migrate"})["return"].get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled", None):
                    die(f"{name}: saving its state for the clone failed (migration {status})")
                time.sleep(0.2)
        finally:
            qmp(vm["qmp"], {"execute": "cont"})
        log(f"{name}: paused {time.monotonic() - t0:.1f}s to freeze its disks and save its state")
        clone = {"name": name, "index": vm["index"], "ip": vm["ip"], "plat": vm["plat"],
                 "overlay": os.path.join(into, f"{name}.qcow2"), "data": os.path.join(into, f"{name}-data.qcow2"),
                 "console": os.path.join(into, f"{name}-console.log"), "qmp": os.path.join(into, f"{name}-qmp.sock"),
                 "port": free_port()}
        for drive, path in (("root", clone["overlay"]), ("data", clone["data"])):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", frozen[drive], path],
                           check=True)
        pidfile = os.path.join(into, f"{name}.pid")
        qemu = qemu_argv(vm["plat"], vm["index"], src["image"], src["accel"], src["cpu"], clone["overlay"],
                         clone["data"], clone["port"], segments, clone["console"], pidfile, clone["qmp"])
        qemu += ["-incoming", f"exec:cat {state_file}"]
        proc = subprocess.run(qemu, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            die(f"{name}: the clone's qemu failed to start: {proc.stdout.strip()}")
        clone["pid"] = read_pid(pidfile)
        record["vms"].append(clone)
        save(record, into)
        # The state was saved from a paused VM, so the clone waits paused
        # once it has read it.
        while qmp(clone["qmp"], {"execute": "query-status"})["return"]["status"] == "inmigrate":
            time.sleep(0.2)
        qmp(clone["qmp"], {"execute": "cont"})
        os.unlink(state_file)
        log(f"{name}: clone running {time.monotonic() - t0:.1f}s after the pause")
    for clone in record["vms"]:
        # One patient connection rather than many short ones: on loaded
        # cores a TCG guest's SSH handshake alone took 16-23 s (2026-12-03).
        ssh = ssh_base(identity, clone["port"])
        ssh[ssh.index("ConnectTimeout=5")] = "ConnectTimeout=120"
        # The clone's clock stood still since the pause, and its RNG holds
        # the original's state: the controller's clock and fresh random
        # bytes (not the rest of the lab script: /etc/hosts and the lab
        # address are in the copied state, as the tests left them).
        script = clock_and_rng_script(time.time(), os.urandom(64).hex())
        for attempt in range(4):
            done = subprocess.run(ssh + ["sh", "-s"], input=script, text=True, stdout=subprocess.DEVNULL)
            if done.returncode == 0:
                break
            if attempt == 3 or not alive(clone["pid"]):
                die(f"{clone['name']}: the clone does not answer SSH; console:\n{tail(clone['console'])}")
            time.sleep(2)
        log(f"{clone['name']}: clone answers SSH {time.monotonic() - started:.1f}s after cloning began")
    log(f"cloned {', '.join(wanted)} in {time.monotonic() - started:.1f}s into {into}")
    print(json.dumps([{"instance": vm["name"], "address": "127.0.0.1", "user": "root", "port": vm["port"],
                       "identity_file": identity} for vm in record["vms"]]))


def keep_consoles(state, record):
    """Copy the VMs' serial consoles to .cache/logs/consoles/ before the state
    directory goes: a VM that died or hung in a test says why there, and the
    suite deletes the state of a failed scenario too (molecule's destroy)."""
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", os.path.basename(os.path.dirname(state.rstrip("/"))))
    keep = os.path.join(HERE, "..", "..", ".cache", "logs", "consoles")
    for vm in record.get("vms", []):
        console = vm.get("console") or ""
        if os.path.exists(console):
            os.makedirs(keep, exist_ok=True)
            shutil.copy(console, os.path.join(keep, f"{scenario}-{vm['name']}.log"))


def harness_processes(run_id=None):
    """(pid, cmdline) of every qemu or hub this harness started, by marker.

    With a run id (SECVIRT_RUN_ID, exported by the suite runner and the demo
    and inherited by every qemu and hub they start), only that run's.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if f"-name {MARKER}-" in text or (b"SECVIRT_MARKER=" + MARKER.encode()) in env:
            if run_id and (b"SECVIRT_RUN_ID=" + run_id.encode() + b"\0") not in env + b"\0":
                continue
            found.append((int(entry), text))
    return found


def cmd_reap(_args):
    procs = harness_processes(os.environ.get("SECVIRT_RUN_ID"))
    for pid, text in procs:
        log(f"reaping leftover {text[:100]}")
        kill(pid, "leftover")
    print(len(procs))


def cmd_ssh(args):
    with open(os.path.join(args.state, "vms.json")) as fh:
        record = json.load(fh)
    vm = next((v for v in record["vms"] if v["name"] == args.name), None)
    if vm is None:
        die(f"no VM named {args.name}")
    ssh = ssh_base(os.path.join(args.state, "id_ed25519"), vm["port"])
    os.execvp("ssh", ssh + args.command)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("--state", required=True)
    p.add_argument("--platforms", required=True, help="JSON list of {name, memory_mb, cpus, data_disk_gb, ssh_port}")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down")
    p.add_argument("--state", required=True)
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("clone")
    p.add_argument("--state", required=True)
    p.add_argument("--names", default="", help="comma-separated VM names (default: every VM of the state)")
    p.add_argument("--label", default="clone", help="the clone's directory: <state>/clones/<label>")
    p.set_defaults(func=cmd_clone)
    p = sub.add_parser("reap")
    p.set_defaults(func=cmd_reap)
    p = sub.add_parser("image")
    p.add_argument("--suite", default="bookworm", choices=SUITES)
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("ssh")
    p.add_argument("--state", required=True)
    p.add_argument("name")
    p.add_argument("command", nargs="*")
    p.set_defaults(func=cmd_ssh)
    args = parser.parse_args()
    use_every_cpu()
    args.func(args)


if __name__ == "__main__":
    main()
