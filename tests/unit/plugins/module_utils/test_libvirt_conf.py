"""libvirt_conf: parse and key-by-key edit of libvirt-style config files."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_conf as lc

STOCK = '''# Master libvirt daemon configuration file
#
#################################################################
#
# Network connectivity controls
#

# Flag listening for secure TLS connections on the public TCP/IP port.
#
# This setting is not required or honoured if using systemd socket
# activation.
#listen_tls = 0

#listen_tcp = 1

# Override the default configuration which binds to all network
#listen_addr = "192.168.0.1"

#auth_tls = "none"

# A whitelist of allowed x509 Distinguished Names
#tls_allowed_dn_list = ["DN1", "DN2"]

unix_sock_group = "libvirt"
unix_sock_rw_perms = "0770"
'''


def test_parse_scalars_lists_and_comments():
    text = ('a = 1\nb = -2 # trailing\nc = "x y"\nd = \'q"uote\'\n'
            'e = [ "one",\n  # comment inside\n  "two", ]\nf = """multi\nline"""\ng=[]\n')
    assert lc.values(text) == {'a': 1, 'b': -2, 'c': 'x y', 'd': 'q"uote',
                               'e': ['one', 'two'], 'f': 'multi\nline', 'g': []}


def test_first_definition_wins_like_libvirt():
    assert lc.values('a = 1\na = 2\n') == {'a': 1}


@pytest.mark.parametrize('bad', [
    'a = \n', 'a = "open\n', 'a 1\n', 'a = [1, [2]]\n', 'a = [1 2]\n',
    'a = 1 b = 2\n', '= 1\n', 'a = yes\n', 'a = "x"; b = 1\n', 'a = """never closed\n',
])
def test_syntax_errors_are_reported_with_a_position(bad):
    with pytest.raises(lc.ConfError, match='line 1'):
        lc.parse(bad)


def test_edit_sets_many_keys_keeps_everything_else():
    out = lc.edit(STOCK, {'listen_tls': True, 'auth_tls': 'sasl',
                          'tls_allowed_dn_list': ['CN=a', 'CN=b'], 'unix_sock_rw_perms': '0770',
                          'max_clients': 50})
    # new keys go right after their commented example
    assert '#listen_tls = 0\nlisten_tls = 1\n' in out
    assert '#auth_tls = "none"\nauth_tls = "sasl"\n' in out
    assert '#tls_allowed_dn_list = ["DN1", "DN2"]\ntls_allowed_dn_list = ["CN=a", "CN=b"]\n' in out
    # unknown to the stock file: appended under a marker
    assert out.endswith('# Settings below are managed by secvirt.kvm\nmax_clients = 50\n')
    # untouched lines are byte for byte the same
    assert out.replace('listen_tls = 1\n', '', 1).replace('auth_tls = "sasl"\n', '', 1) \
        .replace('tls_allowed_dn_list = ["CN=a", "CN=b"]\n', '', 1) \
        .replace('\n# Settings below are managed by secvirt.kvm\nmax_clients = 50\n', '') == STOCK


def test_edit_is_idempotent_and_compares_values_not_text():
    once = lc.edit(STOCK, {'listen_tls': 1, 'max_clients': 5})
    assert lc.edit(once, {'listen_tls': 1, 'max_clients': 5}) == once
    odd = "auth_tls='none'   # keep me\n"
    assert lc.edit(odd, {'auth_tls': 'none'}) == odd


def test_edit_rewrites_in_place_keeping_trailing_comment_and_drops_duplicates():
    text = 'a = 1 # why\nb = [\n  "x",\n]\nc = 3\na = 9\n'
    out = lc.edit(text, {'a': 2, 'b': ['y']})
    assert out == 'a = 2 # why\nb = ["y"]\nc = 3\n'


def test_unset_removes_every_definition():
    text = 'a = 1\nb = 2\na = 3\n'
    assert lc.edit(text, unset=['a']) == 'b = 2\n'
    assert lc.edit(text, unset=['zzz']) == text


def test_quotes_strings_safely():
    out = lc.edit('', {'s': 'he said "hi"'})
    assert lc.values(out) == {'s': 'he said "hi"'}
    for bad in ('both \' and "', 'new\nline'):
        with pytest.raises(lc.ConfError):
            lc.edit('', {'s': bad})


def test_refuses_invalid_keys_values_and_a_broken_file():
    with pytest.raises(lc.ConfError):
        lc.edit('', {'bad key': 1})
    with pytest.raises(lc.ConfError):
        lc.edit('', {'a': [[1]]})
    with pytest.raises(lc.ConfError):
        lc.edit('', {'a': 1.5})
    with pytest.raises(lc.ConfError):
        lc.edit('', {'a': {'x': 1}})
    with pytest.raises(lc.ConfError):
        lc.edit('', {'a': 1}, unset=['a'])
    with pytest.raises(lc.ConfError, match='line 2'):
        lc.edit('ok = 1\nbroken = \n', {'a': 1})


def test_file_without_final_newline_and_empty_file():
    assert lc.edit('a = 1', {'b': 2}, header=None) == 'a = 1\nb = 2\n'
    assert lc.edit('#b = 0', {'b': 2}) == '#b = 0\nb = 2\n'
    assert lc.edit('', {'b': 2}, header=None) == 'b = 2\n'


def test_check_types_for_daemon_keys():
    lc.check_types({'listen_tls': 1, 'tls_allowed_dn_list': ['x']}, lc.DAEMON_KEY_TYPES)
    with pytest.raises(lc.ConfError, match='listen_tls must be of type int'):
        lc.check_types({'listen_tls': '1'}, lc.DAEMON_KEY_TYPES)
    with pytest.raises(lc.ConfError, match='tls_allowed_dn_list'):
        lc.check_types({'tls_allowed_dn_list': 'CN=x'}, lc.DAEMON_KEY_TYPES)


def test_normalise_booleans():
    assert lc.normalize_value('k', True) == 1
    assert lc.normalize_value('k', [False, 'a']) == [0, 'a']


@pytest.mark.parametrize('key,secret', [
    ('vnc_password', True), ('SPICE_PASSWORD', True), ('password', True), ('tls_secret', True),
    ('remote_display_passwd', True), ('PasswdFile', True), ('vnc_tls_x509_secret_uuid', False),
    ('listen_tls', False), ('passwordless', False), ('vnc_listen', False),
])
def test_is_secret_key(key, secret):
    assert lc.is_secret_key(key) is secret


def test_mask_text_and_value():
    text = ('#vnc_password = "XYZ12345"\nvnc_password = "hunter2xyz"  # set by hand\nvnc_tls = 1\n'
            'spice_password = """multi"""\nremote_passwd = [\n  "a1",\n  "b2",\n]\n')
    masked = lc.mask_text(text)
    for secret in ('XYZ12345', 'hunter2xyz', 'multi', 'a1', 'b2'):
        assert secret not in masked
    assert masked == ('#vnc_password = "********"\nvnc_password = "********"  # set by hand\nvnc_tls = 1\n'
                      'spice_password = "********"\nremote_passwd = ["********", "********"]\n')
    assert 'vnc_password = "******** (changed)"' in lc.mask_text(text, changed=['vnc_password'])
    assert lc.mask_text('vnc_password = "x" junk\nlisten_tls = 1\n') == \
        'vnc_password = "********"\nlisten_tls = 1\n'  # unparsable text is masked line by line
    assert lc.mask_value('vnc_password', 'x') == '********' and lc.mask_value('listen_tls', 1) == 1
    assert lc.mask_value('x_secret', ['a', 'b']) == ['********', '********']
    with pytest.raises(lc.ConfError) as err:
        lc.check_types({'vnc_password': 1234567}, {'vnc_password': 'str'})
    assert '1234567' not in str(err.value)
