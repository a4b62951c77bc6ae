"""Unit tests for plugins/module_utils/nwfilter_xml.py (no libvirt needed)."""
import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_xml as lx
from ansible_collections.secvirt.kvm.plugins.module_utils import nwfilter_xml as nfx

from libvirt_xml_samples import DOMAIN

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


# ---------------------------------------------------------------- nwfilter

def test_seed_filter_from_structured_options_matches_seed_xml():
    built = nfx.build_nwfilter('mysecfilter', chain='root', rules=SEED_RULES,
                               filterrefs=[{'filter': 'clean-traffic'}])
    assert nfx.canonical_nwfilter(built) == nfx.canonical_nwfilter(SEED_FILTER)
    assert nfx.canonical_nwfilter(SEED_FILTER) == nfx.canonical_nwfilter(SEED_FILTER_DUMPED)
    text = lx.to_string(built)
    assert text.startswith('<filter name="mysecfilter" chain="root">')
    assert '<tcp dstportstart="25" dstportend="25" />' in text
    assert text.rstrip().endswith('<filterref filter="clean-traffic" />\n</filter>')


def test_build_nwfilter_full_options():
    built = nfx.build_nwfilter(
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
        nfx.build_nwfilter('f1', **kwargs)


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
        nfx.validate_nwfilter(xml)


def test_validate_nwfilter_accepts_variables_and_ip_ports_with_protocol():
    xml = """<filter name='f' chain='ipv4'><uuid>x</uuid>
      <rule action='accept' direction='out'><ip protocol='tcp' dstportstart='22'/></rule>
      <rule action='accept' direction='out'><ip protocol='$PROTO' dstportstart='22'/></rule>
      <rule action='accept' direction='out'><ip protocol='0x11' dstportstart='53'/></rule>
      <rule action='drop' direction='out' priority='-100'><mac srcmacaddr='$MAC' match='no'/></rule>
      </filter>"""
    elem = nfx.validate_nwfilter(xml)
    # the parsed filter comes back whole: every rule, in order
    assert elem.get('name') == 'f' and elem.get('chain') == 'ipv4'
    assert [r[0].get('protocol') or r[0].tag for r in elem.findall('rule')] == ['tcp', '$PROTO', '0x11', 'mac']
    # control: the same port match under a protocol without ports is refused
    with pytest.raises(lx.XMLValidationError, match='needs protocol tcp, udp'):
        nfx.validate_nwfilter(xml.replace("protocol='0x11'", "protocol='icmp'"))


def test_canonical_nwfilter_applies_libvirt_defaults():
    plain = "<filter name='f' chain='ipv4'><rule action='drop' direction='in'><all/></rule></filter>"
    dumped = """<filter name='f' chain='ipv4' priority='-700'><uuid>u</uuid>
      <rule action='drop' direction='in' priority='500' statematch='true'><all match='yes'/></rule></filter>"""
    assert nfx.canonical_nwfilter(plain) == nfx.canonical_nwfilter(dumped)
    assert 'priority="-700"' in nfx.canonical_nwfilter(plain)
    # no chain given means root, whose priority 0 is not printed
    assert nfx.canonical_nwfilter("<filter name='f'/>") == nfx.canonical_nwfilter(
        "<filter name='f' chain='root' priority='0'/>") == '<filter chain="root" name="f" />'
    # an unknown chain prefix (allowed by libvirt) also defaults to 0
    assert nfx.nwfilter_chain_default_priority('root') == 0
    assert nfx.nwfilter_chain_default_priority('arp-xyz') == -500
    # libvirt replaces an out-of-range or garbage rule priority with 500
    assert nfx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in' priority='9999'/></filter>") == \
        nfx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in' priority='x'/></filter>") == \
        nfx.canonical_nwfilter("<filter name='f'><rule action='drop' direction='in'/></filter>")
    statematch = "<filter name='f'><rule action='drop' direction='in' statematch='0'/></filter>"
    assert 'statematch="false"' in nfx.canonical_nwfilter(statematch)


def test_canonical_nwfilter_detects_real_changes():
    changed = SEED_FILTER.replace("dstportstart='25' dstportend='25'", "dstportstart='26' dstportend='26'")
    assert nfx.canonical_nwfilter(changed) != nfx.canonical_nwfilter(SEED_FILTER)
    reordered = SEED_FILTER.replace("direction='out'", "direction='inout'")
    assert nfx.canonical_nwfilter(reordered) != nfx.canonical_nwfilter(SEED_FILTER)


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
    assert ('%s="%s"' % (attr, formatted)) in nfx.canonical_nwfilter(xml)


def test_filterref_parameters_sorted_by_name_values_in_order():
    first = nfx.filterref_element('clean-traffic', {'IP': ['10.0.0.2', '10.0.0.1'], 'CTRL_IP_LEARNING': 'none'})
    second = lx.parse_xml("""<filterref filter='clean-traffic'>
        <parameter name='IP' value='10.0.0.2'/>
        <parameter name='CTRL_IP_LEARNING' value='none'/>
        <parameter name='IP' value='10.0.0.1'/></filterref>""")
    assert nfx.canonical_filterref(first) == nfx.canonical_filterref(second)
    assert nfx.filterref_parameters(second) == {'IP': ['10.0.0.2', '10.0.0.1'], 'CTRL_IP_LEARNING': ['none']}
    assert nfx.filterref_parameters(None) == {}
    assert nfx.canonical_filterref(None) == ''
    swapped = nfx.filterref_element('clean-traffic', {'IP': ['10.0.0.1', '10.0.0.2'], 'CTRL_IP_LEARNING': 'none'})
    assert nfx.canonical_filterref(swapped) != nfx.canonical_filterref(first)
    assert nfx.filterref_element('f', {'FLAG': True}).find('parameter').get('value') == 'true'


def test_nwfilter_references_and_summary():
    assert nfx.nwfilter_references(SEED_FILTER) == ['clean-traffic']
    summary = nfx.nwfilter_summary(SEED_FILTER_DUMPED)
    assert summary == {'name': 'mysecfilter', 'uuid': '3f8b1a5c-0f1e-4a47-9d25-6c3b8f1e2d90', 'chain': 'root',
                       'priority': 0, 'rules': 2, 'filterrefs': ['clean-traffic']}
    assert nfx.nwfilter_summary("<filter name='x' chain='mac' priority='-10'/>")['priority'] == -10
    assert nfx.nwfilter_summary("<filter name='x' chain='mac'/>")['uuid'] is None


# ---------------------------------------------------------------- interface filterrefs

def test_set_interface_filterref_replaces_in_place_and_removes():
    domain = lx.parse_xml(DOMAIN)
    iface = lx.find_interface(domain, mac='52:54:00:aa:bb:01')
    ref = nfx.filterref_element('mysecfilter')
    nfx.set_interface_filterref(iface, ref)
    assert [c.tag for c in iface] == ['mac', 'source', 'target', 'model', 'filterref']
    assert iface.find('filterref').get('filter') == 'mysecfilter'
    nfx.set_interface_filterref(iface, None)
    assert iface.find('filterref') is None
    other = lx.find_interface(domain, mac='52:54:00:aa:bb:02')
    nfx.set_interface_filterref(other, ref)
    assert other[-1].get('filter') == 'mysecfilter'
