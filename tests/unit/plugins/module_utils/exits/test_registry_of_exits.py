# -*- coding: utf-8 -*-
"""The exit-type registry (module_utils/exits/): every list, default and table
of the collection is derived from the providers; the literals Ansible needs
(pic_connection's docs, the role's argument specs) equal them; and a new
proxy-kind type shows up everywhere from its provider alone (a toy type,
registered here only)."""
import ast
import importlib
import os

import pytest
import yaml

from ansible_collections.pic.connectivity.plugins.filter.exits import exit_types
from ansible_collections.pic.connectivity.plugins.module_utils import cli, connections, exits, health, model
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.exits.base import Option, ProxyExit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *['..'] * 5))


def module_doc(name):
    """A module's DOCUMENTATION with the options of its collection doc fragments merged in,
    as ansible-doc reads it (without running the module)."""
    with open(os.path.join(ROOT, 'plugins', 'modules', name + '.py')) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'DOCUMENTATION':
            doc = yaml.safe_load(node.value.value)
            break
    else:
        raise AssertionError('no DOCUMENTATION in %s' % name)
    for fragment in doc.get('extends_documentation_fragment', []):
        module = importlib.import_module('ansible_collections.pic.connectivity.plugins.doc_fragments.'
                                         + fragment.split('.')[-1])
        for option, spec in yaml.safe_load(module.ModuleDocFragment.DOCUMENTATION)['options'].items():
            assert option not in doc['options'], option
            doc['options'][option] = spec
    return doc


def role_connection_spec():
    with open(os.path.join(ROOT, 'roles', 'connectivity', 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)
    return specs['argument_specs']['main']['options']['pic_connections']['options']


def test_the_derived_lists_are_the_ones_the_collection_had():
    assert model.TYPES == ('wireguard_ext', 'openvpn', 'tor', 'sshuttle', 'proxy', 'cell_relay')
    assert model.CREATABLE_TYPES == ('wireguard_ext', 'openvpn', 'tor', 'sshuttle', 'proxy')
    assert model.INTERFACE_TYPES == ('wireguard_ext', 'openvpn', 'cell_relay')
    assert model.PROXY_TYPES == ('tor', 'sshuttle', 'proxy')
    assert model.SINGLETON_TYPES == ('tor',)
    assert dict(model.DEFAULT_FAIL_OPEN) == {'wireguard_ext': False, 'openvpn': False, 'tor': True,
                                             'sshuttle': False, 'proxy': False, 'cell_relay': False}
    assert [t for t in exits.TYPES if exits.cell_runs_wireguard(t)] == ['wireguard_ext']
    assert not exits.cell_runs_wireguard('nonesuch')
    assert tuple(exits.CONFIG_REQUIRED_TYPES) == ('wireguard_ext', 'openvpn', 'sshuttle', 'proxy')
    assert set(connections.SECRET_KEYS) == {'private_key', 'preshared_key', 'password', 'ssh_key'}
    assert exits.secret_file_keys() == ('ovpn_config', 'wg_config')
    assert exits.public_keys() == frozenset((
        'interface', 'health_target', 'health_fail_after', 'health_recover_after', 'address', 'peer_public_key',
        'endpoint', 'allowed_ips', 'persistent_keepalive', 'mtu', 'dns', 'listen_port', 'host', 'user', 'port',
        'known_hosts', 'subnets', 'python', 'proxy_type', 'username', 'socks_port', 'trans_port', 'dns_port',
        'health_handshake_max_age', 'health_port', 'egress_url', 'expect_egress'))
    assert dict(health.INSTANCE_FILES) == {'tor': ('tor', 'torrc'), 'sshuttle': ('sshuttle', '%s.conf'),
                                           'proxy': ('proxy', '%s.conf')}
    assert dict(exits.SERVICE_ROLES) == {'wireguard_ext': 'wireguard_ext', 'openvpn': 'openvpn_client',
                                         'tor': 'tor', 'sshuttle': 'sshuttle', 'proxy': 'proxy'}


def test_every_provider_is_whole():
    for name, prov in exits.PROVIDERS.items():
        assert prov.name == name and prov.kind in (exits.INTERFACE, exits.PROXY)
        if prov.service_role:
            assert os.path.isdir(os.path.join(ROOT, 'roles', prov.service_role, 'tasks')), name
        if prov.kind == exits.PROXY:
            assert prov.creatable and prov.service_role and prov.instance_file, name
        for option in prov.options:
            assert option.type in ('str', 'int', 'list', 'raw', 'dict', 'bool') and option.description, option.name


def test_the_role_reads_the_service_roles_from_the_registry():
    assert exit_types('service_role') == dict(exits.SERVICE_ROLES)
    assert exit_types('kind')['tor'] == 'proxy'
    with open(os.path.join(ROOT, 'roles', 'connectivity', 'vars', 'main.yml')) as handle:
        role_vars = yaml.safe_load(handle)
    assert role_vars['connectivity_service_roles'] == "{{ 'service_role' | pic.connectivity.exit_types }}"


def test_the_documented_type_choices_are_the_registrys():
    assert module_doc('pic_connection')['options']['type']['choices'] == list(exits.TYPES)
    # the role lists no types: pic_connection refuses an unknown one, naming it
    assert 'choices' not in role_connection_spec()['type']
    # the role's config holds secrets: AnsibleModule masks it whole
    assert role_connection_spec()['config']['no_log'] is True


def _yaml(suboptions):
    return yaml.safe_dump({'suboptions': suboptions}, sort_keys=True, width=108)


def test_the_documented_config_keys_are_the_providers():
    """pic_connection's ``config`` suboptions are the union of the providers' schemas:
    names, types, the types taking each key and which require it, and secrecy
    (DOCUMENTATION has no no_log: a secret's description says it is masked).
    On a mismatch, the expected YAML is printed: paste it into DOCUMENTATION."""
    documented = module_doc('pic_connection')['options']['config']['suboptions']
    assert documented == exits.doc_suboptions(), _yaml(exits.doc_suboptions())
    for name, prov in exits.PROVIDERS.items():
        for option in prov.all_options() if prov.creatable else ():
            lines = documented[option.name]['description']
            assert documented[option.name]['type'] == option.type
            assert (exits.SECRET_NOTE in lines) == option.secret, option.name
            assert (exits.SECRETS_NOTE in lines) == option.holds_secrets, option.name
            if option in prov.options:
                assert 'C(%s)' % name in lines[0]
                assert ('Required for' in lines[0] and 'C(%s)' % name in lines[0].split('Required for')[1]) \
                    == option.required, option.name
            else:
                assert lines[0].startswith('For every type.')


def test_two_types_may_share_a_key_only_with_one_type_and_secrecy():
    class Clash(ProxyExit):
        name = 'clash'
        options = (Option('host', 'int', 'Not a string.'),)
    exits.register(Clash)
    try:
        with pytest.raises(ValueError, match='host'):
            exits.doc_suboptions()
    finally:
        exits.unregister('clash')


# -- a new proxy-kind type, from its provider alone ---------------------------------

class Toy(ProxyExit):
    """A toy proxy exit: its instance listens on ``local_port`` and needs its upstream."""
    name = 'toy'
    service_role = 'toy'
    instance_file = ('toy', '%s.conf')
    options = (
        Option('host', 'str', 'The toy server.', required=True),
        Option('port', 'int', 'The toy server\'s port.', required=True),
        Option('toy_token', 'str', 'The toy token.', secret=True),
    )

    @classmethod
    def validate(cls, config, public, field, fingerprint_key):
        if not config.get('host') or config.get('port') is None:
            raise PicError("a toy connection needs host and port", field + '.host')
        public.update({'host': config['host'], 'port': int(config['port'])})
        return public, config, cls.secret_values(config), {'4': [], '6': []}

    @classmethod
    def upstream(cls, conn):
        return conn['config']['host'], conn['config']['port']


@pytest.fixture
def toy():
    exits.register(Toy)
    yield Toy
    exits.unregister('toy')
    assert 'toy' not in model.TYPES


def empty():
    return {'version': 1, 'settings': {}, 'connections': {}, 'peers': {}, 'services': {}}


def test_a_toy_proxy_type_shows_up_in_every_derived_list(toy):
    for derived in (model.TYPES, model.CREATABLE_TYPES, model.PROXY_TYPES, exits.CONFIG_REQUIRED_TYPES):
        assert 'toy' in derived and 'toy' in list(derived)
    assert 'toy' not in model.INTERFACE_TYPES and 'toy' not in model.SINGLETON_TYPES
    assert model.DEFAULT_FAIL_OPEN['toy'] is False
    assert health.INSTANCE_FILES['toy'] == ('toy', '%s.conf')
    assert exit_types('service_role')['toy'] == 'toy'
    assert 'toy_token' in exits.secret_keys() and 'toy_token' not in exits.public_keys()
    assert 'C(toy)' in exits.doc_suboptions()['toy_token']['description'][0]
    assert 'C(toy)' in exits.doc_suboptions()['host']['description'][0]


def test_a_toy_proxy_type_is_planned_validated_masked_and_redirected(toy):
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'Toy', 'type': 'toy'})
    assert err.value.field == 'config'
    with pytest.raises(PicError) as err:
        connections.plan(empty(), {'name': 'Toy', 'type': 'toy', 'config': {'host': 'h', 'port': 1, 'wat': 'x'}})
    assert err.value.field == 'config.wat'
    config = {'host': '192.0.2.7', 'port': 7070, 'toy_token': 'tok-secret-1234'}
    doc, record, _payload, secrets, _r = connections.plan(empty(), {'name': 'Toy', 'type': 'toy', 'config': config})
    assert secrets == ['tok-secret-1234'] and 'toy_token' not in record['config']
    assert 'tok-secret-1234' in connections.secrets_in(dict(config, **{'Toy-Token': 'short'}))
    assert 'short' in connections.secrets_in({'Toy-Token': 'short'})
    assert record['fail_open'] is False and record['interface'] is None and record['local_port']
    rules = model.desired(doc, {'peer_networks': ['10.0.0.0/24'], 'interfaces': []}).render_nft()
    assert 'redirect to :%d' % record['local_port'] in rules


def test_a_toy_proxy_type_is_checked_as_a_proxy(toy, tmp_path):
    conn = {'id': 'toy', 'name': 'Toy', 'type': 'toy', 'index': 1, 'local_port': 1, 'dns_port': 2,
            'config': {'host': '192.0.2.7', 'port': 7070}}
    calls = []

    def connect(host, port, timeout):
        calls.append((host, port))
        return True, 'connected'
    status, reason = health.check(conn, state_dir=str(tmp_path), connect=connect)
    assert (status, calls) == ('working', [('127.0.0.1', 1), ('192.0.2.7', 7070)]), reason
    assert health.upstream(conn) == ('192.0.2.7', 7070)
    assert health.instance_file(str(tmp_path), conn) == str(tmp_path / 'toy' / 'toy.conf')
    assert health.guide_check(dict(conn, local_port=None)) == ('unknown', 'no local port known for this toy connection')


def test_the_monitor_probes_a_toy_proxy_types_instance_port(toy, tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(cli, 'tcp_connect', lambda host, port, timeout: probed.append(port) or (False, 'refused'))
    monitor = cli.Monitor(str(tmp_path))
    down, reason = monitor.verdict({'id': 'toy', 'type': 'toy', 'local_port': 4242}, None)
    assert (down, probed, monitor.fails['toy']) == (None, [4242], 1) and '4242' in reason


def test_a_type_the_library_does_not_know_is_checked_as_before(tmp_path):
    """A registry written by a newer collection: the guide's check is a proxy type's
    without an upstream, the monitor's an interface type's (missing: down)."""
    conn = {'id': 'x', 'name': 'x', 'type': 'future', 'index': 1, 'local_port': None, 'interface': None}
    assert health.guide_check(conn) == ('unknown', 'no local port known for this future connection')
    assert health.upstream(conn) is None
    assert cli.Monitor(str(tmp_path)).verdict(conn, None) == (True, 'interface None is missing')
