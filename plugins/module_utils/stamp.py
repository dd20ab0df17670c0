# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One stamp for what the connectivity role installs besides the data plane: the
collection version, a hash of the cell library's payload (the module_utils files)
and the package list. pic_cell compares it with the one on the cell and reports
``stamp_stale`` when they differ; the role's packages and library steps then run
once and pic_cell writes the new stamp. Pure, except reading and writing it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re

from .errors import PicError
from .registry import read_nofollow_bytes, write_atomic

STAMP_FILE = 'cell-stamp'
_STAMP = re.compile(r'[0-9a-f]{64}')


def library_digest(files):
    """sha256 over ``{relative path: bytes}`` of the library payload."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode('utf-8') + b'\0' + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def compute(version, library, packages, extra=None):
    """The stamp of a collection ``version``, a ``library`` digest, the ``packages``
    and anything else the library step installs (``extra``: a dict, e.g. the paths)."""
    text = json.dumps({'version': version, 'library': library, 'packages': sorted(packages or []),
                       'extra': extra or {}}, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def installed_library(library_dir):
    """The library payload installed on the cell ({relative path: bytes} of its .py files),
    or None when a file is not the role's (mode 0644, owned by root): a copy edited,
    re-moded, re-owned, removed or added by hand makes the stamp stale."""
    out = {}
    if not os.path.isdir(library_dir):
        return None
    for where, dirs, names in os.walk(library_dir):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for name in names:
            if not name.endswith('.py'):
                continue
            path = os.path.join(where, name)
            st = os.lstat(path)
            if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (0o644, 0, 0):
                return None
            out[os.path.relpath(path, library_dir)] = read_nofollow_bytes(path)
    return out


def library_matches(library_dir, digest):
    installed = installed_library(library_dir)
    return installed is not None and library_digest(installed) == digest


def check(value, field='stamp'):
    if not isinstance(value, str) or not _STAMP.fullmatch(value):
        raise PicError("must be 64 hex digits (the stamp the action plugin computes)", field, value)
    return value


def read(state_dir):
    try:
        data = read_nofollow_bytes(os.path.join(state_dir, STAMP_FILE))
    except (OSError, PicError):
        return None
    return data.decode('ascii', 'replace').strip() if data else None


def is_stale(state_dir, value, library_dir=None, digest=None):
    """The cell's stamp is not ``value``, or its installed library is not the one of ``digest``."""
    if read(state_dir) != check(value):
        return True
    return library_dir is not None and digest is not None and not library_matches(library_dir, digest)


def monitor_running(state_dir):
    """Does a monitor of this cell run (``<entry point> monitor --state-dir <state_dir>``, as
    the role's supervisord program and systemd unit start it)? One pass over /proc."""
    wanted = [b'monitor', b'--state-dir', os.path.normpath(state_dir).encode('utf-8')]
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % name, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except (IOError, OSError):
            continue
        for i in range(len(argv) - 2):
            if argv[i:i + 3] == wanted:
                return True
    return False


def write(state_dir, value):
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o700)
    write_atomic(os.path.join(state_dir, STAMP_FILE), check(value) + '\n', 0o600)
