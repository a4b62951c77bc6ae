"""libvirt_config module: one call, check mode, diff, backup, refusal of broken files."""
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.modules import libvirt_config


def run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            libvirt_config.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "libvirtd.conf"
    path.write_text('#listen_tls = 0\nunix_sock_group = "libvirt"\n')
    os.chmod(path, 0o640)
    return path


def test_sets_keys_with_backup_and_keeps_mode(conf, capsys):
    res = run({"path": str(conf), "settings": {"listen_tls": 1, "tls_allowed_dn_list": ["CN=a"]},
               "key_types": "daemon", "_ansible_diff": True}, capsys)
    assert res["changed"] and sorted(res["changed_keys"]) == ["listen_tls", "tls_allowed_dn_list"]
    assert os.path.exists(res["backup_file"])
    assert "listen_tls = 1" in res["diff"]["after"] and "listen_tls = 1" not in res["diff"]["before"]
    assert conf.read_text().startswith('#listen_tls = 0\nlisten_tls = 1\nunix_sock_group = "libvirt"\n')
    assert os.stat(conf).st_mode & 0o777 == 0o640
    again = run({"path": str(conf), "settings": {"listen_tls": True, "tls_allowed_dn_list": ["CN=a"]}}, capsys)
    assert not again["changed"] and again["changed_keys"] == []


def test_check_mode_writes_nothing(conf, capsys):
    before = conf.read_text()
    res = run({"path": str(conf), "settings": {"listen_tls": 1}, "_ansible_check_mode": True}, capsys)
    assert res["changed"] and conf.read_text() == before
    assert "backup_file" not in res


def test_wrong_type_and_broken_file_are_refused(conf, capsys):
    res = run({"path": str(conf), "settings": {"listen_tls": "1"}, "key_types": "daemon"}, capsys)
    assert res["failed"] and "listen_tls must be of type int" in res["msg"]
    conf.write_text('broken = [\n')
    res = run({"path": str(conf), "settings": {"listen_tls": 1}}, capsys)
    assert res["failed"] and "line" in res["msg"]
    assert conf.read_text() == 'broken = [\n'


def test_missing_file_needs_create(tmp_path, capsys):
    path = tmp_path / "libvirt.conf"
    res = run({"path": str(path), "settings": {"uri_aliases": ["a=qemu:///system"]}}, capsys)
    assert res["failed"]
    res = run({"path": str(path), "settings": {"uri_aliases": ["a=qemu:///system"]}, "create": True}, capsys)
    assert res["changed"] and 'uri_aliases = ["a=qemu:///system"]' in path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_secret_values_masked_in_diff_and_return(tmp_path, capsys):
    path = tmp_path / "qemu.conf"
    path.write_text('#vnc_password = "XYZ12345"\nvnc_listen = "127.0.0.1"\n')
    args = {"path": str(path), "settings": {"vnc_password": "hunter2xyz", "vnc_tls": 1}, "_ansible_diff": True}
    res = run(args, capsys)
    assert res["changed"] and sorted(res["changed_keys"]) == ["vnc_password", "vnc_tls"]
    assert 'vnc_password = "hunter2xyz"' in path.read_text()  # the file gets the real value
    assert "hunter2xyz" not in json.dumps(res)
    assert res["values"]["vnc_password"] == "********"
    assert 'vnc_password = "********"' in res["diff"]["after"]
    # positive control: a key that holds no secret is shown as it is
    assert res["values"]["vnc_tls"] == 1 and "vnc_tls = 1" in res["diff"]["after"]
    assert 'vnc_listen = "127.0.0.1"' in res["diff"]["before"]
    # change detection still compares the real values
    again = run(args, capsys)
    assert not again["changed"] and again["changed_keys"] == []
    other = run(dict(args, settings={"vnc_password": "other-pw-42", "SPICE_PASSWORD": "sp1ce",
                                     "tls_secret": "s3cr3t", "my_passwd_file": "/etc/pw"}), capsys)
    assert other["changed"] and "vnc_password" in other["changed_keys"]
    text = json.dumps(other)
    for secret in ("hunter2xyz", "other-pw-42", "sp1ce", "s3cr3t", "/etc/pw"):
        assert secret not in text, secret
    # the masked diff still shows that the secret changed, without showing it
    assert 'vnc_password = "********"' in other["diff"]["before"]
    assert 'vnc_password = "******** (changed)"' in other["diff"]["after"]
    removed = run({"path": str(path), "unset": ["vnc_password"], "_ansible_diff": True}, capsys)
    assert removed["changed"] and removed["changed_keys"] == ["vnc_password"]
    assert "other-pw-42" not in json.dumps(removed) and "vnc_password" not in path.read_text().split("\n", 1)[1]
