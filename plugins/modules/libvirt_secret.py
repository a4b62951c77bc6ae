#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: libvirt_secret
short_description: Private libvirt secrets (LUKS volume keys, Ceph/iSCSI auth, TLS, vTPM) set from the vault
version_added: 0.1.0
description:
  - Defines a libvirt secret with C(private='yes') (libvirt never hands its value back to any client)
    identified by its usage (a volume path, a Ceph or TLS name, an iSCSI target), and sets its value
    from a C(no_log) option. The value is never written to a file by this module.
  - By default the secret is C(ephemeral='yes') - kept only in the daemon's memory. libvirt before 12.1
    (Debian 12 has 9.0) stores the value of a persistent secret base64-encoded, not encrypted, in
    C(/etc/libvirt/secrets/<uuid>.base64); the module warns when O(ephemeral=false) on such a version.
    The price of an ephemeral secret is that libvirt drops it, definition and value, whenever the daemon
    that holds it (libvirtd, or virtsecretd on a modular host) stops or restarts - also a restart by a
    handler later in the same play. Run the task again after every such restart and before starting
    the guests that need it (like opening a LUKS volume by hand). The module returns RV(ephemeral) and
    warns each time it sets an ephemeral value, as a reminder that it will not survive a restart.
  - A secret that exists without a value (a C(setValue) that failed after the secret was defined, or a
    secret defined by hand) gets its value whatever O(update_value) says, when libvirt reveals that.
    It does for a non-private secret, but never for a private one (RV(has_value) is then null). So
    that this module cannot leave a private secret without a value, it undefines a secret it has just
    defined when setting the value fails, and sets the value of an existing secret before it records a
    new fingerprint (O(update_value=on_change)).
  - Because a private secret cannot be read back, the module cannot compare values. O(update_value)
    says when the value is (re)set; see its description.
  - It exists beside C(community.libvirt.virt_secret) so that the collection needs no other collection and
    so that the encrypted_storage role gets what it relies on - private and ephemeral secrets by default,
    the O(update_value) policies with a keyed fingerprint, and never a private secret left without a value.
author:
  - secvirt.kvm contributors (@secvirt)
options:
  usage_type:
    description:
      - What the secret is for.
    type: str
    choices: [volume, ceph, iscsi, tls, vtpm]
    default: volume
  usage_id:
    description:
      - The volume path (V(volume)), the name (V(ceph), V(tls), V(vtpm)) or the target (V(iscsi))
        that identifies the secret.
    type: str
    required: true
  uuid:
    description:
      - Fixed UUID for the secret (libvirt chooses one when unset). When set, the secret is looked up by it.
    type: str
  description:
    description:
      - Free text for the secret's C(<description>).
    type: str
  state:
    description:
      - V(present) defines the secret and sets its value; V(absent) undefines it (and its value).
    type: str
    choices: [present, absent]
    default: present
  value:
    description:
      - The secret value. Required when O(state=present).
    type: str
  value_encoding:
    description:
      - V(text) stores the UTF-8 bytes of O(value); V(base64) stores the bytes O(value) encodes
        (Ceph keys, binary keys).
    type: str
    choices: [text, base64]
    default: text
  update_value:
    description:
      - V(on_create) sets the value only when the module defines (or has to re-define) the secret, or
        when the secret is known to have no value. This is right for volume encryption keys, whose value
        must not change unless the volume is re-keyed.
      - V(always) sets the value on every run; the task then always reports a change.
      - V(on_change) keeps an HMAC-SHA256 of the value in the secret's description, keyed with
        O(fingerprint_key), and sets the value when the fingerprint differs. Without the key a reader of
        the description cannot test guesses against it.
    type: str
    choices: [on_create, always, on_change]
    default: on_create
  fingerprint_key:
    description:
      - Secret key for the V(on_change) fingerprint (a long random string from the vault, not the value).
    type: str
  ephemeral:
    description:
      - Keep the secret only in memory.
    type: bool
    default: true
  private:
    description:
      - Forbid reading the value through the libvirt API. Only set V(false) for secrets that are not secret.
    type: bool
    default: true
extends_documentation_fragment:
  - secvirt.kvm.attributes
  - secvirt.kvm.libvirt
attributes:
  check_mode:
    support: full
    details: Reads over a read-only connection; only whether a non-private secret has a value is asked over a read-write one.
  diff_mode:
    support: full
    details: The diff shows the secret's XML, never its value.
seealso:
  - module: secvirt.kvm.luks_volume
  - name: libvirt secret XML format
    description: Secret definition and usage types.
    link: https://libvirt.org/formatsecret.html
'''

EXAMPLES = r'''
- name: Give libvirt the passphrase of guest03's qemu-native LUKS image (memory only, private)
  secvirt.kvm.libvirt_secret:
    usage_type: volume
    usage_id: /var/lib/libvirt/images/guest03.qcow2
    description: guest03 disk encryption
    value: "{{ vault_guest03_image_passphrase }}"

- name: Keep a Ceph client key current (re-set when the vault value changes)
  secvirt.kvm.libvirt_secret:
    usage_type: ceph
    usage_id: client.libvirt secret
    value: "{{ vault_ceph_libvirt_key }}"
    value_encoding: base64
    update_value: on_change
    fingerprint_key: "{{ vault_secret_fingerprint_key }}"
'''

RETURN = r'''
uuid:
  description: UUID of the secret (null when absent or, in check mode, not yet defined).
  returned: always
  type: str
  sample: 0b9a4bba-6b31-4c69-a08b-f7c7d1d7a0a1
value_set:
  description: Whether the value was (or in check mode would be) set.
  returned: always
  type: bool
  sample: true
reasons:
  description: Why the secret was (re)defined or its value set.
  returned: always
  type: list
  elements: str
  sample: [the secret does not exist]
has_value:
  description:
    - Whether the secret held a value before this run (false when it did not exist).
    - Null when libvirt does not say, which is always the case for a private secret, and with O(state=absent).
  returned: always
  type: bool
  sample: null
ephemeral:
  description:
    - Whether the secret lives only in the memory of the libvirt daemon, so that a restart or stop of
      libvirtd (virtsecretd) removes it and the task must run again. Null with O(state=absent).
  returned: always
  type: bool
  sample: true
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    LibvirtModuleError, error_code, error_message, open_connection, require_libvirt, run_libvirt_module,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_secret import (
    USAGE_ELEMENT,
    build_secret_xml,
    compose_description,
    decode_value,
    fingerprint,
    parse_secret_xml,
    plan,
    validate_uuid,
)

try:
    import libvirt
except ImportError:  # require_libvirt() reports it
    libvirt = None

USAGE_CONSTANTS = {'volume': 'VIR_SECRET_USAGE_TYPE_VOLUME', 'ceph': 'VIR_SECRET_USAGE_TYPE_CEPH',
                   'iscsi': 'VIR_SECRET_USAGE_TYPE_ISCSI', 'tls': 'VIR_SECRET_USAGE_TYPE_TLS',
                   'vtpm': 'VIR_SECRET_USAGE_TYPE_VTPM'}
# libvirt encrypts persistent secret values at rest from this version on.
ENCRYPTED_AT_REST_VERSION = 12001000


def lookup(conn, params):
    try:
        if params['uuid']:
            return conn.secretLookupByUUIDString(params['uuid'])
        usage = getattr(libvirt, USAGE_CONSTANTS[params['usage_type']])
        return conn.secretLookupByUsage(usage, params['usage_id'])
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise


def probe_value(secret):
    """True/False: whether the secret holds a value; None when libvirt does not say.

    libvirt answers VIR_ERR_INVALID_SECRET ("secret is private") for a private
    secret before it looks at the value, and VIR_ERR_NO_SECRET ("does not have
    a value") for a secret without one. The value of a non-private secret is
    read and dropped at once.
    """
    try:
        secret.value(0)
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_SECRET:
            return False
        return None
    return True


def probe_value_in_check_mode(module, existing):
    """probe_value() for check mode, whose connection is read-only.

    libvirt refuses virSecretGetValue on a read-only connection, so whether a
    non-private secret has a value is asked over a read-write connection
    opened for that one call (and closed at once); nothing else is read or
    changed over it. A private secret never says, so it needs none.
    """
    if existing['private']:
        return None
    conn = open_connection(module.params['uri'])
    try:
        return probe_value(lookup(conn, module.params))
    finally:
        conn.close()


def set_value(secret, value, defined_now):
    """Set the value; undefine a secret defined by this run if that fails.

    Otherwise a private secret would stay defined without a value, which no
    later run could see (libvirt does not say whether a private secret has one).
    """
    try:
        secret.setValue(value, 0)
    except libvirt.libvirtError as exc:
        if not defined_now:
            raise
        try:
            secret.undefine()
        except libvirt.libvirtError as undo:
            raise LibvirtModuleError('libvirt refused the value: %s; the secret defined by this run could not be '
                                     'undefined again (%s) and is left without a value'
                                     % (error_message(exc), error_message(undo)))
        raise LibvirtModuleError('libvirt refused the value: %s; the secret defined by this run was undefined '
                                 'again, so the next run starts over' % error_message(exc))


def run_secret(module, conn, value):
    """Bring one secret to the wanted state over ``conn``; the module result."""
    p = module.params
    result = dict(changed=False, uuid=None, value_set=False, reasons=[], has_value=None, ephemeral=None,
                  warnings=[])
    try:
        secret = lookup(conn, p)
        before_xml = secret.XMLDesc(0) if secret else ''
        existing = parse_secret_xml(before_xml) if secret else None
        if existing:
            result['uuid'] = existing['uuid']
            if p['uuid'] and (existing['usage_type'], existing['usage_id']) != (p['usage_type'], p['usage_id']):
                raise LibvirtModuleError('secret %s exists with usage %s %s, not %s %s'
                                         % (p['uuid'], existing['usage_type'], existing['usage_id'],
                                            p['usage_type'], p['usage_id']))

        if p['state'] == 'absent':
            if secret:
                result.update(changed=True, reasons=['state=absent'])
                if not module.check_mode:
                    secret.undefine()
            result['diff'] = dict(before=before_xml, after='')
            return result

        if not p['ephemeral'] and conn.getLibVersion() < ENCRYPTED_AT_REST_VERSION:
            result['warnings'].append('libvirt %d stores the value of a persistent secret base64-encoded, not '
                                      'encrypted, in /etc/libvirt/secrets/; keep ephemeral=true to keep it off the '
                                      'disk' % conn.getLibVersion())
        new_fp = None
        if p['update_value'] == 'on_change':
            new_fp = fingerprint(p['fingerprint_key'], p['usage_type'], p['usage_id'], value)
        wanted = dict(ephemeral=p['ephemeral'], private=p['private'], description=p['description'],
                      usage_type=p['usage_type'], usage_id=p['usage_id'])
        if not secret:
            has_value = False
        elif module.check_mode:
            has_value = probe_value_in_check_mode(module, existing)
        else:
            has_value = probe_value(secret)
        define, undefine_first, value_needed, reasons = plan(existing, wanted, p['update_value'], new_fp, has_value)
        uuid = p['uuid'] or (existing['uuid'] if existing else None)
        new_xml = build_secret_xml(p['usage_type'], p['usage_id'], compose_description(p['description'], new_fp),
                                   p['ephemeral'], p['private'], uuid)
        result.update(changed=define or value_needed, value_set=value_needed, reasons=reasons,
                      has_value=has_value, ephemeral=p['ephemeral'])
        if value_needed and p['ephemeral']:
            result['warnings'].append(
                'libvirt secret %s %s is ephemeral: libvirt drops it (definition and value) when libvirtd '
                '(virtsecretd on a modular host) stops or restarts, also when a handler restarts it later '
                'in this play; run this task again after such a restart, before starting the guests '
                'that need the secret' % (p['usage_type'], p['usage_id']))
        if not module.check_mode:
            defined_now = False
            if undefine_first:
                secret.undefine()
            if define and (secret is None or undefine_first):
                secret = conn.secretDefineXML(new_xml, 0)
                defined_now = True
            if value_needed:
                # an existing secret gets its value before its new description: a
                # fingerprint must not announce a value that setValue then refused
                set_value(secret, value, defined_now)
            if define and not defined_now:
                secret = conn.secretDefineXML(new_xml, 0)
            result['uuid'] = secret.UUIDString()
        after = before_xml
        if define:
            after = secret.XMLDesc(0) if not module.check_mode else new_xml
        result['diff'] = dict(before=before_xml, after=after)
    except LibvirtModuleError as exc:
        exc.details = dict(result, **exc.details)
        exc.details.pop('warnings', None)
        raise
    except libvirt.libvirtError as exc:
        details = dict(result)
        details.pop('warnings', None)
        raise LibvirtModuleError('libvirt refused: %s' % error_message(exc), **details)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            usage_type=dict(type='str', default='volume', choices=sorted(USAGE_ELEMENT)),
            usage_id=dict(type='str', required=True),
            uuid=dict(type='str'),
            description=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            value=dict(type='str', no_log=True),
            value_encoding=dict(type='str', default='text', choices=['text', 'base64']),
            update_value=dict(type='str', default='on_create', choices=['on_create', 'always', 'on_change']),
            fingerprint_key=dict(type='str', no_log=True),
            ephemeral=dict(type='bool', default=True),
            private=dict(type='bool', default=True),
            uri=dict(type='str', default='qemu:///system'),
        ),
        required_if=[('state', 'present', ['value']), ('update_value', 'on_change', ['fingerprint_key'])],
        supports_check_mode=True,
    )
    require_libvirt(module)
    p = module.params
    try:
        validate_uuid(p['uuid'])
        value = decode_value(p['value'], p['value_encoding']) if p['state'] == 'present' else None
    except LibvirtModuleError as exc:
        module.fail_json(msg=exc.msg)
    # read-only in check mode (see probe_value_in_check_mode for the one exception)
    run_libvirt_module(module, lambda conn: run_secret(module, conn, value))


if __name__ == '__main__':
    main()
