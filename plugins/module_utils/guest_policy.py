# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The guest policy of secvirt.kvm.guest_policy: what a guest definition must
say before it may run, checked on its XML.

This file is two things at once, so that the check the role reports with and
the check that refuses a guest start are the same code:

* module_utils for secvirt.kvm.guest_policy (report and fix), and
* the libvirt hook the role installs as /etc/libvirt/hooks/qemu.d/secvirt-guest-policy
  (enforce mode): libvirt runs it with ``<guest> prepare begin -`` and the
  guest's XML on stdin before it starts a guest's QEMU (a start, a restore,
  an incoming migration); a non-zero exit aborts the start and libvirt's
  error carries what the hook printed on stderr.

So it imports nothing beyond the Python standard library. The policy is JSON
(``normalize_policy`` checks it); the hook reads it from POLICY_FILE.

Checks (each can be switched off with the policy's ``checks`` list; a check
that is off never refuses anything):

filter    every interface has a <filterref> naming the policy's filter (default
          clean-traffic), with the IP parameters the policy gives for its MAC
seclabel  no <seclabel type='none'>; a static label where the policy asks one
graphics  VNC/SPICE listen only on the policy's addresses (never a wildcard),
          no passwd= attribute, SPICE defaultMode='secure'
disks     every disk with a source declares its format (<driver type>), lives
          in the policy's image directories, has no backing file outside the
          allowed backing directories and a virtual size within the bound
          (qcow2 header read, never probed)
hostdev   no <hostdev> unless the guest is allowed it
limits    the CPU shares/quota, memory hard limit, blkio weight and interface
          bandwidth the policy names are in the definition
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import struct
import sys
import xml.etree.ElementTree as ET

POLICY_FILE = '/etc/libvirt/secvirt-guest-policy.json'
CHECKS = ('filter', 'seclabel', 'graphics', 'disks', 'hostdev', 'limits')
WILDCARDS = ('0.0.0.0', '::', '[::]', '*')
QCOW2_MAGIC = b'QFI\xfb'
UNITS = {'': 1, 'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'm': 1024 ** 2, 'mib': 1024 ** 2,
         'g': 1024 ** 3, 'gib': 1024 ** 3, 't': 1024 ** 4, 'tib': 1024 ** 4,
         'kb': 1000, 'mb': 1000 ** 2, 'gb': 1000 ** 3, 'tb': 1000 ** 4}
LIMIT_KEYS = ('cpu_shares', 'vcpu_period', 'vcpu_quota', 'memory_hard_limit', 'memory_soft_limit',
              'blkio_weight', 'interface_inbound', 'interface_outbound')
BANDWIDTH_KEYS = ('average', 'peak', 'burst', 'floor')


class PolicyError(ValueError):
    """The policy itself is wrong (refused before anything changes)."""


def parse_size(value, what):
    """'512MiB', '2 GiB', 1024 (bytes) -> bytes; anything else is refused."""
    if isinstance(value, bool):
        raise PolicyError('%s: %r is not a size' % (what, value))
    if isinstance(value, int):
        return value
    match = re.match(r'^\s*(\d+)\s*([A-Za-z]*)\s*$', str(value))
    if not match or match.group(2).lower() not in UNITS:
        raise PolicyError('%s: %r is not a size (a number with B, KiB, MiB, GiB or TiB)' % (what, value))
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def normalize_mac(mac):
    parts = re.split('[:-]', str(mac).strip().lower())
    if len(parts) != 6 or not all(re.match('^[0-9a-f]{1,2}$', p) for p in parts):
        raise PolicyError('%r is not a MAC address' % (mac,))
    return ':'.join(p.zfill(2) for p in parts)


def _int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, int) and not re.match(r'^-?\d+$', str(value)):
        raise PolicyError('%s: %r is not an integer' % (what, value))
    value = int(value)
    if not low <= value <= high:
        raise PolicyError('%s: %d is outside [%d, %d]' % (what, value, low, high))
    return value


def _limits(raw, where):
    raw = raw or {}
    unknown = sorted(set(raw) - set(LIMIT_KEYS))
    if unknown:
        raise PolicyError('%s limits: unknown key(s) %s (known: %s)' % (where, ', '.join(unknown), ', '.join(LIMIT_KEYS)))
    out = {}
    if raw.get('cpu_shares') is not None:
        out['cpu_shares'] = _int(raw['cpu_shares'], where + ' cpu_shares', 1, 262144)
    if raw.get('vcpu_period') is not None:
        out['vcpu_period'] = _int(raw['vcpu_period'], where + ' vcpu_period', 1000, 1000000)
    if raw.get('vcpu_quota') is not None:
        out['vcpu_quota'] = _int(raw['vcpu_quota'], where + ' vcpu_quota', 1000, 17592186044415)
    for key in ('memory_hard_limit', 'memory_soft_limit'):
        if raw.get(key) is not None:
            size = parse_size(raw[key], '%s %s' % (where, key))
            if size < 1024 * 1024:
                raise PolicyError('%s %s: %r is below 1 MiB (a unit missing?)' % (where, key, raw[key]))
            out[key] = size // 1024
    if raw.get('blkio_weight') is not None:
        out['blkio_weight'] = _int(raw['blkio_weight'], where + ' blkio_weight', 1, 10000)
    for key in ('interface_inbound', 'interface_outbound'):
        if raw.get(key):
            if not isinstance(raw[key], dict) or set(raw[key]) - set(BANDWIDTH_KEYS) or 'average' not in raw[key]:
                raise PolicyError('%s %s: a mapping with average (KiB/s) and optionally peak, burst, floor'
                                  % (where, key))
            out[key] = dict((k, _int(v, '%s %s.%s' % (where, key, k), 1, 4294967295))
                            for k, v in raw[key].items() if v is not None)
    return out


def _dirs(values, what):
    out = []
    for value in values or []:
        if not str(value).startswith('/'):
            raise PolicyError('%s: %r is not an absolute directory' % (what, value))
        out.append(os.path.normpath(str(value)))
    return out


def _rules(raw, where):
    """One policy (the default, or the default merged with a guest's overrides)."""
    raw = dict(raw or {})
    known = ('filter', 'filter_parameters', 'interfaces', 'seclabel', 'limits', 'graphics_listen', 'image_dirs',
             'backing_dirs', 'max_virtual_size', 'allow_hostdev', 'checks')
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise PolicyError('%s: unknown key(s) %s (known: %s)' % (where, ', '.join(unknown), ', '.join(known)))
    checks = raw.get('checks')
    checks = list(CHECKS) if checks is None else list(checks)
    bad = sorted(set(checks) - set(CHECKS))
    if bad:
        raise PolicyError('%s checks: unknown check(s) %s (known: %s)' % (where, ', '.join(bad), ', '.join(CHECKS)))
    interfaces = {}
    for mac, spec in (raw.get('interfaces') or {}).items():
        spec = dict(spec or {})
        extra = sorted(set(spec) - set(('ip', 'filter', 'parameters')))
        if extra:
            raise PolicyError('%s interface %s: unknown key(s) %s' % (where, mac, ', '.join(extra)))
        ips = spec.get('ip') or []
        interfaces[normalize_mac(mac)] = {
            'ip': [str(ip) for ip in (ips if isinstance(ips, list) else [ips])],
            'filter': spec.get('filter'),
            'parameters': dict((str(k), str(v)) for k, v in (spec.get('parameters') or {}).items()),
        }
    seclabel = dict(raw.get('seclabel') or {'type': 'dynamic'})
    if seclabel.get('type', 'dynamic') not in ('dynamic', 'static'):
        raise PolicyError('%s seclabel.type: %r (dynamic or static; none is what the policy refuses)'
                          % (where, seclabel.get('type')))
    seclabel.setdefault('type', 'dynamic')
    if seclabel['type'] == 'static' and not (seclabel.get('label') and seclabel.get('model')):
        raise PolicyError('%s seclabel: a static label needs model and label' % where)
    max_size = raw.get('max_virtual_size')
    return {
        'checks': checks,
        'filter': raw.get('filter') if raw.get('filter') is not None else 'clean-traffic',
        'filter_parameters': dict((str(k), str(v)) for k, v in (raw.get('filter_parameters') or {}).items()),
        'interfaces': interfaces,
        'seclabel': seclabel,
        'limits': _limits(raw.get('limits'), where),
        'graphics_listen': [str(a) for a in raw.get('graphics_listen') or []],
        'image_dirs': _dirs(raw.get('image_dirs'), where + ' image_dirs'),
        'backing_dirs': _dirs(raw.get('backing_dirs'), where + ' backing_dirs'),
        'max_virtual_size': parse_size(max_size, where + ' max_virtual_size') if max_size not in (None, '') else None,
        'allow_hostdev': bool(raw.get('allow_hostdev', False)),
    }


def normalize_policy(default, guests=None):
    """{'default': rules, 'guests': {name: rules}} with every value checked;
    a guest's rules are the default overlaid with its own keys (limits and
    interfaces merged key by key)."""
    default = dict(default or {})
    for wildcard in (a for a in default.get('graphics_listen') or [] if a in WILDCARDS):
        raise PolicyError('default graphics_listen: %s is a wildcard; name the management address' % wildcard)
    out = {'default': _rules(default, 'default policy'), 'guests': {}, 'raw_default': default}
    for name, override in (guests or {}).items():
        merged = dict(default)
        override = dict(override or {})
        for key in ('limits', 'interfaces', 'filter_parameters'):
            if key in override:
                both = dict(default.get(key) or {})
                both.update(override.pop(key) or {})
                merged[key] = both
        merged.update(override)
        out['guests'][str(name)] = _rules(merged, 'guest %s' % name)
    out.pop('raw_default')
    return out


def rules_for(policy, name):
    return policy['guests'].get(name, policy['default'])


# ---------------------------------------------------------------- the checks


def _under(path, dirs):
    # symbolic links resolved: a link in the image directory to a file
    # elsewhere is elsewhere
    path = os.path.realpath(path)
    return any(path == d or path.startswith(d.rstrip('/') + '/') for d in dirs)


def _disk_source(disk):
    source = disk.find('source')
    if source is None:
        return None
    return source.get('file') or source.get('dev')


def read_image_facts(path, declared):
    """Backing file and virtual size of an image, from its header only (the
    declared format decides how it is read: never a probe). Returns a dict or
    raises OSError."""
    facts = {'backing_file': None, 'virtual_size': None}
    if declared == 'qcow2':
        with open(path, 'rb') as handle:
            data = handle.read(4096)
        if len(data) < 32 or data[:4] != QCOW2_MAGIC:
            facts['error'] = 'declared qcow2 but has no qcow2 header'
            return facts
        offset, size = struct.unpack('>QI', data[8:20])
        facts['virtual_size'] = struct.unpack('>Q', data[24:32])[0]
        if offset and size:
            with open(path, 'rb') as handle:
                handle.seek(offset)
                facts['backing_file'] = handle.read(min(size, 4096)).decode('utf-8', 'replace')
    elif declared == 'raw':
        fd = os.open(path, os.O_RDONLY)
        try:
            facts['virtual_size'] = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    return facts


def _check_filter(dom, rules, out):
    for iface in dom.findall('devices/interface'):
        mac_elem = iface.find('mac')
        mac = normalize_mac(mac_elem.get('address')) if mac_elem is not None and mac_elem.get('address') else None
        spec = rules['interfaces'].get(mac or '', {})
        wanted = spec.get('filter') or rules['filter']
        ref = iface.find('filterref')
        label = 'interface %s' % (mac or '(no MAC yet)')
        if ref is None:
            out.append(('filter', '%s has no network filter (policy: %s)' % (label, wanted)))
            continue
        if ref.get('filter') != wanted:
            out.append(('filter', '%s has filter %s, policy: %s' % (label, ref.get('filter'), wanted)))
        have_ips = sorted(p.get('value') for p in ref.findall('parameter') if p.get('name') == 'IP')
        if spec.get('ip') and have_ips != sorted(spec['ip']):
            out.append(('filter', '%s filter parameter IP is %s, policy: %s'
                        % (label, ', '.join(have_ips) or 'unset', ', '.join(sorted(spec['ip'])))))


def _check_seclabel(dom, rules, out):
    labels = dom.findall('seclabel')
    for label in labels:
        if label.get('type') == 'none' or label.get('model') == 'none':
            out.append(('seclabel', 'sVirt confinement switched off (<seclabel type=%r model=%r>)'
                        % (label.get('type'), label.get('model'))))
    for disk in dom.findall('devices/disk'):
        source = disk.find('source')
        for label in (source.findall('seclabel') if source is not None else []):
            if label.get('relabel') == 'no':
                out.append(('seclabel', 'disk %s is not relabelled (<seclabel relabel=no>): other guests may reach it'
                            % (_disk_source(disk) or '?')))
    wanted = rules['seclabel']
    if wanted.get('type') == 'static':
        mine = [lab for lab in labels if lab.get('model') == wanted['model']]
        got = mine[0].findtext('label') if mine and mine[0].get('type') == 'static' else None
        if got != wanted['label']:
            out.append(('seclabel', 'static %s label %s wanted, definition has %s'
                        % (wanted['model'], wanted['label'], got or 'none')))


# How graphics_listens names a console without an address of its own: it
# listens on qemu.conf's vnc_listen/spice_listen (127.0.0.1 when unset).
DEFAULT_LISTEN = '(default listen address)'


def default_listen(kind, qemu_conf_listen=None):
    """Where a console without an address of its own listens."""
    return (qemu_conf_listen or {}).get(kind) or '127.0.0.1'


def graphics_listens(graphics):
    addresses = []
    for listen in graphics.findall('listen'):
        kind = listen.get('type') or 'address'
        if kind == 'address' and listen.get('address'):
            addresses.append(listen.get('address'))
        elif kind == 'network':
            addresses.append('network:%s' % (listen.get('network') or ''))
        elif kind == 'address':
            addresses.append(DEFAULT_LISTEN)
    if graphics.get('listen') and graphics.get('listen') not in addresses:
        addresses.append(graphics.get('listen'))
    if not graphics.findall('listen') and not graphics.get('listen') and graphics.get('type') in ('vnc', 'spice'):
        addresses.append(DEFAULT_LISTEN)
    return addresses


def _graphics_problems(graphics, rules, qemu_conf_listen=None):
    """What the policy refuses in one <graphics>: [(problem, message)], the
    problem one of 'passwd', 'listen', 'spice_mode'. The check reports the
    messages and the fix mends exactly these problems, so the two agree."""
    kind = graphics.get('type')
    allowed = set(rules['graphics_listen']) | set(['127.0.0.1', '::1'])
    found = []
    if graphics.get('passwd') is not None:
        found.append(('passwd', '%s console has a passwd= in the definition (readable by everyone who can '
                      'read the XML): use TLS client certificates or SASL' % kind))
    for address in graphics_listens(graphics):
        if address == DEFAULT_LISTEN:
            address = default_listen(kind, qemu_conf_listen)
        if address in WILDCARDS:
            found.append(('listen', '%s console listens on every address (%s)' % (kind, address)))
        elif address not in allowed:
            found.append(('listen', '%s console listens on %s, policy allows %s'
                          % (kind, address, ', '.join(sorted(rules['graphics_listen'])) or 'localhost only')))
    if kind == 'spice' and (graphics.get('defaultMode') != 'secure'
                            or any(ch.get('mode') == 'insecure' for ch in graphics.findall('channel'))):
        found.append(('spice_mode', "spice console keeps a plaintext port (defaultMode is not 'secure')"))
    return found


def _consoles(dom):
    return [g for g in dom.findall('devices/graphics') if g.get('type') in ('vnc', 'spice')]


def _check_graphics(dom, rules, out, qemu_conf_listen=None):
    for graphics in _consoles(dom):
        out.extend(('graphics', message) for _problem, message in _graphics_problems(graphics, rules, qemu_conf_listen))


def _check_image(path, fmt, rules, out, what, read_facts):
    if rules['image_dirs'] and not _under(path, rules['image_dirs']):
        out.append(('disks', '%s %s is outside the image directories (%s)' % (what, path, ', '.join(rules['image_dirs']))))
    if read_facts is None or not os.path.isfile(path):
        return
    try:
        facts = read_facts(path, fmt)
    except (OSError, IOError) as exc:
        out.append(('disks', '%s %s cannot be read to vet it: %s' % (what, path, exc)))
        return
    if facts.get('error'):
        out.append(('disks', '%s %s: %s' % (what, path, facts['error'])))
    backing = facts.get('backing_file')
    if backing:
        full = backing if backing.startswith('/') else os.path.join(os.path.dirname(path), backing)
        if not rules['backing_dirs'] or not _under(full, rules['backing_dirs']):
            out.append(('disks', '%s %s has a backing file %s (allowed only in: %s)'
                        % (what, path, backing, ', '.join(rules['backing_dirs']) or 'nowhere')))
    size = facts.get('virtual_size')
    if rules['max_virtual_size'] and size and size > rules['max_virtual_size']:
        out.append(('disks', '%s %s has a virtual size of %d bytes, above the bound of %d'
                    % (what, path, size, rules['max_virtual_size'])))


def _check_disks(dom, rules, out, read_facts):
    for disk in dom.findall('devices/disk'):
        path = _disk_source(disk)
        if not path:
            continue
        driver = disk.find('driver')
        fmt = driver.get('type') if driver is not None else None
        target = disk.find('target')
        what = 'disk %s' % (target.get('dev') if target is not None else path)
        if not fmt or fmt == 'auto':
            out.append(('disks', '%s (%s) does not declare its format (<driver type>): libvirt would have to '
                        'probe it' % (what, path)))
        _check_image(path, fmt, rules, out, what, read_facts)
        store = disk.find('backingStore')
        while store is not None and store.find('source') is not None:
            backing = store.find('source').get('file') or store.find('source').get('dev')
            if backing and (not rules['backing_dirs'] or not _under(backing, rules['backing_dirs'])):
                out.append(('disks', '%s has a backing store %s (allowed only in: %s)'
                            % (what, backing, ', '.join(rules['backing_dirs']) or 'nowhere')))
            store = store.find('backingStore')


def _check_hostdev(dom, rules, out):
    if rules['allow_hostdev']:
        return
    for dev in dom.findall('devices/hostdev'):
        source = dev.find('source')
        address = source.find('address') if source is not None else None
        where = ' '.join('%s=%s' % kv for kv in sorted((address.attrib if address is not None else {}).items()))
        out.append(('hostdev', 'host device passthrough (%s %s) is not allowed for this guest'
                    % (dev.get('type'), where or '')))


def _kib(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def read_limits(dom):
    """The limits a definition states, in the policy's units (KiB for memory)."""
    out = {}
    shares = dom.findtext('cputune/shares')
    if shares is not None:
        out['cpu_shares'] = _kib(shares)
    for key, path in (('vcpu_period', 'cputune/period'), ('vcpu_quota', 'cputune/quota'),
                      ('blkio_weight', 'blkiotune/weight')):
        if dom.findtext(path) is not None:
            out[key] = _kib(dom.findtext(path))
    for key, tag in (('memory_hard_limit', 'hard_limit'), ('memory_soft_limit', 'soft_limit')):
        elem = dom.find('memtune/' + tag)
        if elem is not None:
            value = parse_size('%s%s' % (elem.text.strip(), elem.get('unit', 'KiB')), tag)
            out[key] = value // 1024
    return out


def _check_limits(dom, rules, out):
    wanted = rules['limits']
    have = read_limits(dom)
    for key in ('cpu_shares', 'vcpu_period', 'vcpu_quota', 'memory_hard_limit', 'memory_soft_limit', 'blkio_weight'):
        if key in wanted and have.get(key) != wanted[key]:
            unit = ' KiB' if key.startswith('memory') else ''
            out.append(('limits', '%s is %s, policy: %s%s' % (key, 'unset' if have.get(key) is None else
                                                              '%s%s' % (have[key], unit), wanted[key], unit)))
    for key, direction in (('interface_inbound', 'inbound'), ('interface_outbound', 'outbound')):
        if key not in wanted:
            continue
        for iface in dom.findall('devices/interface'):
            elem = iface.find('bandwidth/' + direction)
            got = dict((k, _kib(v)) for k, v in (elem.attrib.items() if elem is not None else []))
            if any(got.get(k) != v for k, v in wanted[key].items()):
                mac = iface.find('mac')
                out.append(('limits', 'interface %s %s bandwidth is %s, policy: %s' % (
                    mac.get('address') if mac is not None else '?', direction,
                    ', '.join('%s=%s' % kv for kv in sorted(got.items())) or 'unlimited',
                    ', '.join('%s=%s' % kv for kv in sorted(wanted[key].items())))))


def check_domain(xml_text, policy, read_facts=read_image_facts, qemu_conf_listen=None):
    """Violations of one guest definition: a list of (check, reason)."""
    try:
        dom = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        return [('xml', 'the definition is not XML: %s' % exc)]
    name = dom.findtext('name') or ''
    rules = rules_for(policy, name)
    out = []
    checks = rules['checks']
    if 'filter' in checks:
        _check_filter(dom, rules, out)
    if 'seclabel' in checks:
        _check_seclabel(dom, rules, out)
    if 'graphics' in checks:
        _check_graphics(dom, rules, out, qemu_conf_listen)
    if 'disks' in checks:
        _check_disks(dom, rules, out, read_facts)
    if 'hostdev' in checks:
        _check_hostdev(dom, rules, out)
    if 'limits' in checks:
        _check_limits(dom, rules, out)
    return out


# ------------------------------------------------------------ the fix of XML


def fix_graphics(xml_text, rules, qemu_conf_listen=None):
    """The definition with what the check refuses in its consoles mended:
    passwd= removed, a console on an address the policy does not allow moved
    to the policy's first listen address, SPICE made TLS-only; (new_xml,
    [changes]). qemu_conf_listen: as for check_domain."""
    dom = ET.fromstring(xml_text)
    changes = []
    target = rules['graphics_listen'][0] if rules['graphics_listen'] else '127.0.0.1'
    for graphics in _consoles(dom):
        kind = graphics.get('type')
        problems = set(problem for problem, _message in _graphics_problems(graphics, rules, qemu_conf_listen))
        if 'passwd' in problems:
            del graphics.attrib['passwd']
            graphics.attrib.pop('passwdValidTo', None)
            changes.append('%s console: passwd removed' % kind)
        if 'listen' in problems:
            listens = [a if a != DEFAULT_LISTEN else 'the default listen address %s' % default_listen(kind, qemu_conf_listen)
                       for a in graphics_listens(graphics)]
            for listen in graphics.findall('listen'):
                graphics.remove(listen)
            graphics.set('listen', target)
            ET.SubElement(graphics, 'listen', {'type': 'address', 'address': target})
            changes.append('%s console: listens on %s (was %s)' % (kind, target, ', '.join(listens)))
        if 'spice_mode' in problems:
            if graphics.get('defaultMode') != 'secure':
                graphics.set('defaultMode', 'secure')
                changes.append("spice console: defaultMode='secure'")
            for channel in graphics.findall('channel'):
                if channel.get('mode') == 'insecure':
                    channel.set('mode', 'secure')
                    changes.append('spice channel %s: secure' % channel.get('name'))
    return ET.tostring(dom, encoding='unicode'), changes


# ------------------------------------------------------------------ the hook


def qemu_conf_value(text, key):
    """A string key of qemu.conf (the hook needs vnc_listen/spice_listen only)."""
    for line in text.splitlines():
        match = re.match(r'^\s*%s\s*=\s*"([^"]*)"' % re.escape(key), line)
        if match:
            return match.group(1)
    return None


def qemu_conf_listens(path='/etc/libvirt/qemu.conf'):
    """{'vnc': vnc_listen, 'spice': spice_listen} of qemu.conf (libvirt's
    default, 127.0.0.1, where unset or unreadable)."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (OSError, IOError):
        text = ''
    return dict((kind, qemu_conf_value(text, kind + '_listen') or '127.0.0.1') for kind in ('vnc', 'spice'))


def hook_main(argv, stdin, stderr, policy_file=POLICY_FILE, qemu_conf='/etc/libvirt/qemu.conf'):
    """libvirt's qemu hook: refuse a guest start whose definition violates the
    policy. Only ``prepare begin`` is judged (never ``reconnect``: libvirt
    kills a running guest whose reconnect hook fails)."""
    if len(argv) < 3 or (argv[1], argv[2]) != ('prepare', 'begin'):
        return 0
    xml_text = stdin.read()
    try:
        with open(policy_file) as handle:
            policy = normalize_policy(**json.load(handle))
    except (OSError, IOError, ValueError, TypeError) as exc:
        stderr.write('secvirt guest policy: refusing to start %s: the policy %s cannot be read (%s)\n'
                     % (argv[0], policy_file, exc))
        return 1
    violations = check_domain(xml_text, policy, qemu_conf_listen=qemu_conf_listens(qemu_conf))
    if violations:
        stderr.write('secvirt guest policy: refusing to start %s: %s\n'
                     % (argv[0], '; '.join('[%s] %s' % v for v in violations)))
        return 1
    return 0


if __name__ == '__main__':
    raise SystemExit(hook_main(sys.argv[1:], sys.stdin, sys.stderr))
