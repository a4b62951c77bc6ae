# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""802.1Q VLAN guest bridges: host access and the runtime state of links.

Plain Python (no Ansible import). ``Host`` runs commands and reads and writes
files on the managed host (unit tests replace it with a fake); ``Link`` and the
functions next to it read ``ip -d -j addr show`` and compare a guest network
with what the kernel runs.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import tempfile
import time

from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge import GUEST_PORT_KINDS


# --------------------------------------------------------------------------
# Runtime state
# --------------------------------------------------------------------------

class Link(object):
    """The parts of ``ip -d -j addr show`` this module looks at."""

    __slots__ = ('name', 'kind', 'vlan_id', 'vlan_protocol', 'lower', 'master', 'mtu', 'up',
                 'stp_state', 'forward_delay', 'addresses', 'stable_addresses')

    def __init__(self, data):
        info = data.get('linkinfo') or {}
        info_data = info.get('info_data') or {}
        self.name = data.get('ifname')
        self.kind = info.get('info_kind')
        self.vlan_id = info_data.get('id') if self.kind == 'vlan' else None
        self.vlan_protocol = info_data.get('protocol') if self.kind == 'vlan' else None
        self.lower = data.get('link')
        self.master = data.get('master')
        self.mtu = data.get('mtu')
        self.up = 'UP' in (data.get('flags') or [])
        self.stp_state = info_data.get('stp_state') if self.kind == 'bridge' else None
        # iproute2 prints the kernel's clock_t (centiseconds).
        fd = info_data.get('forward_delay') if self.kind == 'bridge' else None
        self.forward_delay = int(round(fd / 100.0)) if fd is not None else None
        addr_info = [a for a in data.get('addr_info') or [] if a.get('local')]
        self.addresses = ['%s/%s' % (a['local'], a.get('prefixlen')) for a in addr_info]
        # IPv6 privacy addresses come and go by themselves.
        self.stable_addresses = frozenset('%s/%s' % (a['local'], a.get('prefixlen')) for a in addr_info
                                          if not a.get('temporary'))


def parse_links(text):
    links = {}
    for item in json.loads(text or '[]'):
        if item.get('ifname'):
            links[item['ifname']] = Link(item)
    return links


def network_problems(net, links, sysctl_values):
    """What differs between the running state and the wanted network."""
    problems = []
    bridge = links.get(net['bridge'])
    port = links.get(net['port'])
    if bridge is None:
        return ['bridge %s does not exist' % net['bridge']]
    if bridge.kind != 'bridge':
        return ['%s exists but is a %s, not a bridge' % (net['bridge'], bridge.kind or 'physical interface')]
    if port is None:
        problems.append('VLAN interface %s does not exist' % net['port'])
    else:
        if port.kind != 'vlan' or port.vlan_id != net['vlan_id'] or port.lower != net['trunk']:
            problems.append('%s is not VLAN %d on %s (kind %s, id %s, on %s)'
                            % (net['port'], net['vlan_id'], net['trunk'], port.kind, port.vlan_id, port.lower))
        if port.master != net['bridge']:
            problems.append('%s is not a port of %s (master: %s)' % (net['port'], net['bridge'], port.master))
        if not port.up:
            problems.append('%s is down' % net['port'])
        if net.get('mtu') is not None and port.mtu != net['mtu']:
            problems.append('%s has MTU %s instead of %d' % (net['port'], port.mtu, net['mtu']))
    if not bridge.up:
        problems.append('bridge %s is down' % net['bridge'])
    if bool(bridge.stp_state) != net['stp']:
        problems.append('bridge %s has STP %s' % (net['bridge'], 'on' if bridge.stp_state else 'off'))
    if net.get('forward_delay') is not None and bridge.forward_delay != net['forward_delay']:
        problems.append('bridge %s has forward delay %ss instead of %ds'
                        % (net['bridge'], bridge.forward_delay, net['forward_delay']))
    if net.get('mtu') is not None and bridge.mtu != net['mtu']:
        problems.append('bridge %s has MTU %s instead of %d' % (net['bridge'], bridge.mtu, net['mtu']))
    if bridge.addresses:
        problems.append('bridge %s has host addresses %s' % (net['bridge'], ', '.join(bridge.addresses)))
    for iface, path, value in sysctl_values:
        if iface in (net['bridge'], net['port']) and value[1] != value[0]:
            problems.append('%s is %s instead of %s' % (path.replace('/', '.', 3), value[1], value[0]))
    return problems


def foreign_ports(net, links):
    """Ports of the bridge that are neither our VLAN port nor guest/test endpoints."""
    return sorted(name for name, link in links.items()
                  if link.master == net['bridge'] and name != net['port']
                  and link.kind not in GUEST_PORT_KINDS)


def guest_ports(net, links):
    return sorted(name for name, link in links.items()
                  if link.master == net['bridge'] and link.kind in GUEST_PORT_KINDS)


def parse_ifupdown_ifaces(text):
    """Interface names declared with ``iface NAME ...`` in an interfaces(5) file."""
    names = []
    for line in (text or '').splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == 'iface':
            names.append(words[1])
    return names


# --------------------------------------------------------------------------
# Host access (replaced by a fake in unit tests)
# --------------------------------------------------------------------------

class Host(object):
    """Commands and files on the managed host."""

    def __init__(self, run_command, sleep=time.sleep, monotonic=time.monotonic):
        self._run = run_command
        self.sleep = sleep
        self.monotonic = monotonic

    def run(self, argv):
        rc, out, err = self._run(argv)
        return rc, out, err

    def read(self, path):
        try:
            with open(path) as fh:
                return fh.read()
        except (IOError, OSError):
            return None

    def exists(self, path):
        return os.path.exists(path)

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except (IOError, OSError):
            return []

    def write(self, path, content):
        directory = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.secvirt-')
        try:
            with os.fdopen(fd, 'w') as fh:
                fh.write(content)
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def remove(self, path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def write_proc(self, path, value):
        with open(os.path.join('/proc/sys', path), 'w') as fh:
            fh.write(value)

    def read_proc(self, path):
        content = self.read(os.path.join('/proc/sys', path))
        return content.strip() if content is not None else None
