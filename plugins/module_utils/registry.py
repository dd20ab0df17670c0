# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry on the cell: one JSON document under the state directory.

Written atomically (temp file, fsync, rename, fsync of the directory) under an
exclusive lock, so concurrent runs serialize and an interrupted run leaves
either the old or the new document. Secrets live beside it in ``secrets/``,
one 0600 file per connection.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import tempfile
import time

from .errors import PicError

REGISTRY_VERSION = 1
DEFAULT_STATE_DIR = '/var/lib/pic-connectivity'


def empty():
    return {'version': REGISTRY_VERSION, 'settings': {}, 'connections': {}, 'peers': {}, 'services': {}}


def write_atomic(path, data, mode=0o600):
    """Write bytes or text to ``path`` atomically with ``mode``."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Registry(object):
    """Access to one cell's state directory."""

    def __init__(self, state_dir=DEFAULT_STATE_DIR):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, 'registry.json')
        self.lock_path = os.path.join(state_dir, 'registry.lock')
        self.secrets_dir = os.path.join(state_dir, 'secrets')
        self._lock_fd = None

    # -- locking -----------------------------------------------------------
    def ensure_dirs(self):
        for directory in (self.state_dir, self.secrets_dir):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            os.chmod(directory, 0o700)

    def lock(self, timeout=120.0):
        """Take the exclusive lock (waits for a concurrent run, up to ``timeout``)."""
        self.ensure_dirs()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.time() > deadline:
                    os.close(fd)
                    raise PicError("another run holds %s for more than %ds" % (self.lock_path, timeout))
                time.sleep(0.05)
        self._lock_fd = fd
        return self

    def unlock(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self.lock()

    def __exit__(self, *exc):
        self.unlock()

    # -- document ----------------------------------------------------------
    def load(self):
        if not os.path.exists(self.path):
            return empty()
        try:
            with open(self.path) as handle:
                doc = json.load(handle)
        except ValueError as exc:
            raise PicError("the registry %s is not valid JSON (%s); restore it from a backup" % (self.path, exc))
        base = empty()
        base.update(doc)
        if base.get('version') != REGISTRY_VERSION:
            raise PicError("the registry %s has version %r; this collection reads version %d"
                           % (self.path, base.get('version'), REGISTRY_VERSION))
        return base

    def save(self, doc):
        self.ensure_dirs()
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True) + '\n')

    # -- secrets -------------------------------------------------------------
    def secret_path(self, conn_id):
        return os.path.join(self.secrets_dir, '%s.conf' % conn_id)

    def read_secret(self, conn_id):
        try:
            with open(self.secret_path(conn_id)) as handle:
                return handle.read()
        except IOError:
            return None

    def write_secret(self, conn_id, text):
        self.ensure_dirs()
        write_atomic(self.secret_path(conn_id), text, 0o600)

    def remove_secret(self, conn_id):
        path = self.secret_path(conn_id)
        if os.path.exists(path):
            os.unlink(path)

    # -- runtime state written by the monitor ----------------------------------
    def runtime_path(self):
        return os.path.join(self.state_dir, 'runtime.json')

    def load_runtime(self):
        try:
            with open(self.runtime_path()) as handle:
                return json.load(handle)
        except (IOError, ValueError):
            return {'down': []}

    def save_runtime(self, runtime):
        self.ensure_dirs()
        write_atomic(self.runtime_path(), json.dumps(runtime, sort_keys=True) + '\n')
