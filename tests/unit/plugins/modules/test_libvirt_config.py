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
