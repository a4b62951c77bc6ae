"""posture: the controls evaluated over fabricated facts (a hardened host, then one
defect at a time), the parsers, the collection from a host tree below tmp_path, and
the TLS probe against real local TLS servers."""
import copy
import datetime
import json
import os
import socket
import ssl
import struct
import threading
import time

import pytest

from ansible_collections.secvirt.kvm.plugins.module_utils import posture as pm
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as xx
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xcrl
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_issue as xi

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
UUID1 = '6695eb01-f6a4-8304-79aa-97f2502e193f'
UUID2 = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0'
PARAMS = pm.normalize_params({})


# --------------------------------------------------------------------------
# A PKI like the pki role's
# --------------------------------------------------------------------------

def _pem(cert):
    return xx.certificate_pem(cert).decode()


def _leaf(ca, subject, profile='server', days=365, now=NOW - 10 * DAY):
    key = xx.generate_private_key('ecdsa-p256')
    return key, xi.issue_certificate(ca[0], ca[1], key.public_key(), subject, ['kvm1.example.org'], [], profile, days, now=now)


@pytest.fixture(scope='module')
def pki():
    ca = xx.create_ca('ecdsa-p256', {'C': 'DE', 'O': 'Example', 'CN': 'Example CA'}, 3650, now=NOW - 100 * DAY)
    other = xx.create_ca('ecdsa-p256', {'C': 'DE', 'O': 'Example', 'CN': 'Example CA'}, 3650, now=NOW - 100 * DAY)
    server = _leaf(ca, {'C': 'DE', 'O': 'Example', 'OU': 'servers', 'CN': 'kvm1.example.org'})
    qemu = _leaf(ca, {'C': 'DE', 'O': 'Example', 'OU': 'qemu', 'CN': 'kvm1.example.org'})
    client = _leaf(ca, {'C': 'DE', 'O': 'Example', 'OU': 'qemu', 'CN': 'kvm1.example.org'}, profile='client')
    return {
        'ca': ca, 'ca_pem': _pem(ca[1]), 'server': server, 'server_pem': _pem(server[1]), 'qemu_pem': _pem(qemu[1]),
        'client_pem': _pem(client[1]),
        'expiring_pem': _pem(_leaf(ca, {'C': 'DE', 'O': 'Example', 'OU': 'servers', 'CN': 'kvm1'}, days=20)[1]),
        'foreign_pem': _pem(_leaf(other, {'C': 'DE', 'O': 'Example', 'OU': 'servers', 'CN': 'kvm1'})[1]),
        'crl_pem': xcrl.crl_pem(xcrl.sign_crl(ca[0], ca[1], {}, 1, 30, now=NOW - DAY)).decode(),
        'old_crl_pem': xcrl.crl_pem(xcrl.sign_crl(ca[0], ca[1], {}, 1, 7, now=NOW - 10 * DAY)).decode(),
        'foreign_crl_pem': xcrl.crl_pem(xcrl.sign_crl(other[0], other[1], {}, 1, 30, now=NOW - DAY)).decode(),
    }


# --------------------------------------------------------------------------
# A hardened host, as facts
# --------------------------------------------------------------------------

TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'


def tcp_line(hex_address, port, state='0A'):
    return '   0: %s:%04X 00000000:0000 %s 00000000:00000000 00:00000000 00000000     0        0 1234 1\n' % (hex_address, port, state)


LIBVIRTD_CONF = '''# managed
listen_tls = 1
listen_tcp = 0
auth_tcp = "sasl"
tls_allowed_dn_list = ["C=DE,O=Example,OU=virt-admins,CN=*"]
audit_level = 2
audit_logging = 1
'''

QEMU_CONF = '''security_driver = "apparmor"
security_default_confined = 1
security_require_confined = 1
vnc_listen = "10.254.0.10"
vnc_tls = 1
vnc_tls_x509_verify = 1
spice_listen = "10.254.0.10"
spice_tls = 1
migrate_tls_force = 1
migrate_tls_x509_verify = 1
migration_port_min = 49152
migration_port_max = 49215
remote_display_port_min = 5900
remote_display_port_max = 5999
'''


def domain_xml(name, uuid, live=True, bridge='br0', filterref=True, driver=True, backing=None, declared_backing=False,
               vnc_listen='10.254.0.10', spice_mode='secure', port=None):
    ref = "<filterref filter='clean-traffic'/>" if filterref else ''
    drv = "<driver name='qemu' type='qcow2'/>" if driver else "<driver name='qemu'/>"
    chain = ''
    if backing and (live or declared_backing):
        chain = ("<backingStore type='file'><format type='qcow2'/><source file='%s'/><backingStore/></backingStore>" % backing)
    elif live:
        chain = '<backingStore/>'
    target = "<target dev='vnet%d'/>" % (0 if name == 'web01' else 1) if live else ''
    spice = "<graphics type='spice' autoport='yes' listen='10.254.0.10' defaultMode='%s'/>" % spice_mode if spice_mode else ''
    return '''<domain type='kvm'><name>%s</name><uuid>%s</uuid><devices>
  <disk type='file' device='disk'>%s<source file='/var/lib/libvirt/images/%s.qcow2'/>%s<target dev='vda' bus='virtio'/></disk>
  <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/mapper/%s-data'/><target dev='vdb' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>
  <interface type='bridge'><source bridge='%s'/>%s%s</interface>
  <graphics type='vnc' port='%s' autoport='yes' listen='%s'/>
  %s
</devices></domain>''' % (name, uuid, drv, name, chain, name, bridge, target, ref, port or '-1', vnc_listen, spice)


def guest(name, uuid, pid, label=None, uid=64055, seccomp=2, cap='0000000000000000', **xml):
    argv = ['/usr/bin/qemu-system-x86_64', '-name', 'guest=%s' % name,
            '-vnc', '10.254.0.10:0,tls-creds=vnc-tls-creds0,audiodev=audio1',
            '-spice', 'tls-port=5901,addr=10.254.0.10,disable-ticketing=on,x509-dir=/etc/pki/libvirt-spice,seamless-migration=on']
    return {'name': name, 'uuid': uuid, 'persistent': True, 'xml_error': None,
            'live_xml': domain_xml(name, uuid, **xml), 'inactive_xml': domain_xml(name, uuid, live=False, **xml),
            'process': {'name': name, 'uuid': uuid, 'pid': pid, 'uid': uid, 'seccomp': seccomp, 'cap_eff': cap,
                        'lsm_label': label if label is not None else 'libvirt-%s (enforce)' % uuid,
                        'own_mount_ns': True, 'confined': True},
            'cmdline': argv}


def nft_rule(expr, chain='input', table='secvirt_qemu_tls', family='inet'):
    return {'rule': {'family': family, 'table': table, 'chain': chain, 'handle': 9, 'expr': expr}}


DPORT = {'payload': {'protocol': 'tcp', 'field': 'dport'}}


def dport(right):
    return {'match': {'op': '==', 'left': DPORT, 'right': right}}


def qemu_tls_table(ports=(49152, 49215)):
    return [
        {'table': {'family': 'inet', 'name': 'secvirt_qemu_tls', 'handle': 3}},
        {'chain': {'family': 'inet', 'table': 'secvirt_qemu_tls', 'name': 'input', 'handle': 1, 'type': 'filter',
                   'hook': 'input', 'prio': -10, 'policy': 'accept'}},
        nft_rule([{'match': {'op': '==', 'left': {'meta': {'key': 'iifname'}}, 'right': 'lo'}}, {'accept': None}]),
        nft_rule([{'match': {'op': 'in', 'left': {'ct': {'key': 'state'}}, 'right': ['established', 'related']}}, {'accept': None}]),
        nft_rule([dport({'range': [5900, 5999]}), {'counter': {'packets': 0, 'bytes': 0}}, {'drop': None}]),
        nft_rule([{'match': {'op': '==', 'left': {'payload': {'protocol': 'ip', 'field': 'saddr'}}, 'right': '@peers_v4'}},
                  dport({'range': list(ports)}), {'counter': {'packets': 3, 'bytes': 180}}, {'accept': None}]),
        nft_rule([dport({'range': list(ports)}), {'counter': {'packets': 0, 'bytes': 0}}, {'drop': None}]),
    ]


def libvirt_remote_table(ports=(16509, 16514)):
    """What `nft -j list ruleset` shows of libvirt_remote's table (the shape
    of roles/libvirt_remote/templates/libvirt-remote.nft.j2)."""
    table = 'secvirt_libvirt_remote'
    return [
        {'table': {'family': 'inet', 'name': table, 'handle': 4}},
        {'chain': {'family': 'inet', 'table': table, 'name': 'input', 'handle': 1, 'type': 'filter',
                   'hook': 'input', 'prio': -10, 'policy': 'accept'}},
        nft_rule([{'match': {'op': '==', 'left': {'meta': {'key': 'iif'}}, 'right': 'lo'}},
                  dport({'set': [16509, 16514]}), {'accept': None}], table=table),
        nft_rule([{'match': {'op': '==', 'left': {'payload': {'protocol': 'ip', 'field': 'saddr'}}, 'right': '@management_v4'}},
                  dport({'set': [16514]}), {'accept': None}], table=table),
        nft_rule([dport({'set': list(ports)}), {'counter': {'packets': 0, 'bytes': 0}}, {'drop': None}], table=table),
    ]


def ok(out):
    return {'rc': 0, 'out': out, 'err': ''}


AUDITCTL_L = '''-a never,exit -F arch=b64 -S all -F path=/dev/kvm -F uid=64055
-w /etc/pki/libvirt/private/serverkey.pem -p rwa -k virt_tls_privkey
-w /etc/libvirt -p wa -k virt_libvirt_cfg
-a always,exit -F dir=/var/lib/libvirt/images -F perm=wa -F uid!=64055 -F key=virt_image_change
-a always,exit -F arch=b64 -S execve,execveat -F uid=64055 -F key=virt_qemu_crossdomain
-a always,exit -F arch=b32 -S execve,execveat -F uid=64055 -F key=virt_qemu_crossdomain
'''
AUDITCTL_S = 'enabled 1\nfailure 1\npid 812\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0\n'
MOUNTINFO = '''22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 22 253:0 / /var/lib/libvirt/images rw,relatime shared:20 - ext4 /dev/mapper/images rw
41 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
'''
IP_ADDR = [
    {'ifname': 'lo', 'addr_info': [{'family': 'inet', 'local': '127.0.0.1', 'prefixlen': 8, 'scope': 'host'}]},
    {'ifname': 'eno1', 'addr_info': [{'family': 'inet', 'local': '192.0.2.10', 'prefixlen': 24, 'scope': 'global'}]},
    {'ifname': 'br0', 'addr_info': [{'family': 'inet6', 'local': 'fe80::1', 'prefixlen': 64, 'scope': 'link'}]},
    {'ifname': 'virbr0', 'addr_info': [{'family': 'inet', 'local': '192.168.122.1', 'prefixlen': 24, 'scope': 'global'}]},
]


def hardened(pki):
    """The facts of a host site.yml hardened, with two confined guests on an encrypted image directory."""
    certs = {pm.CA_CERT: pki['ca_pem'], pm.SERVER_CERT: pki['server_pem'], pm.CA_CRL: pki['crl_pem']}
    for _what, cert, ca, _crl in pm.QEMU_CERTS:
        certs[cert] = pki['client_pem'] if cert.endswith('client-cert.pem') else pki['qemu_pem']
        certs[ca] = pki['ca_pem']
    return {
        'now': NOW,
        'daemon_conf': {'libvirtd.conf': LIBVIRTD_CONF, 'virtproxyd.conf': None, 'virtqemud.conf': None},
        'qemu_conf': QEMU_CONF,
        'sasl_conf': 'mech_list: scram-sha-256\nsasldb_path: /etc/libvirt/passwd.db\n',
        'listeners': {'tcp': TCP_HEADER + tcp_line('0100007F', 22) + tcp_line('00000000', 16514),
                      'tcp6': TCP_HEADER + tcp_line('0' * 32, 16514)},
        'handshake': {'address': '127.0.0.1:16514', 'outcome': 'refused_after_handshake',
                      'detail': '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required',
                      'version': 'TLSv1.3', 'cipher': 'TLS_AES_256_GCM_SHA384',
                      'peer_subject': 'CN=kvm1.example.org,OU=servers,O=Example,C=DE'},
        'certs': certs,
        'guests': {'error': None, 'domains': [guest('db01', UUID2, 4343), guest('web01', UUID1, 4242)],
                   'networks': [{'name': 'default', 'bridge': 'virbr0', 'forward': 'nat', 'active': True}],
                   'secmodels': ['apparmor', 'dac']},
        'lsm': {'apparmor': {'enabled': True, 'profiles': {'libvirt-%s' % UUID1: 'enforce', 'libvirt-%s' % UUID2: 'enforce'}},
                'selinux': {'enabled': False, 'enforcing': None}},
        'firewall': {'nft': ok(json.dumps({'nftables': [{'metainfo': {'json_schema_version': 1}}] + qemu_tls_table()
                                           + libvirt_remote_table()})),
                     'firewalld_running': False, 'default_zone': None, 'zones': None},
        'bridges': {'br0': {'ports': ['eno2', 'vnet0', 'vnet1'], 'guest_ports': ['vnet0', 'vnet1'],
                            'nf_call': {'iptables': 0, 'ip6tables': 0, 'arptables': 0}}},
        'addresses': ok(json.dumps(IP_ADDR)),
        'bridge_nf': {'loaded': True, 'iptables': 0, 'ip6tables': 0, 'arptables': 0},
        'image_dirs': {'/var/lib/libvirt/images': {
            'exists': True, 'kind': 'dir', 'path': '/var/lib/libvirt/images', 'mode': 0o711, 'uid': 0, 'gid': 0, 'group': 'root',
            'error': None, 'truncated': False,
            'entries': [{'path': '/var/lib/libvirt/images/web01.qcow2', 'kind': 'file', 'mode': 0o600, 'uid': 64055, 'gid': 64055,
                         'group': 'libvirt-qemu'},
                        {'path': '/var/lib/libvirt/images/db01.qcow2', 'kind': 'file', 'mode': 0o660, 'uid': 0, 'gid': 64055,
                         'group': 'libvirt-qemu'},
                        {'path': '/var/lib/libvirt/images/iso', 'kind': 'dir', 'mode': 0o700, 'uid': 0, 'gid': 0, 'group': 'root'}]}},
        'block': {'mountinfo': MOUNTINFO,
                  'dm': {'dm-0': {'name': 'images', 'uuid': 'CRYPT-LUKS2-aaaa-images', 'dev': '253:0', 'slaves': ['vdb']},
                         'dm-1': {'name': 'web01-data', 'uuid': 'CRYPT-LUKS2-bbbb-web01-data', 'dev': '253:1', 'slaves': ['dm-3']},
                         'dm-2': {'name': 'db01-data', 'uuid': 'LVM-xyz', 'dev': '253:2', 'slaves': ['dm-4']},
                         'dm-3': {'name': 'vg_guests-web01_luks', 'uuid': 'LVM-abc', 'dev': '253:3', 'slaves': ['vdc']},
                         'dm-4': {'name': 'crypt-pv', 'uuid': 'CRYPT-LUKS2-cccc-crypt-pv', 'dev': '253:4', 'slaves': ['vdd']}},
                  'loops': {'loop0': '/var/lib/snapd/snaps/core.snap'}, 'nbd': {}},
        'audit': {'list': ok(AUDITCTL_L), 'status': ok(AUDITCTL_S)},
        'cmdline': 'BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=/dev/vda1 ro quiet audit=1 audit_backlog_limit=8192\n',
    }


def run_one(facts, cid, params=None):
    result = pm.evaluate(facts, params or PARAMS, [cid])
    control = result['controls'][0]
    return control['status'], control['evidence']


# --------------------------------------------------------------------------
# The hardened host passes everything, with evidence
# --------------------------------------------------------------------------

def test_a_hardened_host_passes_every_control(pki):
    result = pm.evaluate(hardened(pki), PARAMS)
    statuses = dict((c['id'], c['status']) for c in result['controls'])
    assert [c['id'] for c in result['controls']] == sorted(pm.CATALOG)
    assert statuses == dict((cid, 'pass') for cid in pm.CATALOG), [
        (c['id'], c['evidence']) for c in result['controls'] if c['status'] != 'pass']
    assert result['summary'] == {'pass': len(pm.CATALOG), 'fail': 0, 'warn': 0, 'not_applicable': 0}
    for control in result['controls']:
        assert set(control) == {'id', 'title', 'area', 'severity', 'status', 'evidence', 'references'}
        assert control['area'] in pm.AREAS and control['severity'] in ('high', 'medium', 'low')
        assert control['evidence'] and all(isinstance(line, str) and line for line in control['evidence'])
        assert control['references'] and all(r.startswith(('003: ', '004: ')) for r in control['references'])
        assert 'NIST' not in json.dumps(control)


def test_evidence_of_the_hardened_host(pki):
    facts = hardened(pki)
    assert run_one(facts, 'SVK-TLS-001')[1] == ['listening on 0.0.0.0:16514 (/proc/net/tcp)', 'listening on [::]:16514 (/proc/net/tcp6)']
    assert 'refused_after_handshake: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required' \
        in run_one(facts, 'SVK-TLS-002')[1]
    evidence = run_one(facts, 'SVK-TLS-005')[1]
    assert evidence[0].startswith('libvirtd server /etc/pki/libvirt/servercert.pem: CN=kvm1.example.org,OU=servers,O=Example,C=DE, '
                                  'not after ') and evidence[0].endswith(': chain and dates OK')
    assert '/etc/pki/CA/cacrl.pem: issuer CN=Example CA,O=Example,C=DE, 0 revoked, nextUpdate' in run_one(facts, 'SVK-TLS-006')[1][0]
    assert run_one(facts, 'SVK-CNF-003')[1] == [
        'guest db01 pid 4343: uid 64055, Seccomp 2, CapEff 0000000000000000',
        'guest web01 pid 4242: uid 64055, Seccomp 2, CapEff 0000000000000000']
    assert run_one(facts, 'SVK-AUD-001')[1] == [
        'auditctl -s: enabled 1, pid 812', 'auditctl -l: 2 virt_* syscall rule(s), 3 virt_* file watch(es)',
        'keys: virt_image_change, virt_libvirt_cfg, virt_qemu_crossdomain, virt_tls_privkey']
    assert 'guest web01 vdb /dev/mapper/web01-data: on dm-crypt web01-data' in run_one(facts, 'SVK-STO-002')[1]
    assert 'guest db01 vdb /dev/mapper/db01-data: on dm-crypt crypt-pv' in run_one(facts, 'SVK-STO-002')[1]
    assert run_one(facts, 'SVK-MIG-002')[1][1] == 'table inet secvirt_qemu_tls chain input: tcp dport { 49152-49215 } drop'


# --------------------------------------------------------------------------
# One defect at a time
# --------------------------------------------------------------------------

def _conf(key, text):
    def change(facts):
        facts[key] = text
    return change


def _libvirtd(text):
    def change(facts):
        facts['daemon_conf']['libvirtd.conf'] = text
    return change


def _guest(index, **changes):
    def change(facts):
        domain = facts['guests']['domains'][index]
        for key, value in changes.items():
            if key in ('live_xml', 'inactive_xml', 'cmdline', 'persistent'):
                domain[key] = value
            else:
                domain['process'][key] = value
    return change


def _set(path, value):
    def change(facts):
        target = facts
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


DEFECTS = [
    # TLS
    ('SVK-TLS-001', _set(('listeners',), {'tcp': TCP_HEADER + tcp_line('0100007F', 22), 'tcp6': None}), 'fail', 'nothing listens'),
    ('SVK-TLS-002', _set(('handshake',), {'address': '127.0.0.1:16514', 'outcome': 'answered', 'detail': 'auth-list answered'}),
     'fail', 'answered: auth-list answered'),
    ('SVK-TLS-002', _set(('handshake',), {'address': '127.0.0.1:16514', 'outcome': 'no_answer', 'detail': 'no answer'}), 'warn', 'no_answer'),
    ('SVK-TLS-002', _set(('handshake',), {'address': None, 'outcome': 'not_attempted', 'detail': 'nothing listens on TCP port 16514'}),
     'fail', 'cannot be measured'),
    ('SVK-TLS-002', _set(('handshake',), {'address': '127.0.0.1:16514', 'outcome': 'refused_in_handshake',
                                          'detail': '[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure'}),
     'pass', 'refused_in_handshake'),
    ('SVK-TLS-003', _libvirtd(LIBVIRTD_CONF.replace('tls_allowed_dn_list', '#tls_allowed_dn_list')), 'fail', 'not set'),
    ('SVK-TLS-003', _libvirtd(LIBVIRTD_CONF.replace('OU=virt-admins,CN=*', 'OU=*,CN=*')), 'fail',
     "'C=DE,O=Example,OU=*,CN=*' admits C=DE,O=Example,OU=servers,CN=kvm1.example.org"),
    ('SVK-TLS-003', _libvirtd(LIBVIRTD_CONF.replace('"C=DE,O=Example,OU=virt-admins,CN=*"', '"CN=kvm1.example.org,*"')), 'fail',
     "'CN=kvm1.example.org,*' admits CN=kvm1.example.org,OU=servers,O=Example,C=DE"),
    ('SVK-TLS-003', _libvirtd(LIBVIRTD_CONF.replace('"C=DE,O=Example,OU=virt-admins,CN=*"', '"*"')), 'fail', 'bare *'),
    ('SVK-TLS-003', _set(('certs',), {}), 'warn', 'no server or QEMU certificate could be read'),
    ('SVK-TLS-003', _libvirtd(None), 'fail', '/etc/libvirt/libvirtd.conf: absent (libvirt is not installed)'),
    ('SVK-TLS-004', _libvirtd(LIBVIRTD_CONF.replace('auth_tcp = "sasl"', 'auth_tcp = "none"').replace('listen_tcp = 0', 'listen_tcp = 1')),
     'fail', 'TCP without authentication'),
    ('SVK-TLS-004', _set(('listeners', 'tcp'), TCP_HEADER + tcp_line('00000000', 16509)), 'pass', 'mech_list: scram-sha-256'),
    ('SVK-TLS-004', lambda f: (_libvirtd(LIBVIRTD_CONF.replace('auth_tcp = "sasl"', 'auth_tcp = "none"'))(f),
                               _set(('listeners', 'tcp'), TCP_HEADER + tcp_line('00000000', 16509))(f)), 'fail', 'listening on 0.0.0.0:16509'),
    ('SVK-TLS-004', _libvirtd(LIBVIRTD_CONF.replace('auth_tcp = "sasl"', 'auth_tcp = "none"')), 'pass', 'nothing listens on TCP port 16509'),
    ('SVK-TLS-005', lambda f: f['certs'].update({pm.SERVER_CERT: f['certs']['/etc/pki/libvirt-vnc/server-cert.pem']}), 'pass',
     'OU=qemu'),
    ('SVK-TLS-005', lambda f: f['certs'].pop(pm.SERVER_CERT), 'fail', 'servercert.pem: absent'),
    ('SVK-TLS-005', lambda f: f['certs'].pop(pm.CA_CERT), 'fail', 'the CA /etc/pki/CA/cacert.pem is absent'),
    ('SVK-TLS-005', lambda f: f['certs'].pop('/etc/pki/libvirt-spice/server-cert.pem'), 'pass', 'server-cert.pem: absent, not checked'),
    ('SVK-TLS-005', lambda f: f['certs'].update({'/etc/pki/libvirt-vnc/server-cert.pem': 'garbage'}), 'fail', 'not a PEM certificate'),
    # TLS-005 with the foreign and expiring certificates: see below (they need the pki fixture)
    ('SVK-TLS-006', lambda f: f['certs'].pop(pm.CA_CRL), 'not_applicable', 'no CRL installed'),
    ('SVK-TLS-006', lambda f: (f['certs'].pop(pm.CA_CRL), f['daemon_conf'].update(
        {'libvirtd.conf': LIBVIRTD_CONF + 'crl_file = "/etc/pki/CA/cacrl.pem"\n'})), 'fail', 'absent, but libvirtd.conf crl_file names it'),
    # consoles
    ('SVK-CON-001', _conf('qemu_conf', QEMU_CONF.replace('vnc_tls_x509_verify = 1', '')), 'fail',
     'vnc_tls_x509_verify not set (nor default_tls_x509_verify)'),
    ('SVK-CON-001', _conf('qemu_conf', QEMU_CONF.replace('vnc_tls_x509_verify = 1', 'default_tls_x509_verify = 1')), 'pass',
     'vnc_tls_x509_verify not set, default_tls_x509_verify = 1'),
    ('SVK-CON-001', _guest(1, cmdline=['qemu', '-vnc', '10.254.0.10:0,audiodev=audio1']), 'fail',
     'guest web01 serves VNC without TLS on 10.254.0.10:0 (command line)'),
    ('SVK-CON-001', _conf('qemu_conf', None), 'fail', 'qemu.conf: absent'),
    ('SVK-CON-001', _conf('qemu_conf', 'vnc_tls = \n'), 'fail', 'does not parse'),
    ('SVK-CON-002', _conf('qemu_conf', QEMU_CONF.replace('spice_tls = 1', 'spice_tls = 0')), 'fail', 'spice_tls = 0'),
    ('SVK-CON-002', _guest(0, cmdline=['qemu', '-spice', 'port=5900,tls-port=5901,addr=10.254.0.10']), 'fail',
     'guest db01 serves SPICE with a plaintext port 5900 (command line)'),
    ('SVK-CON-002', _guest(0, cmdline=None, live_xml=domain_xml('db01', UUID2, spice_mode='any')), 'fail',
     'guest db01 serves SPICE with a plaintext port 10.254.0.10 (live XML)'),
    ('SVK-CON-003', _conf('qemu_conf', QEMU_CONF.replace('"10.254.0.10"', '"0.0.0.0"', 1)), 'fail', 'vnc_listen = "0.0.0.0" (wildcard'),
    ('SVK-CON-003', _guest(1, live_xml=domain_xml('web01', UUID1, vnc_listen='::')), 'fail', 'guest web01: VNC console listens on ::'),
    ('SVK-CON-003', _conf('qemu_conf', 'vnc_tls = 1\n'), 'pass', 'vnc_listen not set (libvirt default "127.0.0.1")'),
    # migration
    ('SVK-CON-004', _conf('qemu_conf', QEMU_CONF.replace('remote_display_port_max = 5999\n', '')), 'fail',
     'table inet secvirt_qemu_tls has no input rule that drops the whole console range'),
    ('SVK-CON-004', _conf('qemu_conf', QEMU_CONF.replace('remote_display_port_max = 5999\n', '')), 'fail',
     'console ports 5900-65535 (qemu.conf)'),
    ('SVK-CON-004', _set(('firewall', 'nft'), ok(json.dumps({'nftables': libvirt_remote_table()}))), 'fail',
     'table inet secvirt_qemu_tls is not loaded and no input chain drops the console range'),
    ('SVK-CON-004', _conf('qemu_conf', QEMU_CONF.replace('5999', '5950')), 'pass',
     'table inet secvirt_qemu_tls chain input: tcp dport { 5900-5999 } drop'),
    ('SVK-MIG-001', _conf('qemu_conf', QEMU_CONF.replace('migrate_tls_force = 1', '')), 'fail', 'migrate_tls_force not set'),
    ('SVK-MIG-001', _conf('qemu_conf', QEMU_CONF.replace('migrate_tls_x509_verify = 1', 'migrate_tls_x509_verify = 0')), 'fail',
     'migrate_tls_x509_verify = 0'),
    ('SVK-TLS-007', _set(('firewall', 'nft'), ok(json.dumps({'nftables': qemu_tls_table()}))), 'fail',
     'table inet secvirt_libvirt_remote is not loaded and no input chain drops port 16514'),
    ('SVK-TLS-007', _set(('firewall', 'nft'), ok(json.dumps({'nftables': qemu_tls_table() + libvirt_remote_table((16509,))}))),
     'fail', 'table inet secvirt_libvirt_remote has no input rule that drops port 16514 and no input chain drops port 16514'),
    ('SVK-TLS-007', _set(('firewall', 'nft'), ok(json.dumps({'nftables': libvirt_remote_table()[:2] + [
        nft_rule([dport(16514), {'accept': None}], table='secvirt_libvirt_remote')] + libvirt_remote_table()[2:]}))), 'fail',
     'tcp dport { 16514 } accept from every source'),
    ('SVK-TLS-007', _set(('firewall', 'nft'), None), 'fail', 'firewalld is not running and nft is not installed: nothing restricts port 16514'),
    ('SVK-TLS-007', _set(('listeners',), {'tcp': TCP_HEADER + tcp_line('0100007F', 22), 'tcp6': None}), 'not_applicable',
     'nothing listens on TCP port 16514'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), ok('{"nftables": []}')), 'fail', 'is not loaded and no input chain drops the range'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), None), 'fail', 'nft is not installed'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), {'rc': 1, 'out': '', 'err': 'Operation not permitted'}), 'fail', 'Operation not permitted'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), ok(json.dumps({'nftables': qemu_tls_table((49152, 49200))}))), 'fail',
     'table inet secvirt_qemu_tls has no input rule that drops the whole range and no input chain drops the range'),
    ('SVK-MIG-002', _conf('qemu_conf', QEMU_CONF.replace('49215', '49200')), 'pass', 'migration ports 49152-49200'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), ok(json.dumps({'nftables': qemu_tls_table()[:2] + [
        nft_rule([dport({'set': [22, {'range': [49000, 50000]}]}), {'accept': None}])] + qemu_tls_table()[2:]}))), 'fail',
     'tcp dport { 22, 49000-50000 } accept from every source'),
    ('SVK-MIG-002', _set(('firewall', 'nft'), ok(json.dumps({'nftables': [
        {'chain': {'family': 'inet', 'table': 'filter', 'name': 'input', 'hook': 'input', 'policy': 'drop'}}]}))), 'warn',
     'table inet filter chain input: policy drop'),
    # network
    ('SVK-NET-001', lambda f: f['bridges']['br0'].update(guest_ports=[], ports=['eno2']), 'not_applicable', 'no bridge has a guest'),
    ('SVK-NET-001', _set(('addresses',), ok(json.dumps(IP_ADDR + [{'ifname': 'br0', 'addr_info': [
        {'family': 'inet', 'local': '10.0.0.1', 'prefixlen': 24, 'scope': 'global'}]}]))), 'fail',
     "br0 (guest ports vnet0, vnet1) has 10.0.0.1/24: guests share a link with the host's own address"),
    ('SVK-NET-001', _set(('bridges', 'virbr0'), {'ports': ['vnet2'], 'guest_ports': ['vnet2'], 'nf_call': {}}), 'warn',
     'virbr0 (libvirt network default, forward nat; guest ports vnet2) has 192.168.122.1/24'),
    ('SVK-NET-001', _set(('addresses',), None), 'warn', 'not installed'),
    ('SVK-NET-002', _set(('bridge_nf', 'iptables'), 1), 'fail', 'net.bridge.bridge-nf-call-iptables = 1'),
    ('SVK-NET-002', _set(('bridges', 'br0', 'nf_call', 'ip6tables'), 1), 'fail', 'bridge br0: nf_call_ip6tables = 1'),
    ('SVK-NET-002', _set(('bridge_nf',), {'loaded': False}), 'not_applicable', 'br_netfilter is not loaded'),
    ('SVK-NET-003', _guest(1, live_xml=domain_xml('web01', UUID1, filterref=False)), 'fail', 'guest web01 vnet0 (bridge br0): no filterref'),
    ('SVK-NET-003', _set(('guests', 'domains'), []), 'not_applicable', 'no running guest'),
    # confinement
    ('SVK-CNF-001', _conf('qemu_conf', QEMU_CONF.replace('security_require_confined = 1', '')), 'fail', 'security_require_confined not set'),
    ('SVK-CNF-001', _conf('qemu_conf', QEMU_CONF.replace('security_driver = "apparmor"', 'security_driver = "none"')), 'fail',
     'security_driver = "none"'),
    ('SVK-CNF-001', _conf('qemu_conf', QEMU_CONF.replace('security_default_confined = 1', '')), 'pass',
     'security_default_confined not set (libvirt default 1)'),
    ('SVK-CNF-001', _set(('guests', 'secmodels'), ['none', 'dac']), 'fail', 'the running daemon offers none of apparmor'),
    ('SVK-CNF-002', _guest(1, lsm_label='unconfined'), 'fail', 'guest web01 pid 4242: unconfined: unconfined'),
    ('SVK-CNF-002', _guest(1, lsm_label='libvirt-%s (complain)' % UUID1), 'fail', 'unconfined'),
    ('SVK-CNF-002', _guest(1, lsm_label='libvirt-%s (enforce)' % UUID2), 'fail', 'same label as db01'),
    ('SVK-CNF-002', lambda f: f['lsm']['apparmor']['profiles'].update({'libvirt-%s' % UUID1: 'complain'}), 'fail',
     'loaded in complain mode'),
    ('SVK-CNF-002', _guest(1, pid=None), 'fail', '/run/libvirt/qemu/web01.pid unreadable'),
    ('SVK-CNF-002', lambda f: (_guest(0, lsm_label='system_u:system_r:svirt_t:s0:c10,c20')(f),
                               _guest(1, lsm_label='system_u:system_r:svirt_t:s0:c10,c21')(f),
                               f['lsm'].update(selinux={'enabled': True, 'enforcing': True})), 'pass', 'svirt_t:s0:c10,c21'),
    ('SVK-CNF-002', lambda f: (_guest(0, lsm_label='system_u:system_r:svirt_t:s0:c10,c20')(f),
                               _guest(1, lsm_label='system_u:system_r:svirt_t:s0:c10,c20')(f),
                               f['lsm'].update(selinux={'enabled': True, 'enforcing': False})), 'fail',
     'SELinux is not enforcing; same label as'),
    ('SVK-CNF-003', _guest(0, uid=0), 'fail', 'runs as root'),
    ('SVK-CNF-003', _guest(0, seccomp=0), 'fail', 'no seccomp filter'),
    ('SVK-CNF-003', _guest(0, cap_eff='00000000a80425fb'), 'fail', 'effective capabilities 00000000a80425fb'),
    # storage
    ('SVK-STO-001', _set(('image_dirs', '/var/lib/libvirt/images', 'mode'), 0o755), 'fail', 'mode 0755 grants more than 0711'),
    ('SVK-STO-001', _set(('image_dirs', '/var/lib/libvirt/images', 'uid'), 64055), 'fail', 'owned by uid 64055, not root'),
    ('SVK-STO-001', lambda f: f['image_dirs']['/var/lib/libvirt/images']['entries'][0].update(mode=0o644), 'fail',
     '/var/lib/libvirt/images/web01.qcow2: mode 0644 group libvirt-qemu'),
    ('SVK-STO-001', lambda f: f['image_dirs']['/var/lib/libvirt/images']['entries'][1].update(group='users'), 'fail',
     'db01.qcow2: mode 0660 group users'),
    ('SVK-STO-001', lambda f: f['image_dirs']['/var/lib/libvirt/images']['entries'][2].update(mode=0o777), 'fail', 'iso/: mode 0777'),
    ('SVK-STO-001', _set(('image_dirs', '/var/lib/libvirt/images'), {'exists': False, 'error': 'No such file or directory'}), 'fail',
     '/var/lib/libvirt/images: No such file or directory'),
    ('SVK-STO-001', _set(('image_dirs', '/var/lib/libvirt/images', 'error'), 'cannot list /var/lib/libvirt/images: Permission denied'),
     'warn', 'Permission denied (run the module as root)'),
    ('SVK-STO-002', _set(('block', 'dm', 'dm-0', 'uuid'), 'LVM-plain'), 'warn',
     'guest web01 vda /var/lib/libvirt/images/web01.qcow2: not on dm-crypt'),
    ('SVK-STO-002', lambda f: (f['block'].update(mountinfo=MOUNTINFO.splitlines()[0]), f['guests'].update(domains=[])), 'warn',
     'no dm-crypt mapping holds an image directory'),
    ('SVK-STO-003', _set(('block', 'loops', 'loop1'), '/var/lib/libvirt/images/web01.qcow2'), 'fail',
     '/dev/loop1 is backed by /var/lib/libvirt/images/web01.qcow2'),
    ('SVK-STO-003', _set(('block', 'nbd', 'nbd0'), 777), 'fail', '/dev/nbd0 is connected (pid 777)'),
    ('SVK-STO-003', _set(('block', 'mountinfo'), MOUNTINFO + '50 22 253:1 / /mnt rw - ext4 /dev/mapper/web01-data rw\n'), 'fail',
     'the guest disk /dev/mapper/web01-data is mounted at /mnt'),
    ('SVK-STO-003', _set(('block', 'mountinfo'), MOUNTINFO + '51 22 0:50 / /mnt/x rw - fuse.img /var/lib/libvirt/images/db01.qcow2 rw\n'),
     'fail', '/var/lib/libvirt/images/db01.qcow2 is mounted at /mnt/x'),
    ('SVK-STO-003', _set(('guests',), {'error': 'cannot connect', 'domains': [], 'networks': [], 'secmodels': None}), 'pass',
     'not checked: cannot connect'),
    ('SVK-IMG-001', _guest(1, inactive_xml=domain_xml('web01', UUID1, live=False, driver=False)), 'fail',
     'guest web01 vda: no <driver type=...> in the definition'),
    ('SVK-IMG-001', _guest(1, live_xml=domain_xml('web01', UUID1, backing='/etc/shadow')), 'fail',
     'backing file /etc/shadow is in use but not declared'),
    ('SVK-IMG-001', lambda f: (_guest(1, live_xml=domain_xml('web01', UUID1, backing='/var/lib/libvirt/images/base.qcow2'))(f),
                               _guest(1, inactive_xml=domain_xml('web01', UUID1, live=False, backing='/var/lib/libvirt/images/base.qcow2',
                                                                 declared_backing=True))(f)), 'pass', 'declared backing chain'),
    ('SVK-IMG-001', _guest(1, persistent=False, inactive_xml=None), 'pass', 'guest web01 is transient'),
    # audit
    ('SVK-AUD-001', _set(('audit', 'status'), ok('enabled 1\nfailure 1\npid 0\n')), 'fail', 'no audit daemon is attached'),
    ('SVK-AUD-001', _set(('audit', 'list'), ok('-w /etc/libvirt -p wa -k virt_libvirt_cfg\n')), 'fail',
     'both syscall rules and file watches'),
    ('SVK-AUD-001', _set(('audit', 'list'), ok('No rules\n')), 'fail', '0 virt_* syscall rule(s), 0 virt_* file watch(es)'),
    ('SVK-AUD-001', _set(('audit',), {'list': None, 'status': None}), 'fail', 'auditctl not found'),
    ('SVK-AUD-001', _set(('audit', 'status'), {'rc': 1, 'out': '', 'err': 'You must be root to run this program.'}), 'fail',
     'You must be root'),
    ('SVK-AUD-002', _set(('cmdline',), 'root=/dev/vda1 ro audit=0'), 'fail', '/proc/cmdline: audit=0'),
    ('SVK-AUD-002', _set(('cmdline',), 'root=/dev/vda1 ro'), 'fail', 'no audit= parameter'),
    ('SVK-AUD-003', _libvirtd(LIBVIRTD_CONF.replace('audit_level = 2', 'audit_level = 1')), 'warn', 'audit_level 1'),
    ('SVK-AUD-003', _libvirtd(LIBVIRTD_CONF.replace('audit_level = 2', '')), 'warn', 'audit_level not set (libvirt default 1)'),
    ('SVK-AUD-003', _libvirtd(LIBVIRTD_CONF.replace('audit_level = 2', 'audit_level = 0')), 'fail', 'writes no audit records'),
    ('SVK-AUD-003', _libvirtd(LIBVIRTD_CONF.replace('audit_logging = 1', 'audit_logging = 0')), 'warn', 'audit_logging 0'),
    ('SVK-AUD-003', lambda f: f['daemon_conf'].update({'libvirtd.conf': None, 'virtqemud.conf': 'audit_level = 2\naudit_logging = 1\n'}),
     'pass', '/etc/libvirt/virtqemud.conf: audit_level = 2'),
]


@pytest.mark.parametrize('cid, change, status, needle', DEFECTS,
                         ids=['%s-%d' % (d[0], i) for i, d in enumerate(DEFECTS)])
def test_one_defect(pki, cid, change, status, needle):
    facts = hardened(pki)
    change(facts)
    got, evidence = run_one(facts, cid)
    assert got == status, evidence
    assert any(needle in line for line in evidence), evidence


@pytest.mark.parametrize('cert, needle', [
    ('foreign_pem', 'not signed by the CA CN=Example CA,O=Example,C=DE'),
    ('expiring_pem', 'within 30 days'),
])
def test_certificates_of_another_ca_or_expiring_fail(pki, cert, needle):
    facts = hardened(pki)
    facts['certs']['/etc/pki/qemu/server-cert.pem'] = pki[cert]
    status, evidence = run_one(facts, 'SVK-TLS-005')
    assert status == 'fail' and any('/etc/pki/qemu/server-cert.pem' in line and needle in line for line in evidence), evidence
    params = dict(PARAMS, certificate_min_days=10)
    assert run_one(facts, 'SVK-TLS-005', params)[0] == ('fail' if cert == 'foreign_pem' else 'pass')


@pytest.mark.parametrize('crl, needle', [('old_crl_pem', 'expired: nextUpdate'), ('foreign_crl_pem', 'not signed by the CA')])
def test_an_expired_or_foreign_crl_fails(pki, crl, needle):
    facts = hardened(pki)
    facts['certs']['/etc/pki/qemu/ca-crl.pem'] = pki[crl]
    status, evidence = run_one(facts, 'SVK-TLS-006')
    assert status == 'fail' and any(line.startswith('/etc/pki/qemu/ca-crl.pem') and needle in line for line in evidence), evidence


def test_guest_controls_fail_with_libvirt_s_error_and_the_rest_still_run(pki):
    facts = hardened(pki)
    error = "cannot connect to libvirt at qemu:///system: Failed to connect socket to '/var/run/libvirt/libvirt-sock-ro'"
    facts['guests'] = {'error': error, 'domains': [], 'networks': [], 'secmodels': None}
    result = pm.evaluate(facts, PARAMS)
    by_id = dict((c['id'], c) for c in result['controls'])
    for cid in ('SVK-NET-003', 'SVK-CNF-002', 'SVK-CNF-003', 'SVK-IMG-001', 'SVK-CON-001', 'SVK-CON-002', 'SVK-CON-003'):
        assert by_id[cid]['status'] == 'fail' and any(error in line for line in by_id[cid]['evidence']), cid
    assert by_id['SVK-CNF-001']['status'] == 'pass'  # qemu.conf alone decides, libvirt's models are evidence
    assert by_id['SVK-NET-001']['status'] == 'pass'
    assert by_id['SVK-STO-002']['status'] == 'pass' and by_id['SVK-STO-003']['status'] == 'pass'
    assert sum(result['summary'].values()) == len(pm.CATALOG)


def test_no_running_guest_makes_the_guest_controls_not_applicable(pki):
    facts = hardened(pki)
    facts['guests']['domains'] = []
    result = pm.evaluate(facts, PARAMS)
    na = sorted(c['id'] for c in result['controls'] if c['status'] == 'not_applicable')
    assert na == ['SVK-CNF-002', 'SVK-CNF-003', 'SVK-IMG-001', 'SVK-NET-003']
    assert result['summary']['not_applicable'] == 4


def test_an_evaluator_that_raises_becomes_a_failed_control(pki, monkeypatch):
    monkeypatch.setitem(pm.EVALUATORS, 'SVK-AUD-002', lambda facts, params: 1 / 0)
    result = pm.evaluate(hardened(pki), PARAMS, ['SVK-AUD-002', 'SVK-AUD-003'])
    assert result['controls'][0]['status'] == 'fail'
    assert result['controls'][0]['evidence'] == ['could not be evaluated: ZeroDivisionError: division by zero']
    assert result['controls'][1]['status'] == 'pass' and result['summary'] == {'pass': 1, 'fail': 1, 'warn': 0, 'not_applicable': 0}


# --------------------------------------------------------------------------
# Selection, parameters and parsers
# --------------------------------------------------------------------------

def test_select_controls():
    assert pm.select_controls([]) == sorted(pm.CATALOG) == pm.select_controls(['all'])
    assert pm.select_controls(['audit', 'tls-002', 'SVK-IMG-001']) == [
        'SVK-AUD-001', 'SVK-AUD-002', 'SVK-AUD-003', 'SVK-IMG-001', 'SVK-TLS-002']
    assert pm.select_controls(['storage']) == ['SVK-IMG-001', 'SVK-STO-001', 'SVK-STO-002', 'SVK-STO-003']
    with pytest.raises(pm.PostureError, match='unknown control.s. TLS-999, nist: use control IDs'):
        pm.select_controls(['TLS-999', 'nist'])


@pytest.mark.parametrize('params, message', [
    ({'tls_port': 0}, 'tls_port must be a TCP port'),
    ({'certificate_min_days': -1}, 'must not be negative'),
    ({'handshake_timeout': 0}, 'must be positive'),
    ({'image_dirs': ['images']}, 'image_dirs must be absolute paths: images'),
])
def test_bad_parameters(params, message):
    with pytest.raises(pm.PostureError, match=message):
        pm.normalize_params(params)


def test_proc_net_tcp_in_both_byte_orders():
    text = TCP_HEADER + tcp_line('0100007F', 16514) + tcp_line('0100007F', 22, state='01')
    assert pm.parse_proc_net_tcp(text, byteorder='little') == [{'address': '127.0.0.1', 'port': 16514, 'family': 'ipv4'}]
    assert pm.parse_proc_net_tcp(TCP_HEADER + tcp_line('7F000001', 16514), byteorder='big')[0]['address'] == '127.0.0.1'
    six = TCP_HEADER + tcp_line('00000000000000000000000001000000', 16514) + tcp_line('B80D0120000000000000000001000000', 16514)
    assert [e['address'] for e in pm.parse_proc_net_tcp(six, ipv6=True, byteorder='little')] == ['::1', '2001:db8::1']
    assert pm.probe_target(pm.parse_proc_net_tcp(six, ipv6=True, byteorder='little'), 16514) == ('::1', 16514)
    assert pm.probe_target([{'address': '::', 'port': 16514}], 16514) == ('::1', 16514)
    assert pm.probe_target([{'address': '192.0.2.1', 'port': 16514}], 16514) == ('192.0.2.1', 16514)
    assert pm.probe_target([{'address': '0.0.0.0', 'port': 22}], 16514) is None


def test_dn_conflicts_match_both_orders_case_sensitively():
    subjects = ['CN=kvm1,OU=servers,O=Example,C=DE']
    assert pm.dn_conflicts(['C=DE,O=Example,OU=servers,CN=*'], subjects) == ["'C=DE,O=Example,OU=servers,CN=*' admits C=DE,O=Example,OU=servers,CN=kvm1"]
    assert pm.dn_conflicts(['CN=*,OU=servers,*'], subjects) == ["'CN=*,OU=servers,*' admits CN=kvm1,OU=servers,O=Example,C=DE"]
    assert pm.dn_conflicts(['C=DE,O=Example,OU=SERVERS,CN=*', 'C=DE,O=Example,OU=admins,CN=*'], subjects) == []
    assert pm.dn_conflicts(['CN=a\\,b,*'], ['CN=a\\,b,O=x']) == ["'CN=a\\,b,*' admits CN=a\\,b,O=x"]


FIREWALLD_ZONES = '''block
  target: %%REJECT%%
  interfaces:
  sources:

public (default, active)
  target: default
  interfaces: eth0
  sources:
  services: dhcpv6-client ssh
  ports: 5900-5903/tcp
  protocols:
  rich rules:
\trule family="ipv4" source address="192.0.2.12" port port="49152-49215" protocol="tcp" accept
\trule family="ipv4" source address="10.0.0.0/24" port port="5900-5999" protocol="tcp" accept

trusted (active)
  target: ACCEPT
  interfaces:
  sources: 192.0.2.0/24
'''


def test_firewalld_zones_and_their_openings():
    zones = pm.parse_firewalld_zones(FIREWALLD_ZONES)
    assert sorted(zones) == ['block', 'public', 'trusted']
    assert zones['public']['default'] and zones['public']['active'] and zones['public']['ports'] == ['5900-5903/tcp']
    assert len(zones['public']['rich_rules']) == 2 and zones['trusted']['target'] == 'ACCEPT'
    openings, notes = pm.firewalld_openings(zones, 'public', (49152, 49215))
    assert openings == []
    assert notes == ['zone public services (ports not resolved): dhcpv6-client ssh', 'zone trusted applies to sources 192.0.2.0/24 only']
    zones['public']['ports'].append('49000-49160/tcp')
    zones['public']['rich_rules'].append('rule family="ipv4" port port="49200" protocol="tcp" accept')
    zones['trusted']['interfaces'] = ['eth1']
    openings, _notes = pm.firewalld_openings(zones, 'public', (49152, 49215))
    assert openings == ['zone public opens port 49000-49160/tcp to every source',
                        'zone public rich rule without source: rule family="ipv4" port port="49200" protocol="tcp" accept',
                        'zone trusted has target ACCEPT: every port is open']


def test_migration_firewall_with_firewalld(pki):
    facts = hardened(pki)
    facts['firewall'] = {'nft': None, 'firewalld_running': True, 'default_zone': ok('public\n'), 'zones': ok(FIREWALLD_ZONES)}
    status, evidence = run_one(facts, 'SVK-MIG-002')
    assert status == 'pass' and 'firewalld is running (default zone public)' in evidence
    facts['firewall']['zones'] = ok(FIREWALLD_ZONES.replace('5900-5903/tcp', '49152-49215/tcp'))
    status, evidence = run_one(facts, 'SVK-MIG-002')
    assert status == 'fail' and 'zone public opens port 49152-49215/tcp to every source' in evidence
    facts['firewall']['zones'] = {'rc': 1, 'out': '', 'err': 'Authorization failed.'}
    assert run_one(facts, 'SVK-MIG-002') == ('fail', ['migration ports 49152-49215 (qemu.conf)',
                                                      'firewalld runs but firewall-cmd --list-all-zones failed: Authorization failed.'])


def test_tls_port_firewall_with_firewalld(pki):
    """SVK-TLS-007 reads firewalld's zones as SVK-MIG-002 does: libvirt_remote's
    rich rule with a source passes, the port opened to every source fails."""
    facts = hardened(pki)
    zones = FIREWALLD_ZONES.replace('  rich rules:\n', '  rich rules:\n\trule family="ipv4" source address="10.0.0.0/24" '
                                    'port port="16514" protocol="tcp" accept\n')
    facts['firewall'] = {'nft': None, 'firewalld_running': True, 'default_zone': ok('public\n'), 'zones': ok(zones)}
    assert run_one(facts, 'SVK-TLS-007') == ('pass', [
        'TLS port listening on 0.0.0.0:16514, [::]:16514', 'firewalld is running (default zone public)',
        'no zone that applies to every source opens port 16514',
        'zone public services (ports not resolved): dhcpv6-client ssh', 'zone trusted applies to sources 192.0.2.0/24 only'])
    facts['firewall']['zones'] = ok(zones.replace('ports: 5900-5903/tcp', 'ports: 5900-5903/tcp 16514/tcp'))
    status, evidence = run_one(facts, 'SVK-TLS-007')
    assert status == 'fail' and 'zone public opens port 16514/tcp to every source' in evidence, evidence


def test_nft_rule_shapes():
    assert pm.nft_rule_shape([dport(49152), {'drop': None}]) == {'dports': [(49152, 49152)], 'restricted': False, 'verdict': 'drop'}
    shape = pm.nft_rule_shape([{'match': {'op': '==', 'left': {'meta': {'key': 'l4proto'}}, 'right': 'tcp'}},
                               dport({'set': [{'range': [49152, 49200]}, {'range': [49201, 49215]}]}), {'reject': None}])
    assert shape == {'dports': [(49152, 49200), (49201, 49215)], 'restricted': False, 'verdict': 'reject'}
    assert pm.nft_rule_shape([dport('@ports'), {'drop': None}])['restricted']
    assert pm._covers([(49201, 49215), (49152, 49200)], (49152, 49215))
    assert not pm._covers([(49152, 49200), (49202, 49215)], (49152, 49215))


def test_mountinfo_and_ip_addresses():
    mounts = pm.parse_mountinfo('40 22 253:0 / /var/lib/libvirt/my\\040images rw shared:20 - ext4 /dev/mapper/images rw\nbroken line\n')
    assert mounts == [{'dev': '253:0', 'root': '/', 'mountpoint': '/var/lib/libvirt/my images', 'fstype': 'ext4',
                       'source': '/dev/mapper/images'}]
    assert pm.parse_ip_addresses(json.dumps(IP_ADDR)) == {'lo': [], 'eno1': ['192.0.2.10/24'], 'br0': [], 'virbr0': ['192.168.122.1/24']}
    assert pm.parse_ip_addresses('not json') is None


# --------------------------------------------------------------------------
# Collection from a host tree
# --------------------------------------------------------------------------

def write(root, relative, text, mode=None):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(path, mode)


def test_collect_reads_only_what_the_selected_controls_need(tmp_path):
    write(tmp_path, 'proc/cmdline', 'ro audit=1\n')
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, '', ''

    def probe(*args):
        raise AssertionError('no handshake for the audit controls')

    facts = pm.collect(PARAMS, ['SVK-AUD-002'], root=str(tmp_path), run=run, probe=probe, now=NOW)
    assert facts == {'now': NOW, 'cmdline': 'ro audit=1\n'}
    assert calls == []
    facts = pm.collect(PARAMS, pm.select_controls(['audit']), root=str(tmp_path), run=run, probe=probe, now=NOW)
    assert calls == [['auditctl', '-l'], ['auditctl', '-s']]
    assert sorted(facts) == ['audit', 'cmdline', 'daemon_conf', 'now']


def test_collect_a_host_tree(tmp_path, pki):
    root = str(tmp_path)
    write(root, 'etc/libvirt/libvirtd.conf', LIBVIRTD_CONF + 'cert_file = "/etc/pki/libvirt/other.pem"\n')
    write(root, 'etc/libvirt/qemu.conf', QEMU_CONF)
    write(root, 'etc/pki/libvirt/other.pem', pki['server_pem'])
    write(root, 'etc/pki/CA/cacert.pem', pki['ca_pem'])
    write(root, 'proc/net/tcp', TCP_HEADER + tcp_line('0100007F', 16514))
    # a bridge with a guest port (tun_flags) and a physical one; br_netfilter loaded
    for path in ('sys/class/net/br0/bridge/nf_call_iptables', 'sys/class/net/br0/bridge/nf_call_ip6tables',
                 'sys/class/net/br0/bridge/nf_call_arptables'):
        write(root, path, '0\n')
    write(root, 'sys/class/net/br0/brif/guestport', '')
    write(root, 'sys/class/net/br0/brif/eno2', '')
    write(root, 'sys/class/net/guestport/tun_flags', '0x1002\n')
    write(root, 'sys/class/net/eno2/address', '52:54:00:00:00:01\n')
    write(root, 'sys/module/br_netfilter/refcnt', '0\n')
    for family in ('iptables', 'ip6tables', 'arptables'):
        write(root, 'proc/sys/net/bridge/bridge-nf-call-' + family, '0\n')
    # block devices
    write(root, 'sys/block/dm-0/dm/name', 'images\n')
    write(root, 'sys/block/dm-0/dm/uuid', 'CRYPT-LUKS2-abc-images\n')
    write(root, 'sys/block/dm-0/dev', '253:0\n')
    write(root, 'sys/block/dm-0/slaves/vdb', '')
    write(root, 'sys/block/loop0/loop/backing_file', '/var/lib/libvirt/images/x.raw\n')
    write(root, 'sys/block/loop1/size', '0\n')
    write(root, 'sys/block/nbd0/pid', '777\n')
    write(root, 'sys/block/nbd1/size', '0\n')
    write(root, 'proc/self/mountinfo', MOUNTINFO)
    write(root, 'proc/cmdline', 'audit=1\n')
    write(root, 'proc/321/comm', 'firewalld\n')
    # the image directory
    images = os.path.join(root, 'var/lib/libvirt/images')
    write(root, 'var/lib/libvirt/images/web01.qcow2', 'QFI', mode=0o600)
    write(root, 'var/lib/libvirt/images/pool/deep/deeper/toodeep.img', '', mode=0o644)
    os.symlink('/etc/shadow', os.path.join(images, 'link'))
    os.chmod(images, 0o711)
    answers = {('nft', '-j', 'list', 'ruleset'): (0, '{"nftables": []}', ''), ('ip', '-j', 'addr', 'show'): (0, '[]', ''),
               ('firewall-cmd', '--get-default-zone'): (0, 'public\n', ''),
               ('firewall-cmd', '--list-all-zones'): (0, FIREWALLD_ZONES, '')}
    probed = []

    def probe(host, port, timeout):
        probed.append((host, port, timeout))
        return {'address': '%s:%d' % (host, port), 'outcome': 'refused_after_handshake', 'detail': 'EOF'}

    params = pm.normalize_params({'uri': 'test:///nonexistent-driver', 'handshake_timeout': 2.5})
    facts = pm.collect(params, root=root, run=lambda argv: answers.get(tuple(argv)), probe=probe, now=NOW)
    assert probed == [('127.0.0.1', 16514, 2.5)]
    assert facts['certs']['/etc/pki/libvirt/other.pem'] == pki['server_pem'] and pm.SERVER_CERT not in facts['certs']
    assert facts['daemon_conf']['virtproxyd.conf'] is None and facts['qemu_conf'] == QEMU_CONF
    assert facts['bridges'] == {'br0': {'ports': ['eno2', 'guestport'], 'guest_ports': ['guestport'],
                                        'nf_call': {'iptables': 0, 'ip6tables': 0, 'arptables': 0}}}
    assert facts['bridge_nf'] == {'loaded': True, 'iptables': 0, 'ip6tables': 0, 'arptables': 0}
    assert facts['block']['dm'] == {'dm-0': {'name': 'images', 'uuid': 'CRYPT-LUKS2-abc-images', 'dev': '253:0', 'slaves': ['vdb']}}
    assert facts['block']['loops'] == {'loop0': '/var/lib/libvirt/images/x.raw'} and facts['block']['nbd'] == {'nbd0': 777}
    assert facts['firewall']['firewalld_running'] and facts['firewall']['zones']['out'] == FIREWALLD_ZONES
    assert facts['addresses'] == {'rc': 0, 'out': '[]', 'err': ''}
    assert facts['audit'] == {'list': None, 'status': None}  # auditctl "not installed"
    entry = facts['image_dirs']['/var/lib/libvirt/images']
    assert entry['exists'] and entry['mode'] == 0o711 and entry['error'] is None
    kinds = dict((e['path'], (e['kind'], e['mode'])) for e in entry['entries'])
    assert kinds['/var/lib/libvirt/images/web01.qcow2'] == ('file', 0o600)
    assert kinds['/var/lib/libvirt/images/link'][0] == 'link'
    assert kinds['/var/lib/libvirt/images/pool/deep/deeper'][0] == 'dir'
    assert '/var/lib/libvirt/images/pool/deep/deeper/toodeep.img' not in kinds  # below max_depth
    assert facts['guests']['error'] and facts['guests']['domains'] == []
    result = pm.evaluate(facts, params)
    by_id = dict((c['id'], c) for c in result['controls'])
    assert by_id['SVK-STO-003']['status'] == 'fail'
    assert by_id['SVK-STO-003']['evidence'] == [
        '/dev/loop0 is backed by /var/lib/libvirt/images/x.raw',
        '/dev/nbd0 is connected (pid 777): an image is exported to the host as a block device']
    assert by_id['SVK-STO-001']['status'] == 'fail'  # makedirs left the pool directories 0755
    assert '/var/lib/libvirt/images/pool/: mode 0755' in by_id['SVK-STO-001']['evidence']
    assert '/var/lib/libvirt/images: 1 image file(s), 3 too open' in by_id['SVK-STO-001']['evidence']
    assert by_id['SVK-TLS-005']['evidence'][0].startswith('libvirtd server /etc/pki/libvirt/other.pem: CN=kvm1.example.org')
    assert by_id['SVK-NET-001']['status'] == 'pass' and by_id['SVK-NET-002']['status'] == 'pass'
    assert by_id['SVK-MIG-002']['status'] == 'pass'  # firewalld's zones decide while it runs


def test_collect_guests_from_libvirt_s_test_driver(tmp_path):
    pytest.importorskip('libvirt')
    write(tmp_path, 'run/libvirt/qemu/test.pid', '4242\n')
    write(tmp_path, 'proc/4242/status', 'Name:\tqemu\nUid:\t64055\t64055\t64055\t64055\nCapEff:\t0000000000000000\nSeccomp:\t2\n')
    write(tmp_path, 'proc/4242/attr/current', 'libvirt-%s (enforce)\n' % UUID1)
    write(tmp_path, 'proc/4242/cmdline', '/usr/bin/qemu-system-x86_64\x00-vnc\x00127.0.0.1:0\x00')
    data = pm.collect_guests('test:///default', str(tmp_path))
    assert data['error'] is None and data['secmodels'] == ['testSecurity']
    assert data['networks'] == [{'name': 'default', 'bridge': 'virbr0', 'forward': 'nat', 'active': True}]
    [dom] = data['domains']
    assert dom['name'] == 'test' and dom['persistent'] and '<disk' in dom['inactive_xml']
    assert dom['process']['pid'] == 4242 and dom['process']['uid'] == 64055
    assert dom['cmdline'] == ['/usr/bin/qemu-system-x86_64', '-vnc', '127.0.0.1:0']
    facts = {'now': NOW, 'guests': data, 'lsm': {'apparmor': {'profiles': {}}, 'selinux': {}}}
    assert run_one(facts, 'SVK-CNF-003')[0] == 'pass'
    assert run_one(facts, 'SVK-NET-003') == ('fail', ['guest test testnet0 (network default): no filterref'])
    assert run_one(facts, 'SVK-IMG-001') == ('fail', ['guest test vda: no <driver type=...> in the definition: the format is not declared'])


def test_collect_guests_without_a_daemon_keeps_libvirt_s_reason():
    class Error(Exception):
        def get_error_message(self):
            return "Failed to connect socket to '/var/run/libvirt/libvirt-sock-ro': No such file or directory"

    class FakeLibvirt(object):
        libvirtError = Error

        @staticmethod
        def registerErrorHandler(handler, ctx):
            pass

        @staticmethod
        def openReadOnly(uri):
            raise Error()

    data = pm.collect_guests('qemu:///system', '/', lv=FakeLibvirt)
    assert data['error'] == ("cannot connect to libvirt at qemu:///system: the daemon is not running or its socket is missing: "
                             "Failed to connect socket to '/var/run/libvirt/libvirt-sock-ro': No such file or directory")
    assert data['domains'] == [] and data['networks'] == []


# --------------------------------------------------------------------------
# The TLS probe against real local servers
# --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def server_files(tmp_path_factory, pki):
    base = tmp_path_factory.mktemp('tls')
    key, cert = pki['server']
    (base / 'cert.pem').write_text(pki['server_pem'])
    (base / 'key.pem').write_bytes(xx.private_key_pem(key))
    (base / 'ca.pem').write_text(pki['ca_pem'])
    return base


def serve(handler):
    """A one-connection server on 127.0.0.1; returns its port and the thread."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    listener.settimeout(10)

    def main():
        try:
            conn, _addr = listener.accept()
        except OSError:
            return
        try:
            handler(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            listener.close()
    thread = threading.Thread(target=main)
    thread.daemon = True
    thread.start()
    return listener.getsockname()[1], thread


def tls_server_context(files, require_client_cert):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files / 'cert.pem'), str(files / 'key.pem'))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(files / 'ca.pem'))
    return context


def test_probe_a_server_that_requires_a_client_certificate(server_files):
    context = tls_server_context(server_files, True)

    def handler(conn):
        tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
            tls.recv(100)
        except ssl.SSLError:
            time.sleep(0.5)  # the client reads the alert before the connection goes away
        finally:
            tls.close()
    port, thread = serve(handler)
    result = pm.tls_probe('127.0.0.1', port, 5)
    thread.join(5)
    assert result['outcome'] in ('refused_after_handshake', 'refused_in_handshake'), result
    assert result['version'] in ('TLSv1.3', None)
    if result['version'] == 'TLSv1.3':
        assert 'certificate required' in result['detail'] and result['peer_subject'] == 'CN=kvm1.example.org,OU=servers,O=Example,C=DE'
    assert '_ssl.c' not in result['detail']


def test_probe_a_daemon_that_drops_the_client_after_the_handshake(server_files):
    context = tls_server_context(server_files, False)

    def handler(conn):
        tls = context.wrap_socket(conn, server_side=True)
        tls.close()  # like libvirt after its certificate check failed
    port, thread = serve(handler)
    result = pm.tls_probe('127.0.0.1', port, 5)
    thread.join(5)
    assert result['outcome'] == 'refused_after_handshake', result
    assert result['version'] and result['detail']


def test_probe_a_daemon_that_answers_without_a_client_certificate(server_files):
    context = tls_server_context(server_files, False)
    seen = []

    def handler(conn):
        with context.wrap_socket(conn, server_side=True) as tls:
            call = tls.recv(28)
            seen.append(call)
            length, prog, vers, proc, kind, serial, status = struct.unpack('>IIIiiIi', call)
            tls.sendall(struct.pack('>IIIiiIi', 36, prog, vers, proc, 1, serial, 0) + struct.pack('>II', 1, 0))
            tls.recv(1)
    port, thread = serve(handler)
    result = pm.tls_probe('127.0.0.1', port, 5)
    thread.join(5)
    assert seen == [pm.AUTH_LIST_CALL]
    assert result['outcome'] == 'answered' and 'auth-list (status OK)' in result['detail'], result
    status, evidence = run_one({'handshake': result}, 'SVK-TLS-002')
    assert status == 'fail' and evidence[0] == 'TLS handshake to 127.0.0.1:%d without a client certificate' % port


def test_probe_a_port_that_does_not_speak_tls():
    def handler(conn):
        conn.recv(1024)
        conn.sendall(b'HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n' * 4)
    port, thread = serve(handler)
    result = pm.tls_probe('127.0.0.1', port, 5)
    thread.join(5)
    assert result['outcome'] == 'not_tls', result
    assert run_one({'handshake': result}, 'SVK-TLS-002')[0] == 'warn'


def test_probe_a_server_that_never_answers():
    release = threading.Event()

    def handler(conn):
        release.wait(5)
    port, thread = serve(handler)
    result = pm.tls_probe('127.0.0.1', port, 0.3)
    release.set()
    thread.join(5)
    assert result['outcome'] == 'no_answer' and 'within 0.3 s' in result['detail'], result


def test_probe_a_closed_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    result = pm.tls_probe('127.0.0.1', port, 2)
    assert result['outcome'] == 'connect_failed' and 'refused' in result['detail'].lower(), result
    assert run_one({'handshake': result}, 'SVK-TLS-002')[0] == 'fail'


def test_hardened_facts_are_not_shared_between_tests(pki):
    facts = hardened(pki)
    before = copy.deepcopy(facts)
    pm.evaluate(facts, PARAMS)
    assert facts == before  # evaluate only reads
