"""Unit tests for plugins/module_utils/libvirt_xml.py (no libvirt needed)."""
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx

# The seed's example filter, as an operator would write it
SEED_FILTER = """
<filter name='mysecfilter' chain='root'>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25' dstportend='25' />
  </rule>
  <rule action='drop' direction='in' priority='500'>
    <tcp dstportstart='23' dstportend='23' />
  </rule>
  <filterref filter='clean-traffic' />
</filter>
"""

# ... and as libvirt 9 hands it back from virsh nwfilter-dumpxml
SEED_FILTER_DUMPED = """<filter name='mysecfilter' chain='root'>
  <uuid>3f8b1a5c-0f1e-4a47-9d25-6c3b8f1e2d90</uuid>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportend='25' dstportstart='25'/>
  </rule>
  <rule action='drop' direction='in' priority='500'>
    <tcp dstportstart='23' dstportend='23'/>
  </rule>
  <filterref filter='clean-traffic'/>
</filter>
"""

SEED_RULES = [
    {'action': 'drop', 'direction': 'out', 'priority': 500, 'protocol': 'tcp',
     'match': {'dstportstart': 25, 'dstportend': 25}},
    {'action': 'drop', 'direction': 'in', 'priority': 500, 'protocol': 'tcp',
     'match': {'dstportstart': 23, 'dstportend': 23}},
]

DOMAIN = """<domain type='qemu'>
  <name>guest1</name>
  <uuid>0f3c2d8e-1111-4222-8333-944455556666</uuid>
  <memory unit='KiB'>65536</memory>
  <cputune><vcpupin vcpu='0' cpuset='0'/><shares>1024</shares></cputune>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:AA:bb:01'/>
      <source network='default'/>
      <target dev='vnet0'/>
      <model type='e1000'/>
      <filterref filter='clean-traffic'>
        <parameter name='IP' value='192.168.122.50'/>
      </filterref>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:02'/>
      <source bridge='br0'/>
    </interface>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
  <seclabel type='static' model='dac' relabel='no'><label>+970:+970</label></seclabel>
</domain>"""


# ---------------------------------------------------------------- generic

def test_parse_xml_refuses_entities_and_garbage():
    with pytest.raises(lx.XMLValidationError, match='DOCTYPE'):
        lx.parse_xml('<!DOCTYPE x [<!ENTITY a "b">]><filter/>')
    with pytest.raises(lx.XMLValidationError, match='not well-formed'):
        lx.parse_xml('<filter>', 'xml')
    with pytest.raises(lx.XMLValidationError, match='empty'):
        lx.parse_xml('  ')
    elem = ET.Element('a')
    copy = lx.parse_xml(elem)
    assert copy is not elem and copy.tag == 'a'


def test_namespaced_elements_keep_their_prefix():
    text = ("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>g</name>"
            "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>"
            "<libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>"
            "<qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline></domain>")
    out = lx.to_string(lx.parse_xml(text), pretty=False)
    assert '<qemu:arg value="-no-hpet" />' in out
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in out
    assert '<libosinfo:os id="http://debian.org/debian/12" />' in out
    assert 'ns0:' not in out


def test_canonical_ignores_attribute_order_whitespace_and_uuid():
    first = "<a y='1' x='2'>\n  <uuid>1</uuid>\n  <b> text </b>\n</a>"
    second = '<a x="2" y="1"><b>text</b><uuid>2</uuid></a>'
    assert lx.canonical(first) == lx.canonical(second) == '<a x="2" y="1"><b>text</b></a>'
    assert lx.xml_equal(first, second)
    assert not lx.xml_equal(first, '<a x="2" y="1"><b>other</b></a>')
    # element order is significant (rule order matters to libvirt)
    assert not lx.xml_equal('<a><b/><c/></a>', '<a><c/><b/></a>')


def test_to_string_pretty_prints_without_touching_input():
    elem = lx.parse_xml('<a><b><c/></b><d>x</d></a>')
    text = lx.to_string(elem)
    assert text == '<a>\n  <b>\n    <c />\n  </b>\n  <d>x</d>\n</a>'
    assert elem.find('b').tail is None
    assert lx.to_string(elem, pretty=False) == '<a><b><c /></b><d>x</d></a>'


def test_unified_diff_and_diff_dict():
    assert lx.unified_diff('a\n', 'a\n') == ''
    diff = lx.unified_diff('a\nb\n', 'a\nc\n', 'old', 'new')
    assert '--- old' in diff and '-b' in diff and '+c' in diff
    result = lx.diff_dict('x', 'y', 'before h', 'after h')
    assert result == {'before': 'x\n', 'after': 'y\n', 'before_header': 'before h', 'after_header': 'after h'}
    assert lx.diff_dict(None, '') == {'before': '', 'after': ''}


@pytest.mark.parametrize('mac,expected', [
    ('52:54:00:AB:cd:01', '52:54:00:ab:cd:01'),
    ('52-54-0-ab-cd-1', '52:54:00:ab:cd:01'),
])
def test_normalize_mac(mac, expected):
    assert lx.normalize_mac(mac) == expected


@pytest.mark.parametrize('mac', ['52:54:00:ab:cd', 'zz:54:00:ab:cd:01', '525400abcd01', '52:54:00:ab:cd:001'])
def test_normalize_mac_refuses_garbage(mac):
    with pytest.raises(lx.XMLValidationError):
        lx.normalize_mac(mac)


# ---------------------------------------------------------------- nwfilter

def test_seed_filter_from_structured_options_matches_seed_xml():
    built = lx.build_nwfilter('mysecfilter', chain='root', rules=SEED_RULES,
                              filterrefs=[{'filter': 'clean-traffic'}])
    assert lx.canonical_nwfilter(built) == lx.canonical_nwfilter(SEED_FILTER)
    assert lx.canonical_nwfilter(SEED_FILTER) == lx.canonical_nwfilter(SEED_FILTER_DUMPED)
    text = lx.to_string(built)
    assert text.startswith('<filter name="mysecfilter" chain="root">')
    assert '<tcp dstportstart="25" dstportend="25" />' in text
    assert text.rstrip().endswith('<filterref filter="clean-traffic" />\n</filter>')


def test_build_nwfilter_full_options():
    built = lx.build_nwfilter(
        'f1', chain='ipv4', priority=-650, uuid='0f3c2d8e-1111-4222-8333-944455556666',
        rules=[{'action': 'accept', 'direction': 'inout', 'statematch': False, 'protocol': 'ip',
                'match': {'srcipaddr': '$IP', 'protocol': 'udp', 'dstportstart': 53, 'comment': None},
                'negate': True},
               {'action': 'drop', 'direction': 'in'}],
        filterrefs=[{'filter': 'allow-dhcp', 'parameters': {'DHCPSERVER': ['10.0.0.1', '10.0.0.2']}}])
    assert built.get('priority') == '-650'
    assert built.find('uuid').text.startswith('0f3c')
    rule = built.find('rule')
    assert rule.get('statematch') == 'false'
    ip = rule.find('ip')
    assert ip.get('match') == 'no' and ip.get('srcipaddr') == '$IP' and 'comment' not in ip.attrib
    assert built.findall('rule')[1].find('*') is None
    values = [p.get('value') for p in built.find('filterref').findall('parameter')]
    assert values == ['10.0.0.1', '10.0.0.2']


@pytest.mark.parametrize('kwargs,message', [
    ({'rules': [{'action': 'nuke', 'direction': 'in'}]}, 'action'),
    ({'rules': [{'action': 'drop', 'direction': 'sideways'}]}, 'direction'),
    ({'rules': [{'direction': 'in'}]}, 'has no action'),
    ({'rules': ['drop']}, 'must be a dictionary'),
    ({'rules': [{'action': 'drop', 'direction': 'in', 'priority': 5000}]}, 'outside'),
    ({'rules': [{'action': 'drop', 'direction': 'in', 'protocol': 'smtp'}]}, 'unknown protocol'),
    ({'rules': [{'action': 'drop', 'direction': 'in', 'protocol': 'tcp', 'match': {'dport': 25}}]},
     'silently ignore'),
    ({'rules': [{'action': 'drop', 'direction': 'in', 'match': {'dstportstart': 25}}]}, 'no protocol'),
    ({'rules': [{'action': 'drop', 'direction': 'in', 'protocol': 'ip', 'match': {'dstportstart': 25}}]},
     'needs protocol tcp'),
    ({'chain': 'root2'}, 'chain'),
    ({'chain': 'nochain'}, 'chain'),
    ({'chain': 'ipv4-toolongname'}, 'at most 8'),
    ({'priority': 1001}, 'filter priority'),
    ({'filterrefs': [{'parameters': {}}]}, 'filter name'),
    ({'filterrefs': [{'filter': 'x', 'parameters': {'IP': []}}]}, 'no value'),
    ({'filterrefs': [{'filter': 'x', 'parameters': {'IP': [None]}}]}, 'no value'),
    ({'filterrefs': [{'filter': 'x', 'parameters': {'1bad': 'v'}}]}, 'parameter name'),
    ({'filterrefs': [{'filter': 'bad name'}]}, 'not valid'),
])
def test_build_nwfilter_refuses_what_libvirt_would_reject_or_drop(kwargs, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        lx.build_nwfilter('f1', **kwargs)


@pytest.mark.parametrize('xml,message', [
    ('<rule/>', 'root element'),
    ("<filter name='a b'/>", 'not valid'),
    ("<filter name='f'><chain/></filter>", 'unexpected element'),
    ("<filter name='f' priority='x'/>", 'integer'),
    ("<filter name='f'><rule action='drop' direction='in' statematch='maybe'/></filter>", 'statematch'),
    ("<filter name='f'><rule action='drop' direction='in'><tcp/><udp/></rule></filter>", 'one protocol'),
    ("<filter name='f'><rule action='drop' direction='in'><tcp match='perhaps'/></rule></filter>", 'match'),
    ("<filter name='f'><filterref filter='x'><param/></filterref></filter>", 'unexpected element'),
    ("<filter name='f'><filterref filter='x'><parameter name='IP'/></filterref></filter>", 'no value'),
])
def test_validate_nwfilter_raw_xml(xml, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        lx.validate_nwfilter(xml)


def test_validate_nwfilter_accepts_variables_and_ip_ports_with_protocol():
    xml = """<filter name='f' chain='ipv4'><uuid>x</uuid>
      <rule action='accept' direction='out'><ip protocol='tcp' dstportstart='22'/></rule>
      <rule action='accept' direction='out'><ip protocol='$PROTO' dstportstart='22'/></rule>
      <rule action='accept' direction='out'><ip protocol='0x11' dstportstart='53'/></rule>
      <rule action='drop' direction='out' priority='-100'><mac srcmacaddr='$MAC' match='no'/></rule>
      </filter>"""
    elem = lx.validate_nwfilter(xml)
    # the parsed filter comes back whole: every rule, in order
    assert elem.get('name') == 'f' and elem.get('chain') == 'ipv4'
    assert [r[0].get('protocol') or r[0].tag for r in elem.findall('rule')] == ['tcp', '$PROTO', '0x11', 'mac']
    # control: the same port match under a protocol without ports is refused
    with pytest.raises(lx.XMLValidationError, match='needs protocol tcp, udp'):
        lx.validate_nwfilter(xml.replace("protocol='0x11'", "protocol='icmp'"))


def test_canonical_nwfilter_applies_libvirt_defaults():
    plain = "<filter name='f' chain='ipv4'><rule action='drop' direction='in'><all/></rule></filter>"
    dumped = """<filter name='f' chain='ipv4' priority='-700'><uuid>u</uuid>
      <rule action='drop' direction='in' priority='500' statematch='true'><all match='yes'/></rule></filter>"""
    assert lx.canonical_nwfilter(plain) == lx.canonical_nwfilter(dumped)
    assert 'priority="-700"' in lx.canonical_nwfilter(plain)
    # no chain given means root, whose priority 0 is not printed
    assert lx.canonical_nwfilter("<filter name='f'/>") == lx.canonical_nwfilter(
        "<filter name='f' chain='root' priority='0'/>") == '<filter chain="root" name="f" />'
    # an unknown chain prefix (allowed by libvirt) also defaults to 0
    assert lx.nwfilter_chain_default_priority('root') == 0
    assert lx.nwfilter_chain_default_priority('arp-xyz') == -500
    # libvirt replaces an out-of-range or garbage rule priority with 500
    assert lx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in' priority='9999'/></filter>") == \
        lx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in' priority='x'/></filter>") == \
        lx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in'/></filter>")
    statematch = "<filter name='f'><rule action='drop' direction='in' statematch='0'/></filter>"
    assert 'statematch="false"' in lx.canonical_nwfilter(statematch)


def test_canonical_nwfilter_detects_real_changes():
    changed = SEED_FILTER.replace("dstportstart='25' dstportend='25'", "dstportstart='26' dstportend='26'")
    assert lx.canonical_nwfilter(changed) != lx.canonical_nwfilter(SEED_FILTER)
    reordered = SEED_FILTER.replace("direction='out'", "direction='inout'")
    assert lx.canonical_nwfilter(reordered) != lx.canonical_nwfilter(SEED_FILTER)


@pytest.mark.parametrize('proto,attr,given,formatted', [
    ('mac', 'srcmacaddr', '52:54:00:AB:CD:EF', '52:54:00:ab:cd:ef'),
    ('mac', 'srcmacaddr', 'not-a-mac', 'not-a-mac'),
    ('mac', 'protocolid', '0x0800', 'ipv4'),
    ('mac', 'protocolid', '2054', 'arp'),
    ('mac', 'protocolid', '0x88CC', '0x88cc'),
    ('mac', 'protocolid', 'IPv6', 'ipv6'),
    ('ip', 'srcipmask', '255.255.255.0', '24'),
    ('ip', 'srcipmask', '024', '24'),
    ('ip', 'srcipmask', 'garbage', 'garbage'),
    ('ipv6', 'srcipmask', 'ffff:ffff::', '32'),
    ('ipv6', 'srcipaddr', '2001:DB8:0:0::1', '2001:db8::1'),
    ('ip', 'srcipaddr', 'not-an-ip', 'not-an-ip'),
    ('tcp', 'srcipfrom', '10.0.0.1', '10.0.0.1'),
    ('ip', 'protocol', '6', 'tcp'),
    ('ip', 'protocol', '0x11', 'udp'),
    ('ip', 'protocol', '0xZZ', '0xZZ'),
    ('ip', 'protocol', '250', '250'),
    ('ip', 'protocol', 'UDP', 'udp'),
    ('arp', 'gratuitous', 'yes', 'true'),
    ('arp', 'gratuitous', '0', 'false'),
    ('arp', 'opcode', 'Request', 'Request'),
    ('tcp', 'state', 'established,new', 'NEW,ESTABLISHED'),
    ('tcp', 'flags', 'syn,ack/syn', 'SYN,ACK/SYN'),
    ('tcp', 'flags', 'FIN,SYN,RST,PSH,ACK,URG,ALL/NONE', 'ALL/NONE'),
    ('tcp', 'flags', 'SYN', 'SYN'),
    ('tcp', 'ipsetflags', 'SRC,DST', 'src,dst'),
    ('tcp', 'dstportstart', '0025', '25'),
    ('tcp', 'dscp', '0X1A', '0x1a'),
    ('tcp', 'comment', ' keep as is ', ' keep as is '),
    ('mac', 'srcmacaddr', '$MAC', '$MAC'),
    ('stp', 'root-address', '01:80:C2:00:00:00', '01:80:c2:00:00:00'),
])
def test_canonical_protocol_values_follow_libvirt_formatting(proto, attr, given, formatted):
    xml = "<filter name='f'><rule action='drop' direction='in'><%s %s='%s'/></rule></filter>" % (proto, attr, given)
    assert ('%s="%s"' % (attr, formatted)) in lx.canonical_nwfilter(xml)


def test_filterref_parameters_sorted_by_name_values_in_order():
    first = lx.filterref_element('clean-traffic', {'IP': ['10.0.0.2', '10.0.0.1'], 'CTRL_IP_LEARNING': 'none'})
    second = lx.parse_xml("""<filterref filter='clean-traffic'>
        <parameter name='IP' value='10.0.0.2'/>
        <parameter name='CTRL_IP_LEARNING' value='none'/>
        <parameter name='IP' value='10.0.0.1'/></filterref>""")
    assert lx.canonical_filterref(first) == lx.canonical_filterref(second)
    assert lx.filterref_parameters(second) == {'IP': ['10.0.0.2', '10.0.0.1'], 'CTRL_IP_LEARNING': ['none']}
    assert lx.filterref_parameters(None) == {}
    assert lx.canonical_filterref(None) == ''
    swapped = lx.filterref_element('clean-traffic', {'IP': ['10.0.0.1', '10.0.0.2'], 'CTRL_IP_LEARNING': 'none'})
    assert lx.canonical_filterref(swapped) != lx.canonical_filterref(first)
    assert lx.filterref_element('f', {'FLAG': True}).find('parameter').get('value') == 'true'


def test_nwfilter_references_and_summary():
    assert lx.nwfilter_references(SEED_FILTER) == ['clean-traffic']
    summary = lx.nwfilter_summary(SEED_FILTER_DUMPED)
    assert summary == {'name': 'mysecfilter', 'uuid': '3f8b1a5c-0f1e-4a47-9d25-6c3b8f1e2d90', 'chain': 'root',
                       'priority': 0, 'rules': 2, 'filterrefs': ['clean-traffic']}
    assert lx.nwfilter_summary("<filter name='x' chain='mac' priority='-10'/>")['priority'] == -10
    assert lx.nwfilter_summary("<filter name='x' chain='mac'/>")['uuid'] is None


# ---------------------------------------------------------------- interfaces

def test_find_interface_by_mac_or_target():
    domain = lx.parse_xml(DOMAIN)
    assert lx.find_interface(domain, mac='52:54:00:aa:BB:01') is not None
    assert lx.interface_mac(lx.find_interface(domain, target_dev='vnet0')) == '52:54:00:aa:bb:01'
    assert lx.find_interface(domain, mac='52:54:00:00:00:00') is None
    assert lx.find_interface(domain, target_dev='vnet9') is None
    assert lx.interface_target(lx.find_interface(domain, mac='52:54:00:aa:bb:02')) is None
    assert lx.interface_mac(ET.Element('interface')) is None
    assert lx.domain_interfaces('<domain/>') == []
    assert lx.domain_filter_references(domain) == [('52:54:00:aa:bb:01', 'clean-traffic')]


def test_set_interface_filterref_replaces_in_place_and_removes():
    domain = lx.parse_xml(DOMAIN)
    iface = lx.find_interface(domain, mac='52:54:00:aa:bb:01')
    ref = lx.filterref_element('mysecfilter')
    lx.set_interface_filterref(iface, ref)
    assert [c.tag for c in iface] == ['mac', 'source', 'target', 'model', 'filterref']
    assert iface.find('filterref').get('filter') == 'mysecfilter'
    lx.set_interface_filterref(iface, None)
    assert iface.find('filterref') is None
    other = lx.find_interface(domain, mac='52:54:00:aa:bb:02')
    lx.set_interface_filterref(other, ref)
    assert other[-1].get('filter') == 'mysecfilter'


# ---------------------------------------------------------------- seclabels

@pytest.mark.parametrize('label', [
    'system_u:system_r:svirt_t:s0:c32,c256',
    'system_u:system_r:svirt_t:s0',
    'system_u:system_r:svirt_t:s0-s0:c0.c1023',
    'system_u:system_r:svirt_t:s15:c0,c1023',
    'user_u:object_r:svirt_image_t:s0:c1,c5,c7.c9',
])
def test_selinux_context_syntax_ok(label):
    assert lx.parse_selinux_context(label)[2].startswith('svirt')


@pytest.mark.parametrize('label,message', [
    ('svirt_t', 'user:role:type:level'),
    (None, 'user:role:type:level'),
    ('system u:system_r:svirt_t:s0', 'invalid user'),
    ('system_u:system_r:svirt-t:s0', 'invalid type'),
    ('system_u:system_r:svirt_t:s16', 'sensitivity'),
    ('system_u:system_r:svirt_t:x0', 'sensitivity'),
    ('system_u:system_r:svirt_t:s0:', 'empty category'),
    ('system_u:system_r:svirt_t:s0:c1024', 'outside c0..c1023'),
    ('system_u:system_r:svirt_t:s0:cx', 'not cN'),
    ('system_u:system_r:svirt_t:s0:c1.c2.c3', 'not cN'),
    ('system_u:system_r:svirt_t:s0:c5.c2', 'upwards'),
    ('system_u:system_r:svirt_t:s0-s0-s0', 'more than one range'),
])
def test_selinux_context_syntax_refused(label, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        lx.parse_selinux_context(label)


def test_parse_mls_range_categories():
    assert lx.parse_mls_range('s0-s0:c0.c3,c7') == [('s0', frozenset()), ('s0', frozenset([0, 1, 2, 3, 7]))]


@pytest.mark.parametrize('label,pair', [
    ('system_u:system_r:svirt_t:s0:c32,c256', ('s0', (32, 256))),
    ('system_u:system_r:svirt_t:s0:c0,c1023', ('s0', (0, 1023))),
])
def test_mcs_pair(label, pair):
    assert lx.mcs_pair(label) == pair


@pytest.mark.parametrize('label,message', [
    ('system_u:system_r:svirt_t:s0:c256,c32', 'N < M'),
    ('system_u:system_r:svirt_t:s0:c5,c5', 'two distinct categories'),
    ('system_u:system_r:svirt_t:s0:c7', 'has one MCS category: it needs two categories'),
    ('system_u:system_r:svirt_t:s0', 'has no MCS category: it needs two categories'),
    ('system_u:system_r:svirt_t:s0:c1,c2,c3', 'MCS pair'),
    ('system_u:system_r:svirt_t:s0:c0.c1023', 'MCS pair'),
    ('system_u:system_r:svirt_t:s0-s0:c1,c2', 'not a range'),
    ('system_u:system_r:svirt_t:s0:c1,c1024', 'outside'),
])
def test_mcs_pair_refused(label, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        lx.mcs_pair(label)


def test_static_selinux_label_needs_two_distinct_categories():
    def static(label):
        return lx.validate_seclabel({'type': 'static', 'model': 'selinux', 'label': label})
    # s0:c5 is dominated by any dynamic label s0:c5,cM: one category does not isolate
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        static('system_u:system_r:svirt_t:s0:c5')
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        static('system_u:system_r:svirt_t:s0')
    with pytest.raises(lx.XMLValidationError, match='two distinct categories'):
        static('system_u:system_r:svirt_t:s0:c5,c5')
    with pytest.raises(lx.XMLValidationError, match='two categories'):
        lx.validate_seclabel({'type': 'static', 'model': 'selinux', 'relabel': True,
                              'label': 'system_u:system_r:svirt_t:s0:c5,c9',
                              'imagelabel': 'system_u:object_r:svirt_image_t:s0:c5'})
    # positive control: a pair of distinct categories in c0..c1023
    assert static('system_u:system_r:svirt_t:s0:c5,c9')['mcs'] == ('s0', (5, 9))
    assert static('system_u:system_r:svirt_t:s0:c0,c1023')['mcs'] == ('s0', (0, 1023))
    # DAC labels are not MCS labels and stay as they were
    assert 'mcs' not in lx.validate_seclabel({'type': 'static', 'model': 'dac', 'label': '+970:+970'})


def test_validate_static_selinux_with_matching_imagelabel():
    spec = lx.validate_seclabel({'type': 'static', 'model': 'selinux', 'relabel': True,
                                 'label': 'system_u:system_r:svirt_t:s0:c32,c256',
                                 'imagelabel': 'system_u:object_r:svirt_image_t:s0:c32,c256'})
    assert spec['mcs'] == ('s0', (32, 256))
    elem = lx.build_seclabel(spec)
    assert lx.to_string(elem, pretty=False) == (
        '<seclabel type="static" model="selinux" relabel="yes"><label>system_u:system_r:svirt_t:s0:c32,c256'
        '</label><imagelabel>system_u:object_r:svirt_image_t:s0:c32,c256</imagelabel></seclabel>')


@pytest.mark.parametrize('spec,message', [
    ({'type': 'static', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0:c1,c2', 'relabel': True,
      'imagelabel': 'system_u:object_r:svirt_image_t:s0:c1,c3'}, 'same MCS categories'),
    ({'type': 'static', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0:c2,c1'}, 'N < M'),
    ({'type': 'static', 'model': 'selinux'}, 'needs a label'),
    ({'type': 'static', 'model': 'dac', 'label': '+1:+1', 'baselabel': 'x'}, 'only applies to dynamic'),
    ({'type': 'static', 'model': 'dac', 'label': '+1:+1', 'imagelabel': '+2:+2'}, 'only used when relabel'),
    ({'type': 'static', 'model': 'dac', 'label': 'qemu'}, 'user:group'),
    ({'type': 'static', 'model': 'dac', 'label': 'qemu:kvm:x'}, 'user:group'),
    ({'type': 'static', 'model': 'apparmor', 'label': 'libvirt profile'}, 'invalid characters'),
    ({'type': 'dynamic', 'model': 'selinux', 'label': 'system_u:system_r:svirt_t:s0'}, 'takes no label'),
    ({'type': 'dynamic', 'model': 'selinux', 'relabel': False}, 'relabel=yes'),
    ({'type': 'dynamic', 'model': 'apparmor', 'baselabel': 'x'}, 'baselabel is only'),
    ({'type': 'dynamic', 'model': 'selinux', 'baselabel': 'svirt_t'}, 'user:role:type:level'),
    ({'type': 'dynamic'}, 'needs a model'),
    ({'type': 'none', 'model': 'dac', 'label': '+1:+1'}, "type 'none'"),
    ({'type': 'random', 'model': 'dac'}, 'type must be'),
    ({'type': 'dynamic', 'model': 'smack'}, 'model must be'),
])
def test_validate_seclabel_refusals(spec, message):
    with pytest.raises(lx.XMLValidationError, match=message):
        lx.validate_seclabel(spec)


@pytest.mark.parametrize('spec,xml', [
    ({'type': 'static', 'model': 'dac', 'label': '+970:+970'},
     '<seclabel type="static" model="dac" relabel="no"><label>+970:+970</label></seclabel>'),
    ({'type': 'static', 'model': 'dac', 'label': 'libvirt-qemu:kvm', 'relabel': True, 'imagelabel': 'root:kvm'},
     '<seclabel type="static" model="dac" relabel="yes"><label>libvirt-qemu:kvm</label>'
     '<imagelabel>root:kvm</imagelabel></seclabel>'),
    ({'type': 'dynamic', 'model': 'apparmor'}, '<seclabel type="dynamic" model="apparmor" relabel="yes" />'),
    ({'model': 'selinux', 'baselabel': 'system_u:system_r:svirt_tcg_t:s0'},
     '<seclabel type="dynamic" model="selinux" relabel="yes"><baselabel>system_u:system_r:svirt_tcg_t:s0'
     '</baselabel></seclabel>'),
    ({'type': 'static', 'model': 'apparmor', 'label': 'libvirt-0f3c2d8e'},
     '<seclabel type="static" model="apparmor" relabel="no"><label>libvirt-0f3c2d8e</label></seclabel>'),
    ({'type': 'none'}, '<seclabel type="none" />'),
    ({'type': 'none', 'model': 'dac'}, '<seclabel type="none" model="dac" />'),
])
def test_build_seclabel(spec, xml):
    assert lx.to_string(lx.build_seclabel(spec), pretty=False) == xml


def test_canonical_seclabel_applies_libvirt_defaults():
    wanted = lx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+970:+970'})
    dumped = lx.parse_xml("<seclabel model='dac' type='static' relabel='no'>\n <label>+970:+970</label>\n</seclabel>")
    assert lx.canonical_seclabel(wanted) == lx.canonical_seclabel(dumped)
    # the dynamic label libvirt generated is not part of the definition
    live = lx.parse_xml("<seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-1</label>"
                        "<imagelabel>libvirt-1</imagelabel></seclabel>")
    assert lx.canonical_seclabel(live) == lx.canonical_seclabel(lx.build_seclabel({'model': 'apparmor'}))
    assert lx.canonical_seclabel(live, inactive=False) != lx.canonical_seclabel(lx.build_seclabel(
        {'model': 'apparmor'}), inactive=False)
    assert lx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='apparmor'/>")) == \
        lx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='apparmor' relabel='yes'/>"))
    assert lx.canonical_seclabel(lx.parse_xml("<seclabel model='dac' relabel='true'/>")) == \
        lx.canonical_seclabel(lx.parse_xml("<seclabel type='dynamic' model='dac'/>"))
    assert lx.canonical_seclabel(lx.parse_xml("<seclabel type='none' relabel='no'><label>x</label></seclabel>")) == \
        '<seclabel type="none" />'
    assert lx.canonical_seclabel(None) == ''
    assert lx.canonical_seclabel(wanted) != lx.canonical_seclabel(
        lx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+971:+971'}))


def test_domain_seclabels_and_set_domain_seclabel():
    domain = lx.parse_xml(DOMAIN)
    labels = lx.domain_seclabels(DOMAIN)
    assert sorted(labels) == ['apparmor', 'dac']
    new = lx.build_seclabel({'type': 'static', 'model': 'dac', 'label': '+971:+971'})
    lx.set_domain_seclabel(domain, new, 'dac')
    assert lx.domain_seclabels(domain)['dac'].findtext('label') == '+971:+971'
    assert len(domain.findall('seclabel')) == 2
    lx.set_domain_seclabel(domain, None, 'dac')
    assert sorted(lx.domain_seclabels(domain)) == ['apparmor']
    lx.set_domain_seclabel(domain, lx.build_seclabel({'type': 'none'}), None)
    assert [s.get('type') for s in domain.findall('seclabel')] == ['none']


def _guest(name, label, stype='static'):
    return (name, lx.parse_xml("<domain><name>%s</name><seclabel type='%s' model='selinux'><label>%s</label>"
                               "</seclabel></domain>" % (name, stype, label)))


def test_find_mcs_conflicts_across_guests():
    pair = ('s0', (32, 256))
    guests = [
        _guest('self', 'system_u:system_r:svirt_t:s0:c32,c256'),
        _guest('other', 'system_u:system_r:svirt_t:s0:c32,c256'),
        _guest('running', 'system_u:system_r:svirt_t:s0:c32,c256', 'dynamic'),
        _guest('other', 'system_u:system_r:svirt_t:s0:c32,c256'),  # inactive + live of one guest
        _guest('overlapping', 'system_u:system_r:svirt_t:s0:c33,c256'),
        _guest('disjoint', 'system_u:system_r:svirt_t:s0:c33,c257'),
        _guest('uncategorised', 'system_u:system_r:svirt_t:s0'),
        _guest('everything', 'system_u:system_r:svirt_t:s0-s0:c0.c1023'),
        _guest('broken', 'garbage'),
        ('unlabelled', lx.parse_xml('<domain/>')),
        ('nolabel', lx.parse_xml("<domain><seclabel type='dynamic' model='selinux'/></domain>")),
        ('none', lx.parse_xml("<domain><seclabel type='none' model='selinux'/></domain>")),
    ]
    conflicts = [
        ('other', 'system_u:system_r:svirt_t:s0:c32,c256'),
        ('running', 'system_u:system_r:svirt_t:s0:c32,c256'),
        # one shared category is enough: either guest's qemu could open files of the other
        ('overlapping', 'system_u:system_r:svirt_t:s0:c33,c256'),
        # s0:c32,c256 dominates a label without categories
        ('uncategorised', 'system_u:system_r:svirt_t:s0'),
        # a range dominates every pair
        ('everything', 'system_u:system_r:svirt_t:s0-s0:c0.c1023')]
    assert lx.find_mcs_conflicts('self', pair, guests) == conflicts
    # sensitivities are not compared
    assert lx.find_mcs_conflicts('self', ('s1', (32, 256)), guests) == conflicts
    assert lx.find_mcs_conflicts('self', ('s0', (34, 1000)), guests) == conflicts[-2:]
    assert lx.find_mcs_conflicts('self', None, guests) == []


# ---------------------------------------------------------------- limits

@pytest.mark.parametrize('value,kib', [
    (1024, 1024), ('1024', 1024), ('512M', 524288), ('512MiB', 524288), ('1G', 1048576),
    ('2GiB', 2097152), ('1GB', 976563), ('1000KB', 977), ('1T', 1073741824), ('4096b', 4),
    ('1 g', 1048576), ('unlimited', lx.MEMORY_UNLIMITED_KIB), (None, None), ('1tb', 976562500),
    ('1000mb', 976563), ('1bytes', 1), ('1k', 1),
])
def test_size_to_kib(value, kib):
    assert lx.size_to_kib(value) == kib


@pytest.mark.parametrize('value', ['lots', '1.5G', '-1', '10 parsecs', '1XB'])
def test_size_to_kib_refuses(value):
    with pytest.raises(lx.XMLValidationError):
        lx.size_to_kib(value)


LIMITED = """<domain>
  <cputune><shares>512</shares><vcpupin vcpu='0' cpuset='0'/><period>100000</period><quota>50000</quota></cputune>
  <memtune><hard_limit unit='MiB'>512</hard_limit><min_guarantee unit='KiB'>1</min_guarantee></memtune>
  <blkiotune><weight>300</weight>
    <device><path>/dev/vdb</path><read_iops_sec>200</read_iops_sec></device></blkiotune>
  <devices>
    <interface type='network'><mac address='52:54:00:aa:bb:01'/>
      <bandwidth><inbound average='1000' peak='2000' burst='64'/><outbound average='500'/></bandwidth>
    </interface>
    <interface type='network'><mac address='52:54:00:aa:bb:02'/></interface>
    <interface type='network'/>
  </devices>
</domain>"""


def test_read_limits():
    domain = lx.parse_xml(LIMITED)
    assert lx.read_limits(domain) == {
        'cputune': {'shares': 512, 'period': 100000, 'quota': 50000},
        'memtune': {'hard_limit': 524288},
        'blkio_weight': 300,
        'blkio_devices': {'/dev/vdb': {'read_iops_sec': 200}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 1000, 'peak': 2000, 'burst': 64},
                                            'outbound': {'average': 500}},
                      '52:54:00:aa:bb:02': {}},
    }
    empty = lx.read_limits(lx.parse_xml('<domain/>'))
    assert empty == {'cputune': {}, 'memtune': {}, 'blkio_weight': None, 'blkio_devices': {}, 'bandwidth': {}}
    assert lx.limits_text(lx.parse_xml('<domain/>')) == ''


def test_apply_limits_round_trip_and_removals():
    domain = lx.parse_xml(DOMAIN)
    lx.apply_limits(domain, {
        'cputune': {'quota': 20000, 'period': 100000, 'emulator_quota': -1},
        'memtune': {'hard_limit': 262144, 'soft_limit': 131072},
        'blkio_weight': 500,
        'blkio_devices': {'/dev/vdb': {'read_bytes_sec': 1048576, 'write_iops_sec': 100}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 1000, 'burst': 64}, 'outbound': None}},
    })
    limits = lx.read_limits(domain)
    assert limits['cputune'] == {'shares': 1024, 'period': 100000, 'quota': 20000, 'emulator_quota': -1}
    # the pinning that was there survives
    assert domain.find('cputune/vcpupin') is not None
    assert limits['memtune'] == {'hard_limit': 262144, 'soft_limit': 131072}
    assert domain.find('memtune/hard_limit').get('unit') == 'KiB'
    assert limits['blkio_weight'] == 500
    assert limits['blkio_devices'] == {'/dev/vdb': {'read_bytes_sec': 1048576, 'write_iops_sec': 100}}
    assert limits['bandwidth']['52:54:00:aa:bb:01'] == {'inbound': {'average': 1000, 'burst': 64}}
    text = lx.limits_text(domain)
    assert '<hard_limit unit="KiB">262144</hard_limit>' in text
    assert '<interface mac="52:54:00:aa:bb:01">' in text and 'average="1000"' in text

    lx.apply_limits(domain, {
        'memtune': {'hard_limit': lx.MEMORY_UNLIMITED_KIB, 'soft_limit': lx.MEMORY_UNLIMITED_KIB},
        'blkio_devices': {'/dev/vdb': {'read_bytes_sec': 0, 'write_iops_sec': 0}},
        'bandwidth': {'52:54:00:aa:bb:01': {'inbound': {'average': 0}}},
    })
    limits = lx.read_limits(domain)
    assert limits['memtune'] == {} and domain.find('memtune') is None
    assert limits['blkio_devices'] == {}
    assert limits['bandwidth']['52:54:00:aa:bb:01'] == {}
    assert lx.find_interface(domain, mac='52:54:00:aa:bb:01').find('bandwidth') is None


def test_apply_limits_keeps_unrelated_children_and_order():
    domain = lx.parse_xml(LIMITED)
    lx.apply_limits(domain, {'memtune': {'soft_limit': 1024, 'hard_limit': lx.MEMORY_UNLIMITED_KIB}})
    assert [c.tag for c in domain.find('memtune')] == ['soft_limit', 'min_guarantee']
    lx.apply_limits(domain, {'cputune': {'shares': 100}, 'blkio_weight': 200,
                             'bandwidth': {'52:54:00:aa:bb:02': {'outbound': {'average': 10}}}})
    assert [c.tag for c in domain.find('cputune')] == ['shares', 'period', 'quota', 'vcpupin']
    assert lx.read_limits(domain)['bandwidth']['52:54:00:aa:bb:02'] == {'outbound': {'average': 10}}


def test_apply_limits_unknown_interface():
    with pytest.raises(lx.XMLValidationError, match='no interface with MAC'):
        lx.apply_limits(lx.parse_xml(DOMAIN), {'bandwidth': {'52:54:00:00:00:09': {}}})
