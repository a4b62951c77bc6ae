"""sasl_user with the real Cyrus SASL tools, then a real SCRAM-SHA-256 login.

No stand-ins here: the module runs Debian's saslpasswd2/sasldblistusers2 on a
sasldb in a temporary directory (SASL_CONF_PATH points Cyrus SASL at a config
written like the libvirt_remote role's), and Cyrus SASL's own sample server
and client (sasl2-bin) then run a SCRAM-SHA-256 exchange against that
database (sasl2-bin and libsasl2-modules come from make setup).
This is the path libvirtd takes for auth_tls = "sasl", minus the
TLS socket (covered by molecule/libvirt_remote).
"""
import json
import os
import pty
import re
import select
import subprocess
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.modules import sasl_user

APP = "sample"  # the application name Cyrus SASL's sample server uses
PASSWORD = "Scram-Test-pw-93c1"


@pytest.fixture
def sasldir(tmp_path, monkeypatch):
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    return tmp_path


def write_conf(d, generate=True):
    lines = ["mech_list: scram-sha-256", "sasldb_path: %s" % (d / "passwd.db")]
    if generate:
        lines += ["scram_secret_generate: yes", "scram_iteration_counter: 10000"]
    (d / (APP + ".conf")).write_text("\n".join(lines) + "\n")


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            sasl_user.main()
    return json.loads(capsys.readouterr().out)


def scram_login(d, user, password, timeout=30):
    """One SCRAM-SHA-256 exchange between the sample server and client.

    The two programs print their SASL messages as 'S: ...' / 'C: ...' lines;
    this relays them and answers the client's password prompt (which it reads
    from a terminal, hence the pty). Returns the server's transcript.
    """
    env = dict(os.environ, SASL_CONF_PATH=str(d))
    mech = ["-s", APP, "-m", "SCRAM-SHA-256"]
    server = subprocess.Popen(["stdbuf", "-oL", "sasl-sample-server"] + mech,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=env)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        os.execvpe("sasl-sample-client", ["sasl-sample-client"] + mech + ["-a", user, "-u", user], env)
    os.set_blocking(server.stdout.fileno(), False)
    transcript = b""
    end = time.time() + timeout
    try:
        while time.time() < end and server.poll() is None:
            ready = select.select([fd, server.stdout.fileno()], [], [], 0.5)[0]
            if fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if b"assword" in data:
                    os.write(fd, password.encode() + b"\n")
                for msg in re.findall(rb"^C: (\S*)\r?$", data, re.M):
                    server.stdin.write(b"C: " + msg + b"\n")
                    server.stdin.flush()
            if server.stdout.fileno() in ready:
                data = server.stdout.read() or b""
                transcript += data
                for msg in re.findall(rb"^S: (\S*)$", data, re.M):
                    os.write(fd, b"S: " + msg + b"\n")
                # the server names the user right after "Negotiation complete"
                if re.search(rb"Username: \S+\n", transcript) or b"failure" in transcript:
                    break
    finally:
        server.kill()
        server.wait()
        os.close(fd)
        os.waitpid(pid, 0)
    return transcript.decode(errors="replace")


def test_scram_user_without_cleartext_logs_in_and_wrong_password_is_refused(sasldir, capsys):
    write_conf(sasldir)
    db = sasldir / "passwd.db"
    res = run({"path": str(db), "appname": APP, "realm": "kvm.test",
               "users": [{"name": "admin", "password": PASSWORD}]}, capsys)
    assert res["changed"] and res["users"] == ["admin@kvm.test"]
    props = subprocess.run(["sasldblistusers2", "-f", str(db)], check=True,
                           capture_output=True, text=True).stdout.split()
    assert props == ["admin@kvm.test:", "authPassword"], "salted SCRAM verifier only, no userPassword"
    assert PASSWORD.encode() not in db.read_bytes()
    assert oct(db.stat().st_mode & 0o777) == "0o600"

    ok = scram_login(sasldir, "admin@kvm.test", PASSWORD)
    assert "Negotiation complete" in ok and "Username: admin" in ok, ok
    bad = scram_login(sasldir, "admin@kvm.test", "not-" + PASSWORD)
    assert "authentication failure" in bad and "Negotiation complete" not in bad, bad
    unknown = scram_login(sasldir, "mallory@kvm.test", PASSWORD)
    assert "Negotiation complete" not in unknown, unknown

    again = run({"path": str(db), "appname": APP, "realm": "kvm.test",
                 "users": [{"name": "admin", "password": PASSWORD}]}, capsys)
    assert not again["changed"]


def test_without_scram_secret_generate_the_module_refuses_a_user_that_could_not_log_in(sasldir, capsys):
    write_conf(sasldir, generate=False)
    res = run({"path": str(sasldir / "passwd.db"), "appname": APP, "realm": "kvm.test",
               "users": [{"name": "admin", "password": PASSWORD}]}, capsys)
    assert res.get("failed") and "scram_secret_generate" in res["msg"]
    assert PASSWORD not in json.dumps(res)


def test_default_realm_is_the_one_a_server_without_realm_uses(sasldir, capsys):
    # the sample server, like libvirtd, passes no realm to sasl_server_new(),
    # so a client logging in as plain "admin" is looked up in the server's
    # default realm; the module's default must put the user there
    write_conf(sasldir)
    res = run({"path": str(sasldir / "passwd.db"), "appname": APP,
               "users": [{"name": "admin", "password": PASSWORD}]}, capsys)
    assert res["users"] == ["admin@%s" % res["realm"]]
    ok = scram_login(sasldir, "admin", PASSWORD)
    assert "Negotiation complete" in ok, ok
