# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Confirmed commit on the cell, in the spirit of network operating systems'
"commit confirmed": ``begin`` snapshots the registry and its secrets and arms
a timer process on the cell; unless ``confirm`` comes before the deadline the
timer puts the snapshot back and converges the cell to it, with or without
the controller. ``rollback`` does the same at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .errors import PicError
from .exits import cell_runs_wireguard
from .registry import write_atomic


class Commits(object):
    def __init__(self, registry):
        self.registry = registry
        self.dir = os.path.join(registry.state_dir, 'commits')
        self.pending_path = os.path.join(self.dir, 'pending.json')

    def pending(self):
        try:
            with open(self.pending_path) as handle:
                return json.load(handle)
        except (IOError, ValueError):
            return None

    @property
    def expired_path(self):
        return os.path.join(self.dir, 'expired.json')

    def expired(self):
        try:
            with open(self.expired_path) as handle:
                return json.load(handle)
        except (IOError, ValueError):
            return None

    def clear_expired(self):
        if os.path.exists(self.expired_path):
            os.unlink(self.expired_path)

    def check_not_expired(self):
        """Refuse changes after an unconfirmed commit reverted by itself: the rest of
        that run must not re-apply half of the change."""
        gone = self.expired()
        if gone is not None:
            raise PicError("the confirmed commit %r was not confirmed in time and the cell was reverted at %s; "
                           "nothing more of that change is applied until pic_commit begins, confirms or rolls "
                           "back a commit" % (gone['id'], time.strftime('%H:%M:%S', time.localtime(gone['at']))),
                           details={'expired_commit': gone})

    def snapshot_dir(self, commit_id):
        return os.path.join(self.dir, commit_id)

    def begin(self, commit_id, timeout, entry_point):
        """Snapshot (under the registry lock, held by the caller) and arm the timer."""
        current = self.pending()
        if current is not None:
            raise PicError("commit %r is still waiting for confirmation (until %s); confirm or roll it back first"
                           % (current['id'], time.strftime('%H:%M:%S', time.localtime(current['deadline']))),
                           'id', commit_id)
        if not os.path.exists(entry_point):
            raise PicError("the cell-side entry point is not installed (the connectivity role installs it); the "
                           "timer that reverts an unconfirmed commit needs it", 'entry_point', entry_point)
        snap = self.snapshot_dir(commit_id)
        if os.path.exists(snap):
            shutil.rmtree(snap)
        os.makedirs(snap, 0o700)
        if os.path.exists(self.registry.path):
            shutil.copy2(self.registry.path, os.path.join(snap, 'registry.json'))
        if os.path.isdir(self.registry.secrets_dir):
            shutil.copytree(self.registry.secrets_dir, os.path.join(snap, 'secrets'))
        deadline = time.time() + timeout
        # pending first: the timer stops at once if it finds no pending commit of its own
        write_atomic(self.pending_path, json.dumps({'id': commit_id, 'deadline': deadline, 'pid': None}))
        log = open(os.path.join(self.dir, '%s.log' % commit_id), 'ab')
        proc = subprocess.Popen([entry_point, 'revert', '--state-dir', self.registry.state_dir, '--commit', commit_id,
                                 '--deadline', '%.3f' % deadline], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, close_fds=True)
        log.close()
        write_atomic(self.pending_path, json.dumps({'id': commit_id, 'deadline': deadline, 'pid': proc.pid}))
        return deadline

    def _disarm(self, current):
        if current.get('pid') and current['pid'] != os.getpid():   # not the timer itself, reverting
            try:
                os.kill(current['pid'], signal.SIGTERM)
            except OSError:
                pass
        if os.path.exists(self.pending_path):
            os.unlink(self.pending_path)

    def confirm(self, commit_id):
        current = self.pending()
        if current is None or current['id'] != commit_id:
            return False
        self._disarm(current)
        shutil.rmtree(self.snapshot_dir(commit_id), ignore_errors=True)
        return True

    def restore(self, commit_id):
        """Put the snapshot back (registry and secrets); the caller converges."""
        snap = self.snapshot_dir(commit_id)
        if not os.path.isdir(snap):
            raise PicError("no snapshot of commit %r on this cell" % commit_id, 'id', commit_id)
        saved = os.path.join(snap, 'registry.json')
        if os.path.exists(saved):
            with open(saved) as handle:
                write_atomic(self.registry.path, handle.read())
        elif os.path.exists(self.registry.path):
            os.unlink(self.registry.path)
        if os.path.isdir(self.registry.secrets_dir):
            shutil.rmtree(self.registry.secrets_dir)
        if os.path.isdir(os.path.join(snap, 'secrets')):
            shutil.copytree(os.path.join(snap, 'secrets'), self.registry.secrets_dir)
        current = self.pending()
        if current is not None and current['id'] == commit_id:
            self._disarm(current)
        shutil.rmtree(snap, ignore_errors=True)


def revert(registry, commit_id, source='pic_commit rollback', actor=None):
    """Put commit ``commit_id``'s snapshot back and converge the cell to it, under the
    registry lock: the connections the commit added go away, the ones it changed or
    removed come back as they were. The revert goes to the audit journal."""
    from .dataplane import Cell
    commits = Commits(registry)
    with registry:
        now = registry.load()
        commits.restore(commit_id)
        before = registry.load()
        cell = Cell(registry)
        try:
            changes = cell.converge(before)
            for cid, conn in now['connections'].items():
                if cid not in before['connections'] and conn.get('interface') and cell_runs_wireguard(conn['type']):
                    changes.extend(cell.drop_wg(cid, conn['interface']))
        finally:
            cell.close()
        record_revert(registry, '%s of commit %s' % (source, commit_id), actor, (now, before), changes)
    return changes


def record_revert(registry, source, actor, docs, changes):
    """Journal a revert; a journal that cannot be written does not stop it (said on stderr)."""
    from . import audit
    try:
        audit.Journal(registry.state_dir).append(audit.entry(source, actor, docs[0], docs[1], changes))
    except (OSError, PicError) as exc:
        sys.stderr.write('pic-connectivity: the audit journal was not written: %s\n' % exc)


def wait_and_revert(registry, commit_id, deadline):
    """The timer: sleep until ``deadline``; revert unless the commit was confirmed meanwhile."""
    commits = Commits(registry)
    while time.time() < deadline:
        current = commits.pending()
        if current is None or current['id'] != commit_id:
            return []
        time.sleep(min(0.5, max(0.0, deadline - time.time())))
    current = commits.pending()
    if current is None or current['id'] != commit_id:
        return []
    changes = revert(registry, commit_id, 'timer revert')
    write_atomic(commits.expired_path, json.dumps({'id': commit_id, 'at': time.time()}))
    return changes
