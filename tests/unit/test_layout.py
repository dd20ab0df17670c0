# -*- coding: utf-8 -*-
"""The unit tests mirror the code: a test file for every library file, module and filter
plugin, at the path of the file it tests; and, as test modules are imported by their
basename (no __init__.py files, see conftest.py), no two test files share a basename."""
import collections
import os

import pytest

from ansible_collections.pic.connectivity.tests.unit.helpers import ROOT

UNIT = os.path.join(ROOT, 'tests', 'unit')


def sources(kind):
    """The .py files of plugins/<kind>, as paths relative to it (subpackages included)."""
    top = os.path.join(ROOT, 'plugins', kind)
    found = []
    for where, _dirs, names in os.walk(top):
        found.extend(os.path.relpath(os.path.join(where, n), top) for n in names
                     if n.endswith('.py') and n != '__init__.py')
    return sorted(found)


def expected_test(kind, source):
    folder, name = os.path.split(source)
    return os.path.join('plugins', kind, folder, 'test_' + name)


@pytest.mark.parametrize('kind', ['module_utils', 'modules', 'filter', 'plugin_utils'])
def test_every_plugin_file_has_its_test_file(kind):
    missing = [expected_test(kind, s) for s in sources(kind)
               if not os.path.exists(os.path.join(UNIT, expected_test(kind, s)))]
    assert missing == [], 'add tests/unit/%s' % ', tests/unit/'.join(missing)


def test_test_basenames_are_unique():
    # (a folder with __init__.py is a package: pytest imports its tests by their
    # package-qualified name, so they may share a basename with another folder's)
    seen = collections.defaultdict(list)
    for where, _dirs, names in os.walk(UNIT):
        if '__init__.py' in names:
            continue
        for name in names:
            if name.startswith('test_') and name.endswith('.py'):
                seen[name].append(os.path.relpath(where, UNIT))
    assert dict((n, w) for n, w in seen.items() if len(w) > 1) == {}
