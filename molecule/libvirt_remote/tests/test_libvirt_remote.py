"""Remote libvirt management, checked from the management station as a real client."""
import os
import re
import shlex
import sys

import pytest
import testinfra.utils.ansible_runner

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(PROJECT, ".cache", "collections"))
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_conf  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "..", "_harness"))
import ansible_cli  # noqa: E402

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
KVM_NAME = RUNNER.get_hosts("kvm_hosts")[0]
STATION_NAME = RUNNER.get_hosts("management_stations")[0]
KVM = RUNNER.get_host(KVM_NAME)
STATION = RUNNER.get_host(STATION_NAME)
PASSWORD = "Vm-Adm1n-s3cret-4f9b2c"  # molecule.yml group_vars, test only
URI = "qemu+tls://kvmhost.secvirt.test/system"


def virsh(uri, env="", user=None):
    cmd = f"{env} timeout 90 virsh -c '{uri}' list --all </dev/null"
    if user:
        cmd = f"su - {user} -c \"{cmd}\""
    return STATION.run(cmd)


def auth_file(path, username, password, owner="root"):
    STATION.run(
        f"umask 077; printf '[credentials-t]\\nauthname=%s\\npassword=%s\\n\\n"
        f"[auth-libvirt-kvmhost.secvirt.test]\\ncredentials=t\\n' '{username}' '{password}' > {path}; chown {owner} {path}")
    return f"LIBVIRT_AUTH_FILE={path}"


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
    res = virsh(URI + "?pkipath=/root/testpki/otherca")
    assert res.rc != 0 and "Name" not in res.stdout


def test_client_dn_not_in_allow_list_is_refused():
    res = virsh(URI + "?pkipath=/root/testpki/baddn")
    assert res.rc != 0 and "Name" not in res.stdout
    journal = KVM.run("journalctl -u libvirtd.service --no-pager -n 200").stdout
    assert "allowed clients" in journal or "not on the list" in journal


def test_qemu_certificate_cannot_log_in_as_a_libvirt_client():
    """QEMU's key is readable by QEMU processes: it must not open libvirtd."""
    # test only: carry QEMU's credentials to the station as an attacker who took over a QEMU would
    key = KVM.check_output("base64 -w0 /etc/pki/qemu/server-key.pem")
    cert = KVM.check_output("base64 -w0 /etc/pki/qemu/server-cert.pem")
    STATION.run("umask 077; mkdir -p /root/testpki/qemu && cp /etc/pki/CA/cacert.pem /root/testpki/qemu/ && "
                f"echo {key} | base64 -d > /root/testpki/qemu/clientkey.pem && "
                f"echo {cert} | base64 -d > /root/testpki/qemu/clientcert.pem")
    since = KVM.check_output("date +%s")
    control = virsh(URI + "?pkipath=/root/testpki/good")
    assert control.rc == 0 and "Name" in control.stdout, control.stderr
    res = virsh(URI + "?pkipath=/root/testpki/qemu")
    assert res.rc != 0 and "Name" not in res.stdout
    journal = KVM.run(f"journalctl -u libvirtd.service --no-pager --since @{since}").stdout
    assert "not on the list" in journal, journal[-2000:]
    STATION.run("rm -rf /root/testpki/qemu")


def test_no_client_cert_is_refused():
    assert STATION.run("test ! -e /root/testpki/nocert/clientcert.pem").rc == 0
    res = virsh(URI + "?pkipath=/root/testpki/nocert")
    assert res.rc != 0 and "Name" not in res.stdout


def test_name_not_in_server_certificate_is_refused():
    assert STATION.run("getent hosts kvmalias.secvirt.test").stdout.startswith("10.254.0.10")
    res = virsh("qemu+tls://kvmalias.secvirt.test/system")
    assert res.rc != 0
    assert "does not match" in res.stderr


def test_sasl_wrong_password_and_unknown_user_are_refused():
    ok = virsh(URI, env=auth_file("/root/t-ok.conf", "admin", PASSWORD))
    assert ok.rc == 0, ok.stderr
    wrong = virsh(URI, env=auth_file("/root/t-wrong.conf", "admin", "not-the-password"))
    assert wrong.rc != 0 and "Name" not in wrong.stdout
    unknown = virsh(URI, env=auth_file("/root/t-unknown.conf", "mallory", PASSWORD))
    assert unknown.rc != 0 and "Name" not in unknown.stdout
    stale = virsh(URI, env=auth_file("/root/t-stale.conf", "stale", "stale-pass"))
    assert stale.rc != 0  # removed by exclusive mode
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
    conf = libvirt_conf.values(STATION.file("/etc/libvirt/libvirt.conf").content_string)
    assert conf["uri_aliases"] == ["kvmhost=qemu+tls://kvmhost.secvirt.test/system"]
    auth = STATION.file("/root/.config/libvirt/auth.conf")
    assert auth.mode == 0o600 and auth.user == "root"
    assert STATION.file("/etc/pki/libvirt/private/clientkey.pem").mode == 0o600
    assert STATION.package("libvirt-clients").is_installed
    assert not STATION.package("libvirt-daemon-system").is_installed


def test_daemon_configuration_is_what_was_asked():
    conf = libvirt_conf.values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
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


def connect_16514_from_inside_and_outside():
    """Connect from the station to 16514 from its management address and from a
    second address outside the management CIDR; return both results."""
    probe = ("python3 -c \"import socket; s=socket.socket(); s.settimeout(4); s.bind(('{src}',0));"
             "s.connect(('10.254.0.10',16514)); print('open')\"")
    STATION.run("ip addr add 10.254.0.99/24 dev eth2")
    try:
        return STATION.run(probe.format(src="10.254.0.11")), STATION.run(probe.format(src="10.254.0.99"))
    finally:
        STATION.run("ip addr del 10.254.0.99/24 dev eth2")


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


def run_role(role_vars=None, hosts="kvm_hosts", role="libvirt_remote"):
    """Run a role again as an operator would (default: libvirt_remote with its defaults on the KVM host)."""
    proc = ansible_cli.run_role(role, hosts, role_vars or {"libvirt_remote_daemon_mode": "auto"},
                                env={"ANSIBLE_COLLECTIONS_PATH": os.path.join(PROJECT, ".cache", "collections")})
    return proc.returncode, proc.stdout + proc.stderr


def test_failed_restart_restores_the_previous_configuration():
    before = KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf")
    # exists, but is no certificate
    rc, output = run_role({"libvirt_remote_server_cert": "/etc/hostname"})
    assert rc != 0, output[-3000:]
    # the YAML result format folds long messages: compare with whitespace collapsed
    flat = " ".join(output.split())
    assert "were restored" in flat and "rescued=1" in flat, output[-3000:]
    # a failed start takes libvirtd's sockets down: the rollback brings them back
    assert "listening again" in flat and "NOT listening" not in flat, output[-3000:]
    assert KVM.check_output("sha256sum /etc/libvirt/libvirtd.conf") == before
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
    conf = libvirt_conf.values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
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


def test_with_firewalld_running_the_role_uses_firewalld_rich_rules():
    # last test: it changes the host's firewall for good. It also takes the
    # host back from Kerberos on TCP to the defaults (SCRAM inside TLS only).
    # from the image's apt cache (packages.txt): not preinstalled, see there
    install = KVM.run("DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q firewalld "
                      "&& systemctl enable --now firewalld")
    assert install.rc == 0, install.stdout[-2000:] + install.stderr[-2000:]
    # a stray rule that opens 16514 to everyone, as an operator might have added
    KVM.check_output("firewall-cmd --permanent --add-port=16514/tcp && firewall-cmd --add-port=16514/tcp")
    rc, output = run_role()
    assert rc == 0, output[-3000:]
    wanted = ['rule family="ipv4" source address="10.254.0.11/32" port port="16514" protocol="tcp" accept']
    for scope in ("", "--permanent "):
        zone = f"firewall-cmd {scope}--zone=public"
        assert KVM.check_output(f"{zone} --list-rich-rules").splitlines() == wanted
        assert "16514" not in KVM.check_output(f"{zone} --list-ports")
        assert "ssh" in KVM.check_output(f"{zone} --list-services").split()
    # back on the defaults (SCRAM inside TLS, TCP off): the Kerberos test's
    # allow list is gone from libvirtd.conf, not left in force
    conf = libvirt_conf.values(KVM.file("/etc/libvirt/libvirtd.conf").content_string)
    assert "sasl_allowed_username_list" not in conf and conf["listen_tcp"] == 0
    assert "mech_list: scram-sha-256" in KVM.file("/etc/sasl2/libvirt.conf").content_string
    assert not KVM.service("libvirtd-tcp.socket").is_running
    # our nftables table is gone, runtime and boot
    assert KVM.run("nft list table inet secvirt_libvirt_remote").rc != 0
    assert "secvirt-libvirt-remote" not in KVM.file("/etc/nftables.conf").content_string
    allowed, blocked = connect_16514_from_inside_and_outside()
    assert allowed.stdout.strip() == "open"
    assert blocked.rc != 0 and "open" not in blocked.stdout
    assert virsh(URI).rc == 0
    rc, output = run_role()
    assert rc == 0 and " changed=0 " in " ".join(output.split()) + " ", output[-3000:]
