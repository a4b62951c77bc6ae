# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of defining N libvirt secrets: a libvirt_secret task with loop:
against one libvirt_secret task with secrets: (the batch), in one run.

Boots one test VM (virt image, libvirt installed), makes sure libvirtd
answers, and runs against it with the strategy the suite uses (mitogen):
a one-task ping playbook (the baseline: connection and task overhead), then
for N private ephemeral secrets of usage type volume (distinct usage_ids,
distinct random values that are never printed):

  A  one secvirt.kvm.libvirt_secret task with loop: over the N entries (what
     the encrypted_storage role did before the batch option);
  B  one secvirt.kvm.libvirt_secret task with secrets: (the N entries).

Each is timed twice: the first run defines the N secrets and sets their
values, the second finds them all defined and changes nothing. Between A and
B (and before A, which also warms the VM up) one untimed batch call with
state=absent undefines them all. Every timed run is checked: changed on the
first run, unchanged on the second, and N secrets of ours defined after it
(counted with virsh). Prints the seconds and the ratios A/B.
Needs the cached image (`make image`) and nothing else loading the machine
if the figures are to mean anything.

Usage: .venv/bin/python benchmarks/libvirt_secret/run.py [--count 8]
"""
import argparse
import json
import os
import re
import secrets as random_secrets
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VM = os.path.join(ROOT, "tests", "harness", "vm.py")
NAME = "bench-secret"
PORT = 2393
PLATFORM = json.dumps([{"name": NAME, "image": "virt", "memory_mb": 1536, "cpus": 2, "ssh_port": PORT}])
URI = "qemu:///system"
USAGE_PREFIX = "/var/lib/libvirt/images/secvirt-bench-secret-"


def entries(count):
    """N volume secrets; the values are random, kept in memory and in the
    playbook file of the (removed) state directory, and never printed."""
    return [{"usage_type": "volume", "usage_id": "%s%d.qcow2" % (USAGE_PREFIX, i),
             "value": random_secrets.token_urlsafe(32)} for i in range(count)]


def plays(batch):
    """The task of each playbook; no_log everywhere, as the role has it."""
    loop_task = {"name": "A: one libvirt_secret task, loop over the secrets",
                 "secvirt.kvm.libvirt_secret": {"usage_type": "{{ item.usage_type }}",
                                                "usage_id": "{{ item.usage_id }}",
                                                "value": "{{ item.value }}", "uri": URI},
                 "loop": "{{ bench_secrets }}",
                 "loop_control": {"label": "{{ item.usage_type }} {{ item.usage_id }}"},
                 "no_log": True}
    batch_task = {"name": "B: one libvirt_secret task with secrets",
                  "secvirt.kvm.libvirt_secret": {"secrets": "{{ bench_secrets }}", "uri": URI},
                  "no_log": True}
    absent_task = {"name": "undefine them all (untimed)",
                   "secvirt.kvm.libvirt_secret": {"secrets": [{"usage_type": e["usage_type"], "usage_id": e["usage_id"],
                                                               "state": "absent"} for e in batch],
                                                  "uri": URI},
                   "no_log": True}
    return {"ping": {"name": "ping", "ansible.builtin.ping": {}},
            "loop": loop_task, "batch": batch_task, "absent": absent_task}


def write_inventory(state):
    inventory = {"all": {"hosts": {NAME: {
        "ansible_host": "127.0.0.1", "ansible_port": PORT, "ansible_user": "root",
        "ansible_ssh_private_key_file": os.path.join(state, "id_ed25519"),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3"}}}}
    with open(os.path.join(state, "inventory.json"), "w") as fh:
        json.dump(inventory, fh)


# --strategy: the suite's mitogen_linear, or Ansible's stock linear (one
# Python start-up on the host per module run, and per loop item)
OPTIONS = {"strategy": "mitogen_linear"}


def run_playbook(state, label, task, batch):
    """Run a one-task playbook; return (seconds, changed count from the recap).
    Its output goes to a log in the state directory (no_log keeps the values
    out of it); on failure only the recap and the failed task's name are shown."""
    play = [{"hosts": NAME, "gather_facts": False, "vars": {"bench_secrets": batch}, "tasks": [task]}]
    path = os.path.join(state, "play.json")
    with open(path, "w") as fh:
        json.dump(play, fh)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_STRATEGY_PLUGINS=os.path.join(ROOT, ".cache", "mitogen-strategy"),
               ANSIBLE_STRATEGY=OPTIONS["strategy"], ANSIBLE_PIPELINING="true",
               ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_NOCOLOR="true")
    log = os.path.join(state, "%s.log" % label)
    with open(log, "w") as out:
        started = time.monotonic()
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                               os.path.join(state, "inventory.json"), path],
                              env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
        seconds = time.monotonic() - started
    os.unlink(path)
    with open(log) as fh:
        text = fh.read()
    recap = re.search(r"^%s\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)" % re.escape(NAME),
                      text, re.M)
    if proc.returncode != 0 or recap is None:
        shown = [line for line in text.splitlines() if line.startswith(("TASK [", "fatal:", NAME + " "))]
        sys.exit("%s: ansible-playbook exited %d\n%s" % (label, proc.returncode, "\n".join(shown)))
    return seconds, int(recap.group(2))


def vm_ssh(state, command):
    return subprocess.run([sys.executable, VM, "ssh", "--state", state, NAME, "--", command], check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout


def our_secrets(state):
    """How many secrets of ours libvirt holds (usages only; values are never read)."""
    listing = vm_ssh(state, "virsh -q -c %s secret-list" % URI)
    return sum(1 for line in listing.splitlines() if USAGE_PREFIX in line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="number of secrets (default 8)")
    parser.add_argument("--strategy", choices=["mitogen_linear", "linear"], default="mitogen_linear",
                        help="Ansible strategy (default: the suite's mitogen_linear)")
    args = parser.parse_args()
    OPTIONS["strategy"] = args.strategy
    batch = entries(args.count)
    tasks = plays(batch)
    state = tempfile.mkdtemp(prefix="secvirt-bench-secret-")
    seconds = {}
    libvirt_version = ""
    try:
        subprocess.run([sys.executable, VM, "up", "--state", state, "--platforms", PLATFORM], check=True,
                       stdout=subprocess.DEVNULL)
        write_inventory(state)
        # libvirtd must answer before anything is timed (socket-activated or not)
        vm_ssh(state, "systemctl start libvirtd.service && virsh -c %s uri" % URI)
        libvirt_version = vm_ssh(state, "virsh -c %s version --daemon | sed -n 's/^Running against daemon: *//p'"
                                 % URI).strip()

        def check(label, changed, defined, want_changed, want_defined):
            if bool(changed) != want_changed or defined != want_defined:
                sys.exit("%s: changed=%d, %d of our secrets defined; expected changed=%s and %d defined"
                         % (label, changed, defined, want_changed, want_defined))

        # untimed: a clean start, and the module's and libvirt's first load
        changed = run_playbook(state, "warmup", tasks["absent"], batch)[1]
        check("warm-up (absent)", 0, our_secrets(state), False, 0)
        seconds["ping"] = run_playbook(state, "ping", tasks["ping"], batch)[0]
        for key, task in (("A", tasks["loop"]), ("B", tasks["batch"])):
            for run, want_changed in (("first", True), ("second", False)):
                label = "%s %s" % (key, run)
                seconds[label], changed = run_playbook(state, label.replace(" ", "-"), task, batch)
                check(label, changed, our_secrets(state), want_changed, args.count)
            changed = run_playbook(state, "absent-%s" % key, tasks["absent"], batch)[1]
            check("undefine after %s" % key, changed, our_secrets(state), True, 0)
    finally:
        subprocess.run([sys.executable, VM, "down", "--state", state], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ping = seconds["ping"]
    print("%d private ephemeral volume secrets, libvirt %s, strategy %s; one task per playbook"
          % (args.count, libvirt_version or "?", OPTIONS["strategy"]))
    print("A = libvirt_secret with loop: (%d module calls), B = libvirt_secret with secrets: (1 call)" % args.count)
    print()
    print("%-34s %8s %14s" % ("playbook", "seconds", "above ping"))
    print("%-34s %8.1f %14s" % ("ping (baseline)", ping, "-"))
    names = {"first": "first run (defines)", "second": "second run (no change)"}
    for key in ("A", "B"):
        for run in ("first", "second"):
            total = seconds["%s %s" % (key, run)]
            print("%-34s %8.1f %14.1f" % ("%s %s" % (key, names[run]), total, total - ping))
    print()
    print("%-24s %14s %16s" % ("ratio A/B", "playbook", "above ping"))
    for run in ("first", "second"):
        a, b = seconds["A %s" % run], seconds["B %s" % run]
        above = "%.1f" % ((a - ping) / (b - ping)) if b - ping > 0 else "n/a"
        print("%-24s %14s %16s" % (names[run], "x%.1f" % (a / b), "x" + above if above != "n/a" else above))


if __name__ == "__main__":
    main()
