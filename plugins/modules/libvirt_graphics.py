#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: libvirt_graphics
short_description: Report and secure the VNC and SPICE consoles of every guest on a host, in one call
version_added: 0.2.0
description:
  - Reads every guest's definition and, for running guests, the command line of its QEMU process, and reports
    which consoles accept plaintext now (the running QEMU) and at the next start (the definition).
  - With qemu.conf C(vnc_tls=1) every network VNC console libvirt starts is VeNCrypt/x509 only, but
    C(spice_tls=1) only adds a TLS port. A SPICE console keeps its plaintext port unless its definition says
    C(defaultMode='secure'). With O(secure_spice) the module rewrites those definitions (the persistent
    definition only; a running guest keeps its console until it is restarted, and is listed in
    RV(restart_needed)). It never starts, stops or restarts a guest unless O(restart_guests) asks for it.
  - Reports console listen addresses in a guest's definition that are not in O(allowed_listen) (a guest's own
    C(listen) overrides qemu.conf's C(vnc_listen)/C(spice_listen)).
  - With O(reload_certificates), running guests whose VNC console still serves a certificate older than
    O(certificate_path) reload it in place (virDomainGraphicsReload, libvirt 10.2 and later). SPICE cannot
    reload, so those guests (and every guest on an older libvirt) are listed in RV(stale_certificate). What was
    reloaded is remembered per QEMU process in O(state_path), so a second run reloads nothing.
author:
  - secvirt.kvm contributors (@secvirt)
extends_documentation_fragment:
  - secvirt.kvm.attributes.full
  - secvirt.kvm.libvirt
options:
  secure_spice:
    description:
      - Rewrite every guest definition whose SPICE console would accept plaintext to C(defaultMode='secure')
        (explicitly insecure channels become secure, a fixed plaintext port is dropped).
    type: bool
    default: false
  allowed_listen:
    description: Addresses consoles may listen on. Explicit listens elsewhere (or on a libvirt network) are reported.
    type: list
    elements: str
    default: []
  reload_certificates:
    description: Reload the VNC certificate of running guests that serve an older one (libvirt 10.2 and later).
    type: bool
    default: true
  restart_guests:
    description:
      - Restart the QEMU process of every persistent guest in RV(restart_needed) without rebooting the guest;
        its state is saved (virDomainManagedSave) and restored at once by a new QEMU process that serves the
        consoles as qemu.conf and the definition now ask. The guest pauses for as long as saving and restoring
        its memory takes. Transient guests cannot be saved this way and stay listed.
    type: bool
    default: false
  certificate_path:
    description: The VNC server certificate QEMU reads (qemu.conf C(vnc_tls_x509_cert_dir)C(/server-cert.pem)).
    type: path
    default: /etc/pki/libvirt-vnc/server-cert.pem
  state_path:
    description: Where the module records which QEMU process reloaded which certificate (mode 0600).
    type: path
    default: /var/lib/libvirt/secvirt-graphics.json
notes:
  - Runs on the hypervisor as root (it reads C(/proc/<pid>/cmdline) of the QEMU processes).
'''

EXAMPLES = r'''
- name: Report consoles that accept plaintext, make SPICE TLS-only in every definition
  secvirt.kvm.libvirt_graphics:
    secure_spice: true
    allowed_listen: [192.0.2.10]
  register: consoles

- name: Say which running guests keep a plaintext console until restarted
  ansible.builtin.debug:
    var: consoles.restart_needed
'''

RETURN = r'''
guests:
  description: Each guest's consoles, as defined (C(graphics)) and, when it runs, as its QEMU serves them (C(served)).
  returned: always
  type: list
  elements: dict
plaintext_defined:
  description: Guests whose definition still starts a console that accepts plaintext (after O(secure_spice)).
  returned: always
  type: list
  elements: str
plaintext_running:
  description: Running guests whose QEMU serves a console that accepts plaintext now.
  returned: always
  type: list
  elements: str
secured:
  description: Guests whose definition was (in check mode would be) rewritten to a TLS-only SPICE console.
  returned: always
  type: list
  elements: str
listen_outside:
  description: Guests (name to addresses) whose definition listens outside O(allowed_listen).
  returned: always
  type: dict
reloaded:
  description: Running guests whose VNC certificate was (in check mode would be) reloaded.
  returned: always
  type: list
  elements: str
stale_certificate:
  description: Running guests that serve an older console certificate until they are restarted.
  returned: always
  type: list
  elements: str
restarted:
  description: Guests whose QEMU process was (in check mode would be) restarted through a managed save (O(restart_guests)).
  returned: always
  type: list
  elements: str
restart_needed:
  description: Running guests that need a restart to serve TLS-only consoles with the current certificate (after O(restart_guests)).
  returned: always
  type: list
  elements: str
can_reload:
  description: Whether this libvirt can reload a running guest's VNC certificate (10.2 and later).
  returned: always
  type: bool
'''

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.secvirt.kvm.plugins.module_utils.file_write import replace_file
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    domain_xml, run_libvirt_module, uri_argument_spec)
from ansible_collections.secvirt.kvm.plugins.module_utils.qemu_graphics import (
    GraphicsXMLError, analyse_cmdline, analyse_definition, certificate_reload_plan, listens_outside,
    parse_proc_stat_start, secure_spice_xml)

RUN_DIR = '/run/libvirt/qemu'
GRAPHICS_RELOAD_VNC = 1  # VIR_DOMAIN_GRAPHICS_RELOAD_TYPE_VNC


def _read(path, mode='r'):
    with open(path, mode) as fh:
        return fh.read()


def _boot_time():
    for line in _read('/proc/stat').splitlines():
        if line.startswith('btime '):
            return int(line.split()[1])
    return 0


def _process(name):
    """(pid, argv, start time in epoch seconds) of a running guest's QEMU, or None."""
    try:
        pid = int(_read(os.path.join(RUN_DIR, '%s.pid' % name)).strip())
        argv = [a.decode('utf-8', 'replace') for a in _read('/proc/%d/cmdline' % pid, 'rb').split(b'\0') if a]
        ticks = parse_proc_stat_start(_read('/proc/%d/stat' % pid))
    except (IOError, OSError, ValueError):
        return None
    return pid, argv, _boot_time() + ticks / float(os.sysconf('SC_CLK_TCK'))


def _fingerprint(path):
    import hashlib
    try:
        data = _read(path, 'rb')
    except (IOError, OSError):
        return None, 0
    return hashlib.sha256(data).hexdigest(), os.stat(path).st_mtime


def run_graphics(module, conn):
    params = module.params
    check = module.check_mode
    domains_all = conn.listAllDomains(0)
    # the daemon (10.2 and later) and the Python binding must both know virDomainGraphicsReload
    can_reload = conn.getLibVersion() >= 10002000 and all(hasattr(dom, 'graphicsReload') for dom in domains_all)
    result = dict(changed=False, guests=[], plaintext_defined=[], plaintext_running=[], secured=[],
                  listen_outside={}, reloaded=[], stale_certificate=[], restart_needed=[], can_reload=can_reload)
    running = {}
    domains = {}
    for dom in domains_all:
        name = dom.name()
        domains[name] = dom
        active = bool(dom.isActive())
        inactive_xml = domain_xml(dom, inactive=True, secure=not check) if dom.isPersistent() else domain_xml(dom)
        try:
            graphics = analyse_definition(inactive_xml)
        except GraphicsXMLError as exc:
            module.fail_json(msg='guest %s: %s' % (name, exc))
        entry = {'name': name, 'active': active, 'persistent': bool(dom.isPersistent()), 'graphics': graphics}
        if params['secure_spice'] and dom.isPersistent() and any(g['plaintext'] for g in graphics):
            fixed = secure_spice_xml(inactive_xml)
            if fixed is not None:
                if not check:
                    conn.defineXML(fixed)
                    graphics = analyse_definition(domain_xml(dom, inactive=True))
                    entry['graphics'] = graphics
                else:
                    graphics = analyse_definition(fixed)
                result['secured'].append(name)
        if any(g['plaintext'] for g in graphics):
            result['plaintext_defined'].append(name)
        outside = listens_outside(graphics, params['allowed_listen'])
        if outside:
            result['listen_outside'][name] = outside
        if active:
            proc = _process(name)
            if proc is not None:
                pid, argv, started = proc
                served = analyse_cmdline(argv)
                entry['served'] = served
                entry['pid'] = pid
                if any(c['plaintext'] for c in served['vnc'] + served['spice']):
                    result['plaintext_running'].append(name)
                if served['vnc'] or served['spice']:
                    running[dom.UUIDString()] = {'name': name, 'pid': pid, 'started': started,
                                                 'vnc': bool(served['vnc']), 'spice': bool(served['spice'])}
        result['guests'].append(entry)

    fingerprint, cert_mtime = _fingerprint(params['certificate_path'])
    if fingerprint is not None and params['reload_certificates']:
        try:
            state = json.loads(_read(params['state_path']))
        except (IOError, OSError, ValueError):
            state = {}
        reload_names, stale, new_state = certificate_reload_plan(running, cert_mtime, state, fingerprint, can_reload)
        for name in reload_names:
            if not check:
                domains[name].graphicsReload(GRAPHICS_RELOAD_VNC, 0)
            result['reloaded'].append(name)
        result['stale_certificate'] = stale
        if new_state != state and not check:
            replace_file(module, params['state_path'], json.dumps(new_state, sort_keys=True, indent=1) + '\n')
            os.chmod(params['state_path'], 0o600)
    result['restart_needed'] = sorted(set(result['plaintext_running']) | set(result['stale_certificate']))
    result['restarted'] = []
    if params['restart_guests']:
        for name in list(result['restart_needed']):
            dom = domains[name]
            if not dom.isPersistent():
                continue
            if not check:
                dom.managedSave(0)
                dom.create()
            result['restarted'].append(name)
            result['restart_needed'].remove(name)
            for key in ('plaintext_running', 'stale_certificate'):
                if name in result[key]:
                    result[key].remove(name)
    result['changed'] = bool(result['secured'] or result['reloaded'] or result['restarted'])
    for name in result['restart_needed']:
        result.setdefault('warnings', []).append(
            'guest %s keeps serving %s until it is restarted (the role never restarts a guest)'
            % (name, 'a plaintext console' if name in result['plaintext_running'] else 'an older console certificate'))
    for name, addresses in sorted(result['listen_outside'].items()):
        result.setdefault('warnings', []).append(
            'guest %s: a console listens on %s, outside the allowed addresses %s'
            % (name, ', '.join(addresses), ', '.join(params['allowed_listen']) or '(none)'))
    result['diff'] = {
        'before': {'plaintext_defined': sorted(set(result['plaintext_defined']) | set(result['secured']))},
        'after': {'plaintext_defined': result['plaintext_defined'], 'reloaded': result['reloaded']},
    }
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **uri_argument_spec(),
            secure_spice=dict(type='bool', default=False),
            allowed_listen=dict(type='list', elements='str', default=[]),
            reload_certificates=dict(type='bool', default=True),
            restart_guests=dict(type='bool', default=False),
            certificate_path=dict(type='path', default='/etc/pki/libvirt-vnc/server-cert.pem'),
            state_path=dict(type='path', default='/var/lib/libvirt/secvirt-graphics.json'),
        ),
        supports_check_mode=True,
    )
    run_libvirt_module(module, lambda conn: run_graphics(module, conn), readonly=module.check_mode)


if __name__ == '__main__':
    main()
