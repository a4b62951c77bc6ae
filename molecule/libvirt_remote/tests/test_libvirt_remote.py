"""Remote libvirt management, checked from the management station as a real client."""
import os
import re
import shlex
import sys
import time

import pytest
import testinfra.utils.ansible_runner

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "_harness"))
import ansible_cli  # noqa: E402
import clones  # noqa: E402  pylint: disable=wrong-import-position
import firewalld  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM_NAME = RUNNER.get_hosts("kvm_hosts")[0]
STATION_NAME = RUNNER.get_hosts("management_stations")[0]
KVM = RUNNER.get_host(KVM_NAME)
STATION = RUNNER.get_host(STATION_NAME)
PASSWORD = "Vm-Adm1n-s3cret-4f9b2c"  # molecule.yml group_vars, test only
URI = "qemu+tls://kvmhost.secvirt.test/system"


def virsh(uri, env="", user=None, station=STATION):
    cmd = f"{env} timeout 90 virsh -c '{uri}' list --all </dev/null"
    if user:
        cmd = f"su - {user} -c \"{cmd}\""
    return station.run(cmd)


def auth_file(path, username, password, owner="root"):
    STATION.run(
        f"umask 077; printf '[credentials-t]\\nauthname=%s\\npassword=%s\\n\\n"
        f"[auth-libvirt-kvmhost.secvirt.test]\\ncredentials=t\\n' '{username}' '{password}' > {path}; chown {owner} {path}")
    return f"LIBVIRT_AUTH_FILE={path}"


# libvirt's config syntax (libvirtd.conf, libvirt.conf), read here by the
# tests' own parser, not by the collection's module_utils/libvirt_conf that
# wrote the files: `key = value` statements, one a line (or separated by ;);
# values are strings ("..", '..' or """.."""), integers, or lists of those in
# [ ], which may span lines; # starts a comment.
_CONF_TOKEN = re.compile(r'''
    (?P<newline>[\n;])
  | (?P<blank>[ \t\r]+|\#[^\n]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<int>[+-]?[0-9]+)
  | """(?P<str3>.*?)"""
  | "(?P<str2>[^"\n]*)"
  | '(?P<str1>[^'\n]*)'
  | (?P<punct>[=\[\],])
''', re.X | re.S)


def _conf_tokens(text):
    """(kind, value, after_newline) for each token of text."""
    pos, after_newline = 0, True
    while pos < len(text):
        match = _CONF_TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"libvirt config: cannot read line {text.count(chr(10), 0, pos) + 1}: {text[pos:pos + 40]!r}")
        pos = match.end()
        kind = match.lastgroup
        if kind == "newline":
            after_newline = True
            continue
        if kind == "blank":
            continue
        value = match.group(kind)
        if kind.startswith("str"):
            kind = "str"
        yield kind, value, after_newline
        after_newline = False
    yield "end", None, True


def conf_values(text):
    """{key: value} of a libvirt config file; a key set twice is an error here."""
    tokens = list(_conf_tokens(text))
    values = {}
    i = 0

    def scalar(token):
        kind, value = token[:2]
        if kind == "str":
            return value
        if kind == "int":
            return int(value)
        raise ValueError(f"libvirt config: expected a string or an integer, found {token!r}")

    while tokens[i][0] != "end":
        key = tokens[i]
        if key[0] != "name" or not key[2] or tokens[i + 1][:2] != ("punct", "="):
            raise ValueError(f"libvirt config: expected 'key =' at the start of a line, found {key!r}")
        i += 2
        if tokens[i][:2] == ("punct", "["):
            i += 1
            value = []
            while tokens[i][:2] != ("punct", "]"):
                value.append(scalar(tokens[i]))
                i += 1
                if tokens[i][:2] == ("punct", ","):
                    i += 1
                elif tokens[i][:2] != ("punct", "]"):
                    raise ValueError(f"libvirt config: expected ',' or ']' in the list of {key[1]}, found {tokens[i]!r}")
        else:
            value = scalar(tokens[i])
        i += 1
        if not tokens[i][2]:
            raise ValueError(f"libvirt config: more after the value of {key[1]} on its line: {tokens[i]!r}")
        if key[1] in values:
            raise ValueError(f"libvirt config: {key[1]} is set twice")
        values[key[1]] = value
    return values


def test_the_tests_config_parser():
    """The parser the tests below read libvirt's files with (no VM needed)."""
    text = ('# a comment\n#commented_out = 1\nlisten_tls = 1\nauth_tls = "sasl"  # trailing comment\n'
            "cert_file = '/etc/pki/a b.pem'\nneg = -3\n"
            'tls_allowed_dn_list = [ "C=DE,O=x,CN=*",\n    # inside a list\n    "C=DE,O=y,CN=#1", ]\n'
            'empty = []\nmixed = [1, "two"]\ntext = """line one\nline two"""\n')
    assert conf_values(text) == {
        "listen_tls": 1, "auth_tls": "sasl", "cert_file": "/etc/pki/a b.pem", "neg": -3,
        "tls_allowed_dn_list": ["C=DE,O=x,CN=*", "C=DE,O=y,CN=#1"], "empty": [], "mixed": [1, "two"],
        "text": "line one\nline two"}
    assert conf_values("a = 1; b = 'x'\n") == {"a": 1, "b": "x"}
    for bad in ("a = 1 b = 2\n", "a = 1\na = 2\n", "a = [ \"x\" \"y\" ]\n", "a = \"open\n", "a = yes\n", "= 1\n"):
        with pytest.raises(ValueError):
            conf_values(bad)


# What libvirtd logs when it refuses a client certificate: one reason each.
NOT_OUR_CA = "Certificate failed validation: The certificate hasn't got a known issuer."
DN_NOT_ALLOWED = "Client's Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list)."
NO_CERT = "Unable to verify TLS peer: No certificate was found."
CERT_REASONS = (NOT_OUR_CA, DN_NOT_ALLOWED, NO_CERT)
# virsh, when libvirtd hangs up after the TLS handshake instead of sending
# the byte that confirms the client passed its certificate checks
NOT_CONFIRMED = "Unable to read TLS confirmation"


def journal_cursor():
    """The KVM host's journal position now: what libvirtd logs after it belongs to the next attempt."""
    return KVM.check_output("journalctl -n 0 --show-cursor --no-pager").rsplit("-- cursor: ", 1)[1].strip()


def libvirtd_log(cursor, expect=None, wait=30):
    """libvirtd's journal messages after cursor, waiting up to `wait` s for `expect` to be logged.

    Not `journalctl -u libvirtd.service --after-cursor`: with a match,
    journalctl drops the first matching entry after the cursor (seen here:
    the SASL reason line went missing).
    """
    deadline = time.monotonic() + wait
    while True:
        out = KVM.check_output(f"journalctl --no-pager -o short --after-cursor={shlex.quote(cursor)}")
        log = "\n".join(line.split("]: ", 1)[1] for line in out.splitlines() if " libvirtd[" in line and "]: " in line)
        if expect is None or expect in log or time.monotonic() > deadline:
            return log
        time.sleep(2)


def assert_libvirtd_refused_certificate(cursor, reason):
    """libvirtd logged after cursor that it refused a client certificate for reason, and for no other."""
    log = libvirtd_log(cursor, "Certificate check failed " + reason)
    assert "Certificate check failed " + reason in log, log[-2000:]
    assert "authentication failed: Failed to verify peer's certificate" in log, log[-2000:]
    for other in CERT_REASONS:
        assert other == reason or other not in log, log[-2000:]


# Hands a client certificate to libvirtd with Python's ssl (OpenSSL), as any
# TLS client can. virsh checks its own certificate against the CA it trusts
# before it connects, and refuses one of another CA itself (with that check
# off, GnuTLS did not send it: libvirtd saw "No certificate was found"), so
# virsh alone never shows libvirtd refusing such a certificate. Prints
# libvirtd's first byte after the handshake: 01 is its confirmation that the
# certificate passed its checks, EOF that it hung up.
TLS_PROBE = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile="/etc/pki/CA/cacert.pem")
ctx.load_cert_chain(sys.argv[1] + "/clientcert.pem", sys.argv[1] + "/clientkey.pem")
with socket.create_connection(("kvmhost.secvirt.test", 16514), timeout=90) as raw:
    with ctx.wrap_socket(raw, server_hostname="kvmhost.secvirt.test") as tls:
        try:
            print(tls.recv(1).hex() or "EOF")
        except (ssl.SSLError, OSError) as err:
            print("error:", err)
"""


def tls_probe(pkidir):
    res = STATION.run(f"python3 -c {shlex.quote(TLS_PROBE)} {pkidir}")
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture(scope="module", autouse=True)
def good_pkipath():
    # a pkipath dir holding the issued cert: the control for the refusal tests
    STATION.run("mkdir -p /root/testpki/good && cp /etc/pki/CA/cacert.pem /root/testpki/good/cacert.pem && "
                "cp /etc/pki/libvirt/clientcert.pem /root/testpki/good/ && "
                "install -m 0600 /etc/pki/libvirt/private/clientkey.pem /root/testpki/good/")


def test_issued_client_cert_and_sasl_login_can_manage_the_host():
    for uri in (URI, "kvmhost", "qemu+tls://10.254.0.10/system", URI + "?pkipath=/root/testpki/good"):
        res = virsh(uri)
        assert res.rc == 0, (uri, res.stderr)
        assert "Name" in res.stdout


def test_client_cert_from_another_ca_is_refused():
    control = virsh(URI + "?pkipath=/root/testpki/good")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    res = virsh(URI + "?pkipath=/root/testpki/otherca")
    assert res.rc != 0 and "Name" not in res.stdout
    # virsh itself will not use a certificate its CA did not issue ...
    assert ("Our own certificate /root/testpki/otherca/clientcert.pem failed validation against "
            "/root/testpki/otherca/cacert.pem: The certificate hasn't got a known issuer.") in res.stderr, res.stderr
    # ... so hand it to libvirtd directly: libvirtd must refuse it on its own
    assert tls_probe("/root/testpki/good") == "01"
    cursor = journal_cursor()
    assert tls_probe("/root/testpki/otherca") == "EOF"
    assert_libvirtd_refused_certificate(cursor, NOT_OUR_CA)


def test_client_dn_not_in_allow_list_is_refused():
    # issued by the host's CA: its subject alone keeps it out
    cert = STATION.check_output("openssl verify -CAfile /etc/pki/CA/cacert.pem /root/testpki/baddn/clientcert.pem && "
                                "openssl x509 -noout -subject -nameopt RFC2253 -in /root/testpki/baddn/clientcert.pem")
    assert "clientcert.pem: OK" in cert and "OU=intruders" in cert, cert
    control = virsh(URI + "?pkipath=/root/testpki/good")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    cursor = journal_cursor()
    res = virsh(URI + "?pkipath=/root/testpki/baddn")
    assert res.rc != 0 and "Name" not in res.stdout
    assert NOT_CONFIRMED in res.stderr, res.stderr
    assert_libvirtd_refused_certificate(cursor, DN_NOT_ALLOWED)


def test_qemu_certificate_cannot_log_in_as_a_libvirt_client():
    """QEMU's key is readable by QEMU processes: it must not open libvirtd."""
    # test only: carry QEMU's credentials to the station as an attacker who took over a QEMU would
    key = KVM.check_output("base64 -w0 /etc/pki/qemu/server-key.pem")
    cert = KVM.check_output("base64 -w0 /etc/pki/qemu/server-cert.pem")
    STATION.run("umask 077; mkdir -p /root/testpki/qemu && cp /etc/pki/CA/cacert.pem /root/testpki/qemu/ && "
                f"echo {key} | base64 -d > /root/testpki/qemu/clientkey.pem && "
                f"echo {cert} | base64 -d > /root/testpki/qemu/clientcert.pem")
    # a valid certificate of the host's CA, for client use too: only its DN keeps it out
    qemu = STATION.check_output("openssl verify -purpose sslclient -CAfile /etc/pki/CA/cacert.pem "
                                "/root/testpki/qemu/clientcert.pem && "
                                "openssl x509 -noout -subject -nameopt RFC2253 -in /root/testpki/qemu/clientcert.pem")
    assert "clientcert.pem: OK" in qemu and "OU=qemu" in qemu, qemu
    control = virsh(URI + "?pkipath=/root/testpki/good")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    cursor = journal_cursor()
    res = virsh(URI + "?pkipath=/root/testpki/qemu")
    assert res.rc != 0 and "Name" not in res.stdout
    assert NOT_CONFIRMED in res.stderr, res.stderr
    assert_libvirtd_refused_certificate(cursor, DN_NOT_ALLOWED)
    STATION.run("rm -rf /root/testpki/qemu")


def test_no_client_cert_is_refused():
    assert STATION.run("test ! -e /root/testpki/nocert/clientcert.pem").rc == 0
    control = virsh(URI + "?pkipath=/root/testpki/good")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    cursor = journal_cursor()
    res = virsh(URI + "?pkipath=/root/testpki/nocert")
    assert res.rc != 0 and "Name" not in res.stdout
    assert NOT_CONFIRMED in res.stderr, res.stderr
    assert_libvirtd_refused_certificate(cursor, NO_CERT)


def test_name_not_in_server_certificate_is_refused():
    assert STATION.run("getent hosts kvmalias.secvirt.test").stdout.startswith("10.254.0.10")
    control = virsh("qemu+tls://kvmhost.secvirt.test/system")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    cursor = journal_cursor()
    res = virsh("qemu+tls://kvmalias.secvirt.test/system")
    assert res.rc != 0 and "Name" not in res.stdout
    # refused by virsh, which checks the name it dialled against the server's certificate
    assert "Certificate check failed Certificate [session] owner does not match the hostname " \
        "kvmalias.secvirt.test" in res.stderr, res.stderr
    assert "authentication failed: Failed to verify peer's certificate" in res.stderr, res.stderr
    # and not by libvirtd: the station's certificate passed libvirtd's checks
    log = libvirtd_log(cursor)
    assert "Certificate check failed" not in log, log[-2000:]


def test_sasl_wrong_password_and_unknown_user_are_refused():
    ok = virsh(URI, env=auth_file("/root/t-ok.conf", "admin", PASSWORD))
    assert ok.rc == 0 and "Name" in ok.stdout, ok.stderr
    # the certificate passes; SASL (SCRAM) refuses the login, saying why in libvirtd's journal
    wrong_password = "SASL(-13): authentication failure: StoredKey mismatch"
    no_such_user = "SASL(-13): user not found"
    for username, password, reason, not_reason in (
            ("admin", "not-the-password", wrong_password, no_such_user),
            ("mallory", PASSWORD, no_such_user, wrong_password),
            ("stale", "stale-pass", no_such_user, wrong_password)):  # stale: removed by exclusive mode
        cursor = journal_cursor()
        res = virsh(URI, env=auth_file(f"/root/t-{username}.conf", username, password))
        assert res.rc != 0 and "Name" not in res.stdout, username
        assert "error: authentication failed: authentication failed" in res.stderr, (username, res.stderr)
        log = libvirtd_log(cursor, reason)
        assert "authentication failed: Failed to start SASL negotiation: " in log, (username, log[-2000:])
        assert reason in log and not_reason not in log, (username, log[-2000:])
        assert "Certificate check failed" not in log, (username, log[-2000:])
    STATION.run("rm -f /root/t-*.conf")


def test_per_user_certificates_let_a_normal_user_connect():
    home = "/home/operator/.pki/libvirt"
    key = STATION.file(f"{home}/clientkey.pem")
    assert key.user == "operator" and key.mode == 0o600
    # the user's own identity, never a copy of root's key
    pub = "openssl pkey -in {} -pubout"
    assert STATION.check_output(pub.format(f"{home}/clientkey.pem")) != \
        STATION.check_output(pub.format("/etc/pki/libvirt/private/clientkey.pem"))
    assert "CN = operator" in STATION.check_output(f"openssl x509 -in {home}/clientcert.pem -noout -subject")
    assert STATION.file("/home/operator/.pki").mode == 0o700
    env = auth_file("/tmp/op-auth.conf", "admin", PASSWORD, owner="operator")
    res = virsh(URI, env=env, user="operator")
    STATION.run("rm -f /tmp/op-auth.conf")
    assert res.rc == 0, res.stderr


def test_client_role_refuses_links_in_a_users_home_and_users_without_an_identity():
    """A user's links must not turn the role's root powers against the station."""
    STATION.run("id mallory || useradd -m -s /bin/bash mallory")
    # a root-only directory and key the links point at
    STATION.run("install -d -m 0700 /etc/secvirt-victim /etc/secvirt-victim/libvirt && "
                "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out /etc/secvirt-victim/libvirt/clientkey.pem && "
                "cp /etc/pki/libvirt/clientcert.pem /etc/secvirt-victim/libvirt/clientcert.pem && "
                "chmod 0600 /etc/secvirt-victim/libvirt/*")
    STATION.run("runuser -u mallory -- sh -c 'rm -rf ~/.pki ~/.config; ln -s /etc/secvirt-victim ~/.pki; "
                "ln -s /etc/secvirt-victim ~/.config'")
    try:
        victim = "stat -c '%n %U %G %a' /etc/secvirt-victim /etc/secvirt-victim/libvirt /etc/secvirt-victim/libvirt/*"
        before = STATION.check_output(victim)

        rc, output = run_role({"libvirt_client_users": [{"name": "operator"}, {"name": "mallory"}]},
                              hosts="management_stations", role="libvirt_client")
        flat = " ".join(output.split())
        assert rc != 0, output[-3000:]
        assert "refusing to work through symbolic links in the home of a user: mallory: ~/.pki" in flat, output[-3000:]
        assert STATION.check_output(victim) == before

        # a user with no identity of their own gets nothing, in particular not root's key
        # (the path spelled out: a ~ here would be root's home, expanded by root's shell)
        STATION.check_output("runuser -u mallory -- rm /home/mallory/.pki")
        rc, output = run_role({"libvirt_client_users": [{"name": "operator"}, {"name": "mallory"}]},
                              hosts="management_stations", role="libvirt_client")
        flat = " ".join(output.split())
        assert rc != 0 and "missing mallory: ~/.pki/libvirt/clientcert.pem, mallory: ~/.pki/libvirt/clientkey.pem" in flat, \
            output[-3000:]
        assert STATION.run("test -e /home/mallory/.pki").rc != 0

        # SASL credentials for a user whose ~/.config is a link into a root directory
        rc, output = run_role({"libvirt_client_sasl_store_password": True,
                               "libvirt_client_sasl_credentials": [{"user": "mallory", "host": "kvmhost.secvirt.test",
                                                                    "username": "admin", "password": "x-test-only-x"}]},
                              hosts="management_stations", role="libvirt_client")
        flat = " ".join(output.split())
        assert rc != 0, output[-3000:]
        # refused by the kernel: the role works in ~/.config as mallory, who may not write there
        assert "Permission denied" in flat and "/home/mallory/.config/libvirt" in flat, output[-3000:]
        assert STATION.check_output(victim) == before
        assert STATION.run("test -e /etc/secvirt-victim/libvirt/auth.conf").rc != 0

        # positive control: the same role with operator alone, whose identity is in place, passes
        rc, output = run_role({"libvirt_client_users": [{"name": "operator"}]},
                              hosts="management_stations", role="libvirt_client")
        assert rc == 0, output[-3000:]
        assert STATION.check_output(victim) == before
    finally:
        STATION.run("userdel -r mallory; rm -rf /etc/secvirt-victim")


def test_station_files():
    conf = conf_values(STATION.file("/etc/libvirt/libvirt.conf").content_string)
    assert conf["uri_aliases"] == ["kvmhost=qemu+tls://kvmhost.secvirt.test/system"]
    auth = STATION.file("/root/.config/libvirt/auth.conf")
    assert auth.mode == 0o600 and auth.user == "root"
    assert STATION.file("/etc/pki/libvirt/private/clientkey.pem").mode == 0o600
    assert STATION.package("libvirt-clients").is_installed
    assert not STATION.package("libvirt-daemon-system").is_installed


def test_daemon_configuration_is_what_was_asked():
    conf = conf_values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
    assert conf["tls_no_verify_certificate"] == 0
    assert conf["tls_allowed_dn_list"] == ["C=DE,O=secvirt,OU=operators,CN=*"]
    assert conf["auth_tls"] == "sasl" and conf["auth_tcp"] == "sasl"
    assert conf["cert_file"] == "/etc/pki/libvirt/servercert.pem"
    sasl = KVM.file("/etc/sasl2/libvirt.conf").content_string
    assert "mech_list: scram-sha-256" in sasl
    assert "scram_secret_generate: yes" in sasl
    assert "--listen" not in KVM.run("grep -v '^#' /etc/default/libvirtd").stdout


def test_only_the_tls_socket_listens():
    assert KVM.service("libvirtd-tls.socket").is_enabled
    assert KVM.service("libvirtd-tls.socket").is_running
    assert not KVM.service("libvirtd-tcp.socket").is_running
    assert KVM.run("ss -Hltn 'sport = :16514'").stdout.strip()
    assert not KVM.run("ss -Hltn 'sport = :16509'").stdout.strip()
    # and from the station, 16509 is closed
    res = STATION.run("timeout 5 bash -c 'exec 3<>/dev/tcp/10.254.0.10/16509'")
    assert res.rc != 0


def connect_16514_from_inside_and_outside(station=STATION):
    """Connect from the station to 16514 from its management address and from a
    second address outside the management CIDR; return both results."""
    probe = ("python3 -c \"import socket; s=socket.socket(); s.settimeout(4); s.bind(('{src}',0));"
             "s.connect(('10.254.0.10',16514)); print('open')\"")
    station.run("ip addr add 10.254.0.99/24 dev eth2")
    try:
        return station.run(probe.format(src="10.254.0.11")), station.run(probe.format(src="10.254.0.99"))
    finally:
        station.run("ip addr del 10.254.0.99/24 dev eth2")


def test_firewall_lets_only_the_management_network_in():
    table = KVM.check_output("nft list table inet secvirt_libvirt_remote")
    assert "10.254.0.11" in table and "16514" in table
    assert KVM.run("nft -c -f /etc/nftables.conf").rc == 0
    assert 'include "/etc/nftables.d/secvirt-libvirt-remote.nft"' in KVM.file("/etc/nftables.conf").content_string
    assert KVM.service("nftables.service").is_enabled
    # outside the management CIDR: dropped (timeout, not refused)
    allowed, blocked = connect_16514_from_inside_and_outside()
    assert allowed.stdout.strip() == "open"
    assert blocked.rc != 0 and "timed out" in blocked.stderr


def test_a_filter_written_but_never_loaded_is_loaded_by_the_next_run():
    nft_file = "/etc/nftables.d/secvirt-libvirt-remote.nft"
    live_set = "nft list set inet secvirt_libvirt_remote management_v4"
    # The state a run leaves when it wrote the file and was stopped before it
    # loaded it: the kernel holds an older table (another id, 10.254.0.99 let
    # in), the file on disk is the intended one. Made by hand, not by a second
    # role run: one run of the role is what this test is about.
    older = KVM.check_output(f"cat {nft_file}")
    assert 'comment "secvirt:' in older and "10.254.0.11" in older
    older = older.replace("10.254.0.11", "10.254.0.11, 10.254.0.99")
    older = re.sub(r'comment "secvirt:[0-9a-f]+"', 'comment "secvirt:0000older"', older)
    KVM.check_output(f"cat > /root/nft-older <<'EOF'\n{older}\nEOF\nnft -f /root/nft-older && rm /root/nft-older")
    assert "10.254.0.99" in KVM.check_output(live_set)
    assert "10.254.0.99" not in KVM.file(nft_file).content_string
    rc, output = run_role()
    assert rc == 0, output[-3000:]
    live = KVM.check_output(live_set)
    assert "10.254.0.99" not in live and "10.254.0.11" in live, live
    assert "secvirt:0000older" not in KVM.check_output("nft list table inet secvirt_libvirt_remote")
    assert virsh(URI).rc == 0  # the management station still gets in


def test_sasl_database_is_root_only_and_password_is_nowhere_else_on_disk():
    db = KVM.file("/etc/libvirt/passwd.db")
    assert db.mode == 0o600 and db.user == "root"
    users = KVM.check_output("sasldblistusers2 -f /etc/libvirt/passwd.db")
    assert "admin@" in users and "stale@" not in users
    # only the salted SCRAM verifier: no cleartext userPassword property
    assert "authPassword" in users and "userPassword" not in users, users
    # and the password is nowhere on the host: not in the sasldb, logs,
    # journals, ansible temp files or configs
    found = KVM.run(f"grep -rlaF --exclude-dir=archives -- '{PASSWORD}' /etc /var /root /tmp /home /run /srv /opt /usr/local")
    assert found.stdout.split() == [], found.stdout


def run_role(role_vars=None, hosts="kvm_hosts", role="libvirt_remote", inventory=None):
    """Run a role again as an operator would (default: libvirt_remote with its defaults on the KVM host)."""
    proc = ansible_cli.run_role(role, hosts, role_vars or {"libvirt_remote_daemon_mode": "auto"}, inventory=inventory,
                                env={"ANSIBLE_COLLECTIONS_PATH": os.path.join(PROJECT, ".cache", "collections")})
    return proc.returncode, proc.stdout + proc.stderr


def test_failed_restart_restores_the_previous_configuration():
    before = KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf")
    sasl_before = KVM.check_output("sha256sum /etc/sasl2/libvirt.conf")
    # exists, but is no certificate; and a new SCRAM iteration count, so that
    # the SASL file changes in the same run and must be put back too (the
    # role once registered that template's result over the file's path)
    rc, output = run_role({"libvirt_remote_server_cert": "/etc/hostname", "libvirt_remote_sasl_scram_iterations": 20000})
    assert rc != 0, output[-3000:]
    # the YAML result format folds long messages: compare with whitespace collapsed
    flat = " ".join(output.split())
    assert "were restored" in flat and "rescued=1" in flat, output[-3000:]
    # a failed start takes libvirtd's sockets down: the rollback brings them back
    assert "listening again" in flat and "NOT listening" not in flat, output[-3000:]
    assert KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf") == before
    assert KVM.check_output("sha256sum /etc/sasl2/libvirt.conf") == sasl_before
    # libvirtd exits when idle (--timeout 120) and is socket-activated again
    assert KVM.run("virsh -c qemu:///system uri").rc == 0
    assert virsh(URI).rc == 0


def test_modular_layout_is_refused_where_libvirt_has_no_virtproxyd():
    # Debian's libvirt ships only the monolithic libvirtd: asking for the
    # modular daemons must stop the role before it configures anything.
    before = KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf /etc/sasl2/libvirt.conf")
    rc, output = run_role({"libvirt_remote_daemon_mode": "modular"})
    flat = " ".join(output.split())
    assert rc != 0 and "virtproxyd.service" in flat and "Nothing was configured" in flat, output[-3000:]
    assert KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf /etc/sasl2/libvirt.conf") == before
    assert not KVM.file("/etc/libvirt/virtproxyd.conf").exists
    assert virsh(URI).rc == 0


REALM = "SECVIRT.TEST"
KRB5_CONF = """[libdefaults]
    default_realm = SECVIRT.TEST
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
[realms]
    SECVIRT.TEST = {
        kdc = 10.254.0.11
    }
[domain_realm]
    .secvirt.test = SECVIRT.TEST
"""
TCP_URI = "qemu+tcp://kvmhost.secvirt.test/system"
# The station's auth.conf (libvirt_client) holds the SCRAM login for this
# host; Kerberos logins must not pick it up, so they use an empty one.
NO_AUTH_FILE = "LIBVIRT_AUTH_FILE=/root/krb/empty-auth.conf"


def kerberos_realm():
    """A throw-away KDC on the station: the environment a GSSAPI operator has.

    The service key is made by the KDC and handed to the host through Ansible
    (copy module, never argv), as an operator's kadmin/ipa-getkeytab would.
    """
    setup = f"""set -eu
# the station boots the "station" disk: krb5-kdc, krb5-admin-server,
# krb5-user and tcpdump are installed, their services off
cat > /etc/krb5.conf <<'EOF'
{KRB5_CONF}EOF
if [ ! -e /var/lib/krb5kdc/principal ]; then
  kdb5_util create -s -r {REALM} -P "$(head -c 32 /dev/urandom | base64)" >/dev/null
fi
install -d -m 0700 /root/krb
: > /root/krb/empty-auth.conf
for p in libvirt/kvmhost.secvirt.test admin intruder; do
  kadmin.local -q "getprinc $p" 2>/dev/null | grep -q '^Principal' || kadmin.local -q "addprinc -randkey $p" >/dev/null
done
for p in admin intruder; do
  [ -e /root/krb/$p.keytab ] || kadmin.local -q "ktadd -k /root/krb/$p.keytab $p" >/dev/null
done
[ -e /root/krb/libvirt.keytab ] || kadmin.local -q "ktadd -k /root/krb/libvirt.keytab libvirt/kvmhost.secvirt.test" >/dev/null
systemctl restart krb5-kdc
"""
    res = STATION.run(f"bash -c {shlex.quote(setup)}")
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    keytab = ansible_cli.run_module(STATION_NAME, "ansible.builtin.slurp", {"src": "/root/krb/libvirt.keytab"})
    assert not keytab["failed"], keytab
    placed = ansible_cli.run_module(KVM_NAME, "ansible.builtin.copy", {
        "content": keytab["content"], "dest": "/etc/libvirt/krb5.tab.b64", "mode": "0600"})
    assert not placed["failed"], placed
    KVM.check_output("base64 -d /etc/libvirt/krb5.tab.b64 > /etc/libvirt/krb5.tab && rm /etc/libvirt/krb5.tab.b64 "
                     "&& chmod 0644 /etc/libvirt/krb5.tab")  # the role must make it 0600
    KVM.check_output(f"cat > /etc/krb5.conf <<'EOF'\n{KRB5_CONF}EOF")
    STATION.check_output("rm -f /root/krb/libvirt.keytab")


def kinit(principal):
    STATION.check_output(f"kdestroy -A 2>/dev/null; kinit -k -t /root/krb/{principal}.keytab {principal}@{REALM}")


def test_kerberos_on_plain_tcp_lets_in_only_the_allowed_principals():
    kerberos_realm()
    # Cyrus SASL hands libvirtd principals of the host's default realm
    # without "@REALM" (seen in libvirtd's journal: identity 'admin'); a
    # principal of another realm keeps its realm and so does not match.
    role_vars = {"libvirt_remote_tcp_enabled": True, "libvirt_remote_sasl_mech": "gssapi",
                 "libvirt_remote_sasl_allowed_usernames": ["admin"]}
    # libvirtd running when the role turns TCP on: systemd refuses to start
    # a socket whose service is active (the role used to fail here whenever
    # libvirtd had not yet exited after its 120 s idle timeout)
    KVM.check_output("virsh -c qemu:///system uri && systemctl is-active libvirtd.service")
    rc, output = run_role(role_vars)
    assert rc == 0, output[-3000:]
    keytab = KVM.file("/etc/libvirt/krb5.tab")
    assert keytab.mode == 0o600 and keytab.user == "root" and keytab.group == "root"
    conf = conf_values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
    assert conf["sasl_allowed_username_list"] == ["admin"]
    assert conf["listen_tcp"] == 1 and conf["auth_tcp"] == "sasl"
    sasl = KVM.file("/etc/sasl2/libvirt.conf").content_string
    assert "mech_list: gssapi" in sasl and "keytab: /etc/libvirt/krb5.tab" in sasl
    assert KVM.service("libvirtd-tcp.socket").is_running
    assert "16509" in KVM.check_output("nft list table inet secvirt_libvirt_remote")
    try:
        kinit("admin")
        for uri in (TCP_URI, URI):  # plain TCP, and TLS with the Kerberos login
            res = virsh(uri, env=NO_AUTH_FILE)
            assert res.rc == 0 and "Name" in res.stdout, (uri, res.stderr)
        # GSSAPI encrypts the session on plain TCP: the capabilities XML that
        # virsh prints never crosses the wire in cleartext
        sniff = STATION.run(
            "tcpdump -i eth2 -U -s 0 -w /root/krb/16509.pcap 'tcp port 16509' 2>/dev/null & pid=$!; sleep 3; "
            f"{NO_AUTH_FILE} timeout 90 virsh -c {TCP_URI} capabilities </dev/null; rc=$?; "
            "sleep 2; kill $pid; wait $pid; exit $rc")
        assert sniff.rc == 0 and "<capabilities>" in sniff.stdout, sniff.stderr
        captured = STATION.check_output("stat -c %s /root/krb/16509.pcap")
        assert int(captured) > len(sniff.stdout), captured  # the reply was captured ...
        assert STATION.run("grep -c -a -e '<capabilities>' -e '<host>' /root/krb/16509.pcap").stdout.strip() == "0"
        # a valid ticket, but a principal not on the allow list
        kinit("intruder")
        res = virsh(TCP_URI, env=NO_AUTH_FILE)
        assert res.rc != 0 and "Name" not in res.stdout
        journal = KVM.run("journalctl -u libvirtd.service --no-pager -n 100").stdout
        assert "identity 'intruder' not allowed" in journal, journal[-2000:]
        # no ticket at all
        STATION.run("kdestroy -A")
        res = virsh(TCP_URI, env=NO_AUTH_FILE)
        assert res.rc != 0 and "Name" not in res.stdout
    finally:
        STATION.run("kdestroy -A")
    rc, output = run_role(role_vars)
    assert rc == 0 and " changed=0 " in " ".join(output.split()) + " ", output[-3000:]
    # the host back on the scenario's settings (SCRAM inside TLS, TCP off):
    # no later test depends on this one having run or not
    rc, output = run_role()
    assert rc == 0, output[-3000:]
    conf = conf_values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
    assert "sasl_allowed_username_list" not in conf and conf["listen_tcp"] == 0


def test_with_firewalld_running_the_role_uses_firewalld_rich_rules():
    """With firewalld running, the role opens 16514 by rich rules instead of
    its nftables table. On clones of the host and the station: it changes the
    host's firewall for good."""
    with clones.cloned("firewalld", [KVM_NAME, STATION_NAME]) as clone:
        kvm, station = clone.host(KVM_NAME), clone.host(STATION_NAME)
        # installed in the virt disk but dormant (tests/harness/packages.txt)
        firewalld.wake(kvm)
        # a stray rule that opens 16514 to everyone, as an operator might have added
        kvm.check_output("firewall-cmd --permanent --add-port=16514/tcp && firewall-cmd --add-port=16514/tcp")
        rc, output = run_role(inventory=clone.inventory)
        assert rc == 0, output[-3000:]
        wanted = ['rule family="ipv4" source address="10.254.0.11/32" port port="16514" protocol="tcp" accept']
        for scope in ("", "--permanent "):
            zone = f"firewall-cmd {scope}--zone=public"
            assert kvm.check_output(f"{zone} --list-rich-rules").splitlines() == wanted
            assert "16514" not in kvm.check_output(f"{zone} --list-ports")
            assert "ssh" in kvm.check_output(f"{zone} --list-services").split()
        conf = conf_values(kvm.file("/etc/libvirt/libvirtd.conf").content_string)
        assert "sasl_allowed_username_list" not in conf and conf["listen_tcp"] == 0
        assert "mech_list: scram-sha-256" in kvm.file("/etc/sasl2/libvirt.conf").content_string
        assert not kvm.service("libvirtd-tcp.socket").is_running
        # our nftables table is gone, runtime and boot
        assert kvm.run("nft list table inet secvirt_libvirt_remote").rc != 0
        assert "secvirt-libvirt-remote" not in kvm.file("/etc/nftables.conf").content_string
        allowed, blocked = connect_16514_from_inside_and_outside(station)
        assert allowed.stdout.strip() == "open"
        assert blocked.rc != 0 and "open" not in blocked.stdout
        assert virsh(URI, station=station).rc == 0
        rc, output = run_role(inventory=clone.inventory)
        assert rc == 0 and " changed=0 " in " ".join(output.split()) + " ", output[-3000:]


def test_check_mode_predicts_the_real_run_and_changes_nothing():
    """On a clone of kvmhost drifted from what the role put in force (the
    allowed-DN list out of libvirtd.conf, in force in the restarted daemon;
    the port filter unloaded), --check --diff reports the changes and makes
    none (same files, no filter); the real run then
    changes exactly what was predicted (the check-mode stand-ins for the
    filter load and the daemon restart map to the real tasks). The same for
    libvirt_client on a clone of the station that lost its URI alias and a
    user's copy of the CA."""
    with clones.cloned("remote-check", [KVM_NAME, STATION_NAME]) as clone:
        host, station = clone.host(KVM_NAME), clone.host(STATION_NAME)
        host.check_output("sed -i '/^tls_allowed_dn_list = \\[.*\\]$/d' /etc/libvirt/libvirtd.conf && systemctl restart libvirtd "
                          "&& nft delete table inet secvirt_libvirt_remote")
        assert "tls_allowed_dn_list" not in conf_values(host.file("/etc/libvirt/libvirtd.conf").content_string)
        # (not the daemon's pid: Debian's libvirtd exits after 120 s idle)
        state = "sha256sum /etc/libvirt/libvirtd.conf /etc/sasl2/libvirt.conf; nft list tables"
        drifted = host.check_output(state)

        def nothing_changed():
            assert host.check_output(state) == drifted

        predicted, made = ansible_cli.check_then_real("libvirt_remote", "kvm_hosts", KVM_NAME, clone.inventory, nothing_changed)
        real_name = {"Predict the load of the libvirt port filter (check mode)": "Load the libvirt port filter (the running one is not the intended one)",
                     "Predict the restart of libvirt (check mode)": "Restart the daemon so it takes the new configuration and sockets"}
        assert set(real_name) | {"Set the daemon's TLS, authentication and limits in one validated edit"} <= set(predicted), predicted
        assert made == [real_name.get(name, name) for name in predicted], (predicted, made)
        assert "tls_allowed_dn_list" in conf_values(host.file("/etc/libvirt/libvirtd.conf").content_string)
        assert host.run("nft list table inet secvirt_libvirt_remote").rc == 0

        station.check_output("rm /home/operator/.pki/libvirt/cacert.pem && sed -i '/^uri_aliases/d' /etc/libvirt/libvirt.conf")
        # (not all of the home: Ansible's become leaves its own files there)
        state = ("find /etc/libvirt /etc/pki /home/operator/.pki -exec stat -c '%n %a %U %G %s' {} + "
                 "| sort; find /etc/libvirt /etc/pki /home/operator/.pki -type f -exec sha256sum {} + | sort")
        drifted = station.check_output(state)

        def nothing_changed_on_the_station():
            assert station.check_output(state) == drifted

        predicted, made = ansible_cli.check_then_real("libvirt_client", "management_stations", STATION_NAME, clone.inventory,
                                                      nothing_changed_on_the_station)
        assert {"Set URI aliases and the default URI for every user of this station",
                "Give each listed user the CA certificate, as that user"} <= set(predicted), predicted
        assert made == predicted, (predicted, made)
        assert station.file("/home/operator/.pki/libvirt/cacert.pem").mode == 0o644
        assert "kvmhost=qemu+tls://kvmhost.secvirt.test/system" in station.file("/etc/libvirt/libvirt.conf").content_string
