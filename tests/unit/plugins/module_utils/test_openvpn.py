# -*- coding: utf-8 -*-
"""The openvpn exit type's pure helpers: validation of the .ovpn text, the
connection record, and the up hook's plan."""
import os
import re
import shutil
import signal
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.module_utils import connections, model, openvpn
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty
from ansible_collections.pic.connectivity.tests.unit.helpers import render_template

OVPN = """# a provider's file
client
dev tun
proto udp
remote vpn.example.net 1194
remote 198.51.100.7 1194
nobind
remote-cert-tls server
<ca>
-----BEGIN CERTIFICATE-----
up this line is inside a block and is not a directive
-----END CERTIFICATE-----
</ca>
<key>
remote not-a-remote
</key>
"""


def test_a_providers_file_is_accepted_and_its_remotes_listed():
    assert openvpn.validate({'ovpn_config': OVPN}) == ['vpn.example.net', '198.51.100.7']


def test_directives_skip_comments_and_inline_blocks_but_read_connection_blocks():
    text = "; comment\n# up x\n<connection>\nremote a.example 1194 udp\n</connection>\n<ca>\ndaemon\n</ca>\n"
    assert openvpn.directives(text) == [(4, 'remote', ['a.example', '1194', 'udp'])]
    assert openvpn.validate({'ovpn_config': text}) == ['a.example']


def test_quoted_arguments_are_one_word():
    assert openvpn.directives('pull-filter ignore "route 10.0.0.0"\n') == \
        [(1, 'pull-filter', ['ignore', 'route 10.0.0.0'])]


@pytest.mark.parametrize('extra,words', [
    ('up /etc/openvpn/update-resolv-conf', ["line 17", "'up' is not allowed", "runs a command"]),
    ('down /etc/openvpn/update-resolv-conf', ["'down' is not allowed"]),
    ('route-up "/bin/sh -c x"', ["'route-up' is not allowed"]),
    ('script-security 2', ["'script-security' is not allowed"]),
    ('plugin /usr/lib/x.so', ["'plugin' is not allowed"]),
    ('daemon', ["'daemon' is not allowed", "foreground"]),
    ('config other.conf', ["'config' is not allowed", "inline"]),
    ('mode server', ["'mode' is not allowed", "client"]),
    ('dev tap', ["'dev tap'", "tun devices"]),
    ('dev-type tap', ["'dev-type tap'", "tun devices"]),
    ('--up /bin/true', ["'up' is not allowed"]),
    ('auth-user-pass', ["'auth-user-pass' without a file", "username and password"]),
    ('remote', ["line 17", "'remote' takes 1 to 3 argument(s), not 0"]),
])
def test_refused_lines_are_named(extra, words):
    with pytest.raises(PicError) as err:
        openvpn.validate({'ovpn_config': OVPN + extra + '\n'})
    assert str(err.value).startswith('config.ovpn_config: ')
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('text', ['client\ndev tun\n', '# remote a.example\nclient\n'])
def test_a_config_without_remote_is_refused(text):
    with pytest.raises(PicError) as err:
        openvpn.validate({'ovpn_config': text})
    assert "no 'remote' line" in str(err.value)


@pytest.mark.parametrize('config,field', [
    ({}, 'config.ovpn_config'),
    ({'ovpn_config': '   '}, 'config.ovpn_config'),
    ({'ovpn_config': 'remote a\n<cert>\nxx\n'}, 'config.ovpn_config'),
    ({'ovpn_config': OVPN, 'username': 'u'}, 'config.password'),
    ({'ovpn_config': OVPN, 'password': 'p'}, 'config.username'),
    ({'ovpn_config': OVPN, 'username': 'u', 'password': 'a\nb'}, 'config.password'),
    ({'ovpn_config': OVPN, 'username': '', 'password': 'p'}, 'config.username'),
])
def test_bad_settings_name_their_field(config, field):
    with pytest.raises(PicError) as err:
        openvpn.validate(config)
    assert str(err.value).startswith(field + ':'), str(err.value)


def test_accepted_lines_that_the_role_replaces():
    text = OVPN + 'dev tun0\ndev-type tun\n'
    assert openvpn.validate({'ovpn_config': text}) == ['vpn.example.net', '198.51.100.7']
    rendered = openvpn.render(text).splitlines()
    assert not [line for line in rendered if line.startswith('dev')]
    assert '# replaced by pic.connectivity: dev tun0' in rendered and '# replaced by pic.connectivity: dev-type tun' \
        in rendered
    assert openvpn.validate({'ovpn_config': OVPN + 'auth-user-pass\n', 'username': 'u', 'password': 'p'})


def test_connection_record_carries_everything_into_the_tunnel_and_hides_the_password():
    public, payload, secrets, routes = connections.validate_config(
        'openvpn', {'ovpn_config': OVPN, 'username': 'u', 'password': 'hunter2', 'health_target': '10.8.0.1'})
    assert routes == {'4': ['0.0.0.0/0'], '6': ['::/0']}
    assert public['remote'] == ['vpn.example.net', '198.51.100.7']
    assert public['health_target'] == '10.8.0.1'
    assert 'hunter2' not in repr(public) and 'BEGIN CERTIFICATE' not in repr(public)
    assert 'hunter2' in secrets
    assert payload['ovpn_config'] == OVPN


def test_connection_is_routed_into_its_table_only_while_its_interface_exists():
    doc = empty()
    doc, record, _payload, _secrets, _removed = connections.plan(
        doc, {'name': 'Home VPN', 'type': 'openvpn', 'config': {'ovpn_config': OVPN}})
    assert record['interface'] == 'pic-home-vpn' and record['fail_open'] is False
    up = model.desired(doc, {'interfaces': ['pic-home-vpn']})
    assert sorted((r['family'], r['dst'], r['type'], r['oif']) for r in up.routes[record['table']]) == [
        (4, '0.0.0.0/0', 'unicast', 'pic-home-vpn'), (6, '::/0', 'unicast', 'pic-home-vpn')]
    down = model.desired(doc, {'interfaces': []})
    assert down.routes[record['table']] == []
    # and nothing of the tunnel's ever goes to the main table
    assert all(t == record['table'] for t in up.routes)


ENV = {'dev': 'pic-home-vpn', 'ifconfig_local': '10.8.0.6', 'ifconfig_netmask': '255.255.255.0',
       'ifconfig_ipv6_local': 'fd00:8::1000', 'ifconfig_ipv6_netbits': '64', 'tun_mtu': '1500',
       'script_type': 'up', 'foreign_option_1': 'dhcp-option DNS 10.8.0.1', 'route_gateway_1': '10.8.0.1'}


def test_up_hook_sets_host_addresses_without_prefix_routes():
    plan = openvpn.hook_plan(ENV, 'pic-home-vpn')
    assert ['-4', 'addr', 'replace', '10.8.0.6/32', 'dev', 'pic-home-vpn', 'noprefixroute'] in plan
    assert ['-6', 'addr', 'replace', 'fd00:8::1000/128', 'dev', 'pic-home-vpn', 'noprefixroute'] in plan
    assert ['link', 'set', 'dev', 'pic-home-vpn', 'mtu', '1500'] in plan
    assert ['link', 'set', 'dev', 'pic-home-vpn', 'addrgenmode', 'none'] in plan
    assert plan[-1] == ['link', 'set', 'dev', 'pic-home-vpn', 'up']
    assert not [argv for argv in plan if 'route' in argv]     # routes: the connection's table, by heal()
    assert not [argv for argv in plan if '10.8.0.1' in argv]  # pushed DNS and gateway: ignored


def test_up_hook_ipv4_only_and_ipv6_only():
    v4 = dict(ENV)
    del v4['ifconfig_ipv6_local']
    assert not [argv for argv in openvpn.hook_plan(v4, 'pic-home-vpn') if '-6' in argv and 'replace' in argv]
    v6 = dict(ENV)
    del v6['ifconfig_local']
    assert not [argv for argv in openvpn.hook_plan(v6, 'pic-home-vpn') if '-4' in argv and 'replace' in argv]


@pytest.mark.parametrize('change,words', [
    ({'dev': 'tun0'}, ["'tun0'", "'pic-home-vpn'"]),
    ({'ifconfig_local': '10.8.0.300'}, ['invalid ifconfig_local']),
    ({'ifconfig_local': 'fd00::1'}, ['wrong family']),
    ({'ifconfig_local': '', 'ifconfig_ipv6_local': ''}, ['no address']),
    ({'tun_mtu': '9x'}, ['invalid tun_mtu']),
])
def test_up_hook_refuses_what_it_cannot_trust(change, words):
    with pytest.raises(PicError) as err:
        openvpn.hook_plan(dict(ENV, **change), 'pic-home-vpn')
    for word in words:
        assert word in str(err.value)


def test_down_hook_does_nothing():
    assert openvpn.hook_plan(dict(ENV, script_type='down'), 'pic-home-vpn') == []


def test_no_orphan_without_a_pid_file(tmp_path):
    assert openvpn.orphaned_pid(str(tmp_path), 'home-vpn') is None
    (tmp_path / 'openvpn').mkdir()
    (tmp_path / 'openvpn' / 'home-vpn.pid').write_text('1\n')    # pid 1 is not an openvpn
    assert openvpn.orphaned_pid(str(tmp_path), 'home-vpn') is None


# -- issue 11: OpenVPN's own reading of the file, the allow-list, the rendered file --------
def refusal(text, **config):
    with pytest.raises(PicError) as err:
        openvpn.validate(dict({'ovpn_config': text}, **config))
    return str(err.value)


@pytest.mark.parametrize('close', ['</ca> up /bin/sh', '</ca>junk', '  </ca>', '\t</ca>x', '</ca>></ca>'])
def test_an_inline_block_closes_on_a_line_that_starts_with_its_tag(close):
    # the finding: '</ca>junk' closed the block for OpenVPN but not for the
    # validator, so the 'up' line after it reached OpenVPN unchecked
    message = refusal(OVPN + '<cert>\nxx\n%s\nup /bin/sh\n' % close.replace('ca>', 'cert>'))
    assert "line 20: 'up' is not allowed" in message
    assert [(n, d) for n, d, _a, b in openvpn.parse('<ca>\nx\n%s\nverb 3\n' % close) if b is None] == [(4, 'verb')]


@pytest.mark.parametrize('line,name', [
    ('log /etc/passwd', 'log'), ('log-append /etc/x', 'log-append'), ('status /etc/x', 'status'),
    ('management 0.0.0.0 7505', 'management'), ('auth-user-pass /etc/shadow', 'auth-user-pass'),
    ('setenv dev eth0', 'setenv'), ('user nobody', 'user'), ('group nogroup', 'group'), ('cd /etc', 'cd'),
    ('chroot /tmp', 'chroot'), ('tls-export-cert /tmp', 'tls-export-cert'), ('script-security 3', 'script-security'),
    ('plugin /x.so', 'plugin'), ('up /bin/sh', 'up'), ('down /bin/sh', 'down'), ('route-up /bin/sh', 'route-up'),
    ('ipchange /bin/sh', 'ipchange'), ('client-connect /bin/sh', 'client-connect'),
    ('learn-address /bin/sh', 'learn-address'), ('config /etc/x', 'config'), ('writepid /etc/x', 'writepid'),
    ('daemon', 'daemon'), ('tls-verify /bin/sh', 'tls-verify'), ('"up" /bin/sh', 'up'), ("'log' /x", 'log'),
    ('--status /x', 'status'), ('  up /bin/sh', 'up'), ('up\t/bin/sh', 'up'), ('up\r', 'up'),
    ('ca /etc/ssl/ca.pem', 'ca'), ('tls-auth /etc/ta.key 1', 'tls-auth'), ('port-share 127.0.0.1 22', 'port-share'),
    ('local 0.0.0.0', 'local'), ('http-proxy 10.0.0.1 3128 /etc/creds', 'http-proxy'), ('iproute /bin/sh', 'iproute'),
    ('fancy-new-option 1', 'fancy-new-option'), ('route 10.0.0.0 255.0.0.0', 'route'), ('dev tap0', 'dev'),
    ('ifconfig 10.0.0.1 10.0.0.2', 'ifconfig'), ('verb 3 4', 'verb'), ('remote a.example 99999', 'remote'),
    ('remote a.example 1194 sctp', 'remote'), ('remote fd00::1%eth0 1194', 'remote'), ('cipher a"b', 'cipher'),
])
def test_everything_outside_the_allow_list_is_refused_with_its_line(line, name):
    message = refusal(OVPN + line + '\n')
    assert message.startswith('config.ovpn_config: line 17: ') and "'%s" % name in message, message


@pytest.mark.parametrize('text,words', [
    (OVPN + 'remote x.example ' + '1' * 250 + '\n', 'longer than 250 bytes'),      # fgets would split it
    (OVPN + 'remote a.example 1194\u2028up /bin/sh\n', 'not valid'),                # one line for OpenVPN
    (OVPN + 'remote a.example 1194\x0bup\n', 'control character'),
    (OVPN + 'remote a\\x 1194\n', 'backslash'),
    (OVPN + 'remote "a.example 1194\n', 'quotation'),
    (OVPN + 'verify-x509-name ' + ' '.join(['x'] * 16) + '\n', 'more than 15 words'),
    (OVPN + '<connection>\nremote a.example\nup /bin/sh\n</connection>\n', "line 19: 'up' is not allowed"),
    (OVPN + '<connection>\nremote a.example\n</connection>\n', "line 5: OpenVPN ignores 'remote' lines outside"),
    (OVPN + '<connection>\nremote a.example\nremote b.example\n</connection>\n', 'exactly one'),
    (OVPN + '<connection>\nremote a.example\n<ca>\nx\n</ca>\n</connection>\n', 'no inline block'),
    (OVPN + '<connection>\nremote a.example\nverb 3\n</connection>\n', "'verb' is not a supported client directive "
                                                                       "inside <connection>"),
    (OVPN + '<dh>\nx\n</dh>\n', 'the inline block <dh> is not supported'),
    (OVPN + '<auth-user-pass>\nu\np\n</auth-user-pass>\n', 'the inline block <auth-user-pass> is not supported'),
    (OVPN + '<tls-auth>\n</tls-auth>\n', 'empty'),
    (OVPN + '</ca>\nverb 3\n', 'line 17 opens an inline block'),     # OpenVPN: block '/ca', endtag <//ca> missing
    (OVPN + '<tls-auth>\n\u00e9\n</tls-auth>\n', 'printable ASCII'),
    (OVPN + 'auth-user-pass\n', "'auth-user-pass' without a file"),
    # accepted, but written back longer than OpenVPN reads (its quotes escaped: 421 bytes, OpenVPN
    # refused the instance's file) or not at all (a word of 243 bytes: ValueError in the role)
    (OVPN + "pull-filter ignore '" + '"' * 200 + "'\n", "line 17: 'pull-filter' written back"),
    (OVPN + 'remote ' + '.'.join(['a' * 63, 'b' * 63, 'c' * 63, 'd' * 51]) + '\n', "line 17: 'remote' cannot be written"),
])
def test_lines_openvpn_would_misread_are_refused(text, words):
    assert words in refusal(text)


def test_errors_never_show_key_material():
    key = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secretsecret'
    for text in (OVPN + key + '\n', OVPN + '-----BEGIN PRIVATE KEY-----\n' + key + '\n',
                 OVPN + '<key>\n' + key + '\x07\n</key>\n', OVPN + 'remote ' + key + '! 1194\n'):
        message = refusal(text)
        assert key not in message and 'BEGIN' not in message and 'secret' not in message, message


def test_the_password_is_checked_but_never_shown():
    message = refusal(OVPN + 'auth-user-pass\n', username='u', password='hunter2\x07')
    assert message.startswith('config.password:') and 'hunter2' not in message


def test_render_writes_back_only_accepted_directives():
    text = ('\ufeff# provider\n--client\n<connection>\n"remote" \'vpn.example.net\' 1194 udp # comment\n</connection>'
            '\ndev tun0\nblock-outside-dns\nverify-x509-name "C=US, CN=vpn #1" name\nauth-user-pass\n'
            '<connection>\nremote b.example 443 tcp\n</connection>\n<ca>\r\nPEM\r\n</ca> trailing\n')
    rendered = openvpn.render(text, credentials=True)
    assert rendered == ('# provider\nclient\n<connection>\nremote vpn.example.net 1194 udp\n</connection>\n'
                        '# replaced by pic.connectivity: dev tun0\n'
                        '# left out by pic.connectivity (Windows only): block-outside-dns\n'
                        'verify-x509-name "C=US, CN=vpn #1" name\n# replaced by pic.connectivity: auth-user-pass\n'
                        '<connection>\nremote b.example 443 tcp\n</connection>\n<ca>\nPEM\n</ca>\n')
    assert openvpn.render(rendered) == rendered
    assert openvpn.validate({'ovpn_config': text, 'username': 'u', 'password': 'p'}) == ['vpn.example.net', 'b.example']


def test_quote_is_read_back_by_the_tokenizer():
    for word in ('plain', 'two words', 'q"q', 'b\\s', '#x', ';x', "it's", '', '<ca>'):
        assert openvpn.parse_line('x %s\n' % openvpn.quote(word)) == ['x', word]
    with pytest.raises(ValueError):
        openvpn.quote('a\nb')


# -- the real OpenVPN reads the rendered file (in an empty network namespace) --------------
OPENVPN = '/usr/sbin/openvpn'
needs_openvpn = pytest.mark.skipif(not (os.path.exists(OPENVPN) and os.geteuid() == 0 and shutil.which('ip')
                                        and shutil.which('openssl')),
                                   reason='needs root, ip, openssl and /usr/sbin/openvpn')


@pytest.fixture(scope='module')
def ovpn_world(tmp_path_factory):
    """A throwaway empty network namespace (no route anywhere: nothing leaves),
    a certificate and key made for the test, and an executable hook."""
    base = tmp_path_factory.mktemp('ovpn')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                    '-subj', '/CN=picr-test', '-days', '2', '-keyout', str(base / 'k.pem'), '-out', str(base / 'c.pem')],
                   check=True, capture_output=True)
    hook = base / 'pic-connectivity'
    hook.write_text('#!/bin/sh\nexit 0\n')
    hook.chmod(0o755)
    netns = 'picr-ovpn-%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', netns], check=True)
    try:
        yield {'base': base, 'netns': netns, 'hook': str(hook), 'cert': (base / 'c.pem').read_text(),
               'key': (base / 'k.pem').read_text()}
    finally:
        subprocess.run(['ip', 'netns', 'del', netns], check=False)


def provider_file(world, extra=''):
    remotes = '' if '<connection>' in extra else 'remote vpn.example.net 1194\nremote 198.51.100.7 1194\n'
    return ('client\ndev tun\nproto udp\n%snobind\nremote-cert-tls server\n%s<ca>\n%s</ca>\n<cert>\n%s</cert>\n'
            '<key>\n%s</key>\n' % (remotes, extra, world['cert'], world['cert'], world['key']))


def rendered_client(world, text, credentials=False):
    item = {'id': 'home-vpn', 'name': 'Home VPN', 'interface': 'pic-home-vpn'}
    return render_template('openvpn_client', 'client.conf.j2', item=item, pic_entry_point=world['hook'],
                           pic_state_dir='/var/lib/pic state', openvpn_client_dir=str(world['base']),
                           openvpn_client_credentials=credentials,
                           openvpn_client_settings={'ovpn_config': text, 'username': 'u' if credentials else ''})


def openvpn_settings(world, conf_text):
    """OpenVPN's own "Current Parameter Settings" (--verb 4) for the file:
    [(name, value)], read up to the version banner, then the instance is stopped."""
    conf = world['base'] / 'client.conf'
    conf.write_text(conf_text)
    proc = subprocess.Popen(['ip', 'netns', 'exec', world['netns'], 'timeout', '20', OPENVPN, '--config', str(conf),
                             '--verb', '4', '--mute', '0'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    dump, seen, lines = [], False, []
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'Current Parameter Settings' in line:
                seen = True
            elif seen and re.search(r' OpenVPN \d', line):
                break
            elif seen:
                found = re.match(r'\S+ \S+ us=\d+ +(\S+) = (.*)$', line.rstrip('\n'))
                if found:
                    dump.append((found.group(1), found.group(2)))
    finally:
        # the whole group: killing `timeout` alone would leave openvpn running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert seen, ''.join(lines)
    return dump


def check_openvpn_read(world, dump, remotes, credentials=False):
    values = dict(dump)
    hook = "'%s openvpn-up --state-dir \"/var/lib/pic state\" --connection home-vpn'" % world['hook']
    assert values['up_script'] == hook and values['down_script'] == hook
    assert openvpn.parse_line(values['up_script'][1:-1] + '\n') == [
        world['hook'], 'openvpn-up', '--state-dir', '/var/lib/pic state', '--connection', 'home-vpn']
    for name in ('status_file', 'management_addr', 'chroot_dir', 'cd_dir', 'username', 'groupname', 'ipchange',
                 'route_script', 'route_predown_script', 'learn_address_script', 'client_connect_script',
                 'client_disconnect_script', 'tls_verify', 'tls_export_cert', 'auth_user_pass_verify_script'):
        assert values.get(name, "'[UNDEF]'") == "'[UNDEF]'", (name, values.get(name))
    assert values['daemon'] == 'DISABLED' and values['log'] == 'DISABLED'
    assert values['writepid'] == "'%s/home-vpn.pid'" % world['base']
    assert values['auth_user_pass_file'] == ("'%s/home-vpn.auth'" % world['base'] if credentials else "'[UNDEF]'")
    assert values['dev'] == "'pic-home-vpn'" and values['dev_type'] == "'tun'"
    assert values['route_noexec'] == 'ENABLED' and values['ifconfig_noexec'] == 'ENABLED'
    assert [value for name, value in dump if name == 'remote'] == ["'%s'" % r for r in remotes]
    assert values['ca_file'] == "'[INLINE]'"


@needs_openvpn
def test_openvpn_reads_the_rendered_file_as_intended(ovpn_world):
    text = provider_file(ovpn_world, 'verb 3\n# up /bin/sh\n')
    dump = openvpn_settings(ovpn_world, rendered_client(ovpn_world, text))
    check_openvpn_read(ovpn_world, dump, ['vpn.example.net', '198.51.100.7'])


@needs_openvpn
def test_openvpn_reads_credentials_from_the_collections_file(ovpn_world):
    text = provider_file(ovpn_world, 'auth-user-pass\n')
    (ovpn_world['base'] / 'home-vpn.auth').write_text('u\np\n')
    dump = openvpn_settings(ovpn_world, rendered_client(ovpn_world, text, credentials=True))
    check_openvpn_read(ovpn_world, dump, ['vpn.example.net', '198.51.100.7'], credentials=True)


def test_the_role_template_refuses_a_hostile_file_naming_the_line(tmp_path):
    from ansible.errors import AnsibleFilterError
    world = {'hook': '/usr/local/sbin/pic-connectivity', 'base': tmp_path}
    with pytest.raises(AnsibleFilterError) as err:
        rendered_client(world, OVPN + '<cert>\nx\n</cert> \nlog /etc/shadow\n')
    assert "line 20: 'log' is not allowed" in str(err.value)


# Lines of hostile files: hypothesis strings them together.
FRAGMENTS = [
    'remote a.example 1194', 'remote "b.example" 1194 tcp', "remote 'c.example'", 'remote d.example 1194 # up x',
    '<ca>', '</ca>', '</ca>junk', '  </ca> up /bin/sh', '<key>', '</key>', '<connection>', '</connection>',
    'up /bin/sh', 'log /etc/passwd', '"up" /bin/sh', "'status' /x", '--management 0.0.0.0 1', '# up /bin/sh',
    '; log x', '\\up x', 'remote a\\ b 1', 'setenv dev eth0', 'verb 3', 'cipher AES-256-GCM', 'x' * 260,
    'remote e.example 1194\u2028up /bin/sh', 'remote f.example 1194\x85up /bin/sh', '\tup\t/bin/sh', 'up\r',
    'dev tap0', 'dev tun', 'auth-user-pass /etc/shadow', 'pull-filter ignore "route"', 'MIIEsecretkeyline==',
    'verify-x509-name "CN=x \\"y\\"" name', 'remote g.example 1194 udp "',
    '<connection>\nremote i.example 1194\n"up" /bin/sh\n</connection>', '<tls-auth>', '</tls-auth>', '',
    '   ', 'block-outside-dns', '--client', 'tls-client', 'key-direction 1', '<ca> # c', 'remote h.example 1194\\',
]
HOSTILE_FILE = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=20), min_size=1, max_size=14).map(
    lambda lines: '\n'.join(lines) + '\n')
# Accepted, but each read differently by a naive reader: OpenVPN must see the same.
ACCEPTED_FRAGMENTS = [
    'remote "b.example" 1194 tcp', "remote 'c.example'", 'remote d.example 1194 # up x', '# up /bin/sh', '; log x',
    '"verb" 4', "'mute' 10", '--persist-key', 'cipher AES-256-GCM', 'dev tun', 'pull-filter ignore "route"',
    'verify-x509-name "CN=x \\"y\\" #1" name', '', '   ', '\t', 'block-outside-dns', '--client', 'tls-client',
    'remote j.example\t1194\r', '<connection>\nremote i.example 1194\n"nobind"\n</connection>',
    '<extra-certs>\nup /bin/sh\n</extra-certsX up /bin/sh\n  </extra-certs> log /etc/x',
    '<connection>\n  remote k.example 443 tcp-client\n</connection>junk up /bin/sh',
]


ALLOWED_NAMES = set(openvpn.ALLOWED) | set(openvpn.INLINE)


def intended_or_refused(text):
    """None when refused (with a clean message), else the rendered text after
    checking that the tokenizer reads it back as allowed directives only."""
    try:
        remotes = openvpn.validate({'ovpn_config': text})
    except PicError as exc:
        assert str(exc).startswith('config.ovpn_config: ')
        assert 'secretkey' not in str(exc)
        return None
    rendered = openvpn.render(text)
    entries = openvpn.parse(rendered)
    for _number, name, args, _block in entries:
        if name == '#':     # a whole-line comment: nothing for OpenVPN
            assert openvpn.parse_line(args[0] + '\n') == []
            continue
        assert name in ALLOWED_NAMES and name not in openvpn.REFUSED
        if name == 'connection':
            assert all(inner[1] in openvpn.CONNECTION
                       or (inner[1] == '#' and openvpn.parse_line(inner[2][0] + '\n') == []) for inner in args)
    assert openvpn.remotes(entries) == remotes
    assert openvpn.render(rendered) == rendered
    return rendered


@settings(max_examples=500, deadline=None)
@given(HOSTILE_FILE | st.lists(st.sampled_from(ACCEPTED_FRAGMENTS + FRAGMENTS), max_size=10).map('\n'.join))
def test_hostile_files_are_refused_or_read_as_intended(text):
    intended_or_refused(text)


@needs_openvpn
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(ACCEPTED_FRAGMENTS), min_size=1, max_size=8))
def test_openvpn_reads_accepted_hostile_files_as_intended(ovpn_world, lines):
    text = provider_file(ovpn_world, ''.join(line + '\n' for line in lines))
    mixed = '<connection>' in text and any(line.startswith(('remote', '"remote', "'remote")) for line in lines)
    assume(not mixed)     # refused: OpenVPN ignores loose remotes beside <connection> blocks
    assert intended_or_refused(text) is not None
    dump = openvpn_settings(ovpn_world, rendered_client(ovpn_world, text))
    check_openvpn_read(ovpn_world, dump, openvpn.validate({'ovpn_config': text}))


# One line of every allowed directive, in two files that OpenVPN accepts as a
# whole (keepalive excludes ping, compress excludes comp-lzo).
EVERY_DIRECTIVE = [[
    'ping-timer-rem', 'fast-io', 'tun-ipv6',
    'allow-compression asym', 'allow-pull-fqdn', 'auth SHA256', 'auth-nocache', 'auth-retry nointeract',
    'cipher AES-256-GCM', 'client', 'comp-lzo no', 'connect-retry 5 30', 'connect-retry-max 10',
    'connect-timeout 20', 'data-ciphers AES-256-GCM:AES-128-GCM', 'data-ciphers-fallback AES-256-CBC',
    'dhcp-option DNS 10.8.0.1', 'disable-occ', 'ecdh-curve prime256v1', 'explicit-exit-notify 2', 'float',
    'hand-window 60', 'ignore-unknown-option block-outside-dns register-dns', 'inactive 3600', 'keepalive 10 60',
    'key-direction 1', 'mssfix 1400 mtu', 'mtu-disc maybe', 'mute 20', 'mute-replay-warnings',
    'nobind', 'persist-key', 'persist-remote-ip', 'persist-tun', 'port 1194', 'proto udp', 'pull',
    'pull-filter ignore "route-ipv6"', 'push-peer-info', 'rcvbuf 0', 'redirect-gateway def1 bypass-dhcp',
    'remote vpn.example.net 1194 udp', 'remote-cert-eku "TLS Web Server Authentication"', 'remote-cert-ku a0 88',
    'remote-cert-tls server', 'remote-random', 'reneg-bytes 0', 'reneg-pkts 0', 'reneg-sec 3600 300',
    'resolv-retry infinite', 'route-nopull', 'rport 1194', 'server-poll-timeout 10', 'sndbuf 0',
    'tls-cert-profile preferred', 'tls-cipher DEFAULT:@SECLEVEL=1', 'tls-ciphersuites TLS_AES_256_GCM_SHA384',
    'tls-client', 'tls-groups X25519:P-256', 'tls-timeout 2', 'tls-version-max 1.3',
    'tls-version-min 1.2 or-highest', 'topology subnet', 'tran-window 3600', 'tun-mtu 1500', 'txqueuelen 100',
    'verb 4', 'verify-x509-name "C=US, CN=vpn" subject',
], [
    'client', 'link-mtu 1500', 'compress lz4-v2', 'ping 10', 'ping-restart 60', 'ping-exit 600', 'fragment 1300',
    'ncp-ciphers AES-256-GCM', 'remote vpn.example.net 1194',
]]


def test_every_allowed_directive_has_a_sample():
    named = set(line.split()[0] for group in EVERY_DIRECTIVE for line in group)
    assert named | {'dev', 'dev-type', 'auth-user-pass'} == set(openvpn.ALLOWED)


@needs_openvpn
@pytest.mark.parametrize('group', [0, 1])
def test_openvpn_accepts_every_allowed_directive(ovpn_world, group):
    """The allow-list holds nothing OpenVPN 2.6 refuses: each file reaches
    OpenVPN's settings dump, and the rendered file reads as intended."""
    text = ''.join(line + '\n' for line in EVERY_DIRECTIVE[group]) + provider_file(ovpn_world).split(
        'remote-cert-tls server\n', 1)[1]
    remotes = openvpn.validate({'ovpn_config': text})
    dump = openvpn_settings(ovpn_world, rendered_client(ovpn_world, text))
    check_openvpn_read(ovpn_world, dump, remotes)
