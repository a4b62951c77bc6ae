"""The five X.509 modules end to end in a temporary directory: CA, CSR, batch sign, install, verify."""
import datetime
import grp
import json
import os
import pwd
import stat

from unittest import mock

import pytest
from cryptography import x509 as cx509
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as x
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue as xi
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xc
from ansible_collections.secvirt.kvm.plugins.modules import x509_ca, x509_crl, x509_csr, x509_install, x509_sign, x509_verify

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
PASS = 'unit-test-passphrase'


def run(module, args, capsys, check=False, diff=False):
    """Run a module's main(); its result, with the warnings it emitted under 'warned'.

    Warnings are captured at AnsibleModule.warn: how ansible-core reports
    them in the result differs between versions and depends on global state.
    """
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    warned = []
    with patch_module_args(args), mock.patch.object(basic.AnsibleModule, 'warn',
                                                    lambda self, msg, **kw: warned.append(msg)):
        with pytest.raises(SystemExit):
            module.main()
    result = json.loads(capsys.readouterr().out)
    result['warned'] = warned
    return result


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def tree(tmp_path):
    for d in ('ca/private', 'host/private', 'host/vnc'):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


def ca_args(tree, **kw):
    args = dict(cert_path=str(tree / 'ca/cacert.pem'), key_path=str(tree / 'ca/private/cakey.pem'),
                passphrase=PASS, subject={'O': 'unit', 'CN': 'unit'})
    args.update(kw)
    return args


def key_entry(tree, **kw):
    entry = dict(name='server', path=str(tree / 'host/private/serverkey.pem'), owner=USER, group=GROUP,
                 subject={'CN': 'kvm01.example.org'}, dns=['kvm01.example.org'],
                 cert_path=str(tree / 'host/servercert.pem'),
                 copies=[dict(path=str(tree / 'host/vnc/server-key.pem'), owner=USER, group=GROUP, mode='0440')])
    entry.update(kw)
    return entry


# --- x509_ca ----------------------------------------------------------------------

def test_ca_created_once_encrypted_then_reused(tree, capsys):
    preview = run(x509_ca, ca_args(tree), capsys, check=True, diff=True)
    assert preview['changed'] and preview['created'] and preview['certificate'] == ''
    assert not (tree / 'ca/cacert.pem').exists()
    res = run(x509_ca, ca_args(tree), capsys)
    assert res['changed'] and res['created'] and res['key_encrypted'] and res['key_type'] == 'ecdsa-p384'
    key_pem = (tree / 'ca/private/cakey.pem').read_bytes()
    assert key_pem.startswith(b'-----BEGIN ENCRYPTED PRIVATE KEY-----')
    assert PASS.encode() not in key_pem and PASS not in json.dumps(res)
    assert mode(str(tree / 'ca/private/cakey.pem')) == 0o600
    assert mode(str(tree / 'ca/cacert.pem')) == 0o644
    again = run(x509_ca, ca_args(tree, key_type='rsa-4096'), capsys)
    assert not again['changed'] and not again['created']
    assert again['certificate'] == res['certificate'] and again['fingerprint'] == res['fingerprint']


def test_ca_refuses_bad_states(tree, capsys):
    assert 'create=false' in run(x509_ca, ca_args(tree, create=False), capsys)['msg']
    assert 'must not be empty' in run(x509_ca, ca_args(tree, passphrase=''), capsys)['msg']
    assert 'validity_days' in run(x509_ca, ca_args(tree, validity_days=0), capsys)['msg']
    run(x509_ca, ca_args(tree), capsys)
    assert 'wrong passphrase' in run(x509_ca, ca_args(tree, passphrase='not-the-one'), capsys)['msg']
    os.unlink(str(tree / 'ca/cacert.pem'))
    assert 'only one of' in run(x509_ca, ca_args(tree), capsys)['msg']


def test_ca_missing_directory(tree, capsys):
    res = run(x509_ca, ca_args(tree, key_path=str(tree / 'nope/cakey.pem')), capsys)
    assert res['failed'] and 'does not exist' in res['msg']


def test_ca_reuse_of_a_plain_key_warns(tree, capsys):
    key, cert = x.create_ca('ecdsa-p256', {'CN': 'mine'}, 100)
    (tree / 'ca/cacert.pem').write_bytes(x.certificate_pem(cert))
    (tree / 'ca/private/cakey.pem').write_bytes(x.private_key_pem(key))
    os.chmod(str(tree / 'ca/private/cakey.pem'), 0o644)
    res = run(x509_ca, ca_args(tree), capsys)
    assert not res['changed'] and res['key_encrypted'] is False
    warnings = ' '.join(res['warned'])
    assert 'is not encrypted' in warnings and 'mode 0644' in warnings and 'plan a CA rotation' in warnings


def test_ca_reuse_refuses_a_leaf_certificate(tree, capsys):
    ca_key, ca_cert = x.create_ca('ecdsa-p256', {'CN': 'mine'}, 100)
    leaf_key = x.generate_private_key('ecdsa-p256')
    leaf = xi.issue_certificate(ca_key, ca_cert, leaf_key.public_key(), {'CN': 'a.b'}, ['a.b'], [], 'server', 10)
    (tree / 'ca/cacert.pem').write_bytes(x.certificate_pem(leaf))
    (tree / 'ca/private/cakey.pem').write_bytes(x.private_key_pem(leaf_key, PASS))
    res = run(x509_ca, ca_args(tree), capsys)
    assert res['failed'] and 'basicConstraints CA is FALSE' in res['msg']


# --- x509_csr ----------------------------------------------------------------------

def test_csr_makes_keys_in_place_and_is_idempotent(tree, capsys):
    preview = run(x509_csr, dict(keys=[key_entry(tree)]), capsys, check=True, diff=True)
    assert preview['changed'] and preview['requests']['server']['key_created']
    assert not (tree / 'host/private/serverkey.pem').exists()
    res = run(x509_csr, dict(keys=[key_entry(tree)]), capsys, diff=True)
    req = res['requests']['server']
    assert res['changed'] and req['key_reason'] == 'missing' and req['current_certificate'] == ''
    assert 'PRIVATE' not in json.dumps(res)
    key_path, copy_path = str(tree / 'host/private/serverkey.pem'), str(tree / 'host/vnc/server-key.pem')
    assert mode(key_path) == 0o600 and mode(copy_path) == 0o440
    assert open(key_path, 'rb').read() == open(copy_path, 'rb').read()
    csr = x.load_csr(req['csr'])
    assert csr.is_signature_valid and x.public_key_fingerprint(csr.public_key()) == req['public_key_fingerprint']
    assert x.keys_match(csr.public_key(), x.load_private_key(open(key_path, 'rb').read()))
    assert 'absent' in res['diff']['before'] and 'ecdsa-p256 key' in res['diff']['after']
    again = run(x509_csr, dict(keys=[key_entry(tree)]), capsys)
    assert not again['changed'] and again['requests']['server']['public_key_fingerprint'] == req['public_key_fingerprint']
    assert not again['requests']['server']['key_created']
    assert not run(x509_csr, dict(keys=[key_entry(tree)]), capsys, check=True)['changed']


def test_csr_repairs_copies_and_modes(tree, capsys):
    run(x509_csr, dict(keys=[key_entry(tree)]), capsys)
    copy_path = str(tree / 'host/vnc/server-key.pem')
    os.chmod(copy_path, 0o600)
    with open(copy_path, 'w') as handle:
        handle.write('tampered')
    assert run(x509_csr, dict(keys=[key_entry(tree)]), capsys, check=True)['changed']
    assert open(copy_path).read() == 'tampered'
    res = run(x509_csr, dict(keys=[key_entry(tree)]), capsys)
    assert res['changed'] and not res['requests']['server']['key_created']
    assert open(copy_path, 'rb').read() == open(str(tree / 'host/private/serverkey.pem'), 'rb').read()
    assert mode(copy_path) == 0o440
    os.chmod(str(tree / 'host/private/serverkey.pem'), 0o640)
    assert run(x509_csr, dict(keys=[key_entry(tree)]), capsys)['changed']
    assert mode(str(tree / 'host/private/serverkey.pem')) == 0o600


def test_csr_regenerates_on_type_change_and_request(tree, capsys):
    first = run(x509_csr, dict(keys=[key_entry(tree)]), capsys)['requests']['server']
    other = run(x509_csr, dict(keys=[key_entry(tree, type='ecdsa-p384')]), capsys)['requests']['server']
    assert other['key_reason'] == 'type' and other['key_type'] == 'ecdsa-p384'
    assert other['public_key_fingerprint'] != first['public_key_fingerprint']
    rotated = run(x509_csr, dict(keys=[key_entry(tree, type='ecdsa-p384', regenerate=True)]), capsys)
    assert rotated['requests']['server']['key_reason'] == 'regenerate'


def test_csr_validates_all_before_writing(tree, capsys):
    bad = [key_entry(tree, mode='0644'),
           key_entry(tree, name='b', path=str(tree / 'missing/k.pem'), copies=[]),
           key_entry(tree, name='c', path=str(tree / 'host/c.pem'), copies=[], subject={'ZZ': 'x'}),
           key_entry(tree, name='c', path=str(tree / 'host/d.pem'), copies=[])]
    res = run(x509_csr, dict(keys=bad), capsys)
    assert res['failed'] and res['msg'].startswith('nothing written; ')
    for part in ('would let other users', 'directory', 'unknown subject attribute', 'c: duplicate name'):
        assert part in res['msg']
    assert os.listdir(str(tree / 'host/private')) == [] and not (tree / 'host/c.pem').exists()


def test_csr_returns_the_current_certificate(tree, capsys):
    (tree / 'host/servercert.pem').write_text('-----BEGIN CERTIFICATE-----\nxx\n')
    res = run(x509_csr, dict(keys=[key_entry(tree)]), capsys)
    assert res['requests']['server']['current_certificate'].startswith('-----BEGIN CERTIFICATE-----')


# --- x509_sign, x509_install, x509_verify --------------------------------------------

def sign_args(tree, requests, **kw):
    args = dict(ca_cert_path=str(tree / 'ca/cacert.pem'), ca_key_path=str(tree / 'ca/private/cakey.pem'),
                ca_passphrase=PASS, requests=requests, validity_days=90, renew_before_days=10)
    args.update(kw)
    return args


def cert_files(tree):
    return [dict(path=str(tree / 'host/servercert.pem'), owner=USER, group=GROUP, mode='0644'),
            dict(path=str(tree / 'host/vnc/server-cert.pem'), owner=USER, group=GROUP, mode='0440')]


def full_cycle(tree, capsys, diff=False):
    ca = run(x509_ca, ca_args(tree), capsys)
    csr = run(x509_csr, dict(keys=[key_entry(tree)]), capsys)['requests']['server']
    reqs = [dict(name='kvm01/server', csr=csr['csr'], profile='server',
                 subject={'O': 'unit', 'CN': 'kvm01.example.org'}, dns=['kvm01.example.org', 'kvm01'],
                 ip=['10.0.0.1'], current=csr['current_certificate'])]
    signed = run(x509_sign, sign_args(tree, reqs), capsys, diff=diff)
    return ca, reqs, signed


def install_args(tree, ca, cert, **kw):
    args = dict(ca_certificate=ca['certificate'],
                ca_files=[dict(path=str(tree / 'host/cacert.pem'), owner=USER, group=GROUP, mode='0644')],
                certificates=[dict(name='server', certificate=cert,
                                   key_path=str(tree / 'host/private/serverkey.pem'),
                                   names=['kvm01.example.org', '10.0.0.1'], profile='server', files=cert_files(tree))])
    args.update(kw)
    return args


def test_sign_install_verify_cycle(tree, capsys):
    ca, reqs, signed = full_cycle(tree, capsys, diff=True)
    assert signed['changed'] and PASS not in json.dumps(signed)
    assert signed['renewed'] == [dict(name='kvm01/server', reasons=['missing: no certificate yet'])]
    assert signed['diff']['before'] == 'kvm01/server: none\n'
    assert 'CN=kvm01.example.org,O=unit' in signed['diff']['after']
    cert = signed['certificates']['kvm01/server']['certificate']

    preview = run(x509_install, install_args(tree, ca, cert), capsys, check=True, diff=True)
    assert preview['changed'] and len(preview['changed_files']) == 3 and not (tree / 'host/cacert.pem').exists()
    done = run(x509_install, install_args(tree, ca, cert), capsys)
    assert done['changed'] and (tree / 'host/servercert.pem').read_text() == cert
    assert mode(str(tree / 'host/vnc/server-cert.pem')) == 0o440
    assert not run(x509_install, install_args(tree, ca, cert), capsys)['changed']
    os.chmod(str(tree / 'host/servercert.pem'), 0o600)
    fixed = run(x509_install, install_args(tree, ca, cert), capsys, diff=True)
    assert fixed['changed_files'] == [str(tree / 'host/servercert.pem')] and 'other owner' in fixed['diff']['before']

    checks = dict(certificates=[dict(cert_path=str(tree / 'host/vnc/server-cert.pem'), ca_path=str(tree / 'host/cacert.pem'),
                                     key_path=str(tree / 'host/vnc/server-key.pem'), names=['kvm01'], profile='server')],
                  min_days_left=30)
    ok = run(x509_verify, checks, capsys)
    assert not ok['changed'] and ok['problems'] == [] and ok['results'][0]['ok']
    assert ok['results'][0]['subject'] == 'CN=kvm01.example.org,O=unit'

    # second signing run: the host now presents its certificate, nothing to do
    reqs[0]['current'] = cert
    again = run(x509_sign, sign_args(tree, reqs), capsys)
    assert not again['changed'] and again['renewed'] == []
    assert again['certificates']['kvm01/server']['certificate'] == cert
    # a wider window re-issues it and says why
    later = run(x509_sign, sign_args(tree, reqs, validity_days=200, renew_before_days=120), capsys, check=True)
    assert later['changed'] and later['renewed'][0]['reasons'][0].startswith('expiring:')


def test_install_refuses_a_certificate_for_another_key(tree, capsys):
    ca, reqs, signed = full_cycle(tree, capsys)
    cert = signed['certificates']['kvm01/server']['certificate']
    os.unlink(str(tree / 'host/private/serverkey.pem'))
    run(x509_csr, dict(keys=[key_entry(tree, copies=[])]), capsys)  # a new key appears on the host
    res = run(x509_install, install_args(tree, ca, cert), capsys)
    assert res['failed'] and 'the private key does not belong to the certificate' in res['msg']
    assert res['msg'].startswith('nothing written; ')
    assert not (tree / 'host/servercert.pem').exists() and not (tree / 'host/cacert.pem').exists()
    # check mode tolerates it: the key there may be one that x509_csr only simulated
    assert 'a real run would create' in ' '.join(run(x509_install, install_args(tree, ca, cert), capsys, check=True)['warned'])


def test_install_refuses_wrong_names_ca_and_paths(tree, capsys):
    ca, reqs, signed = full_cycle(tree, capsys)
    cert = signed['certificates']['kvm01/server']['certificate']
    args = install_args(tree, ca, cert)
    args['certificates'][0]['names'] = ['kvm99.example.org']
    args['certificates'][0]['profile'] = 'server'
    args['ca_files'].append(dict(path=str(tree / 'nodir/ca.pem'), mode='0644'))
    res = run(x509_install, args, capsys)
    assert 'kvm99.example.org is not in the subjectAltName' in res['msg'] and 'nodir does not exist' in res['msg']
    other_key, other_ca = x.create_ca('ecdsa-p256', {'CN': 'other'}, 10)
    res = run(x509_install, install_args(tree, dict(certificate=x.certificate_pem(other_ca).decode()), cert), capsys)
    assert 'not signed by the CA CN=other' in res['msg']
    assert 'CA: not a PEM certificate' in run(x509_install, install_args(tree, dict(certificate='junk'), cert), capsys)['msg']
    missing_key = install_args(tree, ca, cert)
    missing_key['certificates'][0]['key_path'] = str(tree / 'host/private/none.pem')
    assert 'does not exist' in run(x509_install, missing_key, capsys)['msg']


def test_sign_errors(tree, capsys):
    res = run(x509_sign, sign_args(tree, []), capsys)
    assert res['failed'] and 'create it with secvirt.kvm.x509_ca' in res['msg']
    run(x509_ca, ca_args(tree), capsys)
    assert 'wrong passphrase' in run(x509_sign, sign_args(tree, [], ca_passphrase='nope'), capsys)['msg']
    assert 'validity_days must be positive' in run(x509_sign, sign_args(tree, [], validity_days=0), capsys)['msg']
    bad = [dict(name='h/server', csr='junk', subject={'CN': 'h.example'}, dns=['h.example'])]
    res = run(x509_sign, sign_args(tree, bad), capsys)
    assert res['failed'] and 'refusing to sign anything' in res['msg']


def test_verify_reports_and_optionally_tolerates_problems(tree, capsys):
    ca, reqs, signed = full_cycle(tree, capsys)
    run(x509_install, install_args(tree, ca, signed['certificates']['kvm01/server']['certificate']), capsys)
    checks = [dict(cert_path=str(tree / 'host/servercert.pem'), ca_path=str(tree / 'host/cacert.pem'),
                   key_path=str(tree / 'host/private/serverkey.pem'), names=['other.example'], profile='client'),
              dict(cert_path=str(tree / 'host/none.pem'), ca_path=str(tree / 'host/cacert.pem')),
              dict(cert_path=str(tree / 'host/servercert.pem'), ca_path=str(tree / 'host/none.pem')),
              dict(cert_path=str(tree / 'host/servercert.pem'), ca_path=str(tree / 'host/cacert.pem'),
                   key_path=str(tree / 'host/none.pem'))]
    res = run(x509_verify, dict(certificates=checks, min_days_left=100), capsys)
    assert res['failed']
    joined = '\n'.join(res['problems'])
    for part in ('other.example is not in the subjectAltName', 'within 100 days', 'none.pem: missing',
                 'CA certificate', 'private key'):
        assert part in joined
    soft = run(x509_verify, dict(certificates=checks, fail_on_problems=False), capsys)
    assert not soft.get('failed') and [r['ok'] for r in soft['results']] == [False, False, False, False]


def test_check_mode_tolerates_directories_the_play_would_create(tree, capsys):
    entry = key_entry(tree, path=str(tree / 'later/k.pem'), copies=[], cert_path=None)
    res = run(x509_csr, dict(keys=[entry]), capsys, check=True)
    assert res['changed'] and res['requests']['server']['key_created'] and not (tree / 'later').exists()
    assert run(x509_csr, dict(keys=[entry]), capsys)['failed']
    ca, reqs, signed = full_cycle(tree, capsys)
    args = install_args(tree, ca, signed['certificates']['kvm01/server']['certificate'])
    args['ca_files'] = [dict(path=str(tree / 'later/ca.pem'))]
    assert run(x509_install, args, capsys, check=True)['changed']


# --- links a user could plant (security review: root writing through user links) ---

def snapshot(path):
    st = os.lstat(path)
    content = sorted(os.listdir(path)) if stat.S_ISDIR(st.st_mode) else open(path, 'rb').read()
    return content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@pytest.mark.skipif(os.geteuid() != 0, reason='planting a link owned by another user needs root')
def test_csr_and_install_refuse_links_a_user_could_plant(tree, capsys):
    # a root-only server key and a root directory
    secret = tree / 'etc/pki/libvirt/private/serverkey.pem'
    secret.parent.mkdir(parents=True)
    secret.write_bytes(x.private_key_pem(x.generate_private_key('ecdsa-p256')))
    os.chmod(str(secret), 0o600)
    rootdir = tree / 'etc/something'
    (rootdir / 'libvirt').mkdir(parents=True)
    # (a) alice links her client key to the server key, (b) bob links ~/.pki to the root directory
    alice = tree / 'home/alice/.pki'
    for sub in ('libvirt', 'libvirt-vnc'):
        (alice / sub).mkdir(parents=True)
    os.symlink(str(secret), str(alice / 'libvirt/clientkey.pem'))
    os.lchown(str(alice / 'libvirt/clientkey.pem'), 65534, 65534)
    (tree / 'home/bob').mkdir(parents=True)
    os.symlink(str(rootdir), str(tree / 'home/bob/.pki'))
    os.lchown(str(tree / 'home/bob/.pki'), 65534, 65534)
    before = snapshot(str(secret)), snapshot(str(rootdir / 'libvirt'))

    def user_key(user, name):
        home = tree / 'home' / user / '.pki'
        return dict(name=name, path=str(home / 'libvirt/clientkey.pem'), owner='65534', group='65534',
                    subject={'CN': user}, cert_path=str(home / 'libvirt/clientcert.pem'),
                    copies=[dict(path=str(home / 'libvirt-vnc/clientkey.pem'), owner='65534', group='65534')])

    good = key_entry(tree)
    res = run(x509_csr, dict(keys=[good, user_key('alice', 'alice')]), capsys)
    assert res.get('failed') and res['msg'].startswith('nothing written; ')
    assert 'alice: refusing %s: %s is a symlink' % ((alice / 'libvirt/clientkey.pem',) * 2) in res['msg']
    res = run(x509_csr, dict(keys=[good, user_key('bob', 'bob')]), capsys, check=True)
    expected = ('bob: refusing %s: %s is a symlink owned by uid 65534 (not root); a user could point it at a '
                'root-only file' % (tree / 'home/bob/.pki/libvirt/clientkey.pem', tree / 'home/bob/.pki'))
    assert res.get('failed') and expected in res['msg']
    assert not (alice / 'libvirt-vnc/clientkey.pem').exists()  # no user-owned copy of the server key
    assert not os.path.exists(good['path'])  # the good entry of the batch was not written either

    ca_key, ca_cert = x.create_ca('ecdsa-p256', {'CN': 'unit'}, 30)
    leaf_key = x.generate_private_key('ecdsa-p256')
    cert = x.certificate_pem(xi.issue_certificate(ca_key, ca_cert, leaf_key.public_key(), {'CN': 'alice'}, [], [],
                                                  'client', 10)).decode()
    os.symlink(str(secret), str(alice / 'libvirt/clientcert.pem'))
    install = dict(ca_certificate=x.certificate_pem(ca_cert).decode(),
                   ca_files=[dict(path=str(tree / 'host/cacert.pem')),
                             dict(path=str(tree / 'home/bob/.pki/libvirt/cacert.pem'), owner='65534')],
                   certificates=[dict(name='alice', certificate=cert, profile='client',
                                      files=[dict(path=str(alice / 'libvirt/clientcert.pem'), owner='65534')])])
    res = run(x509_install, install, capsys)
    assert res.get('failed') and res['msg'].startswith('nothing written; ')
    assert 'owned by uid 65534 (not root)' in res['msg'] and '%s is a symlink' % (alice / 'libvirt/clientcert.pem') in res['msg']
    assert not (tree / 'host/cacert.pem').exists()
    install_key = dict(install, ca_files=[], certificates=[dict(install['certificates'][0], files=[
        dict(path=str(alice / 'libvirt/cert.pem'))], key_path=str(alice / 'libvirt/clientkey.pem'))])
    assert 'refusing' in run(x509_install, install_key, capsys)['msg']
    assert not (alice / 'libvirt/cert.pem').exists()
    assert (snapshot(str(secret)), snapshot(str(rootdir / 'libvirt'))) == before

    # positive controls: a root-owned directory link (/var/run -> /run style) and the plain path
    (tree / 'run').mkdir()
    os.symlink(str(tree / 'run'), str(tree / 'host/run'))
    linked = key_entry(tree, path=str(tree / 'host/run/serverkey.pem'), owner='65534', group='65534',
                       copies=[dict(path=str(tree / 'host/vnc/server-key.pem'), owner=USER, group=GROUP, mode='0440')])
    res = run(x509_csr, dict(keys=[linked]), capsys)
    assert res['changed'] and not res.get('failed')
    st = os.lstat(str(tree / 'run/serverkey.pem'))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)
    assert not run(x509_csr, dict(keys=[linked]), capsys)['changed']
    res = run(x509_install, dict(install, ca_files=[dict(path=str(tree / 'host/run/cacert.pem'))], certificates=[]),
              capsys)
    assert res['changed'] and (tree / 'run/cacert.pem').exists()
    assert run(x509_csr, dict(keys=[good]), capsys)['changed'] and os.path.exists(good['path'])


def test_sign_refuses_a_name_claimed_by_two_hosts(tree, capsys):
    run(x509_ca, ca_args(tree), capsys)
    keys = [x.generate_private_key('ecdsa-p256'), x.generate_private_key('ecdsa-p256')]

    def req(name, key, cn, dns, **kw):
        return dict(name=name, csr=x.csr_pem(x.build_csr(key, {'CN': cn})).decode(), profile='server',
                    subject={'O': 'unit', 'CN': cn}, dns=dns, **kw)

    clash = [req('kvm1/libvirtd-server', keys[0], 'kvm.example.org', ['kvm.example.org']),
             req('kvm2/libvirtd-server', keys[1], 'kvm2.example.org', ['kvm2.example.org', 'KVM.example.org'])]
    res = run(x509_sign, sign_args(tree, clash), capsys)
    assert res.get('failed') and 'certificates' not in res
    assert 'kvm.example.org is claimed by two hosts: kvm1 (kvm1/libvirtd-server) and kvm2' in res['msg']
    # positive control: two identities of one host, grouped through the host option
    same = [clash[0], dict(clash[1], name='kvm1/qemu-server', host='kvm1'),
            req('other-name', keys[1], 'kvm.example.org', ['kvm.example.org'], host='kvm1')]
    res = run(x509_sign, sign_args(tree, same), capsys)
    assert res['changed'] and sorted(res['certificates']) == ['kvm1/libvirtd-server', 'kvm1/qemu-server', 'other-name']


# --- x509_crl ---------------------------------------------------------------------

def crl_args(tree, **kw):
    args = dict(ca_cert_path=str(tree / 'ca/cacert.pem'), ca_key_path=str(tree / 'ca/private/cakey.pem'),
                ca_passphrase=PASS, index_path=str(tree / 'ca/private/index.json'), crl_path=str(tree / 'ca/cacrl.pem'))
    args.update(kw)
    return args


def test_crl_records_revokes_publishes_and_stays_put(tree, capsys):
    ca, _reqs, signed = full_cycle(tree, capsys)
    issued = signed['certificates']
    serial = issued['kvm01/server']['serial']

    # nothing revoked yet: the index records the certificate, no CRL is published
    first = run(x509_crl, crl_args(tree, issued=issued), capsys)
    assert first['changed'] and first['recorded'] == [serial] and first['crl'] == ''
    assert mode(str(tree / 'ca/private/index.json')) == 0o600 and not (tree / 'ca/cacrl.pem').exists()
    assert PASS not in json.dumps(first)
    assert not run(x509_crl, crl_args(tree, issued=issued), capsys)['changed']

    # revoke by host name: check mode predicts, writes nothing, but returns the CRL it would publish
    revoke = [dict(host='kvm01', reason='key_compromise')]
    preview = run(x509_crl, crl_args(tree, issued=issued, revoke=revoke), capsys, check=True, diff=True)
    assert preview['changed'] and preview['renewed'] and preview['reasons'] == ['missing']
    assert preview['newly_revoked'] == [serial] and 'BEGIN X509 CRL' in preview['crl']
    assert not (tree / 'ca/cacrl.pem').exists()
    assert 'revoked ' + serial in preview['diff']['after']
    done = run(x509_crl, crl_args(tree, issued=issued, revoke=revoke), capsys)
    assert done['changed'] and done['number'] == 1 and done['crl'] == (tree / 'ca/cacrl.pem').read_text()
    assert done['revoked'][0]['serial'] == serial and done['revoked'][0]['name'] == 'kvm01/server'
    crl = cx509.load_pem_x509_crl(done['crl'].encode())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry.extensions.get_extension_for_class(cx509.CRLReason).value.reason == cx509.ReasonFlags.key_compromise
    assert crl.is_signature_valid(x.load_certificate(ca['certificate']).public_key())
    # idempotent; dropping the entry does not un-revoke
    again = run(x509_crl, crl_args(tree, issued=issued, revoke=revoke), capsys)
    assert not again['changed'] and again['crl'] == done['crl']
    kept = run(x509_crl, crl_args(tree), capsys)
    assert not kept['changed'] and kept['revoked'][0]['serial'] == serial
    # a new reason re-signs under the next number
    moved = run(x509_crl, crl_args(tree, revoke=[dict(serial=serial.upper(), reason='superseded')]), capsys)
    assert moved['changed'] and moved['number'] == 2 and moved['newly_revoked'] == [serial]


def test_crl_is_renewed_before_its_next_update(tree, capsys):
    _ca, _reqs, signed = full_cycle(tree, capsys)
    first = run(x509_crl, crl_args(tree, issued=signed['certificates'], publish_empty=True, validity_days=30,
                                   renew_before_days=5), capsys)
    assert first['renewed'] and first['revoked'] == [] and 'BEGIN X509 CRL' in first['crl']
    assert not run(x509_crl, crl_args(tree, validity_days=30, renew_before_days=5), capsys)['changed']
    # the same CRL is now inside a wider renewal window: signed anew, and says why
    renewed = run(x509_crl, crl_args(tree, validity_days=60, renew_before_days=40), capsys)
    assert renewed['changed'] and renewed['number'] == 2
    assert renewed['reasons'][0].startswith('nextUpdate ') and 'within 40 days' in renewed['reasons'][0]


def test_crl_refusals(tree, capsys):
    ca, _reqs, signed = full_cycle(tree, capsys)
    issued = signed['certificates']
    typo = run(x509_crl, crl_args(tree, issued=issued, revoke=[dict(name='kvm02/server')]), capsys)
    assert typo['failed'] and 'name kvm02/server: no certificate issued under it' in typo['msg']
    both = run(x509_crl, crl_args(tree, revoke=[dict(name='kvm01/server', serial='0a')]), capsys)
    assert both['failed'] and 'exactly one of serial, name, host (got serial, name)' in both['msg']
    bad = run(x509_crl, crl_args(tree, revoke=[dict(serial='xyz')]), capsys)
    assert bad['failed'] and "serial 'xyz': give it in hexadecimal" in bad['msg']
    window = run(x509_crl, crl_args(tree, validity_days=7, renew_before_days=7), capsys)
    assert window['failed'] and 'renew_before_days (7) between 0 and validity_days' in window['msg']
    wrong = run(x509_crl, crl_args(tree, ca_passphrase='wrong'), capsys)
    assert wrong['failed'] and PASS not in json.dumps(wrong)
    # nothing was written by any refusal
    assert not (tree / 'ca/private/index.json').exists() and not (tree / 'ca/cacrl.pem').exists()
    # an index of another CA is refused rather than mixed up
    (tree / 'ca/private/index.json').write_text(json.dumps(dict(version=1, ca_fingerprint='00', crl_number=0,
                                                                issued={}, revoked={})))
    other = run(x509_crl, crl_args(tree), capsys)
    assert other['failed'] and 'belongs to another CA' in other['msg'] and ca['fingerprint'] in other['msg']


def test_install_writes_the_crl_and_refuses_an_expired_or_foreign_one(tree, capsys):
    ca, _reqs, signed = full_cycle(tree, capsys)
    cert = signed['certificates']['kvm01/server']['certificate']
    crl = run(x509_crl, crl_args(tree, issued=signed['certificates'], revoke=[dict(name='kvm01/server')]), capsys)['crl']
    crl_files = [dict(path=str(tree / 'host/cacrl.pem'), owner=USER, group=GROUP, mode='0644')]
    done = run(x509_install, install_args(tree, ca, cert, crl=crl, crl_files=crl_files), capsys, diff=True)
    assert str(tree / 'host/cacrl.pem') in done['changed_files'] and (tree / 'host/cacrl.pem').read_text() == crl
    assert 'CRL CN=unit,O=unit next update' in done['diff']['after'] and '1 revoked' in done['diff']['after']
    assert not run(x509_install, install_args(tree, ca, cert, crl=crl, crl_files=crl_files), capsys)['changed']

    ca_key = x.load_private_key((tree / 'ca/private/cakey.pem').read_bytes(), PASS)
    ca_cert = x.load_certificate(ca['certificate'])
    expired = xc.crl_pem(xc.sign_crl(ca_key, ca_cert, {}, 9, 1, now=x.utcnow() - datetime.timedelta(days=3))).decode()
    old = run(x509_install, install_args(tree, ca, cert, crl=expired, crl_files=crl_files), capsys)
    assert old['failed'] and 'CRL: the CRL expired on' in old['msg'] and 'every TLS login fail' in old['msg']
    foreign_key, foreign_ca = x.create_ca('ecdsa-p256', {'CN': 'unit'}, 30)
    foreign = xc.crl_pem(xc.sign_crl(foreign_key, foreign_ca, {}, 1, 5)).decode()
    other = run(x509_install, install_args(tree, ca, cert, crl=foreign, crl_files=crl_files), capsys)
    assert other['failed'] and 'is not signed by the CA being installed' in other['msg']
    assert (tree / 'host/cacrl.pem').read_text() == crl


def test_install_accepts_a_bundle_of_two_cas_during_a_rollover(tree, capsys):
    ca, _reqs, signed = full_cycle(tree, capsys)
    cert = signed['certificates']['kvm01/server']['certificate']
    _new_key, new_ca = x.create_ca('ecdsa-p384', {'O': 'unit', 'CN': 'unit 2'}, 3650)
    bundle = x.certificate_pem(new_ca).decode() + ca['certificate']
    done = run(x509_install, dict(install_args(tree, ca, cert), ca_certificate=bundle), capsys)
    assert done['changed'] and (tree / 'host/cacert.pem').read_text() == bundle
    alone = run(x509_install, dict(install_args(tree, ca, cert), ca_certificate=x.certificate_pem(new_ca).decode()), capsys)
    assert alone['failed'] and 'not signed by the CA' in alone['msg']


def test_ca_rollover_promotes_the_new_ca_and_archives_the_old_one(tree, capsys):
    old = run(x509_ca, ca_args(tree), capsys)
    (tree / 'next/private').mkdir(parents=True)
    new = run(x509_ca, ca_args(tree, cert_path=str(tree / 'next/cacert.pem'), key_path=str(tree / 'next/private/cakey.pem')),
              capsys)
    assert new['created'] and new['fingerprint'] != old['fingerprint']
    (tree / 'ca/private/index.json').write_text('{}')
    promote = dict(cert_path=str(tree / 'next/cacert.pem'), key_path=str(tree / 'next/private/cakey.pem'),
                   archive_dir=str(tree / 'ca/retired'),
                   with_files=[str(tree / 'ca/private/index.json'), str(tree / 'ca/cacrl.pem')])

    preview = run(x509_ca, ca_args(tree, promote=promote), capsys, check=True, diff=True)
    assert preview['changed'] and preview['promoted'] and preview['retired'] == ''
    assert preview['fingerprint'] == new['fingerprint'] and preview['retired_files'] == ['index.json']
    assert old['fingerprint'] in preview['diff']['before'] and new['fingerprint'] in preview['diff']['after']
    assert (tree / 'next/cacert.pem').exists() and (tree / 'ca/cacert.pem').read_text() == old['certificate']

    done = run(x509_ca, ca_args(tree, promote=promote), capsys)
    assert done['changed'] and done['promoted'] and done['fingerprint'] == new['fingerprint']
    assert (tree / 'ca/cacert.pem').read_text() == new['certificate'] and not (tree / 'next/cacert.pem').exists()
    assert mode(str(tree / 'ca/private/cakey.pem')) == 0o600
    archive = done['retired']
    assert os.path.dirname(archive) == str(tree / 'ca/retired') and mode(archive) == 0o700
    assert sorted(os.listdir(archive)) == ['cacert.pem', 'cakey.pem', 'index.json']
    with open(os.path.join(archive, 'cacert.pem')) as handle:
        assert handle.read() == old['certificate']
    assert mode(os.path.join(archive, 'cakey.pem')) == 0o600
    # the step is done: the same call again changes nothing
    again = run(x509_ca, ca_args(tree, promote=promote), capsys)
    assert not again['changed'] and not again['promoted'] and again['fingerprint'] == new['fingerprint']


def test_ca_rollover_refuses_half_a_ca_and_a_wrong_passphrase(tree, capsys):
    run(x509_ca, ca_args(tree), capsys)
    (tree / 'next/private').mkdir(parents=True)
    run(x509_ca, ca_args(tree, cert_path=str(tree / 'next/cacert.pem'), key_path=str(tree / 'next/private/cakey.pem')),
        capsys)
    promote = dict(cert_path=str(tree / 'next/cacert.pem'), key_path=str(tree / 'next/private/cakey.pem'),
                   archive_dir=str(tree / 'ca/retired'))
    before = sorted(os.listdir(str(tree / 'ca')))
    wrong = run(x509_ca, ca_args(tree, passphrase='not-the-passphrase', promote=promote), capsys)
    assert wrong['failed'] and 'not-the-passphrase' not in json.dumps(wrong)
    os.unlink(str(tree / 'next/private/cakey.pem'))
    half = run(x509_ca, ca_args(tree, promote=promote), capsys)
    assert half['failed'] and 'refusing to promote half a CA' in half['msg']
    assert sorted(os.listdir(str(tree / 'ca'))) == before
