# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit journal on the cell: one JSON object a line in ``audit.jsonl``
under the state directory (0600), one line per change the collection made.

A line holds when (``time``, UTC), what made the change (``source``: the
module, or ``monitor``), who says they asked for it (``actor``: what the
controller passed as ``audit_actor``, not authenticated) and who ran it on the
cell (``cell_user``: the effective user and sudo's ``SUDO_USER``), then what
changed: the registry records before and after (``changed``), the connections
whose secrets changed (their names only) and the data plane changes.

Secrets never reach it: the registry's records hold none (secrets live in
their own files), the fields that key a secret's fingerprint are left out, and
every string is masked against the run's secrets before it is written.

Rotation is by size: past ``max_bytes`` the file becomes ``audit.jsonl.1``
(the older ones shift up to ``.<keep>``, the oldest is dropped). Appends and
rotation serialize on ``audit.lock``, so the monitor and a module may append
at the same time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import time

from .errors import PicError
from .registry import open_nofollow, read_nofollow

AUDIT_FILE = 'audit.jsonl'
MAX_BYTES = 1024 * 1024     # rotate past 1 MiB ...
KEEP = 5                    # ... keeping 5 older files: at most 6 MiB of history
MASK = '********'
# Record fields that are no change an operator reads and could help guess a secret.
HIDDEN_FIELDS = ('fingerprint_key',)
SECTIONS = ('settings', 'connections', 'peers', 'services', 'links')
MAX_ACTOR = 200


def check_actor(value, field='audit_actor'):
    """The actor as given (None stays None): printable text, at most 200 characters."""
    if value is None or value == '':
        return None
    if not isinstance(value, str) or len(value) > MAX_ACTOR or not value.isprintable():
        raise PicError("must be printable text of at most %d characters (for example alice@laptop)" % MAX_ACTOR,
                       field)
    return value


def _shown(record):
    if not isinstance(record, dict):
        return record
    return dict((k, v) for k, v in record.items() if k not in HIDDEN_FIELDS)


def registry_changes(before, after):
    """``{'<section>.<key>': {'before': record or None, 'after': record or None}}``
    for every record that differs; the settings as one record."""
    out = {}
    for section in SECTIONS:
        old, new = (before or {}).get(section) or {}, (after or {}).get(section) or {}
        if section == 'settings':
            if old != new:
                out['settings'] = {'before': old or None, 'after': new or None}
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out['%s.%s' % (section, key)] = {'before': _shown(old.get(key)), 'after': _shown(new.get(key))}
    return out


def scrub(value, secrets):
    """``value`` with every occurrence of a form of ``secrets`` replaced by a mask."""
    forms = sorted((s for s in secrets or () if isinstance(s, str) and s), key=len, reverse=True)
    if not forms:
        return value
    text = json.dumps(value, sort_keys=True)
    if not any(form in text for form in forms):
        return value
    return _scrub(value, forms)


def _scrub(value, forms):
    if isinstance(value, dict):
        return dict((_scrub(k, forms), _scrub(v, forms)) for k, v in value.items())
    if isinstance(value, list):
        return [_scrub(v, forms) for v in value]
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, MASK)
    return value


def cell_user():
    """Who runs the change on the cell: the effective user, and the user sudo
    (Ansible's become) ran it for when there is one."""
    try:
        import pwd
        user = pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        user = str(os.geteuid())
    out = {'user': user}
    sudo_user = os.environ.get('SUDO_USER')
    if sudo_user and sudo_user.isprintable() and len(sudo_user) <= 64:
        out['sudo_user'] = sudo_user
    return out


def entry(source, actor=None, before=None, after=None, changes=None, secrets_changed=None, now=None):
    """One journal line (a dict) for a change."""
    now = time.time() if now is None else now
    line = {'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now)), 'ts': round(now, 3),
            'source': source, 'actor': actor, 'cell_user': cell_user(),
            'changed': registry_changes(before, after), 'changes': list(changes or [])}
    if secrets_changed:
        line['secrets_changed'] = sorted(secrets_changed)
    return line


class Journal(object):
    """The audit journal of one state directory."""

    def __init__(self, state_dir, max_bytes=MAX_BYTES, keep=KEEP):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, AUDIT_FILE)
        self.lock_path = os.path.join(state_dir, 'audit.lock')
        self.max_bytes = max_bytes
        self.keep = keep

    def rotated(self, n):
        return '%s.%d' % (self.path, n)

    def append(self, line, secrets=None):
        """Append ``line`` (masked against ``secrets``), rotating first when the
        file is past ``max_bytes``."""
        data = (json.dumps(scrub(line, secrets), sort_keys=True, separators=(',', ':')) + '\n').encode('utf-8')
        lock = open_nofollow(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._rotate_if_full()
            fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def _rotate_if_full(self):
        try:
            size = os.lstat(self.path).st_size
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        if size < self.max_bytes:
            return
        if self.keep < 1:
            os.unlink(self.path)
            return
        for n in range(self.keep - 1, 0, -1):
            if os.path.lexists(self.rotated(n)):
                os.rename(self.rotated(n), self.rotated(n + 1))
        os.rename(self.path, self.rotated(1))

    def recent(self, count=20):
        """The last ``count`` entries, oldest first (lines that do not parse are skipped)."""
        if count is None or count <= 0:
            return []
        found = []
        for path in [self.path] + [self.rotated(n) for n in range(1, self.keep + 1)]:
            try:
                text = read_nofollow(path)
            except (OSError, UnicodeDecodeError):
                text = None
            if text is None:
                continue
            found = _parse_lines(text) + found
            if len(found) >= count:
                break
        return found[-count:]


def _parse_lines(text):
    out = []
    for raw in text.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def render(entries):
    """The entries as text for the terminal, one block per entry."""
    if not entries:
        return 'no audit entries\n'
    lines = []
    for item in entries:
        who = item.get('actor') or 'no actor given'
        cell = item.get('cell_user') or {}
        via = cell.get('user', '?') + (' (sudo from %s)' % cell['sudo_user'] if cell.get('sudo_user') else '')
        lines.append('%s  %s  by %s, as %s' % (item.get('time', '?'), item.get('source', '?'), who, via))
        for key, change in sorted((item.get('changed') or {}).items()):
            lines.append('  %s: %s -> %s' % (key, _brief(change.get('before')), _brief(change.get('after'))))
        for name in item.get('secrets_changed') or []:
            lines.append('  secrets of connection %s changed' % name)
        for change in item.get('changes') or []:
            lines.append('  - %s' % change)
    return '\n'.join(lines) + '\n'


def _brief(record):
    if record is None:
        return '(none)'
    return json.dumps(record, sort_keys=True, separators=(',', ':'))
