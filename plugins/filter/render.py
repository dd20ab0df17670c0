# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rendering helper per file format of the exit services' templates.

Every value that a role template writes into a file goes through the filter of
that file's format. Each filter either returns text that the program's own
parser reads back as exactly the value (quoting it where the format has
quoting), or raises AnsibleFilterError naming the value (a secret is never
shown: ``ovpn_config`` names lines, ``redsocks_string`` and ``sshuttle_arg`` of
a secret are not used). Control characters (C0, DEL, C1) and non-ASCII text
are refused by every filter (``systemd_value`` takes non-ASCII text, a display
name, but no control, line separator or invisible format character); each
format's comment, continuation, quoting and expansion characters are escaped or refused.

Filters (FQCN ``pic.connectivity.<name>``):

* ``ovpn_value`` (one word of an OpenVPN config line), ``ovpn_command`` (a
  list: the command of an ``up``/``down`` line, quoted twice as OpenVPN splits
  the line and then the command), ``ovpn_config`` (the user's .ovpn text,
  checked against the client allow-list and written back; see module_utils/openvpn.py);
* ``sshuttle_arg`` (one line of an sshuttle ``@file``: one argument) and
  ``ssh_option`` (one ssh ``-o`` option of its ``--ssh-cmd``, from an allow-list);
* ``supervisor_name`` (a program name), ``supervisor_value`` (a value of a supervisord .ini file) and
  ``supervisor_command`` (a list, or a string split as a shell would, for ``command=``);
* ``systemd_value`` (a unit file setting such as ``Description=``),
  ``systemd_command`` (a list or a string, for ``ExecStart=``) and
  ``systemd_unit`` (one unit name of a list such as ``RequiredBy=``);
* ``redsocks_string`` (a quoted string of redsocks.conf) and ``redsocks_value``
  (a bare word: address, number, user name);
* ``torrc_value`` (the value of a torrc line) and ``torrc_line`` (a whole
  ``Keyword value`` line);
* ``shell_value`` (one word of a POSIX shell script).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.pic.connectivity.plugins.module_utils import openvpn
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError
from ansible_collections.pic.connectivity.plugins.module_utils.validation import has_control

_PRINTABLE = re.compile(r'[\x20-\x7e]*')


def _text(value, fmt, show=True, non_ascii=False):
    """``value`` as a str of printable ASCII (with ``non_ascii``: of any text but
    control, line separator and invisible format characters), else AnsibleFilterError."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AnsibleFilterError("%s: a value must be a string or a number, got %s" % (fmt, type(value).__name__))
    value = str(value)
    if non_ascii and not has_control(value):
        return value
    if not _PRINTABLE.fullmatch(value):
        raise AnsibleFilterError("%s: refused %s: only printable ASCII, no control character"
                                 % (fmt, repr(value) if show else 'a secret value'))
    return value


def _refuse(fmt, value, why, show=True):
    raise AnsibleFilterError("%s: refused %s: %s" % (fmt, repr(value) if show else 'a secret value', why))


def _argv(command, fmt):
    """A command as a list of words: a list as is, a string split as a POSIX shell would."""
    if isinstance(command, str):
        _text(command, fmt)
        try:
            words = shlex.split(command)
        except ValueError as exc:
            _refuse(fmt, command, 'not a command line (%s)' % exc)
    elif isinstance(command, (list, tuple)):
        words = [_text(word, fmt) for word in command]
    else:
        raise AnsibleFilterError("%s: a command is a list of words or a string" % fmt)
    if not words or not words[0].startswith('/'):
        _refuse(fmt, command, 'a command starts with an absolute path')
    return words


# -- OpenVPN --------------------------------------------------------------------------
def ovpn_value(value):
    """One word of an OpenVPN config line, as its parse_line reads it back."""
    value = _text(value, 'ovpn_value')
    try:
        return openvpn.quote(value)
    except ValueError as exc:
        _refuse('ovpn_value', value, str(exc))


def ovpn_command(command):
    """The command of an ``up``/``down`` line: OpenVPN splits the line, then
    the command (argv_parse_cmd, the same parse_line), so it is quoted twice."""
    words = _argv(command, 'ovpn_command')
    return ovpn_value(' '.join(ovpn_value(word) for word in words))


def ovpn_config(text, credentials=False):
    """The user's .ovpn text checked against the client allow-list and written
    back (module_utils/openvpn.py ``render``). Errors name lines, never content."""
    if not isinstance(text, str):
        raise AnsibleFilterError("ovpn_config: the OpenVPN configuration must be a string")
    try:
        return openvpn.render(text, bool(credentials))
    except PicError as exc:
        raise AnsibleFilterError("ovpn_config: %s" % exc.msg)


# -- sshuttle argument file ---------------------------------------------------------------
def sshuttle_arg(value):
    """One line of an sshuttle ``@file``: sshuttle's argparse reads each line
    (str.splitlines) as one argument, skips a line starting with ``#``, strips
    whitespace, removes one pair of surrounding quotes and reads an argument
    starting with ``@`` as a further file. Leading/trailing spaces, ``#`` and
    quotes are kept by a pair of double quotes; a leading ``@`` is refused,
    and so are ``--`` and a ``--`` value (``--python=--``), which argparse
    takes for the end of the options or drops."""
    value = _text(value, 'sshuttle_arg')
    if value.startswith('@') or (value[:1] in '"\'' and value[1:2] == '@'):
        _refuse('sshuttle_arg', value, "sshuttle would read an argument starting with '@' as a file")
    if value == '--' or value.endswith('=--'):
        _refuse('sshuttle_arg', value, "argparse reads a '--' argument as the end of the options and drops a '--' value")
    if value[:1] in ' #"\'' or value[-1:] in ' "\'':
        return '"%s"' % value
    return value


# The ssh options an sshuttle instance may be given (``sshuttle_ssh_options``,
# ``Keyword=value``, keywords case-insensitive as ssh reads them): timeouts,
# keep-alives, algorithms, logging, a jump host. Never one that runs a program
# or loads a library (ProxyCommand, LocalCommand, KnownHostsCommand,
# PKCS11Provider), opens a port (LocalForward, DynamicForward), includes or
# writes a file (Include, ControlPath, UserKnownHostsFile), or forwards agents.
SSH_OPTIONS = frozenset(k.lower() for k in (
    'ConnectTimeout', 'ConnectionAttempts', 'ServerAliveInterval', 'ServerAliveCountMax', 'TCPKeepAlive',
    'Compression', 'AddressFamily', 'IPQoS', 'Ciphers', 'MACs', 'KexAlgorithms', 'HostKeyAlgorithms',
    'PubkeyAcceptedAlgorithms', 'PubkeyAcceptedKeyTypes', 'CASignatureAlgorithms', 'RekeyLimit', 'LogLevel',
    'ProxyJump', 'HostKeyAlias', 'CheckHostIP', 'VerifyHostKeyDNS', 'Port'))
_SSH_OPTION = re.compile(r'([A-Za-z][A-Za-z0-9]*)[ =]([A-Za-z0-9_.,:@+/=\[\]][A-Za-z0-9_.,:@+/=\[\] -]*)')


def ssh_option(value):
    """One ssh ``-o`` option, ``Keyword=value``: a keyword of ``SSH_OPTIONS``
    and a value of letters, digits, spaces and ``_.,:@+/=[]-`` (no quote, no
    ``#``, not starting with ``-``); returned as given."""
    value = _text(value, 'ssh_option')
    match = _SSH_OPTION.fullmatch(value)
    if not match:
        _refuse('ssh_option', value, "an ssh option is Keyword=value, the value of letters, digits, spaces and "
                "_.,:@+/=[]- (not starting with '-')")
    if match.group(1).lower() not in SSH_OPTIONS:
        _refuse('ssh_option', value, "%s is not an ssh option an exit may set (it could run a program, open a port "
                "or touch a file of the cell); allowed: %s" % (match.group(1), ', '.join(sorted(SSH_OPTIONS))))
    return value


# -- supervisord ----------------------------------------------------------------------------
_SUPERVISOR_BARE = re.compile(r'[A-Za-z0-9_./:,@+=-]')


def supervisor_value(value):
    """A value of a supervisord .ini line: configparser has no quoting (``;``
    or ``#`` after a space starts a comment, a value is stripped, ``%`` is
    supervisord's expansion), so anything but ``[A-Za-z0-9_./:,@+=-]`` is refused."""
    value = _text(value, 'supervisor_value')
    if not value or not all(_SUPERVISOR_BARE.match(char) for char in value):
        _refuse('supervisor_value', value, 'a supervisord value holds only letters, digits and _./:,@+=-')
    return value


_SUPERVISOR_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,99}')


def supervisor_name(value):
    """A program name (``[program:NAME]``, also the name of its file in
    conf.d): a letter or digit, then letters, digits and ``_.-``."""
    value = _text(value, 'supervisor_name')
    if not _SUPERVISOR_NAME.fullmatch(value):
        _refuse('supervisor_name', value, 'a program name is a letter or digit, then letters, digits and _.-')
    return value


def _supervisor_word(word):
    if '%' in word:
        _refuse('supervisor_command', word, "'%' is supervisord's expansion")
    if word == '':
        return "''"
    # shlex (POSIX) reads a backslash-escaped character as itself; a space is
    # written as ' ' so that no space is ever followed by ';' or '#' (an
    # inline comment for configparser) and none ends the value (stripped).
    return ''.join(char if _SUPERVISOR_BARE.match(char) else ("' '" if char == ' ' else '\\' + char)
                   for char in word)


def supervisor_command(command):
    """``command=`` of a supervisord program: each word quoted for the shlex
    split supervisord makes of it (and for its .ini reader)."""
    return ' '.join(_supervisor_word(word) for word in _argv(command, 'supervisor_command'))


# -- systemd ---------------------------------------------------------------------------------
def systemd_value(value):
    """A unit file setting's value (``Description=``): no quoting there; ``%``
    is written ``%%`` (specifiers); surrounding whitespace (stripped) and a
    trailing backslash (continuation) are refused. A unit file is UTF-8: a
    connection's display name ("Café VPN") is written as it is."""
    value = _text(value, 'systemd_value', non_ascii=True)
    if not value or value != value.strip(' ') or value.endswith('\\'):
        _refuse('systemd_value', value, 'a unit file value neither starts nor ends with a space or a backslash, '
                'nor is empty')
    return value.replace('%', '%%')


def _systemd_word(word):
    return '"%s"' % word.replace('\\', '\\\\').replace('"', '\\"').replace('%', '%%').replace('$', '$$')


def systemd_command(command):
    """``ExecStart=`` of a unit: every word in double quotes (``\\`` and ``"``
    escaped, ``%%`` for specifiers, ``$$`` for environment expansion), so that
    no prefix (``-@:+!``), ``;`` separator or quote of a value is read."""
    return ' '.join(_systemd_word(word) for word in _argv(command, 'systemd_command'))


_SYSTEMD_UNIT = re.compile(r'[A-Za-z0-9_][A-Za-z0-9:_.-]*(?:@[A-Za-z0-9:_.-]+)?\.(?:service|target)')


def systemd_unit(value):
    """One unit name of a unit list (``RequiredBy=``, ``After=``): a space
    would separate a second unit and ``%`` is a specifier, so only
    ``name[@instance].service|target`` of letters, digits and ``:_.-``
    (255 characters at most, systemd's limit)."""
    value = _text(value, 'systemd_unit')
    if len(value) > 255 or not _SYSTEMD_UNIT.fullmatch(value):
        _refuse('systemd_unit', value, 'a unit name is name[@instance].service or .target, of letters, digits and '
                ':_.- (a space would name a second unit)')
    return value


# -- redsocks --------------------------------------------------------------------------------
# redsocks' parser (parser.c gettoken): a bare token is a number/address
# ([0-9][0-9./]*) or a name ([A-Za-z][A-Za-z0-9_.-]*); a "..." string knows the
# escapes \\ \" \' \n \t \r, but a string token equal to a punctuation or
# comment token is taken for it.
_REDSOCKS_BARE = re.compile(r'[0-9][0-9.]*|[A-Za-z][A-Za-z0-9_.-]*')
_REDSOCKS_PUNCTUATION = ('{', '}', '=', ';', '//', '/*')


def redsocks_string(value, secret=False):
    """A double-quoted string of redsocks.conf (``\\`` and ``"`` escaped);
    a value that redsocks would read as punctuation is refused. With
    ``secret``, an error does not show the value."""
    value = _text(value, 'redsocks_string', not secret)
    if value in _REDSOCKS_PUNCTUATION:
        _refuse('redsocks_string', value, 'redsocks reads this string as punctuation or a comment', not secret)
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


def redsocks_value(value):
    """A bare word of redsocks.conf (address, port, user, type)."""
    value = _text(value, 'redsocks_value')
    if not _REDSOCKS_BARE.fullmatch(value):
        _refuse('redsocks_value', value, 'a bare redsocks word is a number or address ([0-9][0-9.]*) or a name '
                '([A-Za-z][A-Za-z0-9_.-]*)')
    return value


# -- torrc -----------------------------------------------------------------------------------
_TOR_BARE = re.compile(r'[A-Za-z0-9_./:,@+=\[\]!*-][A-Za-z0-9_./:,@+=\[\]!* -]*')
_TOR_KEY = re.compile(r'[A-Za-z][A-Za-z0-9_]*')


def torrc_value(value):
    """The value of a torrc line: written bare when it holds nothing tor reads
    specially, else as a quoted string (tor unescapes ``\\\\`` and ``\\"``)."""
    value = _text(value, 'torrc_value')
    if not value:
        _refuse('torrc_value', value, 'an empty value is no value for tor (the default)')
    if _TOR_BARE.fullmatch(value) and not value.endswith(' '):
        return value
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


# The keywords a ``tor_extra_settings`` line may set (tor reads them case-insensitively):
# a client's path selection, bridges, timing, logging hygiene, and the Testing*
# options of a private Tor network. Never one that runs a program
# (ClientTransportPlugin), writes or reads a file of the cell (Log, PidFile,
# ControlPortWriteToFile, CookieAuthFile, HiddenServiceDir, %include ...),
# opens a port (ControlPort, ORPort, MetricsPort, HTTPTunnelPort ...) or
# replaces a line the role writes (DataDirectory, TransPort, DNSPort ...).
TOR_EXTRA_KEYWORDS = frozenset(k.lower() for k in (
    'ContactInfo', 'Nickname', 'TestingTorNetwork', 'AssumeReachable', 'PathsNeededToBuildCircuits',
    'UseBridges', 'Bridge', 'EntryNodes', 'ExitNodes', 'MiddleNodes', 'ExcludeNodes', 'ExcludeExitNodes',
    'StrictNodes', 'NumEntryGuards', 'UseEntryGuards', 'GeoIPExcludeUnknown', 'EnforceDistinctSubnets',
    'CircuitBuildTimeout', 'LearnCircuitBuildTimeout', 'CircuitStreamTimeout', 'NewCircuitPeriod',
    'MaxCircuitDirtiness', 'KeepalivePeriod', 'ClientUseIPv4', 'ClientUseIPv6', 'ClientPreferIPv6ORPort',
    'FascistFirewall', 'ReachableAddresses', 'ConnectionPadding', 'ReducedConnectionPadding',
    'SafeLogging', 'SafeSocks', 'TestSocks', 'ClientOnly', 'FetchDirInfoEarly', 'UseMicrodescriptors',
    'DownloadExtraInfo'))
_TOR_TESTING_KEY = re.compile(r'[Tt][Ee][Ss][Tt][Ii][Nn][Gg][A-Za-z0-9]+')


def torrc_line(line):
    """A whole ``Keyword value`` torrc line (tor_extra_settings): a keyword of
    ``TOR_EXTRA_KEYWORDS`` (or a ``Testing*`` one) and its value."""
    line = _text(line, 'torrc_line')
    key, _sep, value = line.partition(' ')
    if not _TOR_KEY.fullmatch(key):
        _refuse('torrc_line', line, "a torrc line starts with a keyword ([A-Za-z][A-Za-z0-9_]*) and a space")
    if key.lower() not in TOR_EXTRA_KEYWORDS and not _TOR_TESTING_KEY.fullmatch(key):
        _refuse('torrc_line', line, "%s is not a keyword tor_extra_settings may set (it could run a program, "
                "touch a file of the cell, open a port or replace a line the role writes); allowed: %s, Testing*"
                % (key, ', '.join(sorted(TOR_EXTRA_KEYWORDS))))
    return '%s %s' % (key, torrc_value(value.strip(' ')))


# -- POSIX shell -------------------------------------------------------------------------
def shell_value(value):
    """One word of a POSIX shell script (restore.sh): shlex.quote of a value
    of printable ASCII (a line break inside quotes would still end a comment)."""
    return shlex.quote(_text(value, 'shell_value'))


class FilterModule:
    """pic.connectivity rendering helpers, one per file format."""

    def filters(self):
        return {
            'ovpn_value': ovpn_value, 'ovpn_command': ovpn_command, 'ovpn_config': ovpn_config,
            'sshuttle_arg': sshuttle_arg, 'ssh_option': ssh_option,
            'supervisor_value': supervisor_value, 'supervisor_command': supervisor_command,
            'supervisor_name': supervisor_name,
            'systemd_value': systemd_value, 'systemd_command': systemd_command, 'systemd_unit': systemd_unit,
            'redsocks_string': redsocks_string, 'redsocks_value': redsocks_value,
            'torrc_value': torrc_value, 'torrc_line': torrc_line, 'shell_value': shell_value,
        }
