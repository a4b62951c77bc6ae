# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Debian packages are installed, read from dpkg's database.

The apt module answers the same question by loading the whole apt cache:
5.9 s of CPU on a test VM under TCG (`time python3 -c "import apt;
apt.Cache()"`), against 0.2 s for `dpkg-query -W` on the same VM
(benchmarks/deb_packages.py). A role that re-runs with nothing to install
pays only the dpkg-query.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

# The options of secvirt.kvm.deb_packages, shared by the module (which
# only reads dpkg) and its action plugin (which calls apt)
ARGUMENT_SPEC = dict(
    name=dict(type='list', elements='str', required=True),
    install_recommends=dict(type='bool', default=False),
    cache_valid_time=dict(type='int', default=86400),
)

# what `dpkg-query -W -f` prints per package: name, architecture, the
# three-letter status (desired, current, error) and the version
QUERY_FORMAT = '${Package}\\t${Architecture}\\t${db:Status-Abbrev}\\t${Version}\\n'

# A plain package name, optionally with an architecture. Anything else
# (name=version, name>=version, globs, a .deb path) is left to apt, which
# decides what it means.
_PLAIN = re.compile(r'^(?P<name>[a-z0-9][a-z0-9+.-]+)(?::(?P<arch>[a-z0-9-]+))?$')


def queryable(names):
    """Split ``names`` into (plain names dpkg-query can answer for, the rest)."""
    plain, other = [], []
    for name in names:
        (plain if _PLAIN.match(name) else other).append(name)
    return plain, other


def parse_query(output):
    """Parse dpkg-query's lines into {(package, arch): (status, version)}."""
    found = {}
    for line in output.splitlines():
        fields = line.split('\t')
        if len(fields) != 4:
            continue
        package, arch, status, version = fields
        found[(package, arch)] = (status, version)
    return found


def is_installed(status):
    """dpkg's abbreviated status: the second letter 'i' is "installed", a
    third letter other than blank is an error flag (reinstall required)."""
    return len(status) >= 2 and status[1] == 'i' and status[2:].strip() == ''


def installed_versions(names, output):
    """Return ({name: version} for the installed names, [names not installed]).

    A name without an architecture counts as installed when any
    architecture of it is (the native one is what apt would pick, and apt
    would not install a second one).
    """
    found = parse_query(output)
    installed, missing = {}, []
    for name in names:
        match = _PLAIN.match(name)
        if not match:
            missing.append(name)
            continue
        versions = [version for (package, arch), (status, version) in sorted(found.items())
                    if package == match.group('name') and is_installed(status)
                    and match.group('arch') in (None, arch)]
        if versions:
            installed[name] = versions[0]
        else:
            missing.append(name)
    return installed, missing
