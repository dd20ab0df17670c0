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

from . import model
from .errors import PicError

REGISTRY_VERSION = 1
DEFAULT_STATE_DIR = '/var/lib/pic-connectivity'
# Top-level sections of the document: those every saved registry holds, and
# those a registry may lack (older ones; links only with cell links).
REQUIRED_SECTIONS = ('settings', 'connections', 'peers')
OPTIONAL_SECTIONS = ('services', 'links')
# Fields of the records in each section: name -> accepted types.
_STR, _INT, _BOOL, _NONE, _LIST, _DICT = (str,), (int,), (bool,), (type(None),), (list,), (dict,)
RECORD_FIELDS = {
    'connections': {'id': _STR, 'name': _STR, 'type': _STR, 'index': _INT, 'table': _INT, 'mark': _INT,
                    'fail_open': _BOOL, 'interface': _STR + _NONE, 'config': _DICT, 'routes': _DICT,
                    'dns': _LIST, 'pushed_dns': _LIST, 'local_port': _INT, 'dns_port': _INT,
                    'fingerprint_key': _STR, 'fallback': _LIST},
    'peers': {'name': _STR, 'address': _LIST, 'connection': _STR, 'fail_open': _BOOL + _NONE},
    'services': {'name': _STR, 'address': _LIST, 'connection': _STR, 'fail_open': _BOOL + _NONE,
                 'interface': _STR + _NONE},
}
RECORD_REQUIRED = {'connections': ('id', 'name', 'type', 'index', 'table', 'mark'),
                   'peers': ('address',), 'services': ('address',)}


def empty():
    return {'version': REGISTRY_VERSION, 'settings': {}, 'connections': {}, 'peers': {}, 'services': {}}


def _type_ok(value, types):
    # bool is an int for isinstance: an int field must not take true/false.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _check_record(path, section, key, record):
    where = '%s.%s' % (section, key)
    if not isinstance(record, dict):
        raise PicError("the registry %s is damaged: %s must be a mapping, not %s; restore it from a backup"
                       % (path, where, type(record).__name__))
    fields = RECORD_FIELDS.get(section, {})
    for name in RECORD_REQUIRED.get(section, ()):
        if name not in record:
            raise PicError("the registry %s is damaged: %s has no %s; restore it from a backup" % (path, where, name))
    for name, value in record.items():
        if name in fields and not _type_ok(value, fields[name]):
            raise PicError("the registry %s is damaged: %s.%s has the wrong type (%s); restore it from a backup"
                           % (path, where, name, type(value).__name__))
    if section == 'connections' and record['id'] != key:
        raise PicError("the registry %s is damaged: %s holds the id %r; restore it from a backup"
                       % (path, where, record['id']))
    for i, item in enumerate(record.get('address') or []):
        if not isinstance(item, str):
            raise PicError("the registry %s is damaged: %s.address[%d] is not a string; restore it from a backup"
                           % (path, where, i))


def check_shape(doc, path):
    """Refuse anything but a well-formed registry document (PicError naming
    ``path`` and what is wrong); returns the document with absent optional
    sections filled in."""
    if not isinstance(doc, dict):
        raise PicError("the registry %s is damaged: it holds %s, not a registry mapping; restore it from a backup"
                       % (path, type(doc).__name__))
    if doc.get('version') != REGISTRY_VERSION or isinstance(doc.get('version'), bool):
        raise PicError("the registry %s has version %r; this collection reads version %d"
                       % (path, doc.get('version'), REGISTRY_VERSION))
    unknown = sorted(set(doc) - set(('version',) + REQUIRED_SECTIONS + OPTIONAL_SECTIONS))
    if unknown:
        raise PicError("the registry %s is damaged: unknown sections %s; restore it from a backup"
                       % (path, ', '.join(repr(k) for k in unknown)))
    for section in REQUIRED_SECTIONS + OPTIONAL_SECTIONS:
        if section not in doc:
            if section in REQUIRED_SECTIONS:
                raise PicError("the registry %s is damaged: it has no %s; restore it from a backup" % (path, section))
            continue
        if not isinstance(doc[section], dict):
            raise PicError("the registry %s is damaged: %s must be a mapping, not %s; restore it from a backup"
                           % (path, section, type(doc[section]).__name__))
        if section != 'settings':
            for key, record in doc[section].items():
                _check_record(path, section, key, record)
    try:
        _settings, layout = model.normalize_settings(doc['settings'], 'settings.')
    except (PicError, TypeError, ValueError, AttributeError) as exc:
        raise PicError("the registry %s is damaged: %s; restore it from a backup" % (path, getattr(exc, 'msg', exc)))
    _migrate_marks(doc['connections'], layout)
    out = empty()
    out.update(doc)
    return out


def _migrate_marks(conns, layout):
    """The data plane marks a connection's packets with the mark stored in its
    record (model.conn_mark). Every version so far stored the mark of its index,
    and the data plane of the versions before this one computed it from the
    index: a record whose stored mark says otherwise (edited by hand) gets its
    index's mark back, the one its cell has been running with."""
    for record in conns.values():
        if record['mark'] != layout.mark(record['index'], False):
            record['mark'] = layout.mark(record['index'], False)


def open_nofollow(path, flags, mode=0o600):
    """os.open that refuses a symbolic link as the last component."""
    try:
        return os.open(path, flags | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PicError("%s is a symbolic link; the collection refuses to follow it" % path)
        raise


def read_nofollow_bytes(path):
    """The bytes of ``path`` (not followed if a symbolic link), or None when absent."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    with os.fdopen(fd, 'rb') as handle:
        return handle.read()


def read_nofollow(path):
    """The text of ``path`` (not followed if a symbolic link), or None when absent."""
    data = read_nofollow_bytes(path)
    return None if data is None else data.decode('utf-8')


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
    _fsync_dir(directory)


def _fsync_dir(directory):
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_ENCODE = json.JSONEncoder(sort_keys=True).encode


def _members(pairs, indent, last_line):
    """``"key": value`` lines of sorted ``pairs``, commas between them."""
    pairs = sorted(pairs)
    lines = ['%s%s: %s,' % (indent, json.dumps(k), v) for k, v in pairs]
    if lines:
        lines[-1] = lines[-1][:-1]
    return lines + [last_line]


def dumps(doc):
    """The registry as saved: JSON with one line per record (connection, peer,
    service, link), keys sorted. ``json.dumps`` with ``indent`` runs the pure-Python
    encoder (a tenth of a second for 10,000 peers); this runs the C one per record."""
    # (json.dumps of a key: the same escaping as the encoder's)
    top = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            inner = _members(((k, _ENCODE(v)) for k, v in value.items()), '  ', ' }')
            top.append((key, '{\n' + '\n'.join(inner)))
        else:
            top.append((key, _ENCODE(value)))
    return '\n'.join(['{'] + _members(top, ' ', '}')) + '\n'


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
        self._check_dirs_not_links()
        for directory in (self.state_dir, self.secrets_dir):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            os.chmod(directory, 0o700)

    def lock(self, timeout=120.0):
        """Take the exclusive lock (waits for a concurrent run, up to ``timeout``)."""
        self.ensure_dirs()
        fd = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
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
    def _check_dirs_not_links(self):
        for directory in (self.state_dir, self.secrets_dir):
            if os.path.islink(directory):
                raise PicError("%s is a symbolic link; the collection refuses to keep its state or secrets "
                               "through one" % directory)

    def _never_held_one(self):
        """A missing registry is an empty cell only when nothing says one existed:
        no secrets, or an unfinished first save (its marker says so)."""
        if os.path.lexists(self.pending_path):
            try:
                return json.loads(read_nofollow(self.pending_path)).get('registry_existed') is False
            except (ValueError, TypeError, AttributeError, OSError, PicError):
                return False
        try:
            return not any(name.endswith('.conf') for name in os.listdir(self.secrets_dir))
        except OSError:
            return True

    def never_set_up(self):
        """Why this state directory holds no cell (missing, or without a registry),
        or None when it holds one."""
        if not os.path.isdir(self.state_dir):
            return 'no such directory'
        if not os.path.lexists(self.path):
            return 'no registry.json in it'
        return None

    def require_set_up(self, allow_empty=False, hint='set allow_empty=true'):
        """Refuse to read a cell that was never set up here, unless ``allow_empty``:
        a mistyped ``state_dir`` must not read as a healthy cell with no connections.
        ``hint`` says how to accept an empty cell (the module option, the CLI flag)."""
        why = None if allow_empty else self.never_set_up()
        if why is not None:
            raise PicError("%s: nothing of pic.connectivity was ever set up there (state_dir mistyped? "
                           "the connectivity role not run yet?); %s to report it as a cell without "
                           "connections" % (why, hint), 'state_dir', self.state_dir)

    def load(self):
        self._check_dirs_not_links()
        try:
            text = read_nofollow(self.path)
        except UnicodeDecodeError:
            raise PicError("the registry %s is not UTF-8 text; restore it from a backup" % self.path)
        if text is None:
            if not self._never_held_one():
                raise PicError("the registry %s is missing, but the state directory holds secrets or an "
                               "unfinished apply of one; restore it from a backup" % self.path)
            return empty()
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise PicError("the registry %s is not valid JSON (line %d, column %d); restore it from a backup"
                           % (self.path, getattr(exc, 'lineno', 0), getattr(exc, 'colno', 0)))
        return check_shape(doc, self.path)

    def save(self, doc):
        self.ensure_dirs()
        write_atomic(self.path, dumps(doc))

    # -- write-ahead marker: the registry was saved, its apply not finished ----
    @property
    def pending_path(self):
        return os.path.join(self.state_dir, 'registry.applying')

    def has_pending(self):
        """True when a run saved the registry and did not finish applying it."""
        return os.path.lexists(self.pending_path)

    def mark_pending(self):
        """Written before the registry or secrets change; removed once applied."""
        self.ensure_dirs()
        write_atomic(self.pending_path, json.dumps({'pid': os.getpid(),
                                                    'registry_existed': os.path.lexists(self.path)}) + '\n')

    def clear_pending(self):
        if os.path.lexists(self.pending_path):
            os.unlink(self.pending_path)
            _fsync_dir(self.state_dir)

    def apply_pending(self):
        """Converge the cell to the registry when a run left its apply unfinished.
        Returns the changes made ([] when nothing was pending). Takes the lock
        unless the caller holds it."""
        if not self.has_pending():
            return []
        held = self._lock_fd is not None
        if not held:
            self.lock()
        try:
            if not self.has_pending():
                return []
            from .dataplane import Cell
            cell = Cell(self)
            try:
                changes = cell.converge(self.load())
            finally:
                cell.close()
            self.clear_pending()
            return changes
        finally:
            if not held:
                self.unlock()

    # -- secrets -------------------------------------------------------------
    def secret_path(self, conn_id):
        return os.path.join(self.secrets_dir, '%s.conf' % conn_id)

    def read_secret(self, conn_id):
        self._check_dirs_not_links()
        try:
            return read_nofollow(self.secret_path(conn_id))
        except (IOError, OSError, UnicodeDecodeError):
            return None

    def write_secret(self, conn_id, text):
        self.ensure_dirs()
        write_atomic(self.secret_path(conn_id), text, 0o600)

    def remove_secret(self, conn_id):
        path = self.secret_path(conn_id)
        if os.path.lexists(path):
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
