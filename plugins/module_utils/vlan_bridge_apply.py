# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""802.1Q VLAN guest bridges: plan and transactional apply.

Plain Python (no Ansible import) so that unit tests drive it with a fake host.

The files rendered by ``vlan_bridge`` configure the host's own network stack
(ifupdown's ``/etc/network/interfaces.d`` or systemd-networkd's
``/etc/systemd/network``); the runtime change is made by that stack too
(``ifup``/``ifdown`` of the guest bridges only, ``networkctl reload``), so a
configuration that would not come back after a reboot fails now, while the
previous state can still be restored. The management interface is never named
in any command, and its addresses are compared before and after.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge import (
    BACKENDS, IFUPDOWN_DIR, IFUPDOWN_MAIN, IFUPDOWN_PREFIX, NETWORKD_DIR, SYSCTL_DIR, VlanBridgeError,
    bridge_paths, normalize_networks, owned_file, sysctl_settings, validate, wanted_files,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.vlan_bridge_host import (
    foreign_ports, guest_ports, network_problems, parse_ifupdown_ifaces, parse_links,
)


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
        wanted = wanted_files(self.backend, self.networks, current, self.isolate_trunks)
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
