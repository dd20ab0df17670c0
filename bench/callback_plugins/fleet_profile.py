# -*- coding: utf-8 -*-
"""Where a fleet run's CPU goes, per task: an ansible-playbook callback for bench/fleet.py.

Enabled by bench/fleet.py with --profile (ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins,
ANSIBLE_CALLBACKS_ENABLED=fleet_profile, FLEET_PROFILE_OUT=<file.json>). For every task (in
the order first seen) it records the host results (ok / changed / skipped / failed), the loop
items, and the CPU time spent between the task's start and the next one's:

* ``main_cpu_s``: the ansible-playbook process itself (getrusage RUSAGE_SELF: the strategy,
  templating, variable and result handling, its threads);
* ``workers_cpu_s``: the worker processes it reaped in that time (RUSAGE_CHILDREN: each
  worker's own work, its connection plugin and everything the worker waited for: the
  interpreter wrapper, the module's python in the cell).

With the linear strategy every host finishes a task before the next starts; the callback
joins the finished workers (waiting up to a second for those still exiting) before it closes
a task, so that their CPU is counted in it and not in the next. The sum over the tasks is the run's CPU time (as wait4() gives it) up to the
last workers reaped after the final task. Stdlib and ansible-core only.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = '''
    name: fleet_profile
    type: aggregate
    short_description: CPU time per task of a fleet run (bench/fleet.py)
    description:
      - Writes the CPU time of the ansible-playbook process and of its reaped workers per task,
        with the task's result counts, as JSON to the file named by E(FLEET_PROFILE_OUT).
    requirements:
      - enabled in the callbacks (ANSIBLE_CALLBACKS_ENABLED=fleet_profile)
'''

import json
import multiprocessing
import os
import resource
import time

from ansible.plugins.callback import CallbackBase


def _cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _reap(timeout=1.0):
    """Join the workers that finished (their CPU then counts in RUSAGE_CHILDREN); a worker
    sends its result just before it exits, so wait for the stragglers a little."""
    deadline = time.time() + timeout
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.005)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fleet_profile'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.tasks = {}
        self.order = []
        self.current = None
        self.mark = None
        self.started = time.time()

    def _close(self):
        _reap()
        now = (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.time())
        if self.current is not None and self.mark is not None:
            entry = self.tasks[self.current]
            entry['main_cpu_s'] += now[0] - self.mark[0]
            entry['workers_cpu_s'] += now[1] - self.mark[1]
            entry['wall_s'] += now[2] - self.mark[2]
        self.mark = now

    def _start(self, task):
        self._close()
        name = task.get_name().strip() or task.action
        key = '%s [%s]' % (name, task.action)
        if key not in self.tasks:
            self.tasks[key] = {'task': name, 'action': task.action, 'starts': 0, 'ok': 0, 'changed': 0,
                               'skipped': 0, 'failed': 0, 'items': 0,
                               'main_cpu_s': 0.0, 'workers_cpu_s': 0.0, 'wall_s': 0.0}
            self.order.append(key)
        self.tasks[key]['starts'] += 1
        self.current = key

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _count(self, result, what):
        key = self.current
        if key in self.tasks:
            self.tasks[key][what] += 1
            if what == 'ok' and result._result.get('changed'):
                self.tasks[key]['changed'] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, 'ok')

    def v2_runner_on_skipped(self, result):
        self._count(result, 'skipped')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._count(result, 'failed')

    def v2_runner_item_on_ok(self, result):
        self._count(result, 'items')

    def v2_runner_item_on_skipped(self, result):
        self._count(result, 'items')

    def v2_playbook_on_stats(self, stats):
        self._close()
        self.current = None
        path = os.environ.get('FLEET_PROFILE_OUT')
        if not path:
            return
        tasks = []
        for key in self.order:
            entry = dict(self.tasks[key])
            for field in ('main_cpu_s', 'workers_cpu_s', 'wall_s'):
                entry[field] = round(entry[field], 3)
            tasks.append(entry)
        doc = {'tasks': tasks, 'main_cpu_s': round(_cpu(resource.RUSAGE_SELF), 3),
               'workers_cpu_s': round(_cpu(resource.RUSAGE_CHILDREN), 3),
               'wall_s': round(time.time() - self.started, 3)}
        with open(path, 'w') as handle:
            json.dump(doc, handle, indent=1, sort_keys=True)
            handle.write('\n')
