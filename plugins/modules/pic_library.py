#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pic_library
short_description: Install the cell-side library of pic.connectivity in one round trip
version_added: 1.0.0
description:
  - Installs the collection's C(module_utils) as the Python package C(pic_connectivity_lib) on the cell (what its
    monitor, boot restore, exit guards and the C(pic-connectivity) CLI import), in one module run.
  - The action plugin reads the files on the controller and refuses a missing or incomplete source before the cell
    is touched (a broken collection install never shrinks a cell's library). On the cell only the files that differ
    (content, mode 0644 or owner root) are written, atomically, and C(.py) files the collection no longer has are
    removed.
  - Used by the C(pic.connectivity.connectivity) role (C(tasks/library.yml)); there is seldom a reason to call it
    yourself.
author:
  - PIC connectivity developers (@pic-cells)
attributes:
  platform:
    support: full
    platforms: debian
    description: Debian 12 cells with Python 3.11 (the library's interpreter).
  action_group:
    support: none
    membership: []
    description: Not in the C(pic.connectivity.cell) group; it takes none of the cell options.
  check_mode:
    support: full
    description: Reports the files it would write and remove, and changes nothing.
  diff_mode:
    support: partial
    description: Lists the files written and removed (not their contents).
  idempotent:
    support: full
    description: A second run with the same collection changes nothing.
options:
  dest:
    description: The package directory on the cell (the role's C(pic_lib_dir)/pic_connectivity_lib).
    type: path
    required: true
  src:
    description:
      - The C(module_utils) directory on the controller to install from; default the collection's own.
      - Read by the action plugin; the module receives the files.
    type: path
  files:
    description:
      - Set by the action plugin (the files, by their path inside the package); not meant to be given.
      - Kept out of the cell's log (it is the whole library).
    type: dict
'''

EXAMPLES = r'''
- name: Install the cell-side library
  pic.connectivity.pic_library:
    dest: /usr/local/lib/pic-connectivity/pic_connectivity_lib
'''

RETURN = r'''
written:
  description: The files (paths inside the package) written, or that would be in check mode.
  returned: always
  type: list
  elements: str
  sample: [dataplane.py, exits/tor.py]
removed:
  description: The C(.py) files removed because the collection no longer has them.
  returned: always
  type: list
  elements: str
'''

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

# a path inside the package: the module_utils layout (package, one level of subpackages)
_NAME = re.compile(r'[a-z_][a-z0-9_]{0,63}(/[a-z_][a-z0-9_]{0,63})?\.py')
_DEST = re.compile(r'(/[A-Za-z0-9_.@-]{1,255}){1,32}/pic_connectivity_lib')
MODE = 0o644
DIR_MODE = 0o755


def check_dest(dest):
    """The package directory: an absolute path ending in pic_connectivity_lib, no link on the way."""
    if not isinstance(dest, str) or not _DEST.fullmatch(dest) or '/../' in dest or '/./' in dest:
        raise ValueError('dest: must be an absolute path of letters, digits and _.@- ending in '
                         '/pic_connectivity_lib (got %r)' % (dest,))
    if os.path.islink(dest):
        raise ValueError('dest: %s is a symbolic link; the library is installed into a real directory' % dest)
    return dest


def loose_directories(dest, names):
    """The package's directories (dest and its subpackages) that exist and are not root's 0755;
    a subpackage that is a link is refused."""
    out = []
    for directory in [dest] + sorted(set(os.path.join(dest, os.path.dirname(n)) for n in names if '/' in n)):
        if os.path.islink(directory):
            raise ValueError('dest: %s is a symbolic link; the library is installed into real directories' % directory)
        try:
            st = os.lstat(directory)
        except OSError:
            continue
        if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (DIR_MODE, 0, 0):
            out.append(directory)
    return out


def check_names(files):
    """The payload's names, refused unless each is a module path inside the package."""
    if not files:
        raise ValueError('files: empty; the action plugin sends the whole library (refusing to remove it)')
    bad = sorted(name for name in files if not isinstance(name, str) or not _NAME.fullmatch(name))
    if bad:
        raise ValueError('files: not a module path inside the package: %s' % ', '.join(repr(b) for b in bad[:5]))
    return sorted(files)


def differs(path, data):
    """The installed file at ``path`` is not ``data`` with mode 0644 owned by root (or is a link)."""
    try:
        st = os.lstat(path)
    except OSError:
        return True
    if not os.path.isfile(path) or os.path.islink(path) or (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (MODE, 0, 0):
        return True
    with open(path, 'rb') as handle:
        return handle.read() != data


def installed_names(dest):
    """The .py files under ``dest`` (paths inside the package), __pycache__ left out."""
    out = []
    for where, dirs, names in os.walk(dest):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        out.extend(os.path.relpath(os.path.join(where, n), dest) for n in names if n.endswith('.py'))
    return sorted(out)


def write(path, data):
    """``data`` to ``path`` atomically (a temporary file beside it, then a rename), 0644 root."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)
    fd, tmp = tempfile.mkstemp(prefix='.pic-lib-', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(tmp, MODE)
        os.chown(tmp, 0, 0)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def plan(dest, files):
    """(names to write, names to remove, directories to put back to root 0755)."""
    names = check_names(files)
    loose = loose_directories(check_dest(dest), names)
    written = [n for n in names if differs(os.path.join(dest, n), files[n].encode('utf-8'))]
    removed = [n for n in installed_names(dest) if n not in files] if os.path.isdir(dest) else []
    return written, removed, loose


def install(module):
    dest, files = module.params['dest'], module.params['files'] or {}
    try:
        written, removed, loose = plan(dest, files)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if not module.check_mode:
        for directory in loose:   # (a directory others may write lets them swap a module root imports)
            os.chown(directory, 0, 0)
            os.chmod(directory, DIR_MODE)
        for name in written:
            write(os.path.join(dest, name), files[name].encode('utf-8'))
        for name in removed:
            os.unlink(os.path.join(dest, name))
    result = {'changed': bool(written or removed or loose), 'written': written, 'removed': removed}
    if module._diff and result['changed']:
        result['diff'] = {'before': {'out_of_date': written, 'not_in_the_collection': removed},
                          'after': {'out_of_date': [], 'not_in_the_collection': []}}
    return result


def main():
    module = AnsibleModule(argument_spec=dict(dest=dict(type='path', required=True), src=dict(type='path'),
                                              files=dict(type='dict', no_log=True)),
                           supports_check_mode=True)
    module.exit_json(**install(module))


if __name__ == '__main__':
    main()
