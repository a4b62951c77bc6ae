"""Unit tests for plugins/module_utils/libvirt_secret.py."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_secret as S
from ansible_collections.secvirt.kvm.plugins.module_utils.libvirt_common import LibvirtModuleError

UUID = '0b9a4bba-6b31-4c69-a08b-f7c7d1d7a0a1'
WANTED = dict(ephemeral=True, private=True, description='guest03 disk', usage_type='volume',
              usage_id='/var/lib/libvirt/images/guest03.qcow2')


def existing(**kw):
    base = dict(uuid=UUID, ephemeral=True, private=True, description='guest03 disk', usage_type='volume',
                usage_id='/var/lib/libvirt/images/guest03.qcow2')
    base.update(kw)
    return base


def test_build_and_parse_roundtrip():
    xml = S.build_secret_xml('volume', '/img/a.qcow2', 'disk a', True, True, UUID.upper())
    assert xml == ("<secret ephemeral=\"yes\" private=\"yes\"><uuid>%s</uuid><description>disk a</description>"
                   "<usage type=\"volume\"><volume>/img/a.qcow2</volume></usage></secret>" % UUID)
    assert S.parse_secret_xml(xml) == dict(uuid=UUID, ephemeral=True, private=True, description='disk a',
                                           usage_type='volume', usage_id='/img/a.qcow2')


@pytest.mark.parametrize('usage,element', [('ceph', 'name'), ('iscsi', 'target'), ('tls', 'name'), ('vtpm', 'name')])
def test_usage_elements(usage, element):
    xml = S.build_secret_xml(usage, 'x', ephemeral=False, private=False)
    assert '<%s>x</%s>' % (element, element) in xml
    parsed = S.parse_secret_xml(xml)
    assert parsed['usage_id'] == 'x' and parsed['ephemeral'] is False and parsed['private'] is False
    assert parsed['uuid'] is None and parsed['description'] is None


def test_parse_libvirt_output_with_defaults():
    xml = "<secret ephemeral='no' private='yes'>\n  <uuid>%s</uuid>\n  <usage type='ceph'>\n    <name>c</name>\n  </usage>\n</secret>\n" % UUID
    assert S.parse_secret_xml(xml)['usage_type'] == 'ceph'
    assert S.parse_secret_xml('<secret/>')['usage_type'] is None
    with pytest.raises(LibvirtModuleError):
        S.parse_secret_xml('<secret')


@pytest.mark.parametrize('args', [('disk', 'x'), ('volume', ''), ('volume', 'x', None, True, True, 'not-a-uuid')])
def test_build_refuses(args):
    with pytest.raises(LibvirtModuleError):
        S.build_secret_xml(*args)


def test_decode_value():
    assert S.decode_value(u'p\u00e4ss') == u'p\u00e4ss'.encode('utf-8')
    assert S.decode_value('AQID', 'base64') == b'\x01\x02\x03'
    for bad, enc in (('', 'text'), (None, 'text'), ('***', 'base64'), (u'\u00e4', 'base64')):
        with pytest.raises(LibvirtModuleError):
            S.decode_value(bad, enc)


def test_fingerprint_is_keyed_and_bound_to_the_usage():
    fp = S.fingerprint('k1', 'volume', '/a', b'v')
    assert len(fp) == 64
    assert fp == S.fingerprint('k1', 'volume', '/a', b'v')
    assert fp != S.fingerprint('k2', 'volume', '/a', b'v')
    assert fp != S.fingerprint('k1', 'volume', '/b', b'v')
    assert fp != S.fingerprint('k1', 'volume', '/a', b'w')
    with pytest.raises(LibvirtModuleError):
        S.fingerprint('', 'volume', '/a', b'v')


def test_description_composition():
    fp = 'a' * 64
    assert S.compose_description('disk', None) == 'disk'
    assert S.compose_description('disk', fp) == 'disk [secvirt-hmac-sha256:%s]' % fp
    assert S.compose_description(None, fp) == '[secvirt-hmac-sha256:%s]' % fp
    assert S.split_description(S.compose_description('disk', fp)) == ('disk', fp)
    assert S.split_description(S.compose_description(None, fp)) == (None, fp)
    assert S.split_description('plain [not a tag]') == ('plain [not a tag]', None)
    assert S.split_description(None) == (None, None)


def test_plan_new_secret():
    assert S.plan(None, WANTED, 'on_create') == (True, False, True, ['the secret does not exist'])


def test_plan_unchanged_is_idempotent():
    assert S.plan(existing(), WANTED, 'on_create') == (False, False, False, [])


def test_plan_always_sets_value():
    define, undefine, set_value, why = S.plan(existing(), WANTED, 'always')
    assert (define, undefine, set_value) == (False, False, True) and why == ['update_value=always']


def test_plan_flags_force_redefinition_and_new_value():
    define, undefine, set_value, _why = S.plan(existing(ephemeral=False), WANTED, 'on_create')
    assert define and undefine and set_value


def test_plan_description_or_usage_change_keeps_value():
    assert S.plan(existing(description='old'), WANTED, 'on_create')[:3] == (True, False, False)
    assert S.plan(existing(usage_id='/other'), WANTED, 'on_create')[:3] == (True, False, False)


def test_plan_on_change_uses_the_fingerprint():
    fp = S.fingerprint('key', 'volume', WANTED['usage_id'], b'value')
    recorded = existing(description=S.compose_description('guest03 disk', fp))
    assert S.plan(recorded, WANTED, 'on_change', fp)[:3] == (False, False, False)
    other = S.fingerprint('key', 'volume', WANTED['usage_id'], b'new value')
    define, _undefine, set_value, why = S.plan(recorded, WANTED, 'on_change', other)
    assert define and set_value and why == ['the value fingerprint differs']
    assert S.plan(existing(), WANTED, 'on_change', fp)[3] == ['no value fingerprint recorded yet']
    # an old fingerprint left in the description does not count as a change for on_create
    assert S.plan(recorded, WANTED, 'on_create')[:3] == (False, False, False)


def test_plan_sets_a_missing_value_whatever_the_policy():
    # has_value: True/False, or None when libvirt does not say (private secrets)
    for policy in ('on_create', 'on_change'):
        fp = S.fingerprint('key', 'volume', WANTED['usage_id'], b'value')
        current = existing(description=S.compose_description('guest03 disk', fp))
        define, undefine, set_value, why = S.plan(current, WANTED, policy, fp, has_value=False)
        assert set_value and not undefine and why == ['the secret has no value'], policy
        assert S.plan(current, WANTED, policy, fp, has_value=None)[2] is False
        assert S.plan(current, WANTED, policy, fp, has_value=True)[2] is False
    assert S.plan(existing(), WANTED, 'always', has_value=False)[3] == ['the secret has no value', 'update_value=always']


# --- several secrets in one call (option secrets) -----------------------------

def entry(**kw):
    base = dict(usage_type='volume', usage_id='/img/a.qcow2', uuid=None, description=None, state='present',
                value='Batch-Value-1', value_encoding='text', update_value='on_create', fingerprint_key=None,
                ephemeral=True, private=True)
    base.update(kw)
    return base


def test_secret_argument_spec_is_the_per_secret_options():
    spec = S.secret_argument_spec()
    assert tuple(spec) == S.SECRET_OPTIONS
    assert spec['usage_id']['required'] is True and S.secret_argument_spec(False)['usage_id']['required'] is False
    assert [name for name, opts in spec.items() if opts.get('no_log')] == ['value', 'fingerprint_key']
    # a fresh spec every time: AnsibleModule may not share one between the top level and the suboptions
    assert S.secret_argument_spec()['usage_type'] is not spec['usage_type']


def test_check_secret_params_names_no_value():
    assert S.check_secret_params(entry()) == b'Batch-Value-1'
    assert S.check_secret_params(entry(state='absent', value=None)) is None
    assert S.check_secret_params(entry(value='AQID', value_encoding='base64')) == b'\x01\x02\x03'
    for bad, message in ((entry(value=None), 'value is required with state=present'),
                         (entry(value=''), 'value must not be empty'),
                         (entry(uuid='not-a-uuid'), "invalid uuid 'not-a-uuid'"),
                         (entry(update_value='on_change'), 'fingerprint_key is required with update_value=on_change'),
                         (entry(value=u'Batch-\u00e4', value_encoding='base64'), 'characters other than ASCII'),
                         (entry(value='Batch-Value-*', value_encoding='base64'), 'not valid base64')):
        with pytest.raises(LibvirtModuleError) as err:
            S.check_secret_params(bad)
        assert message in err.value.msg
        assert 'Batch' not in err.value.msg and u'\u00e4' not in err.value.msg


def test_duplicate_secrets_by_usage_or_uuid():
    assert S.secret_name(entry()) == 'volume /img/a.qcow2'
    assert S.duplicate_secrets([entry(), entry(usage_id='/img/b.qcow2'), entry(usage_type='ceph')]) == []
    assert S.duplicate_secrets([entry(), entry(usage_id='/img/b.qcow2'), entry(state='absent')]) == [
        'secret volume /img/a.qcow2: listed twice in secrets (entries 1 and 3)']
    same_uuid = [entry(uuid=UUID), entry(usage_id='/img/b.qcow2', uuid=UUID.upper().replace('-', ''))]
    assert S.duplicate_secrets(same_uuid) == [
        'secret volume /img/b.qcow2: uuid %s is also the uuid of entry 1' % UUID.upper().replace('-', '')]
