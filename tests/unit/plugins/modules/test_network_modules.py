"""vlan_bridge_config and libvirt_network modules: options, check mode, diff, failures."""
import importlib.util
import json
import os
import types

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.modules import libvirt_network, vlan_bridge_config

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name):
    path = os.path.join(HERE, '..', 'module_utils', name + '.py')
    spec = importlib.util.spec_from_file_location('secvirt_test_' + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vb_fakes = _load('test_vlan_bridge')
ln_fakes = _load('test_libvirt_network')


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def fake_host(monkeypatch):
    host = vb_fakes.FakeHost()
    monkeypatch.setattr(vlan_bridge_config, 'Host', lambda _run: host)
    return host


NETS = [{'name': 'web', 'vlan_id': 100, 'trunk': 'eth1', 'bridge': 'br-web', 'forward_delay': 2}]


def test_vlan_bridge_config_applies_with_diff_then_is_idempotent(fake_host, capsys):
    args = {'backend': 'ifupdown', 'management_interface': 'eth0', 'networks': NETS, '_ansible_diff': True}
    res = run(vlan_bridge_config, args, capsys)
    assert res['changed'] and res['networks'][0]['action'] == 'create'
    assert res['networks'][0]['port'] == 'eth1.100'
    assert any('bridge_ports eth1.100' in d['after'] for d in res['diff'])
    assert fake_host.links['br-web']['stp'] == 1  # stp defaults to true
    again = run(vlan_bridge_config, args, capsys)
    assert not again['changed'] and again['diff'] == []


def test_vlan_bridge_config_check_mode_touches_nothing(fake_host, capsys):
    res = run(vlan_bridge_config, {'backend': 'ifupdown', 'management_interface': 'eth0', 'networks': NETS,
                                   '_ansible_check_mode': True}, capsys)
    assert res['changed'] and 'br-web' not in fake_host.links
    assert 'diff' not in res


def test_vlan_bridge_config_refuses_bad_input(fake_host, capsys):
    res = run(vlan_bridge_config, {'backend': 'ifupdown', 'management_interface': 'eth0',
                                   'networks': [dict(NETS[0], vlan_id=4095, trunk='eth0')]}, capsys)
    assert res['failed']
    assert 'vlan_id 4095' in res['msg'] and 'trunk eth0 is the management interface' in res['msg']
    assert len(res['errors']) == 2
    res = run(vlan_bridge_config, {'backend': 'networkmanager', 'management_interface': 'eth0',
                                   'networks': NETS}, capsys)
    assert res['failed'] and 'value of backend must be one of' in res['msg']


class FakeLibvirt(types.ModuleType):
    def __init__(self, conn):
        super(FakeLibvirt, self).__init__('libvirt')
        self.conn = conn
        self.opened = []
        self.libvirtError = ln_fakes.FakeError

    def registerErrorHandler(self, *_args):
        pass

    def open(self, uri):
        self.opened.append(('rw', uri))
        return self.conn

    def openReadOnly(self, uri):
        self.opened.append(('ro', uri))
        return self.conn


class ClosableConn(ln_fakes.FakeConn):
    def close(self):
        return 0


@pytest.fixture
def fake_libvirt(monkeypatch):
    # libvirt_network opens its connection through libvirt_common
    lib = FakeLibvirt(ClosableConn())
    monkeypatch.setattr(lc, 'libvirt', lib)
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', True)
    return lib


def test_libvirt_network_defines_and_reports(fake_libvirt, capsys):
    res = run(libvirt_network, {'name': 'web', 'bridge': 'br-web', '_ansible_diff': True}, capsys)
    assert res['changed'] and res['actions'] == ['define', 'start', 'autostart']
    assert "mode=\"bridge\"" in res['xml'] and res['diff']['before'] == ''
    assert fake_libvirt.opened == [('rw', 'qemu:///system')]
    again = run(libvirt_network, {'name': 'web', 'bridge': 'br-web'}, capsys)
    assert not again['changed'] and 'diff' not in again


def test_libvirt_network_check_mode_uses_a_read_only_connection(fake_libvirt, capsys):
    res = run(libvirt_network, {'name': 'web', 'bridge': 'br-web', '_ansible_check_mode': True}, capsys)
    assert res['changed'] and fake_libvirt.opened == [('ro', 'qemu:///system')]
    assert fake_libvirt.conn.networks == {}


def test_libvirt_network_needs_a_bridge_and_reports_refusals(fake_libvirt, capsys):
    res = run(libvirt_network, {'name': 'web'}, capsys)
    assert res['failed'] and 'bridge' in res['msg']
    conn = fake_libvirt.conn
    conn.networks['default'] = ln_fakes.FakeNetwork(conn, ln_fakes.DEFAULT_NAT)
    conn.networks['default'].create()
    conn.networks['default'].ports = ['p1']
    res = run(libvirt_network, {'name': 'default', 'state': 'absent'}, capsys)
    assert res['failed'] and res['ports'] == ['p1']


def test_libvirt_network_without_the_binding(monkeypatch, capsys):
    monkeypatch.setattr(lc, 'libvirt', None)
    monkeypatch.setattr(lc, 'HAS_LIBVIRT', False)
    res = run(libvirt_network, {'name': 'web', 'bridge': 'br-web'}, capsys)
    assert res['failed'] and 'libvirt-python' in res['msg']
