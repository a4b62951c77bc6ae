# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt secret XML and the decision of when to (re)set a secret's value.

libvirt never returns the value of a ``private='yes'`` secret (and must not),
so a module cannot compare the stored value with the wanted one. Three ways
to decide are offered (option ``update_value``):

* ``on_create`` - set the value only when this module (re)defines the secret.
  Right for volume keys: a changed value would lock the guest out of its disk
  unless the volume is re-keyed at the same time.
* ``always`` - set it on every run and report a change on every run.
* ``on_change`` - keep an HMAC-SHA256 of the value in the secret's
  description, keyed with a separate secret (``fingerprint_key``, from the
  vault). Read-only libvirt clients can read the description; without the key
  they cannot test guesses against it, unlike a plain hash.

Whatever the policy, a secret known to have no value at all gets one
(``has_value=False``: libvirt says so for a non-private secret; for a private
one it refuses to answer, ``has_value=None``, which changes nothing).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import LibvirtModuleError

USAGE_ELEMENT = {'volume': 'volume', 'ceph': 'name', 'iscsi': 'target', 'tls': 'name', 'vtpm': 'name'}
FP_TAG = 'secvirt-hmac-sha256'
_FP_RE = re.compile(r'\s*\[%s:([0-9a-f]{64})\]\s*$' % FP_TAG)
_UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')


def yes_no(flag):
    return 'yes' if flag else 'no'


def validate_uuid(uuid):
    if uuid and not _UUID_RE.match(uuid):
        raise LibvirtModuleError('invalid uuid %r' % uuid)


def build_secret_xml(usage_type, usage_id, description=None, ephemeral=True, private=True, uuid=None):
    if usage_type not in USAGE_ELEMENT:
        raise LibvirtModuleError('unknown usage type %r (one of %s)' % (usage_type, ', '.join(sorted(USAGE_ELEMENT))))
    if not usage_id:
        raise LibvirtModuleError('usage_id is required')
    validate_uuid(uuid)
    root = ET.Element('secret', {'ephemeral': yes_no(ephemeral), 'private': yes_no(private)})
    if uuid:
        ET.SubElement(root, 'uuid').text = uuid.lower()
    if description:
        ET.SubElement(root, 'description').text = description
    usage = ET.SubElement(root, 'usage', {'type': usage_type})
    ET.SubElement(usage, USAGE_ELEMENT[usage_type]).text = usage_id
    return ET.tostring(root, encoding='unicode')


def parse_secret_xml(xml):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LibvirtModuleError('cannot parse secret XML: %s' % exc)
    usage = root.find('usage')
    usage_type = usage.get('type') if usage is not None else None
    usage_id = None
    if usage is not None and usage_type in USAGE_ELEMENT:
        usage_id = usage.findtext(USAGE_ELEMENT[usage_type])
    return {
        'uuid': (root.findtext('uuid') or '').lower() or None,
        'ephemeral': root.get('ephemeral', 'no') == 'yes',
        'private': root.get('private', 'no') == 'yes',
        'description': root.findtext('description'),
        'usage_type': usage_type,
        'usage_id': usage_id,
    }


def decode_value(value, encoding='text'):
    """Bytes of the secret value (``text``: UTF-8; ``base64``: decoded)."""
    if value is None or value == '':
        raise LibvirtModuleError('value must not be empty')
    if encoding == 'base64':
        try:
            return base64.b64decode(value.encode('ascii'), validate=True)
        except UnicodeEncodeError:
            # the codec's own message quotes the offending character of the value
            raise LibvirtModuleError('value is not valid base64: it holds characters other than ASCII')
        except (binascii.Error, ValueError) as exc:
            raise LibvirtModuleError('value is not valid base64: %s' % exc)
    return value.encode('utf-8')


def fingerprint(key, usage_type, usage_id, value):
    """HMAC-SHA256 over the usage and the value bytes, keyed with ``key``.

    The usage (not the uuid, which libvirt may only assign on define) binds
    the fingerprint to this secret, so two secrets with the same value do
    not show the same fingerprint.
    """
    if not key:
        raise LibvirtModuleError('fingerprint_key is required with update_value=on_change')
    msg = b'\0'.join([b'secvirt.kvm libvirt secret', usage_type.encode('utf-8'), usage_id.encode('utf-8'), value])
    return hmac.new(key.encode('utf-8'), msg, hashlib.sha256).hexdigest()


def split_description(text):
    """``(user description, fingerprint or None)``."""
    if not text:
        return None, None
    match = _FP_RE.search(text)
    if not match:
        return text, None
    user = text[:match.start()].rstrip()
    return (user or None), match.group(1)


def compose_description(user, fp):
    if not fp:
        return user
    tag = '[%s:%s]' % (FP_TAG, fp)
    return '%s %s' % (user, tag) if user else tag


def plan(existing, wanted, update_value, new_fp=None, has_value=None):
    """Decide what to do.

    ``existing``: parsed XML of the current secret or None; ``wanted``: dict
    with ``ephemeral``, ``private``, ``description`` (user part),
    ``usage_type``, ``usage_id``; ``has_value``: whether the existing secret
    holds a value (None: unknown). Returns ``(define, undefine_first,
    set_value, why)`` where ``why`` lists human reasons.
    """
    why = []
    if existing is None:
        return True, False, True, ['the secret does not exist']
    undefine_first = False
    define = False
    if existing['ephemeral'] != wanted['ephemeral'] or existing['private'] != wanted['private']:
        undefine_first = define = True
        why.append('ephemeral/private flags differ (libvirt cannot change them in place)')
    if (existing['usage_type'], existing['usage_id']) != (wanted['usage_type'], wanted['usage_id']):
        define = True
        why.append('usage differs')
    user_desc, old_fp = split_description(existing['description'])
    if (user_desc or None) != (wanted.get('description') or None):
        define = True
        why.append('description differs')
    set_value = undefine_first
    if has_value is False and not undefine_first:
        set_value = True
        why.append('the secret has no value')
    if update_value == 'always':
        set_value = True
        why.append('update_value=always')
    elif update_value == 'on_change' and old_fp != new_fp:
        define = True
        set_value = True
        why.append('the value fingerprint differs' if old_fp else 'no value fingerprint recorded yet')
    return define, undefine_first, set_value, why


# --- several secrets in one module call (option ``secrets``) ---------------

# The options that describe one secret, in the order of the documentation: the
# single-secret options of the module and the suboptions of ``secrets``.
SECRET_OPTIONS = ('usage_type', 'usage_id', 'uuid', 'description', 'state', 'value', 'value_encoding',
                  'update_value', 'fingerprint_key', 'ephemeral', 'private')
# What the module reports about each secret (never its value).
RESULT_KEYS = ('changed', 'uuid', 'value_set', 'reasons', 'has_value', 'ephemeral')


def secret_argument_spec(usage_id_required=True):
    """The argument spec of one secret (a fresh dict on every call).

    The module takes it at the top level (``usage_id`` then not required, as
    it is exclusive with ``secrets``) and as the suboptions of ``secrets``.
    """
    return dict(
        usage_type=dict(type='str', default='volume', choices=sorted(USAGE_ELEMENT)),
        usage_id=dict(type='str', required=usage_id_required),
        uuid=dict(type='str'),
        description=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        value=dict(type='str', no_log=True),
        value_encoding=dict(type='str', default='text', choices=['text', 'base64']),
        update_value=dict(type='str', default='on_create', choices=['on_create', 'always', 'on_change']),
        fingerprint_key=dict(type='str', no_log=True),
        ephemeral=dict(type='bool', default=True),
        private=dict(type='bool', default=True),
    )


def secret_name(params):
    """How messages name a secret: its usage, never its value."""
    return '%s %s' % (params.get('usage_type'), params.get('usage_id'))


def check_secret_params(params):
    """Check one secret's options without libvirt; the bytes of its value (None with state=absent).

    The single-secret form gets the two "required" rules from the argument
    spec too; an entry of ``secrets`` gets them only here, so that the
    message can name the entry. No message quotes the value.
    """
    validate_uuid(params.get('uuid'))
    if params.get('update_value') == 'on_change' and not params.get('fingerprint_key'):
        raise LibvirtModuleError('fingerprint_key is required with update_value=on_change')
    if params.get('state') != 'present':
        return None
    if params.get('value') is None:
        raise LibvirtModuleError('value is required with state=present')
    return decode_value(params['value'], params.get('value_encoding') or 'text')


def _uuid_key(uuid):
    return uuid.replace('-', '').lower() if uuid else None


def duplicate_secrets(entries):
    """Messages for the entries that name a secret an earlier entry names already (same usage or uuid).

    Every entry is planned before any is applied, so two entries for one
    secret would be planned against the same state and contradict each other.
    """
    errors = []
    usages, uuids = {}, {}
    for index, params in enumerate(entries):
        usage = (params.get('usage_type'), params.get('usage_id'))
        uuid = _uuid_key(params.get('uuid'))
        if usage in usages:
            errors.append('secret %s: listed twice in secrets (entries %d and %d)'
                          % (secret_name(params), usages[usage] + 1, index + 1))
        elif uuid and uuid in uuids:
            errors.append('secret %s: uuid %s is also the uuid of entry %d'
                          % (secret_name(params), params['uuid'], uuids[uuid] + 1))
        usages.setdefault(usage, index)
        if uuid:
            uuids.setdefault(uuid, index)
    return errors
