"""Unit tests for plugins/module_utils/libvirt_nwfilter.py against fake libvirt objects."""
import os
import pathlib
import tempfile

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import bridge_netfilter as bn
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_nwfilter as nf
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx

from libvirt_fakes import FakeConn, FakeError

CLEAN = "<filter name='clean-traffic' chain='root'><filterref filter='no-mac-spoofing'/></filter>"
NOMAC = "<filter name='no-mac-spoofing' chain='mac'><rule action='drop' direction='out'><mac srcmacaddr='$MAC' " \
        "match='no'/></rule></filter>"
SEED_RULES = [
    {'action': 'drop', 'direction': 'out', 'priority': 500, 'protocol': 'tcp',
     'match': {'dstportstart': 25, 'dstportend': 25}},
    {'action': 'drop', 'direction': 'in', 'priority': 500, 'protocol': 'tcp',
     'match': {'dstportstart': 23, 'dstportend': 23}},
]
GUEST = """<domain type='qemu'><name>guest1</name><devices>
  <interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='default'/>%s</interface>
  <interface type='network'><mac address='52:54:00:aa:bb:02'/><source network='default'/></interface>
</devices></domain>"""
LIVE = """<domain type='qemu' id='1'><name>guest1</name><devices>
  <interface type='network'><mac address='52:54:00:aa:bb:01'/><source network='default' bridge='virbr0'/>
    <target dev='vnet0'/>%s<alias name='net0'/></interface>
  <interface type='network'><mac address='52:54:00:aa:bb:02'/><source network='default'/><target dev='vnet1'/>
  </interface>
</devices></domain>"""


def seed_params(**kwargs):
    params = {'name': 'mysecfilter', 'state': 'present', 'xml': None, 'chain': 'root', 'priority': None,
              'rules': SEED_RULES, 'filterrefs': [{'filter': 'clean-traffic', 'parameters': None}], 'force': False}
    params.update(kwargs)
    return params


@pytest.fixture(autouse=True)
def host_passes_bridged_traffic_to_iptables(tmp_path_factory, monkeypatch):
    """The modules read the host's /proc/sys/net/bridge: point them at a fake
    host where br_netfilter is loaded and both bridge-nf-call sysctls are 1."""
    root = tmp_path_factory.mktemp('default-host')
    (root / 'proc/sys/net/bridge').mkdir(parents=True)
    (root / 'proc/sys/net/bridge/bridge-nf-call-iptables').write_text('1\n')
    (root / 'proc/sys/net/bridge/bridge-nf-call-ip6tables').write_text('1\n')
    monkeypatch.setattr(bn, 'PROC_ROOT', str(root))


@pytest.fixture
def conn():
    conn = FakeConn()
    conn.add_filter(CLEAN)
    conn.add_filter(NOMAC)
    return conn


def test_define_then_idempotent(conn):
    result = nf.run_nwfilter(conn, seed_params())
    assert result['changed'] is True
    assert result['warnings'] == []
    assert 'mysecfilter' in conn.filters
    assert '<tcp dstportstart="25" dstportend="25"' in conn.defined[-1]
    uuid = conn.filters['mysecfilter'].UUIDString()
    again = nf.run_nwfilter(conn, seed_params())
    assert again['changed'] is False
    assert len(conn.defined) == 1
    assert again['diff']['before'] == again['diff']['after']
    # the same filter given as XML is the same filter
    xml = "<filter name='mysecfilter'><rule action='drop' direction='out'><tcp dstportend='25' " \
          "dstportstart='25'/></rule><rule action='drop' direction='in' priority='500'><tcp dstportstart='23' " \
          "dstportend='23'/></rule><filterref filter='clean-traffic'/></filter>"
    assert nf.run_nwfilter(conn, seed_params(xml=xml, rules=None, filterrefs=None, chain=None))['changed'] is False
    assert conn.filters['mysecfilter'].UUIDString() == uuid


def test_update_keeps_uuid_and_shows_diff(conn):
    nf.run_nwfilter(conn, seed_params())
    uuid = conn.filters['mysecfilter'].UUIDString()
    rules = [dict(SEED_RULES[0], match={'dstportstart': 587, 'dstportend': 587})] + SEED_RULES[1:]
    result = nf.run_nwfilter(conn, seed_params(rules=rules))
    assert result['changed'] is True
    assert conn.filters['mysecfilter'].UUIDString() == uuid
    assert uuid in conn.defined[-1]
    assert 'dstportstart="25"' in result['diff']['before'] and 'dstportstart="587"' in result['diff']['after']


def test_diff_shows_the_change_not_the_defaults_libvirt_added(conn):
    # as libvirt stores a filter defined without priorities: chain and rule
    # priorities filled in, a uuid added
    conn.nwfilterDefineXML("<filter name='lc' chain='ipv4' priority='-700'><uuid>0b7c3a52-54d5-4c43-a4c5-"
                           "4f1a2d6e9b10</uuid><rule action='drop' direction='out' priority='500'>"
                           "<udp dstportstart='53'/></rule></filter>")
    rule = {'action': 'drop', 'direction': 'out', 'protocol': 'udp', 'match': {'dstportstart': 5353}}
    result = nf.run_nwfilter(conn, seed_params(name='lc', chain='ipv4', rules=[rule], filterrefs=None),
                             check_mode=True)
    assert result['changed'] is True
    changed = lx.unified_diff(result['diff']['before'], result['diff']['after']).splitlines()[2:]
    removed = [line for line in changed if line.startswith('-')]
    added = [line for line in changed if line.startswith('+')]
    assert removed == ['-    <udp dstportstart="53" />'], changed
    assert added == ['+    <udp dstportstart="5353" />'], changed


def test_check_mode_changes_nothing(conn):
    result = nf.run_nwfilter(conn, seed_params(), check_mode=True)
    assert result['changed'] is True
    assert 'mysecfilter' not in conn.filters
    assert result['diff']['before'] == '' and 'name="mysecfilter"' in result['diff']['after']


def test_xml_name_handling(conn):
    xml = "<filter><rule action='accept' direction='inout'/></filter>"
    assert nf.run_nwfilter(conn, seed_params(name='x1', xml=xml, rules=None, filterrefs=None))['changed']
    assert 'x1' in conn.filters
    named = "<filter name='x2'/>"
    result = nf.run_nwfilter(conn, {'name': None, 'xml': named, 'state': 'present'})
    assert result['name'] == 'x2' and 'x2' in conn.filters
    with pytest.raises(lc.LibvirtModuleError, match='does not match'):
        nf.run_nwfilter(conn, {'name': 'x3', 'xml': named, 'state': 'present'})
    with pytest.raises(lc.LibvirtModuleError, match='name .* is required'):
        nf.run_nwfilter(conn, {'name': None, 'xml': None, 'state': 'present'})
    with pytest.raises(lx.XMLValidationError, match='not valid'):
        nf.run_nwfilter(conn, {'name': 'bad name', 'state': 'present'})


def test_missing_and_self_references(conn):
    result = nf.run_nwfilter(conn, seed_params(filterrefs=[{'filter': 'nonexistent', 'parameters': None}]))
    assert 'undefined filter(s) nonexistent' in result['warnings'][0]
    with pytest.raises(lc.LibvirtModuleError, match='must not reference itself'):
        nf.run_nwfilter(conn, seed_params(filterrefs=[{'filter': 'mysecfilter', 'parameters': None}]))


def test_libvirt_refusal_and_normalisation_warning(conn):
    conn.define_error = FakeError('XML error: bad', 27)
    with pytest.raises(lc.LibvirtModuleError, match='refused network filter mysecfilter: XML error'):
        nf.run_nwfilter(conn, seed_params())
    conn.define_error = None
    original = conn.nwfilterDefineXML

    def mangling_define(xml):
        return original(xml.replace('dstportstart="25"', 'dstportstart="26"'))
    conn.nwfilterDefineXML = mangling_define
    result = nf.run_nwfilter(conn, seed_params())
    assert 'stored filter mysecfilter differently' in result['warnings'][0]


def test_absent_refuses_referenced_filter(conn):
    with pytest.raises(lc.LibvirtModuleError, match=r'referenced by filter\(s\) \[clean-traffic\]') as err:
        nf.run_nwfilter(conn, {'name': 'no-mac-spoofing', 'state': 'absent'})
    assert err.value.details['referenced_by'] == {'filters': ['clean-traffic'], 'guests': []}
    assert 'no-mac-spoofing' in conn.filters
    # a guest referencing it only in its running definition counts too
    conn.add_domain('guest1', GUEST % '', active=True,
                    live_xml=LIVE % "<filterref filter='clean-traffic'/>")
    with pytest.raises(lc.LibvirtModuleError, match=r'guest\(s\) \[guest1\]'):
        nf.run_nwfilter(conn, {'name': 'clean-traffic', 'state': 'absent'})
    result = nf.run_nwfilter(conn, {'name': 'clean-traffic', 'state': 'absent', 'force': True}, check_mode=True)
    assert result['changed'] and 'clean-traffic' in conn.filters
    conn.refuse_undefine = True
    with pytest.raises(lc.LibvirtModuleError, match='refused to undefine network filter clean-traffic: nwfilter is'):
        nf.run_nwfilter(conn, {'name': 'clean-traffic', 'state': 'absent', 'force': True})
    conn.refuse_undefine = False
    result = nf.run_nwfilter(conn, {'name': 'clean-traffic', 'state': 'absent', 'force': True})
    assert result['changed'] and 'clean-traffic' not in conn.filters
    assert result['diff']['after'] == '' and 'clean-traffic' in result['diff']['before']


def test_absent_unreferenced_and_missing(conn):
    conn.add_domain('guest1', GUEST % "<filterref filter='other'/>")
    nf.run_nwfilter(conn, seed_params())
    result = nf.run_nwfilter(conn, {'name': 'mysecfilter', 'state': 'absent'})
    assert result['changed'] and result['referenced_by'] == {'filters': [], 'guests': []}
    assert nf.run_nwfilter(conn, {'name': 'mysecfilter', 'state': 'absent'})['changed'] is False


def test_list(conn):
    conn.bindings = [('vnet0', 'clean-traffic')]
    conn.add_domain('guest1', GUEST % "<filterref filter='clean-traffic'/>", active=True,
                    live_xml=LIVE % "<filterref filter='clean-traffic'/>")
    result = nf.list_nwfilters(conn)
    assert [f['name'] for f in result['filters']] == ['clean-traffic', 'no-mac-spoofing']
    assert result['filters'][1]['priority'] == -800
    assert result['filters'][0]['referenced_by'] == {'filters': [], 'guests': ['guest1']}
    assert result['filters'][1]['referenced_by'] == {'filters': ['clean-traffic'], 'guests': []}
    assert "<filter name='no-mac-spoofing'" in result['filters'][1]['xml'] or \
        '<filter name="no-mac-spoofing"' in result['filters'][1]['xml']
    assert result['bindings'] == [{'portdev': 'vnet0', 'filter': 'clean-traffic'}]
    assert result['changed'] is False
    one = nf.list_nwfilters(conn, 'no-mac-spoofing')
    assert [f['name'] for f in one['filters']] == ['no-mac-spoofing']
    with pytest.raises(lc.LibvirtModuleError, match='nope is not defined'):
        nf.list_nwfilters(conn, 'nope')


# ---------------------------------------------------------------- bindings

def binding_params(**kwargs):
    params = {'domain': 'guest1', 'mac': '52:54:00:AA:BB:01', 'target_dev': None, 'filter': 'clean-traffic',
              'parameters': {'IP': '192.168.122.50', 'CTRL_IP_LEARNING': 'none'}, 'state': 'present',
              'live': True}
    params.update(kwargs)
    return params


def test_binding_persistent_only_guest(conn):
    dom = conn.add_domain('guest1', GUEST % '')
    result = nf.run_binding(conn, binding_params())
    assert result['changed'] and result['config_changed'] and not result['live_changed']
    assert result['restart_required'] is False
    assert [flags for _xml, flags in dom.updates] == [lc.AFFECT_CONFIG]
    iface = lx.find_interface(lx.parse_xml(dom.inactive), mac='52:54:00:aa:bb:01')
    wanted = {'CTRL_IP_LEARNING': ['none'], 'IP': ['192.168.122.50']}
    assert nfx.filterref_parameters(iface.find('filterref')) == wanted
    again = nf.run_binding(conn, binding_params())
    assert again['changed'] is False and len(dom.updates) == 1
    assert 'bindings' not in again


def test_binding_running_guest_live_and_config(conn):
    conn.bindings = [('vnet0', 'clean-traffic'), ('vnet1', 'other')]
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(conn, binding_params(mac=None, target_dev='vnet0'))
    assert result['mac'] == '52:54:00:aa:bb:01' and result['target_dev'] == 'vnet0'
    assert result['config_changed'] and result['live_changed'] and not result['restart_required']
    assert [flags for _xml, flags in dom.updates] == [lc.AFFECT_CONFIG, lc.AFFECT_LIVE]
    assert '<alias name="net0"' in dom.updates[1][0]  # the live device is passed back whole
    assert result['bindings'] == [{'portdev': 'vnet0', 'filter': 'clean-traffic'}]
    assert '<!-- live -->' in result['diff']['after']
    assert nf.run_binding(conn, binding_params())['changed'] is False


def test_binding_check_mode(conn):
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(conn, binding_params(), check_mode=True)
    assert result['changed'] and result['config_changed'] and result['live_changed']
    assert dom.updates == [] and 'bindings' not in result


def test_binding_live_unsupported_reports_restart(conn):
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    dom.update_error = FakeError('Operation not supported: cannot modify network device filter',
                                 lc.ERR_OPERATION_UNSUPPORTED)
    result = nf.run_binding(conn, binding_params())
    assert result['config_changed'] and not result['live_changed'] and result['restart_required']
    assert 'restart the guest' in result['warnings'][0]
    dom.update_error = FakeError('internal error: boom', 1)
    with pytest.raises(lc.LibvirtModuleError, match='refused to change the filter of the running guest'):
        nf.run_binding(conn, binding_params(filter='no-mac-spoofing'))


def test_binding_live_false_on_running_guest(conn):
    dom = conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(conn, binding_params(live=False))
    assert result['config_changed'] and result['restart_required'] and not result['live_changed']
    assert [flags for _xml, flags in dom.updates] == [lc.AFFECT_CONFIG]


def test_binding_absent(conn):
    ref = "<filterref filter='clean-traffic'><parameter name='IP' value='10.0.0.1'/></filterref>"
    dom = conn.add_domain('guest1', GUEST % ref, active=True, live_xml=LIVE % ref)
    result = nf.run_binding(conn, binding_params(state='absent', filter=None))
    assert result['config_changed'] and result['live_changed'] and result['filterref'] == ''
    assert 'filterref' not in dom.inactive and 'filterref' not in dom.live
    assert nf.run_binding(conn, binding_params(state='absent', filter=None))['changed'] is False


def test_binding_errors(conn):
    conn.add_domain('guest1', GUEST % '')
    with pytest.raises(lc.LibvirtModuleError, match='one of mac or target_dev'):
        nf.run_binding(conn, binding_params(mac=None))
    with pytest.raises(lc.LibvirtModuleError, match='not defined; define it first'):
        nf.run_binding(conn, binding_params(filter='nope'))
    with pytest.raises(lc.LibvirtModuleError, match='filter is required'):
        nf.run_binding(conn, binding_params(filter=None))
    with pytest.raises(lc.LibvirtModuleError, match='no interface with MAC 52:54:00:00:00:01'):
        nf.run_binding(conn, binding_params(mac='52:54:00:00:00:01'))
    with pytest.raises(lc.LibvirtModuleError, match=r'target device vnet0 \(the guest is not running\)'):
        nf.run_binding(conn, binding_params(mac=None, target_dev='vnet0'))
    with pytest.raises(lc.LibvirtModuleError, match='guest nope is not defined'):
        nf.run_binding(conn, binding_params(domain='nope'))
    conn.domains['guest1'].updateDeviceFlags = _raise(FakeError('XML error', 27))
    with pytest.raises(lc.LibvirtModuleError, match='refused to update interface 52:54:00:aa:bb:01'):
        nf.run_binding(conn, binding_params())


def test_binding_transient_guest_is_live_only(conn):
    dom = conn.add_domain('guest1', None, active=True, persistent=False, live_xml=LIVE % '')
    result = nf.run_binding(conn, binding_params())
    assert not result['config_changed'] and result['live_changed']
    assert [flags for _xml, flags in dom.updates] == [lc.AFFECT_LIVE]


def _raise(exc):
    def fail(*_args, **_kwargs):
        raise exc
    return fail


# ------------------------------------------- layer-3 rules and br_netfilter

MYSEC = "<filter name='mysecfilter' chain='root'><rule action='drop' direction='out' priority='500'>" \
        "<tcp dstportstart='25' dstportend='25'/></rule><filterref filter='clean-traffic'/></filter>"


def host_root(tmp_path, v4=None, v6=None, bridge=None, bridge_v4=None):
    """A fake / whose /proc/sys/net/bridge holds the given values (None: br_netfilter not loaded)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(dir=str(tmp_path)))
    if v4 is not None:
        (root / 'proc/sys/net/bridge').mkdir(parents=True)
        (root / 'proc/sys/net/bridge/bridge-nf-call-iptables').write_text('%s\n' % v4)
        (root / 'proc/sys/net/bridge/bridge-nf-call-ip6tables').write_text('%s\n' % v6)
    if bridge:
        (root / 'sys/class/net' / bridge / 'bridge').mkdir(parents=True)
        (root / 'sys/class/net' / bridge / 'bridge/nf_call_iptables').write_text('%s\n' % bridge_v4)
    return str(root)


@pytest.fixture
def mysec(conn):
    conn.add_filter(MYSEC)
    return conn


def test_binding_warns_that_layer3_rules_are_bypassed(mysec, tmp_path):
    dom = mysec.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    for root, why in ((host_root(tmp_path), 'br_netfilter is not loaded'),
                      (host_root(tmp_path, 0, 0), 'net.bridge.bridge-nf-call-iptables is 0')):
        result = nf.run_binding(mysec, binding_params(filter='mysecfilter'), proc_root=root)
        assert result['layer3_rules_enforced'] is False and result['layer3_protocols'] == ['tcp']
        warning = [w for w in result['warnings'] if 'mysecfilter' in w]
        assert len(warning) == 1, result['warnings']
        assert 'tcp' in warning[0] and 'net.bridge.bridge-nf-call-iptables' in warning[0] and why in warning[0]
    # a warning, not a refusal: the filter is attached
    assert 'mysecfilter' in dom.live and 'mysecfilter' in dom.inactive


def test_binding_fail_refuses_before_any_change(mysec, tmp_path):
    dom = mysec.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    for check_mode in (True, False):
        with pytest.raises(lc.LibvirtModuleError, match='mysecfilter.*tcp.*net.bridge.bridge-nf-call-iptables') as err:
            nf.run_binding(mysec, binding_params(filter='mysecfilter', bridge_netfilter='fail'),
                           check_mode=check_mode, proc_root=host_root(tmp_path, 0, 0))
        assert err.value.details['layer3_protocols'] == ['tcp']
        assert err.value.details['layer3_rules_enforced'] is False
    assert dom.updates == [] and 'filterref' not in dom.live and 'filterref' not in dom.inactive


def test_binding_layer3_rules_enforced_with_bridge_nf_call_iptables(mysec, tmp_path):
    mysec.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(mysec, binding_params(filter='mysecfilter', bridge_netfilter='fail'),
                            proc_root=host_root(tmp_path, 1, 0))
    assert result['changed'] and result['warnings'] == []
    assert result['layer3_rules_enforced'] is True and result['layer3_protocols'] == ['tcp']
    assert result['bridge_nf_call']['iptables'] == 1 and result['bridge_nf_call']['br_netfilter'] is True


def test_binding_per_bridge_nf_call_iptables_counts(mysec, tmp_path):
    # the live interface names its bridge (virbr0): its own nf_call_iptables applies
    mysec.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(mysec, binding_params(filter='mysecfilter'),
                            proc_root=host_root(tmp_path, 0, 0, bridge='virbr0', bridge_v4=1))
    assert result['layer3_rules_enforced'] is True and result['warnings'] == []
    assert result['bridge_nf_call']['bridge'] == 'virbr0' and result['bridge_nf_call']['bridge_iptables'] == 1


def test_binding_clean_traffic_needs_no_br_netfilter(conn, tmp_path):
    conn.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    result = nf.run_binding(conn, binding_params(bridge_netfilter='fail'), proc_root=host_root(tmp_path))
    assert result['changed'] and result['warnings'] == []
    assert result['layer3_protocols'] == [] and result['layer3_rules_enforced'] is True


def test_binding_bridge_netfilter_ignore(mysec, tmp_path):
    mysec.add_domain('guest1', GUEST % '')
    result = nf.run_binding(mysec, binding_params(filter='mysecfilter', bridge_netfilter='ignore'),
                            proc_root=host_root(tmp_path))
    assert result['changed'] and result['warnings'] == []
    assert result['layer3_rules_enforced'] is False and result['layer3_protocols'] == ['tcp']


def test_binding_layer3_rules_found_in_a_referenced_filter(conn, tmp_path):
    # the bound filter has mac rules only; the tcp rule is one filterref down
    conn.add_filter("<filter name='web-ports'><rule action='drop' direction='in'><tcp dstportstart='23'/></rule>"
                    "</filter>")
    conn.add_filter("<filter name='guest-policy' chain='mac'><rule action='drop' direction='out'><mac "
                    "srcmacaddr='$MAC' match='no'/></rule><filterref filter='web-ports'/></filter>")
    conn.add_domain('guest1', GUEST % '')
    with pytest.raises(lc.LibvirtModuleError, match=r'guest-policy.*tcp.*web-ports'):
        nf.run_binding(conn, binding_params(filter='guest-policy', bridge_netfilter='fail'),
                       proc_root=host_root(tmp_path, 0, 0))


def test_binding_remote_uri_cannot_check_the_host(mysec, tmp_path):
    mysec.add_domain('guest1', GUEST % '')
    params = binding_params(filter='mysecfilter', uri='qemu+ssh://root@kvm2/system')
    result = nf.run_binding(mysec, params, proc_root=host_root(tmp_path, 1, 1))
    assert result['layer3_rules_enforced'] is None
    assert any('cannot be checked' in w for w in result['warnings'])
    with pytest.raises(lc.LibvirtModuleError, match='cannot be checked'):
        nf.run_binding(mysec, dict(params, bridge_netfilter='fail'), proc_root=host_root(tmp_path, 1, 1))


def test_nwfilter_define_reports_layer3_rules(conn, tmp_path):
    result = nf.run_nwfilter(conn, seed_params(), proc_root=host_root(tmp_path, 0, 0))
    assert result['changed'] and result['layer3_protocols'] == ['tcp']
    assert result['layer3_rules_enforced'] is False
    assert any('mysecfilter' in w and 'net.bridge.bridge-nf-call-iptables' in w for w in result['warnings'])
    again = nf.run_nwfilter(conn, seed_params(), proc_root=host_root(tmp_path / 'on', 1, 1))
    assert not again['changed'] and again['layer3_rules_enforced'] is True and again['warnings'] == []
    # clean-traffic's own tree is ebtables only
    plain = nf.run_nwfilter(conn, seed_params(name='plain', rules=None), proc_root=host_root(tmp_path / 'off'))
    assert plain['layer3_protocols'] == [] and plain['warnings'] == []


def test_nwfilter_define_fail_refuses_before_defining(conn, tmp_path):
    with pytest.raises(lc.LibvirtModuleError, match='mysecfilter.*tcp.*br_netfilter is not loaded'):
        nf.run_nwfilter(conn, seed_params(bridge_netfilter='fail'), proc_root=host_root(tmp_path))
    assert 'mysecfilter' not in conn.filters and conn.defined == []


def test_lookup_errors_are_not_taken_for_no_layer3_rules():
    # libvirt's in-process test driver has no network filter driver: every
    # nwfilter call fails with VIR_ERR_NO_SUPPORT. The resolution must raise
    # that error rather than conclude "no layer-3 rules".
    libvirt = pytest.importorskip('libvirt')
    lc.open_connection('test:///default', lv=libvirt)  # installs the quiet error handler
    real = libvirt.open('test:///default')
    try:
        with pytest.raises(libvirt.libvirtError) as err:
            bn.resolve_layer3('clean-traffic', nf.nwfilter_xml_lookup(real))
        assert err.value.get_error_code() == lc.ERR_NO_SUPPORT
    finally:
        real.close()


def test_nwfilter_xml_lookup_against_libvirt_like_connection(conn):
    lookup = nf.nwfilter_xml_lookup(conn)
    assert lookup('nope') is None
    assert "name='no-mac-spoofing'" in lookup('no-mac-spoofing') or 'name="no-mac-spoofing"' in lookup('no-mac-spoofing')
    assert bn.resolve_layer3('clean-traffic', lookup)['protocols'] == []


def test_binding_reports_the_host_as_it_is_after_the_change(mysec, tmp_path):
    # libvirt's iptables rules match with -m physdev, and the kernel's physdev
    # match loads br_netfilter (defaults: bridge-nf-call-iptables=1): judge
    # the host after the live change, not before it
    root = host_root(tmp_path)
    dom = mysec.add_domain('guest1', GUEST % '', active=True, live_xml=LIVE % '')
    update = dom.updateDeviceFlags

    def update_loading_br_netfilter(xml, flags):
        update(xml, flags)
        if flags & lc.AFFECT_LIVE:
            os.makedirs(os.path.join(root, 'proc/sys/net/bridge'))
            for family in ('iptables', 'ip6tables'):
                with open(os.path.join(root, 'proc/sys/net/bridge/bridge-nf-call-' + family), 'w') as handle:
                    handle.write('1\n')
    dom.updateDeviceFlags = update_loading_br_netfilter
    predicted = nf.run_binding(mysec, binding_params(filter='mysecfilter'), check_mode=True, proc_root=root)
    assert predicted['layer3_rules_enforced'] is False and len(predicted['warnings']) == 1
    # bridge_netfilter=fail cannot count on it: refused while br_netfilter is not loaded
    with pytest.raises(lc.LibvirtModuleError, match='br_netfilter is not loaded'):
        nf.run_binding(mysec, binding_params(filter='mysecfilter', bridge_netfilter='fail'), proc_root=root)
    result = nf.run_binding(mysec, binding_params(filter='mysecfilter'), proc_root=root)
    assert result['live_changed'] and result['layer3_rules_enforced'] is True and result['warnings'] == []
    assert result['bridge_nf_call']['br_netfilter'] is True
