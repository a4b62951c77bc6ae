"""nwfilter and nwfilter_binding modules: the bridge_netfilter option, the
warning an operator sees and the facts returned (fake libvirt, fake /proc)."""
import importlib.util
import json
import os

import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.secvirt.kvm.plugins.module_utils import bridge_netfilter as bn
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.modules import libvirt_nwfilter as nwfilter, libvirt_nwfilter_binding as nwfilter_binding

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name):
    path = os.path.join(HERE, '..', 'module_utils', name + '.py')
    spec = importlib.util.spec_from_file_location('secvirt_test_' + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fakes = _load('libvirt_fakes')

MYSEC = "<filter name='mysecfilter' chain='root'><rule action='drop' direction='out' priority='500'>" \
        "<tcp dstportstart='25' dstportend='25'/></rule><filterref filter='no-mac-spoofing'/></filter>"
NOMAC = "<filter name='no-mac-spoofing' chain='mac'><rule action='drop' direction='out'><mac srcmacaddr='$MAC' " \
        "match='no'/></rule></filter>"
GUEST = "<domain type='qemu'><name>guest1</name><devices><interface type='bridge'>" \
        "<mac address='52:54:00:aa:bb:01'/><source bridge='br-secvirt'/></interface></devices></domain>"
LIVE = "<domain type='qemu' id='1'><name>guest1</name><devices><interface type='bridge'>" \
       "<mac address='52:54:00:aa:bb:01'/><source bridge='br-secvirt'/><target dev='vnet0'/></interface>" \
       "</devices></domain>"
BIND = {'domain': 'guest1', 'mac': '52:54:00:aa:bb:01', 'filter': 'mysecfilter'}


def warnings(res):
    """The texts of a result's warnings (ansible-core 2.19 wraps each in a summary object)."""
    return [w['event']['msg'] if isinstance(w, dict) else w for w in res.get('warnings', [])]


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    # AnsibleModule collects warnings in a process-wide dict: start each run
    # empty; and once a test has imported controller code (Templar), warnings
    # go to the controller's display instead of the result: run as a module
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    monkeypatch.setattr(ansible_internal, 'is_controller', False)


@pytest.fixture
def conn(monkeypatch):
    conn = fakes.FakeConn()
    conn.add_filter(NOMAC)
    conn.add_filter(MYSEC)
    conn.add_domain('guest1', GUEST, active=True, live_xml=LIVE)
    monkeypatch.setattr(lc, 'libvirt', fakes.FakeLibvirtModule(conn=conn))
    return conn


def fake_host(tmp_path, monkeypatch, v4=None):
    root = tmp_path / str(v4)
    root.mkdir()
    if v4 is not None:
        (root / 'proc/sys/net/bridge').mkdir(parents=True)
        (root / 'proc/sys/net/bridge/bridge-nf-call-iptables').write_text('%s\n' % v4)
        (root / 'proc/sys/net/bridge/bridge-nf-call-ip6tables').write_text('%s\n' % v4)
    monkeypatch.setattr(bn, 'PROC_ROOT', str(root))


def test_binding_warns_operator_and_returns_facts(conn, tmp_path, monkeypatch, capsys):
    fake_host(tmp_path, monkeypatch, v4=0)
    res = run(nwfilter_binding, dict(BIND), capsys)
    assert not res.get('failed'), res
    assert res['changed'] and res['layer3_rules_enforced'] is False and res['layer3_protocols'] == ['tcp']
    assert res['bridge_nf_call'] == {'br_netfilter': True, 'iptables': 0, 'ip6tables': 0, 'bridge': 'br-secvirt',
                                     'bridge_iptables': None, 'bridge_ip6tables': None}
    assert len(warnings(res)) == 1
    assert 'mysecfilter' in warnings(res)[0] and 'tcp' in warnings(res)[0]
    assert 'net.bridge.bridge-nf-call-iptables is 0' in warnings(res)[0]
    # the positive control: the same call with the sysctl at 1
    fake_host(tmp_path, monkeypatch, v4=1)
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    res = run(nwfilter_binding, dict(BIND), capsys)
    assert not res['changed'] and res['layer3_rules_enforced'] is True and 'warnings' not in res


def test_binding_fail_mode_changes_nothing(conn, tmp_path, monkeypatch, capsys):
    fake_host(tmp_path, monkeypatch)
    res = run(nwfilter_binding, dict(BIND, bridge_netfilter='fail'), capsys)
    assert res['failed'] and 'br_netfilter is not loaded' in res['msg'] and 'mysecfilter' in res['msg']
    assert res['layer3_protocols'] == ['tcp'] and res['layer3_rules_enforced'] is False
    assert conn.domains['guest1'].updates == []
    res = run(nwfilter_binding, dict(BIND, bridge_netfilter='sometimes'), capsys)
    assert res['failed'] and 'bridge_netfilter must be one of' in res['msg']


def test_nwfilter_module_reports_layer3_rules(conn, tmp_path, monkeypatch, capsys):
    fake_host(tmp_path, monkeypatch, v4=0)
    args = {'name': 'smtp-out', 'rules': [{'action': 'drop', 'direction': 'out', 'protocol': 'udp',
                                           'match': {'dstportstart': 53}}]}
    res = run(nwfilter, dict(args, bridge_netfilter='fail'), capsys)
    assert res['failed'] and 'udp' in res['msg'] and 'smtp-out' not in conn.filters
    res = run(nwfilter, dict(args), capsys)
    assert res['changed'] and res['layer3_protocols'] == ['udp'] and res['layer3_rules_enforced'] is False
    assert any('net.bridge.bridge-nf-call-iptables' in w for w in warnings(res))
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    res = run(nwfilter, dict(args, bridge_netfilter='ignore'), capsys)
    assert not res['changed'] and 'warnings' not in res and res['layer3_rules_enforced'] is False


def test_module_docs_list_the_option():
    for mod in (nwfilter, nwfilter_binding):
        assert 'bridge_netfilter:' in mod.DOCUMENTATION
        assert 'choices: [warn, fail, ignore]' in mod.DOCUMENTATION
        assert 'layer3_rules_enforced:' in mod.RETURN and 'layer3_protocols:' in mod.RETURN
