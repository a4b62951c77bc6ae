# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What the hypervisor role needs to know about a host before it changes anything.

Plain Python that only reads: every function takes ``root``, the directory
the host's /proc, /sys, /dev, /run and /etc are read below ('/' on a host, a
temporary tree in the unit tests), and the libvirt part takes the connection
(or the libvirt module) as an argument. Paths in results are the host's
paths, never below a test root. Module secvirt.kvm.hypervisor_info.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import os
import re
import stat
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc

# systemctl show: one call for the units the caller names and the two that
# tell the daemon layout apart
SYSTEMCTL_PROPERTIES = 'Id,LoadState,ActiveState,UnitFileState'
MONOLITHIC_UNIT = 'libvirtd.service'
MODULAR_UNIT = 'virtqemud.socket'
LAYOUT_UNITS = (MONOLITHIC_UNIT, MODULAR_UNIT)
MONOLITHIC_STATES = ('enabled', 'static', 'indirect', 'alias')

SECURITY_DRIVERS = ('auto', 'apparmor', 'selinux', 'none')

# the directories systemd-sysctl reads, first one wins for a file name
SYSCTL_DIRS = ('etc/sysctl.d', 'run/sysctl.d', 'usr/local/lib/sysctl.d', 'usr/lib/sysctl.d', 'lib/sysctl.d')
SYSCTL_CONF = 'etc/sysctl.conf'
# the forwarding switches; ip_forward and conf.all.forwarding are one value in the kernel
FORWARDING_KEYS = {'net.ipv4.ip_forward': 'ipv4', 'net.ipv4.conf.all.forwarding': 'ipv4',
                   'net.ipv6.conf.all.forwarding': 'ipv6'}
GLOB_CHARS = re.compile(r'[*?\[]')
NESTED_MODULES = ('kvm_intel', 'kvm_amd')
FORWARDING_MODES = ('nat', 'route', 'open')
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
_SWAP = {ord('.'): u'/', ord('/'): u'.'}


class HostInfoError(Exception):
    """A failure the module reports as its msg."""


def _path(root, relative):
    return os.path.join(root or '/', relative.lstrip('/'))


def read_text(root, relative):
    """The file's text, or None when it is missing or unreadable."""
    try:
        with open(_path(root, relative), 'rb') as handle:
            data = handle.read()
    except (IOError, OSError):
        return None
    return data.decode('utf-8', 'replace')


def read_stripped(root, relative):
    text = read_text(root, relative)
    return None if text is None else text.strip().strip('\0').strip()


def _int_or_none(value):
    try:
        return int(value, 10)
    except (TypeError, ValueError):
        return None


def read_int(root, relative):
    return _int_or_none(read_stripped(root, relative))


def normalize_space(text):
    return ' '.join(text.split())


def units_to_query(services):
    """The units of the one systemctl show call: the requested ones, then the layout units."""
    return list(dict.fromkeys(list(services) + list(LAYOUT_UNITS)))


def systemctl_show_argv(systemctl, units):
    return [systemctl, 'show', '--property=%s' % SYSTEMCTL_PROPERTIES, '--'] + list(units)


def parse_systemctl_show(text, units):
    """{unit: {name, load_state, active_state, unit_file_state}} from systemctl show.

    systemctl prints one block of KEY=value lines per unit, in the order of
    the command line, separated by a blank line; an empty property is '' .
    """
    blocks = []
    current = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        key, sep, value = line.partition('=')
        if not sep:
            continue
        if current is None:
            current = {}
            blocks.append(current)
        current[key.strip()] = value.strip()
    if len(blocks) != len(units):
        raise HostInfoError('systemctl show answered %d unit(s) for the %d asked (%s)'
                            % (len(blocks), len(units), ', '.join(units)))
    return dict((unit, {'name': unit, 'load_state': block.get('LoadState', ''),
                        'active_state': block.get('ActiveState', ''),
                        'unit_file_state': block.get('UnitFileState', '')})
                for unit, block in zip(units, blocks))


def daemon_layout(states):
    """'monolithic' (libvirtd), 'modular' (virtqemud) or 'none' (libvirt not installed)."""
    if states.get(MONOLITHIC_UNIT, {}).get('unit_file_state') in MONOLITHIC_STATES:
        return 'monolithic'
    if states.get(MODULAR_UNIT, {}).get('unit_file_state') == 'enabled':
        return 'modular'
    return 'none'


def normalize_sysctl_key(key):
    """The dotted form of a sysctl key; like sysctl(8) and systemd-sysctl, a key
    whose first separator is '/' uses '/' between the parts and '.' inside them."""
    key = key.strip()
    first = re.search(r'[./]', key)
    if first is not None and first.group() == '/':
        key = key.translate(_SWAP)
    return key.strip('.')


def sysctl_relpath(key):
    """proc/sys/... of a sysctl key; HostInfoError for a key that is not one."""
    relative = normalize_sysctl_key(key).translate(_SWAP)
    parts = relative.split('/')
    if not relative or any(part in ('', '.', '..') for part in parts) or '\0' in relative:
        raise HostInfoError('invalid sysctl key %r' % (key,))
    return 'proc/sys/' + relative


def check_sysctl_keys(sysctls):
    """HostInfoError for the first key of ``sysctls`` that is not a sysctl key."""
    for key in sysctls:
        sysctl_relpath(key)


def wanted_value(value):
    """The text a sysctl value is compared as (true/false as the kernel's 1/0)."""
    if isinstance(value, bool):
        return '1' if value else '0'
    return normalize_space(str(value))


def read_sysctls(sysctls, root='/'):
    """({key: current value or None}, sorted keys whose value differs)."""
    current = {}
    differs = []
    for key, wanted in sysctls.items():
        text = read_text(root, sysctl_relpath(key))
        current[key] = None if text is None else normalize_space(text)
        if current[key] != wanted_value(wanted):
            differs.append(key)
    return current, sorted(differs)


def sysctl_files(root='/', own_file=''):
    """Host paths of the sysctl files systemd-sysctl applies, in its order.

    A file name in an earlier directory masks the same name in later ones
    (also when it is a link to /dev/null); files are applied in the lexical
    order of their names, /etc/sysctl.conf last. ``own_file`` keeps its name's
    place (the role writes it) but is not read.
    """
    own = os.path.normpath(own_file) if own_file else None
    chosen = {}
    for directory in SYSCTL_DIRS:
        try:
            names = set(os.listdir(_path(root, directory)))
        except (IOError, OSError):
            names = set()
        if own and os.path.dirname(own) == '/' + directory:
            names.add(os.path.basename(own))
        for name in sorted(names):
            if not name.endswith('.conf') or name in chosen:
                continue
            host = '/%s/%s' % (directory, name)
            if host != own and os.path.isdir(_path(root, host)):
                continue
            chosen[name] = host
    conf = _path(root, SYSCTL_CONF)
    conf_real = os.path.realpath(conf) if os.path.isfile(conf) else None
    files = []
    for name in sorted(chosen):
        host = chosen[name]
        full = _path(root, host)
        if host == own or not os.path.isfile(full) or os.path.realpath(full) == conf_real:
            continue
        files.append(host)
    if conf_real is not None and '/' + SYSCTL_CONF != own:
        files.append('/' + SYSCTL_CONF)
    return files


def sysctl_lines(text):
    """(line number, dotted key, value) of the assignments of a sysctl file."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        key, sep, value = line.partition('=')
        if not sep:
            continue
        key = key.strip()
        # '-key = value': systemd-sysctl ignores a failure to set it
        yield number, normalize_sysctl_key(key[1:] if key.startswith('-') else key), value.strip()


def forwarding_sysctl_conflicts(root='/', own_file=''):
    """The lines of the sysctl files whose 0 is the effective value of a forwarding switch.

    Models systemd-sysctl: a key set again later takes the new value and
    moves to the end (not when the value is the same); a glob key applies
    only to keys no line names explicitly. Per switch (IPv4, IPv6) the last
    write wins; when it writes 0, every 0 after the switch's last non-zero
    write is reported. A value that is not a number is refused by the kernel
    and does not count.
    """
    entries = []
    for host in sysctl_files(root, own_file):
        text = read_text(root, host)
        for number, key, value in sysctl_lines(text or ''):
            entries.append({'path': host, 'line': number, 'key': key, 'value': value})
    explicit = set(e['key'] for e in entries if not GLOB_CHARS.search(e['key']))
    options = {}
    order = []
    for entry in entries:
        existing = options.get(entry['key'])
        if existing is not None:
            if existing['value'] == entry['value']:
                continue
            order.remove(entry['key'])
        options[entry['key']] = entry
        order.append(entry['key'])

    def switches(entry):
        key = entry['key']
        if GLOB_CHARS.search(key):
            return [FORWARDING_KEYS[k] for k in sorted(FORWARDING_KEYS) if k not in explicit and fnmatch.fnmatchcase(k, key)]
        return [FORWARDING_KEYS[key]] if key in FORWARDING_KEYS else []

    effective = {}
    for key in order:
        entry = options[key]
        if _int_or_none(entry['value']) is None:
            continue
        for switch in switches(entry):
            effective[switch] = entry
    conflicts = []
    for switch in ('ipv4', 'ipv6'):
        last = effective.get(switch)
        if last is None or _int_or_none(last['value']) != 0:
            continue
        zeros = []
        for entry in entries:
            value = _int_or_none(entry['value'])
            if value is None or switch not in switches(entry):
                continue
            if value == 0:
                zeros.append(entry)
            else:  # a later non-zero write overrides the zeros before it
                zeros = []
        if last not in zeros:
            zeros.append(last)
        conflicts.extend(e for e in zeros if e not in conflicts)
    return conflicts


def lsm_list(root='/'):
    text = read_stripped(root, 'sys/kernel/security/lsm')
    return [name.strip() for name in (text or '').split(',') if name.strip()]


def apparmor_profiles(root='/'):
    """{profile: mode} from the kernel's list of loaded profiles ({} when unreadable)."""
    text = read_text(root, 'sys/kernel/security/apparmor/profiles') or ''
    profiles = {}
    for line in text.splitlines():
        match = re.match(r'^(.+) \(([^()]+)\)$', line.strip())
        if match:
            profiles[match.group(1)] = match.group(2)
    return profiles


def apparmor_state(root='/', lsm=None):
    lsm = lsm_list(root) if lsm is None else lsm
    # the kernel parameter, and AppArmor among the running LSMs when the list is known
    enabled = read_stripped(root, 'sys/module/apparmor/parameters/enabled') == 'Y' and (not lsm or 'apparmor' in lsm)
    return {'enabled': enabled, 'profiles': apparmor_profiles(root)}


def selinux_state(root='/'):
    enabled = os.path.exists(_path(root, 'sys/fs/selinux/enforce'))
    enforce = read_stripped(root, 'sys/fs/selinux/enforce') if enabled else None
    return {'enabled': enabled, 'enforcing': None if enforce is None else enforce == '1'}


def choose_security_driver(requested, apparmor, selinux, none_reason=''):
    """(driver for qemu.conf's security_driver, None) or (None, why not: one sentence of names and states)."""
    absent = 'libvirt 9.0 fails to start with a security driver whose LSM is not running'
    if requested == 'auto':
        if selinux['enabled'] and selinux['enforcing']:
            return 'selinux', None
        if apparmor['enabled']:
            return 'apparmor', None
        return None, ('no usable LSM: AppArmor is not enabled in this kernel and SELinux is not enforcing; '
                      'refusing to run guests unconfined (security_driver none with a '
                      'security_driver_none_reason accepts that).')
    if requested == 'apparmor':
        if apparmor['enabled']:
            return 'apparmor', None
        return None, 'security_driver apparmor: AppArmor is not enabled in this kernel; %s.' % absent
    if requested == 'selinux':
        if not selinux['enabled']:
            return None, 'security_driver selinux: SELinux is not enabled on this host; %s.' % absent
        if selinux['enforcing'] is None:
            return None, 'security_driver selinux: cannot read whether SELinux is enforcing (/sys/fs/selinux/enforce).'
        if not selinux['enforcing']:
            return None, ('security_driver selinux: SELinux is permissive, so the sVirt labels would not be '
                          'enforced; switch SELinux to enforcing first.')
        return 'selinux', None
    if requested == 'none':
        if none_reason and none_reason.strip():
            return 'none', None
        return None, ('security_driver none runs every guest without LSM confinement; it needs '
                      'security_driver_none_reason.')
    raise HostInfoError('security_driver must be one of %s, got %r' % (', '.join(SECURITY_DRIVERS), requested))


def accel(root='/'):
    """'kvm' when /dev/kvm is a character device, else 'tcg'."""
    try:
        mode = os.stat(_path(root, 'dev/kvm')).st_mode
    except (IOError, OSError):
        return 'tcg'
    return 'kvm' if stat.S_ISCHR(mode) else 'tcg'


def kvm_nested(root='/'):
    """{kvm_intel, kvm_amd}: 'Y', 'N' or None (module not loaded)."""
    values = {'1': 'Y', 'Y': 'Y', '0': 'N', 'N': 'N'}
    return dict((name, values.get(read_stripped(root, 'sys/module/%s/parameters/nested' % name)))
                for name in NESTED_MODULES)


def ksm_run(root='/'):
    return read_int(root, 'sys/kernel/mm/ksm/run')


def parse_proc_status(text):
    """{uid, seccomp, cap_eff} of a /proc/<pid>/status (None for what is missing)."""
    fields = {}
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if sep:
            fields[key.strip()] = value.split()
    uid = fields.get('Uid') or []
    seccomp = fields.get('Seccomp') or []
    cap_eff = fields.get('CapEff') or []
    return {
        'uid': int(uid[1]) if len(uid) > 1 and uid[1].isdigit() else None,
        'seccomp': int(seccomp[0]) if seccomp and seccomp[0].isdigit() else None,
        'cap_eff': cap_eff[0] if cap_eff and re.match(r'^[0-9a-fA-F]+$', cap_eff[0]) else None,
    }


def _readlink(root, relative):
    try:
        return os.readlink(_path(root, relative))
    except (IOError, OSError):
        return None


def is_unconfined_label(label):
    """An LSM label that confines nothing: AppArmor's unconfined (or a profile in
    complain mode), SELinux's unconfined_t."""
    if not label:
        return True
    if label == 'unconfined' or label.startswith('unconfined ') or re.search(r'\((complain|unconfined)\)$', label):
        return True
    parts = label.split(':')
    return len(parts) >= 3 and parts[2] == 'unconfined_t'


def guest_process(root, name, uuid):
    """One running guest's qemu process as the kernel shows it."""
    guest = {'name': name, 'uuid': uuid, 'pid': None, 'uid': None, 'seccomp': None, 'cap_eff': None,
             'lsm_label': None, 'own_mount_ns': None, 'confined': False}
    pid = read_int(root, 'run/libvirt/qemu/%s.pid' % name) if name and '/' not in name and not name.startswith('.') else None
    if pid is None or pid <= 0:
        return guest
    guest['pid'] = pid
    proc = 'proc/%s/' % pid
    guest.update(parse_proc_status(read_text(root, proc + 'status')))
    guest['lsm_label'] = read_stripped(root, proc + 'attr/current') or None
    own_ns = _readlink(root, proc + 'ns/mnt')
    init_ns = _readlink(root, 'proc/1/ns/mnt')
    guest['own_mount_ns'] = None if own_ns is None or init_ns is None else own_ns != init_ns
    guest['confined'] = bool(not is_unconfined_label(guest['lsm_label']) and guest['seccomp'] == 2
                             and guest['uid'] is not None and guest['uid'] != 0
                             and guest['cap_eff'] is not None and int(guest['cap_eff'], 16) == 0)
    return guest


def running_guests(conn, root='/'):
    guests = [guest_process(root, dom.name(), dom.UUIDString())
              for dom in conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
    return sorted(guests, key=lambda g: g['name'])


def forwarding_networks(conn):
    """{name, forward, active, autostart} of the networks that route or NAT guest traffic."""
    networks = []
    for net in conn.listAllNetworks(0):
        forward = ET.fromstring(net.XMLDesc(0)).find('forward')
        mode = forward.get('mode', 'nat') if forward is not None else None
        if mode in FORWARDING_MODES:
            networks.append({'name': net.name(), 'forward': mode, 'active': bool(net.isActive()),
                             'autostart': bool(net.autostart())})
    return sorted(networks, key=lambda n: n['name'])


def libvirt_facts(uri, root='/', lv=None):
    """(forwarding networks, running guests, None or why libvirt could not answer)."""
    networks, guests, errors = [], [], []
    try:
        conn = lc.open_connection(uri, readonly=True, lv=lv)
    except lc.LibvirtModuleError as exc:
        return networks, guests, exc.msg
    try:
        try:
            networks = forwarding_networks(conn)
        except Exception as exc:  # libvirt.libvirtError, e.g. no network driver
            errors.append('cannot list the networks: %s' % lc.error_message(exc))
        try:
            guests = running_guests(conn, root)
        except Exception as exc:
            errors.append('cannot list the running guests: %s' % lc.error_message(exc))
    finally:
        try:
            conn.close()
        except Exception:  # closing never hides what was read
            pass
    return networks, guests, '; '.join(errors) or None


def host_warnings(result):
    warnings = []
    if result['accel'] == 'tcg':
        warnings.append('no /dev/kvm: guests run under software emulation (TCG) only')
    if result['unconfined_guests']:
        warnings.append('running guests not confined by the baseline (LSM label, seccomp, non-root uid, no '
                        'capabilities): %s; they must be restarted to run under the baseline'
                        % ', '.join(result['unconfined_guests']))
    return warnings


def host_facts(params, states, root='/', lv=None):
    """The module's result (with 'warnings') from its params and the systemctl states."""
    lsm = lsm_list(root)
    apparmor = apparmor_state(root, lsm)
    selinux = selinux_state(root)
    driver, driver_error = choose_security_driver(params['security_driver'], apparmor, selinux,
                                                  params.get('security_driver_none_reason') or '')
    current, differs = read_sysctls(params.get('sysctls') or {}, root)
    networks, guests, libvirt_error = libvirt_facts(params['uri'], root, lv)
    result = {
        'services': [states[name] for name in params.get('services') or []], 'daemon_layout': daemon_layout(states),
        'sysctl_current': current, 'sysctl_differs': differs,
        'lsm': lsm, 'apparmor': apparmor, 'selinux': selinux,
        'security_driver': driver, 'security_driver_error': driver_error,
        'accel': accel(root), 'kvm_nested': kvm_nested(root), 'ksm_run': ksm_run(root),
        'forwarding_sysctl_conflicts': forwarding_sysctl_conflicts(root, params.get('own_sysctl_file') or ''),
        'forwarding_networks': networks, 'guests': guests,
        'unconfined_guests': sorted(g['name'] for g in guests if not g['confined']),
        'libvirt_error': libvirt_error,
    }
    result['warnings'] = host_warnings(result)
    return result
