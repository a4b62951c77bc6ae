# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which allowed-DN patterns of libvirtd admit a server or QEMU certificate subject."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import re

# An RDN separator is a comma not escaped by a backslash (RFC 4514).
_RDN_SPLIT = re.compile(r'(?<!\\),')


def _orders(subject):
    """The subject in both orders libvirt/GnuTLS versions print: RFC 4514 and certificate order."""
    rdns = [part.strip() for part in _RDN_SPLIT.split(subject)]
    return [','.join(rdns), ','.join(reversed(rdns))]


def dn_pattern_conflicts(patterns, subjects):
    """One line for every pattern that matches a subject, in either order.

    libvirtd compares the client certificate's DN with tls_allowed_dn_list
    using shell-style wildcards, so the match is fnmatch, case-sensitive.
    """
    found = []
    for pattern in patterns or []:
        for subject in subjects or []:
            if not subject:
                continue
            for form in _orders('%s' % subject):
                if fnmatch.fnmatchcase(form, '%s' % pattern):
                    found.append("'%s' admits %s" % (pattern, form))
                    break
    return found


class FilterModule(object):
    def filters(self):
        return {'dn_pattern_conflicts': dn_pattern_conflicts}
