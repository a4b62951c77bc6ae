"""Unit tests for plugins/module_utils/vlan_bridge*.py against a modelled host.

FakeHost models the kernel links (as `ip -d -j addr show` prints them), the
files, /proc/sys, ifupdown with bridge-utils (ifup creates the VLAN port named
in bridge_ports, then the bridge) and systemd-networkd (reload creates the
netdevs of the .netdev files and applies Bridge=/VLAN=).
"""
import json
import os
import re

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import vlan_bridge as vb
from ansible_collections.secvirt.kvm.plugins.module_utils import vlan_bridge_apply as vba
from ansible_collections.secvirt.kvm.plugins.module_utils import vlan_bridge_host as vbh

IFD = vb.IFUPDOWN_DIR
ND = vb.NETWORKD_DIR
SAMPLE_BRIDGE = {
    # trimmed from a real `ip -d -j addr show` (iproute2 6.1)
    "ifindex": 4, "ifname": "br100", "flags": ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], "mtu": 1500,
    "operstate": "DOWN", "link_type": "ether", "address": "16:35:69:c0:28:37",
    "linkinfo": {"info_kind": "bridge", "info_data": {"forward_delay": 200, "hello_time": 200, "stp_state": 1,
                                                      "vlan_filtering": 0, "nf_call_iptables": 0}},
    "addr_info": [],
}


class FakeHost(vbh.Host):
    def __init__(self, backend='ifupdown'):
        super(FakeHost, self).__init__(self._dispatch, sleep=self._sleep, monotonic=self._monotonic)
        self.clock = 0.0
        self.links = {}
        self.files = {
            vb.IFUPDOWN_MAIN: 'source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n'
                              'auto eth0\niface eth0 inet dhcp\n',
            '/usr/sbin/brctl': 'binary',
        }
        self.proc = {}
        self.log = []
        self.fail_ifup = None          # bridge name whose ifup fails
        self.enslave_ignored = False   # simulate a port the kernel never enslaves
        self.networkd_active = backend == 'networkd'
        self.add_link('lo', None, up=True, addrs=['127.0.0.1/8'])
        self.add_link('eth0', None, up=True, addrs=['10.0.2.15/24', 'fec0::5054:ff:fe00:1/64'])
        self.add_link('eth1', None, up=False)
        self.add_link('eth2', None, up=True, addrs=['10.254.0.10/24'])

    # -- model ---------------------------------------------------------------
    def add_link(self, name, kind, up=False, addrs=None, **attrs):
        link = dict(kind=kind, up=up, addrs=list(addrs or []), mtu=1500, master=None, lower=None,
                    vlan_id=None, stp=0, fd=1500)
        link.update(attrs)
        self.links[name] = link
        self.proc.setdefault('net/ipv6/conf/%s/disable_ipv6' % name, '0')
        self.proc.setdefault('net/ipv4/conf/%s/arp_ignore' % name, '0')
        if kind == 'bridge':
            # a bridge that comes up gets an IPv6 link-local address
            link['addrs'].append('fe80::1435:69ff:fec0:2837/64')
        return link

    def del_link(self, name):
        self.links.pop(name, None)
        for other in self.links.values():
            if other['master'] == name:
                other['master'] = None
        for key in [k for k in self.proc if '/%s/' % name in k]:
            del self.proc[key]

    def to_json(self):
        out = []
        for name, link in self.links.items():
            item = {'ifname': name, 'mtu': link['mtu'], 'flags': ['BROADCAST'] + (['UP'] if link['up'] else []),
                    'addr_info': [{'family': 'inet6' if ':' in a else 'inet', 'local': a.split('/')[0],
                                   'prefixlen': int(a.split('/')[1])} for a in link['addrs']]}
            if link['master']:
                item['master'] = link['master']
            if link['kind'] == 'vlan':
                item['link'] = link['lower']
                item['linkinfo'] = {'info_kind': 'vlan',
                                    'info_data': {'protocol': '802.1Q', 'id': link['vlan_id'], 'flags': []}}
            elif link['kind'] == 'bridge':
                item['linkinfo'] = {'info_kind': 'bridge',
                                    'info_data': {'stp_state': link['stp'], 'forward_delay': link['fd']}}
            elif link['kind']:
                item['linkinfo'] = {'info_kind': link['kind']}
            else:
                item['parentbus'] = 'virtio'
            out.append(item)
        return json.dumps(out)

    def _sleep(self, seconds):
        self.clock += seconds

    def _monotonic(self):
        return self.clock

    # -- Host interface ------------------------------------------------------
    def read(self, path):
        return self.files.get(path)

    def exists(self, path):
        return path in self.files

    def listdir(self, path):
        return sorted(os.path.basename(p) for p in self.files if os.path.dirname(p) == path)

    def write(self, path, content):
        self.log.append('write ' + path)
        self.files[path] = content

    def remove(self, path):
        self.log.append('remove ' + path)
        self.files.pop(path, None)

    def write_proc(self, path, value):
        self.proc[path] = value
        if path.endswith('/disable_ipv6') and value == '1':
            name = path.split('/')[3]
            if name in self.links:
                self.links[name]['addrs'] = [a for a in self.links[name]['addrs'] if ':' not in a]

    def read_proc(self, path):
        return self.proc.get(path)

    # -- commands ------------------------------------------------------------
    def _dispatch(self, argv):
        argv = list(argv)
        self.log.append(' '.join(argv))
        if argv == ['ip', '-d', '-j', 'addr', 'show']:
            return 0, self.to_json(), ''
        if argv[:2] == ['systemctl', 'is-active']:
            return (0, 'active\n', '') if self.networkd_active else (3, 'inactive\n', '')
        if argv[:2] == ['ifquery', '--state']:
            state = self.files.get('/run/network/ifstate.%s' % argv[2])
            return (0, state, '') if state else (1, '', '')
        if argv[0] == 'ifup':
            return self._ifup(argv[-1])
        if argv[0] == 'ifdown':
            return self._ifdown(argv[-1])
        if argv == ['networkctl', 'reload']:
            return self._networkd_reload()
        if argv[:3] == ['ip', 'link', 'delete']:
            if argv[-1] not in self.links:
                return 1, '', 'Cannot find device "%s"' % argv[-1]
            self.del_link(argv[-1])
            return 0, '', ''
        if argv[:3] == ['ip', 'link', 'add']:
            # ip link add link TRUNK name PORT type vlan id N
            self.add_link(argv[6], 'vlan', lower=argv[4], vlan_id=int(argv[10]))
            return 0, '', ''
        if argv[:4] == ['ip', 'link', 'set', 'dev']:
            link = self.links[argv[4]]
            rest = argv[5:]
            while rest:
                word = rest.pop(0)
                if word == 'up':
                    link['up'] = True
                elif word == 'mtu':
                    mtu = int(rest.pop(0))
                    if link['kind'] == 'vlan' and mtu > self.links[link['lower']]['mtu']:
                        return 2, '', 'Error: mtu greater than device maximum.'
                    link['mtu'] = mtu
                elif word == 'master':
                    master = rest.pop(0)
                    if not self.enslave_ignored:
                        link['master'] = master
                elif word == 'type':
                    rest.pop(0)
                elif word == 'stp_state':
                    link['stp'] = int(rest.pop(0))
                elif word == 'forward_delay':
                    link['fd'] = int(rest.pop(0))
            return 0, '', ''
        if argv[:3] == ['ip', 'address', 'delete']:
            link = self.links[argv[-1]]
            link['addrs'].remove(argv[3])
            return 0, '', ''
        raise AssertionError('unexpected command %s' % argv)

    def _stanza(self, iface):
        for path, content in self.files.items():
            if not path.startswith(IFD + '/') and path != vb.IFUPDOWN_MAIN:
                continue
            match = re.search(r'^iface %s inet manual\n((?:    .*\n)*)' % re.escape(iface), content, re.M)
            if match:
                return dict(line.split(None, 1) for line in match.group(1).splitlines())
        return None

    def _ifup(self, bridge):
        if self.files.get('/run/network/ifstate.%s' % bridge):
            return 0, '', 'ifup: interface %s already configured' % bridge
        opts = self._stanza(bridge)
        if opts is None:
            return 1, '', 'unknown interface %s' % bridge
        port = opts['bridge_ports']
        trunk, vlan = port.rsplit('.', 1)
        self.files['/run/network/ifstate.%s' % bridge] = bridge + '\n'
        if port not in self.links and trunk in self.links:
            self.links[trunk]['up'] = True
            self.add_link(port, 'vlan', lower=trunk, vlan_id=int(vlan))
        br = self.add_link(bridge, 'bridge', up=True)
        if port in self.links:
            # bridge-utils ignores a failing `ip link set dev PORT mtu`
            if 'mtu' in opts and int(opts['mtu']) <= self.links[trunk]['mtu']:
                self.links[port]['mtu'] = int(opts['mtu'])
            if not self.enslave_ignored:
                self.links[port]['master'] = bridge
            self.links[port]['up'] = True
        br['stp'] = 1 if opts['bridge_stp'] == 'on' else 0
        if 'bridge_fd' in opts:
            br['fd'] = int(opts['bridge_fd']) * 100
        if 'mtu' in opts:
            br['mtu'] = int(opts['mtu'])
        if bridge == self.fail_ifup:
            return 1, '', 'RTNETLINK answers: Invalid argument'
        return 0, '', ''

    def _ifdown(self, bridge):
        self.files.pop('/run/network/ifstate.%s' % bridge, None)
        opts = self._stanza(bridge) or {}
        port = opts.get('bridge_ports')
        if port and port in self.links:
            self.del_link(port)
        if bridge in self.links:
            self.del_link(bridge)
        return 0, '', ''

    def _networkd_reload(self):
        if not self.networkd_active:
            return 1, '', 'Failed to reload network settings: Unit dbus-org.freedesktop.network1.service not found.'
        netdevs = {}
        networks = []
        for path, content in self.files.items():
            if os.path.dirname(path) != ND:
                continue
            kv = dict(line.split('=', 1) for line in content.splitlines() if '=' in line and not line.startswith('#'))
            vlans = [line.split('=', 1)[1] for line in content.splitlines() if line.startswith('VLAN=')]
            if path.endswith('.netdev'):
                netdevs[kv['Name']] = kv
            else:
                networks.append((kv, vlans))
        for name, kv in netdevs.items():
            if kv['Kind'] == 'bridge' and name not in self.links:
                br = self.add_link(name, 'bridge', up=True)
                br['stp'] = 1 if kv.get('STP') == 'yes' else 0
                if 'ForwardDelaySec' in kv:
                    br['fd'] = int(kv['ForwardDelaySec']) * 100
                if 'MTUBytes' in kv:
                    br['mtu'] = int(kv['MTUBytes'])
        for kv, vlans in networks:
            if kv['Name'] in self.links and vlans:
                self.links[kv['Name']]['up'] = True
                for port in vlans:
                    if port in netdevs and port not in self.links:
                        self.add_link(port, 'vlan', lower=kv['Name'], vlan_id=int(netdevs[port]['Id']),
                                      mtu=int(netdevs[port].get('MTUBytes', 1500)))
        for kv, vlans in networks:
            name = kv['Name']
            if name in self.links and 'Bridge' in kv:
                self.links[name]['master'] = kv['Bridge']
                self.links[name]['up'] = True
        return 0, '', ''


def params(networks, backend='ifupdown', **extra):
    base = {'backend': backend, 'management_interface': 'eth0', 'networks': networks,
            'isolate_trunks': True, 'timeout': 5}
    base.update(extra)
    return base


WEB = {'name': 'web', 'vlan_id': 100, 'trunk': 'eth1', 'bridge': 'br-web', 'stp': True, 'forward_delay': 2}
DB = {'name': 'db', 'vlan_id': 200, 'trunk': 'eth1', 'bridge': 'br-db', 'stp': False}


def net(**kw):
    base = {'name': 'n', 'vlan_id': 10, 'trunk': 'eth1', 'bridge': 'br10', 'stp': True, 'state': 'present'}
    base.update(kw)
    return base


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def errors_for(networks, mgmt='eth0'):
    return vb.validate(vb.normalize_networks(networks), mgmt)


def test_valid_networks_have_no_errors():
    assert errors_for([WEB, DB]) == []


@pytest.mark.parametrize('vlan', [0, 4095, 5000, -1, '100', True, None])
def test_vlan_id_outside_1_to_4094_is_refused(vlan):
    errors = errors_for([net(vlan_id=vlan)])
    assert any('not a usable 802.1Q VLAN id' in e for e in errors), errors


@pytest.mark.parametrize('vlan', [1, 4094])
def test_vlan_id_bounds_are_accepted(vlan):
    assert errors_for([net(vlan_id=vlan)]) == []


def test_duplicate_bridge_is_refused():
    errors = errors_for([net(name='a', vlan_id=10, bridge='br0'), net(name='b', vlan_id=11, bridge='br0')])
    assert any('bridge br0 is already used by networks[0]' in e for e in errors)


def test_trunk_equal_to_management_interface_is_refused():
    errors = errors_for([net(trunk='eth0')])
    assert any('trunk eth0 is the management interface' in e for e in errors)


def test_same_vlan_twice_on_one_trunk_is_refused():
    errors = errors_for([net(name='a', bridge='bra'), net(name='b', bridge='brb')])
    assert any('VLAN 10 appears twice on trunk eth1' in e for e in errors)


def test_same_vlan_on_two_trunks_is_fine():
    assert errors_for([net(name='a', bridge='bra'), net(name='b', bridge='brb', trunk='eth3')]) == []


def test_moving_a_vlan_to_a_new_bridge_is_allowed_when_the_old_one_is_absent():
    assert errors_for([net(name='old', bridge='brold', state='absent'), net(name='new', bridge='brnew')]) == []


@pytest.mark.parametrize('bridge', ['br-way-too-long-x', 'br web', 'br/x', 'br.100', '-br'])
def test_bad_bridge_names_are_refused(bridge):
    assert any('bridge name' in e for e in errors_for([net(bridge=bridge)]))


def test_fifteen_character_bridge_name_is_fine():
    assert errors_for([net(bridge='b' * 15)]) == []


def test_vlan_interface_name_over_15_characters_is_refused():
    errors = errors_for([net(trunk='enp1s0f0np0', vlan_id=4094)])
    assert any('enp1s0f0np0.4094 is longer than 15' in e for e in errors)


def test_default_bridge_name_is_br_vlan():
    assert vb.normalize_networks([{'name': 'x', 'vlan_id': 7, 'trunk': 'eth1'}])[0]['bridge'] == 'br7'


def test_addresses_on_guest_bridges_are_refused():
    errors = errors_for([net(address='192.0.2.1/24')])
    assert any('carry no host IP address' in e for e in errors)


@pytest.mark.parametrize('stp,fd,ok', [(True, 1, False), (True, 2, True), (True, 31, False), (False, 0, True)])
def test_forward_delay_bounds(stp, fd, ok):
    assert (errors_for([net(stp=stp, forward_delay=fd)]) == []) is ok


def test_empty_management_interface_is_refused():
    assert any('management interface must be given' in e for e in errors_for([net()], mgmt=''))


def test_duplicate_network_names_are_refused():
    errors = errors_for([net(name='a', bridge='b1'), net(name='a', vlan_id=11, bridge='b2')])
    assert any('network name a is used twice' in e for e in errors)


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------

def test_ifupdown_stanza_has_no_address_and_the_vlan_port():
    text = vb.render_ifupdown(vb.normalize_networks([dict(WEB, mtu=9000)])[0])
    assert text.startswith(vb.MARKER)
    assert 'auto br-web\niface br-web inet manual\n' in text
    assert '    bridge_ports eth1.100\n    bridge_stp on\n    bridge_fd 2\n    bridge_maxwait 0\n    mtu 9000\n' in text
    assert 'address ' not in text.replace('No address', '')


def test_networkd_files_of_one_network_and_of_its_trunk():
    web = vb.normalize_networks([WEB])[0]
    files = {os.path.basename(p): c for p, c in vb.render_networkd(web).items()}
    assert sorted(files) == ['60-secvirt-vlan-br-web.netdev', '60-secvirt-vlan-br-web.network',
                             '60-secvirt-vlan-br-web.port.netdev', '60-secvirt-vlan-br-web.port.network']
    assert '[NetDev]\nName=br-web\nKind=bridge\n\n[Bridge]\nSTP=yes\nForwardDelaySec=2\n' in files[
        '60-secvirt-vlan-br-web.netdev']
    assert '[NetDev]\nName=eth1.100\nKind=vlan\n\n[VLAN]\nId=100\n' in files['60-secvirt-vlan-br-web.port.netdev']
    assert files['60-secvirt-vlan-br-web.port.network'].endswith('Bridge=br-web\n')
    assert 'LinkLocalAddressing=no' in files['60-secvirt-vlan-br-web.network']
    for content in files.values():
        assert 'Address=' not in content and 'DHCP' not in content
    trunk = vb.render_networkd_trunk('eth1', {'eth1.1000', 'eth1.200', 'eth1.30'})
    assert 'Name=eth1\n' in trunk and trunk.endswith('VLAN=eth1.30\nVLAN=eth1.200\nVLAN=eth1.1000\n')


def test_sysctl_files_use_slash_keys_for_dotted_names():
    text = vb.render_sysctl(vb.normalize_networks([WEB])[0])
    assert 'net/ipv6/conf/eth1.100/disable_ipv6 = 1\n' in text
    assert 'net/ipv6/conf/br-web/disable_ipv6 = 1\n' in text
    assert 'net/ipv4/conf/br-web/arp_ignore = 8\n' in text
    trunk = vb.render_trunk_sysctl('eth1.5')
    assert 'net/ipv4/conf/eth1.5/arp_ignore = 8\n' in trunk and 'net/ipv6/conf/eth1.5/disable_ipv6 = 1\n' in trunk


def test_parse_links_reads_real_iproute2_json():
    vlan = {"ifindex": 7, "link": "eth1", "ifname": "eth1.100", "flags": ["BROADCAST", "MULTICAST", "UP"],
            "mtu": 1500, "master": "br100",
            "linkinfo": {"info_kind": "vlan", "info_data": {"protocol": "802.1Q", "id": 100, "flags": ["REORDER_HDR"]},
                         "info_slave_kind": "bridge"},
            "addr_info": []}
    links = vbh.parse_links(json.dumps([SAMPLE_BRIDGE, vlan]))
    assert links['br100'].kind == 'bridge' and links['br100'].stp_state == 1
    assert links['br100'].forward_delay == 2 and links['br100'].up
    assert links['eth1.100'].vlan_id == 100 and links['eth1.100'].lower == 'eth1'
    assert links['eth1.100'].master == 'br100' and links['eth1.100'].vlan_protocol == '802.1Q'


def test_temporary_ipv6_addresses_are_not_stable():
    data = [{"ifname": "eth0", "flags": ["UP"], "addr_info": [
        {"family": "inet", "local": "10.0.2.15", "prefixlen": 24},
        {"family": "inet6", "local": "fec0::1234", "prefixlen": 64, "temporary": True}]}]
    assert vbh.parse_links(json.dumps(data))['eth0'].stable_addresses == frozenset(['10.0.2.15/24'])


def test_ifupdown_iface_parser():
    assert vbh.parse_ifupdown_ifaces('auto eth0\niface eth0 inet dhcp\n# iface x\niface eth0 inet6 auto\n') == [
        'eth0', 'eth0']


# ---------------------------------------------------------------------------
# ifupdown: apply, idempotence, check mode, rollback
# ---------------------------------------------------------------------------

def converge(host, networks, backend='ifupdown', check_mode=False, **extra):
    return vba.run_vlan_bridges(host, params(networks, backend, **extra), check_mode=check_mode, want_diff=True)


def assert_network(host, bridge, port, trunk, vlan, stp):
    assert host.links[port]['kind'] == 'vlan' and host.links[port]['vlan_id'] == vlan
    assert host.links[port]['lower'] == trunk and host.links[port]['master'] == bridge
    assert host.links[bridge]['kind'] == 'bridge' and host.links[bridge]['stp'] == int(stp)
    assert host.links[bridge]['addrs'] == []
    assert host.proc['net/ipv6/conf/%s/disable_ipv6' % bridge] == '1'
    assert host.proc['net/ipv4/conf/%s/arp_ignore' % bridge] == '8'


def test_ifupdown_creates_networks_then_is_idempotent():
    host = FakeHost()
    result = converge(host, [WEB, DB])
    assert result['changed']
    assert [n['action'] for n in result['networks']] == ['create', 'create']
    assert_network(host, 'br-web', 'eth1.100', 'eth1', 100, True)
    assert_network(host, 'br-db', 'eth1.200', 'eth1', 200, False)
    assert host.links['br-web']['fd'] == 200
    assert os.path.join(IFD, 'secvirt-vlan-br-web') in host.files
    assert host.files[vb.sysctl_path('br-web')].count('disable_ipv6') == 2
    assert 'eth1/disable_ipv6' in host.files[vb.trunk_sysctl_path('eth1')]
    assert host.proc['net/ipv6/conf/eth1/disable_ipv6'] == '1'
    assert 'ifup br-web' in result['commands'] and 'ifup br-db' in result['commands']
    # Only the guest bridges were named in commands: never the management link.
    assert not any('eth0' in c for c in result['commands'])

    host.log = []
    again = converge(host, [WEB, DB])
    assert not again['changed']
    assert again['commands'] == []
    assert again['diff'] == []
    assert [line for line in host.log if not line.startswith(('ip -d -j', 'ifquery'))] == []


def test_check_mode_changes_nothing_and_shows_the_diff():
    host = FakeHost()
    before_links = json.loads(host.to_json())
    result = converge(host, [WEB], check_mode=True)
    assert result['changed']
    assert json.loads(host.to_json()) == before_links
    assert os.path.join(IFD, 'secvirt-vlan-br-web') not in host.files
    paths = [d['after_header'] for d in result['diff']]
    assert paths == [os.path.join(IFD, 'secvirt-vlan-br-web'), vb.trunk_sysctl_path('eth1'), vb.sysctl_path('br-web')]
    assert 'bridge_ports eth1.100' in result['diff'][0]['after'] and result['diff'][0]['before'] == ''


def test_failed_ifup_restores_everything_and_says_why():
    host = FakeHost()
    converge(host, [DB])
    files_before = dict(host.files)
    links_before = json.loads(host.to_json())
    host.fail_ifup = 'br-web'
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, [WEB, DB])
    assert 'ifup br-web failed' in err.value.msg and 'Invalid argument' in err.value.msg
    assert 'previous network configuration was restored' in err.value.msg
    assert host.files == files_before
    assert json.loads(host.to_json()) == links_before
    assert 'br-web' not in host.links and 'eth1.100' not in host.links
    assert 'ifdown --force br-web' in err.value.details['commands']


def test_mtu_the_trunk_cannot_carry_is_rolled_back():
    host = FakeHost()
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, [dict(WEB, mtu=9000)])
    assert 'ip link set dev eth1.100 mtu 9000 failed' in err.value.msg
    assert 'mtu greater than device maximum' in err.value.msg
    assert 'br-web' not in host.links and 'eth1.100' not in host.links
    assert os.path.join(IFD, 'secvirt-vlan-br-web') not in host.files
    assert not [p for p in host.files if p.startswith('/etc/sysctl.d/')]


def test_link_that_never_reaches_the_wanted_state_is_rolled_back():
    host = FakeHost()
    host.enslave_ignored = True
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, [WEB])
    assert 'did not come up within 5s: eth1.100 is not a port of br-web' in err.value.msg
    assert 'br-web' not in host.links and 'eth1.100' not in host.links
    assert os.path.join(IFD, 'secvirt-vlan-br-web') not in host.files


def test_management_link_disturbed_means_rollback():
    host = FakeHost()
    original = host._ifup

    def ifup_that_breaks_eth0(bridge):
        host.links['eth0']['addrs'] = []
        return original(bridge)
    host._ifup = ifup_that_breaks_eth0
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, [WEB])
    assert 'management interface eth0 was disturbed: it lost 10.0.2.15/24' in err.value.msg
    assert 'br-web' not in host.links


def test_stp_change_is_applied_in_place_keeping_guests_attached():
    host = FakeHost()
    converge(host, [WEB])
    host.add_link('vnet0', 'tun', up=True, master='br-web')
    result = converge(host, [dict(WEB, stp=False)])
    assert result['changed'] and result['networks'][0]['action'] == 'update'
    assert host.links['br-web']['stp'] == 0
    assert host.links['vnet0']['master'] == 'br-web'
    assert not any(c.startswith(('ifdown', 'ifup')) for c in result['commands'])
    assert 'bridge_stp off' in host.files[os.path.join(IFD, 'secvirt-vlan-br-web')]
    assert not converge(host, [dict(WEB, stp=False)])['changed']


def test_vlan_change_swaps_the_port_of_the_existing_bridge():
    host = FakeHost()
    converge(host, [WEB])
    host.add_link('vnet0', 'tun', up=True, master='br-web')
    result = converge(host, [dict(WEB, vlan_id=101)])
    assert result['changed']
    assert 'eth1.100' not in host.links
    assert_network(host, 'br-web', 'eth1.101', 'eth1', 101, True)
    assert host.links['vnet0']['master'] == 'br-web'
    assert not converge(host, [dict(WEB, vlan_id=101)])['changed']


def test_drift_is_repaired():
    host = FakeHost()
    converge(host, [WEB])
    host.links['br-web']['addrs'].append('192.0.2.9/24')
    host.links['eth1.100']['master'] = None
    result = converge(host, [WEB])
    assert result['changed'] and result['networks'][0]['action'] == 'update'
    assert_network(host, 'br-web', 'eth1.100', 'eth1', 100, True)


def test_bridge_removed_behind_ifupdowns_back_is_recreated():
    host = FakeHost()
    converge(host, [WEB])
    host.del_link('br-web')
    host.del_link('eth1.100')
    result = converge(host, [WEB])
    assert result['networks'][0]['action'] == 'create'
    assert 'ifdown --force br-web' in result['commands']
    assert_network(host, 'br-web', 'eth1.100', 'eth1', 100, True)


def test_absent_network_is_taken_down_and_forgotten():
    host = FakeHost()
    converge(host, [WEB, DB])
    result = converge(host, [dict(WEB, state='absent'), DB])
    assert result['networks'][0]['action'] == 'remove'
    assert 'ifdown br-web' in result['commands']
    assert 'br-web' not in host.links and 'eth1.100' not in host.links
    assert os.path.join(IFD, 'secvirt-vlan-br-web') not in host.files
    assert vb.sysctl_path('br-web') not in host.files
    assert vb.trunk_sysctl_path('eth1') in host.files  # br-db still uses eth1
    assert_network(host, 'br-db', 'eth1.200', 'eth1', 200, False)
    assert not converge(host, [dict(WEB, state='absent'), DB])['changed']


def test_unlisted_networks_are_left_alone():
    host = FakeHost()
    converge(host, [WEB, DB])
    files = dict(host.files)
    result = converge(host, [DB])
    assert not result['changed'] and host.files == files
    assert 'br-web' in host.links


def test_trunk_isolation_goes_with_the_last_network_of_the_trunk():
    host = FakeHost()
    converge(host, [WEB])
    converge(host, [dict(WEB, state='absent')])
    assert vb.trunk_sysctl_path('eth1') not in host.files
    assert not [p for p in host.files if 'secvirt' in p]


# ---------------------------------------------------------------------------
# preflight: refused before any change
# ---------------------------------------------------------------------------

def refused(host, networks, backend='ifupdown', **extra):
    files, links = dict(host.files), host.to_json()
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, networks, backend, **extra)
    assert host.files == files and host.to_json() == links, 'a refused run changed the host'
    assert not [line for line in host.log if not line.startswith(('ip -d -j', 'systemctl is-active', 'ifquery'))]
    return err.value.msg


def test_invalid_input_is_refused_before_any_command():
    host = FakeHost()
    msg = refused(host, [dict(WEB, vlan_id=4095)])
    assert 'vlan_id 4095 is not a usable 802.1Q VLAN id' in msg
    assert host.log == []


def test_missing_trunk_is_refused():
    assert 'trunk eth9 does not exist' in refused(FakeHost(), [dict(WEB, trunk='eth9')])


def test_missing_management_interface_is_refused():
    host = FakeHost()
    host.del_link('eth0')
    assert 'management interface eth0 does not exist' in refused(host, [WEB])


def test_existing_bridge_with_a_physical_port_is_refused():
    host = FakeHost()
    host.add_link('eth3', None, up=True)
    host.add_link('br-web', 'bridge', up=True)
    host.links['eth3']['master'] = 'br-web'
    assert 'bridge br-web also bridges eth3' in refused(host, [WEB])


def test_existing_bridge_with_a_host_address_is_refused():
    host = FakeHost()
    host.add_link('br-web', 'bridge', up=True, addrs=['192.0.2.1/24'])
    assert 'already carries host addresses 192.0.2.1/24' in refused(host, [WEB])


def test_trunk_with_a_host_address_is_refused_when_isolated():
    host = FakeHost()
    host.links['eth1']['addrs'] = ['198.51.100.1/24']
    assert 'trunk eth1 carries host addresses' in refused(host, [WEB])
    assert converge(host, [WEB], isolate_trunks=False)['changed']


def test_removing_a_bridge_with_guests_attached_is_refused():
    host = FakeHost()
    converge(host, [WEB])
    host.add_link('vnet3', 'tun', up=True, master='br-web')
    host.log = []
    assert 'still has guest interfaces vnet3' in refused(host, [dict(WEB, state='absent')])


def test_bridge_declared_by_the_admin_elsewhere_is_refused():
    host = FakeHost()
    host.files[vb.IFUPDOWN_MAIN] += 'auto br-web\niface br-web inet static\n    address 192.0.2.1/24\n'
    assert 'br-web is already declared in the ifupdown configuration' in refused(host, [WEB])


def test_interfaces_without_source_line_is_refused():
    host = FakeHost()
    host.files[vb.IFUPDOWN_MAIN] = 'auto eth0\niface eth0 inet dhcp\n'
    assert 'does not source /etc/network/interfaces.d' in refused(host, [WEB])


def test_missing_bridge_utils_is_refused():
    host = FakeHost()
    del host.files['/usr/sbin/brctl']
    assert 'bridge-utils is not installed' in refused(host, [WEB])


def test_name_taken_by_a_non_bridge_is_refused():
    host = FakeHost()
    host.add_link('br-web', 'dummy', up=True)
    assert 'br-web already exists and is not a bridge' in refused(host, [WEB])


def test_unknown_backend_is_refused():
    with pytest.raises(vb.VlanBridgeError, match='unsupported network backend'):
        converge(FakeHost(), [WEB], backend='networkmanager')


# ---------------------------------------------------------------------------
# systemd-networkd
# ---------------------------------------------------------------------------

def test_networkd_creates_networks_then_is_idempotent():
    host = FakeHost('networkd')
    result = converge(host, [WEB, DB], backend='networkd')
    assert result['changed']
    assert result['commands'].count('networkctl reload') == 1
    assert_network(host, 'br-web', 'eth1.100', 'eth1', 100, True)
    assert_network(host, 'br-db', 'eth1.200', 'eth1', 200, False)
    assert vb.trunk_network_path('eth1') in host.files
    assert not any('eth0' in c for c in result['commands'])
    again = converge(host, [WEB, DB], backend='networkd')
    assert not again['changed'] and again['commands'] == []


def test_networkd_removal_deletes_links_files_and_reloads():
    host = FakeHost('networkd')
    converge(host, [WEB, DB], backend='networkd')
    result = converge(host, [dict(WEB, state='absent'), DB], backend='networkd')
    assert 'ip link delete dev br-web' in result['commands']
    assert 'ip link delete dev eth1.100' in result['commands']
    assert 'networkctl reload' in result['commands']
    assert not [p for p in host.files if 'br-web' in p]
    assert host.files[vb.trunk_network_path('eth1')].endswith('VLAN=eth1.200\n')
    assert not converge(host, [dict(WEB, state='absent'), DB], backend='networkd')['changed']


def test_networkd_unlisted_networks_keep_their_vlan_on_the_trunk():
    host = FakeHost('networkd')
    converge(host, [WEB, DB], backend='networkd')
    files = dict(host.files)
    assert not converge(host, [DB], backend='networkd')['changed']
    assert host.files == files
    # moving DB to VLAN 201 keeps WEB's VLAN=eth1.100 and drops eth1.200
    converge(host, [dict(DB, vlan_id=201)], backend='networkd')
    trunk = host.files[vb.trunk_network_path('eth1')]
    assert trunk.endswith('VLAN=eth1.100\nVLAN=eth1.201\n')


def test_networkd_not_running_is_refused():
    host = FakeHost('networkd')
    host.networkd_active = False
    assert 'systemd-networkd is not running' in refused(host, [WEB], backend='networkd')


def test_networkd_trunk_claimed_elsewhere_times_out_and_rolls_back():
    host = FakeHost('networkd')
    original = host._networkd_reload

    def reload_ignoring_vlans():
        saved = {p: c for p, c in host.files.items() if 'trunk' in p}
        for p in saved:
            del host.files[p]
        try:
            return original()
        finally:
            host.files.update(saved)
    host._networkd_reload = reload_ignoring_vlans
    with pytest.raises(vb.VlanBridgeError) as err:
        converge(host, [WEB], backend='networkd')
    assert 'VLAN interface eth1.100 does not exist' in err.value.msg
    assert 'another .network file may match it' in err.value.msg
    assert 'br-web' not in host.links
    assert not [p for p in host.files if p.startswith(ND)]
