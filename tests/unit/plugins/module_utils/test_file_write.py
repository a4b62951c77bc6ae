"""module_utils/file_write: the one file-replacing path of the modules.

Real files in tmp_path. The module object is a stand-in for the two
AnsibleModule methods replace_file calls (a rename and a copy), so that a
failing atomic_move can be produced; the modules' own tests (audit_rules,
libvirt_config) run it with a real AnsibleModule.
"""
import os

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils.file_write import enforce_attributes, replace_file


class Module(object):
    """Stand-in for AnsibleModule.backup_local and atomic_move."""

    def __init__(self, fail_move=False):
        self.fail_move = fail_move

    def backup_local(self, path):
        backup = path + '.bak'
        with open(path, 'rb') as src, open(backup, 'wb') as dst:
            dst.write(src.read())
        return backup

    def atomic_move(self, src, dest):
        if self.fail_move:
            raise OSError('disk full')
        os.rename(src, dest)


def test_replace_file_writes_keeps_a_backup_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / 'libvirtd.conf'
    path.write_text('old\n')
    backup = replace_file(Module(), str(path), u'new \u00e9\n', backup=True)
    assert path.read_text(encoding='utf-8') == u'new \u00e9\n'
    assert open(backup).read() == 'old\n'
    assert sorted(os.listdir(str(tmp_path))) == ['libvirtd.conf', 'libvirtd.conf.bak']


def test_replace_file_without_a_previous_file_makes_no_backup(tmp_path):
    path = tmp_path / 'new.conf'
    assert replace_file(Module(), str(path), b'x = 1\n', backup=True) is None
    assert path.read_bytes() == b'x = 1\n'


def test_a_failed_move_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / 'qemu.conf'
    path.write_text('old\n')
    with pytest.raises(OSError, match='disk full'):
        replace_file(Module(fail_move=True), str(path), 'new\n')
    assert path.read_text() == 'old\n'
    assert os.listdir(str(tmp_path)) == ['qemu.conf']


def test_enforce_attributes_passes_the_asked_mode_to_ansible(tmp_path):
    seen = {}

    class Fake(object):
        def load_file_common_arguments(self, params):
            seen['params'] = params
            return dict(params, file_args=True)

        def set_fs_attributes_if_different(self, file_args, changed):
            seen['file_args'] = file_args
            return True

    assert enforce_attributes(Fake(), '/etc/x', False, mode='0640') is True
    assert seen['params'] == dict(path='/etc/x', mode='0640', owner=None, group=None)
    assert seen['file_args']['file_args'] is True
