# -*- coding: utf-8 -*-
"""What several unit test files share: paths, case data (hostile strings, WireGuard
texts and configs) and rendering a role template as the template module does.

Every test file imports it the same way, wherever it lives:
``from ansible_collections.pic.connectivity.tests.unit.helpers import ...``
(conftest.py makes the work tree importable as ansible_collections.pic.connectivity)."""
import base64
import functools
import os
import re

import jinja2
import pytest
from ansible.plugins.filter.core import FilterModule as CoreFilters
from ansible.plugins.test.core import TestModule as CoreTests
from hypothesis import strategies as st

from ansible_collections.pic.connectivity.plugins.filter import render
from ansible_collections.pic.connectivity.plugins.module_utils import connections
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty

# -- paths ----------------------------------------------------------------------------------------

# The work tree (the collection root), whichever way this module was imported.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# The directory holding ansible_collections/pic/connectivity (a link to ROOT made by conftest.py),
# for ANSIBLE_COLLECTIONS_PATH and sys.path of child processes.
_HERE = os.path.abspath(__file__)
COLLECTIONS = _HERE[:_HERE.rindex(os.sep + 'ansible_collections' + os.sep)] \
    if os.sep + 'ansible_collections' + os.sep in _HERE else None

# -- hostile strings (validation) -----------------------------------------------------------------

KEY = base64.b64encode(bytes(range(32))).decode()
HOSTILE_CHARS = st.sampled_from(list('\x00\n\r\t\x0b\x0c\x1b\x7f\x85\u2028\u2029\u202e\ufeff %"\'\\-@:/[]=#;$`'
                                     'aZ09.,_+fFd:x') + ['\u00e9', '\u0661', '\uff10', '\U0001f600'])
HOSTILE = st.one_of(
    st.text(HOSTILE_CHARS, max_size=40),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(['fd00::1', '10.0.0.1', 'alice', 'pic-x', 'ssh.example', '-',
                                                   '@', KEY]), st.text(HOSTILE_CHARS, max_size=12)),
    st.builds(lambda a, b: a + b, st.text(HOSTILE_CHARS, max_size=3), st.sampled_from(['fd00::1', '10.0.0.1',
                                                                                       'alice', KEY])),
    st.text('a.-', min_size=200, max_size=400),
)
CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u2028\u2029]')

# -- wireguard_ext connections (connections, wgconf) ----------------------------------------------

PRIV = base64.b64encode(bytes([7]) * 32).decode()
PUB = base64.b64encode(bytes([8]) * 32).decode()
PSK = base64.b64encode(bytes([9]) * 32).decode()


def wg_text(extra_iface='', extra_peer='', allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128'):
    """A wg-quick text with the fixed keys PRIV and PUB."""
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n%s\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.20:51820\n'
            'AllowedIPs = %s\n%s' % (PRIV, address, extra_iface, PUB, allowed, extra_peer))


def keyed(**over):
    """A flat wireguard_ext config with the fixed keys, ``over`` replacing or adding keys."""
    config = {'private_key': PRIV, 'address': ['10.1.0.2/32'], 'peer_public_key': PUB,
              'endpoint': '203.0.113.20:51820'}
    config.update(over)
    return config


def refused(ctype, config, name='X', doc=None):
    """The PicError of planning a connection of ``ctype`` with ``config``."""
    with pytest.raises(PicError) as err:
        connections.plan(doc or empty(), {'name': name, 'type': ctype, 'config': config})
    return err.value


# -- a cell with one wireguard_ext exit (model) ---------------------------------------------------

def keys_wg_text(keys, allowed='0.0.0.0/0, ::/0', address='10.200.0.11/32, fd00:200::11/128', extra=''):
    """A wg-quick text with the keys of the ``keys`` fixture (private keys[0], peer keys[1])."""
    return ('[Interface]\nPrivateKey = %s\nAddress = %s\n%s\n[Peer]\nPublicKey = %s\n'
            'Endpoint = 203.0.113.20:51820\nAllowedIPs = %s\n' % (keys[0], address, extra, keys[1], allowed))


def new_cell(keys, **conn):
    """A registry with one wireguard_ext connection 'Exit WG' (``conn`` overrides the call), and its record."""
    doc = empty()
    params = {'name': 'Exit WG', 'type': 'wireguard_ext', 'config': {'wg_config': keys_wg_text(keys)}}
    params.update(conn)
    doc, record, _payload, _secrets, _removed = connections.plan(doc, params)
    return doc, record


# -- role templates -------------------------------------------------------------------------------

MANAGED = 'Ansible managed'


@functools.lru_cache(maxsize=1)
def environment():
    """Jinja as the template module sets it up: trim_blocks, Ansible's core filters and tests,
    the collection's filters under their FQCN."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
                             loader=jinja2.FileSystemLoader(os.path.join(ROOT, 'roles')))
    core = CoreFilters().filters()
    for name in ('default', 'd'):   # Jinja's own default understands StrictUndefined
        core.pop(name, None)
    env.filters.update(core)
    env.tests.update(CoreTests().tests())
    env.filters.update(dict(('pic.connectivity.' + name, function)
                            for name, function in render.FilterModule().filters().items()))
    return env


def render_template(role, name, **variables):
    """The text of roles/<role>/templates/<name> for ``variables``."""
    variables.setdefault('ansible_managed', MANAGED)
    return environment().get_template('%s/templates/%s' % (role, name)).render(**variables)
