# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Logic of secvirt.kvm.libvirt_domain_limits: the cgroup controls libvirt exposes
(schedinfo, memtune, blkiotune, domiftune), persistent and live."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import limits_xml as lmx
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    AFFECT_LIVE, LibvirtModuleError, domain_xml, error_message, lookup_domain,
)

# module option -> (<cputune> child, virDomainSetSchedulerParameters field)
CPU_OPTIONS = (
    ('cpu_shares', 'shares', 'cpu_shares'),
    ('vcpu_period', 'period', 'vcpu_period'),
    ('vcpu_quota', 'quota', 'vcpu_quota'),
    ('global_period', 'global_period', 'global_period'),
    ('global_quota', 'global_quota', 'global_quota'),
    ('emulator_period', 'emulator_period', 'emulator_period'),
    ('emulator_quota', 'emulator_quota', 'emulator_quota'),
)
MEMORY_OPTIONS = (
    ('memory_hard_limit', 'hard_limit'),
    ('memory_soft_limit', 'soft_limit'),
    ('memory_swap_hard_limit', 'swap_hard_limit'),
)
BLKIO_LIVE_FIELDS = {
    'weight': 'device_weight', 'read_bytes_sec': 'device_read_bytes_sec',
    'write_bytes_sec': 'device_write_bytes_sec', 'read_iops_sec': 'device_read_iops_sec',
    'write_iops_sec': 'device_write_iops_sec',
}
# the kernel stores memory limits in pages: tolerate rounding when reading back
_PAGE_KIB = 4


def _check_range(value, low, high, what):
    if value is not None and not low <= value <= high:
        raise LibvirtModuleError('%s %d is outside [%d, %d]' % (what, value, low, high))


def desired_limits(params):
    """Module parameters -> the dictionary limits_xml.apply_limits() takes."""
    limits = {}
    cputune = {}
    for option, field, _live in CPU_OPTIONS:
        if params.get(option) is not None:
            cputune[field] = params[option]
    _check_range(params.get('cpu_shares'), 1, 262144, 'cpu_shares')
    for option in ('vcpu_period', 'global_period', 'emulator_period'):
        _check_range(params.get(option), 1000, 1000000, option)
    for option in ('vcpu_quota', 'global_quota', 'emulator_quota'):
        value = params.get(option)
        if value is not None and value != -1:
            _check_range(value, 1000, 17592186044415, option + ' (or -1 for unlimited)')
    if cputune:
        limits['cputune'] = cputune
    memtune = {}
    for option, field in MEMORY_OPTIONS:
        if params.get(option) is not None:
            try:
                memtune[field] = lmx.size_to_kib(params[option])
            except lx.XMLValidationError as exc:
                raise LibvirtModuleError('%s: %s' % (option, exc))
    hard, soft = memtune.get('hard_limit'), memtune.get('soft_limit')
    if hard and soft and soft != lmx.MEMORY_UNLIMITED_KIB and hard != lmx.MEMORY_UNLIMITED_KIB and soft > hard:
        raise LibvirtModuleError('memory_soft_limit must not exceed memory_hard_limit')
    swap = memtune.get('swap_hard_limit')
    if swap and hard and swap != lmx.MEMORY_UNLIMITED_KIB and hard != lmx.MEMORY_UNLIMITED_KIB and swap < hard:
        raise LibvirtModuleError('memory_swap_hard_limit (memory plus swap) must not be lower than '
                                 'memory_hard_limit')
    if memtune:
        limits['memtune'] = memtune
    if params.get('blkio_weight') is not None:
        _check_range(params['blkio_weight'], 1, 10000, 'blkio_weight')
        limits['blkio_weight'] = params['blkio_weight']
    devices = {}
    for dev in params.get('blkio_devices') or []:
        path = dev.get('path')
        if not path or not path.startswith('/'):
            raise LibvirtModuleError('every blkio_devices entry needs an absolute host block device path')
        devices[path] = dict((f, dev[f]) for f in lmx.BLKIO_DEVICE_FIELDS if dev.get(f) is not None)
    if devices:
        limits['blkio_devices'] = devices
    bandwidth = {}
    for entry in params.get('interfaces') or []:
        key = lx.normalize_mac(entry['mac']) if entry.get('mac') else entry.get('target_dev')
        if not key:
            raise LibvirtModuleError('every interfaces entry needs mac or target_dev')
        directions = {}
        for direction in ('inbound', 'outbound'):
            if entry.get(direction) is not None:
                directions[direction] = dict((k, v) for k, v in entry[direction].items() if v is not None)
        bandwidth[key] = directions
    if bandwidth:
        limits['bandwidth'] = bandwidth
    return limits


def _resolve_target_devs(limits, live_elem, config_elem, dom_name):
    """Interfaces given by target device -> by MAC (the stable key)."""
    bandwidth = {}
    for key, value in (limits.get('bandwidth') or {}).items():
        if ':' in key:
            bandwidth[key] = value
            continue
        iface = None
        for elem in (live_elem, config_elem):
            if elem is not None and iface is None:
                iface = lx.find_interface(elem, target_dev=key)
        if iface is None:
            raise LibvirtModuleError('guest %s has no interface with target device %s' % (dom_name, key))
        bandwidth[lx.interface_mac(iface)] = value
    if bandwidth:
        limits['bandwidth'] = bandwidth
    return limits


def _live_values(dom, limits, live_elem):
    """Current live values of the requested settings: {(api, key): value}."""
    values = {}
    if limits.get('cputune'):
        sched = dom.schedulerParametersFlags(AFFECT_LIVE)
        for _option, field, live in CPU_OPTIONS:
            if field in limits['cputune']:
                values[('sched', live)] = sched.get(live)
    if limits.get('memtune'):
        mem = dom.memoryParameters(AFFECT_LIVE)
        for field in limits['memtune']:
            values[('memory', field)] = mem.get(field)
    if limits.get('blkio_weight') is not None or limits.get('blkio_devices'):
        blkio = dom.blkioParameters(AFFECT_LIVE)
        if limits.get('blkio_weight') is not None:
            values[('blkio', 'weight')] = blkio.get('weight')
        for path, fields in (limits.get('blkio_devices') or {}).items():
            for field in fields:
                values[('blkio', BLKIO_LIVE_FIELDS[field], path)] = parse_device_list(
                    blkio.get(BLKIO_LIVE_FIELDS[field], '')).get(path, 0)
    for mac, directions in (limits.get('bandwidth') or {}).items():
        iface = lx.find_interface(live_elem, mac=mac)
        if iface is None:
            raise LibvirtModuleError('the running guest has no interface with MAC %s' % mac)
        device = lx.interface_target(iface) or mac
        params = dom.interfaceParameters(device, AFFECT_LIVE)
        for direction, fields in directions.items():
            for field in lmx.BANDWIDTH_FIELDS[direction]:
                if field in fields or fields.get('average') == 0:
                    values[('iface', device, '%s.%s' % (direction, field))] = params.get('%s.%s' % (direction, field), 0)
    return values


def _wanted_live(limits, live_elem):
    wanted = {}
    for _option, field, live in CPU_OPTIONS:
        if field in (limits.get('cputune') or {}):
            wanted[('sched', live)] = limits['cputune'][field]
    for field, value in (limits.get('memtune') or {}).items():
        wanted[('memory', field)] = value
    if limits.get('blkio_weight') is not None:
        wanted[('blkio', 'weight')] = limits['blkio_weight']
    for path, fields in (limits.get('blkio_devices') or {}).items():
        for field, value in fields.items():
            wanted[('blkio', BLKIO_LIVE_FIELDS[field], path)] = value
    for mac, directions in (limits.get('bandwidth') or {}).items():
        iface = lx.find_interface(live_elem, mac=mac)
        device = lx.interface_target(iface) or mac
        for direction, fields in directions.items():
            removing = fields.get('average') == 0
            for field in lmx.BANDWIDTH_FIELDS[direction]:
                if field in fields or removing:
                    wanted[('iface', device, '%s.%s' % (direction, field))] = 0 if removing else fields.get(field, 0)
    return wanted


def parse_device_list(text):
    """'/dev/vda,100,/dev/vdb,200' -> {'/dev/vda': 100, '/dev/vdb': 200}"""
    items = [i for i in (text or '').split(',') if i != '']
    return dict((items[i], int(items[i + 1])) for i in range(0, len(items) - 1, 2))


def _same(key, current, wanted):
    if current == wanted:
        return True
    if key[0] == 'memory' and current is not None and wanted is not None:
        return abs(int(current) - int(wanted)) < _PAGE_KIB
    return False


def _apply_live(dom, changes, blkio_current):
    sched = dict((k[1], v) for k, v in changes.items() if k[0] == 'sched')
    if sched:
        dom.setSchedulerParametersFlags(sched, AFFECT_LIVE)
    memory = dict((k[1], v) for k, v in changes.items() if k[0] == 'memory')
    if memory:
        dom.setMemoryParameters(memory, AFFECT_LIVE)
    blkio = {}
    device_lists = {}
    for key, value in changes.items():
        if key[0] != 'blkio':
            continue
        if key[1] == 'weight':
            blkio['weight'] = value
        else:
            device_lists.setdefault(key[1], {})[key[2]] = value
    for field, devices in device_lists.items():
        # the API takes "path,value" pairs; 0 removes a throttle
        merged = parse_device_list(blkio_current.get(field, ''))
        merged.update(devices)
        blkio[field] = ','.join('%s,%d' % (p, v) for p, v in sorted(merged.items()))
    if blkio:
        dom.setBlkioParameters(blkio, AFFECT_LIVE)
    per_device = {}
    for key, value in changes.items():
        if key[0] == 'iface':
            per_device.setdefault(key[1], {})[key[2]] = value
    for device, params in sorted(per_device.items()):
        dom.setInterfaceParameters(device, params, AFFECT_LIVE)


def _format_live(values):
    lines = []
    for key in sorted(values, key=lambda k: tuple(str(p) for p in k)):
        lines.append('%s: %s' % ('/'.join(str(p) for p in key), values[key]))
    return '\n'.join(lines)


def run_limits(conn, params, check_mode=False, secure=True):
    dom_name = params['domain']
    limits = desired_limits(params)
    if not limits:
        raise LibvirtModuleError('no limit requested: set at least one of the cpu_*, memory_*, blkio_* '
                                 'or interfaces options')
    dom = lookup_domain(conn, dom_name)
    active = bool(dom.isActive())
    persistent = bool(dom.isPersistent())
    live_elem = lx.parse_xml(domain_xml(dom), 'live domain XML') if active else None
    config_elem = lx.parse_xml(domain_xml(dom, inactive=True, secure=secure), 'domain XML') if persistent else None
    limits = _resolve_target_devs(limits, live_elem, config_elem, dom_name)

    result = {'changed': False, 'domain': dom_name, 'config_changed': False, 'live_changed': False,
              'active': active, 'warnings': []}
    before_parts, after_parts = [], []

    if config_elem is not None:
        current = lmx.read_limits(config_elem)
        before_text = lmx.limits_text(config_elem)
        try:
            lmx.apply_limits(config_elem, limits)
        except lx.XMLValidationError as exc:
            raise LibvirtModuleError('guest %s: %s' % (dom_name, exc))
        after = lmx.read_limits(config_elem)
        after_text = lmx.limits_text(config_elem)
        before_parts.append('<!-- persistent definition -->\n' + before_text)
        after_parts.append('<!-- persistent definition -->\n' + after_text)
        result['config'] = after
        if after != current:
            result['config_changed'] = True
            if not check_mode:
                try:
                    conn.defineXML(lx.to_string(config_elem, pretty=False))
                except Exception as exc:
                    raise LibvirtModuleError('libvirt refused the limits for guest %s: %s'
                                             % (dom_name, error_message(exc)))

    if live_elem is not None and params.get('live', True):
        current_live = _live_values(dom, limits, live_elem)
        wanted_live = _wanted_live(limits, live_elem)
        changes = dict((k, v) for k, v in wanted_live.items() if not _same(k, current_live.get(k), v))
        before_parts.append('<!-- running guest -->\n' + _format_live(current_live))
        after_live = dict(current_live)
        after_live.update(changes)
        after_parts.append('<!-- running guest -->\n' + _format_live(after_live))
        result['live'] = dict(('/'.join(str(p) for p in k), v) for k, v in after_live.items())
        if changes:
            result['live_changed'] = True
            if not check_mode:
                blkio_current = dom.blkioParameters(AFFECT_LIVE) if any(k[0] == 'blkio' for k in changes) else {}
                try:
                    _apply_live(dom, changes, blkio_current)
                except Exception as exc:
                    raise LibvirtModuleError('libvirt refused to change the limits of the running guest %s: %s'
                                             % (dom_name, error_message(exc)))
    elif active and result['config_changed']:
        result['warnings'].append('guest %s is running and live=false: the new limits apply from its next start'
                                  % dom_name)

    result['changed'] = result['config_changed'] or result['live_changed']
    result['diff'] = lx.diff_dict('\n'.join(before_parts), '\n'.join(after_parts),
                                  'guest %s limits (current)' % dom_name, 'guest %s limits (wanted)' % dom_name)
    return result
