"""Copy a molecule scenario's output into its log and time its steps.

Usage: molecule test -s S 2>&1 | python3 steps.py LOG STEPS

Every line read goes to LOG as it is. When molecule announces a step
("INFO     [S > converge] Executing", or "S ➜ converge: Executing" in
colour), the step's name and the time are
appended to STEPS (tab-separated, one line per step, the first announcement
only); at the end of the input an "end" line closes the last step. The
suite's closing table (run-suite.sh) reads STEPS to show where each
scenario's time goes: create, converge, idempotence, verify.
"""
import re
import sys
import time

# "[S > converge] Executing" in plain output, "S ➜ converge: Executing"
# when molecule colours its output (a terminal, FORCE_COLOR)
STEP = re.compile(r"(?:\[[\w.-]+ > (\w+)\]|[\w.-]+ \u279c (\w+):) Executing")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def main(log_path, steps_path):
    seen = []
    with open(log_path, "w", encoding="utf-8", errors="replace") as log, \
            open(steps_path, "w", encoding="utf-8") as steps:
        for line in sys.stdin:
            log.write(line)
            log.flush()
            match = STEP.search(ANSI.sub("", line))
            # molecule runs destroy twice (first and last); each is a step
            step = match and (match.group(1) or match.group(2))
            if step and (not seen or seen[-1] != step):
                seen.append(step)
                steps.write("%s\t%d\n" % (step, time.time()))
                steps.flush()
        steps.write("end\t%d\n" % time.time())


def durations(lines):
    """[(step, seconds)] from the STEPS lines, in order; a step run twice
    (destroy) is summed."""
    marks = [(name, int(stamp)) for name, stamp in (line.split("\t") for line in lines if "\t" in line)]
    total = {}
    for (name, start), (_, end) in zip(marks, marks[1:]):
        total[name] = total.get(name, 0) + end - start
    return list(total.items())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--durations":
        with open(sys.argv[2], encoding="utf-8") as handle:
            print(" ".join("%s=%d" % item for item in durations(handle.read().splitlines())))
    elif len(sys.argv) == 3:
        sys.stdin.reconfigure(errors="replace")
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
