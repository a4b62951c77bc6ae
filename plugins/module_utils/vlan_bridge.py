# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""802.1Q VLAN guest bridges: input validation and rendering of the wanted files.

Plain Python (no Ansible import) and without side effects: everything here is
decided from the input (and, for the files shared by the networks of a trunk,
from the text of the files found on the host), so unit tests call it directly.

One guest network is one VLAN subinterface ``<trunk>.<vlan_id>`` enslaved to
one bridge that carries no host address. Persistence goes through the host's
own network stack (ifupdown's ``/etc/network/interfaces.d`` or
systemd-networkd's ``/etc/systemd/network``) plus sysctl.d files; this module
renders them. ``vlan_bridge_host`` reads the host, ``vlan_bridge_apply`` plans
and applies the change.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

MARKER = '# Managed by secvirt.kvm (vlan_bridges). Local changes are overwritten.'
IFUPDOWN_DIR = '/etc/network/interfaces.d'
IFUPDOWN_MAIN = '/etc/network/interfaces'
IFUPDOWN_PREFIX = 'secvirt-vlan-'
NETWORKD_DIR = '/etc/systemd/network'
NETWORKD_PREFIX = '60-secvirt-vlan-'
SYSCTL_DIR = '/etc/sysctl.d'
SYSCTL_PREFIX = '60-secvirt-vlan-'
# Trunk files are shared by the networks of a trunk. Bridge names cannot
# contain a dot, so "<bridge>.port.*" never collides with another bridge.
TRUNK_PREFIX = '60-secvirt-trunk-'

BACKENDS = ('ifupdown', 'networkd')
# Linux IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15
# Bridge names end up in file names that run-parts (source-directory) and
# networkd accept, so keep to the portable set.
BRIDGE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$')
TRUNK_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$')
NETWORK_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
# ARP requests asking for any host address are ignored on guest bridges and
# isolated trunks (arp_ignore=8: "do not reply for all local addresses").
ARP_IGNORE_ALL = '8'
# Kinds of bridge ports that are guests' (libvirt taps) or test endpoints; any
# other port (a physical NIC, another VLAN, a bond) would mix networks.
GUEST_PORT_KINDS = ('tun', 'veth')


class VlanBridgeError(Exception):
    """A failure with a message meant for the operator."""

    def __init__(self, msg, **details):
        super(VlanBridgeError, self).__init__(msg)
        self.msg = msg
        self.details = details


# --------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------

def normalize_networks(networks):
    """Fill defaults and derive the port name; keeps the input order."""
    result = []
    for raw in networks or []:
        net = dict(raw)
        net.setdefault('state', 'present')
        net.setdefault('stp', True)
        net.setdefault('forward_delay', None)
        net.setdefault('mtu', None)
        if net.get('bridge') in (None, '') and net.get('vlan_id') is not None:
            net['bridge'] = 'br%s' % net['vlan_id']
        if net.get('trunk') and net.get('vlan_id') is not None:
            net['port'] = '%s.%s' % (net['trunk'], net['vlan_id'])
        else:
            net['port'] = None
        result.append(net)
    return result


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def validate(networks, management_interface):
    """Return the list of problems in the wanted networks (empty when fine).

    Works on normalized networks. Everything here is decided from the input
    alone; what depends on the host is checked by :func:`preflight`.
    """
    errors = []
    mgmt = management_interface
    if not mgmt:
        errors.append('the management interface must be given: it is the one link this role never touches')
    seen_names = {}
    seen_bridges = {}
    present_vlans = {}
    for index, net in enumerate(networks):
        label = 'networks[%d] (%s)' % (index, net.get('name') or 'unnamed')
        name = net.get('name')
        if not name or not NETWORK_NAME_RE.match(str(name)):
            errors.append('%s: name must be letters, digits, ".", "_" or "-"' % label)
        elif name in seen_names:
            errors.append('%s: network name %s is used twice' % (label, name))
        else:
            seen_names[name] = index
        if net.get('state') not in ('present', 'absent'):
            errors.append('%s: state must be present or absent' % label)
        vlan = net.get('vlan_id')
        if not _is_int(vlan) or not 1 <= vlan <= 4094:
            errors.append('%s: vlan_id %r is not a usable 802.1Q VLAN id (1-4094; 0 and 4095 are reserved)'
                          % (label, vlan))
            vlan = None
        trunk = net.get('trunk')
        if not trunk or not TRUNK_NAME_RE.match(str(trunk)):
            errors.append('%s: trunk %r is not a valid interface name' % (label, trunk))
            trunk = None
        elif mgmt and trunk == mgmt:
            errors.append('%s: trunk %s is the management interface; guest VLANs must use a separate NIC'
                          % (label, trunk))
        bridge = net.get('bridge')
        if not bridge or not BRIDGE_NAME_RE.match(str(bridge)):
            errors.append('%s: bridge name %r must be 1-%d letters, digits, "_" or "-" (Linux limit)'
                          % (label, bridge, IFNAME_MAX))
            bridge = None
        elif bridge in seen_bridges:
            errors.append('%s: bridge %s is already used by networks[%d]; one bridge carries exactly one VLAN'
                          % (label, bridge, seen_bridges[bridge]))
        else:
            seen_bridges[bridge] = index
        if bridge and mgmt and bridge == mgmt:
            errors.append('%s: bridge %s is the management interface' % (label, bridge))
        if trunk and vlan is not None:
            port = '%s.%d' % (trunk, vlan)
            if len(port) > IFNAME_MAX:
                errors.append('%s: VLAN interface name %s is longer than %d characters (Linux limit)'
                              % (label, port, IFNAME_MAX))
            if mgmt and port == mgmt:
                errors.append('%s: VLAN interface %s is the management interface' % (label, port))
            if net.get('state') == 'present':
                key = (trunk, vlan)
                if key in present_vlans:
                    errors.append('%s: VLAN %d appears twice on trunk %s (also networks[%d]); '
                                  'never mix or repeat VLANs across bridges' % (label, vlan, trunk, present_vlans[key]))
                else:
                    present_vlans[key] = index
        if not isinstance(net.get('stp'), bool):
            errors.append('%s: stp must be true or false' % label)
        fd = net.get('forward_delay')
        if fd is not None:
            low = 2 if net.get('stp') else 0
            if not _is_int(fd) or not low <= fd <= 30:
                errors.append('%s: forward_delay must be %d-30 seconds%s' % (label, low, ' with STP on' if low else ''))
        mtu = net.get('mtu')
        if mtu is not None and (not _is_int(mtu) or not 68 <= mtu <= 65535):
            errors.append('%s: mtu must be 68-65535' % label)
        for key in ('address', 'addresses', 'ipv4', 'ipv6', 'ip', 'gateway', 'dhcp'):
            if net.get(key) not in (None, '', [], False):
                errors.append('%s: %s is not allowed: guest bridges carry no host IP address' % (label, key))
    # Names of every interface we create must not collide with each other.
    bridges = set(seen_bridges)
    for index, net in enumerate(networks):
        if net.get('port') and net['port'] in bridges:
            errors.append('networks[%d]: VLAN interface %s collides with a bridge name' % (index, net['port']))
        if net.get('trunk') and net['trunk'] in bridges:
            errors.append('networks[%d]: trunk %s is also a guest bridge' % (index, net['trunk']))
    return errors


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def _present(networks):
    return [n for n in networks if n['state'] == 'present']


def sysctl_path(bridge):
    return os.path.join(SYSCTL_DIR, '%s%s.conf' % (SYSCTL_PREFIX, bridge))


def trunk_sysctl_path(trunk):
    return os.path.join(SYSCTL_DIR, '%s%s.conf' % (TRUNK_PREFIX, trunk))


def trunk_network_path(trunk):
    return os.path.join(NETWORKD_DIR, '%s%s.network' % (TRUNK_PREFIX, trunk))


def bridge_paths(backend, bridge):
    """Every file that belongs to the guest network of ``bridge``."""
    if backend == 'ifupdown':
        paths = [os.path.join(IFUPDOWN_DIR, IFUPDOWN_PREFIX + bridge)]
    else:
        paths = [os.path.join(NETWORKD_DIR, '%s%s%s' % (NETWORKD_PREFIX, bridge, suffix))
                 for suffix in ('.netdev', '.network', '.port.netdev', '.port.network')]
    return paths + [sysctl_path(bridge)]


def render_ifupdown(net):
    lines = [
        MARKER,
        '# Guest network "%s": VLAN %d from trunk %s (port %s, created by'
        % (net['name'], net['vlan_id'], net['trunk'], net['port']),
        '# bridge-utils) into bridge %s. No address on purpose: the host takes no' % net['bridge'],
        '# part in guest networks (IPv6 and ARP are off for these interfaces in',
        '# %s).' % sysctl_path(net['bridge']),
        'auto %s' % net['bridge'],
        'iface %s inet manual' % net['bridge'],
        '    bridge_ports %s' % net['port'],
        '    bridge_stp %s' % ('on' if net['stp'] else 'off'),
    ]
    if net.get('forward_delay') is not None:
        lines.append('    bridge_fd %d' % net['forward_delay'])
    # Do not hold up boot waiting for STP to move the port to forwarding.
    lines.append('    bridge_maxwait 0')
    if net.get('mtu') is not None:
        lines.append('    mtu %d' % net['mtu'])
    return '\n'.join(lines) + '\n'


def _networkd_common(lines):
    lines += [
        '',
        '[Link]',
        'RequiredForOnline=no',
        '',
        '[Network]',
        'LinkLocalAddressing=no',
        'IPv6AcceptRA=no',
        'ConfigureWithoutCarrier=yes',
    ]


def render_networkd(net):
    """{path: content} of the four networkd files of one guest network."""
    base = os.path.join(NETWORKD_DIR, NETWORKD_PREFIX + net['bridge'])
    head = [MARKER, '# Guest network "%s": VLAN %d on %s into %s, no host address.'
            % (net['name'], net['vlan_id'], net['trunk'], net['bridge'])]
    bridge = head + ['[NetDev]', 'Name=%s' % net['bridge'], 'Kind=bridge']
    if net.get('mtu') is not None:
        bridge.append('MTUBytes=%d' % net['mtu'])
    bridge += ['', '[Bridge]', 'STP=%s' % ('yes' if net['stp'] else 'no')]
    if net.get('forward_delay') is not None:
        bridge.append('ForwardDelaySec=%d' % net['forward_delay'])

    bridge_net = head + ['[Match]', 'Name=%s' % net['bridge']]
    _networkd_common(bridge_net)

    vlan = head + ['[NetDev]', 'Name=%s' % net['port'], 'Kind=vlan']
    if net.get('mtu') is not None:
        vlan.append('MTUBytes=%d' % net['mtu'])
    vlan += ['', '[VLAN]', 'Id=%d' % net['vlan_id']]

    vlan_net = head + ['[Match]', 'Name=%s' % net['port']]
    _networkd_common(vlan_net)
    vlan_net += ['Bridge=%s' % net['bridge']]
    return {
        base + '.netdev': '\n'.join(bridge) + '\n',
        base + '.network': '\n'.join(bridge_net) + '\n',
        base + '.port.netdev': '\n'.join(vlan) + '\n',
        base + '.port.network': '\n'.join(vlan_net) + '\n',
    }


def _vlan_of(port):
    try:
        return int(port.rsplit('.', 1)[1])
    except (IndexError, ValueError):
        return 0


def render_networkd_trunk(trunk, ports):
    lines = [MARKER,
             '# Trunk %s: only tagged guest VLANs, no host address.' % trunk,
             '# networkd applies the first .network file that matches a link: no other',
             '# file may match %s.' % trunk,
             '[Match]', 'Name=%s' % trunk]
    _networkd_common(lines)
    lines += ['VLAN=%s' % port for port in sorted(ports, key=_vlan_of)]
    return '\n'.join(lines) + '\n'


def sysctl_settings(networks, isolate_trunks):
    """[(interface, path under /proc/sys, value)] for the present networks."""
    settings = []
    trunks = []
    for net in _present(networks):
        settings.extend(_bridge_sysctls(net))
        if isolate_trunks and net['trunk'] not in trunks:
            trunks.append(net['trunk'])
    for trunk in trunks:
        settings.extend(_trunk_sysctls(trunk))
    return settings


def _bridge_sysctls(net):
    return [(net['bridge'], 'net/ipv6/conf/%s/disable_ipv6' % net['bridge'], '1'),
            (net['bridge'], 'net/ipv4/conf/%s/arp_ignore' % net['bridge'], ARP_IGNORE_ALL),
            (net['port'], 'net/ipv6/conf/%s/disable_ipv6' % net['port'], '1')]


def _trunk_sysctls(trunk):
    return [(trunk, 'net/ipv6/conf/%s/disable_ipv6' % trunk, '1'),
            (trunk, 'net/ipv4/conf/%s/arp_ignore' % trunk, ARP_IGNORE_ALL)]


SYSCTL_HEADER = [
    MARKER,
    '# systemd-udevd applies these as each interface appears (99-systemd.rules',
    '# runs systemd-sysctl --prefix=/net/ipv6/conf/<name>), so they hold for links',
    '# created at boot or later. Slash-separated keys keep the dots of VLAN names.',
]


def render_sysctl(net):
    lines = SYSCTL_HEADER + ['# Guest network "%s": no host address on %s and %s.'
                             % (net['name'], net['bridge'], net['port'])]
    lines += ['%s = %s' % (path, value) for _iface, path, value in _bridge_sysctls(net)]
    return '\n'.join(lines) + '\n'


def render_trunk_sysctl(trunk):
    lines = SYSCTL_HEADER + ['# Trunk %s: the host takes no part in its untagged network either.' % trunk]
    lines += ['%s = %s' % (path, value) for _iface, path, value in _trunk_sysctls(trunk)]
    return '\n'.join(lines) + '\n'


def owned_file(backend, path):
    directory, base = os.path.split(path)
    if directory == SYSCTL_DIR:
        return base.startswith((SYSCTL_PREFIX, TRUNK_PREFIX))
    if backend == 'ifupdown':
        return directory == IFUPDOWN_DIR and base.startswith(IFUPDOWN_PREFIX)
    return directory == NETWORKD_DIR and base.startswith((NETWORKD_PREFIX, TRUNK_PREFIX))


def _ini_values(text, key):
    return [line.split('=', 1)[1].strip() for line in (text or '').splitlines()
            if line.strip().startswith(key + '=')]


# --------------------------------------------------------------------------
# Wanted files
# --------------------------------------------------------------------------

def _unlisted_ports(backend, networks, current):
    """{trunk: set(ports)} of guest networks configured on disk but not listed now."""
    listed = set(n['bridge'] for n in networks)
    result = {}
    if backend == 'ifupdown':
        for path, content in current.items():
            base = os.path.basename(path)
            if os.path.dirname(path) != IFUPDOWN_DIR or base[len(IFUPDOWN_PREFIX):] in listed:
                continue
            for line in (content or '').splitlines():
                words = line.split()
                if words and words[0] in ('bridge_ports', 'bridge-ports'):
                    for port in words[1:]:
                        if '.' in port:
                            result.setdefault(port.rsplit('.', 1)[0], set()).add(port)
        return result
    claimed = set(n['port'] for n in networks)
    for bridge in listed:
        path = os.path.join(NETWORKD_DIR, '%s%s.port.netdev' % (NETWORKD_PREFIX, bridge))
        claimed.update(_ini_values(current.get(path), 'Name'))
    for path, content in current.items():
        base = os.path.basename(path)
        if os.path.dirname(path) == NETWORKD_DIR and base.startswith(TRUNK_PREFIX):
            trunk = base[len(TRUNK_PREFIX):-len('.network')]
            ports = set(_ini_values(content, 'VLAN')) - claimed
            if ports:
                result.setdefault(trunk, set()).update(ports)
    return result


def wanted_files(backend, networks, current, isolate_trunks):
    """{path: content or None} for the files of the listed networks and of their trunks."""
    wanted = {}
    for net in networks:
        rendered = {}
        if net['state'] == 'present':
            if backend == 'ifupdown':
                rendered[bridge_paths(backend, net['bridge'])[0]] = render_ifupdown(net)
            else:
                rendered.update(render_networkd(net))
            rendered[sysctl_path(net['bridge'])] = render_sysctl(net)
        for path in bridge_paths(backend, net['bridge']):
            wanted[path] = rendered.get(path)
    # Trunk files hold what every network of the trunk needs, listed now
    # or not, so that leaving a network out of the list never changes it.
    users = _unlisted_ports(backend, networks, current)
    for net in _present(networks):
        users.setdefault(net['trunk'], set()).add(net['port'])
    trunks = set(users) | set(n['trunk'] for n in networks)
    for path in current:
        base = os.path.basename(path)
        if base.startswith(TRUNK_PREFIX):
            trunks.add(base[len(TRUNK_PREFIX):].rsplit('.', 1)[0] if base.endswith('.conf')
                       else base[len(TRUNK_PREFIX):-len('.network')])
    for trunk in trunks:
        ports = users.get(trunk)
        if backend == 'networkd':
            wanted[trunk_network_path(trunk)] = render_networkd_trunk(trunk, ports) if ports else None
        wanted[trunk_sysctl_path(trunk)] = render_trunk_sysctl(trunk) if ports and isolate_trunks else None
    return wanted
