# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cell library's payload on the controller: the collection's module_utils files
(the package pic_connectivity_lib on the cell, what its monitor, boot restore and CLI
import), read once and checked before it may replace what a cell has."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'module_utils')

# The files the cell's monitor and boot restore cannot run without (cli.py and what it
# imports). Update when a module_utils file is renamed.
REQUIRED = ('cli.py', 'commits.py', 'connections.py', 'dataplane.py', 'errors.py', 'exitguard.py', 'health.py',
            'model.py', 'nft.py', 'openvpn.py', 'registry.py', 'routing.py', 'status.py', 'validation.py',
            'wgconf.py', 'wgiface.py', 'exits/__init__.py', 'exits/base.py')


class IncompleteLibrary(Exception):
    """The source on the controller lacks files or has empty ones: nothing may be installed from it."""


def payload(source=MODULE_UTILS):
    """{path inside the package: bytes} of the .py files of ``source`` and its subpackages."""
    out = {}
    if not os.path.isdir(source):
        return out
    for where, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(names):
            if name.endswith('.py'):
                path = os.path.join(where, name)
                with open(path, 'rb') as handle:
                    out[os.path.relpath(path, source)] = handle.read()
    return out


def checked(files, source):
    """``files`` when it is complete: every REQUIRED file there and none but the package
    markers empty. A broken or half-rebuilt collection install must never shrink a cell's
    library (its monitor would crash-loop)."""
    missing = [name for name in REQUIRED if name not in files]
    empty = sorted(name for name, data in files.items() if not data and os.path.basename(name) != '__init__.py')
    if not files or missing or empty:
        raise IncompleteLibrary(
            "The collection's module_utils on the controller (%s) are missing or incomplete (missing: %s; empty: %s); "
            "the cell's installed library was left as it is. Reinstall the pic.connectivity collection and run again."
            % (source, ', '.join(missing) or 'none', ', '.join(empty) or 'none'))
    return files
