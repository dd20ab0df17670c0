# -*- coding: utf-8 -*-
"""The rendering helpers proven with the real programs' own parsers: sshuttle's
argparse, supervisord's config reader, systemd-analyze, tor, redsocks.

For every value (fixed hostile ones, and hypothesis-generated ones) a filter
either refuses it, or the program reads the rendered file back as exactly
that value."""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.pic.connectivity.plugins.filter import render
from ansible_collections.pic.connectivity.plugins.module_utils.validation import check_display_name
from ansible_collections.pic.connectivity.tests.unit.helpers import ROOT as ROOT_STR, environment as render_environment, render_template

ROOT_DIR = pathlib.Path(ROOT_STR)
DIST = '/usr/lib/python3/dist-packages'
if DIST not in sys.path:
    sys.path.append(DIST)
sshuttle_options = pytest.importorskip('sshuttle.options')
supervisor_options = pytest.importorskip('supervisor.options')

HOSTILE = ['a\nb', 'a\rb', 'x\x00', '\x85', 'a\u2028b', ' lead', 'trail ', '#hash', '@file', '"q"', "'q'", 'a;b',
           'a ;b', 'a #b', '100%', '%(here)s', '$HOME', '${X}', 'a\\', '\\', 'a b', '', '-x', '--ssh-cmd=x',
           'é', '\t', 'a"b', "a'b", ';', '[x]', '}', '{', 'x\\\ny', '--', '-', '---']
TEXT = st.text(st.characters(codec='utf-8', exclude_categories=('Cs',)), max_size=30) | \
    st.text(st.sampled_from(' \t\n\r#;@"\'\\%$[]{}=:,/ab-'), max_size=12)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except AnsibleFilterError:
        return True
    return False


# -- sshuttle: its own argparse reads the @file ------------------------------------------------
def sshuttle_reads(path):
    return sshuttle_options.parser._read_args_from_files(['@' + path])


def check_sshuttle(values, tmp_path):
    lines = []
    for value in values:
        try:
            lines.append(render.sshuttle_arg(value))
        except AnsibleFilterError as exc:
            assert repr(value) in str(exc)
            return
    path = tmp_path / 'args.conf'
    path.write_text(''.join(line + '\n' for line in lines))
    assert sshuttle_reads(str(path)) == values


@pytest.mark.parametrize('value', HOSTILE)
def test_sshuttle_arg_refused_or_read_back(value, tmp_path):
    check_sshuttle(['--python=' + value, value if not value.startswith('@') else 'x' + value], tmp_path)


@FAST
@given(st.lists(TEXT, min_size=1, max_size=4))
def test_sshuttle_arg_property(tmp_path_factory, values):
    check_sshuttle(values, tmp_path_factory.mktemp('ssh'))


def sshuttle_item(**config):
    base = {'host': '203.0.113.40', 'port': 22, 'user': 'root', 'dns': ['192.0.2.53']}
    base.update(config)
    return {'id': 'home-vpn', 'name': 'Home VPN', 'local_port': 12302, 'dns_port': 12303, 'config': base}


def render_sshuttle(tmp_path, item, options=('ConnectTimeout=10',)):
    text = render_template('sshuttle', 'sshuttle.conf.j2', item=item, sshuttle_dir='/var/lib/pic/sshuttle',
                           sshuttle_settings={'ssh_key': 'K'}, sshuttle_listen_ipv6=True,
                           sshuttle_ssh_options=list(options))
    path = tmp_path / 'x.conf'
    path.write_text(text)
    return sshuttle_options.parser.parse_args(['@' + str(path)])


def test_sshuttle_file_is_read_as_the_intended_options(tmp_path):
    opts = render_sshuttle(tmp_path, sshuttle_item(host='2001:db8::7', python='/usr/bin/python3'),
                           options=('ConnectTimeout=10', 'ProxyJump=a b'))
    assert opts.remote == 'root@[2001:db8::7]:22'
    assert opts.python == '/usr/bin/python3'
    assert opts.to_ns[1:3] == ('192.0.2.53', 53)
    assert opts.listen == '0.0.0.0:12302,[::]:0'
    assert shlex.split(opts.ssh_cmd) == [
        'ssh', '-F', 'none', '-o', 'BatchMode=yes', '-o', 'UserKnownHostsFile=/var/lib/pic/sshuttle/home-vpn.known_hosts',
        '-o', 'StrictHostKeyChecking=accept-new', '-o', 'IdentitiesOnly=yes', '-i', '/var/lib/pic/sshuttle/home-vpn.key',
        '-o', 'ConnectTimeout=10', '-o', 'ProxyJump=a b']
    assert [subnet[1:3] for group in opts.subnets for subnet in group] == [('255.255.255.255', 32)]


@pytest.mark.parametrize('config', [
    {'dns': ['fd00::1%x\n--ssh-cmd=touch /tmp/pwned']},    # the finding: a scope id with a line break
    {'user': 'root\n--ssh-cmd=touch /tmp/pwned'},
    {'host': 'ssh.example\n@/etc/shadow'},
    {'python': '/usr/bin/python3\n--ssh-cmd=x'},
])
def test_sshuttle_injected_lines_are_refused(config, tmp_path):
    with pytest.raises(AnsibleFilterError) as err:
        render_sshuttle(tmp_path, sshuttle_item(**config))
    assert 'sshuttle_arg: refused' in str(err.value)


def test_sshuttle_ssh_option_with_a_line_break_is_refused(tmp_path):
    with pytest.raises(AnsibleFilterError):
        render_sshuttle(tmp_path, sshuttle_item(), options=('ConnectTimeout=10\n--ssh-cmd=x',))


# sshuttle_ssh_options that make ssh run a program (as root), load a library, open a
# port or include a file: each once accepted (ssh ran 'ProxyCommand=touch ...').
SSH_REFUSED = ['ProxyCommand=touch /tmp/pwned', 'proxycommand sh', 'LocalCommand=id', 'PermitLocalCommand=yes',
               'KnownHostsCommand=/bin/sh', 'PKCS11Provider=/tmp/x.so', 'SecurityKeyProvider=/tmp/x.so',
               'LocalForward=0.0.0.0:80 127.0.0.1:80', 'DynamicForward=1080', 'Include=/etc/shadow',
               'ControlPath=/etc/x', 'ControlMaster=yes', 'UserKnownHostsFile=/dev/null', 'IdentityAgent=/tmp/s',
               'StrictHostKeyChecking=no', 'ForwardAgent=yes', 'Match exec true', 'ConnectTimeout=-10',
               'ConnectTimeout="10"', 'ConnectTimeout=10 #x', 'ConnectTimeout', '=10', 42]
SSH_ACCEPTED = ['ConnectTimeout=10', 'serveralivecountmax=3', 'ProxyJump=jump.example:2222', 'Ciphers=+aes128-ctr',
                'ServerAliveInterval 5']


@pytest.mark.parametrize('option', SSH_REFUSED)
def test_ssh_options_off_the_allow_list_are_refused(option, tmp_path):
    with pytest.raises(AnsibleFilterError) as err:
        render_sshuttle(tmp_path, sshuttle_item(), options=('ConnectTimeout=10', option))
    assert 'ssh_option' in str(err.value)


@pytest.mark.parametrize('option', SSH_ACCEPTED)
def test_ssh_options_on_the_allow_list_reach_ssh_as_one_option(option, tmp_path):
    opts = render_sshuttle(tmp_path, sshuttle_item(), options=(option,))
    assert shlex.split(opts.ssh_cmd)[-2:] == ['-o', option]


# -- supervisord: its own config reader ----------------------------------------------------------
def supervisor_programs(tmp_path, command, name='pic-x', supervisor_dir=None):
    supervisor_dir = supervisor_dir or str(tmp_path / 'sup')
    os.makedirs(os.path.join(supervisor_dir, 'conf.d'), exist_ok=True)
    conf = os.path.join(supervisor_dir, 'supervisord.conf')
    with open(conf, 'w') as handle:
        handle.write(render_template(
            'connectivity', 'supervisord.conf.j2', pic_supervisor_dir=supervisor_dir, connectivity_supervisord_conf=conf,
            inventory_hostname='cell1', pic_entry_point='/usr/local/sbin/pic-connectivity', pic_state_dir='/var/lib/pic'))
    with open(os.path.join(supervisor_dir, 'conf.d', name + '.conf'), 'w') as handle:
        handle.write(render_template('exit_instance', 'program.conf.j2', exit_instance_name=name,
                                     pic_supervisor_dir=supervisor_dir, exit_instance_command=command))
    options = supervisor_options.ServerOptions()
    options.configfile = conf
    options.here = supervisor_dir
    section = options.read_config(conf)
    return dict((group.name, [(p.name, shlex.split(p.command), p.stdout_logfile) for p in group.process_configs])
                for group in section.process_group_configs)


def test_supervisord_reads_the_programs_as_intended(tmp_path):
    argv = ['/usr/bin/python3', '/x/guard', 'a b', 'c;d', 'e #f', '#g', ';', "it's", 'q"q', 'back\\slash', ' ', '']
    programs = supervisor_programs(tmp_path, argv)
    sup = str(tmp_path / 'sup')
    assert programs['pic-x'] == [('pic-x', argv, sup + '/pic-x.log')]
    assert programs['pic-monitor'] == [
        ('pic-monitor', ['/usr/local/sbin/pic-connectivity', 'monitor', '--state-dir', '/var/lib/pic'],
         sup + '/pic-monitor.log')]


def test_supervisord_string_command_is_split_as_a_shell_would(tmp_path):
    command = "/usr/sbin/openvpn --cd /var/lib/pic/openvpn --config /var/lib/pic/openvpn/x.conf"
    assert supervisor_programs(tmp_path, command)['pic-x'][0][1] == shlex.split(command)


@pytest.mark.parametrize('name', ['pic-x\n[program:evil]', 'pic x', 'pic;x', 'pic%x', 'pic]x', '/', '../x', 'a:b',
                                  '.conf'])
def test_supervisord_names_that_would_add_a_section_are_refused(name, tmp_path):
    with pytest.raises(AnsibleFilterError) as err:
        supervisor_programs(tmp_path, ['/bin/true'], name=name)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize('command', [['/bin/true', 'a\ncommand=/bin/evil'], ['/bin/true', '%(here)s'],
                                     'relative/path x', '/bin/true "unclosed'])
def test_supervisord_commands_refused(command, tmp_path):
    with pytest.raises(AnsibleFilterError):
        supervisor_programs(tmp_path, command)


@SLOW
@given(st.lists(TEXT, min_size=1, max_size=3))
def test_supervisor_command_property(tmp_path_factory, words):
    argv = ['/bin/true'] + words
    try:
        render.supervisor_command(argv)
    except AnsibleFilterError:
        return
    assert supervisor_programs(tmp_path_factory.mktemp('sup'), argv)['pic-x'][0][1] == argv


# The command of each exit instance, as its role builds it: a list, so that a path
# (pic_state_dir) with a space or a quote stays one argument. A string split as a
# shell would gave OpenVPN '--cd /srv/pic' and 'cells/openvpn'.
STATE = "/srv/pic cells/it's"
ROLE_VARS = {'item': {'id': 'x', 'local_port': 12302, 'dns_port': 12303, 'config': {'host': '192.0.2.1', 'port': 1080}},
             'openvpn_client_binary': '/usr/sbin/openvpn', 'openvpn_client_dir': STATE + '/openvpn',
             'proxy_python': '/usr/bin/python3', 'proxy_guard': STATE + '/lib/exitguard.py', 'proxy_guard_interval': 1.0,
             'proxy_guard_fail_after': 2, 'proxy_dir': STATE + '/proxy', 'proxy_redsocks_binary': '/usr/sbin/redsocks',
             'sshuttle_python': '/usr/bin/python3', 'sshuttle_guard': STATE + '/lib/exitguard.py',
             'sshuttle_upstream': '192.0.2.1:22', 'sshuttle_guard_interval': 1.0, 'sshuttle_guard_fail_after': 2,
             'sshuttle_dir': STATE + '/sshuttle', 'sshuttle_launcher': STATE + '/pic-sshuttle',
             'tor_binary': '/usr/bin/tor', 'tor_dir': STATE + '/tor'}
ROLE_COMMANDS = {
    'openvpn_client': ['/usr/sbin/openvpn', '--cd', STATE + '/openvpn', '--config', STATE + '/openvpn/x.conf'],
    'proxy': ['/usr/bin/python3', STATE + '/lib/exitguard.py', '--upstream', '192.0.2.1:1080', '--interval', '1.0',
              '--fail-after', '2', '--pidfile', STATE + '/proxy/x.pid', '--', '/usr/sbin/redsocks', '-c',
              STATE + '/proxy/x.conf'],
    'sshuttle': ['/usr/bin/python3', STATE + '/lib/exitguard.py', '--upstream', '192.0.2.1:22', '--interval', '1.0',
                 '--fail-after', '2', '--pidfile', STATE + '/sshuttle/x.pid', '--', '/usr/bin/python3',
                 STATE + '/pic-sshuttle', '--pic-port', '12302', '--pic-dns-port', '12303', '@' + STATE + '/sshuttle/x.conf'],
    'tor': ['/usr/bin/tor', '-f', STATE + '/tor/torrc'],
}


def role_command(role):
    """The exit_instance_command of roles/<role>/tasks/instances.yml, evaluated for ROLE_VARS."""
    text = (ROOT_DIR / 'roles' / role / 'tasks' / 'instances.yml').read_text()
    found = re.search(r'exit_instance_command: (?:>-\n)?\s*"?\{\{(.*?)\}\}', text, re.S)
    return render_environment().compile_expression(found.group(1))(**ROLE_VARS)


@pytest.mark.parametrize('role', sorted(ROLE_COMMANDS))
def test_exit_commands_keep_each_path_one_argument(role, tmp_path):
    argv = role_command(role)
    assert argv == ROLE_COMMANDS[role]
    assert supervisor_programs(tmp_path, argv)['pic-x'][0][1] == argv


# -- systemd: systemd-analyze verify ----------------------------------------------------------------
needs_systemd = pytest.mark.skipif(not shutil.which('systemd-analyze'), reason='systemd-analyze is not installed')


def systemd_verify(tmp_path, description, command, name='picr-x'):
    unit = tmp_path / (name + '.service')
    unit.write_text(render_template('exit_instance', 'unit.service.j2', exit_instance_description=description,
                                    exit_instance_command=command))
    proc = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(unit)], capture_output=True, text=True,
                          check=False, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def systemd_reads_executable(tmp_path, word):
    """The executable path systemd's own parser reads from the rendered
    ExecStart= (it names it: 'Command <path> is not executable' or
    'Executable name contains special characters: <path>'); '$$' there is the
    environment expansion's escape, undone when the command runs."""
    _rc, out = systemd_verify(tmp_path, 'd', ['/nonexistent-picr/' + word])
    found = re.search(r'Command (/nonexistent-picr/.*) is not executable|special characters: (/nonexistent-picr/.*)$',
                      out, re.M)
    assert found, out
    return (found.group(1) or found.group(2)).replace('$$', '$')


@needs_systemd
def test_systemd_unit_verifies(tmp_path):
    rc, out = systemd_verify(tmp_path, 'pic.connectivity exit 100% "x"', ['/bin/true', 'a b', ';', '$HOME', '%n', '-'])
    assert rc == 0, out


@needs_systemd
@pytest.mark.parametrize('word', ['a b', 'a;b', '100%n', '$HOME', '${X}', 'q"q', "s'q", 'b\\s', '-x', '@x', ':x'])
def test_systemd_reads_back_each_word(word, tmp_path):
    assert systemd_reads_executable(tmp_path, word) == '/nonexistent-picr/' + word


@needs_systemd
@pytest.mark.parametrize('description,command', [
    ('x\nExecStartPre=/bin/evil', ['/bin/true']), ('x\\', ['/bin/true']), (' x', ['/bin/true']),
    ('x', ['/bin/true', 'a\nExecStartPre=/bin/evil']), ('x', 'bin/true'), ('x', ['-/bin/true']),
])
def test_systemd_values_that_would_add_a_setting_are_refused(description, command, tmp_path):
    with pytest.raises(AnsibleFilterError):
        systemd_verify(tmp_path, description, command)


@needs_systemd
@SLOW
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, blacklist_characters='/'), min_size=1,
               max_size=12) | TEXT)
def test_systemd_command_property(tmp_path_factory, word):
    if refused(render.systemd_command, ['/nonexistent-picr/' + word]) or '/' in word or word in ('', '.', '..'):
        return
    assert systemd_reads_executable(tmp_path_factory.mktemp('sd'), word) == '/nonexistent-picr/' + word


# Display names check_display_name accepts (free text) reach Description= of the
# exit's unit: a non-ASCII name was saved by pic_connection, then refused here.
@needs_systemd
@pytest.mark.parametrize('name', ['Café VPN', 'Zürich exit', 'Сервер', '東京', 'a (b) c, d/e + f:g'])
def test_a_display_name_reaches_the_unit_description(name, tmp_path):
    check_display_name(name, 'name')
    description = 'pic.connectivity OpenVPN exit %s' % name
    rc, out = systemd_verify(tmp_path, description, ['/bin/true'])
    assert rc == 0, out
    assert ('Description=' + description) in (tmp_path / 'picr-x.service').read_text(encoding='utf-8').splitlines()


@pytest.mark.parametrize('value', ['x\u2028y', 'x\u202ey', 'x\u200by', 'x\ufeff', 'x\x85y'])
def test_systemd_value_refuses_unicode_separators_and_format_characters(value):
    assert refused(render.systemd_value, value)


def render_restore_unit(peer_interface):
    return render_template('connectivity', 'pic-connectivity-restore.service.j2', pic_peer_interface=peer_interface,
                           pic_entry_point='/usr/local/sbin/pic-connectivity', pic_state_dir='/var/lib/pic')


# pic_peer_interface reaches RequiredBy= (a list of units) before any module checks it:
# 'wg0 sshd' made the restore unit required by sshd.service when enabled.
@pytest.mark.parametrize('peer_interface', ['wg0 sshd', 'wg0 multi-user.target', 'wg0%i', 'wg0\\x', 'wg0\n', '',
                                            'wg0/../x', 'wg0;x', 'wg\u00e9'])
def test_restore_unit_required_by_holds_one_unit(peer_interface):
    with pytest.raises(AnsibleFilterError) as err:
        render_restore_unit(peer_interface)
    assert 'systemd_unit: refused' in str(err.value) or 'only printable ASCII' in str(err.value)


@pytest.mark.parametrize('peer_interface', ['wg0', 'wg-cell_1.2'])
def test_restore_unit_required_by_the_peer_interface(peer_interface):
    lines = render_restore_unit(peer_interface).splitlines()
    assert 'RequiredBy=wg-quick@%s.service' % peer_interface in lines


# -- tor: tor --verify-config and --dump-config -------------------------------------------------------
needs_tor = pytest.mark.skipif(not shutil.which('tor'), reason='tor is not installed')


def tor_unescape(value):
    if not value.startswith('"'):
        return value
    return re.sub(r'\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)', lambda m: (
        chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == 'x' else chr(int(m.group(1), 8)) if m.group(1).isdigit()
        else {'n': '\n', 't': '\t', 'r': '\r'}.get(m.group(1), m.group(1))), value[1:-1])


def tor_reads(tmp_path, contact):
    data = tmp_path / 'data'
    data.mkdir(mode=0o700, exist_ok=True)
    torrc = tmp_path / 'torrc'
    torrc.write_text('DataDirectory %s\nSocksPort 0\nContactInfo %s\n' % (data, render.torrc_value(contact)))
    proc = subprocess.run(['tor', '-f', str(torrc), '--dump-config', 'short'], capture_output=True, text=True,
                          check=False, timeout=30)
    values = [line.split(' ', 1)[1] for line in proc.stdout.splitlines() if line.startswith('ContactInfo ')]
    return [tor_unescape(value) for value in values], proc.stdout + proc.stderr


@needs_tor
@pytest.mark.parametrize('value', ['a # b', 'a \\ b', 'q"q', 'x\\', '"x"', 'two words', 'end\\'])
def test_tor_reads_back_each_value(value, tmp_path):
    assert tor_reads(tmp_path, value)[0] == [value]


@needs_tor
def test_torrc_renders_and_verifies(tmp_path):
    data = tmp_path / 'tor data'
    data.mkdir(mode=0o700)
    conn = {'id': 'tor', 'name': 'Tor', 'local_port': 12304, 'dns_port': 12305, 'config': {'socks_port': 19050}}
    text = render_template('tor', 'torrc.j2', tor_connection=conn,
                           tor_data_dir=str(data), tor_listen_ipv6=True, tor_virtual_network_v4='10.192.0.0/10',
                           tor_authorities=[], tor_extra_settings=['ContactInfo a # b', 'Nickname picr'])
    (tmp_path / 'torrc').write_text(text)
    proc = subprocess.run(['tor', '--verify-config', '-f', str(tmp_path / 'torrc')], capture_output=True, text=True,
                          check=False, timeout=30)
    assert proc.returncode == 0, proc.stdout
    dumped = subprocess.run(['tor', '-f', str(tmp_path / 'torrc'), '--dump-config', 'short'], capture_output=True,
                            text=True, check=False, timeout=30).stdout
    assert 'ContactInfo "a # b"' in dumped or 'ContactInfo a # b' in dumped
    assert 'DataDirectory %s' % data in dumped or 'DataDirectory "%s"' % data in dumped


@pytest.mark.parametrize('line', ['ContactInfo x\nControlPort 9051', 'Log notice file /etc/x\r', '#x y', 'Key'])
def test_torrc_lines_that_would_add_a_line_are_refused(line):
    assert refused(render.torrc_line, line) or render.torrc_line(line).count('\n') == 0
    with pytest.raises(AnsibleFilterError):
        render.torrc_value('x\nControlPort 9051')


@needs_tor
@SLOW
@given(TEXT)
def test_torrc_value_property(tmp_path_factory, value):
    if refused(render.torrc_value, value):
        assert re.search(r'[^\x20-\x7e]', value) or not value
        return
    assert tor_reads(tmp_path_factory.mktemp('tor'), value)[0] == [value]


# -- redsocks: redsocks -t -------------------------------------------------------------------------
needs_redsocks = pytest.mark.skipif(not shutil.which('redsocks'), reason='redsocks is not installed')


def redsocks_test(tmp_path, username, password, host='203.0.113.60'):
    item = {'id': 'px', 'name': 'Proxy', 'local_port': 12306, 'dns_port': 12307,
            'config': {'host': host, 'port': 1080, 'proxy_type': 'socks5'}}
    text = render_template('proxy', 'redsocks.conf.j2', item=item, proxy_user='nobody', proxy_group='nogroup',
                           proxy_settings={'username': username, 'password': password})
    (tmp_path / 'redsocks.conf').write_text(text)
    proc = subprocess.run(['redsocks', '-t', '-c', str(tmp_path / 'redsocks.conf')], capture_output=True, text=True,
                          check=False, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr, text


@needs_redsocks
def test_redsocks_config_is_valid(tmp_path):
    rc, out, text = redsocks_test(tmp_path, 'user name', 'pa ss;word}{#\\"//')
    assert rc == 0, out
    assert '\tpassword = "pa ss;word}{#\\\\\\"//";\n' in text
    assert redsocks_unquote(text.split('password = ')[1].split(';\n')[0]) == 'pa ss;word}{#\\"//'


def redsocks_unquote(token):
    """redsocks' own reading of a "..." token (parser.c gettoken, gt_cstr)."""
    escapes = {'n': '\n', 't': '\t', 'r': '\r', '\\': '\\', "'": "'", '"': '"'}
    assert token[0] == '"' and token[-1] == '"'
    return re.sub(r'\\(.)', lambda m: escapes[m.group(1)], token[1:-1])


@pytest.mark.parametrize('username,password,host', [
    ('u";\n\tip = 10.0.0.1;', 'p', '203.0.113.60'), ('u', 'p"\n}', '203.0.113.60'), ('u', '}', '203.0.113.60'),
    ('//', 'p', '203.0.113.60'), ('u', 'p', '203.0.113.60/x'), ('u', 'p', ' 203.0.113.60'),
    ('u', 'p', '203.0.113.60;\n\tport = 1'),
])
def test_redsocks_values_that_would_add_a_setting_are_refused(username, password, host, tmp_path):
    with pytest.raises(AnsibleFilterError) as err:
        redsocks_test(tmp_path, username, password, host)
    if password != 'p':
        assert repr(password) not in str(err.value)   # the password is never shown


@needs_redsocks
@SLOW
@given(TEXT)
def test_redsocks_string_property(tmp_path_factory, value):
    if refused(render.redsocks_string, value) or not value:     # no password: no login lines
        return
    rc, out, text = redsocks_test(tmp_path_factory.mktemp('rs'), 'u', value)
    assert rc == 0, out
    assert redsocks_unquote(text.split('password = ')[1].split(';\n')[0]) == value


# -- supervisord: names and paths ------------------------------------------------------------------
@SLOW
@given(TEXT)
def test_supervisor_name_property(tmp_path_factory, name):
    """A program name: refused, or read back exactly (section and log file)."""
    if refused(render.supervisor_name, name):
        return
    base = tmp_path_factory.mktemp('sup')
    programs = supervisor_programs(base, ['/bin/true'], name=name)
    assert programs[name] == [(name, ['/bin/true'], str(base / 'sup') + '/' + name + '.log')]


# -- systemd: descriptions -------------------------------------------------------------------------
@needs_systemd
@SLOW
@given(TEXT)
def test_systemd_value_property(tmp_path_factory, description):
    """A description is refused, or the unit verifies with no other setting
    (systemd-analyze warns about any unknown or misplaced line)."""
    if refused(render.systemd_value, description):
        return
    rc, out = systemd_verify(tmp_path_factory.mktemp('sd'), description, ['/bin/true'])
    assert rc == 0 and out.strip() == '', out


@needs_systemd
def test_connectivity_units_verify_and_read_the_entry_point(tmp_path):
    for name in ('pic-connectivity-monitor.service.j2', 'pic-connectivity-restore.service.j2'):
        unit = tmp_path / ('picr-' + name[:-3])
        unit.write_text(render_template('connectivity', name, pic_entry_point='/bin/true',
                                        pic_state_dir='/var/lib/pic state;$x%n', pic_peer_interface='wg0'))
        proc = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(unit)], capture_output=True, text=True,
                              check=False, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        verb = name.split('.', maxsplit=1)[0].split('-')[-1]
        assert 'ExecStart="/bin/true" "' + verb + '" "--state-dir" "/var/lib/pic state;$$x%%n"' in unit.read_text()
        with pytest.raises(AnsibleFilterError):
            render_template('connectivity', name, pic_entry_point='/bin/true', pic_state_dir='/x\nExecStartPre=/bin/sh',
                            pic_peer_interface='wg0')


# -- the boot hook (POSIX shell) and the entry point (Python) -----------------------------------------
@pytest.mark.parametrize('state_dir', ['/var/lib/pic', "/var/lib/pic state;$(touch x)`y`'q'\"", '-x'])
def test_restore_hook_runs_the_entry_point_with_exactly_the_state_dir(state_dir, tmp_path):
    entry = tmp_path / 'pic entry'
    entry.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    entry.chmod(0o755)
    hook = tmp_path / 'restore.sh'
    hook.write_text(render_template('connectivity', 'restore.sh.j2', pic_entry_point=str(entry),
                                    pic_state_dir=state_dir, connectivity_restore_hook=str(hook),
                                    pic_peer_interface='wg0',
                                    connectivity_service_manager='systemd',
                                    connectivity_supervisord_conf='/x/supervisord.conf'))
    proc = subprocess.run(['/bin/sh', str(hook)], capture_output=True, text=True, check=True, cwd=str(tmp_path))
    assert proc.stdout == 'restore\n--state-dir\n%s\n--peer-interface\nwg0\n' % state_dir
    assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('variables', [{'pic_state_dir': '/x\ntouch /tmp/pwned'},
                                       {'connectivity_restore_hook': '/x\ntouch /tmp/pwned'},
                                       {'pic_entry_point': '/x\r'}])
def test_restore_hook_refuses_line_breaks(variables):
    base = {'pic_entry_point': '/e', 'pic_state_dir': '/s', 'connectivity_restore_hook': '/h',
            'connectivity_service_manager': 'supervisord', 'connectivity_supervisord_conf': '/x/supervisord.conf',
            'pic_peer_interface': 'wg0'}
    base.update(variables)
    with pytest.raises(AnsibleFilterError):
        render_template('connectivity', 'restore.sh.j2', **base)


@pytest.mark.parametrize('lib_dir', ['/usr/local/lib/pic', '/x"); import os; os.system("id") #', "/x\n'''\u2028"])
def test_entry_point_puts_exactly_the_library_directory_on_sys_path(lib_dir):
    import ast
    text = render_template('connectivity', 'pic-connectivity.j2', pic_lib_dir=lib_dir)
    tree = ast.parse(text)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'insert']
    assert [ast.literal_eval(call.args[1]) for call in calls] == [lib_dir]
    assert len([node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]) == 2


# -- torrc lines ---------------------------------------------------------------------------------------
# tor_extra_settings lines tor would take as a program to run, a file of the cell to
# write or read, a port to open, or a line the role writes: each once accepted.
TORRC_REFUSED = ['ClientTransportPlugin obfs4 exec /bin/sh -c id', 'ServerTransportPlugin x exec /bin/sh',
                 'ControlPortWriteToFile /etc/cron.d/x', 'Log notice file /etc/x', 'log notice file /etc/x',
                 'HiddenServiceDir /etc/pic', 'CookieAuthFile /etc/x', 'KeyDirectory /etc', 'PidFile /etc/x',
                 'ControlPort 0.0.0.0:9051', 'ORPort 9001', 'MetricsPort 0.0.0.0:9035', 'HTTPTunnelPort 8118',
                 'SocksPort 0.0.0.0:9050', 'DataDirectory /', 'GeoIPFile /etc/shadow', 'Sandbox 1', 'Tor 1']
TORRC_ACCEPTED = ['TestingTorNetwork 1', 'testingtornetwork 1', 'TestingV3AuthInitialVotingInterval 5',
                  'ExitNodes {us}', 'Nickname picr', 'ContactInfo a # b', 'AssumeReachable 1']


@pytest.mark.parametrize('line', TORRC_REFUSED)
def test_torrc_line_refuses_keywords_off_the_allow_list(line):
    with pytest.raises(AnsibleFilterError) as err:
        render.torrc_line(line)
    assert 'not a keyword tor_extra_settings may set' in str(err.value) and repr(line) in str(err.value)


@pytest.mark.parametrize('line', TORRC_ACCEPTED)
def test_torrc_line_accepts_allowed_keywords(line):
    assert render.torrc_line(line).split(' ', 1)[0] == line.split(' ', 1)[0]


@needs_tor
def test_torrc_allowed_keywords_are_tor_options():
    known = subprocess.run(['tor', '--list-torrc-options'], capture_output=True, text=True, check=True,
                           timeout=30).stdout.lower().split()
    assert sorted(render.TOR_EXTRA_KEYWORDS - set(known)) == []


@needs_tor
@SLOW
@given(TEXT)
def test_torrc_line_property(tmp_path_factory, value):
    """tor_extra_settings: 'ContactInfo <value>' is refused, or tor reads the
    value (without its surrounding spaces, as tor itself strips them)."""
    try:
        line = render.torrc_line('ContactInfo ' + value)
    except AnsibleFilterError:
        return
    base = tmp_path_factory.mktemp('tor')
    (base / 'data').mkdir(mode=0o700)
    (base / 'torrc').write_text('DataDirectory %s\nSocksPort 0\n%s\n' % (base / 'data', line))
    proc = subprocess.run(['tor', '-f', str(base / 'torrc'), '--dump-config', 'short'], capture_output=True, text=True,
                          check=False, timeout=30)
    found = [tor_unescape(out.split(' ', 1)[1]) for out in proc.stdout.splitlines() if out.startswith('ContactInfo ')]
    assert found == [value.strip(' ')], proc.stdout + proc.stderr


@SLOW
@given(TEXT)
def test_supervisor_value_property(tmp_path_factory, value):
    """A path value (the program's log file): refused, or read back exactly."""
    if refused(render.supervisor_value, value) or refused(render.supervisor_value, '/x/' + value):
        return
    base = tmp_path_factory.mktemp('sup')
    programs = supervisor_programs(base, ['/bin/true'], supervisor_dir=str(base / 'sup') + '/' + value)
    assert programs['pic-x'][0][2] == str(base / 'sup') + '/' + value + '/pic-x.log'


# -- every filter: control characters refused, the value named (a secret never) -------------------------
VALUE_FILTERS = ['ovpn_value', 'sshuttle_arg', 'ssh_option', 'supervisor_value', 'supervisor_name', 'systemd_value', 'systemd_unit',
                 'redsocks_string', 'redsocks_value', 'torrc_value', 'torrc_line', 'shell_value']
COMMAND_FILTERS = ['ovpn_command', 'supervisor_command', 'systemd_command']


@pytest.mark.parametrize('name', VALUE_FILTERS + COMMAND_FILTERS)
@pytest.mark.parametrize('value', ['x\ny', 'x\rz', 'x\x00', 'x\x1b[0m', 'x\x7f', 'x\x85', 'x\u2028', 'x\t', 'x\x0b'])
def test_every_filter_refuses_control_characters_naming_the_value(name, value):
    function = render.FilterModule().filters()[name]
    argument = ['/bin/x', value] if name in COMMAND_FILTERS else value
    with pytest.raises(AnsibleFilterError) as err:
        function(argument)
    assert str(err.value).startswith(name.split('_')[0]) and repr(value) in str(err.value)


def test_a_secret_is_never_named():
    with pytest.raises(AnsibleFilterError) as err:
        render.redsocks_string('hunter2\n', secret=True)
    assert 'hunter2' not in str(err.value) and 'a secret value' in str(err.value)
    with pytest.raises(AnsibleFilterError) as err:
        render.ovpn_config('remote a.example\n<key>\nMIIsecret\n</key>\nlog /x\n')
    assert 'MIIsecret' not in str(err.value) and "line 5: 'log' is not allowed" in str(err.value)


@pytest.mark.parametrize('name,value', [('ovpn_value', True), ('systemd_value', None), ('torrc_value', ['x']),
                                        ('systemd_command', 42), ('supervisor_command', []),
                                        ('ovpn_config', 42)])
def test_filters_refuse_values_of_the_wrong_type(name, value):
    with pytest.raises(AnsibleFilterError):
        render.FilterModule().filters()[name](value)


@FAST
@given(TEXT, TEXT)
def test_sshuttle_template_property(tmp_path_factory, user, python):
    """Hostile user and python values in the whole argument file: refused, or
    sshuttle reads exactly them back (and nothing else changes)."""
    item = sshuttle_item(user=user, python=python)
    try:
        opts = render_sshuttle(tmp_path_factory.mktemp('ssh'), item)
    except AnsibleFilterError:
        return
    except SystemExit:      # sshuttle's argparse refused the file: nothing runs
        return
    assert opts.remote == '%s@203.0.113.40:22' % user
    assert opts.python == (python or None)
    assert opts.ssh_cmd.startswith('ssh -F none -o BatchMode=yes ')
    assert [subnet[1:3] for group in opts.subnets for subnet in group] == [('255.255.255.255', 32)]
