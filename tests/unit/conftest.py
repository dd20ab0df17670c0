# -*- coding: utf-8 -*-
"""Make the collection importable as ansible_collections.pic.connectivity from the work tree.

Test modules live in the layout of the code they test (plugins/module_utils/test_<file>.py,
plugins/modules/test_<module>.py, plugins/filter/, roles/<role>/) without __init__.py files,
so pytest imports each by its basename: basenames must stay unique across directories.
What several of them share is in helpers.py, imported as
ansible_collections.pic.connectivity.tests.unit.helpers from every directory."""
import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _link_collection(base):
    """<base>/ansible_collections/pic/connectivity -> the work tree, and <base> on sys.path."""
    link = os.path.join(base, 'ansible_collections', 'pic', 'connectivity')
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) and os.readlink(link) != ROOT:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(ROOT, link)
    if base not in sys.path:
        sys.path.insert(0, base)


def pytest_configure(config):
    """Before any test module is imported: the collection link (per TMPDIR, so that work trees
    do not share it) and hypothesis' caches outside the work tree (never in a built collection)."""
    from hypothesis.configuration import set_hypothesis_home_dir
    _link_collection(os.path.join(tempfile.gettempdir(), 'pic-unit-collections'))
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), 'pic-unit-hypothesis'))
    config.addinivalue_line('markers', 'real_time: sleeps for real (a timer tested at its real length)')


@pytest.fixture
def keys():
    """Three syntactically valid WireGuard keys (not secret: made for the test)."""
    import base64
    return [base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2, 3)]


@pytest.fixture
def libnftables(monkeypatch):
    """module_utils.nft using Debian's libnftables binding (see helpers.use_libnftables)."""
    from ansible_collections.pic.connectivity.tests.unit.helpers import use_libnftables
    return use_libnftables(monkeypatch)
