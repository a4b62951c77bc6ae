#!/usr/bin/env python3
"""How fast this machine runs a fixed piece of Python work, in seconds.

Usage: python3 speed.py [--rounds N]

The suite's time follows the machine's speed that day: on the same kind of
machine (2 cores, the test VMs under TCG), one commit took 40m30s one day
and 52m03s another, and `benchmarks/tcg_cpu` booted its VM in 31.3 s and
41.9 s (docs/testing.md, "Whole-suite runs"). run-suite.sh prints this
figure before the scenarios start and after they end, beside the stage
timings, so that a run's total can be read against the speed it ran at.

The work is single-threaded and CPU-bound, like most of what the suite does
(guest code under TCG, Python on the controller): a Python loop, compiling
Python source (what every Ansible run's interpreter on a VM does with the
modules sent to it), a JSON round trip and SHA-256 over 16 MiB. Each round
does the same work; the fastest round is printed (the other rounds show
what else the machine was doing, not how fast it is).
"""
import argparse
import hashlib
import json
import time


def work():
    total = sum(i * i for i in range(1_000_000))
    source = "\n".join("def f%d(a, b=%d):\n    return [x * b for x in range(a) if x %% 3]\n" % (i, i)
                       for i in range(3000))
    for _ in range(3):
        compile(source, "<speed>", "exec")
    data = {"k%d" % i: {"v": list(range(20)), "s": "x" * 20} for i in range(5000)}
    for _ in range(5):
        data = json.loads(json.dumps(data))
    digest = hashlib.sha256(b"\0" * (16 << 20)).hexdigest()
    return total, digest


def measure(rounds):
    best = None
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("%.2f" % measure(args.rounds))


if __name__ == "__main__":
    main()
