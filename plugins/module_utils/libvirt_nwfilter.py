# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Logic of secvirt.kvm.libvirt_nwfilter and secvirt.kvm.libvirt_nwfilter_binding.

Functions take an open libvirt connection (or a fake one in the unit tests)
and the module parameters, and return the module result dictionary.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils import bridge_netfilter as bn
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    AFFECT_CONFIG, AFFECT_LIVE, LIVE_UNSUPPORTED_ERRORS, LibvirtModuleError,
    domain_definitions, domain_xml, error_code, error_message, lookup_domain,
    lookup_nwfilter, nwfilter_bindings,
)


# --------------------------------------------------------------------------
# layer-3/4 rules and br_netfilter (both modules)
# --------------------------------------------------------------------------

def nwfilter_xml_lookup(conn):
    """A lookup callable for bridge_netfilter.resolve_layer3(): a filter's XML,
    None when it is not defined (read-only calls; other errors propagate)."""
    def lookup(name):
        nwf = lookup_nwfilter(conn, name)
        return nwf.XMLDesc(0) if nwf is not None else None
    return lookup


def _layer3_precheck(conn, name, params, proc_root, bridge=None, xml=None):
    """Resolve the layer-3/4 rules of filter ``name`` (and the filters it
    includes); with bridge_netfilter=fail refuse now, before any change, when
    the host would not enforce them. Returns the resolution."""
    found = bn.resolve_layer3(name, nwfilter_xml_lookup(conn), xml=xml)
    if (params.get('bridge_netfilter') or 'warn') == 'fail':
        facts, message = bn.judge(name, found, uri=params.get('uri'), bridge=bridge, root=proc_root)
        if message:
            raise LibvirtModuleError(message + ' Refused (bridge_netfilter=fail); nothing was changed.', **facts)
    return found


def _layer3_report(result, name, found, params, proc_root, bridge=None):
    """Add the layer-3 facts and, with bridge_netfilter=warn, the warning, as
    the host is after the change: the physdev match of libvirt's iptables
    rules makes the kernel load br_netfilter (with its defaults)."""
    facts, message = bn.judge(name, found, uri=params.get('uri'), bridge=bridge, root=proc_root)
    result.update(facts)
    if message and (params.get('bridge_netfilter') or 'warn') == 'warn':
        result['warnings'].append(message)


def _interface_bridge(elems, mac):
    """The host bridge of the interface with this MAC (live definition first), or None."""
    for elem in elems:
        iface = lx.find_interface(elem, mac=mac) if elem is not None else None
        source = iface.find('source') if iface is not None else None
        if source is not None and source.get('bridge'):
            return source.get('bridge')
    return None


# --------------------------------------------------------------------------
# secvirt.kvm.libvirt_nwfilter
# --------------------------------------------------------------------------

def desired_nwfilter(params):
    """The <filter> Element the parameters ask for (validated)."""
    name = params.get('name')
    if params.get('xml'):
        elem = lx.parse_xml(params['xml'], 'xml')
        if elem.tag == 'filter' and not elem.get('name') and name:
            elem.set('name', name)
        nfx.validate_nwfilter(elem)
        if name and elem.get('name') != name:
            raise LibvirtModuleError('name %s does not match the name %s in xml' % (name, elem.get('name')))
        return elem
    return nfx.build_nwfilter(name, chain=params.get('chain'), priority=params.get('priority'),
                              rules=params.get('rules'), filterrefs=params.get('filterrefs'))


def filter_users(conn, name):
    """Who references filter ``name``: (filters, guests) lists of names.

    Guests count through their persistent definition and, when running, their
    live XML (a filter attached live only is in use as well).
    """
    filters = []
    for nwf in conn.listAllNWFilters(0):
        if nwf.name() == name:
            continue
        if name in nfx.nwfilter_references(nwf.XMLDesc(0)):
            filters.append(nwf.name())
    guests = []
    for dom_name, inactive, live in domain_definitions(conn):
        for text in (inactive, live):
            if text and any(ref == name for _mac, ref in nfx.domain_filter_references(lx.parse_xml(text))):
                if dom_name not in guests:
                    guests.append(dom_name)
    return sorted(filters), sorted(guests)


def list_nwfilters(conn, name=None):
    """Module result of secvirt.kvm.libvirt_nwfilter_info: filters (all, or ``name``)
    with their XML and where they are referenced, plus the live bindings."""
    filters = []
    users = {}
    for nwf in conn.listAllNWFilters(0):
        for ref in nfx.nwfilter_references(nwf.XMLDesc(0)):
            users.setdefault(ref, {'filters': [], 'guests': []})['filters'].append(nwf.name())
    for dom_name, inactive, live in domain_definitions(conn):
        for text in (inactive, live):
            for _mac, ref in nfx.domain_filter_references(lx.parse_xml(text)) if text else []:
                guests = users.setdefault(ref, {'filters': [], 'guests': []})['guests']
                if dom_name not in guests:
                    guests.append(dom_name)
    for nwf in sorted(conn.listAllNWFilters(0), key=lambda f: f.name()):
        if name and nwf.name() != name:
            continue
        xml = nwf.XMLDesc(0)
        summary = nfx.nwfilter_summary(xml)
        summary['xml'] = xml
        used = users.get(nwf.name(), {'filters': [], 'guests': []})
        summary['referenced_by'] = {'filters': sorted(used['filters']), 'guests': sorted(used['guests'])}
        filters.append(summary)
    if name and not filters:
        raise LibvirtModuleError('network filter %s is not defined' % name)
    return {'changed': False, 'filters': filters, 'bindings': nwfilter_bindings(conn)}


def _diff_text(xml):
    """A filter as --diff shows it: canonical (libvirt's defaults explicit, no uuid), indented."""
    return lx.to_string(lx.parse_xml(nfx.canonical_nwfilter(xml)))


def run_nwfilter(conn, params, check_mode=False, proc_root=None):
    """state=present|absent for one filter; returns the module result.

    ``proc_root`` is where the host's /proc and /sys are read (tests)."""
    state = params.get('state') or 'present'
    name = params.get('name')
    if not name and params.get('xml'):
        name = lx.parse_xml(params['xml'], 'xml').get('name')
    if not name:
        raise LibvirtModuleError('name (or a name attribute in xml) is required')
    nfx.validate_nwfilter_name(name)
    current = lookup_nwfilter(conn, name)
    before = current.XMLDesc(0) if current is not None else ''
    result = {'changed': False, 'name': name, 'warnings': []}

    if state == 'absent':
        result['diff'] = lx.diff_dict(before, '', 'filter %s' % name, 'filter %s (undefined)' % name)
        if current is None:
            return result
        filters, guests = filter_users(conn, name)
        result['referenced_by'] = {'filters': filters, 'guests': guests}
        if (filters or guests) and not params.get('force'):
            raise LibvirtModuleError(
                'refusing to undefine network filter %s: it is referenced by filter(s) [%s] and guest(s) [%s]; '
                'remove the references first or set force=true' % (name, ', '.join(filters), ', '.join(guests)),
                referenced_by=result['referenced_by'])
        result['changed'] = True
        if not check_mode:
            try:
                current.undefine()
            except Exception as exc:
                raise LibvirtModuleError('libvirt refused to undefine network filter %s: %s'
                                         % (name, error_message(exc)))
        return result

    params = dict(params, name=name)
    wanted = desired_nwfilter(params)
    missing = [ref for ref in nfx.nwfilter_references(wanted)
               if ref != name and lookup_nwfilter(conn, ref) is None]
    if name in nfx.nwfilter_references(wanted):
        raise LibvirtModuleError('network filter %s must not reference itself' % name)
    if missing:
        result['warnings'].append('filter %s references undefined filter(s) %s; guests using it will fail to '
                                  'start until they exist' % (name, ', '.join(missing)))
    found = _layer3_precheck(conn, name, params, proc_root, xml=wanted)
    if current is not None:
        # keep the filter's identity: libvirt refuses a redefinition whose
        # uuid differs from the existing filter's
        uuid = current.UUIDString()
        for old in wanted.findall('uuid'):
            wanted.remove(old)
        node = ET.Element('uuid')
        node.text = uuid
        wanted.insert(0, node)
    after_text = lx.to_string(wanted)
    result['xml'] = after_text
    # the diff compares canonical forms, so that defaults libvirt adds (chain
    # and rule priorities) and the uuid do not show up as changes
    result['diff'] = lx.diff_dict(_diff_text(before) if before else '', _diff_text(wanted),
                                  'filter %s (defined)' % name, 'filter %s (wanted)' % name)
    _layer3_report(result, name, found, params, proc_root)
    if before and nfx.canonical_nwfilter(before) == nfx.canonical_nwfilter(wanted):
        result['xml'] = before
        result['diff']['after'] = result['diff']['before']
        return result
    result['changed'] = True
    if check_mode:
        return result
    try:
        defined = conn.nwfilterDefineXML(after_text)
    except Exception as exc:
        raise LibvirtModuleError('libvirt refused network filter %s: %s' % (name, error_message(exc)),
                                 xml=after_text)
    result['xml'] = defined.XMLDesc(0)
    if nfx.canonical_nwfilter(result['xml']) != nfx.canonical_nwfilter(wanted):
        result['warnings'].append('libvirt stored filter %s differently from the request; the next run will '
                                  'report a change again. Stored XML: %s' % (name, result['xml']))
    return result


# --------------------------------------------------------------------------
# secvirt.kvm.libvirt_nwfilter_binding
# --------------------------------------------------------------------------

def _interface_or_fail(domain_elem, mac, target_dev, dom_name, where):
    iface = lx.find_interface(domain_elem, mac=mac, target_dev=target_dev)
    if iface is None:
        raise LibvirtModuleError('guest %s has no interface with %s in its %s definition'
                                 % (dom_name, ('MAC %s' % mac) if mac else ('target device %s' % target_dev), where))
    return iface


def run_binding(conn, params, check_mode=False, proc_root=None):
    """Attach/detach a <filterref> to one guest interface, persistent and live.

    ``proc_root`` is where the host's /proc and /sys are read (tests)."""
    dom_name = params['domain']
    state = params.get('state') or 'present'
    mac, target_dev = params.get('mac'), params.get('target_dev')
    if not mac and not target_dev:
        raise LibvirtModuleError('one of mac or target_dev is required')
    dom = lookup_domain(conn, dom_name)
    active = bool(dom.isActive())
    persistent = bool(dom.isPersistent())
    live_elem = lx.parse_xml(domain_xml(dom), 'live domain XML') if active else None
    config_elem = lx.parse_xml(domain_xml(dom, inactive=True), 'domain XML') if persistent else None

    if mac:
        mac = lx.normalize_mac(mac)
    else:
        # target devices (vnetN) are named when the guest starts: look in the
        # live definition first
        iface = None
        for elem in (live_elem, config_elem):
            if elem is not None and iface is None:
                iface = lx.find_interface(elem, target_dev=target_dev)
        if iface is None:
            raise LibvirtModuleError('guest %s has no interface with target device %s%s'
                                     % (dom_name, target_dev, '' if active else ' (the guest is not running)'))
        mac = lx.interface_mac(iface)

    wanted_ref = None
    if state == 'present':
        if not params.get('filter'):
            raise LibvirtModuleError('filter is required with state=present')
        if lookup_nwfilter(conn, params['filter']) is None:
            raise LibvirtModuleError('network filter %s is not defined; define it first (secvirt.kvm.libvirt_nwfilter)'
                                     % params['filter'])
        wanted_ref = nfx.filterref_element(params['filter'], params.get('parameters'))
    wanted_text = nfx.canonical_filterref(wanted_ref)

    result = {'changed': False, 'domain': dom_name, 'mac': mac, 'restart_required': False,
              'config_changed': False, 'live_changed': False, 'warnings': []}
    bridge = _interface_bridge((live_elem, config_elem), mac)
    found = _layer3_precheck(conn, params['filter'], params, proc_root, bridge) if state == 'present' else None
    diff_before, diff_after = [], []

    if config_elem is not None:
        iface = _interface_or_fail(config_elem, mac, None, dom_name, 'persistent')
        current_ref = iface.find('filterref')
        diff_before.append('<!-- persistent -->\n' + (lx.to_string(current_ref) if current_ref is not None else ''))
        diff_after.append('<!-- persistent -->\n' + (lx.to_string(wanted_ref) if wanted_ref is not None else ''))
        if nfx.canonical_filterref(current_ref) != wanted_text:
            result['config_changed'] = True
            if not check_mode:
                nfx.set_interface_filterref(iface, wanted_ref)
                _update_device(dom, iface, AFFECT_CONFIG, dom_name, 'persistent definition')

    if live_elem is not None and params.get('live', True):
        iface = _interface_or_fail(live_elem, mac, None, dom_name, 'live')
        result['target_dev'] = lx.interface_target(iface)
        current_ref = iface.find('filterref')
        diff_before.append('<!-- live -->\n' + (lx.to_string(current_ref) if current_ref is not None else ''))
        diff_after.append('<!-- live -->\n' + (lx.to_string(wanted_ref) if wanted_ref is not None else ''))
        if nfx.canonical_filterref(current_ref) != wanted_text:
            result['live_changed'] = True
            if not check_mode:
                nfx.set_interface_filterref(iface, wanted_ref)
                try:
                    _update_device(dom, iface, AFFECT_LIVE, dom_name, 'running guest', raw=True)
                except Exception as exc:
                    if error_code(exc) not in LIVE_UNSUPPORTED_ERRORS:
                        raise LibvirtModuleError('libvirt refused to change the filter of the running guest %s: %s'
                                                 % (dom_name, error_message(exc)))
                    result['live_changed'] = False
                    result['restart_required'] = True
                    result['warnings'].append('libvirt cannot change the filter of the running guest %s (%s); '
                                              'restart the guest to apply it' % (dom_name, error_message(exc)))
    elif active and not params.get('live', True):
        result['restart_required'] = result['config_changed']

    result['changed'] = result['config_changed'] or result['live_changed']
    result['filterref'] = lx.to_string(wanted_ref) if wanted_ref is not None else ''
    result['diff'] = lx.diff_dict('\n'.join(diff_before), '\n'.join(diff_after),
                                  'guest %s interface %s' % (dom_name, mac), 'guest %s interface %s' % (dom_name, mac))
    if active and not check_mode:
        dev = result.get('target_dev')
        result['bindings'] = [b for b in nwfilter_bindings(conn) if b['portdev'] == dev]
    if found is not None:
        _layer3_report(result, params['filter'], found, params, proc_root, bridge)
    return result


def _update_device(dom, iface, flags, dom_name, where, raw=False):
    try:
        dom.updateDeviceFlags(lx.to_string(iface), flags)
    except Exception as exc:
        if raw:
            raise
        raise LibvirtModuleError('libvirt refused to update interface %s of guest %s in its %s: %s'
                                 % (lx.interface_mac(iface), dom_name, where, error_message(exc)))
