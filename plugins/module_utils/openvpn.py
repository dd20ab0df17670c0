# -*- coding: utf-8 -*-
# Copyright: pic.connectivity contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenVPN exits: validation of the user's ``.ovpn`` text and the ``up`` hook.

The user's file is read exactly as OpenVPN 2.6 reads it (``parse_line``,
``check_inline_file`` and ``read_inline_file`` of its options.c): lines split
on newline only, words split on whitespace with ``"..."`` (backslash escapes)
and ``'...'`` quoting, a word starting with ``#`` or ``;`` starts a comment,
``--`` before a name is dropped, one ``<tag>`` word alone on a line opens an
inline block that the first line *starting with* ``</tag>`` (after leading
whitespace) closes. Lines OpenVPN would cut (longer than 250 bytes), more
than 15 words, control characters and bad backslashes are refused.

Every directive must be on the client allow-list (``ALLOWED``, with a
grammar per argument; ``CONNECTION`` inside ``<connection>`` blocks);
certificates and keys only inline (``INLINE``). Everything else is refused
with its line number and name, never with a line's content (it may hold a
key): ``up``, ``down``, ``script-security``, ``plugin``, ``log``,
``status``, ``management``, ``auth-user-pass FILE``, ``setenv``, ``user``,
``cd``, ``chroot``, ``config``, ``writepid``, ``daemon``, ... (``REFUSED``
gives the reason for the usual ones).

The instance's configuration (rendered by the ``openvpn_client`` role) is
the collection's forced lines (``pull-filter ignore "redirect-gateway"`` and
``"redirect-private"`` first, ``dev <interface>``, ``dev-type tun``,
``route-noexec``, ``ifconfig-noexec``, ``script-security 2``, ``up``/``down``
calling ``pic-connectivity openvpn-up``, ``writepid``, and with credentials
``auth-user-pass <0600 file>``), then ``render()`` of the user's file: each
accepted directive written back by ``quote`` (so OpenVPN reads exactly the
checked words), inline blocks closed by a clean ``</tag>`` line, whole-line
comments kept (OpenVPN ignores them; a changed comment still restarts the
instance), trailing comments dropped; ``dev``/``dev-type`` (and with credentials ``auth-user-pass``) are
commented out (``# replaced by pic.connectivity: ...``), and so are the
Windows-only ``block-outside-dns`` and ``register-dns``.

The ``up`` hook gets OpenVPN's environment (``dev``, ``ifconfig_local``,
``ifconfig_ipv6_local``, ``tun_mtu``, ``script_type``): it sets the addresses
as /32 and /128 ``noprefixroute`` (nothing lands in ``main``), no IPv6
link-local address, the MTU, loose reverse-path filtering and the link up,
then puts the connection's routes into its table (``Cell.heal``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re
import shutil
import signal
import subprocess

from .errors import PicError

# -- reading the user's file exactly as OpenVPN 2.6 does (options.c) -------------
# OPTION_LINE_SIZE is 256: fgets() cuts a longer line into several "lines", and
# MAX_PARMS (16) silently drops further words; both are refused.
MAX_LINE = 250
MAX_WORDS = 15
_C_SPACE = ' \t\n\v\f\r'
_CONTROL = re.compile(u'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]')
_BOM = u'\ufeff'


class _BadLine(ValueError):
    """A line OpenVPN itself would refuse or misread."""


def parse_line(line):
    """The words of one line, split as OpenVPN's ``parse_line``: whitespace,
    ``"..."`` (backslash escapes ``\\``, ``"`` and whitespace), ``'...'``
    (no escapes), a word starting with ``#`` or ``;`` starts a comment.
    ``line`` ends with its newline, as fgets() gives it. Raises _BadLine."""
    words, word = [], None
    state = 'initial'
    backslash = False
    for char in line + '\0':
        out = None
        if not backslash and char == '\\' and state != 'squoted':
            backslash = True
            continue
        space = char == '\0' or char in _C_SPACE
        if state == 'initial':
            if not space:
                if char in ';#':
                    break
                if not backslash and char == '"':
                    state, word = 'quoted', ''
                elif not backslash and char == "'":
                    state, word = 'squoted', ''
                else:
                    out, state, word = char, 'unquoted', ''
        elif state == 'unquoted':
            if not backslash and space:
                state = 'done'
            else:
                out = char
        elif state == 'quoted':
            if not backslash and char == '"':
                state = 'done'
            else:
                out = char
        elif char == "'":
            state = 'done'
        else:
            out = char
        if state == 'done':
            words.append(word)
            state, word = 'initial', None
        if backslash and out is not None and not (out in '\\"\0' or out in _C_SPACE):
            raise _BadLine("a backslash may only escape \\, \" or a space")
        backslash = False
        if out is not None:
            word += out
        if len(words) > MAX_WORDS:
            raise _BadLine("more than %d words" % MAX_WORDS)
    if state in ('quoted', 'squoted'):
        raise _BadLine("a quotation is never closed")
    return words


def _inline_tag(words):
    """The tag of a line opening an inline block (``<ca>``), else None."""
    if len(words) == 1 and len(words[0]) >= 2 and words[0][0] == '<' and words[0][-1] == '>':
        return words[0][1:-1]
    return None


def _physical_lines(text):
    """The file's lines as OpenVPN reads them (split on newline only), each
    checked: not too long, no control character. Raises PicError."""
    if text.startswith(_BOM):
        text = text[1:]
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    for number, line in enumerate(lines, 1):
        if _CONTROL.search(line):
            raise PicError("line %d holds a control character" % number)
        if len(line.encode('utf-8')) > MAX_LINE:
            raise PicError("line %d is longer than %d bytes (OpenVPN would split it)" % (number, MAX_LINE))
    return lines


def _read_block(lines, index, tag, opened):
    """(content lines, index after the closing line) of the inline block
    ``tag`` whose content starts at ``lines[index]``: OpenVPN closes it on the
    first line that, after leading whitespace, *starts with* ``</tag>``."""
    close = '</%s>' % tag
    for end in range(index, len(lines)):
        if lines[end].lstrip(_C_SPACE).startswith(close):
            return lines[index:end], end + 1
    if not _NAME_RE.fullmatch(tag):
        raise PicError("line %d opens an inline block (one <word> alone on a line) that is never closed" % opened)
    raise PicError("the inline block <%s> opened on line %d is never closed (</%s>)" % (tag, opened, tag))


def parse(text, first=1):
    """[(line number, name, args, block)] of an .ovpn text, read as OpenVPN
    reads it: ``block`` is the content lines of an inline block (``<ca>``...)
    and None for a directive line; ``--`` before a name is dropped. A
    ``<connection>`` block's own directives are in ``args``. A whole-line
    comment is an entry named ``#`` (its text in ``args``), which OpenVPN
    ignores and ``render`` keeps. Raises PicError."""
    lines = _physical_lines(text)
    out = []
    index = 0
    while index < len(lines):
        number = first + index
        try:
            words = parse_line(lines[index] + '\n')
        except _BadLine as exc:
            raise PicError("line %d: OpenVPN cannot read it: %s" % (number, exc))
        index += 1
        if not words:
            comment = lines[index - 1].lstrip(_C_SPACE).rstrip('\r')
            if comment[:1] in ('#', ';'):
                out.append((number, '#', [comment], None))
            continue
        if len(words[0]) >= 3 and words[0].startswith('--'):
            words[0] = words[0][2:]
        tag = _inline_tag(words)
        if tag is None:
            out.append((number, words[0], words[1:], None))
            continue
        block, index = _read_block(lines, index, tag, number)
        inner = parse('\n'.join(block), number + 1) if tag == 'connection' else []
        out.append((number, tag, inner, block))
    return out


def directives(text):
    """[(line number, directive, [args])] of an .ovpn text, outside inline
    blocks but inside ``<connection>`` blocks. Raises PicError."""
    out = []
    for number, name, args, block in parse(text):
        if name == '#':
            continue
        if block is None:
            out.append((number, name, args))
        elif name == 'connection':
            out.extend((n, d, a) for n, d, a, b in args if b is None and d != '#')
    return out


# -- what a client's file may hold --------------------------------------------------
_HOST_LABEL = r'[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
_HOST_RE = re.compile(r'(?=[A-Za-z0-9.-]{1,253}\Z)%s(?:\.%s)*\.?' % (_HOST_LABEL, _HOST_LABEL))
_WORD_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:+/=@-]{0,127}')
_TEXT_RE = re.compile(r'[\x20-\x7e]{1,200}')
_PROTOS = ('udp', 'udp4', 'udp6', 'tcp', 'tcp4', 'tcp6', 'tcp-client', 'tcp4-client', 'tcp6-client')


def _is_host(value):
    if '%' in value:
        return False        # an IPv6 scope id: ipaddress accepts almost anything after it
    if ':' in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    return bool(_HOST_RE.fullmatch(value))


def _is_int(value, low=0, high=2 ** 31 - 1):
    return value.isdigit() and value.isascii() and len(value) <= 10 and low <= int(value) <= high


def _enum(*choices):
    return lambda value: value in choices


_KINDS = {
    'host': _is_host,
    'port': lambda value: _is_int(value, 1, 65535),
    'int': _is_int,
    'proto': _enum(*_PROTOS),
    'word': lambda value: bool(_WORD_RE.fullmatch(value)),
    'text': lambda value: bool(_TEXT_RE.fullmatch(value)),
    'retry': lambda value: value == 'infinite' or _is_int(value),
    'dir': _enum('0', '1'),
    'tun': lambda value: bool(_TUN_RE.fullmatch(value)),
}
_KINDS.update({
    'filter': _enum('accept', 'ignore', 'reject'),
    'x509type': _enum('name', 'name-prefix', 'subject'),
    'certtls': _enum('server'),
    'mssflag': _enum('mtu', 'fixed'),
    'mtudisc': _enum('no', 'maybe', 'yes'),
    'lzo': _enum('yes', 'no', 'adaptive'),
    'compress': _enum('lzo', 'lz4', 'lz4-v2', 'stub', 'stub-v2', 'migrate'),
    'allowcomp': _enum('no', 'asym', 'yes'),
    'authretry': _enum('none', 'nointeract'),
    'redirect': _enum('local', 'autolocal', 'def1', 'bypass-dhcp', 'bypass-dns', 'block-local', 'ipv4', '!ipv4',
                      'ipv6'),
    'topology': _enum('net30', 'p2p', 'subnet'),
    'tlsver': _enum('1.0', '1.1', '1.2', '1.3', 'or-highest'),
    'profile': _enum('legacy', 'preferred', 'suiteb'),
    'name': lambda value: bool(re.fullmatch(r'[a-z][a-z0-9-]{0,40}', value)),
})

# name: (least, most arguments, kinds of the arguments; the last one repeats).
# What a <connection> block may hold (OPT_P_CONNECTION in OpenVPN).
CONNECTION = {
    'remote': (1, 3, ('host', 'port', 'proto')), 'proto': (1, 1, ('proto',)), 'port': (1, 1, ('port',)),
    'rport': (1, 1, ('port',)), 'nobind': (0, 0, ()), 'float': (0, 0, ()),
    'connect-retry': (1, 2, ('int',)), 'connect-timeout': (1, 1, ('int',)), 'server-poll-timeout': (1, 1, ('int',)),
    'explicit-exit-notify': (0, 1, ('int',)), 'tun-mtu': (1, 2, ('int',)), 'link-mtu': (1, 1, ('int',)),
    'mssfix': (0, 2, ('int', 'mssflag')), 'fragment': (1, 1, ('int',)),
}
ALLOWED = dict(CONNECTION)
ALLOWED.update({
    'client': (0, 0, ()), 'pull': (0, 0, ()), 'tls-client': (0, 0, ()), 'persist-key': (0, 0, ()),
    'persist-tun': (0, 0, ()), 'persist-remote-ip': (0, 0, ()), 'auth-nocache': (0, 0, ()),
    'remote-random': (0, 0, ()), 'mute-replay-warnings': (0, 0, ()), 'route-nopull': (0, 0, ()),
    'disable-occ': (0, 0, ()), 'push-peer-info': (0, 0, ()), 'allow-pull-fqdn': (0, 0, ()),
    'ping-timer-rem': (0, 0, ()), 'fast-io': (0, 0, ()), 'tun-ipv6': (0, 0, ()),
    'dev': (1, 1, ('tun',)), 'dev-type': (1, 1, (_enum('tun'),)),
    'resolv-retry': (1, 1, ('retry',)), 'connect-retry-max': (1, 1, ('int',)),
    'remote-cert-tls': (1, 1, ('certtls',)), 'verify-x509-name': (1, 2, ('text', 'x509type')),
    'remote-cert-ku': (1, 15, ('word',)), 'remote-cert-eku': (1, 1, ('text',)),
    'cipher': (1, 1, ('word',)), 'data-ciphers': (1, 1, ('word',)), 'ncp-ciphers': (1, 1, ('word',)),
    'data-ciphers-fallback': (1, 1, ('word',)), 'auth': (1, 1, ('word',)), 'tls-cipher': (1, 1, ('word',)),
    'tls-ciphersuites': (1, 1, ('word',)), 'tls-groups': (1, 1, ('word',)), 'ecdh-curve': (1, 1, ('word',)),
    'tls-version-min': (1, 2, ('tlsver',)), 'tls-version-max': (1, 1, ('tlsver',)),
    'tls-cert-profile': (1, 1, ('profile',)), 'key-direction': (1, 1, ('dir',)),
    'keepalive': (2, 2, ('int',)), 'ping': (1, 1, ('int',)), 'ping-restart': (1, 1, ('int',)),
    'ping-exit': (1, 1, ('int',)), 'inactive': (1, 2, ('int',)), 'hand-window': (1, 1, ('int',)),
    'tran-window': (1, 1, ('int',)), 'tls-timeout': (1, 1, ('int',)), 'reneg-sec': (1, 2, ('int',)),
    'reneg-bytes': (1, 1, ('int',)), 'reneg-pkts': (1, 1, ('int',)), 'mtu-disc': (1, 1, ('mtudisc',)),
    'sndbuf': (1, 1, ('int',)), 'rcvbuf': (1, 1, ('int',)), 'txqueuelen': (1, 1, ('int',)),
    'verb': (1, 1, (lambda value: _is_int(value, 0, 11),)), 'mute': (1, 1, ('int',)),
    'comp-lzo': (0, 1, ('lzo',)), 'compress': (0, 1, ('compress',)), 'allow-compression': (1, 1, ('allowcomp',)),
    'auth-retry': (1, 1, ('authretry',)), 'auth-user-pass': (0, 0, ()),
    'redirect-gateway': (0, 9, ('redirect',)), 'topology': (1, 1, ('topology',)),
    'dhcp-option': (1, 2, ('word', 'text')), 'pull-filter': (2, 2, ('filter', 'text')),
    'ignore-unknown-option': (1, 15, ('name',)),
})
# Inline blocks (certificates and keys): only inline, never a file of the cell.
INLINE = ('ca', 'cert', 'key', 'extra-certs', 'tls-auth', 'tls-crypt', 'tls-crypt-v2', 'pkcs12', 'connection')
# Accepted, and left out of the rendered file: replaced by the collection's own
# line (dev, dev-type, writepid), or meaningless on Linux (OpenVPN refuses them).
REPLACED = ('dev', 'dev-type')
WINDOWS_ONLY = ('block-outside-dns', 'register-dns')

# Directives refused with a reason of their own (all others: "not a supported client directive").
_RUNS_COMMANDS = "runs a command on the cell; pic.connectivity runs its own up/down hook and no other script"
_WRITES_FILES = "reads or writes a file of the cell; pic.connectivity manages the instance's files"
REFUSED = dict.fromkeys((
    'up', 'down', 'route-up', 'route-pre-down', 'ipchange', 'learn-address', 'client-connect',
    'client-disconnect', 'auth-user-pass-verify', 'tls-verify', 'tls-crypt-v2-verify', 'plugin', 'iproute',
    'tls-export-cert'), _RUNS_COMMANDS)
REFUSED.update(dict.fromkeys((
    'log', 'log-append', 'status', 'writepid', 'cd', 'chroot', 'askpass', 'crl-verify', 'replay-persist',
    'capath', 'dh', 'secret', 'syslog', 'errors-to-stderr', 'tmp-dir'), _WRITES_FILES))
REFUSED.update(dict.fromkeys(('management', 'management-client', 'port-share', 'local', 'lport', 'bind',
                              'http-proxy', 'socks-proxy'),
                             "opens a port or reaches a service of the cell; an exit is a plain client"))
REFUSED.update({
    'script-security': "is set by pic.connectivity (2, for its own up hook only)",
    'setenv': "changes the environment of pic.connectivity's up hook",
    'setenv-safe': "changes the environment of pic.connectivity's up hook",
    'user': "the instance must keep root for pic.connectivity's hook", 'group': "the instance must keep root "
    "for pic.connectivity's hook",
    'daemon': "the instance runs in the foreground under the cell's supervisor",
    'inetd': "the instance runs in the foreground under the cell's supervisor",
    'config': "include files are not supported; put everything in ovpn_config (certificates inline)",
    'server': "a connection is an OpenVPN client", 'server-bridge': "a connection is an OpenVPN client",
    'mode': "a connection is an OpenVPN client", 'tls-server': "a connection is an OpenVPN client",
    'dev-node': "the device is created by pic.connectivity",
})
_TUN_RE = re.compile(r'tun[0-9]{0,4}')
_NAME_RE = re.compile(r'[a-z][a-z0-9-]{0,40}')


def _shown(name):
    """A directive name as an error may show it: never a line of key material."""
    return "'%s'" % name if _NAME_RE.fullmatch(name) else 'this line (not an OpenVPN directive)'


def _check_args(number, name, args, spec):
    least, most, kinds = spec
    if not least <= len(args) <= most:
        raise PicError("line %d: '%s' takes %s argument(s), not %d" % (
            number, name, least if least == most else '%d to %d' % (least, most), len(args)))
    for position, arg in enumerate(args):
        kind = kinds[min(position, len(kinds) - 1)]
        check = _KINDS[kind] if isinstance(kind, str) else kind
        if not check(arg):
            raise PicError("line %d: argument %d of '%s' is not valid here" % (number, position + 1, name))


def _check_directive(number, name, args, allowed):
    if name == '#':
        return
    if name in REFUSED:
        raise PicError("line %d: '%s' is not allowed: %s" % (number, name, REFUSED[name]))
    if name in INLINE:
        raise PicError("line %d: '%s' must be given inline (<%s> ... </%s>), not as a file of the cell"
                       % (number, name, name, name))
    if name in ('dev', 'dev-type') and len(args) == 1 and not _KINDS['tun'](args[0]) and args[0] != 'tun':
        raise PicError("line %d: '%s %s': only tun devices are supported (an exit is a layer-3 interface)"
                       % (number, name, args[0] if _NAME_RE.fullmatch(args[0]) else '...'))
    if name in WINDOWS_ONLY and not args:
        return
    if name not in allowed:
        raise PicError("line %d: %s is not a supported client directive%s" % (
            number, _shown(name), '' if allowed is ALLOWED else ' inside <connection>'))
    _check_args(number, name, args, allowed[name])


def _check_block(number, tag, block, inner):
    if tag not in INLINE:
        raise PicError("line %d: the inline block %s is not supported" % (
            number, '<%s>' % tag if _NAME_RE.fullmatch(tag) else 'on this line'))
    for offset, line in enumerate(block, 1):
        if not all(' ' <= char <= '~' or char in '\t\r' for char in line):
            raise PicError("line %d: the <%s> block holds a character other than printable ASCII"
                           % (number + offset, tag))
    if tag == 'connection':
        for inner_number, name, args, nested in inner:
            if nested is not None:
                raise PicError("line %d: no inline block inside <connection>" % inner_number)
            _check_directive(inner_number, name, args, CONNECTION)
        if [name for _n, name, _a, _b in inner].count('remote') != 1:
            raise PicError("line %d: a <connection> block holds exactly one 'remote'" % number)
    elif not ''.join(block).strip():
        raise PicError("line %d: the <%s> block is empty" % (number, tag))


def checked(text):
    """parse() of the text, every entry checked against the allow-list. Raises PicError."""
    entries = parse(text)
    for number, name, args, block in entries:
        if block is None:
            _check_directive(number, name, args, ALLOWED)
        else:
            _check_block(number, name, block, args)
    blocks = [number for number, name, _a, block in entries if block is not None and name == 'connection']
    loose = [number for number, name, _a, block in entries if block is None and name == 'remote']
    if blocks and loose:
        raise PicError("line %d: OpenVPN ignores 'remote' lines outside <connection> blocks when the file has "
                       "some (line %d): put every server in a <connection> block, or none" % (loose[0], blocks[0]))
    return entries


def remotes(entries):
    """The hosts of the ``remote`` lines of checked entries, in order."""
    out = []
    for _number, name, args, block in entries:
        if block is None and name == 'remote':
            out.append(args[0])
        elif block is not None and name == 'connection':
            out.extend(remotes(args))
    return out


def validate(config, field='config'):
    """Check an openvpn connection's ``ovpn_config``, ``username`` and
    ``password``. Returns the list of ``remote`` hosts. Raises PicError naming
    the field and the line (never a line's content: it may hold a key)."""
    text = config.get('ovpn_config')
    tfield = field + '.ovpn_config'
    if not isinstance(text, str) or not text.strip():
        raise PicError("an openvpn connection needs ovpn_config (the text of the .ovpn file)", tfield)
    username, password = config.get('username'), config.get('password')
    for key, value in (('username', username), ('password', password)):
        if value is not None and (not isinstance(value, str) or not value or _CONTROL.search(value)
                                  or '\n' in value or '\r' in value or '\t' in value):
            raise PicError("must be a non-empty string on one line, without control characters",
                           '%s.%s' % (field, key))
    if (username is None) != (password is None):
        raise PicError("username and password go together", field + ('.password' if password is None else '.username'))
    try:
        entries = checked(text)
        _render_entries(entries, username is not None)     # what render() will write must be readable
    except PicError as exc:
        raise PicError(exc.msg, tfield)
    prompts = [number for number, name, _a, block in entries if name == 'auth-user-pass' and block is None]
    if username is None and prompts:
        raise PicError("line %d: 'auth-user-pass' without a file needs username and password in the connection's "
                       "config (the instance cannot prompt)" % prompts[0], tfield)
    found = remotes(entries)
    if not found:
        raise PicError("the OpenVPN configuration has no 'remote' line (the server to connect to)", tfield)
    return found


# -- writing it back -----------------------------------------------------------------
_BARE_RE = re.compile(r'[A-Za-z0-9_.:/@=+,%!-]+')


def quote(word):
    """One word as OpenVPN's parse_line reads it back exactly (bare, or
    ``"..."`` with ``\\`` and ``"`` escaped). Raises ValueError on a control
    character or a word OpenVPN cannot hold."""
    if _CONTROL.search(word) or any(char in word for char in '\n\r\t') or len(word.encode('utf-8')) > 200:
        raise ValueError("an OpenVPN word holds no control character and at most 200 bytes")
    if _BARE_RE.fullmatch(word):
        return word
    return '"%s"' % word.replace('\\', '\\\\').replace('"', '\\"')


def _written_line(number, name, args):
    """A directive as ``render`` writes it back: each word quoted, the line no longer
    than OpenVPN reads (an argument of many quotes doubles when escaped, and
    OpenVPN refuses a longer line; an older one would read its end as a further line)."""
    try:
        line = ' '.join([name] + [quote(arg) for arg in args])
    except ValueError as exc:
        raise PicError("line %d: '%s' cannot be written back: %s" % (number, name, exc))
    if len(line.encode('utf-8')) > MAX_LINE:
        raise PicError("line %d: '%s' written back (its quotes and backslashes escaped) would be longer than %d "
                       "bytes, more than OpenVPN reads on one line" % (number, name, MAX_LINE))
    return line


def _render_entries(entries, credentials):
    out = []
    for number, name, args, block in entries:
        if name == '#':
            out.append(args[0])
        elif block is None:
            line = _written_line(number, name, args)
            if name in REPLACED or (name == 'auth-user-pass' and credentials):
                out.append('# replaced by pic.connectivity: ' + line)
            elif name in WINDOWS_ONLY:
                out.append('# left out by pic.connectivity (Windows only): ' + line)
            else:
                out.append(line)
        elif name == 'connection':
            out.extend(['<connection>'] + _render_entries(args, credentials) + ['</connection>'])
        else:
            out.extend(['<%s>' % name] + [line.rstrip('\r') for line in block] + ['</%s>' % name])
    return out


def render(text, credentials=False):
    """The user's file as the instance gets it: every accepted directive
    written back by ``quote`` (whole-line comments kept), inline blocks closed by a
    clean ``</tag>`` line; ``dev``, ``dev-type`` (and ``auth-user-pass``
    when ``credentials``) commented out, since the role writes its own. Raises PicError."""
    entries = checked(text)
    prompts = [number for number, name, _a, block in entries if name == 'auth-user-pass' and block is None]
    if not credentials and prompts:
        raise PicError("line %d: 'auth-user-pass' without a file needs username and password in the connection's "
                       "config" % prompts[0])
    return '\n'.join(_render_entries(entries, credentials)) + '\n'


# -- the up hook -----------------------------------------------------------------
def hook_plan(env, ifname):
    """The ``ip`` commands (argv lists, without ``ip``) the up hook runs for
    OpenVPN's environment ``env``. Raises PicError when ``env`` is not for
    ``ifname`` or carries no usable address."""
    dev = env.get('dev')
    if dev != ifname:
        raise PicError("OpenVPN's device is %r, but the connection's interface is %r" % (dev, ifname))
    script_type = env.get('script_type', 'up')
    if script_type != 'up':
        return []
    plan = [['link', 'set', 'dev', ifname, 'addrgenmode', 'none']]
    mtu = env.get('tun_mtu')
    if mtu:
        if not str(mtu).isdigit() or not 68 <= int(mtu) <= 65535:
            raise PicError("OpenVPN gave an invalid tun_mtu %r" % mtu)
        plan.append(['link', 'set', 'dev', ifname, 'mtu', str(int(mtu))])
    plan.append(['-4', 'addr', 'flush', 'dev', ifname])
    plan.append(['-6', 'addr', 'flush', 'dev', ifname, 'scope', 'global'])
    have = False
    for key, family, bits in (('ifconfig_local', '-4', 32), ('ifconfig_ipv6_local', '-6', 128)):
        value = env.get(key)
        if not value:
            continue
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise PicError("OpenVPN gave an invalid %s %r" % (key, value))
        if addr.max_prefixlen != bits:
            raise PicError("OpenVPN gave %s %r of the wrong family" % (key, value))
        plan.append([family, 'addr', 'replace', '%s/%d' % (addr, bits), 'dev', ifname, 'noprefixroute'])
        have = True
    if not have:
        raise PicError("OpenVPN gave no address for %s (neither ifconfig_local nor ifconfig_ipv6_local)" % ifname)
    plan.append(['link', 'set', 'dev', ifname, 'up'])
    return plan


def run_hook(registry, conn_id, env):
    """Carry out the up hook for connection ``conn_id``: returns the list of changes."""
    from .dataplane import Cell
    if env.get('script_type', 'up') != 'up':
        return []   # down: the kernel removes the device and the routes through it
    doc = registry.load()
    conn = doc['connections'].get(conn_id)
    if conn is None or conn['type'] != 'openvpn':
        raise PicError("no openvpn connection %r in %s" % (conn_id, registry.state_dir))
    plan = hook_plan(env, conn['interface'])
    if not plan:
        return []
    ip = shutil.which('ip') or '/sbin/ip'
    changes = []
    for argv in plan:
        proc = subprocess.run([ip] + argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PicError("ip %s failed: %s" % (' '.join(argv), proc.stderr.strip()))
        changes.append('ip ' + ' '.join(argv))
    rp_path = '/proc/sys/net/ipv4/conf/%s/rp_filter' % conn['interface']
    if os.path.exists(rp_path):
        with open(rp_path, 'w') as handle:
            handle.write('2\n')
    with registry:
        cell = Cell(registry)
        try:
            changes.extend(store_pushed_dns(registry, cell, conn_id, pushed_dns(env)))
            changes.extend(cell.heal(registry.load()))
        finally:
            cell.close()
    return changes


_FOREIGN_OPTION_RE = re.compile(r'foreign_option_[0-9]{1,4}')
_DNS_SERVER_RE = re.compile(r'dns_server_[0-9]{1,3}_address_[0-9]{1,3}')


def pushed_dns(env):
    """The DNS servers the server pushed, at most one per family, in push order:
    ``dhcp-option DNS``/``DNS6`` (``foreign_option_N``) and OpenVPN 2.6's
    ``dns server N address`` (``dns_server_N_address_M``). Whatever is not a
    plain unicast address is left out (its peers' DNS is then refused, never
    sent to the cell's resolver)."""
    from .validation import parse_address
    found = []
    keys = sorted((k for k in env if _FOREIGN_OPTION_RE.fullmatch(k)), key=lambda k: int(k.rsplit('_', 1)[1]))
    for key in keys:
        words = str(env[key]).split()
        if len(words) == 3 and words[0] == 'dhcp-option' and words[1] in ('DNS', 'DNS6'):
            found.append(words[2])
    found.extend(str(env[k]) for k in sorted(env) if _DNS_SERVER_RE.fullmatch(k))
    out = []
    for value in found:
        try:
            addr = parse_address(value, 'pushed DNS')
        except PicError:
            continue
        if all((':' in addr) != (':' in have) for have in out):
            out.append(addr)
    return out


def store_pushed_dns(registry, cell, conn_id, servers):
    """Keep the pushed DNS servers in the connection's record (``pushed_dns``,
    read by model.pin_dns) and, when they changed, put the nftables table
    that pins the peers' DNS to them in place. Runs under the registry lock."""
    from . import model
    from .nft import summary as nft_summary
    doc = registry.load()
    conn = doc['connections'].get(conn_id)
    if conn is None or list(conn.get('pushed_dns') or []) == servers:
        return []
    conn['pushed_dns'] = servers
    registry.save(doc)
    want = model.desired(doc, cell.facts(doc))
    if nft_summary(cell.nft.list_table()) != want.nft_summary():
        cell.nft.replace(want.render_nft())
    return ['pushed DNS of %s: %s' % (conn_id, ', '.join(servers) or 'none')]


# -- the instance, seen by the monitor ---------------------------------------------
def pid_path(state_dir, conn_id):
    return os.path.join(state_dir, 'openvpn', '%s.pid' % conn_id)


def _holds_tun(pid):
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == '/dev/net/tun':
                return True
    except OSError:
        return False
    return False


def orphaned_pid(state_dir, conn_id):
    """The pid of the connection's OpenVPN instance when it holds a tun device
    although the connection's interface is gone (deleted under it: OpenVPN
    then spins on the dead descriptor and never recovers by itself)."""
    try:
        with open(pid_path(state_dir, conn_id)) as handle:
            pid = int(handle.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except (IOError, OSError, ValueError):
        return None
    if not argv or not os.path.basename(argv[0]).startswith(b'openvpn'):
        return None
    return pid if _holds_tun(pid) else None


def restart_orphaned(state_dir, conn):
    """SIGHUP (full restart: a new device) the instance of ``conn`` when its
    interface was deleted under it. Returns a change line or None."""
    pid = orphaned_pid(state_dir, conn['id'])
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return None
    return 'restarted OpenVPN instance %d of %s: its interface %s was deleted' % (pid, conn['id'], conn['interface'])
