# -*- coding: utf-8 -*-
"""Record every Ansible run of a molecule scenario, for the suite's closing table.

Test harness only (not part of the collection's plugins): the molecule
configuration (.config/molecule/config.yml) enables it for every
ansible-playbook and ansible process of a scenario, the converge and
idempotence runs as well as the role runs inside the tests. When
SECVIRT_ANSIBLE_RUNS names a file (run-suite.sh sets it per scenario), each
run appends one tab-separated line at its end::

    start  end  tasks  executions  what

start and end are Unix times, tasks the tasks started (once per task, as
the output shows a TASK header), executions the task results (one per task
and host), what the playbook's file name or the ad-hoc module. Beside it,
in the file of the same name ending in ``-tasks.tsv``, each task of the run
gets a line::

    start  seconds  action  name

start being the run's, seconds the time from the task's start to the next
task's (or the run's end): what the task cost the run, on every host
together, with Ansible's own work between tasks. Summed by action or name
over a whole suite, these show which tasks the suite's time goes to.
Without the variable it does nothing.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: secvirt_runs
type: aggregate
short_description: record each Ansible run's time and task count (test harness)
description:
  - Appends one line per run to the file named by C(SECVIRT_ANSIBLE_RUNS).
requirements:
  - enable in configuration
"""

import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "secvirt_runs"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("SECVIRT_ANSIBLE_RUNS", "")
        self._start = time.time()
        self._tasks = 0
        self._executions = 0
        self._what = ""
        self._marks = []

    def v2_playbook_on_start(self, playbook):
        # start stays when the callback was loaded, at the process's start:
        # the run's time includes ansible's own start-up on the controller
        name = os.path.basename(getattr(playbook, "_file_name", "") or "")
        self._what = "" if name.startswith("__adhoc") else name

    def _mark(self, task):
        self._tasks += 1
        self._marks.append((time.time(), task.action, task.get_name()))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._mark(task)
        if not self._what:
            self._what = "adhoc:%s" % task.action

    def v2_playbook_on_handler_task_start(self, task):
        self._mark(task)

    def _executed(self, *_args, **_kwargs):
        self._executions += 1

    v2_runner_on_ok = _executed
    v2_runner_on_failed = _executed
    v2_runner_on_skipped = _executed
    v2_runner_on_unreachable = _executed

    def v2_playbook_on_stats(self, stats):
        if not self._path:
            return
        end = time.time()
        line = "%d\t%d\t%d\t%d\t%s\n" % (self._start, end, self._tasks, self._executions,
                                         self._what.replace("\t", " ") or "-")
        # one write of one short line to a file opened for appending: the
        # lines of runs that end at the same time never interleave
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(line)
        ends = [mark[0] for mark in self._marks[1:]] + [end]
        tasks = "".join("%d\t%.1f\t%s\t%s\n" % (self._start, stop - began, action, " ".join(str(name).split()))
                        for (began, action, name), stop in zip(self._marks, ends))
        base = self._path[:-4] if self._path.endswith(".tsv") else self._path
        with open(base + "-tasks.tsv", "a", encoding="utf-8") as handle:
            handle.write(tasks)
