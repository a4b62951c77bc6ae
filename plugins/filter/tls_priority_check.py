# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: tls_priority_check
short_description: Find what is weak in a GnuTLS priority string
version_added: 0.1.0
author:
  - secvirt.kvm contributors (@secvirt)
description:
  - Reads a GnuTLS priority string (libvirt's C(tls_priority)) the way GnuTLS applies it, element after
    element, and returns what makes it weak. An empty list means nothing was found.
  - Protocol versions - SSL 3.0, TLS 1.0 and TLS 1.1 must end up disabled, and TLS 1.2 or TLS 1.3 enabled.
    Every level keyword except C(SUITEB128), C(SUITEB192) and C(NONE) still enables TLS 1.0 and 1.1 in
    GnuTLS 3.7 (Debian 12), and so does a system policy (C(@SYSTEM)) as far as this filter can tell, so the
    string has to pin the versions itself, for example C(NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2).
    C(+VERS-ALL) and C(+VERS-TLS-ALL) enable every version again.
  - Algorithms - C(+NULL), C(+ARCFOUR-*)/C(+RC4*), anything C(EXPORT), anonymous key exchange
    (C(+ANON-DH), C(+ANON-ECDH)), single DES (C(+DES-CBC)) and C(+RC2-40) are refused, and so is the
    C(LEGACY) level (SHA-1 signatures, 3DES, weak DH groups).
  - Flags - C(%UNSAFE_RENEGOTIATION), C(%DISABLE_SAFE_RENEGOTIATION), C(%VERIFY_ALLOW_BROKEN),
    C(%VERIFY_ALLOW_SIGN_WITH_MD5), C(%VERIFY_ALLOW_SIGN_RSA_MD5) and C(%PROFILE_VERY_WEAK) are refused.
  - Elements that are neither a level keyword nor start with C(+), C(-), C(!) or C(%) (GnuTLS refuses the
    whole string for them), whitespace and other characters GnuTLS does not use are reported too.
  - Keywords are compared case-insensitively, as GnuTLS does.
options:
  _input:
    description: The priority string.
    type: str
    required: true
'''

EXAMPLES = r'''
- name: Refuse a weak libvirt TLS priority string
  ansible.builtin.assert:
    that:
      - priority | secvirt.kvm.tls_priority_check | length == 0
    fail_msg: "{{ priority | secvirt.kvm.tls_priority_check | join('; ') }}"
  vars:
    priority: "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

# => ["enables TLS1.0, TLS1.1 (the level keyword still includes them: pin the versions with
#      -VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2)"]
- name: Show why plain NORMAL is refused
  ansible.builtin.debug:
    msg: "{{ 'NORMAL' | secvirt.kvm.tls_priority_check }}"
'''

RETURN = r'''
_value:
  description: One message per weakness; empty when none was found.
  type: list
  elements: str
'''

import re

from ansible.module_utils.six import string_types

ALL_VERSIONS = ('SSL3.0', 'TLS1.0', 'TLS1.1', 'TLS1.2', 'TLS1.3')
OLD_VERSIONS = ('SSL3.0', 'TLS1.0', 'TLS1.1')
MODERN_VERSIONS = ('TLS1.2', 'TLS1.3')
# What a level keyword enables before any +/- element (GnuTLS 3.7 lib/priority.c;
# SSL 3.0 is compiled out of Debian's GnuTLS and not in any level).
_LEVEL_VERSIONS = ('TLS1.0', 'TLS1.1', 'TLS1.2', 'TLS1.3')
LEVELS = {
    'NORMAL': _LEVEL_VERSIONS, 'PFS': _LEVEL_VERSIONS, 'PERFORMANCE': _LEVEL_VERSIONS,
    'SECURE': _LEVEL_VERSIONS, 'SECURE128': _LEVEL_VERSIONS, 'SECURE192': _LEVEL_VERSIONS,
    'SECURE256': _LEVEL_VERSIONS, 'LEGACY': _LEVEL_VERSIONS,
    'SUITEB128': ('TLS1.2',), 'SUITEB192': ('TLS1.2',), 'NONE': (),
}
WEAK_FLAGS = ('UNSAFE_RENEGOTIATION', 'DISABLE_SAFE_RENEGOTIATION', 'VERIFY_ALLOW_BROKEN',
              'VERIFY_ALLOW_SIGN_WITH_MD5', 'VERIFY_ALLOW_SIGN_RSA_MD5', 'PROFILE_VERY_WEAK')
_CHARS = re.compile(r'^[A-Za-z0-9@%+!:._,=-]+\Z')


def _weak_algorithm(name):
    if 'EXPORT' in name:
        return 'export-grade'
    if name == 'NULL':
        return 'no encryption (NULL)'
    if name.startswith('ARCFOUR') or name.startswith('RC4'):
        return 'RC4'
    if name.startswith('ANON-'):
        return 'anonymous key exchange (no server authentication)'
    if name in ('DES-CBC', 'RC2-40', 'RC2-40-CBC'):
        return 'broken cipher'
    return None


def tls_priority_check(priority):
    """Weaknesses of a GnuTLS priority string, as messages (empty list: none found)."""
    if not isinstance(priority, string_types) or not priority.strip():
        return ['the priority string must be a non-empty string']
    if not _CHARS.match(priority):
        return ['the priority string contains whitespace, a newline or other characters GnuTLS does not use']
    problems = []
    elements = priority.upper().split(':')
    first = elements[0]
    if first in LEVELS:
        versions = set(LEVELS[first])
        rest = elements[1:]
    elif first.startswith('@'):
        # a system-wide policy: its versions are not known here, assume the widest
        versions = set(_LEVEL_VERSIONS)
        rest = elements[1:]
    else:
        versions = set()
        rest = elements
    if first == 'LEGACY' or 'LEGACY' in rest:
        problems.append('the LEGACY level enables weak algorithms (SHA-1 signatures, 3DES, weak DH groups); '
                        'start from NORMAL, PFS or SECURE256 instead')
    for element in rest:
        if element == '' or element in LEVELS:
            if element in ('SUITEB128', 'SUITEB192'):
                versions.add('TLS1.2')
            continue
        sign, name = element[0], element[1:]
        if sign in '+-!':
            enable = sign == '+'
            if name in ('VERS-ALL', 'VERS-TLS-ALL'):
                versions = set(ALL_VERSIONS) if enable else set()
            elif name.startswith('VERS-') and name[5:] in ALL_VERSIONS:
                if enable:
                    versions.add(name[5:])
                else:
                    versions.discard(name[5:])
            elif enable and _weak_algorithm(name):
                problems.append("'%s' enables %s" % (element, _weak_algorithm(name)))
        elif sign == '%':
            if name in WEAK_FLAGS:
                problems.append("'%s' weakens the handshake or certificate checks" % element)
        elif 'EXPORT' in element:
            problems.append("'%s' asks for export-grade cryptography" % element)
        else:
            problems.append("'%s' is neither a level keyword nor a +, -, ! or %% element (GnuTLS refuses the "
                            "whole string)" % element)
    old = [version for version in OLD_VERSIONS if version in versions]
    if old:
        problems.append('enables %s (level keywords and VERS-ALL still include them: pin the versions with '
                        '-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2)' % ', '.join(old))
    if not versions.intersection(MODERN_VERSIONS):
        problems.append('leaves no TLS version enabled: add +VERS-TLS1.3 and/or +VERS-TLS1.2')
    return problems


class FilterModule(object):
    def filters(self):
        return {'tls_priority_check': tls_priority_check}
