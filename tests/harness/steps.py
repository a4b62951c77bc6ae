"""Copy a molecule scenario's output into its log and time its steps.

Usage: molecule test -s S 2>&1 | python3 steps.py LOG STEPS

Every line read goes to LOG as it is. When molecule announces a step
("INFO     [S > converge] Executing", or "S ➜ converge: Executing" in
colour), the step's name and the time are
appended to STEPS (tab-separated, one line per step, the first announcement
only); at the end of the input an "end" line closes the last step. The
suite's closing table (run-suite.sh) reads STEPS to show where each
scenario's time goes: create, converge, idempotence, verify.

Usage: python3 steps.py --row NAME STEPS RUNS

prints the scenario's row of that table: each step's time, then the
Ansible runs that began during verify (the role runs inside the tests),
their task executions and the time spent inside them. RUNS is the file
molecule/_harness/callback_plugins/secvirt_runs.py wrote (one line per
ansible-playbook or ansible process); a missing file shows as "-".

Usage: python3 steps.py --executions RUNS

prints the scenario's task executions (one per task and host) over all its
Ansible runs, converge and tests together.

Usage: python3 steps.py --top-tasks N TASKS...

prints the N tasks that cost the most time over the given -tasks.tsv files
(every scenario's, written beside RUNS), by task name and by module, with
how many times each ran: where the suite's Ansible time goes.
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


STEPS = ("syntax", "create", "converge", "idempotence", "verify", "destroy")


def runs(lines):
    """[(start, end, tasks, executions, what)] from the RUNS lines (a line
    cut short by a run that was killed is skipped)."""
    parsed = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) == 5 and all(f.isdigit() for f in fields[:4]):
            parsed.append((int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), fields[4]))
    return parsed


def in_step(step_lines, run_list, wanted):
    """(runs, executions, seconds) of the runs that began during the step
    ``wanted`` (each time molecule ran it)."""
    marks = [(name, int(stamp)) for name, stamp in (line.split("\t") for line in step_lines if "\t" in line)]
    windows = [(start, end) for (name, start), (_, end) in zip(marks, marks[1:]) if name == wanted]
    chosen = [run for run in run_list if any(start <= run[0] < end for start, end in windows)]
    return len(chosen), sum(run[3] for run in chosen), sum(run[1] - run[0] for run in chosen)


def clock(secs):
    return "%d:%02d" % (secs // 60, secs % 60)


def row(name, step_lines, run_lines):
    """The closing table's row for one scenario (run_lines None: no RUNS file)."""
    took = dict(durations(step_lines))
    cells = ["%-22s" % name] + ["%8s" % (clock(took[step]) if step in took else "-") for step in STEPS]
    if run_lines is None:
        cells += ["%6s %7s %8s" % ("-", "-", "-")]
    else:
        count, executions, seconds = in_step(step_lines, runs(run_lines), "verify")
        cells += ["%6d %7d %8s" % (count, executions, clock(seconds))]
    return " ".join(cells)


def _lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return None


def top_tasks(lines, count):
    """The table of the ``count`` costliest task names and modules."""
    by_name, by_action, total = {}, {}, 0.0
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        try:
            seconds = float(fields[1])
        except ValueError:
            continue
        total += seconds
        for table, key in ((by_name, fields[3]), (by_action, fields[2])):
            spent, runs = table.get(key, (0.0, 0))
            table[key] = (spent + seconds, runs + 1)
    out = ["%8s %6s %6s  %s" % ("seconds", "share", "times", "task (all scenarios: %d s in Ansible tasks)" % total)]
    for table in (by_name, by_action):
        for key, (spent, runs) in sorted(table.items(), key=lambda item: -item[1][0])[:count]:
            out.append("%8d %5.1f%% %6d  %s" % (spent, 100 * spent / total if total else 0, runs, key[:90]))
        out.append("")
    return "\n".join(out).rstrip("\n")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--top-tasks":
        collected = []
        for path in sys.argv[3:]:
            collected += _lines(path) or []
        print(top_tasks(collected, int(sys.argv[2])))
    elif len(sys.argv) == 5 and sys.argv[1] == "--row":
        print(row(sys.argv[2], _lines(sys.argv[3]) or [], _lines(sys.argv[4])))
    elif len(sys.argv) == 3 and sys.argv[1] == "--executions":
        found = _lines(sys.argv[2])
        print("" if found is None else sum(run[3] for run in runs(found)))
    elif len(sys.argv) == 3:
        sys.stdin.reconfigure(errors="replace")
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
