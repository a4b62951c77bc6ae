# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare the emulated CPU models the test VMs could boot with, in one run.

For each configuration, one VM (virt image, 2 vCPUs, booted from its kernel,
no saved boot) runs workload.sh: Python imports, a Python loop, fork+exec,
small syscalls, hashing, AES. Prints each time and its ratio to the first
configuration (`-cpu max`, the stock kernel command line: what the harness
used before). Needs the cached image (`make image`) and no other VM running
if the figures are to mean anything.

Usage: .venv/bin/python benchmarks/tcg_cpu/run.py [--configs max:,max:mitigations=off,qemu64:mitigations=off]
       .venv/bin/python benchmarks/tcg_cpu/run.py --configs "qemu64:mitigations=off tsc=reliable:2:system,qemu64:mitigations=off tsc=reliable:2:auto"
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VM = os.path.join(HERE, "..", "..", "tests", "harness", "vm.py")
PLATFORM = '[{"name": "bench", "image": "virt", "memory_mb": 1536, "cpus": %d}]'


def measure(cpu, kernel_args, cpus=2, qemu="auto"):
    env = dict(os.environ, SECVIRT_ACCEL="tcg", SECVIRT_SNAPSHOTS="0", SECVIRT_TCG_CPU=cpu,
               SECVIRT_TCG_KERNEL_ARGS=kernel_args, SECVIRT_QEMU=qemu)
    state = tempfile.mkdtemp(prefix="secvirt-bench-")
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, VM, "up", "--state", state, "--platforms", PLATFORM % cpus], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        boot = time.monotonic() - started
        with open(os.path.join(HERE, "workload.sh"), "rb") as script:
            out = subprocess.run([sys.executable, VM, "ssh", "--state", state, "bench", "sh -s"], env=env,
                                 stdin=script, check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run([sys.executable, VM, "down", "--state", state], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = {"boot to SSH": boot * 1000}
    for line in out.splitlines():
        ms, _unit, command = line.split(" ", 2)
        times[command] = float(ms)
    return times


def parse_config(text):
    """'cpu:kernel-args[:vcpus[:qemu]]' -> (cpu, kernel args, vcpus, qemu)."""
    fields = text.split(":")
    return tuple(fields + ["", "", "2", "auto"][len(fields):])[:4]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="max:,max:mitigations=off,qemu64:mitigations=off",
                        help="comma-separated cpu:kernel-args[:vcpus[:qemu]] (vcpus default 2; qemu: auto, the "
                             "harness's, or system, the machine's); the first is the baseline")
    args = parser.parse_args()
    configs = [parse_config(c) for c in args.configs.split(",")]
    results = [measure(cpu, kargs, int(cpus), qemu) for cpu, kargs, cpus, qemu in configs]
    names = ["-cpu %s -smp %s %s%s" % (cpu, cpus, kargs or "(stock cmdline)", "" if qemu == "auto" else " " + qemu)
             for cpu, kargs, cpus, qemu in configs]
    print("%-60s" % "workload" + "".join("%34s" % n for n in names))
    for key in results[0]:
        base = results[0][key]
        cells = ["%10.2f s (x%.2f)" % (r[key] / 1000, r[key] / base) for r in results]
        print("%-60s" % key[:60] + "".join("%34s" % c for c in cells))


if __name__ == "__main__":
    main()
