"""sasl: sasldb user planning, the exact saslpasswd2 invocations and the
password check against the stored verifiers."""
import base64
import hashlib
import hmac
import shutil
import subprocess

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import sasl

LISTING = """admin@kvmhost.secvirt.test: authPassword
old@kvmhost.secvirt.test: authPassword
leak@kvmhost.secvirt.test: userPassword
leak@kvmhost.secvirt.test: authPassword
"""


class FakeRun(object):
    def __init__(self, listing=LISTING, rc=0):
        self.calls = []
        self.listing = listing
        self.rc = rc

    def __call__(self, argv, data=None):
        self.calls.append((argv, data))
        if argv[0] == 'sasldblistusers2':
            return 0, self.listing, ''
        return self.rc, '', 'boom' if self.rc else ''


def test_parse_list_groups_properties():
    users = sasl.parse_list(LISTING + "garbage line\n")
    assert users[('leak', 'kvmhost.secvirt.test')] == {'userPassword', 'authPassword'}
    assert len(users) == 3


def test_plan_on_create_is_idempotent():
    current = sasl.parse_list(LISTING)
    wanted = [{'name': 'admin', 'password': 's3cret'}, {'name': 'new', 'password': 'x'}]
    assert sasl.plan(current, wanted, False, 'on_create') == [('create', 'new', None)]


def test_plan_always_updates_and_exclusive_deletes_and_leaks_are_scrubbed():
    current = sasl.parse_list(LISTING)
    wanted = [{'name': 'admin', 'password': 'a'}, {'name': 'leak', 'password': 'b'}]
    actions = sasl.plan(current, wanted, True, 'always')
    assert ('update', 'admin', None) in actions
    assert ('delete', 'old', 'kvmhost.secvirt.test') in actions
    assert ('scrub', 'leak', 'kvmhost.secvirt.test') in actions
    assert ('update', 'leak', None) not in actions
    actions = sasl.plan(current, wanted, False, 'on_create')
    assert actions == [('scrub', 'leak', 'kvmhost.secvirt.test')]


def test_absent_and_exclusive_reach_every_realm():
    # a client can log in as user@realm with any realm the database holds, so
    # state=absent and exclusive must not stop at the managed realm
    current = sasl.parse_list(LISTING + "admin@other: authPassword\n")
    actions = sasl.plan(current, [{'name': 'admin', 'state': 'absent'}], False, 'on_create',
                        realm='other')
    assert actions == [('delete', 'admin', 'kvmhost.secvirt.test'), ('delete', 'admin', 'other')]
    actions = sasl.plan(current, [], True, 'on_create', realm='other')
    assert sorted(actions) == sorted(('delete',) + k for k in current)
    # exclusive keeps the wanted user in the managed realm only
    actions = sasl.plan(current, [{'name': 'admin', 'password': 'x'}], True, 'on_create',
                        realm='other')
    assert ('delete', 'admin', 'kvmhost.secvirt.test') in actions
    assert ('delete', 'admin', 'other') not in actions
    assert ('create', 'admin', 'other') not in actions


def test_server_realm_is_the_canonical_name(monkeypatch):
    monkeypatch.setattr(sasl.socket, 'gethostname', lambda: 'kvmhost')
    monkeypatch.setattr(sasl.socket, 'getaddrinfo',
                        lambda *a: [(2, 1, 6, 'kvmhost.secvirt.test', ('10.0.0.1', 0))])
    assert sasl.server_realm() == 'kvmhost.secvirt.test'

    def unresolvable(*a):
        raise sasl.socket.gaierror('no such name')
    monkeypatch.setattr(sasl.socket, 'getaddrinfo', unresolvable)
    assert sasl.server_realm() == 'kvmhost'


@pytest.mark.parametrize('wanted', [
    [{'name': 'a b', 'password': 'x'}],
    [{'name': 'a', 'password': 'x'}, {'name': 'a', 'password': 'y'}],
    [{'name': 'a'}],
])
def test_plan_refuses_bad_input(wanted):
    with pytest.raises(sasl.SaslError):
        sasl.plan({}, wanted, False, 'on_create')


def test_password_goes_on_stdin_never_argv_and_cleartext_is_not_stored():
    run = FakeRun()
    db = sasl.SaslDb(run, '/etc/libvirt/passwd.db')
    sasl.apply(db, [('create', 'new', None), ('delete', 'old', 'r1')],
               [{'name': 'new', 'password': 'TopSecret'}])
    (create_argv, create_data), (delete_argv, delete_data) = run.calls
    assert create_argv == ['saslpasswd2', '-p', '-n', '-a', 'libvirt', '-f', '/etc/libvirt/passwd.db', '-c', 'new']
    assert create_data == 'TopSecret'
    assert all('TopSecret' not in arg for arg in create_argv + delete_argv)
    assert delete_argv == ['saslpasswd2', '-d', '-a', 'libvirt', '-f', '/etc/libvirt/passwd.db', '-u', 'r1', 'old']
    assert delete_data is None


def test_failures_raise_without_the_password():
    db = sasl.SaslDb(FakeRun(rc=1), '/db')
    with pytest.raises(sasl.SaslError) as err:
        db.set_password('u', 'TopSecret', create=True)
    assert 'TopSecret' not in str(err.value)


def test_missing_database_lists_nobody():
    run = FakeRun()
    assert sasl.SaslDb(run, '/nope', exists=False).list() == {}
    assert run.calls == []


# --- password checks against the stored verifiers ----------------------------

TOOLS = pytest.mark.skipif(not shutil.which('saslpasswd2'), reason='needs saslpasswd2 (sasl2-bin, make setup)')


def rfc5803(password, salt=b'0123456789abcdef', iterations=4096, hash_name='sha256', scheme='SCRAM-SHA-256'):
    """An authPassword value as RFC 5803 (and Cyrus SASL) writes it, computed independently."""
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.new(salted, b'Server Key', hash_name).digest()
    salt64, stored64, server64 = (base64.b64encode(b).decode() for b in (salt, stored_key, server_key))
    return ('%s$%d:%s$%s:%s' % (scheme, iterations, salt64, stored64, server64)).encode()


def test_scram_verifier_check():
    verifier = rfc5803(b'pencil')
    assert sasl.scram_matches(verifier, b'pencil') is True
    assert sasl.scram_matches(verifier, b'pencil2') is False
    assert sasl.scram_matches(verifier, b'') is False
    sha1 = rfc5803(b'pencil', hash_name='sha1', scheme='SCRAM-SHA-1')
    assert sasl.scram_matches(sha1, b'pencil') is True and sasl.scram_matches(sha1, b'x') is False
    # not a verifier this code understands: no verdict rather than a wrong one
    for bad in (b'', b'pencil', b'SCRAM-MD5$4096:AAAA$AAAA:AAAA', verifier.replace(b'$4096:', b'$0:'),
                verifier.replace(b'$4096:', b'$99999999999:'), verifier[:-8], b'\xff\xfe'):
        assert sasl.scram_matches(bad, b'pencil') is None, bad


def test_stored_form_is_what_saslpasswd2_hashes():
    assert sasl.stored_form(u'p\u00e4ss') == u'p\u00e4ss'.encode('utf-8')
    assert sasl.stored_form('pw\n') == b'pw'  # saslpasswd2 -p drops one trailing newline
    assert sasl.stored_form('pw\n\n') == b'pw\n'
    for bad in ('a\0b', 'x' * 1025):
        with pytest.raises(sasl.SaslError) as err:
            sasl.stored_form(bad)
        assert bad not in str(err.value)


def test_plan_on_mismatch_asks_the_checker_and_updates_only_a_mismatch():
    current = sasl.parse_list(LISTING)
    asked = []

    def check(name, realm, password):
        asked.append((name, realm, password))
        return {'admin': False, 'old': True}.get(name)  # None: cannot tell
    wanted = [{'name': 'admin', 'password': 'new'}, {'name': 'old', 'password': 'same'},
              {'name': 'leak', 'password': 'x'}]
    actions = sasl.plan(current, wanted, False, 'on_mismatch', check=check)
    assert actions == [('update', 'admin', None), ('scrub', 'leak', 'kvmhost.secvirt.test')]
    # the user that is re-created anyway (cleartext property) is not checked
    assert asked == [('admin', 'kvmhost.secvirt.test', 'new'), ('old', 'kvmhost.secvirt.test', 'same')]
    unknown = sasl.plan(current, [{'name': 'admin', 'password': 'x'}], False, 'on_mismatch',
                        check=lambda *a: None)
    assert unknown == []
    # on_create never looks at the stored verifier
    assert sasl.plan(current, wanted, False, 'on_create', check=check) == \
        [('scrub', 'leak', 'kvmhost.secvirt.test')]
    with pytest.raises(sasl.SaslError):
        sasl.plan(current, [{'name': 'admin', 'password': 'a\0b'}], False, 'on_mismatch', check=check)


@TOOLS
def test_reader_returns_what_saslpasswd2_wrote(tmp_path, monkeypatch):
    """Many users (several hash pages) and one value too big for a page (an overflow chain)."""
    monkeypatch.setenv('SASL_CONF_PATH', str(tmp_path))
    (tmp_path / 'sample.conf').write_text('mech_list: scram-sha-256\nscram_secret_generate: yes\n'
                                          'scram_iteration_counter: 4096\n')
    path = str(tmp_path / 'passwd.db')
    wanted = dict(('user%03d' % i, 'pw-%d-%s' % (i, 'z' * (i % 40))) for i in range(120))
    wanted['big'] = 'B' * 1900
    for name, password in sorted(wanted.items()):
        # without -n: the cleartext userPassword is the oracle for the reader
        subprocess.run(['saslpasswd2', '-p', '-a', 'sample', '-f', path, '-u', 'r.test', '-c', name],
                       input=password.encode(), check=True)
    entries = sasl.read_sasldb(path)
    assert entries is not None
    assert sorted(set(k[0] for k in entries)) == sorted(wanted)
    for name, password in wanted.items():
        assert entries[(name, 'r.test', 'userPassword')] == password.encode()
        verifier = entries[(name, 'r.test', 'authPassword')]
        assert sasl.scram_matches(verifier, password.encode()) is True
        assert sasl.scram_matches(verifier, b'other') is False
    if shutil.which('db_dump'):  # Berkeley DB's own dump as a second oracle
        dump = subprocess.run(['db_dump', '-p', path], check=True, capture_output=True).stdout.decode()
        body = dump.split('HEADER=END\n', 1)[1].split('DATA=END', 1)[0].splitlines()
        assert len(body) == 2 * len(entries)
    db = sasl.SaslDb(FakeRun(), path, realm='r.test', store_plaintext=True)
    assert db.check_password('user007', 'r.test', wanted['user007']) is True
    assert db.check_password('user007', 'r.test', 'rotated') is False
    assert db.check_password('nobody', 'r.test', 'x') is None


def test_reader_gives_no_verdict_for_other_formats(tmp_path):
    for name, data in (('json', b'{"admin@r": ["authPassword"]}'), ('empty', b''), ('gdbm', b'\xce\x9a\x57\x13' + b'\0' * 8188),
                       ('zeros', b'\0' * 8192)):
        path = tmp_path / name
        path.write_bytes(data)
        assert sasl.read_sasldb(str(path)) is None, name
        assert sasl.SaslDb(FakeRun(), str(path)).check_password('admin', 'r', 'x') is None
    assert sasl.SaslDb(FakeRun(), str(tmp_path / 'missing'), exists=False).check_password('a', 'r', 'x') is None
