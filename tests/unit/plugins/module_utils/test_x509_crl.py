"""x509_crl: the revocation index and the CRL decisions, without Ansible."""
import datetime
import json

import pytest
from cryptography import x509 as cx509

from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xc
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue as xi

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope='module')
def ca():
    return x.create_ca('ecdsa-p384', {'O': 'unit', 'CN': 'unit'}, 3650, now=NOW - 30 * DAY)


def leaf(ca, cn, days=365, now=NOW):
    key = x.generate_private_key('ecdsa-p256')
    cert = xi.issue_certificate(ca[0], ca[1], key.public_key(), {'O': 'unit', 'CN': cn}, [], [], 'client', days, now=now)
    return x.certificate_pem(cert).decode()


@pytest.mark.parametrize('given, want', [
    ('3A:0F:91', '3a0f91'), ('0x3a0f91', '3a0f91'), ('003A0F91', '3a0f91'), (0x3a0f91, '3a0f91'), (' 3a0f91 ', '3a0f91'),
])
def test_serials_are_normalised(given, want):
    assert xc.normalize_serial(given) == want


@pytest.mark.parametrize('bad', ['', 'xyz', '0', '-1', 0, '3a 0f'])
def test_bad_serials_are_refused(bad):
    with pytest.raises(x.X509Error):
        xc.normalize_serial(bad)


def test_index_round_trip_and_its_ca(ca):
    index = xc.load_index(None, ca[1])
    assert index['crl_number'] == 0 and index['issued'] == {} and index['revoked'] == {}
    assert xc.load_index(xc.dump_index(index), ca[1]) == index
    with pytest.raises(x.X509Error, match='not valid JSON'):
        xc.load_index(b'{', ca[1])
    with pytest.raises(x.X509Error, match='unknown format'):
        xc.load_index(json.dumps(dict(version=7)), ca[1])
    with pytest.raises(x.X509Error, match="lacks a valid 'revoked'"):
        xc.load_index(json.dumps(dict(index, revoked=[])), ca[1])


def test_names_and_hosts_resolve_to_every_recorded_serial(ca):
    index = xc.load_index(None, ca[1])
    issued = {'kvm01/server': leaf(ca, 'kvm01'), 'kvm01/client': leaf(ca, 'kvm01c'), 'kvm011/client': leaf(ca, 'x')}
    added = xc.record_issued(index, xc.issued_entries(issued), ca[1])
    assert len(added) == 3 and xc.record_issued(index, xc.issued_entries(issued), ca[1]) == []
    by_host = xc.resolve_revocations(index, [dict(host='kvm01')])
    assert sorted(rec['name'] for rec in by_host.values()) == ['kvm01/client', 'kvm01/server']   # not kvm011
    by_name = xc.resolve_revocations(index, [dict(name='kvm011/client', reason='superseded')])
    assert [rec['reason'] for rec in by_name.values()] == ['superseded']
    with pytest.raises(x.X509Error, match='unknown reason'):
        xc.resolve_revocations(index, [dict(host='kvm01', reason='certificate_hold')])


def test_a_foreign_certificate_is_not_recorded(ca):
    other = x.create_ca('ecdsa-p256', {'CN': 'other'}, 30, now=NOW)
    index = xc.load_index(None, ca[1])
    with pytest.raises(x.X509Error, match='kvm02/server: not signed by this CA'):
        xc.record_issued(index, xc.issued_entries({'kvm02/server': leaf(other, 'kvm02')}), ca[1])
    assert index['issued'] == {}


def test_expired_certificates_leave_the_crl_but_not_the_index(ca):
    index = xc.load_index(None, ca[1])
    issued = {'old/client': leaf(ca, 'old', days=10, now=NOW - 20 * DAY), 'new/client': leaf(ca, 'new')}
    xc.record_issued(index, xc.issued_entries(issued), ca[1])
    xc.apply_revocations(index, xc.resolve_revocations(index, [dict(name='old/client'), dict(name='new/client')]), NOW)
    listed = xc.listed_serials(index, NOW)
    assert len(index['revoked']) == 2 and [rec['name'] for rec in listed.values()] == ['new/client']


def test_crl_problems_name_each_reason(ca):
    index = xc.load_index(None, ca[1])
    xc.record_issued(index, xc.issued_entries({'a/client': leaf(ca, 'a')}), ca[1])
    xc.apply_revocations(index, xc.resolve_revocations(index, [dict(name='a/client')]), NOW)
    listed = xc.listed_serials(index, NOW)
    crl = xc.sign_crl(ca[0], ca[1], listed, 1, 30, now=NOW)
    assert xc.crl_problems(crl, ca[1], listed, 10, now=NOW) == []
    assert xc.crl_problems(crl, ca[1], listed, 10, now=NOW + 25 * DAY)[0].startswith('nextUpdate ')
    assert xc.crl_problems(crl, ca[1], listed, 10, now=NOW + 31 * DAY)[0].startswith('expired on ')
    assert xc.crl_problems(crl, ca[1], {}, 10, now=NOW)[0].startswith('lists ')
    other = x.create_ca('ecdsa-p384', {'O': 'unit', 'CN': 'unit'}, 30, now=NOW)
    assert 'not signed by this CA' in xc.crl_problems(crl, other[1], listed, 10, now=NOW)
    # the CRL itself: v2, numbered, pointing at the CA's key, lastUpdate backdated
    assert crl.extensions.get_extension_for_class(cx509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(cx509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == xi.subject_key_identifier(ca[1]).digest
    assert xc.describe_crl(crl)['this_update'] == x.iso(NOW - x.BACKDATE)


def test_an_unspecified_reason_is_not_encoded(ca):
    listed = {'1f': dict(reason='unspecified', revoked_at=x.iso(NOW))}
    crl = xc.sign_crl(ca[0], ca[1], listed, 1, 30, now=NOW)
    assert len(list(crl[0].extensions)) == 0 and xc.crl_entries(crl) == {'1f': 'unspecified'}


def test_bundles_hold_every_ca(ca):
    other = x.create_ca('ecdsa-p256', {'CN': 'other'}, 30, now=NOW)
    bundle = x.certificate_pem(ca[1]) + x.certificate_pem(other[1])
    assert [c.subject for c in xc.load_ca_bundle(bundle)] == [ca[1].subject, other[1].subject]
    crl = xc.crl_pem(xc.sign_crl(other[0], other[1], {}, 1, 30))
    assert xc.check_crl_for_install(crl, xc.load_ca_bundle(bundle)).issuer == other[1].subject
