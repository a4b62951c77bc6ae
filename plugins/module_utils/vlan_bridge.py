# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""802.1Q VLAN guest bridges: validation, rendering and a transactional apply.

Plain Python (no Ansible import) so that unit tests drive it with a fake host.

One guest network is one VLAN subinterface ``<trunk>.<vlan_id>`` enslaved to
one bridge that carries no host address. Persistence goes through the host's
own network stack (ifupdown's ``/etc/network/interfaces.d`` or
systemd-networkd's ``/etc/systemd/network``); the runtime change is made by
that stack too (``ifup``/``ifdown`` of the guest bridges only, ``networkctl
reload``), so a configuration that would not come back after a reboot fails
now, while the previous state can still be restored. The management interface
is never named in any command, and its addresses are compared before and after.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import tempfile
import time

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


# --------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------

class VlanBridges(object):
    """Plan and apply the wanted guest networks on one host."""

    def __init__(self, host, backend, networks, management_interface, isolate_trunks=True, timeout=30):
        if backend not in BACKENDS:
            raise VlanBridgeError('unsupported network backend %r (supported: %s)' % (backend, ', '.join(BACKENDS)))
        self.host = host
        self.backend = backend
        self.networks = normalize_networks(networks)
        self.mgmt = management_interface
        self.isolate_trunks = isolate_trunks
        self.timeout = timeout
        self.commands = []
        self.links = {}

    # -- reading -----------------------------------------------------------

    def run(self, argv, check=True):
        self.commands.append(' '.join(argv))
        rc, out, err = self.host.run(argv)
        if check and rc != 0:
            raise VlanBridgeError('%s failed (rc=%d): %s' % (' '.join(argv), rc, (err or out).strip()),
                                  rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def read_links(self):
        rc, out, err = self.host.run(['ip', '-d', '-j', 'addr', 'show'])
        if rc != 0:
            raise VlanBridgeError('cannot list network links: %s' % (err or out).strip())
        self.links = parse_links(out)
        return self.links

    def current_files(self):
        """Every file this module owns on the host now."""
        files = {}
        directories = [SYSCTL_DIR, IFUPDOWN_DIR if self.backend == 'ifupdown' else NETWORKD_DIR]
        for directory in directories:
            for name in self.host.listdir(directory):
                path = os.path.join(directory, name)
                if owned_file(self.backend, path):
                    files[path] = self.host.read(path)
        return files

    def _unlisted_ports(self, current):
        """{trunk: set(ports)} of guest networks configured on disk but not listed now."""
        listed = set(n['bridge'] for n in self.networks)
        result = {}
        if self.backend == 'ifupdown':
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
        claimed = set(n['port'] for n in self.networks)
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

    def wanted_files(self, current):
        """{path: content or None} for the files of the listed networks and of their trunks."""
        wanted = {}
        for net in self.networks:
            rendered = {}
            if net['state'] == 'present':
                if self.backend == 'ifupdown':
                    rendered[bridge_paths(self.backend, net['bridge'])[0]] = render_ifupdown(net)
                else:
                    rendered.update(render_networkd(net))
                rendered[sysctl_path(net['bridge'])] = render_sysctl(net)
            for path in bridge_paths(self.backend, net['bridge']):
                wanted[path] = rendered.get(path)
        # Trunk files hold what every network of the trunk needs, listed now
        # or not, so that leaving a network out of the list never changes it.
        users = self._unlisted_ports(current)
        for net in _present(self.networks):
            users.setdefault(net['trunk'], set()).add(net['port'])
        trunks = set(users) | set(n['trunk'] for n in self.networks)
        for path in current:
            base = os.path.basename(path)
            if base.startswith(TRUNK_PREFIX):
                trunks.add(base[len(TRUNK_PREFIX):].rsplit('.', 1)[0] if base.endswith('.conf')
                           else base[len(TRUNK_PREFIX):-len('.network')])
        for trunk in trunks:
            ports = users.get(trunk)
            if self.backend == 'networkd':
                wanted[trunk_network_path(trunk)] = render_networkd_trunk(trunk, ports) if ports else None
            wanted[trunk_sysctl_path(trunk)] = render_trunk_sysctl(trunk) if ports and self.isolate_trunks else None
        return wanted

    def sysctl_values(self):
        """[(iface, path, (wanted, current))] for interfaces that exist now."""
        values = []
        for iface, path, value in sysctl_settings(self.networks, self.isolate_trunks):
            if iface in self.links:
                values.append((iface, path, (value, self.host.read_proc(path))))
        return values

    def management_lost(self, before):
        """Why the management link is worse off than ``before`` (None if it is not)."""
        link = self.links.get(self.mgmt)
        if link is None:
            return 'it disappeared'
        if before is None:
            return None
        if before.up and not link.up:
            return 'it went down'
        if link.master != before.master:
            return 'it became a port of %s' % link.master
        lost = before.stable_addresses - link.stable_addresses
        if lost:
            return 'it lost %s' % ', '.join(sorted(lost))
        return None

    # -- checks before any change -----------------------------------------

    def preflight(self):
        errors = validate(self.networks, self.mgmt)
        if errors:
            raise VlanBridgeError('invalid guest networks: ' + '; '.join(errors), errors=errors)
        links = self.read_links()
        if self.mgmt not in links:
            errors.append('management interface %s does not exist on this host' % self.mgmt)
        else:
            mgmt = links[self.mgmt]
            if mgmt.master:
                errors.append('management interface %s is a port of %s' % (self.mgmt, mgmt.master))
        ours = self.current_files()
        declared_elsewhere = self._ifupdown_foreign_ifaces() if self.backend == 'ifupdown' else set()
        if self.backend == 'ifupdown' and any(n['state'] == 'present' for n in self.networks):
            main = self.host.read(IFUPDOWN_MAIN) or ''
            if not re.search(r'^\s*source(-directory)?\s+(/etc/network/)?interfaces\.d', main, re.M):
                errors.append('%s does not source %s: files written there would be ignored at boot'
                              % (IFUPDOWN_MAIN, IFUPDOWN_DIR))
        for net in self.networks:
            if net['state'] != 'present':
                bridge = links.get(net['bridge'])
                if bridge is not None and bridge.kind == 'bridge':
                    guests = guest_ports(net, links)
                    if guests:
                        errors.append('%s: bridge %s still has guest interfaces %s; stop or move those guests '
                                      'before removing the network' % (net['name'], net['bridge'], ', '.join(guests)))
                continue
            trunk = links.get(net['trunk'])
            if trunk is None:
                errors.append('%s: trunk %s does not exist' % (net['name'], net['trunk']))
            else:
                if trunk.master:
                    errors.append('%s: trunk %s is a port of %s; the VLAN interfaces need it free'
                                  % (net['name'], net['trunk'], trunk.master))
                if self.isolate_trunks:
                    host_addresses = [a for a in trunk.addresses if not a.startswith('fe80:')]
                    if host_addresses:
                        errors.append('%s: trunk %s carries host addresses %s; move them off the trunk or set '
                                      'isolate_trunks=false' % (net['name'], net['trunk'], ', '.join(host_addresses)))
            bridge = links.get(net['bridge'])
            if bridge is not None:
                if bridge.kind != 'bridge':
                    errors.append('%s: %s already exists and is not a bridge' % (net['name'], net['bridge']))
                else:
                    if bridge.addresses and not self._owned_by_us(net, ours):
                        errors.append('%s: bridge %s already carries host addresses %s; guest bridges must have none'
                                      % (net['name'], net['bridge'], ', '.join(bridge.addresses)))
                    foreign = foreign_ports(net, links)
                    stale = [p for p in foreign if self._our_old_port(net, p, links)]
                    foreign = [p for p in foreign if p not in stale]
                    if foreign:
                        errors.append('%s: bridge %s also bridges %s; a guest bridge carries exactly one VLAN'
                                      % (net['name'], net['bridge'], ', '.join(foreign)))
            port = links.get(net['port'])
            if port is not None and (port.kind != 'vlan' or port.vlan_id != net['vlan_id']
                                     or port.lower != net['trunk']):
                errors.append('%s: %s already exists and is not VLAN %d on %s'
                              % (net['name'], net['port'], net['vlan_id'], net['trunk']))
            if port is not None and port.master not in (None, net['bridge']):
                errors.append('%s: %s is already a port of %s' % (net['name'], net['port'], port.master))
            for iface in (net['bridge'], net['port']):
                if iface in declared_elsewhere:
                    errors.append('%s: %s is already declared in the ifupdown configuration outside %s%s*'
                                  % (net['name'], iface, os.path.join(IFUPDOWN_DIR, ''), IFUPDOWN_PREFIX))
        if errors:
            raise VlanBridgeError('refusing to change the network: ' + '; '.join(errors), errors=errors)

    def _owned_by_us(self, net, ours):
        return ours.get(bridge_paths(self.backend, net['bridge'])[0]) is not None

    @staticmethod
    def _our_old_port(net, name, links):
        """A VLAN port left from a previous definition of this network (new trunk or id)."""
        link = links[name]
        return link.kind == 'vlan' and link.lower is not None and name == '%s.%s' % (link.lower, link.vlan_id)

    def _ifupdown_foreign_ifaces(self):
        names = set(parse_ifupdown_ifaces(self.host.read(IFUPDOWN_MAIN)))
        for name in self.host.listdir(IFUPDOWN_DIR):
            path = os.path.join(IFUPDOWN_DIR, name)
            if not owned_file('ifupdown', path):
                names.update(parse_ifupdown_ifaces(self.host.read(path)))
        return names

    def require_tools(self):
        """The stack must be able to create bridges (checked just before applying,
        so that a role can run the read-only preflight before installing them)."""
        if self.backend == 'ifupdown':
            if not self.host.exists('/sbin/brctl') and not self.host.exists('/usr/sbin/brctl'):
                raise VlanBridgeError('bridge-utils is not installed: ifupdown cannot create the bridges')
        else:
            _rc, out, _err = self.host.run(['systemctl', 'is-active', 'systemd-networkd.service'])
            if out.strip() != 'active':
                raise VlanBridgeError('systemd-networkd is not running (%s): it cannot create the bridges'
                                      % out.strip())

    # -- planning ------------------------------------------------------------

    def plan(self):
        """Work out what has to change; nothing is modified."""
        self.preflight()
        current = self.current_files()
        wanted = self.wanted_files(current)
        file_changes = {}
        for path, content in sorted(wanted.items()):
            if current.get(path) != content:
                file_changes[path] = (current.get(path), content)
        sysctls = self.sysctl_values()
        actions = []
        for net in self.networks:
            entry = {'name': net['name'], 'bridge': net['bridge'], 'port': net['port'],
                     'vlan_id': net['vlan_id'], 'trunk': net['trunk'], 'state': net['state']}
            bridge = self.links.get(net['bridge'])
            port = self.links.get(net['port'])
            if net['state'] == 'absent':
                exists = (bridge is not None and bridge.kind == 'bridge') or (
                    port is not None and port.kind == 'vlan')
                entry['action'] = 'remove' if exists else 'none'
                entry['problems'] = []
            else:
                problems = network_problems(net, self.links, sysctls)
                entry['problems'] = problems
                if bridge is None:
                    entry['action'] = 'create'
                elif problems:
                    entry['action'] = 'update'
                else:
                    entry['action'] = 'none'
            actions.append(entry)
        trunk_sysctls = [(i, p, v) for i, p, v in sysctls if v[0] != v[1]
                         and i not in [n['bridge'] for n in self.networks] + [n['port'] for n in self.networks]]
        return {'files': file_changes, 'networks': actions, 'trunk_sysctls': trunk_sysctls}

    # -- applying ------------------------------------------------------------

    def apply(self, plan):
        """Make the change; on failure restore files and links, then raise."""
        self.require_tools()
        self.read_links()
        before_mgmt = self.links.get(self.mgmt)
        journal = {'files': {}, 'created': [], 'removed': [], 'ifup': []}
        nets = dict((n['name'], n) for n in self.networks)
        try:
            # Removals first, while the old configuration is still on disk
            # (ifdown reads it) and so that a VLAN id moving to a new bridge
            # is free again.
            for entry in plan['networks']:
                if entry['action'] == 'remove':
                    self._take_down(nets[entry['name']])
                    journal['removed'].append(entry['name'])
            for entry in plan['networks']:
                if entry['action'] == 'update':
                    self._replace_stale_port(nets[entry['name']])
            for path, (old, new) in sorted(plan['files'].items()):
                journal['files'][path] = old
                if new is None:
                    self.host.remove(path)
                else:
                    self.host.write(path, new)
            self._bring_up(plan, journal)
            # disable_ipv6 first: it also drops the link-local address a new
            # bridge may already have picked up.
            self._apply_sysctls()
            for entry in plan['networks']:
                if entry['action'] in ('update', 'create'):
                    self._fix_live(nets[entry['name']])
            self._apply_sysctls()
            self._wait_converged()
            self.read_links()
            lost = self.management_lost(before_mgmt)
            if lost:
                raise VlanBridgeError('the management interface %s was disturbed: %s' % (self.mgmt, lost))
        except VlanBridgeError as exc:
            rollback_errors = self._rollback(journal, nets)
            msg = exc.msg + '; the previous network configuration was restored'
            if rollback_errors:
                msg = exc.msg + '; ROLLBACK INCOMPLETE: ' + '; '.join(rollback_errors)
            raise VlanBridgeError(msg, commands=self.commands, **exc.details)

    def _take_down(self, net):
        if self.backend == 'ifupdown' and self._ifupdown_is_up(net['bridge']):
            self.run(['ifdown', net['bridge']], check=False)
        self.read_links()
        for iface in (net['bridge'], net['port']):
            link = self.links.get(iface)
            if link is not None and link.kind in ('bridge', 'vlan'):
                self.run(['ip', 'link', 'delete', 'dev', iface])

    def _replace_stale_port(self, net):
        """The network moved to another VLAN id or trunk: swap the bridge's port."""
        for name in foreign_ports(net, self.links):
            if self._our_old_port(net, name, self.links):
                self.run(['ip', 'link', 'delete', 'dev', name])

    def _ifupdown_is_up(self, iface):
        """Whether ifupdown's state file records ``iface`` as configured."""
        rc, out, _err = self.host.run(['ifquery', '--state', iface])
        return rc == 0 and bool(out.strip())

    def _bring_up(self, plan, journal):
        creating = [e for e in plan['networks'] if e['action'] == 'create']
        if self.backend == 'ifupdown':
            for entry in creating:
                if self._ifupdown_is_up(entry['bridge']):
                    # ifupdown thinks it is up but the bridge is gone: reset.
                    self.run(['ifdown', '--force', entry['bridge']], check=False)
                journal['created'].append(entry['name'])
                rc, out, err = self.run(['ifup', entry['bridge']], check=False)
                if rc != 0:
                    raise VlanBridgeError('ifup %s failed (rc=%d): %s' % (entry['bridge'], rc, (err or out).strip()))
        else:
            journal['created'].extend(e['name'] for e in creating)
            if plan['files'] or creating:
                self.run(['networkctl', 'reload'])

    def _fix_live(self, net):
        """Converge attributes of an existing bridge without recreating it.

        Recreating a bridge would detach the taps of running guests, which
        libvirt does not re-attach; the few attributes that can drift are
        set in place instead.
        """
        self.read_links()
        bridge = self.links.get(net['bridge'])
        if bridge is None or bridge.kind != 'bridge':
            return
        port = self.links.get(net['port'])
        # networkd creates a new VLAN port itself (the trunk's .network
        # changed); with ifupdown only ifup would, and ifup of a bridge that
        # is already up does nothing.
        if port is None and self.backend == 'ifupdown' and net['trunk'] in self.links:
            self.run(['ip', 'link', 'set', 'dev', net['trunk'], 'up'])
            self.run(['ip', 'link', 'add', 'link', net['trunk'], 'name', net['port'], 'type', 'vlan',
                      'id', str(net['vlan_id'])])
            self.read_links()
            port = self.links.get(net['port'])
        mtu = net.get('mtu')
        if port is not None:
            if mtu is not None and port.mtu != mtu:
                self.run(['ip', 'link', 'set', 'dev', net['port'], 'mtu', str(mtu)])
            if port.master != net['bridge']:
                self.run(['ip', 'link', 'set', 'dev', net['port'], 'master', net['bridge']])
            if not port.up:
                self.run(['ip', 'link', 'set', 'dev', net['port'], 'up'])
        if mtu is not None and bridge.mtu != mtu:
            self.run(['ip', 'link', 'set', 'dev', net['bridge'], 'mtu', str(mtu)])
        if bool(bridge.stp_state) != net['stp']:
            self.run(['ip', 'link', 'set', 'dev', net['bridge'], 'type', 'bridge',
                      'stp_state', '1' if net['stp'] else '0'])
        if net.get('forward_delay') is not None and bridge.forward_delay != net['forward_delay']:
            # ip(8) passes the kernel's clock_t: centiseconds.
            self.run(['ip', 'link', 'set', 'dev', net['bridge'], 'type', 'bridge',
                      'forward_delay', str(net['forward_delay'] * 100)])
        if not bridge.up:
            self.run(['ip', 'link', 'set', 'dev', net['bridge'], 'up'])
        for addr in bridge.addresses:
            self.run(['ip', 'address', 'delete', addr, 'dev', net['bridge']])

    def _apply_sysctls(self):
        self.read_links()
        for iface, path, (wanted, current) in self.sysctl_values():
            if current != wanted:
                self.commands.append('write %s to /proc/sys/%s' % (wanted, path))
                try:
                    self.host.write_proc(path, wanted)
                except (IOError, OSError) as exc:
                    raise VlanBridgeError('cannot set %s on %s: %s' % (path, iface, exc))

    def _wait_converged(self):
        deadline = self.host.monotonic() + self.timeout
        while True:
            self.read_links()
            sysctls = self.sysctl_values()
            problems = []
            for net in self.networks:
                if net['state'] == 'present':
                    problems += network_problems(net, self.links, sysctls)
                else:
                    for iface in (net['bridge'], net['port']):
                        if iface in self.links and self.links[iface].kind in ('bridge', 'vlan'):
                            problems.append('%s still exists' % iface)
            if not problems:
                return
            if self.host.monotonic() >= deadline:
                hint = ''
                if self.backend == 'networkd':
                    hint = ' (check `networkctl status` of the trunk: another .network file may match it)'
                raise VlanBridgeError('the guest networks did not come up within %ds: %s%s'
                                      % (self.timeout, '; '.join(problems), hint), problems=problems)
            # networkd and bridge-utils finish asynchronously; sysctls of
            # links that only just appeared are set by udev, or by us here.
            self._apply_sysctls()
            self.host.sleep(1)

    def _rollback(self, journal, nets):
        errors = []

        def attempt(argv):
            self.commands.append(' '.join(argv))
            rc, out, err = self.host.run(argv)
            if rc != 0:
                errors.append('%s: %s' % (' '.join(argv), (err or out).strip()))

        for name in reversed(journal['created']):
            net = nets[name]
            if self.backend == 'ifupdown':
                attempt(['ifdown', '--force', net['bridge']])
            self.read_links()
            for iface in (net['bridge'], net['port']):
                link = self.links.get(iface)
                if link is not None and link.kind in ('bridge', 'vlan'):
                    attempt(['ip', 'link', 'delete', 'dev', iface])
        for path, old in sorted(journal['files'].items()):
            try:
                if old is None:
                    self.host.remove(path)
                else:
                    self.host.write(path, old)
            except (IOError, OSError) as exc:
                errors.append('restoring %s: %s' % (path, exc))
        if self.backend == 'networkd' and journal['files']:
            attempt(['networkctl', 'reload'])
        for name in journal['removed']:
            if self.backend == 'ifupdown':
                attempt(['ifup', nets[name]['bridge']])
        return errors


def run_vlan_bridges(host, params, check_mode=False, want_diff=False):
    """Entry point for the module: returns the result dict."""
    manager = VlanBridges(host, params['backend'], params['networks'], params['management_interface'],
                          isolate_trunks=params.get('isolate_trunks', True), timeout=params.get('timeout', 30))
    plan = manager.plan()
    changed = bool(plan['files'] or plan['trunk_sysctls']
                   or any(e['action'] != 'none' for e in plan['networks']))
    result = {'changed': changed, 'backend': manager.backend,
              'networks': plan['networks'],
              'files': sorted(plan['files'])}
    if want_diff:
        result['diff'] = [{'before_header': path, 'after_header': path,
                           'before': old or '', 'after': new or ''}
                          for path, (old, new) in sorted(plan['files'].items())]
    if changed and not check_mode:
        manager.apply(plan)
    result['commands'] = manager.commands
    return result
