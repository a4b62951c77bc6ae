# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare rendered audit rules with the kernel (``auditctl -l`` / ``-s``).

``canonical()`` parses a rule line, in our spelling (``audit_rules``) or in
``auditctl -l``'s, into a comparable form, so ``compare_loaded()`` can tell
whether the kernel runs exactly the rules of the file.

Plain Python, no Ansible import: unit tests call it directly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pwd
import re
import shlex

from ansible_collections.secvirt.kvm.plugins.module_utils.audit_rules import _clean_path, normalize_perm


UID_FIELDS = frozenset(['uid', 'euid', 'suid', 'fsuid', 'auid', 'ouid', 'obj_uid'])


def _uid_of(name):
    if re.match(r'^-?[0-9]+$', str(name)):
        return str(name)
    try:
        return str(pwd.getpwnam(name).pw_uid)
    except KeyError:
        return str(name)


FIELD_RE = re.compile(r'^([A-Za-z_0-9]+)(!=|>=|<=|=|>|<|&=|&)(.*)$')


def canonical(line, uid_of=_uid_of):
    """Parse one rule line into a hashable canonical form, or None.

    Both our spelling (``-a always,exit -F dir=/x -F perm=wa -F key=k``) and
    ``auditctl -l``'s (``-w /x -p wa -k k``, ``-S all`` added, uids as
    numbers) give the same result. ``auditctl -l`` of audit 3.0 prints an
    ``exe!=`` field as ``exe=`` (the kernel does honour the ``!=``), so the
    operator of ``exe`` is not compared; we never emit ``exe!=`` ourselves.
    Path and dir are compared as one kind because ``-w`` hides which it was.
    """
    line = line.strip()
    if not line or line.startswith('#'):
        return None
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    if not words or words[0] not in ('-a', '-A', '-w'):
        return None
    action = listname = None
    fields = []
    syscalls = set()
    watch = None
    i = 0
    while i < len(words):
        w = words[i]
        arg = words[i + 1] if i + 1 < len(words) else ''
        if w in ('-a', '-A'):
            parts = arg.split(',')
            for part in parts:
                if part in ('always', 'never'):
                    action = part
                else:
                    listname = part
            i += 2
        elif w == '-w':
            watch = _clean_path(arg)
            action, listname = 'always', 'exit'
            i += 2
        elif w == '-p':
            fields.append(('perm', '=', normalize_perm(arg)))
            i += 2
        elif w == '-k':
            fields.append(('key', '=', arg))
            i += 2
        elif w == '-S':
            for sc in arg.split(','):
                syscalls.add(sc)
            i += 2
        elif w == '-F':
            m = FIELD_RE.match(arg)
            if not m:
                return None
            name, op, value = m.groups()
            if name in ('path', 'dir'):
                name, value = 'path', _clean_path(value)
            elif name == 'perm':
                value = normalize_perm(value)
            elif name in UID_FIELDS:
                value = uid_of(value)
            if name == 'exe' and op == '!=':
                op = '='
            fields.append((name, op, value))
            i += 2
        else:
            i += 1
    if watch is not None:
        fields.append(('path', '=', watch))
    if not syscalls or syscalls == set(['all']):
        syscalls = frozenset(['all'])
    return (listname or 'exit', action or 'always', frozenset(syscalls), tuple(sorted(fields)))


def key_of(canon):
    for name, _op, value in canon[3]:
        if name == 'key':
            return value
    return None


def compare_loaded(expected_lines, listed_text, managed_keys, uid_of=_uid_of):
    """Compare rendered rules with ``auditctl -l`` output.

    ``missing``: rendered rules the kernel does not have. ``unexpected``:
    rules the kernel has with one of ``managed_keys`` (any group of the
    catalogue, enabled or not) that the file does not contain, e.g. a group
    switched off but not yet reloaded. ``never`` rules have no key; they are
    only checked for presence.
    """
    expected = {}
    for line in expected_lines:
        c = canonical(line, uid_of)
        if c is not None:
            expected.setdefault(c, line)
    loaded = {}
    for line in (listed_text or '').splitlines():
        c = canonical(line, uid_of)
        if c is not None:
            loaded.setdefault(c, line.strip())
    missing = [line for c, line in expected.items() if c not in loaded]
    managed = set(managed_keys or [])
    unexpected = [line for c, line in loaded.items()
                  if c not in expected and key_of(c) in managed]
    return {'in_sync': not missing and not unexpected, 'missing': missing, 'unexpected': unexpected}


def parse_status(text):
    """``auditctl -s`` output as a dict (numbers as int)."""
    status = {}
    for line in (text or '').splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        name, value = parts
        if re.match(r'^-?[0-9]+$', value):
            status[name] = int(value)
        else:
            status[name] = value
    return status
