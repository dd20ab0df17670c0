# -*- coding: utf-8 -*-
"""Make the collection importable as ansible_collections.pic.connectivity from the work tree."""
import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BASE = os.path.join(tempfile.gettempdir(), 'pic-unit-collections')
_LINK = os.path.join(_BASE, 'ansible_collections', 'pic', 'connectivity')
os.makedirs(os.path.dirname(_LINK), exist_ok=True)
if os.path.islink(_LINK) and os.readlink(_LINK) != ROOT:
    os.unlink(_LINK)
if not os.path.lexists(_LINK):
    os.symlink(ROOT, _LINK)
if _BASE not in sys.path:
    sys.path.insert(0, _BASE)


@pytest.fixture
def keys():
    """Three syntactically valid WireGuard keys (not secret: made for the test)."""
    import base64
    return [base64.b64encode(bytes([i]) * 32).decode() for i in (1, 2, 3)]
