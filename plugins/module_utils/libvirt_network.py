# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt networks that hand guests an existing host bridge (<forward mode='bridge'/>).

The libvirt connection is passed in, so unit tests run it against a fake
connection; XML canonicalisation is libvirt_xml's, errors are libvirt_common's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    LibvirtModuleError, error_code,
)

# libvirt constants, repeated here so that this file imports without libvirt.
VIR_ERR_NO_NETWORK = 43
VIR_NETWORK_XML_INACTIVE = 1

NAME_RE = re.compile(r'^[^/\s]+$')
BRIDGE_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$')
# Elements libvirt adds or keeps per host that say nothing about what a
# network is: they never count as a difference.
IGNORED = ('uuid',)


def bridge_network_xml(name, bridge):
    """Definition of a network that attaches guests to host bridge ``bridge``."""
    if not name or not NAME_RE.match(name):
        raise LibvirtModuleError('invalid network name %r' % (name,))
    if not bridge or not BRIDGE_RE.match(bridge):
        raise LibvirtModuleError('invalid bridge name %r (at most 15 characters)' % (bridge,))
    root = ET.Element('network')
    ET.SubElement(root, 'name').text = name
    ET.SubElement(root, 'forward', {'mode': 'bridge'})
    ET.SubElement(root, 'bridge', {'name': bridge})
    return lx.to_string(root) + '\n'


def canonical(xml_text):
    """A comparable form of a network definition: no uuid, whitespace or attribute order."""
    try:
        root = lx.parse_xml(xml_text, 'network XML')
    except lx.XMLValidationError as exc:
        raise LibvirtModuleError('cannot parse network XML: %s' % exc)
    if root.tag != 'network':
        raise LibvirtModuleError('not a <network> definition: <%s>' % root.tag)
    return lx.canonical(root, drop=IGNORED)


def describe(xml_text):
    """name, forward mode and bridge of a network definition."""
    root = ET.fromstring(xml_text)
    forward = root.find('forward')
    bridge = root.find('bridge')
    return {
        'name': (root.findtext('name') or '').strip(),
        'forward_mode': forward.get('mode', 'nat') if forward is not None else 'isolated',
        'bridge': bridge.get('name') if bridge is not None else None,
    }


def _lookup(conn, name):
    try:
        return conn.networkLookupByName(name)
    except Exception as exc:  # libvirt.libvirtError
        if error_code(exc) == VIR_ERR_NO_NETWORK:
            return None
        raise


def _ports(net):
    """Guest interfaces plugged into the network (empty if it is not running)."""
    try:
        if not net.isActive():
            return []
        return [p.getUUIDString() for p in net.listAllPorts()]
    except AttributeError:  # libvirt < 5.5 has no network port API
        return []


def run_network(conn, params, check_mode=False):
    """Bring one libvirt network to the wanted state; returns the module result."""
    name = params['name']
    state = params.get('state', 'present')
    net = _lookup(conn, name)
    result = {'changed': False, 'name': name, 'actions': [], 'warnings': []}
    before_xml = net.XMLDesc(VIR_NETWORK_XML_INACTIVE) if net is not None and net.isPersistent() else ''

    if state == 'absent':
        result['diff'] = {'before': before_xml, 'after': ''}
        if net is None:
            return result
        ports = _ports(net)
        if ports and not params.get('force'):
            raise LibvirtModuleError('network %s still has %d guest interface(s) attached; stop or move those '
                                     'guests first, or set force=true' % (name, len(ports)), ports=ports)
        if net.isActive():
            result['actions'].append('stop')
            if not check_mode:
                net.destroy()
        try:
            persistent = net.isPersistent()
        except Exception:  # a transient network is gone once stopped
            persistent = False
        if persistent:
            result['actions'].append('undefine')
            if not check_mode:
                net.undefine()
        result['changed'] = bool(result['actions'])
        return result

    wanted_xml = bridge_network_xml(name, params['bridge'])
    if net is not None and before_xml:
        current = describe(before_xml)
        if current['forward_mode'] != 'bridge' and not params.get('force'):
            raise LibvirtModuleError('network %s exists with forward mode %s; refusing to turn it into a bridge '
                                     'network (remove it first or set force=true)'
                                     % (name, current['forward_mode']))
    needs_define = net is None or not before_xml or canonical(before_xml) != canonical(wanted_xml)
    result['diff'] = {'before': before_xml, 'after': wanted_xml if needs_define else before_xml}
    if needs_define:
        result['actions'].append('define' if net is None or not before_xml else 'redefine')
        if not check_mode:
            if net is not None and before_xml:
                # Keep the uuid: guests and port bindings refer to it.
                root = ET.fromstring(wanted_xml)
                uuid = ET.Element('uuid')
                uuid.text = net.UUIDString()
                root.insert(1, uuid)
                net = conn.networkDefineXML(ET.tostring(root, encoding='unicode'))
            else:
                net = conn.networkDefineXML(wanted_xml)
    active = net.isActive() if net is not None else False
    if needs_define and active and 'define' not in result['actions']:
        # The running network keeps its old definition until restarted.
        ports = _ports(net)
        if ports and not params.get('force'):
            result['restart_pending'] = True
            result['warnings'].append('network %s runs with its old definition until it is restarted; %d guest '
                                      'interface(s) are attached, so it was not restarted' % (name, len(ports)))
        else:
            result['actions'].append('restart')
            if not check_mode:
                net.destroy()
                net.create()
    if params.get('active', True) and not active:
        result['actions'].append('start')
        if not check_mode:
            net.create()
    elif not params.get('active', True) and active:
        result['actions'].append('stop')
        if not check_mode:
            net.destroy()
    # net is None only in check mode, for a network not defined yet.
    autostart = bool(net.autostart()) if net is not None else False
    if bool(params.get('autostart', True)) != autostart:
        result['actions'].append('autostart' if params.get('autostart', True) else 'no autostart')
        if not check_mode:
            net.setAutostart(1 if params.get('autostart', True) else 0)
    result['changed'] = bool(result['actions'])
    result['xml'] = wanted_xml if check_mode or net is None else net.XMLDesc(VIR_NETWORK_XML_INACTIVE)
    return result
