"""sasl_user module against stand-in saslpasswd2/sasldblistusers2 scripts.

The stand-ins record their argv and stdin so the test can prove the password
only ever travels on stdin and that -n (no cleartext userPassword) is used.
"""
import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.modules import sasl_user

FAKE_PASSWD = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
db = args[args.index("-f") + 1]
log = os.environ["FAKE_SASL_LOG"]
users = json.load(open(db)) if os.path.exists(db) else {}
stdin = "" if "-d" in args else sys.stdin.read()
with open(log, "a") as fh:
    fh.write(json.dumps({"argv": args, "stdin": stdin}) + "\n")
name = args[-1]
realm = args[args.index("-u") + 1] if "-u" in args else "host.test"
key = name + "@" + realm
if "-d" in args:
    users.pop(key, None)
else:
    users[key] = ["authPassword"] + ([] if "-n" in args else ["userPassword"])
json.dump(users, open(db, "w"))
'''
FAKE_LIST = r'''#!/usr/bin/env python3
import json, os, sys
db = sys.argv[sys.argv.index("-f") + 1]
for key, props in sorted((json.load(open(db)) if os.path.exists(db) else {}).items()):
    for prop in props:
        print("%s: %s" % (key, prop))
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in (("saslpasswd2", FAKE_PASSWD), ("sasldblistusers2", FAKE_LIST)):
        path = bindir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FAKE_SASL_LOG", str(tmp_path / "log"))
    # the realm libvirtd would use on this "host"
    monkeypatch.setattr(sasl_user.sasl, "server_realm", lambda: "host.test")
    db = tmp_path / "passwd.db"
    db.write_text(json.dumps({"stale@host.test": ["userPassword", "authPassword"]}))
    return tmp_path


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            sasl_user.main()
    return json.loads(capsys.readouterr().out)


def calls(tmp):
    path = tmp / "log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_create_exclusive_idempotent_and_secret_on_stdin(fake, capsys):
    args = {"path": str(fake / "passwd.db"), "exclusive": True,
            "users": [{"name": "admin", "password": "TopSecret-1"}]}
    res = run(args, capsys)
    assert res["changed"] and res["users"] == ["admin@host.test"]
    assert res["actions"] == ["create admin@host.test", "delete stale@host.test"]
    log = calls(fake)
    create = [c for c in log if "-c" in c["argv"]][0]
    assert create["stdin"] == "TopSecret-1"
    assert "-p" in create["argv"] and "-n" in create["argv"]
    assert all("TopSecret-1" not in " ".join(c["argv"]) for c in log)
    assert "TopSecret-1" not in json.dumps(res)
    assert stat.S_IMODE(os.stat(fake / "passwd.db").st_mode) == 0o600
    assert not run(args, capsys)["changed"]


def test_check_mode_and_always(fake, capsys):
    db = fake / "passwd.db"
    before = db.read_text()
    res = run({"path": str(db), "users": [{"name": "admin", "password": "x"}], "_ansible_check_mode": True,
               "_ansible_diff": True}, capsys)
    assert res["changed"] and db.read_text() == before and calls(fake) == []
    assert "admin" in res["diff"]["after"]
    run({"path": str(db), "users": [{"name": "admin", "password": "x"}]}, capsys)
    res = run({"path": str(db), "users": [{"name": "admin", "password": "y"}], "update_password": "always"}, capsys)
    assert res["changed"] and res["actions"] == ["update admin@host.test"]


def test_cleartext_property_is_scrubbed(fake, capsys):
    res = run({"path": str(fake / "passwd.db"), "users": [{"name": "stale", "password": "new"}]}, capsys)
    assert res["actions"] == ["scrub stale@host.test"]
    assert "userPassword" not in (fake / "passwd.db").read_text()


def test_password_that_cannot_be_checked_is_left_alone_with_a_warning(fake, capsys, monkeypatch):
    # the stand-in database is JSON, not Berkeley DB: the stored verifier
    # cannot be read, so on_mismatch (the default) must neither guess "changed"
    # every run nor stay silent
    warned = []
    monkeypatch.setattr(sasl_user.AnsibleModule, 'warn', lambda self, msg: warned.append(msg))
    args = {"path": str(fake / "passwd.db"), "users": [{"name": "admin", "password": "pw-1"}]}
    run(args, capsys)
    res = run(dict(args, users=[{"name": "admin", "password": "pw-2"}]), capsys)
    assert not res["changed"] and res["unverified"] == ["admin@host.test"]
    assert "update_password=always" in " ".join(warned) and "pw-2" not in " ".join(warned)
    assert "pw-2" not in json.dumps(res)


def test_unusable_password_is_refused_without_echoing_it(fake, capsys):
    res = run({"path": str(fake / "passwd.db"), "users": [{"name": "admin", "password": "a\0b-Secret"}]}, capsys)
    assert res.get("failed") and "b-Secret" not in json.dumps(res)
    assert calls(fake) == []
