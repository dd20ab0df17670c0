# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exit services' files that pic_cell writes (rendered on the controller from
the service roles' templates): written only when they differ (0600 unless said),
the files of instances that are gone removed, and only the instances whose files
changed restarted, under supervisord or systemd as the roles run them. The
files' contents are secrets: they appear in no result, message or command line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

from .errors import PicError
from .registry import read_nofollow_bytes, write_atomic

MANIFEST = 'exit-files.json'
# The cell-allocated values a file rendered on the controller names by token: the
# module puts in those of the file's connection from the registry it converged to.
TOKENS = {'PICALLOCIFACEZ': 'interface', 'PICALLOCLOCALPORTZ': 'local_port', 'PICALLOCDNSPORTZ': 'dns_port'}
# A removed connection's id in the paths and instance names of ``cleanup`` (the action
# plugin renders the roles' removal tasks with it).
REMOVED_ID = 'PICREMOVEDIDZ'
_PATH = re.compile(r'/[A-Za-z0-9_.@/-]{1,4000}')
_INSTANCE = re.compile(r'pic-[a-z0-9][a-z0-9-]{0,62}')
# a file's check before it is written (the role's validate, say tor --verify-config):
# an absolute program and words without shell or file-directive meaning, %s the file
_VALIDATE_WORD = re.compile(r'[A-Za-z0-9_.,:=@/+-]{1,200}')
MODES = (0o600, 0o644, 0o700, 0o755)
DIR_MODES = (0o700, 0o755)
CLEANUP_WHEN = ('removed', 'unwanted')
# seconds a run waits for the programs it started to leave STARTING (supervisord's startsecs)
STARTED_TIMEOUT = 20


# the module's own directories under the state dir: never an exit service file's
OWN_DIRS = ('secrets', 'run')


def _check_path(path, roots, field, directory=False):
    if not isinstance(path, str) or not _PATH.fullmatch(path) or '/../' in path + '/' or '/./' in path + '/':
        raise PicError("must be an absolute path of letters, digits and _.@/-", field, path)
    if not any(path.startswith(root.rstrip('/') + '/') for root in roots):
        raise PicError("is outside the exit services' directories (%s)" % ', '.join(roots), field, path)
    state = roots[0].rstrip('/')
    # (an exit service's directory may be a top-level one of the state dir, a file may not)
    top_level = os.path.dirname(path) == state and not directory
    if top_level or any((path + '/').startswith('%s/%s/' % (state, d)) for d in OWN_DIRS):
        raise PicError("is one of the collection's own state files, not an exit service file", field, path)
    return path


def program_path(path, instance, manager, supervisor_dir):
    """Is ``path`` where ``manager`` keeps the program of ``instance``?"""
    if manager == 'systemd':
        return path == '/etc/systemd/system/%s.service' % instance
    return bool(supervisor_dir) and path == os.path.join(supervisor_dir, 'conf.d', instance + '.conf')


_ID = re.compile(r'[a-z0-9][a-z0-9-]{0,62}')


def _removed_id(record):
    """A removed connection's id, as it goes into the cleanup's paths: a slug, or refused."""
    if not isinstance(record.get('id'), str) or not _ID.fullmatch(record['id']):
        raise PicError("the removed connection's id is not a slug (a hand-edited registry?)", 'connections',
                       record.get('id'))
    return record['id']


def _check_instance(instance, field):
    if not isinstance(instance, str) or not _INSTANCE.fullmatch(instance):
        raise PicError("must be an instance name pic-...", field, instance)
    return instance


def check_validate(text, field):
    """A file's check as argv ('%s': the file), or None."""
    if text is None:
        return None
    words = text.split(' ') if isinstance(text, str) else None
    if not words or not all(w == '%s' or _VALIDATE_WORD.fullmatch(w) for w in words) or not words[0].startswith('/') \
            or words.count('%s') != 1:
        raise PicError("must be an absolute program and words of letters, digits and _.,:=@/+-, one of them "
                       "the file's placeholder", field, text)
    return words


def check_files(files, roots, supervisor_dir=None):
    """The ``files`` option: dicts with path, content, mode, instance, program (the
    instance's supervisord program or systemd unit), connection (whose tokens),
    validate (the check a new content must pass before it is written)."""
    out = []
    for i, item in enumerate(files or []):
        field = 'files[%d]' % i
        if isinstance(item, dict) and item.get('directory'):
            item = dict(item, content='')
        if not isinstance(item, dict) or not isinstance(item.get('content'), str):
            raise PicError("must be a dict with path, content and instance", field)
        mode = item.get('mode', 0o600)
        mode = int(mode, 8) if isinstance(mode, str) and re.fullmatch('0?[0-7]{3}', mode) else mode
        if mode not in MODES:
            raise PicError("must be one of 0600, 0644, 0700, 0755", field + '.mode', item.get('mode'))
        instance = _check_instance(item.get('instance'), field + '.instance')
        also = [_check_instance(name, '%s.also[%d]' % (field, j)) for j, name in enumerate(item.get('also') or [])]
        path = _check_path(item.get('path'), roots, field + '.path', directory=bool(item.get('directory')))
        _check_program(path, instance, item, supervisor_dir, field)
        if item.get('directory') and (mode not in DIR_MODES or item.get('program')):
            raise PicError("a directory must be mode 0700 or 0755", field + '.mode', item.get('mode'))
        out.append({'path': path, 'content': item['content'], 'mode': mode, 'instance': instance, 'also': also,
                    'directory': bool(item.get('directory')),
                    'program': bool(item.get('program')), 'connection': item.get('connection'),
                    'manager': item.get('manager'), 'validate': check_validate(item.get('validate'),
                                                                               field + '.validate')})
    return out


def _check_program(path, instance, item, supervisor_dir, field):
    """A program file only where its manager keeps the instance's program; no other file there."""
    if item.get('program'):
        if not program_path(path, instance, item.get('manager') or 'supervisord', supervisor_dir):
            raise PicError("is not where %s keeps the program of %s" % (item.get('manager'), instance),
                           field + '.path', path)
    elif path.startswith('/etc/systemd/') or (supervisor_dir and path.startswith(supervisor_dir + '/')):
        raise PicError("is in the service manager's directory but not a program", field + '.path', path)


def check_cleanup(cleanup, roots):
    """The ``cleanup`` option: what the roles' removal tasks remove (type, path, instance,
    manager, when: ``removed`` - for each removed connection of the type, REMOVED_ID its
    id; ``unwanted`` - whenever the path is not among the files)."""
    out = []
    for i, item in enumerate(cleanup or []):
        field = 'cleanup[%d]' % i
        if not isinstance(item, dict) or item.get('when') not in CLEANUP_WHEN or not isinstance(item.get('type'), str):
            raise PicError("must be a dict with type, path and when (removed or unwanted)", field)
        # (checked as the ids will make them: a slug in place of REMOVED_ID)
        _check_path((item.get('path') or '').replace(REMOVED_ID, 'id'), roots, field + '.path')
        if item.get('instance') is not None:
            _check_instance(item['instance'].replace(REMOVED_ID, 'id'), field + '.instance')
        out.append({'type': item['type'], 'path': item['path'], 'instance': item.get('instance'),
                    'manager': item.get('manager'), 'when': item['when']})
    return out


def detect_manager():
    """``auto``: systemd when the cell runs it (as the roles read ansible_service_mgr), else supervisord."""
    return 'systemd' if os.path.isdir('/run/systemd/system') else 'supervisord'


def for_manager(files, manager):
    """The files of ``manager`` (program files are rendered for each manager when unknown)."""
    return [f for f in files if f.get('manager') in (None, manager)]


def _by_name(doc, name):
    for conn in doc['connections'].values():
        if conn['name'] == name:
            return conn
    return None


def resolve_tokens(doc, item):
    """The file's content with the allocation tokens of its connection put in."""
    content = item['content']
    if 'PICALLOC' not in content:
        return content
    conn = _by_name(doc, item.get('connection'))
    if conn is None:
        raise PicError("names connection %r, which the cell does not have" % item.get('connection'),
                       'files.connection')
    for token, key in TOKENS.items():
        if token in content:
            if conn.get(key) is None:
                raise PicError("connection %r has no %s" % (conn['name'], key), 'files.connection')
            content = content.replace(token, str(conn[key]))
    return content


def _same(path, data, mode):
    try:
        current = read_nofollow_bytes(path)
        st = os.lstat(path)
    except (OSError, PicError):
        return False
    return current == data and (st.st_mode & 0o7777) == mode and st.st_uid == 0


def _same_directory(path, mode):
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o7777) == mode and (st.st_uid, st.st_gid) == (0, 0)


def _make_directory(path, mode):
    """``path`` a directory of root with ``mode`` (made with its parents when missing; never a link)."""
    if os.path.islink(path):
        raise PicError("is a symbolic link; the exit service's directory must be a real one", 'files', path)
    if not os.path.isdir(path):
        os.makedirs(path, mode)
    os.chown(path, 0, 0)
    os.chmod(path, mode)


def load_manifest(state_dir):
    try:
        data = read_nofollow_bytes(os.path.join(state_dir, MANIFEST))
        return json.loads(data.decode('utf-8')) if data else {}
    except (OSError, ValueError, PicError):
        return {}


def digest(content):
    return hashlib.sha256(content.encode('utf-8')).hexdigest()[:16]


class ExitFiles(object):
    """Plan and apply the exit service files of one run."""

    def __init__(self, state_dir, manager, supervisor_dir, runner=None):
        self.state_dir = state_dir
        self.manager = manager
        self.supervisor_dir = supervisor_dir
        self.run = runner or _run

    def plan(self, doc, files, cleanup=(), removed_connections=()):
        """(writes: [(path, bytes, mode, instance, program, validate)], removes: [(path, instance,
        program)], changed instances, removed instances). Removed: the files of the manifest
        no longer listed, and what ``cleanup`` names for the removed connections (records)."""
        manifest = load_manifest(self.state_dir)
        writes, changed = [], set()
        for item in files:
            if item.get('directory'):
                # (a directory the role makes, say Tor's DataDirectory: made first, kept when unlisted)
                if not _same_directory(item['path'], item['mode']):
                    writes.insert(0, (item['path'], None, item['mode'], item['instance'], False, None))
                    changed.add(item['instance'])
                continue
            data = resolve_tokens(doc, item).encode('utf-8')
            if not _same(item['path'], data, item['mode']):
                writes.append((item['path'], data, item['mode'], item['instance'], item['program'],
                               item.get('validate')))
                changed.add(item['instance'])
                changed.update(item.get('also') or [])   # (a file several instances run, say sshuttle's launcher)
        wanted = set(item['path'] for item in files)
        live = set(item['instance'] for item in files)
        files = [item for item in files if not item.get('directory')]
        removes = [(path, entry['instance'], entry.get('program', False)) for path, entry in sorted(manifest.items())
                   if path not in wanted]
        removes.extend(r for r in self._cleanup(cleanup, removed_connections, wanted)
                       if r[0] not in [known[0] for known in removes])
        removed = sorted(set(r[1] for r in removes if r[1]) - live)
        return writes, removes, sorted(changed), removed

    def _cleanup(self, cleanup, removed_connections, wanted):
        """(path, instance, program) of what the roles would remove that is still there."""
        out = []
        for entry in cleanup:
            if entry.get('manager') not in (None, self.manager):
                continue
            if entry['when'] == 'unwanted':
                targets = [(entry['path'], entry.get('instance'))]
            else:
                targets = [(entry['path'].replace(REMOVED_ID, _removed_id(record)),
                            (entry.get('instance') or '').replace(REMOVED_ID, _removed_id(record)) or None)
                           for record in removed_connections if record.get('type') == entry['type']]
            out.extend((path, instance, instance is not None) for path, instance in targets
                       if path not in wanted and os.path.lexists(path))
        return out

    def check(self, planned):
        """Run each new content's check (the role's validate) on a copy beside it: a
        content it refuses stops the run before anything is changed."""
        for path, data, mode, instance, _program, validate in planned[0]:
            if validate:
                self._validate(path, data, mode, instance, validate)

    def _validate(self, path, data, mode, instance, validate):
        directory = os.path.dirname(path)
        scratch = tempfile.mkdtemp(prefix='.pic-check-', dir=directory if os.path.isdir(directory) else None)
        try:
            copy = os.path.join(scratch, os.path.basename(path))
            write_atomic(copy, data, mode)
            proc = self.run([copy if w == '%s' else w for w in validate], check=False)
            if proc.returncode != 0:
                raise PicError("the new file of instance %s fails its check %s (exit %d): %s"
                               % (instance, validate[0], proc.returncode, _complaints(proc)), 'files', path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def apply(self, files, planned):
        writes, removes, changed, removed = planned
        for path, data, mode, _instance, _program, _validate in writes:
            if data is None:
                _make_directory(path, mode)
                continue
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
            write_atomic(path, data, mode)
        for instance in removed:
            self._stop(instance)
        for path, _instance, _program in removes:
            if os.path.lexists(path):
                os.unlink(path)
        manifest = dict((item['path'], {'instance': item['instance'], 'program': item['program']}) for item in files
                        if not item.get('directory'))
        write_atomic(os.path.join(self.state_dir, MANIFEST), json.dumps(manifest, sort_keys=True) + '\n', 0o600)
        programs = set(w[3] for w in writes if w[4])
        return self._restart(changed, programs, bool(removed))

    # -- the service manager, as roles/exit_instance runs it ---------------------------------------
    def _ctl(self, *args):
        return self.run(['supervisorctl', '-c', os.path.join(self.supervisor_dir, 'supervisord.conf')] + list(args))

    def _stop(self, instance):
        if self.manager == 'systemd':
            self.run(['systemctl', 'disable', '--now', instance + '.service'], check=False)

    def _ensure_supervisord(self):
        conf = os.path.join(self.supervisor_dir, 'supervisord.conf')
        if self.run(['supervisorctl', '-c', conf, 'pid'], check=False).returncode != 0:
            self.run(['supervisord', '-c', conf], daemon=True)

    def _wait_started(self, instances, timeout=STARTED_TIMEOUT):
        """Until supervisord no longer reports ``instances`` STARTING (``update`` starts a new
        program without waiting, ``restart`` waits): the run ends with them running, as the
        role's does. Gives up after ``timeout`` seconds (health reports an instance that fails)."""
        deadline = time.monotonic() + timeout
        while instances and time.monotonic() < deadline:
            out = self.run(['supervisorctl', '-c', os.path.join(self.supervisor_dir, 'supervisord.conf'), 'status']
                           + list(instances), check=False)
            out = getattr(out, 'stdout', None) or b''
            if not re.search(br'(?m)^\S+\s+STARTING\b', out):
                return
            time.sleep(0.5)

    def _restart(self, changed, programs, any_removed):
        if self.manager == 'supervisord' and (changed or any_removed):
            self._ensure_supervisord()
        if self.manager == 'supervisord':
            if programs or any_removed:
                self._ctl('update')
            for instance in changed:
                if instance not in programs:
                    self._ctl('restart', instance)    # (waits until it runs, or gives up)
            self._wait_started(sorted(set(changed) & programs))
        elif self.manager == 'systemd':
            if programs or any_removed:
                self.run(['systemctl', 'daemon-reload'])
            for instance in changed:
                self.run(['systemctl', 'enable', instance + '.service'])
                self.run(['systemctl', 'restart', instance + '.service'])
        return list(changed)


RUN_TIMEOUT = 120


def _complaints(proc):
    """The checker's warning and error lines (the last three), not what else it printed,
    which may quote the file."""
    text = ((proc.stdout or b'') + b'\n' + (proc.stderr or b'')).decode('utf-8', 'replace')
    lines = [line.strip() for line in text.splitlines() if re.search(r'warn|err', line, re.I)]
    return ' | '.join(lines[-3:])[-300:] or '(no message)'


def _run(argv, check=True, daemon=False):
    """Run a service manager command (never through a shell). ``daemon``: it leaves a
    daemon behind, which would hold pipes open: its output goes to /dev/null."""
    out = subprocess.DEVNULL if daemon else subprocess.PIPE
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PicError("%s did not finish within %d s" % (' '.join(argv[:4]), RUN_TIMEOUT))
    except OSError as exc:
        raise PicError("%s cannot run (%s)" % (argv[0], exc.strerror or exc.errno))
    if check and proc.returncode != 0:
        raise PicError("%s failed (exit %d): %s" % (' '.join(argv[:4]), proc.returncode,
                                                    (proc.stderr or b'').decode('utf-8', 'replace').strip()[-300:]))
    return proc
