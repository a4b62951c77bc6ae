"""Unit tests for plugins/module_utils/bridge_netfilter.py: which nwfilter
protocols libvirt implements with iptables, their resolution through
<filterref>, and whether bridged traffic passes iptables on the host."""
import glob
import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import bridge_netfilter as bn
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx

HERE = os.path.dirname(os.path.abspath(__file__))
LIBVIRT_FILTERS = os.path.join(HERE, 'fixtures', 'libvirt-9.0-nwfilter')

TCP_OVER_MAC = "<filter name='tcp-over-mac' chain='root'><rule action='drop' direction='out'>" \
               "<tcp dstportstart='25'/></rule><filterref filter='mac-only'/></filter>"
MAC_ONLY = "<filter name='mac-only' chain='mac'><rule action='drop' direction='out'>" \
           "<mac srcmacaddr='$MAC' match='no'/></rule></filter>"


def dict_lookup(filters):
    texts = dict((ET.fromstring(x).get('name'), x) for x in filters)
    asked = []

    def lookup(name):
        asked.append(name)
        return texts.get(name)
    lookup.asked = asked
    return lookup


# ------------------------------------------------------------ protocols

def test_every_libvirt_protocol_is_classified():
    classified = bn.EBTABLES_PROTOCOLS | bn.IPTABLES_PROTOCOLS | bn.IP6TABLES_PROTOCOLS
    assert classified == set(nfx.NWFILTER_PROTOCOLS)
    assert not bn.EBTABLES_PROTOCOLS & bn.IPTABLES_PROTOCOLS
    assert not bn.IPTABLES_PROTOCOLS & bn.IP6TABLES_PROTOCOLS
    assert bn.EBTABLES_PROTOCOLS == {'mac', 'vlan', 'stp', 'arp', 'rarp', 'ip', 'ipv6'}
    assert bn.protocol_family('tcp') == 'iptables'
    assert bn.protocol_family('all') == 'iptables'
    assert bn.protocol_family('icmpv6') == 'ip6tables'
    assert bn.protocol_family('udp-ipv6') == 'ip6tables'
    assert bn.protocol_family('ip') is None  # ebtables, even with protocol='tcp'
    assert bn.protocol_family('mac') is None


def test_own_layer3_protocols_of_one_filter():
    xml = """<filter name='f' chain='root'>
      <rule action='accept' direction='out'><mac protocolid='ipv4'/></rule>
      <rule action='accept' direction='out'><ip protocol='tcp' dstportstart='22'/></rule>
      <rule action='drop' direction='in'><tcp dstportstart='23'/></rule>
      <rule action='drop' direction='in'><icmpv6/></rule>
      <rule action='drop' direction='inout' priority='1000'/>
      <filterref filter='other'/>
    </filter>"""
    assert bn.own_layer3_protocols(xml) == ['icmpv6', 'tcp']
    assert bn.own_layer3_protocols(lx.parse_xml(MAC_ONLY)) == []


# ------------------------------------------------------------ recursion

def test_tcp_rule_found_in_filter_that_references_mac_only_filter():
    lookup = dict_lookup([TCP_OVER_MAC, MAC_ONLY])
    found = bn.resolve_layer3('tcp-over-mac', lookup)
    assert found == {'protocols': ['tcp'], 'where': {'tcp-over-mac': ['tcp']}, 'missing': []}
    assert lookup.asked == ['tcp-over-mac', 'mac-only']
    assert bn.resolve_layer3('mac-only', dict_lookup([MAC_ONLY]))['protocols'] == []


def test_layer3_rules_found_through_nested_references_and_loops():
    top = "<filter name='top'><filterref filter='middle'/><filterref filter='gone'/></filter>"
    middle = "<filter name='middle' chain='ipv4'><filterref filter='leaf'/><filterref filter='leaf6'/>" \
             "<filterref filter='top'/></filter>"
    leaf = "<filter name='leaf'><rule action='drop' direction='out'><udp dstportstart='53'/></rule>" \
           "<rule action='drop' direction='out'><all/></rule></filter>"
    leaf6 = "<filter name='leaf6'><rule action='drop' direction='out'><tcp-ipv6/></rule>" \
            "<filterref filter='leaf'/></filter>"
    lookup = dict_lookup([top, middle, leaf, leaf6])
    found = bn.resolve_layer3('top', lookup)
    assert found['protocols'] == ['all', 'tcp-ipv6', 'udp']
    assert found['where'] == {'leaf': ['all', 'udp'], 'leaf6': ['tcp-ipv6']}
    assert found['missing'] == ['gone']
    assert sorted(lookup.asked) == ['gone', 'leaf', 'leaf6', 'middle', 'top']  # each filter read once


def test_resolution_of_a_filter_not_yet_defined():
    # secvirt.kvm.libvirt_nwfilter checks the filter it is about to define: its own
    # XML is given, its references are looked up
    lookup = dict_lookup([MAC_ONLY])
    found = bn.resolve_layer3('tcp-over-mac', lookup, xml=TCP_OVER_MAC)
    assert found['protocols'] == ['tcp'] and lookup.asked == ['mac-only']


def libvirt_builtin_lookup():
    return dict_lookup([open(path).read() for path in glob.glob(os.path.join(LIBVIRT_FILTERS, '*.xml'))])


def test_libvirt_builtin_filters_are_ebtables_only():
    # clean-traffic and every other filter libvirt 9.0 ships works without
    # br_netfilter: their IP matches are the ebtables protocols ip and ipv6
    lookup = libvirt_builtin_lookup()
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(LIBVIRT_FILTERS, '*.xml')))
    assert 'clean-traffic' in names and len(names) == 24
    for name in names:
        assert bn.resolve_layer3(name, lookup) == {'protocols': [], 'where': {}, 'missing': []}, name
    del lookup.asked[:]
    bn.resolve_layer3('clean-traffic', lookup)
    assert sorted(lookup.asked) == sorted(['clean-traffic', 'no-mac-spoofing', 'no-ip-spoofing', 'allow-incoming-ipv4',
                                           'no-arp-spoofing', 'no-arp-mac-spoofing', 'no-arp-ip-spoofing',
                                           'no-other-l2-traffic', 'qemu-announce-self', 'qemu-announce-self-rarp',
                                           'no-other-rarp-traffic'])


def test_seed_filter_on_top_of_libvirt_clean_traffic():
    builtin = libvirt_builtin_lookup()
    mine = "<filter name='mysecfilter' chain='root'><rule action='drop' direction='out' priority='500'>" \
           "<tcp dstportstart='25' dstportend='25'/></rule><filterref filter='clean-traffic'/></filter>"
    found = bn.resolve_layer3('mysecfilter', lambda name: mine if name == 'mysecfilter' else builtin(name))
    assert found == {'protocols': ['tcp'], 'where': {'mysecfilter': ['tcp']}, 'missing': []}


# ------------------------------------------------------------ host state

def write(root, path, text):
    full = os.path.join(str(root), path)
    if not os.path.isdir(os.path.dirname(full)):
        os.makedirs(os.path.dirname(full))
    with open(full, 'w') as handle:
        handle.write(text)


def test_br_netfilter_not_loaded(tmp_path):
    state = bn.read_bridge_nf(str(tmp_path))
    assert state == {'br_netfilter': False, 'iptables': None, 'ip6tables': None,
                     'bridge': None, 'bridge_iptables': None, 'bridge_ip6tables': None}
    assert not bn.family_enforced(state, 'iptables') and not bn.family_enforced(state, 'ip6tables')


@pytest.mark.parametrize('v4,v6,expect', [('0\n', '0\n', (False, False)), ('1\n', '0\n', (True, False)),
                                          ('0\n', '1\n', (False, True)), ('1\n', '1\n', (True, True)),
                                          ('garbage', '1', (False, True))])
def test_global_sysctls(tmp_path, v4, v6, expect):
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-iptables', v4)
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-ip6tables', v6)
    state = bn.read_bridge_nf(str(tmp_path))
    assert state['br_netfilter'] is True
    assert (bn.family_enforced(state, 'iptables'), bn.family_enforced(state, 'ip6tables')) == expect


def test_per_bridge_nf_call_overrides_a_global_zero(tmp_path):
    # the kernel passes a bridge's frames to iptables when the global sysctl
    # or the bridge's own nf_call_iptables is set (br_netfilter loaded)
    write(tmp_path, 'sys/class/net/br-web/bridge/nf_call_iptables', '1\n')
    write(tmp_path, 'sys/class/net/br-web/bridge/nf_call_ip6tables', '0\n')
    state = bn.read_bridge_nf(str(tmp_path), bridge='br-web')
    assert state['bridge_iptables'] == 1 and not bn.family_enforced(state, 'iptables')  # module not loaded
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-iptables', '0\n')
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-ip6tables', '0\n')
    state = bn.read_bridge_nf(str(tmp_path), bridge='br-web')
    assert bn.family_enforced(state, 'iptables') and not bn.family_enforced(state, 'ip6tables')
    assert not bn.family_enforced(bn.read_bridge_nf(str(tmp_path), bridge='br-other'), 'iptables')
    assert bn.read_bridge_nf(str(tmp_path), bridge='../br-web')['bridge'] is None


def test_assessment_and_message(tmp_path):
    found = {'protocols': ['icmpv6', 'tcp'], 'where': {'mysecfilter': ['tcp'], 'v6': ['icmpv6']}, 'missing': []}
    absent = bn.assess('mysecfilter', found, bn.read_bridge_nf(str(tmp_path)))
    assert absent['layer3_rules_enforced'] is False and absent['layer3_protocols'] == ['icmpv6', 'tcp']
    msg = absent['message']
    assert 'mysecfilter' in msg and 'tcp' in msg and 'icmpv6' in msg
    assert 'net.bridge.bridge-nf-call-iptables' in msg and 'net.bridge.bridge-nf-call-ip6tables' in msg
    assert 'br_netfilter is not loaded' in msg and '/proc/sys/net/bridge/bridge-nf-call-iptables' in msg
    assert str(tmp_path) not in msg
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-iptables', '1\n')
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-ip6tables', '0\n')
    half = bn.assess('mysecfilter', found, bn.read_bridge_nf(str(tmp_path)))
    assert half['layer3_rules_enforced'] is False
    assert 'icmpv6' in half['message'] and 'net.bridge.bridge-nf-call-ip6tables is 0' in half['message']
    assert 'tcp' not in half['message']  # its IPv4 rules are in force
    write(tmp_path, 'proc/sys/net/bridge/bridge-nf-call-ip6tables', '1\n')
    full = bn.assess('mysecfilter', found, bn.read_bridge_nf(str(tmp_path)))
    assert full['layer3_rules_enforced'] is True and full['message'] is None
    none = bn.assess('clean-traffic', {'protocols': [], 'where': {}, 'missing': []}, bn.read_bridge_nf('/nonexistent'))
    assert none['layer3_rules_enforced'] is True and none['layer3_protocols'] == [] and none['message'] is None


def test_remote_host_cannot_be_checked():
    found = {'protocols': ['tcp'], 'where': {'f': ['tcp']}, 'missing': []}
    remote = bn.assess('f', found, None)
    assert remote['layer3_rules_enforced'] is None
    assert 'cannot be checked' in remote['message'] and 'net.bridge.bridge-nf-call-iptables' in remote['message']
    assert bn.assess('g', {'protocols': [], 'where': {}, 'missing': []}, None)['layer3_rules_enforced'] is True
    for uri in ('qemu:///system', 'qemu+unix:///system', 'test:///default', None, '', 'qemu+ssh://localhost/system',
                'qemu+tls://127.0.0.1/system'):
        assert bn.uri_is_local(uri), uri
    for uri in ('qemu+ssh://root@kvm2/system', 'qemu+tls://kvm2.example.org/system', 'qemu+tcp://10.0.0.2/system'):
        assert not bn.uri_is_local(uri), uri
