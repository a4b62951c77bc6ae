# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse and edit libvirt-style configuration files key by key.

libvirtd.conf, virtproxyd.conf, qemu.conf, libvirt.conf and friends all use
the grammar of libvirt's ``virconf.c``::

    # comment
    key = "string"          # or 'string' or \"\"\"multi-line string\"\"\"
    key = 1                 # integers, optionally signed
    key = [ "a", "b", ]     # lists of strings/integers, may span lines

This module edits such files in place: settings the caller does not name keep
their text (comments, ordering, formatting) byte for byte; a changed key is
rewritten where it stands; a new key is inserted right after its commented-out
example (``#key = ...``) when the stock file has one, otherwise appended.
The result is parsed again before anyone writes it, so a syntax error never
reaches the daemon.

Plain Python, no Ansible import: unit tests call it directly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

KEY_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_.]*')
INT_RE = re.compile(r'[+-]?[0-9]+')
# Keys whose values are secrets (vnc_password, spice_password, ..._secret,
# anything with passwd): their values are masked wherever they are shown.
SECRET_KEY_RE = re.compile(r'(?:^|_)(?:password|secret)$|passwd', re.I)
SECRET_MASK = '********'
# what a changed secret shows in the "after" side of a diff, so that the
# line still differs from "before"
SECRET_MASK_CHANGED = '******** (changed)'
_COMMENTED_RE = re.compile(r'^([ \t]*#[ \t]*([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*).*$', re.M)
_ASSIGNMENT_RE = re.compile(r'^([ \t]*#?[ \t]*([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*).*$', re.M)


class ConfError(ValueError):
    """The file or a requested value is not valid libvirt config syntax."""


class Setting(object):
    """One ``key = value`` statement found in the text."""

    def __init__(self, key, value, start, value_end, line_start, line_end):
        self.key = key
        self.value = value
        self.start = start            # offset of the key
        self.value_end = value_end    # offset just after the value
        self.line_start = line_start  # offset of the start of the key's line
        self.line_end = line_end      # offset after the newline ending the statement

    def __repr__(self):
        return 'Setting(%r, %r)' % (self.key, self.value)


class _Scanner(object):
    def __init__(self, text):
        self.text = text
        self.pos = 0
        self.len = len(text)

    def error(self, msg, pos=None):
        pos = self.pos if pos is None else pos
        line = self.text.count('\n', 0, pos) + 1
        col = pos - (self.text.rfind('\n', 0, pos) + 1) + 1
        raise ConfError('line %d, column %d: %s' % (line, col, msg))

    def peek(self):
        return self.text[self.pos] if self.pos < self.len else ''

    def skip_blanks(self):
        """Skip spaces and tabs (not newlines)."""
        while self.pos < self.len and self.text[self.pos] in ' \t\r':
            self.pos += 1

    def skip_comment(self):
        if self.peek() == '#':
            nl = self.text.find('\n', self.pos)
            self.pos = self.len if nl < 0 else nl

    def skip_blanks_newlines_comments(self):
        while True:
            self.skip_blanks()
            if self.peek() == '#':
                self.skip_comment()
            elif self.peek() == '\n':
                self.pos += 1
            else:
                return

    def parse_string(self):
        text = self.text
        if text.startswith('"""', self.pos):
            end = text.find('"""', self.pos + 3)
            if end < 0:
                self.error('unterminated triple-quoted string')
            value = text[self.pos + 3:end]
            self.pos = end + 3
            return value
        quote = text[self.pos]
        start = self.pos + 1
        end = start
        while end < self.len and text[end] != quote:
            if text[end] == '\n':
                self.error('newline inside a string', end)
            end += 1
        if end >= self.len:
            self.error('unterminated string')
        self.pos = end + 1
        return text[start:end]

    def parse_scalar(self):
        char = self.peek()
        if char in ('"', "'"):
            return self.parse_string()
        match = INT_RE.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return int(match.group(0))
        self.error('expected a string, an integer or a list')

    def parse_value(self):
        if self.peek() != '[':
            return self.parse_scalar()
        self.pos += 1
        values = []
        while True:
            self.skip_blanks_newlines_comments()
            if self.peek() == ']':
                self.pos += 1
                return values
            if self.peek() == '[':
                self.error('nested lists are not allowed')
            values.append(self.parse_scalar())
            self.skip_blanks_newlines_comments()
            if self.peek() == ',':
                self.pos += 1
            elif self.peek() != ']':
                self.error("expected ',' or ']' in a list")


def parse(text):
    """Return the list of :class:`Setting` in ``text``; raise ConfError."""
    scanner = _Scanner(text)
    settings = []
    while True:
        scanner.skip_blanks_newlines_comments()
        if scanner.pos >= scanner.len:
            return settings
        line_start = text.rfind('\n', 0, scanner.pos) + 1
        if text[line_start:scanner.pos].strip():
            scanner.error('only one setting per line is supported')
        match = KEY_RE.match(text, scanner.pos)
        if not match:
            scanner.error('expected a setting name')
        start = scanner.pos
        key = match.group(0)
        scanner.pos = match.end()
        scanner.skip_blanks()
        if scanner.peek() != '=':
            scanner.error("expected '=' after %s" % key)
        scanner.pos += 1
        scanner.skip_blanks()
        value = scanner.parse_value()
        value_end = scanner.pos
        scanner.skip_blanks()
        scanner.skip_comment()
        if scanner.peek() not in ('\n', ''):
            scanner.error('unexpected text after the value of %s' % key)
        if scanner.peek() == '\n':
            scanner.pos += 1
        settings.append(Setting(key, value, start, value_end, line_start, scanner.pos))


def values(text):
    """Effective values: libvirt uses the first definition of a key."""
    result = {}
    for setting in parse(text):
        result.setdefault(setting.key, setting.value)
    return result


def normalize_value(key, value):
    """Turn a YAML-ish value into the libvirt type; raise ConfError."""
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != int(value):
            raise ConfError('%s: libvirt has no floating point values' % key)
        return int(value)
    if isinstance(value, str):
        if '\n' in value:
            raise ConfError('%s: strings must not contain a newline' % key)
        if '"' in value and "'" in value:
            raise ConfError('%s: a string cannot contain both quote characters' % key)
        return value
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, (list, tuple, dict)):
                raise ConfError('%s: nested lists are not allowed' % key)
            out.append(normalize_value(key, item))
        return out
    raise ConfError('%s: unsupported value type %s' % (key, type(value).__name__))


def render_value(value):
    if isinstance(value, list):
        return '[' + ', '.join(render_value(v) for v in value) + ']'
    if isinstance(value, int):
        return str(value)
    quote = "'" if '"' in value else '"'
    return quote + value + quote


def render_setting(key, value):
    return '%s = %s' % (key, render_value(value))


def is_secret_key(key):
    """Whether ``key`` holds a secret (*_password, *_secret, *passwd*, any case)."""
    return bool(SECRET_KEY_RE.search(key))


def mask_value(key, value, mask=SECRET_MASK):
    """``value``, or the mask (one per list item) when ``key`` holds a secret."""
    if not is_secret_key(key):
        return value
    if isinstance(value, list):
        return [mask for _item in value]
    return mask


def mask_text(text, changed=()):
    """``text`` with the values of secret keys masked, for diffs and messages.

    Settings and commented-out examples of secret keys show SECRET_MASK; keys
    in ``changed`` show SECRET_MASK_CHANGED instead, so that a diff of two
    masked texts still shows which secret changed. Never write the result.
    """
    try:
        settings = parse(text)
    except ConfError:
        # text that does not parse: mask whatever follows "key =" on any line
        return _ASSIGNMENT_RE.sub(_mask_assignment, text)
    result = text
    for setting in reversed(settings):  # offsets stay valid from the end
        if is_secret_key(setting.key):
            mask = SECRET_MASK_CHANGED if setting.key in changed else SECRET_MASK
            value = setting.value if isinstance(setting.value, list) else ''
            result = (result[:setting.start] + render_setting(setting.key, mask_value(setting.key, value, mask))
                      + result[setting.value_end:])
    return _COMMENTED_RE.sub(_mask_assignment, result)


def _mask_assignment(match):
    if not is_secret_key(match.group(2)):
        return match.group(0)
    return match.group(1) + render_value(SECRET_MASK)


def check_types(settings, types):
    """Check ``settings`` (normalised) against ``types`` {key: 'str'|'int'|'list'}."""
    errors = []
    names = {'str': str, 'int': int, 'list': list}
    for key, value in settings.items():
        wanted = types.get(key)
        if wanted and not isinstance(value, names[wanted]):
            errors.append('%s must be of type %s, got %r' % (key, wanted, mask_value(key, value)))
    if errors:
        raise ConfError('; '.join(errors))


def _example_line_end(text, key):
    """End offset of the last ``#key = ...`` commented example line, or None."""
    pattern = re.compile(r'^[ \t]*#[ \t]*' + re.escape(key) + r'[ \t]*=.*$', re.M)
    found = None
    for match in pattern.finditer(text):
        found = match.end()
    if found is None:
        return None
    return found + 1 if found < len(text) else found


def edit(text, settings=None, unset=None, header='# Settings below are managed by secvirt.kvm'):
    """Return ``text`` with ``settings`` set and ``unset`` keys removed.

    ``settings`` maps key -> value (already normalised or YAML-ish).
    The first definition of a key is rewritten in place and any later
    duplicate (which libvirt silently ignores) is removed, so the file says
    what the daemon does. Raises ConfError when ``text`` or the result does
    not parse.
    """
    settings = dict(settings or {})
    unset = list(unset or [])
    for key in list(settings) + unset:
        if not KEY_RE.fullmatch(key):
            raise ConfError('%r is not a valid setting name' % key)
    both = set(settings) & set(unset)
    if both:
        raise ConfError('keys both set and unset: %s' % ', '.join(sorted(both)))
    wanted = dict((k, normalize_value(k, v)) for k, v in settings.items())
    current = parse(text)

    # (start, end, replacement) edits on the original text, applied backwards
    edits = []
    seen = set()
    for setting in current:
        if setting.key in unset or setting.key in seen:
            edits.append((setting.line_start, setting.line_end, ''))
            continue
        if setting.key in wanted:
            seen.add(setting.key)
            if setting.value != wanted[setting.key]:
                edits.append((setting.start, setting.value_end,
                              render_setting(setting.key, wanted[setting.key])))
    appended = []
    for key in settings:  # caller's order
        if key in seen:
            continue
        line = render_setting(key, wanted[key]) + '\n'
        anchor = _example_line_end(text, key)
        if anchor is None:
            appended.append(line)
        else:
            if anchor == len(text) and not text.endswith('\n'):
                line = '\n' + line
            edits.append((anchor, anchor, line))

    result = text
    # stable: later offsets first; insertions at the same offset keep order
    for start, end, repl in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        result = result[:start] + repl + result[end:]
    if appended:
        if result and not result.endswith('\n'):
            result += '\n'
        if header and header not in result:
            result += ('\n' if result else '') + header + '\n'
        result += ''.join(appended)

    # the safety net: never hand back something libvirt would reject, and
    # prove that the file now says what was asked
    try:
        effective = values(result)
    except ConfError as exc:
        raise ConfError('edited file would not parse (%s); nothing written' % exc)
    for key, value in wanted.items():
        if effective.get(key) != value:
            raise ConfError('internal error: %s did not take effect' % key)
    for key in unset:
        if key in effective:
            raise ConfError('internal error: %s still set' % key)
    return result


# Types of the keys that libvirtd.conf / virtproxyd.conf document, so that a
# typo such as listen_tls: "1" fails before the daemon refuses to start.
DAEMON_KEY_TYPES = {
    'listen_tls': 'int', 'listen_tcp': 'int', 'tls_port': 'str', 'tcp_port': 'str',
    'listen_addr': 'str', 'unix_sock_group': 'str', 'unix_sock_ro_perms': 'str',
    'unix_sock_rw_perms': 'str', 'unix_sock_admin_perms': 'str', 'unix_sock_dir': 'str',
    'auth_unix_ro': 'str', 'auth_unix_rw': 'str', 'auth_tcp': 'str', 'auth_tls': 'str',
    'access_drivers': 'list', 'key_file': 'str', 'cert_file': 'str', 'ca_file': 'str',
    'crl_file': 'str', 'tls_no_sanity_certificate': 'int', 'tls_no_verify_certificate': 'int',
    'tls_allowed_dn_list': 'list', 'tls_priority': 'str', 'sasl_allowed_username_list': 'list',
    'max_clients': 'int', 'max_queued_clients': 'int', 'max_anonymous_clients': 'int',
    'min_workers': 'int', 'max_workers': 'int', 'prio_workers': 'int', 'max_client_requests': 'int',
    'keepalive_interval': 'int', 'keepalive_count': 'int', 'log_level': 'int',
    'log_filters': 'str', 'log_outputs': 'str', 'admin_max_clients': 'int',
    'audit_level': 'int', 'audit_logging': 'int',
}
AUTH_CHOICES = ('none', 'sasl', 'polkit')
