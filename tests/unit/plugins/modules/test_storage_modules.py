"""libvirt_secret, guest_disk, image_check and luks_volume modules end to end
against a fake libvirt and fake tools (the real ones run in molecule/storage)."""
import json
import os
import shutil
import subprocess
import types
import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.modules import libvirt_guest_disk as guest_disk, image_check, libvirt_secret, luks_volume


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


class FakeError(Exception):
    def __init__(self, msg, code=1):
        super(FakeError, self).__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeSecret(object):
    """A libvirt secret as libvirt 9's secret driver treats it.

    libvirt's own test driver (test:///default) has no secret driver at all
    (virSecretDefineXML: "this function is not supported by the connection
    driver"), so this stand-in copies the behaviour the module depends on from
    src/secret/secret_driver.c: value() refuses a private secret with
    VIR_ERR_INVALID_SECRET ("secret is private") before it looks at the value,
    and a secret without a value gives VIR_ERR_NO_SECRET ("does not have a
    value").
    """

    def __init__(self, conn, xml):
        self.conn = conn
        root = ET.fromstring(xml)
        if root.find('uuid') is None:
            ET.SubElement(root, 'uuid').text = str(uuidlib.uuid4())
        self.xml = ET.tostring(root, encoding='unicode')
        self.values = []

    def XMLDesc(self, flags):
        return self.xml

    def UUIDString(self):
        return ET.fromstring(self.xml).findtext('uuid')

    def usage(self):
        root = ET.fromstring(self.xml)
        usage = root.find('usage')
        return usage.get('type'), list(usage)[0].text

    def setValue(self, value, flags):
        if self.conn.set_error:
            raise self.conn.set_error
        self.values.append(value)

    def value(self, flags=0):
        if ET.fromstring(self.xml).get('private') == 'yes':
            raise FakeError('secret is private', FAKE.VIR_ERR_INVALID_SECRET)
        if not self.values:
            raise FakeError("secret '%s' does not have a value" % self.UUIDString(), FAKE.VIR_ERR_NO_SECRET)
        return self.values[-1]

    def undefine(self):
        self.conn.secrets.remove(self)


class FakeConn(object):
    def __init__(self, version=9000000):
        self.secrets = []
        self.version = version
        self.domains = {}
        self.set_error = None

    def restart(self):
        """libvirtd (or virtsecretd) restarts: ephemeral secrets are gone, definition and value."""
        self.secrets = [s for s in self.secrets if ET.fromstring(s.xml).get('ephemeral') != 'yes']

    def close(self):
        pass

    def getLibVersion(self):
        return self.version

    def secretLookupByUsage(self, usage_type, usage_id):
        names = {1: 'volume', 2: 'ceph', 3: 'iscsi', 4: 'tls', 5: 'vtpm'}
        for secret in self.secrets:
            if secret.usage() == (names[usage_type], usage_id):
                return secret
        raise FakeError('no secret', FAKE.VIR_ERR_NO_SECRET)

    def secretLookupByUUIDString(self, uuid):
        for secret in self.secrets:
            if secret.UUIDString() == uuid:
                return secret
        raise FakeError('no secret', FAKE.VIR_ERR_NO_SECRET)

    def secretDefineXML(self, xml, flags):
        new = FakeSecret(self, xml)
        for secret in self.secrets:
            if secret.UUIDString() == new.UUIDString():
                secret.xml = new.xml
                return secret
        self.secrets.append(new)
        return new

    def lookupByName(self, name):
        if name not in self.domains:
            raise FakeError('Domain not found', 42)
        return self.domains[name]

    def defineXML(self, xml):
        name = ET.fromstring(xml).findtext('name')
        self.domains[name].xml = xml


class FakeDomain(object):
    def __init__(self, xml, state=5):
        self.xml = xml
        self._state = state

    def state(self):
        return [self._state, 0]

    def XMLDesc(self, flags):
        return self.xml


FAKE = types.SimpleNamespace(
    libvirtError=FakeError, VIR_ERR_NO_SECRET=66, VIR_ERR_INVALID_SECRET=65, VIR_DOMAIN_XML_INACTIVE=2,
    VIR_SECRET_USAGE_TYPE_VOLUME=1, VIR_SECRET_USAGE_TYPE_CEPH=2, VIR_SECRET_USAGE_TYPE_ISCSI=3,
    VIR_SECRET_USAGE_TYPE_TLS=4, VIR_SECRET_USAGE_TYPE_VTPM=5)


@pytest.fixture
def conn(monkeypatch):
    connection = FakeConn()
    fake = types.SimpleNamespace(**vars(FAKE))
    connection.opened = []

    def _open(readonly):
        def opener(uri):
            connection.opened.append('ro' if readonly else 'rw')
            return connection
        return opener
    fake.open = _open(False)
    fake.openReadOnly = _open(True)
    fake.registerErrorHandler = lambda *_args: None
    # the modules take libvirt's constants from their own import and open
    # their connections through libvirt_common
    monkeypatch.setattr(libvirt_secret, 'libvirt', fake)
    monkeypatch.setattr(lc, 'libvirt', fake)
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', True)
    return connection


SECRET = {'usage_id': '/var/lib/libvirt/images/g3.qcow2', 'value': 'Vault-Value-1', 'description': 'g3 disk'}


# --- libvirt_secret ----------------------------------------------------------

def test_secret_created_private_ephemeral_then_idempotent(conn, capsys):
    res = run(libvirt_secret, dict(SECRET, _ansible_diff=True), capsys)
    assert res['changed'] and res['value_set'] and res['reasons'] == ['the secret does not exist']
    secret = conn.secrets[0]
    assert "ephemeral=\"yes\"" in secret.xml and "private=\"yes\"" in secret.xml
    assert secret.values == [b'Vault-Value-1']
    assert 'Vault-Value-1' not in json.dumps(res)
    assert res['uuid'] == secret.UUIDString() and res['diff']['before'] == ''
    again = run(libvirt_secret, SECRET, capsys)
    assert not again['changed'] and not again['value_set']
    assert secret.values == [b'Vault-Value-1']


def test_secret_check_mode_defines_nothing(conn, capsys):
    res = run(libvirt_secret, dict(SECRET, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert res['changed'] and conn.secrets == [] and 'g3 disk' in res['diff']['after']
    assert conn.opened == ['ro']  # check mode reads over a read-only connection
    run(libvirt_secret, SECRET, capsys)
    del conn.opened[:]
    again = run(libvirt_secret, dict(SECRET, value='other', _ansible_check_mode=True), capsys)
    assert not again['changed'] and again['has_value'] is None and conn.opened == ['ro']


def test_secret_value_update_policies(conn, capsys):
    run(libvirt_secret, SECRET, capsys)
    secret = conn.secrets[0]
    assert run(libvirt_secret, dict(SECRET, value='other'), capsys)['changed'] is False  # on_create
    always = run(libvirt_secret, dict(SECRET, update_value='always'), capsys)
    assert always['changed'] and secret.values[-1] == b'Vault-Value-1'
    fp_args = dict(SECRET, update_value='on_change', fingerprint_key='fp-key')
    first = run(libvirt_secret, fp_args, capsys)
    assert first['changed'] and first['reasons'] == ['no value fingerprint recorded yet']
    assert '[secvirt-hmac-sha256:' in secret.xml and 'Vault-Value-1' not in secret.xml
    assert not run(libvirt_secret, fp_args, capsys)['changed']
    changed = run(libvirt_secret, dict(fp_args, value='Vault-Value-2'), capsys)
    assert changed['changed'] and changed['reasons'] == ['the value fingerprint differs']
    assert secret.values[-1] == b'Vault-Value-2'


def test_secret_flag_change_redefines(conn, capsys, monkeypatch):
    # Record warnings at the source: once controller code (ansible.template)
    # is imported in this process, AnsibleModule routes warnings elsewhere.
    warned = []
    monkeypatch.setattr(libvirt_secret.AnsibleModule, 'warn', lambda self, msg: warned.append(msg))
    run(libvirt_secret, SECRET, capsys)
    old = conn.secrets[0]
    res = run(libvirt_secret, dict(SECRET, ephemeral=False), capsys)
    assert res['changed'] and res['value_set']
    assert 'base64-encoded' in json.dumps(warned)
    assert conn.secrets[0] is not old and "ephemeral=\"no\"" in conn.secrets[0].xml


def test_secret_without_value_gets_one_even_with_on_create(conn, capsys):
    # the secret exists but holds no value (an earlier setValue failed, or it
    # was defined by hand): on_create must not take "exists" for "done"
    args = dict(SECRET, private=False)
    secret = conn.secretDefineXML(
        "<secret ephemeral='yes' private='no'><description>g3 disk</description>"
        "<usage type='volume'><volume>%s</volume></usage></secret>" % SECRET['usage_id'], 0)
    conn.opened = []
    predicted = run(libvirt_secret, dict(args, _ansible_check_mode=True), capsys)
    assert predicted['changed'] and predicted['value_set'] and predicted['has_value'] is False
    # libvirt reads a value only over a read-write connection: check mode opens
    # one for that probe alone, beside its read-only one
    assert conn.opened == ['ro', 'rw']
    assert predicted['reasons'] == ['the secret has no value'] and secret.values == []
    res = run(libvirt_secret, args, capsys)
    assert res['changed'] and res['value_set'] and secret.values == [b'Vault-Value-1']
    again = run(libvirt_secret, args, capsys)
    assert not again['changed'] and again['has_value'] is True
    # a private secret does not say whether it has a value: reported as unknown
    created = run(libvirt_secret, dict(usage_type='ceph', usage_id='client.x', value='v'), capsys)
    assert created['has_value'] is False  # it did not exist
    private = run(libvirt_secret, dict(usage_type='ceph', usage_id='client.x', value='v'), capsys)
    assert private['has_value'] is None and not private['changed']


def test_failed_set_value_leaves_no_valueless_secret_behind(conn, capsys):
    # libvirt never tells whether a private secret has a value, so the module
    # must not leave one without: a secret it just defined is undefined again
    conn.set_error = FakeError('cannot write secret value', 38)
    res = run(libvirt_secret, SECRET, capsys)
    assert res['failed'] and 'cannot write secret value' in res['msg'] and 'Vault-Value-1' not in json.dumps(res)
    assert conn.secrets == []
    conn.set_error = None
    res = run(libvirt_secret, SECRET, capsys)
    assert res['value_set'] and conn.secrets[0].values == [b'Vault-Value-1']


def test_failed_set_value_does_not_record_the_new_fingerprint(conn, capsys):
    fp_args = dict(SECRET, update_value='on_change', fingerprint_key='fp-key')
    run(libvirt_secret, fp_args, capsys)
    secret = conn.secrets[0]
    conn.set_error = FakeError('cannot write secret value', 38)
    assert run(libvirt_secret, dict(fp_args, value='Vault-Value-2'), capsys)['failed']
    assert conn.secrets == [secret] and secret.values == [b'Vault-Value-1']  # the old value stays usable
    conn.set_error = None
    res = run(libvirt_secret, dict(fp_args, value='Vault-Value-2'), capsys)
    assert res['value_set'] and secret.values[-1] == b'Vault-Value-2'


def test_ephemeral_secret_is_reported_as_lost_on_a_daemon_restart(conn, capsys, monkeypatch):
    warned = []
    monkeypatch.setattr(libvirt_secret.AnsibleModule, 'warn', lambda self, msg: warned.append(msg))
    res = run(libvirt_secret, SECRET, capsys)
    assert res['ephemeral'] is True and res['value_set']
    assert len(warned) == 1 and 'restart' in warned[0] and SECRET['usage_id'] in warned[0]
    assert 'Vault-Value-1' not in ' '.join(warned)
    del warned[:]
    assert not run(libvirt_secret, SECRET, capsys)['changed'] and warned == []  # nothing set: nothing to lose
    conn.restart()  # e.g. a handler restarting libvirtd later in the play
    again = run(libvirt_secret, SECRET, capsys)
    assert again['changed'] and again['reasons'] == ['the secret does not exist']
    persistent = run(libvirt_secret, dict(SECRET, usage_id='/p.qcow2', ephemeral=False), capsys)
    assert persistent['ephemeral'] is False and not any('restart' in w for w in warned[1:])


def test_secret_absent_and_base64(conn, capsys):
    res = run(libvirt_secret, dict(usage_type='ceph', usage_id='client.admin', value='AQID',
                                   value_encoding='base64'), capsys)
    assert conn.secrets[0].values == [b'\x01\x02\x03'] and res['changed']
    gone = run(libvirt_secret, dict(usage_type='ceph', usage_id='client.admin', state='absent'), capsys)
    assert gone['changed'] and conn.secrets == []
    assert not run(libvirt_secret, dict(usage_type='ceph', usage_id='client.admin', state='absent'), capsys)['changed']


def test_secret_refusals(conn, capsys):
    assert run(libvirt_secret, dict(SECRET, value_encoding='base64', value='***'), capsys)['failed']
    run(libvirt_secret, SECRET, capsys)
    uuid = conn.secrets[0].UUIDString()
    res = run(libvirt_secret, dict(SECRET, uuid=uuid, usage_id='/other'), capsys)
    assert res['failed'] and 'exists with usage volume' in res['msg']


# --- libvirt_secret: several secrets in one call ------------------------------

BATCH = [
    dict(usage_id='/var/lib/libvirt/images/b1.qcow2', value='Batch-Value-1', description='b1 disk'),
    dict(usage_type='ceph', usage_id='client.b2', value='QmF0Y2gtVmFsdWUtMg==', value_encoding='base64'),
    dict(usage_type='iscsi', usage_id='iqn.2026-01.org.example:b3', value='Batch-Value-3', private=False),
]
BATCH_VALUES = ('Batch-Value-1', 'QmF0Y2gtVmFsdWUtMg==', 'Batch-Value-2', 'Batch-Value-3')


def assert_no_batch_value(res):
    text = json.dumps(res)
    assert not [value for value in BATCH_VALUES if value in text]


def test_secret_batch_creates_three_secrets_over_one_connection(conn, capsys, monkeypatch):
    warned = []
    monkeypatch.setattr(libvirt_secret.AnsibleModule, 'warn', lambda self, msg: warned.append(msg))
    res = run(libvirt_secret, dict(secrets=BATCH, _ansible_diff=True), capsys)
    assert res['changed'] and conn.opened == ['rw']
    assert [s.values for s in conn.secrets] == [[b'Batch-Value-1'], [b'Batch-Value-2'], [b'Batch-Value-3']]
    assert [(r['usage_type'], r['usage_id']) for r in res['secrets']] == [
        ('volume', '/var/lib/libvirt/images/b1.qcow2'), ('ceph', 'client.b2'), ('iscsi', 'iqn.2026-01.org.example:b3')]
    for result, secret in zip(res['secrets'], conn.secrets):
        assert set(result) == {'usage_type', 'usage_id', 'changed', 'uuid', 'value_set', 'reasons', 'has_value', 'ephemeral'}
        assert result['changed'] and result['value_set'] and result['uuid'] == secret.UUIDString()
        assert result['reasons'] == ['the secret does not exist'] and result['has_value'] is False
    assert 'uuid' not in res and 'value_set' not in res  # the single-secret keys are per entry
    assert [d['before'] for d in res['diff']] == ['', '', ''] and 'b1 disk' in res['diff'][0]['after']
    assert res['diff'][1]['before_header'] == 'secret ceph client.b2'
    assert_no_batch_value(res)
    # one warning for all the ephemeral secrets it set, naming each
    assert len(warned) == 1 and all(name in warned[0] for name in ('b1.qcow2', 'client.b2', 'example:b3'))


def test_secret_batch_check_mode_predicts_and_changes_nothing(conn, capsys):
    res = run(libvirt_secret, dict(secrets=BATCH, _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert res['changed'] and all(r['changed'] and r['value_set'] for r in res['secrets'])
    assert conn.secrets == [] and conn.opened == ['ro']
    assert [r['uuid'] for r in res['secrets']] == [None, None, None]
    assert 'client.b2' in res['diff'][1]['after']
    assert_no_batch_value(res)
    # two non-private secrets without a value: check mode asks whether they
    # have one over a single read-write connection, besides its read-only one
    conn.secretDefineXML("<secret ephemeral='yes' private='no'><description>b1 disk</description>"
                         "<usage type='volume'><volume>/var/lib/libvirt/images/b1.qcow2</volume></usage></secret>", 0)
    conn.secretDefineXML("<secret ephemeral='yes' private='no'><usage type='ceph'><name>client.b2</name></usage>"
                         "</secret>", 0)
    del conn.opened[:]
    batch = [dict(BATCH[0], private=False), dict(BATCH[1], private=False), BATCH[2]]
    predicted = run(libvirt_secret, dict(secrets=batch, _ansible_check_mode=True), capsys)
    assert conn.opened == ['ro', 'rw']
    assert [r['has_value'] for r in predicted['secrets']] == [False, False, False]
    assert [r['reasons'] for r in predicted['secrets'][:2]] == [['the secret has no value']] * 2
    assert all(s.values == [] for s in conn.secrets)


def test_secret_batch_second_run_is_idempotent(conn, capsys):
    run(libvirt_secret, dict(secrets=BATCH), capsys)
    del conn.opened[:]
    again = run(libvirt_secret, dict(secrets=BATCH), capsys)
    assert again['changed'] is False and conn.opened == ['rw']
    assert [r['changed'] for r in again['secrets']] == [False, False, False]
    assert [r['has_value'] for r in again['secrets']] == [None, None, True]  # the third is not private
    assert [s.values for s in conn.secrets] == [[b'Batch-Value-1'], [b'Batch-Value-2'], [b'Batch-Value-3']]


@pytest.mark.parametrize('bad,message', [
    (dict(value='Batch-Value-*', value_encoding='base64'), 'value is not valid base64'),
    (dict(value=None), 'value is required with state=present'),
    (dict(update_value='on_change'), 'fingerprint_key is required with update_value=on_change'),
    (dict(uuid='not-a-uuid'), "invalid uuid 'not-a-uuid'"),
    (dict(usage_type='ceph', usage_id='client.b2'), 'listed twice in secrets (entries 2 and 3)'),
])
def test_secret_batch_invalid_third_entry_refuses_the_whole_batch(conn, capsys, bad, message):
    third = dict(BATCH[2], **bad)
    if third['value'] is None:
        del third['value']
    res = run(libvirt_secret, dict(secrets=BATCH[:2] + [third]), capsys)
    name = '%s %s' % (third.get('usage_type', 'volume'), third['usage_id'])
    assert res['failed'] and res['msg'].startswith('secret %s: ' % name) and message in res['msg']
    assert res['msg'].endswith('(no secret was changed)') and res['changed'] is False
    assert conn.secrets == []
    assert_no_batch_value(res)


def test_secret_batch_refused_when_libvirt_says_an_entry_is_wrong(conn, capsys):
    # planned over the connection (the uuid belongs to another usage) before anything is applied
    other = conn.secretDefineXML("<secret ephemeral='yes' private='yes'><usage type='volume'><volume>/other.qcow2"
                                 "</volume></usage></secret>", 0)
    batch = BATCH[:2] + [dict(BATCH[2], uuid=other.UUIDString())]
    res = run(libvirt_secret, dict(secrets=batch), capsys)
    assert res['failed'] and 'secret iscsi iqn.2026-01.org.example:b3: secret %s exists with usage volume' % (
        other.UUIDString()) in res['msg']
    assert conn.secrets == [other] and other.values == []
    assert_no_batch_value(res)


def test_secret_batch_failure_while_applying_names_the_entry_and_what_changed(conn, capsys):
    run(libvirt_secret, dict(secrets=[BATCH[0]]), capsys)
    first = conn.secrets[0]
    original = FakeSecret.setValue

    def refuse_the_iscsi_value(secret, value, flags):
        if secret.usage()[0] == 'iscsi':
            raise FakeError('cannot write secret value', 38)
        original(secret, value, flags)
    FakeSecret.setValue = refuse_the_iscsi_value
    try:
        batch = [dict(BATCH[0], state='absent'), BATCH[2], BATCH[1]]
        res = run(libvirt_secret, dict(secrets=batch), capsys)
    finally:
        FakeSecret.setValue = original
    assert res['failed'] and res['changed'] is True
    assert res['msg'].startswith('secret iscsi iqn.2026-01.org.example:b3: libvirt refused the value: cannot write secret value')
    assert 'changed before it: volume /var/lib/libvirt/images/b1.qcow2' in res['msg']
    assert 'not applied: ceph client.b2' in res['msg'] and 'changed in part' not in res['msg']
    assert [(r['usage_id'], r['changed']) for r in res['secrets']] == [('/var/lib/libvirt/images/b1.qcow2', True)]
    assert first not in conn.secrets and conn.secrets == []  # the iscsi secret was undefined again
    assert_no_batch_value(res)


def test_secret_batch_failure_after_an_undefine_says_the_entry_is_changed_in_part(conn, capsys, monkeypatch):
    run(libvirt_secret, dict(secrets=[BATCH[1]]), capsys)

    def refuse(xml, flags):
        raise FakeError('cannot define secret', 1)
    monkeypatch.setattr(conn, 'secretDefineXML', refuse)
    # ephemeral cannot change in place: undefined first, then the define fails
    res = run(libvirt_secret, dict(secrets=[dict(BATCH[1], ephemeral=False), BATCH[0]]), capsys)
    assert res['failed'] and res['changed'] is True and res['secrets'] == [] and conn.secrets == []
    assert res['msg'] == ('secret ceph client.b2: libvirt refused: cannot define secret (this secret is changed in part; '
                          'no secret was changed before it; not applied: volume /var/lib/libvirt/images/b1.qcow2)')


def test_secret_batch_is_exclusive_with_the_single_secret_options(conn, capsys):
    both = run(libvirt_secret, dict(secrets=BATCH, usage_id='/x.qcow2'), capsys)
    assert both['failed'] and 'mutually exclusive: secrets|usage_id' in both['msg']
    value = run(libvirt_secret, dict(secrets=BATCH, value='Batch-Value-1'), capsys)
    assert value['failed'] and 'mutually exclusive: secrets|value' in value['msg']
    assert_no_batch_value(value)
    neither = run(libvirt_secret, dict(description='x'), capsys)
    assert neither['failed'] and 'one of the following is required: usage_id, secrets' in neither['msg']
    assert conn.secrets == [] and conn.opened == []
    empty = run(libvirt_secret, dict(secrets=[]), capsys)
    assert empty['changed'] is False and empty['secrets'] == []


# --- guest_disk ------------------------------------------------------------

DOMAIN = """<domain type='qemu'><name>kvm01</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/>
<source file='/var/lib/libvirt/images/kvm01.img'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>"""


def test_guest_disk_query_switch_and_refusal(conn, capsys):
    conn.domains['kvm01'] = FakeDomain(DOMAIN, state=1)
    query = run(guest_disk, dict(domain='kvm01', target='vda', state='query'), capsys)
    assert query['disk']['source'] == '/var/lib/libvirt/images/kvm01.img' and query['domain_state'] == 'running'
    assert conn.opened == ['ro']  # a query only reads
    refused = run(guest_disk, dict(domain='kvm01', target='vda', dev='/dev/mapper/kvm01'), capsys)
    assert refused['failed'] and 'the guest is running' in refused['msg']
    conn.domains['kvm01']._state = 5
    check = run(guest_disk, dict(domain='kvm01', target='vda', dev='/dev/mapper/kvm01',
                                 _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert check['changed'] and "dev=\"/dev/mapper/kvm01\"" in check['diff']['after']
    assert conn.domains['kvm01'].xml == DOMAIN
    assert conn.opened[-1] == 'ro'  # check mode too
    done = run(guest_disk, dict(domain='kvm01', target='vda', dev='/dev/mapper/kvm01'), capsys)
    assert conn.opened[-1] == 'rw'
    assert done['changed'] and "type=\"block\"" in conn.domains['kvm01'].xml
    assert not run(guest_disk, dict(domain='kvm01', target='vda', dev='/dev/mapper/kvm01'), capsys)['changed']
    missing = run(guest_disk, dict(domain='nope', target='vda', state='query'), capsys)
    assert missing['failed'] and 'no guest named nope' in missing['msg']
    wrong = run(guest_disk, dict(domain='kvm01', target='vdz', state='query'), capsys)
    assert wrong['failed'] and 'no disk with target vdz' in wrong['msg']


# --- image_check -------------------------------------------------------------

@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='qemu-img not installed')
def test_image_check_module(tmp_path, capsys):
    good = str(tmp_path / 'good.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', good, '16M'], check=True)
    res = run(image_check, dict(path=good, format='qcow2', max_virtual_size='16M'), capsys)
    assert res['accepted'] and not res['changed'] and res['image']['virtual_size'] == 16 << 20
    big = run(image_check, dict(path=good, format='qcow2', max_virtual_size='15M'), capsys)
    assert big['failed'] and 'exceeds the limit' in big['msg'] and big['accepted'] is False
    soft = run(image_check, dict(path=good, format='raw', max_virtual_size='1G', fail_on_reject=False), capsys)
    assert not soft.get('failed') and soft['accepted'] is False and 'qcow2 header' in soft['reasons'][0]
    bad = run(image_check, dict(path=good, format='qcow2', max_virtual_size='lots'), capsys)
    assert bad['failed'] and 'cannot read' in bad['msg']
    gone = run(image_check, dict(path=str(tmp_path / 'none'), format='raw', max_virtual_size='1G'), capsys)
    assert gone['failed'] and 'cannot inspect' in gone['msg']


# --- luks_volume -------------------------------------------------------------

def fake_tools(tmp_path, monkeypatch):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    log = tmp_path / 'calls.log'
    for tool, body in (('cryptsetup', 'echo "$@" >> %s; [ "$1" = status ] && exit 4; exit 0' % log),
                       ('blkid', 'echo "$@" >> %s; exit 2' % log), ('wipefs', 'exit 0'), ('dmsetup', 'exit 1')):
        path = bindir / tool
        path.write_text('#!/bin/sh\n' + body + '\n')
        path.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    return log


def test_luks_volume_module_refuses_missing_device_and_bad_passphrase(tmp_path, monkeypatch, capsys):
    fake_tools(tmp_path, monkeypatch)
    res = run(luks_volume, dict(name='g1', device=str(tmp_path / 'nodev'), passphrase='Passphrase-01'), capsys)
    assert res['failed'] and 'does not exist' in res['msg'] and res['mapper'] == '/dev/mapper/g1'
    res = run(luks_volume, dict(name='g1', device='/dev/null', passphrase='two\nlines'), capsys)
    assert res['failed'] and 'newline' in res['msg']
    res = run(luks_volume, dict(name='g1', device='/dev/null'), capsys)
    assert res['failed'] and 'passphrase' in res['msg']


def test_luks_volume_module_absent_on_missing_device_is_a_no_op(tmp_path, monkeypatch, capsys):
    log = fake_tools(tmp_path, monkeypatch)
    res = run(luks_volume, dict(name='g1', device=str(tmp_path / 'nodev'), state='absent', wipe=True,
                                _ansible_diff=True), capsys)
    assert not res['changed'] and res['actions'] == [] and res['diff']['before']['device_exists'] is False
    assert log.read_text().split('\n')[0] == 'status g1'


def test_luks_volume_module_check_mode_on_a_blank_block_device(tmp_path, monkeypatch, capsys):
    log = fake_tools(tmp_path, monkeypatch)
    import stat as statmod
    real_stat = os.stat

    def fake_stat(path, *a, **kw):
        if path == '/dev/fakeblk':
            return os.stat_result((statmod.S_IFBLK | 0o600, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        return real_stat(path, *a, **kw)
    monkeypatch.setattr(os, 'stat', fake_stat)
    res = run(luks_volume, dict(name='g1', device='/dev/fakeblk', passphrase='Secret-PP-0001',
                                _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert res['changed'] and res['actions'] == ['format', 'open']
    assert res['diff'] == {'before': {'state': 'absent', 'luks_version': None},
                           'after': {'state': 'opened', 'luks_version': 2}}
    calls = log.read_text()
    assert 'luksFormat' not in calls and 'Secret-PP-0001' not in calls


def test_luks_volume_module_check_mode_predicts_a_volume_on_a_device_not_created_yet(tmp_path, monkeypatch, capsys):
    """In a --check run the role's lvcreate has not run, so the logical volume
    is missing: check mode must still predict the format (and open) that the
    real run does, not be skipped; a real run still refuses a missing device."""
    log = fake_tools(tmp_path, monkeypatch)
    warned = []
    monkeypatch.setattr(luks_volume.AnsibleModule, 'warn', lambda self, msg: warned.append(msg))
    missing = str(tmp_path / 'vg' / 'g1_luks')
    res = run(luks_volume, dict(name='g1', device=missing, passphrase='Secret-PP-0001',
                                _ansible_check_mode=True, _ansible_diff=True), capsys)
    assert not res.get('failed'), res
    assert res['changed'] and res['actions'] == ['format', 'open']
    assert res['diff'] == {'before': {'state': 'absent', 'device_exists': False},
                           'after': {'state': 'opened', 'luks_version': 2}}
    assert any('%s does not exist yet' % missing in w for w in warned), warned
    assert 'luksFormat' not in log.read_text() and 'Secret-PP-0001' not in log.read_text()
    closed = run(luks_volume, dict(name='g1', device=missing, passphrase='Secret-PP-0001', state='closed',
                                   _ansible_check_mode=True), capsys)
    assert closed['changed'] and closed['actions'] == ['format']
    real = run(luks_volume, dict(name='g1', device=missing, passphrase='Secret-PP-0001'), capsys)
    assert real['failed'] and 'device %s does not exist' % missing in real['msg']


def test_luks_volume_module_refuses_short_passphrases_before_any_command(tmp_path, monkeypatch, capsys):
    log = fake_tools(tmp_path, monkeypatch)
    res = run(luks_volume, dict(name='g1', device='/dev/null', passphrase='abc'), capsys)
    assert res['failed'] and 'passphrase must be at least 12 characters' in res['msg']
    assert 'abc' not in json.dumps(res) and not log.exists()
    res = run(luks_volume, dict(name='g1', device='/dev/null', passphrase='Long-enough-01',
                                add_passphrases=['Recovery-key-1', 'short']), capsys)
    assert res['failed'] and 'an entry of add_passphrases must be at least 12' in res['msg']
    assert 'short' not in res['msg'] and not log.exists()
    # the floor: passphrase_min_length cannot go below 8
    res = run(luks_volume, dict(name='g1', device='/dev/null', passphrase='8-chars!',
                                passphrase_min_length=7), capsys)
    assert res['failed'] and 'passphrase_min_length must be at least 8' in res['msg'] and not log.exists()
    # positive control: the same short values pass once the minimum allows them;
    # previous_passphrase and remove_passphrases only need to unlock (no minimum).
    res = run(luks_volume, dict(name='g1', device='/dev/null', passphrase='8-chars!', passphrase_min_length=8,
                                previous_passphrase='old', remove_passphrases=['x']), capsys)
    assert res['failed'] and 'not a block device' in res['msg']


def test_luks_volume_module_absent_needs_wipe(tmp_path, monkeypatch, capsys):
    log = fake_tools(tmp_path, monkeypatch)
    res = run(luks_volume, dict(name='g1', device=str(tmp_path / 'nodev'), state='absent'), capsys)
    assert res['failed'] and 'wipe=true' in res['msg'] and 'unrecoverable' in res['msg']
    assert not log.exists()  # refused before cryptsetup was even asked for the mapping
    checked = run(luks_volume, dict(name='g1', device=str(tmp_path / 'nodev'), state='absent',
                                    _ansible_check_mode=True), capsys)
    assert checked['failed'] and 'wipe=true' in checked['msg']
    res = run(luks_volume, dict(name='g1', device=str(tmp_path / 'nodev'), state='absent', wipe=True), capsys)
    assert not res.get('failed') and not res['changed']
