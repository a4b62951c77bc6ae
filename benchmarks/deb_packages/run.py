# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of an "install these packages" task that has nothing to install:
ansible.builtin.apt against secvirt.kvm.deb_packages, in one run.

Boots one test VM (virt image, its packages already installed) and runs
three playbooks against it with the strategy the suite uses (mitogen):
REPEAT ping tasks (the baseline: connection and task overhead), REPEAT apt
tasks, REPEAT deb_packages tasks, each for the same list of installed
packages. Prints each per-task cost above the baseline and the ratio.
Needs the cached image (`make image`) and nothing else loading the machine
if the figures are to mean anything.

Usage: .venv/bin/python benchmarks/deb_packages/run.py [--repeat 5]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VM = os.path.join(ROOT, "tests", "harness", "vm.py")
PLATFORM = '[{"name": "bench", "image": "virt", "memory_mb": 1536, "cpus": 2, "ssh_port": 2391}]'
PACKAGES = ["libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "python3-libvirt", "openssl"]
TASKS = {
    "ping (baseline)": {"ansible.builtin.ping": {}},
    "ansible.builtin.apt": {"ansible.builtin.apt": {"name": PACKAGES, "state": "present", "install_recommends": False,
                                                    "cache_valid_time": 86400}},
    "secvirt.kvm.deb_packages": {"secvirt.kvm.deb_packages": {"name": PACKAGES}},
}


def playbook_seconds(state, task, repeat):
    play = [{"hosts": "bench", "gather_facts": False,
             "tasks": [dict(task, name="task %d" % i) for i in range(repeat)]}]
    inventory = {"all": {"hosts": {"bench": {
        "ansible_host": "127.0.0.1", "ansible_port": 2391, "ansible_user": "root",
        "ansible_ssh_private_key_file": os.path.join(state, "id_ed25519"),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3"}}}}
    with open(os.path.join(state, "play.json"), "w") as fh:
        json.dump(play, fh)
    with open(os.path.join(state, "inventory.json"), "w") as fh:
        json.dump(inventory, fh)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_STRATEGY_PLUGINS=os.path.join(ROOT, ".cache", "mitogen-strategy"),
               ANSIBLE_STRATEGY="mitogen_linear", ANSIBLE_PIPELINING="true",
               ANSIBLE_DEPRECATION_WARNINGS="false")
    started = time.monotonic()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                    os.path.join(state, "inventory.json"), os.path.join(state, "play.json")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="secvirt-bench-")
    try:
        subprocess.run([sys.executable, VM, "up", "--state", state, "--platforms", PLATFORM], check=True,
                       stdout=subprocess.DEVNULL)
        # the packages must be installed for the comparison to be "nothing to do"
        subprocess.run([sys.executable, VM, "ssh", "--state", state, "bench", "--", "dpkg-query -W " + " ".join(PACKAGES)],
                       check=True, stdout=subprocess.DEVNULL)
        seconds = {name: playbook_seconds(state, task, args.repeat) for name, task in TASKS.items()}
    finally:
        subprocess.run([sys.executable, VM, "down", "--state", state], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = seconds["ping (baseline)"]
    per_task = {name: (total - base) / args.repeat for name, total in seconds.items()}
    print("%d tasks per playbook, %d packages, all installed; per task = (playbook - ping playbook) / %d"
          % (args.repeat, len(PACKAGES), args.repeat))
    for name, total in seconds.items():
        line = "%-26s playbook %6.1f s" % (name, total)
        if name != "ping (baseline)":
            line += "   per task %5.2f s" % per_task[name]
        print(line)
    print("playbook time, apt / deb_packages: x%.1f; deb_packages above a ping per task: %.2f s"
          % (seconds["ansible.builtin.apt"] / seconds["secvirt.kvm.deb_packages"],
             per_task["secvirt.kvm.deb_packages"]))


if __name__ == "__main__":
    main()
