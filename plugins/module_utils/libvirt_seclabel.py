# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Logic of secvirt.kvm.libvirt_seclabel (sVirt security labels of a guest)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import seclabel_xml as slx
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    LibvirtModuleError, domain_definitions, domain_xml, error_message, host_security_models,
    live_security_labels, lookup_domain,
)


def run_seclabel(conn, params, check_mode=False, secure=True):
    """Set (state=present) or remove (state=absent) the guest's <seclabel>
    of one security model; report the live labels of a running guest."""
    dom_name = params['domain']
    state = params.get('state') or 'present'
    model = params.get('model')
    spec = {
        'type': params.get('type') or 'dynamic', 'model': model, 'label': params.get('label'),
        'imagelabel': params.get('imagelabel'), 'baselabel': params.get('baselabel'),
        'relabel': params.get('relabel'),
    }
    result = {'changed': False, 'domain': dom_name, 'restart_required': False, 'warnings': []}
    wanted = None
    if state == 'present':
        try:
            spec = slx.validate_seclabel(spec)
        except lx.XMLValidationError as exc:
            raise LibvirtModuleError(str(exc))
        wanted = slx.build_seclabel(spec)
    elif not model:
        raise LibvirtModuleError('model is required with state=absent')

    host_models = [m['model'] for m in host_security_models(conn)]
    result['host_models'] = host_models
    if model and model not in host_models and wanted is not None and wanted.get('type') != 'none':
        if params.get('require_host_model', True):
            raise LibvirtModuleError(
                'this host has no %s security driver (libvirt offers: %s); the guest could not start with '
                'this label. Set require_host_model=false to store it anyway (e.g. before a migration)'
                % (model, ', '.join(host_models) or 'none'))
        result['warnings'].append('the host has no %s security driver; the label is stored but the guest '
                                  'will not start here' % model)

    # validate_seclabel() has made sure that a static SELinux label carries
    # exactly two distinct categories (spec['mcs'])
    if state == 'present' and model == 'selinux' and spec.get('type') == 'static' \
            and params.get('check_unique', True):
        pair = spec['mcs']
        others = []
        for name, inactive, live in domain_definitions(conn):
            for text in (inactive, live):
                if text:
                    others.append((name, lx.parse_xml(text)))
        conflicts = slx.find_mcs_conflicts(dom_name, pair, others)
        if conflicts:
            raise LibvirtModuleError(
                'MCS categories %s:%s of %s overlap or dominate categories already used by %s; a static sVirt '
                'label must share no category with any other guest\'s label, or one guest\'s qemu could open '
                'the other\'s images (libvirt does not check this for you)'
                % (pair[0], ','.join('c%d' % c for c in pair[1]), spec['label'],
                   ', '.join('%s (%s)' % c for c in conflicts)),
                conflicts=[{'domain': n, 'label': lab} for n, lab in conflicts])

    dom = lookup_domain(conn, dom_name)
    active = bool(dom.isActive())
    if not dom.isPersistent():
        raise LibvirtModuleError('guest %s is transient: a security label can only be set in a persistent '
                                 'definition' % dom_name)
    definition = lx.parse_xml(domain_xml(dom, inactive=True, secure=secure), 'domain XML')
    current = slx.domain_seclabels(definition).get(model) if model else None
    if model is None:
        # type none without a model: compare with the model-less label
        current = slx.domain_seclabels(definition).get(None)
    before = lx.to_string(current) if current is not None else ''
    after = lx.to_string(wanted) if wanted is not None else ''
    result['seclabel'] = after
    result['diff'] = lx.diff_dict(before, after, 'guest %s seclabel (defined)' % dom_name,
                                  'guest %s seclabel (wanted)' % dom_name)
    if slx.canonical_seclabel(current) != slx.canonical_seclabel(wanted):
        result['changed'] = True
        result['restart_required'] = active
        if active:
            result['warnings'].append('guest %s is running: the new security label applies from its next start'
                                      % dom_name)
        if not check_mode:
            slx.set_domain_seclabel(definition, wanted, model)
            try:
                conn.defineXML(lx.to_string(definition, pretty=False))
            except Exception as exc:
                raise LibvirtModuleError('libvirt refused the security label for guest %s: %s'
                                         % (dom_name, error_message(exc)))
    else:
        result['seclabel'] = before

    result['active'] = active
    if active:
        labels = live_security_labels(conn, dom)
        result['live_labels'] = labels
        live_model = [lab for lab in labels if lab['model'] == model]
        result['live_label'] = live_model[0]['label'] if live_model else None
        live_elem = slx.domain_seclabels(lx.parse_xml(domain_xml(dom), 'live domain XML')).get(model)
        result['live_imagelabel'] = live_elem.findtext('imagelabel') if live_elem is not None else None
    return result
