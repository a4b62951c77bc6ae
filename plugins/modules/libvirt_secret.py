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
  - O(secrets) defines several secrets in one call, over one connection; see there.
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
      - Required unless O(secrets) is given.
    type: str
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
  secrets:
    description:
      - Several secrets in one module call, each a dict of the single-secret options above (the same
        defaults; O(secrets[].usage_id) is required, and O(secrets[].value) with O(secrets[].state=present)
        and O(secrets[].fingerprint_key) with O(secrets[].update_value=on_change)). O(uri) applies to all.
      - Mutually exclusive with the single-secret options (O(usage_type) to O(private)).
      - The module checks every entry and reads every secret over one connection before it changes
        anything. An invalid entry, or two entries for the same usage or uuid, refuses the whole batch;
        the message names each such entry by its usage (C(secret <usage_type> <usage_id>) and the
        reason), never by its value. The entries are then applied in order. When one fails, the module fails with a
        message that names it, the entries changed before it and those not applied.
      - The results are in RV(secrets), one per entry, in the order of the entries.
    type: list
    elements: dict
    suboptions:
      usage_type:
        description: What the secret is for, as O(usage_type).
        type: str
        choices: [volume, ceph, iscsi, tls, vtpm]
        default: volume
      usage_id:
        description: What identifies the secret, as O(usage_id).
        type: str
        required: true
      uuid:
        description: Fixed UUID for the secret, as O(uuid).
        type: str
      description:
        description: Free text for the secret's C(<description>).
        type: str
      state:
        description: V(present) or V(absent), as O(state).
        type: str
        choices: [present, absent]
        default: present
      value:
        description: The secret value, as O(value). Required when O(secrets[].state=present).
        type: str
      value_encoding:
        description: How O(secrets[].value) is encoded, as O(value_encoding).
        type: str
        choices: [text, base64]
        default: text
      update_value:
        description: When the value is (re)set, as O(update_value).
        type: str
        choices: [on_create, always, on_change]
        default: on_create
      fingerprint_key:
        description: Secret key for the V(on_change) fingerprint, as O(fingerprint_key).
        type: str
      ephemeral:
        description: Keep the secret only in memory, as O(ephemeral).
        type: bool
        default: true
      private:
        description: Forbid reading the value through the libvirt API, as O(private).
        type: bool
        default: true
extends_documentation_fragment:
  - secvirt.kvm.attributes
  - secvirt.kvm.libvirt
attributes:
  check_mode:
    support: full
    details: >-
      Reads over a read-only connection; only whether a non-private secret has a value is asked over a read-write one
      (one for all of O(secrets)).
  diff_mode:
    support: full
    details: The diff shows the secret's XML, never its value; with O(secrets), one diff per entry.
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

- name: Define several secrets in one call (the whole batch is refused if one entry is invalid)
  secvirt.kvm.libvirt_secret:
    secrets:
      - usage_id: /var/lib/libvirt/images/guest03.qcow2
        description: guest03 disk encryption
        value: "{{ vault_guest03_image_passphrase }}"
      - usage_id: /var/lib/libvirt/images/guest04.qcow2
        value: "{{ vault_guest04_image_passphrase }}"
      - usage_type: ceph
        usage_id: client.libvirt secret
        value: "{{ vault_ceph_libvirt_key }}"
        value_encoding: base64
        update_value: on_change
        fingerprint_key: "{{ vault_secret_fingerprint_key }}"
      - usage_id: /var/lib/libvirt/images/retired.qcow2
        state: absent
  no_log: true
  register: secret_batch
'''

RETURN = r'''
uuid:
  description: UUID of the secret (null when absent or, in check mode, not yet defined).
  returned: without O(secrets)
  type: str
  sample: 0b9a4bba-6b31-4c69-a08b-f7c7d1d7a0a1
value_set:
  description: Whether the value was (or in check mode would be) set.
  returned: without O(secrets)
  type: bool
  sample: true
reasons:
  description: Why the secret was (re)defined or its value set.
  returned: without O(secrets)
  type: list
  elements: str
  sample: [the secret does not exist]
has_value:
  description:
    - Whether the secret held a value before this run (false when it did not exist).
    - Null when libvirt does not say, which is always the case for a private secret, and with O(state=absent).
  returned: without O(secrets)
  type: bool
  sample: null
ephemeral:
  description:
    - Whether the secret lives only in the memory of the libvirt daemon, so that a restart or stop of
      libvirtd (virtsecretd) removes it and the task must run again. Null with O(state=absent).
  returned: without O(secrets)
  type: bool
  sample: true
secrets:
  description:
    - With O(secrets), what the module did to each entry, in the order of the entries, never with a value.
    - When applying an entry fails, the results of the entries applied before it.
  returned: with O(secrets)
  type: list
  elements: dict
  contains:
    usage_type:
      description: The entry's O(secrets[].usage_type).
      type: str
      sample: volume
    usage_id:
      description: The entry's O(secrets[].usage_id).
      type: str
      sample: /var/lib/libvirt/images/guest03.qcow2
    changed:
      description: Whether the secret was (or in check mode would be) changed.
      type: bool
      sample: true
    uuid:
      description: As RV(uuid).
      type: str
      sample: 0b9a4bba-6b31-4c69-a08b-f7c7d1d7a0a1
    value_set:
      description: As RV(value_set).
      type: bool
      sample: true
    reasons:
      description: As RV(reasons).
      type: list
      elements: str
      sample: [the secret does not exist]
    has_value:
      description: As RV(has_value).
      type: bool
      sample: false
    ephemeral:
      description: As RV(ephemeral).
      type: bool
      sample: true
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import (
    LibvirtModuleError, error_code, error_message, open_connection, run_libvirt_module, uri_argument_spec,
)
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_secret import (
    RESULT_KEYS,
    SECRET_OPTIONS,
    build_secret_xml,
    check_secret_params,
    compose_description,
    duplicate_secrets,
    fingerprint,
    parse_secret_xml,
    plan,
    secret_argument_spec,
    secret_name,
)

try:
    import libvirt
except ImportError:  # run_libvirt_module() reports it
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


class ValueProbe(object):
    """probe_value() for the module's run, also in check mode.

    Check mode reads over a read-only connection, and libvirt refuses
    virSecretGetValue on one, so there whether a non-private secret has a value
    is asked over a read-write connection opened for these probes alone (on the
    first one, once per module run; close() closes it); nothing else is read
    or changed over it. A private secret never says, so it needs none.
    """

    def __init__(self, uri, check_mode):
        self.uri = uri
        self.check_mode = check_mode
        self.conn = None

    def __call__(self, secret, existing, params):
        if not self.check_mode:
            return probe_value(secret)
        if existing['private']:
            return None
        if self.conn is None:
            self.conn = open_connection(self.uri)
        return probe_value(lookup(self.conn, params))

    def close(self):
        conn, self.conn = self.conn, None
        if conn is not None:
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
        undone = LibvirtModuleError('libvirt refused the value: %s; the secret defined by this run was undefined '
                                    'again, so the next run starts over' % error_message(exc))
        undone.undone = True
        raise undone


def module_error(exc, prefix='', **details):
    """The one way a failure leaves this module: a LibvirtModuleError that
    carries the result so far (``details``; the error's own details win).
    ``exc`` is a LibvirtModuleError or a libvirt error."""
    if isinstance(exc, LibvirtModuleError):
        return LibvirtModuleError(prefix + exc.msg, **dict(details, **exc.details))
    return LibvirtModuleError('%slibvirt refused: %s' % (prefix, error_message(exc)), **details)


def plaintext_warning(version, names=None):
    where = ' (secrets %s)' % ', '.join(names) if names else ''
    return ('libvirt %d stores the value of a persistent secret base64-encoded, not encrypted, in '
            '/etc/libvirt/secrets/%s; keep ephemeral=true to keep it off the disk' % (version, where))


def ephemeral_warning(names):
    if len(names) == 1:
        return ('libvirt secret %s is ephemeral: libvirt drops it (definition and value) when libvirtd '
                '(virtsecretd on a modular host) stops or restarts, also when a handler restarts it later '
                'in this play; run this task again after such a restart, before starting the guests '
                'that need the secret' % names[0])
    return ('libvirt secrets %s are ephemeral: libvirt drops them (definitions and values) when libvirtd '
            '(virtsecretd on a modular host) stops or restarts, also when a handler restarts it later '
            'in this play; run this task again after such a restart, before starting the guests '
            'that need the secrets' % ', '.join(names))


class SecretRun(object):
    """One secret: checked, then planned over the connection (which changes
    nothing), then applied. ``result`` holds what the module reports about it."""

    def __init__(self, params):
        self.p = params
        self.name = secret_name(params)
        self.value = None
        self.result = dict(changed=False, uuid=None, value_set=False, reasons=[], has_value=None, ephemeral=None)
        self.secret = None
        self.before_xml = self.after_xml = ''
        self.new_xml = None
        self.define = self.undefine_first = False
        self.plaintext_version = None  # the libvirt version that would store the value unencrypted
        self.touched = False  # apply() has changed something in libvirt

    def check(self):
        """Refuse invalid options before libvirt is asked anything."""
        self.value = check_secret_params(self.p)

    def plan(self, conn, probe):
        """Read the secret and decide what to do (result, diff), changing nothing."""
        p, result = self.p, self.result
        self.secret = secret = lookup(conn, p)
        self.before_xml = self.after_xml = secret.XMLDesc(0) if secret else ''
        existing = parse_secret_xml(self.before_xml) if secret else None
        if existing:
            result['uuid'] = existing['uuid']
            if p['uuid'] and (existing['usage_type'], existing['usage_id']) != (p['usage_type'], p['usage_id']):
                raise LibvirtModuleError('secret %s exists with usage %s %s, not %s %s'
                                         % (p['uuid'], existing['usage_type'], existing['usage_id'],
                                            p['usage_type'], p['usage_id']))

        if p['state'] == 'absent':
            if secret:
                result.update(changed=True, reasons=['state=absent'])
            self.after_xml = ''
            return

        if not p['ephemeral'] and conn.getLibVersion() < ENCRYPTED_AT_REST_VERSION:
            self.plaintext_version = conn.getLibVersion()
        new_fp = None
        if p['update_value'] == 'on_change':
            new_fp = fingerprint(p['fingerprint_key'], p['usage_type'], p['usage_id'], self.value)
        wanted = dict(ephemeral=p['ephemeral'], private=p['private'], description=p['description'],
                      usage_type=p['usage_type'], usage_id=p['usage_id'])
        has_value = probe(secret, existing, p) if secret else False
        self.define, self.undefine_first, value_needed, reasons = plan(existing, wanted, p['update_value'],
                                                                       new_fp, has_value)
        uuid = p['uuid'] or (existing['uuid'] if existing else None)
        self.new_xml = build_secret_xml(p['usage_type'], p['usage_id'], compose_description(p['description'], new_fp),
                                        p['ephemeral'], p['private'], uuid)
        result.update(changed=self.define or value_needed, value_set=value_needed, reasons=reasons,
                      has_value=has_value, ephemeral=p['ephemeral'])
        if self.define:
            self.after_xml = self.new_xml  # what check mode shows; apply() reads libvirt's

    def apply(self, conn):
        """Carry the plan out."""
        secret = self.secret
        if self.p['state'] == 'absent':
            if secret:
                secret.undefine()
                self.touched = True
            return
        defined_now = False
        if self.undefine_first:
            secret.undefine()
            self.touched = True
        if self.define and (secret is None or self.undefine_first):
            secret = conn.secretDefineXML(self.new_xml, 0)
            self.touched = defined_now = True
        if self.result['value_set']:
            # an existing secret gets its value before its new description: a
            # fingerprint must not announce a value that setValue then refused
            try:
                set_value(secret, self.value, defined_now)
            except LibvirtModuleError as exc:
                if getattr(exc, 'undone', False):  # only an undefine before the define is left
                    self.touched = self.undefine_first
                raise
            self.touched = True
        if self.define and not defined_now:
            secret = conn.secretDefineXML(self.new_xml, 0)
            self.touched = True
        self.secret = secret
        self.result['uuid'] = secret.UUIDString()
        if self.define:
            self.after_xml = secret.XMLDesc(0)

    @property
    def ephemeral_set(self):
        """Whether this run sets a value that a daemon restart takes away again."""
        return bool(self.result['value_set'] and self.result['ephemeral'])

    def entry_result(self):
        entry = dict(usage_type=self.p['usage_type'], usage_id=self.p['usage_id'])
        entry.update((key, self.result[key]) for key in RESULT_KEYS)
        return entry


def run_secret(module, conn):
    """The single-secret form: bring the secret of the top-level options to the wanted state."""
    run = SecretRun(module.params)
    probe = ValueProbe(module.params['uri'], module.check_mode)
    try:
        run.check()
        run.plan(conn, probe)
        if not module.check_mode:
            run.apply(conn)
    except (LibvirtModuleError, libvirt.libvirtError) as exc:
        raise module_error(exc, **run.result)
    finally:
        probe.close()
    result = dict(run.result, warnings=[], diff=dict(before=run.before_xml, after=run.after_xml))
    if run.plaintext_version:
        result['warnings'].append(plaintext_warning(run.plaintext_version))
    if run.ephemeral_set:
        result['warnings'].append(ephemeral_warning([run.name]))
    return result


def run_batch(module, conn):
    """The ``secrets`` form: check and plan every secret, refuse the whole batch
    if any of them is wrong, and only then apply them one after the other."""
    entries = module.params['secrets']
    runs = [SecretRun(params) for params in entries]
    errors = duplicate_secrets(entries)
    for run in runs:
        try:
            run.check()
        except LibvirtModuleError as exc:
            errors.append('secret %s: %s' % (run.name, exc.msg))
    if not errors:
        probe = ValueProbe(module.params['uri'], module.check_mode)
        try:
            for run in runs:
                try:
                    run.plan(conn, probe)
                except (LibvirtModuleError, libvirt.libvirtError) as exc:
                    errors.append(module_error(exc, 'secret %s: ' % run.name).msg)
        finally:
            probe.close()
    if errors:
        raise LibvirtModuleError('%s (no secret was changed)' % '; '.join(errors), changed=False, secrets=[])

    if not module.check_mode:
        for index, run in enumerate(runs):
            try:
                run.apply(conn)
            except (LibvirtModuleError, libvirt.libvirtError) as exc:
                done, rest = runs[:index], runs[index + 1:]
                changed = [r.name for r in done if r.result['changed']]
                state = ['changed before it: %s' % ', '.join(changed) if changed else 'no secret was changed before it']
                if run.touched:
                    state.insert(0, 'this secret is changed in part')
                if rest:
                    state.append('not applied: %s' % ', '.join(r.name for r in rest))
                failed = module_error(exc, 'secret %s: ' % run.name)
                raise LibvirtModuleError('%s (%s)' % (failed.msg, '; '.join(state)), changed=bool(changed) or run.touched,
                                         secrets=[r.entry_result() for r in done])
    result = dict(changed=any(run.result['changed'] for run in runs),
                  secrets=[run.entry_result() for run in runs], warnings=[],
                  diff=[dict(before_header='secret %s' % run.name, after_header='secret %s' % run.name,
                             before=run.before_xml, after=run.after_xml) for run in runs])
    plaintext = [run for run in runs if run.plaintext_version]
    if plaintext:
        result['warnings'].append(plaintext_warning(plaintext[0].plaintext_version, [run.name for run in plaintext]))
    ephemeral = [run.name for run in runs if run.ephemeral_set]
    if ephemeral:
        result['warnings'].append(ephemeral_warning(ephemeral))
    return result


def main():
    argument_spec = secret_argument_spec(usage_id_required=False)
    argument_spec.update(
        secrets=dict(type='list', elements='dict', no_log=False, options=secret_argument_spec()),
        **uri_argument_spec()
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('secrets', option) for option in SECRET_OPTIONS],
        required_one_of=[('usage_id', 'secrets')],
        # the entries of secrets are checked by check_secret_params, which names the entry
        required_if=[('state', 'present', ['value', 'secrets'], True), ('update_value', 'on_change', ['fingerprint_key'])],
        supports_check_mode=True,
    )
    work = run_batch if module.params['secrets'] is not None else run_secret
    # read-only in check mode (see ValueProbe for the one exception)
    run_libvirt_module(module, lambda conn: work(module, conn))


if __name__ == '__main__':
    main()
