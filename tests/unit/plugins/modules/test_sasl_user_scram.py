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
    # Both sides are relayed by whole lines only: a read may return part of
    # a line, and a message cut in two would be lost.
    client_buf = b""
    server_buf = b""
    end = time.time() + timeout
    try:
        while time.time() < end and server.poll() is None:
            ready = select.select([fd, server.stdout.fileno()], [], [], 0.5)[0]
            if fd in ready:
                try:
                    client_buf += os.read(fd, 4096)
                except OSError:
                    pass
                *lines, client_buf = client_buf.split(b"\n")
                # the password prompt ends without a newline (or with one)
                if b"assword" in client_buf or any(b"assword" in line for line in lines):
                    os.write(fd, password.encode() + b"\n")
                    client_buf = b""
                for line in lines:
                    line = line.rstrip(b"\r")
                    if line.startswith(b"C: "):
                        server.stdin.write(line + b"\n")
                        server.stdin.flush()
            if server.stdout.fileno() in ready:
                data = server.stdout.read() or b""
                transcript += data
                server_buf += data
                *lines, server_buf = server_buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"S: "):
                        os.write(fd, line + b"\n")
                # the server names the user right after "Negotiation complete"
                if re.search(rb"Username: \S+\n", transcript) or b"failure" in transcript:
                    break
    finally:
        server.kill()
        server.wait()
        # What the server printed as it exited is still in the pipe: under
        # load the loop saw the exit before it read the server's verdict
        # ("authentication failure"), seen in CI at cf8139b.
        os.set_blocking(server.stdout.fileno(), True)
        transcript += server.stdout.read() or b""
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


NEW_PASSWORD = "Rotated-pw-5e27"


@pytest.fixture
def commands(monkeypatch):
    """Every command the module runs, as (argv, stdin), through the real run_command."""
    calls = []
    real = sasl_user.AnsibleModule.run_command

    def recording(self, args, *posargs, **kwargs):
        calls.append((list(args), kwargs.get("data")))
        return real(self, args, *posargs, **kwargs)
    monkeypatch.setattr(sasl_user.AnsibleModule, "run_command", recording)
    return calls


def test_rotated_password_is_detected_from_the_scram_verifier_and_updated(sasldir, capsys, commands):
    # the default update_password compares the password with the stored
    # SCRAM-SHA-256 verifier (salt, iterations, StoredKey, ServerKey)
    write_conf(sasldir)
    db = sasldir / "passwd.db"
    base = {"path": str(db), "appname": APP, "realm": "kvm.test"}
    results = [run(dict(base, users=[{"name": "admin", "password": PASSWORD}]), capsys)]

    # positive control: the unchanged password matches, nothing is rewritten
    results.append(run(dict(base, users=[{"name": "admin", "password": PASSWORD}]), capsys))
    assert not results[-1]["changed"] and results[-1]["actions"] == []
    untouched = db.read_bytes()

    # check mode predicts the update and leaves the database alone
    results.append(run(dict(base, users=[{"name": "admin", "password": NEW_PASSWORD}],
                            _ansible_check_mode=True), capsys))
    assert results[-1]["changed"] and results[-1]["actions"] == ["update admin@kvm.test"]
    assert db.read_bytes() == untouched

    results.append(run(dict(base, users=[{"name": "admin", "password": NEW_PASSWORD}]), capsys))
    assert results[-1]["changed"] and results[-1]["actions"] == ["update admin@kvm.test"]
    ok = scram_login(sasldir, "admin@kvm.test", NEW_PASSWORD)
    assert "Negotiation complete" in ok and "Username: admin" in ok, ok
    old = scram_login(sasldir, "admin@kvm.test", PASSWORD)
    assert "authentication failure" in old and "Negotiation complete" not in old, old

    # idempotent again with the new password, also when the mode is named
    results.append(run(dict(base, users=[{"name": "admin", "password": NEW_PASSWORD}]), capsys))
    results.append(run(dict(base, update_password="on_mismatch",
                            users=[{"name": "admin", "password": NEW_PASSWORD}]), capsys))
    assert not results[-2]["changed"] and not results[-1]["changed"]

    # the passwords only ever went to saslpasswd2's stdin: never argv, never a result
    for secret in (PASSWORD, NEW_PASSWORD):
        assert all(secret not in " ".join(argv) for argv, _data in commands), commands
        assert all(secret not in json.dumps(res) for res in results)
        assert secret.encode() not in db.read_bytes()
    assert [data for _argv, data in commands if data] == [PASSWORD, NEW_PASSWORD]


def test_rotation_is_detected_when_the_cleartext_is_stored_too(sasldir, capsys):
    # store_plaintext=true keeps a userPassword property next to the verifier
    write_conf(sasldir)
    db = sasldir / "passwd.db"
    base = {"path": str(db), "appname": APP, "realm": "kvm.test", "store_plaintext": True}
    run(dict(base, users=[{"name": "admin", "password": PASSWORD}]), capsys)
    props = subprocess.run(["sasldblistusers2", "-f", str(db)], check=True,
                           capture_output=True, text=True).stdout.split()
    assert sorted(props) == sorted(["admin@kvm.test:", "authPassword", "admin@kvm.test:", "userPassword"])
    assert not run(dict(base, users=[{"name": "admin", "password": PASSWORD}]), capsys)["changed"]
    rotated = run(dict(base, users=[{"name": "admin", "password": NEW_PASSWORD}]), capsys)
    assert rotated["changed"] and rotated["actions"] == ["update admin@kvm.test"]
    assert "Negotiation complete" in scram_login(sasldir, "admin@kvm.test", NEW_PASSWORD)
    assert PASSWORD.encode() not in db.read_bytes()
    assert not run(dict(base, users=[{"name": "admin", "password": NEW_PASSWORD}]), capsys)["changed"]


def test_non_ascii_and_trailing_newline_passwords_are_compared_as_saslpasswd2_stores_them(sasldir, capsys):
    # saslpasswd2 -p hashes the UTF-8 bytes and drops one trailing newline
    # (a vault value written as a YAML block scalar has one): no endless update
    write_conf(sasldir)
    base = {"path": str(sasldir / "passwd.db"), "appname": APP, "realm": "kvm.test"}
    for password in (u"p\u00e4ss-\u20ac-1", "block-scalar-pw\n"):
        users = [{"name": "admin", "password": password}]
        run(dict(base, users=users, update_password="always"), capsys)
        assert not run(dict(base, users=users), capsys)["changed"], repr(password)
    assert "Negotiation complete" in scram_login(sasldir, "admin@kvm.test", "block-scalar-pw")
