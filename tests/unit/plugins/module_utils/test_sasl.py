"""sasl: sasldb user planning and the exact saslpasswd2 invocations."""
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
