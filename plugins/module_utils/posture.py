# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The security posture of a live KVM host: one verdict per control, with evidence.

Two halves, so that the unit tests can feed fabricated hosts:

* ``collect()`` does the host I/O. It reads files below ``root`` (the
  directory the host's /proc, /sys, /run and /etc are read below: '/' on a
  host, a temporary tree in the tests), runs a few commands through a
  ``run(argv)`` callable (None when the command is not installed), opens a
  read-only libvirt connection and makes one TLS handshake. It returns a dict
  of facts, mostly raw text (configuration files, PEM, /proc tables, command
  output), and only gathers what the selected controls need.
* ``evaluate()`` is pure: it parses those facts and returns the controls
  (``id``, ``title``, ``area``, ``severity``, ``status``, ``evidence``,
  ``references``) in ID order and the summary of their statuses.

Module secvirt.kvm.posture.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import fnmatch
import grp
import json
import os
import re
import socket
import ssl
import stat
import struct
import sys
import xml.etree.ElementTree as ET

from ansible_collections.secvirt.kvm.plugins.module_utils import audit_kernel as ak
from ansible_collections.secvirt.kvm.plugins.module_utils import hypervisor_host as hh
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_common as lc
from ansible_collections.secvirt.kvm.plugins.module_utils import libvirt_conf as lconf
from ansible_collections.secvirt.kvm.plugins.module_utils import qemu_graphics as qg
from ansible_collections.secvirt.kvm.plugins.module_utils import x509 as xx
from ansible_collections.secvirt.kvm.plugins.module_utils import x509_crl as xcrl

STATUSES = ('pass', 'fail', 'warn', 'not_applicable')
AREAS = ('tls', 'consoles', 'migration', 'network', 'confinement', 'storage', 'audit')

DEFAULT_TLS_PORT = 16514
TCP_PORT = 16509
DEFAULT_IMAGE_DIRS = ('/var/lib/libvirt/images',)
MIGRATION_PORTS = (49152, 49215)
# libvirt's defaults of remote_display_port_min/max (qemu.conf)
DISPLAY_PORTS = (5900, 65535)
NFT_TABLE = ('inet', 'secvirt_qemu_tls')
LIBVIRT_NFT_TABLE = ('inet', 'secvirt_libvirt_remote')

CA_CERT = '/etc/pki/CA/cacert.pem'
CA_CRL = '/etc/pki/CA/cacrl.pem'
SERVER_CERT = '/etc/pki/libvirt/servercert.pem'
# (what, certificate, the CA file QEMU reads next to it, CRL next to it)
QEMU_CERTS = (
    ('VNC server', '/etc/pki/libvirt-vnc/server-cert.pem', '/etc/pki/libvirt-vnc/ca-cert.pem', '/etc/pki/libvirt-vnc/ca-crl.pem'),
    ('SPICE server', '/etc/pki/libvirt-spice/server-cert.pem', '/etc/pki/libvirt-spice/ca-cert.pem',
     '/etc/pki/libvirt-spice/ca-crl.pem'),
    ('QEMU migration server', '/etc/pki/qemu/server-cert.pem', '/etc/pki/qemu/ca-cert.pem', '/etc/pki/qemu/ca-crl.pem'),
    ('QEMU migration client', '/etc/pki/qemu/client-cert.pem', '/etc/pki/qemu/ca-cert.pem', '/etc/pki/qemu/ca-crl.pem'),
)
DAEMON_CONFS = ('libvirtd.conf', 'virtproxyd.conf', 'virtqemud.conf')
QEMU_GROUPS = ('libvirt-qemu', 'kvm', 'qemu')
GUEST_PORT_PREFIXES = ('vnet', 'tap', 'macvtap', 'vif')
FORWARDING_MODES = ('nat', 'route', 'open')
MAX_EVIDENCE = 25
MAX_DIR_ENTRIES = 5000
MAX_DIR_DEPTH = 3

# libvirt's RPC protocol (src/rpc/virnetprotocol.x, src/remote/remote_protocol.x):
# a call of REMOTE_PROC_AUTH_LIST, which the daemon answers before any login
REMOTE_PROGRAM = 0x20008086
REMOTE_PROTOCOL_VERSION = 1
REMOTE_PROC_AUTH_LIST = 66
AUTH_LIST_CALL = struct.pack('>IIIiiIi', 28, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION, REMOTE_PROC_AUTH_LIST, 0, 1, 0)

R_TLS = '004: Remote management using TLS'
R_TLS_CONF = '004: Step 5. Edit the libvirtd daemon configuration'
R_TLS_FW = '004: Step 6. Change the firewall configuration'
R_TLS_VERIFY = '004: Step 7. Verify that remote management is working'
R_SASL = '004: Remote management using SASL authentication and encryption'
R_VNC = '004: Securing remote VNC console with TLS'
R_SPICE = '004: Securing SPICE console with TLS'
R_MIGRATION = '003: Guest migration network'
R_ISOLATION = '004: Host network isolation'
R_BRIDGE_NF = '004: Bridged networking and Netfilter'
R_NWFILTER = '004: The libvirt network filter driver'
R_SVIRT = '004: The sVirt service'
R_SVIRT_LABELS = '004: Verifying sVirt labeling by examining the labels'
R_TCB = '004: Trusted computing base'
R_IMAGES = '004: Default location for virtual disk images'
R_IMAGES_CUSTOM = '004: Storing virtual disk images in a customized location'
R_ENCRYPTION = '004: KVM guest image encryption'
R_STORAGE_ENCRYPTION = '003: Storage encryption'
R_DATA_ACCESS = '003: Disk image data access'
R_PROBING = '003: Disk image format probing'
R_BACKING = '003: Disk image backing files'
R_AUDIT_HOST = '004: Enabling host auditing'
R_AUDIT_RULES = '004: Audit rules file'
R_AUDIT_LIBVIRT = '004: Enabling libvirt auditing'

# id: (area, severity, title, references, fact groups the control reads)
CATALOG = {
    'SVK-TLS-001': ('tls', 'high', 'libvirtd accepts TLS connections on the TLS port', [R_TLS, R_TLS_FW], ('listeners',)),
    'SVK-TLS-002': ('tls', 'high', 'A TLS client without a certificate is refused', [R_TLS, R_TLS_VERIFY], ('listeners', 'handshake')),
    'SVK-TLS-003': ('tls', 'high', 'tls_allowed_dn_list is set and admits none of the host\'s server or QEMU certificates',
                    [R_TLS_CONF], ('daemon_conf', 'certs')),
    'SVK-TLS-004': ('tls', 'high', 'No unauthenticated TCP access to libvirtd', [R_SASL, R_TLS_CONF], ('daemon_conf', 'listeners', 'sasl_conf')),
    'SVK-TLS-005': ('tls', 'high', 'TLS certificates chain to the CA and are not about to expire', [R_TLS, R_VNC, R_SPICE],
                    ('daemon_conf', 'certs')),
    'SVK-TLS-006': ('tls', 'medium', 'Installed certificate revocation lists are current', [R_TLS], ('daemon_conf', 'certs')),
    'SVK-TLS-007': ('tls', 'medium', 'The libvirt TLS port is restricted by a firewall', [R_TLS_FW], ('listeners', 'firewall')),
    'SVK-CON-001': ('consoles', 'high', 'VNC consoles require TLS with client certificates', [R_VNC], ('qemu_conf', 'guests')),
    'SVK-CON-002': ('consoles', 'high', 'SPICE consoles are served over TLS only', [R_SPICE], ('qemu_conf', 'guests')),
    'SVK-CON-003': ('consoles', 'medium', 'Consoles do not listen on a wildcard address', [R_VNC, R_SPICE], ('qemu_conf', 'guests')),
    'SVK-CON-004': ('consoles', 'medium', 'The console port range is restricted by a firewall', [R_VNC, R_SPICE, R_TLS_FW],
                    ('qemu_conf', 'firewall')),
    'SVK-MIG-001': ('migration', 'high', 'Migration is forced over TLS with peer certificate verification', [R_MIGRATION], ('qemu_conf',)),
    'SVK-MIG-002': ('migration', 'medium', 'The migration port range is restricted by a firewall', [R_MIGRATION, R_TLS_FW],
                    ('qemu_conf', 'firewall')),
    'SVK-NET-001': ('network', 'medium', 'Bridges with guest ports carry no host IP address', [R_ISOLATION],
                    ('bridges', 'addresses', 'guests')),
    'SVK-NET-002': ('network', 'medium', 'Bridged guest traffic is not passed to the host\'s netfilter', [R_BRIDGE_NF],
                    ('bridge_nf', 'bridges')),
    'SVK-NET-003': ('network', 'medium', 'Every interface of a running guest has a network filter', [R_NWFILTER], ('guests',)),
    'SVK-CNF-001': ('confinement', 'high', 'qemu.conf requires sVirt confinement for every guest', [R_SVIRT], ('qemu_conf', 'guests')),
    'SVK-CNF-002': ('confinement', 'high', 'Every running QEMU has an enforced sVirt label of its own', [R_SVIRT, R_SVIRT_LABELS],
                    ('guests', 'lsm')),
    'SVK-CNF-003': ('confinement', 'high', 'Every running QEMU runs as non-root in a seccomp filter without capabilities', [R_TCB],
                    ('guests',)),
    'SVK-STO-001': ('storage', 'high', 'Image directories and images are not accessible to other users', [R_IMAGES, R_IMAGES_CUSTOM],
                    ('image_dirs',)),
    'SVK-STO-002': ('storage', 'medium', 'Guest storage is encrypted with LUKS', [R_ENCRYPTION, R_STORAGE_ENCRYPTION], ('block', 'guests')),
    'SVK-STO-003': ('storage', 'high', 'No guest image is mounted or attached on the host', [R_DATA_ACCESS], ('block', 'guests')),
    'SVK-IMG-001': ('storage', 'high', 'Running guests declare their disk formats and backing files', [R_PROBING, R_BACKING], ('guests',)),
    'SVK-AUD-001': ('audit', 'high', 'auditd runs with the virtualization audit rules loaded', [R_AUDIT_HOST, R_AUDIT_RULES], ('audit',)),
    'SVK-AUD-002': ('audit', 'medium', 'Auditing starts at boot (audit=1 on the kernel command line)', [R_AUDIT_HOST], ('cmdline',)),
    'SVK-AUD-003': ('audit', 'medium', 'libvirt writes its own audit records and refuses to run without host auditing',
                    [R_AUDIT_LIBVIRT], ('daemon_conf',)),
}
CONTROL_IDS = tuple(sorted(CATALOG))


class PostureError(Exception):
    """Bad module input; the message is the module's msg."""


# --------------------------------------------------------------------------
# Selection and small helpers
# --------------------------------------------------------------------------

def select_controls(requested):
    """The control IDs to run, in ID order, from IDs (``SVK-TLS-001`` or ``TLS-001``) and areas."""
    if not requested:
        return list(CONTROL_IDS)
    chosen = set()
    unknown = []
    for item in requested:
        word = str(item).strip()
        upper = word.upper()
        if word.lower() == 'all':
            chosen.update(CONTROL_IDS)
        elif word.lower() in AREAS:
            chosen.update(cid for cid in CONTROL_IDS if CATALOG[cid][0] == word.lower())
        elif upper in CATALOG:
            chosen.add(upper)
        elif 'SVK-' + upper in CATALOG:
            chosen.add('SVK-' + upper)
        else:
            unknown.append(word)
    if unknown:
        raise PostureError('unknown control(s) %s: use control IDs (%s) or areas (%s)'
                           % (', '.join(unknown), ', '.join(CONTROL_IDS), ', '.join(AREAS)))
    return sorted(chosen)


def _host_path(root, path):
    return os.path.join(root or '/', path.lstrip('/'))


def _listdir(root, path):
    try:
        return sorted(os.listdir(_host_path(root, path)))
    except (IOError, OSError):
        return []


def _clip(items, limit=MAX_EVIDENCE):
    items = list(items)
    if len(items) > limit:
        return items[:limit] + ['... and %d more' % (len(items) - limit)]
    return items


def _ssl_text(exc):
    """An ssl/socket error without OpenSSL's source location."""
    text = str(exc) or exc.__class__.__name__
    return re.sub(r'\s*\(_ssl\.c:\d+\)', '', text).strip()


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(value):
    return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _conf_values(text, path):
    """(values, None) of a libvirt configuration file, or (None, why not)."""
    if text is None:
        return None, '%s: absent' % path
    try:
        return lconf.values(text), None
    except lconf.ConfError as exc:
        return None, '%s: does not parse (%s)' % (path, exc)


def _daemon_conf(facts, purpose):
    """(host path, values, error) of the daemon configuration that holds the
    remote access (libvirtd.conf, else virtproxyd.conf) or the audit keys
    (libvirtd.conf, else virtqemud.conf)."""
    confs = facts.get('daemon_conf') or {}
    other = 'virtproxyd.conf' if purpose == 'remote' else 'virtqemud.conf'
    name = 'libvirtd.conf' if confs.get('libvirtd.conf') is not None or confs.get(other) is None else other
    path = '/etc/libvirt/' + name
    values, error = _conf_values(confs.get(name), path)
    if values is None and confs.get(name) is None:
        error = '%s: absent (libvirt is not installed)' % path
    return path, values, error


def _qemu_conf(facts):
    values, error = _conf_values(facts.get('qemu_conf'), '/etc/libvirt/qemu.conf')
    if values is None and facts.get('qemu_conf') is None:
        error = '/etc/libvirt/qemu.conf: absent (libvirt is not installed)'
    return values, error


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _effective_verify(conf, prefix):
    """(value, evidence) of <prefix>_tls_x509_verify, which default_tls_x509_verify provides when unset."""
    key = '%s_tls_x509_verify' % prefix
    if key in conf:
        return _as_int(conf[key]), '%s = %s' % (key, conf[key])
    if 'default_tls_x509_verify' in conf:
        return (_as_int(conf['default_tls_x509_verify']),
                '%s not set, default_tls_x509_verify = %s' % (key, conf['default_tls_x509_verify']))
    return None, '%s not set (nor default_tls_x509_verify)' % key


def _setting(conf, key, default=None):
    """(value, evidence) of a configuration key with libvirt's built-in default."""
    if key in conf:
        return conf[key], '%s = %s' % (key, json.dumps(conf[key]))
    if default is None:
        return None, '%s not set' % key
    return default, '%s not set (libvirt default %s)' % (key, json.dumps(default))


def _under(path, directory):
    path = os.path.normpath(path)
    directory = os.path.normpath(directory)
    return path == directory or path.startswith(directory.rstrip('/') + '/')


# --------------------------------------------------------------------------
# Parsers of what collect() reads
# --------------------------------------------------------------------------

def parse_proc_net_tcp(text, ipv6=False, byteorder=None):
    """Listening sockets ({address, port}) of /proc/net/tcp or /proc/net/tcp6.

    The kernel prints the address as 32-bit words in host byte order.
    """
    byteorder = byteorder or sys.byteorder
    found = []
    for line in (text or '').splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != '0A':
            continue
        address, _sep, port = parts[1].partition(':')
        try:
            raw = bytes.fromhex(address)
            if byteorder == 'little':
                raw = b''.join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            text_address = socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET, raw)
            found.append({'address': text_address, 'port': int(port, 16), 'family': 'ipv6' if ipv6 else 'ipv4'})
        except (ValueError, OSError):
            continue
    return found


def listeners(facts):
    data = facts.get('listeners') or {}
    return parse_proc_net_tcp(data.get('tcp')) + parse_proc_net_tcp(data.get('tcp6'), ipv6=True)


def show_address(address, port):
    return '[%s]:%d' % (address, port) if ':' in address else '%s:%d' % (address, port)


def probe_target(found, port):
    """(host, port) to make the TLS handshake with: loopback for a wildcard listener."""
    for listener in found:
        if listener['port'] != port:
            continue
        address = listener['address']
        if address == '0.0.0.0':
            return '127.0.0.1', port
        if address == '::':
            return '::1', port
        return address, port
    return None


def parse_mountinfo(text):
    """[{dev, root, mountpoint, fstype, source}] of /proc/<pid>/mountinfo (octal escapes decoded)."""
    def unescape(value):
        return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), value)
    mounts = []
    for line in (text or '').splitlines():
        left, sep, right = line.partition(' - ')
        fields = left.split()
        tail = right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append({'dev': fields[2], 'root': unescape(fields[3]), 'mountpoint': unescape(fields[4]),
                       'fstype': tail[0], 'source': unescape(tail[1])})
    return mounts


def parse_ip_addresses(text):
    """{ifname: [global addresses as 'addr/prefix']} from ``ip -j addr show``."""
    try:
        links = json.loads(text or '[]')
    except ValueError:
        return None
    out = {}
    for link in links if isinstance(links, list) else []:
        name = link.get('ifname')
        if not name:
            continue
        out[name] = ['%s/%s' % (info.get('local'), info.get('prefixlen')) for info in link.get('addr_info') or []
                     if info.get('family') in ('inet', 'inet6') and info.get('scope') == 'global']
    return out


def parse_sasl_mechs(text):
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() == 'mech_list':
            return value.split()
    return None


def parse_firewalld_zones(text):
    """{zone: {default, active, target, interfaces, sources, services, ports, rich_rules}} of
    ``firewall-cmd --list-all-zones``."""
    zones = {}
    current = None
    key = None
    for line in (text or '').splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            match = re.match(r'^(\S+)(?:\s+\(([^)]*)\))?', line)
            flags = [f.strip() for f in (match.group(2) or '').split(',')]
            current = {'default': 'default' in flags, 'active': 'active' in flags, 'target': '', 'interfaces': [],
                       'sources': [], 'services': [], 'ports': [], 'rich_rules': []}
            zones[match.group(1)] = current
            key = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if key == 'rich rules' and stripped.startswith('rule '):
            current['rich_rules'].append(stripped)
            continue
        name, sep, value = stripped.partition(':')
        if not sep:
            continue
        key = name.strip()
        if key == 'target':
            current['target'] = value.strip()
        elif key in ('interfaces', 'sources', 'services', 'ports'):
            current[key] = value.split()
    return zones


def _span_of(text):
    match = re.match(r'^(\d+)(?:-(\d+))?$', str(text).strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or match.group(1))


def _overlaps(span, wanted):
    return span[0] <= wanted[1] and wanted[0] <= span[1]


def _covers(spans, wanted):
    """Whether the union of spans covers every port of wanted."""
    point = wanted[0]
    for low, high in sorted(spans):
        if low <= point <= high:
            point = high + 1
        if point > wanted[1]:
            return True
    return point > wanted[1]


def _nft_ports(right):
    """Port spans of the right side of an nft JSON match (number, range, set, or None)."""
    if isinstance(right, int):
        return [(right, right)]
    if isinstance(right, dict):
        if 'range' in right and len(right['range']) == 2:
            low, high = right['range']
            if isinstance(low, int) and isinstance(high, int):
                return [(low, high)]
            return None
        if 'set' in right:
            spans = []
            for item in right['set']:
                sub = _nft_ports(item)
                if sub is None:
                    return None
                spans.extend(sub)
            return spans
    return None


def nft_rule_shape(expr):
    """{dports, restricted, verdict} of one nft JSON rule: the TCP destination ports it
    matches (None: any), whether it matches anything else (addresses, interfaces ...)
    and its verdict (accept, drop, reject or None)."""
    dports = None
    restricted = False
    verdict = None
    for item in expr or []:
        if not isinstance(item, dict):
            continue
        if 'match' in item:
            match = item['match']
            left = match.get('left') or {}
            payload = left.get('payload') if isinstance(left, dict) else None
            meta = left.get('meta') if isinstance(left, dict) else None
            if payload and payload.get('protocol') in ('tcp', 'th') and payload.get('field') == 'dport' \
                    and match.get('op') in ('==', 'in'):
                spans = _nft_ports(match.get('right'))
                if spans is None:
                    restricted = True
                else:
                    dports = spans
            elif meta and meta.get('key') == 'l4proto' and match.get('right') in ('tcp', 6):
                continue
            else:
                restricted = True
        for name in ('accept', 'drop', 'reject'):
            if name in item:
                verdict = name
    return {'dports': dports, 'restricted': restricted, 'verdict': verdict}


# --------------------------------------------------------------------------
# Collection (host I/O)
# --------------------------------------------------------------------------

def _run(run, argv):
    """{'rc', 'out', 'err'} of a command, or None when run has no such command."""
    if run is None:
        return None
    answer = run(argv)
    if answer is None:
        return None
    rc, out, err = answer
    return {'rc': rc, 'out': out or '', 'err': err or ''}


def tls_probe(host, port, timeout, connect=None):
    """One TLS handshake to the libvirt TLS port without a client certificate.

    Nothing is trusted (CERT_NONE): only whether the daemon refuses the
    session is measured. After the handshake one RPC call (auth-list, which
    libvirt answers before any login) is sent: a daemon that accepts the
    session answers it; libvirt drops a client without a certificate after the
    handshake (with TLS 1.3 the alert arrives on the first read).
    """
    connect = connect or socket.create_connection
    result = {'address': show_address(host, port), 'outcome': None, 'detail': '', 'version': None, 'cipher': None,
              'peer_subject': None}
    try:
        sock = connect((host, port), timeout)
    except (OSError, ValueError) as exc:
        result.update(outcome='connect_failed', detail=_ssl_text(exc))
        return result
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = None
    try:
        try:
            tls = context.wrap_socket(sock)
        except socket.timeout:
            result.update(outcome='no_answer', detail='no TLS handshake within %s s' % timeout)
            return result
        except (ssl.SSLError, OSError) as exc:
            text = _ssl_text(exc)
            if re.search(r'WRONG_VERSION_NUMBER|UNKNOWN_PROTOCOL|record layer failure|packet length too long', text):
                result.update(outcome='not_tls', detail='the port does not speak TLS: %s' % text)
            else:
                result.update(outcome='refused_in_handshake', detail=text)
            return result
        result['version'] = tls.version()
        result['cipher'] = (tls.cipher() or [None])[0]
        result['peer_subject'] = _peer_subject(tls)
        data = b''
        try:
            tls.sendall(AUTH_LIST_CALL)
            while len(data) < 28:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            result.update(outcome='no_answer', detail='no answer to an RPC call within %s s; the connection stayed open' % timeout)
            return result
        except (ssl.SSLError, OSError) as exc:
            result.update(outcome='refused_after_handshake', detail=_ssl_text(exc))
            return result
        if len(data) >= 28:
            _length, prog, _vers, proc, kind, _serial, status = struct.unpack('>IIIiiIi', data[:28])
            if prog == REMOTE_PROGRAM and proc == REMOTE_PROC_AUTH_LIST and kind == 1:
                result.update(outcome='answered', detail='the daemon answered the RPC call auth-list (status %s) '
                                                         'without a client certificate' % ('OK' if status == 0 else 'ERROR'))
            else:
                result.update(outcome='answered', detail='the server kept the session and sent %d bytes that are not '
                                                         'a libvirt reply' % len(data))
            return result
        result.update(outcome='refused_after_handshake',
                      detail='connection closed by the server after the handshake (EOF%s)'
                             % (', %d bytes' % len(data) if data else ''))
        return result
    finally:
        try:
            (tls or sock).close()
        except OSError:
            pass


def _peer_subject(tls):
    try:
        der = tls.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    if not der or not xx.HAS_CRYPTOGRAPHY:
        return None
    try:
        from cryptography import x509 as cx509
        return xx.name_to_string(cx509.load_der_x509_certificate(der).subject)
    except Exception:  # a certificate cryptography cannot read is no reason to fail the probe
        return None


def collect_certs(root, daemon_values):
    """{host path: PEM text or None} of the CA, certificate and CRL files the controls read."""
    conf = daemon_values or {}
    paths = [conf.get('ca_file') or CA_CERT, conf.get('cert_file') or SERVER_CERT, conf.get('crl_file') or CA_CRL, CA_CERT, CA_CRL]
    for _what, cert, ca, crl in QEMU_CERTS:
        paths.extend([cert, ca, crl])
    return dict((path, hh.read_text(root, path)) for path in dict.fromkeys(p for p in paths if isinstance(p, str)))


def collect_guests(uri, root='/', lv=None):
    """The running guests (live and inactive XML, qemu process), the libvirt networks
    and the host's security models, over a read-only connection."""
    out = {'error': None, 'domains': [], 'networks': [], 'secmodels': None}
    try:
        conn = lc.open_connection(uri, readonly=True, lv=lv)
    except lc.LibvirtModuleError as exc:
        # the evidence keeps libvirt's reason, not the installation advice
        out['error'] = re.sub(r' \(install [^)]*\)', '', exc.msg)
        return out
    errors = []
    try:
        try:
            domains = conn.listAllDomains(hh.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except Exception as exc:  # libvirt.libvirtError
            errors.append('cannot list the running guests: %s' % lc.error_message(exc))
            domains = []
        for dom in domains:
            entry = {'name': dom.name(), 'uuid': dom.UUIDString(), 'live_xml': None, 'inactive_xml': None,
                     'persistent': None, 'xml_error': None}
            try:
                entry['live_xml'] = lc.domain_xml(dom)
                entry['persistent'] = bool(dom.isPersistent())
                if entry['persistent']:
                    entry['inactive_xml'] = lc.domain_xml(dom, inactive=True)
            except Exception as exc:  # the guest stopped meanwhile, or no permission
                entry['xml_error'] = lc.error_message(exc)
            entry['process'] = hh.guest_process(root, entry['name'], entry['uuid'])
            pid = entry['process'].get('pid')
            cmdline = hh.read_text(root, 'proc/%s/cmdline' % pid) if pid else None
            entry['cmdline'] = [arg for arg in cmdline.split('\0') if arg] if cmdline else None
            out['domains'].append(entry)
        try:
            for net in conn.listAllNetworks(0):
                elem = ET.fromstring(net.XMLDesc(0))
                forward = elem.find('forward')
                bridge = elem.find('bridge')
                out['networks'].append({
                    'name': net.name(), 'bridge': bridge.get('name') if bridge is not None else None,
                    'forward': (forward.get('mode') or 'nat') if forward is not None else 'isolated',
                    'active': bool(net.isActive())})
        except Exception as exc:
            errors.append('cannot list the networks: %s' % lc.error_message(exc))
        try:
            out['secmodels'] = [m['model'] for m in lc.host_security_models(conn)]
        except Exception as exc:
            errors.append('cannot read the capabilities: %s' % lc.error_message(exc))
    finally:
        try:
            conn.close()
        except Exception:  # closing never hides what was read
            pass
    if errors:
        out['error'] = '; '.join(errors)
    out['domains'].sort(key=lambda d: d['name'])
    return out


def collect_bridges(root='/'):
    """{bridge: {ports, guest_ports, nf_call}} from /sys/class/net."""
    bridges = {}
    for name in _listdir(root, 'sys/class/net'):
        base = 'sys/class/net/%s' % name
        if not os.path.isdir(_host_path(root, base + '/bridge')):
            continue
        ports = _listdir(root, base + '/brif')
        guest_ports = [p for p in ports if p.startswith(GUEST_PORT_PREFIXES)
                       or os.path.exists(_host_path(root, 'sys/class/net/%s/tun_flags' % p))]
        nf_call = dict((family, hh.read_int(root, base + '/bridge/nf_call_' + family))
                       for family in ('iptables', 'ip6tables', 'arptables'))
        bridges[name] = {'ports': ports, 'guest_ports': guest_ports, 'nf_call': nf_call}
    return bridges


def collect_bridge_nf(root='/'):
    state = {'loaded': os.path.isdir(_host_path(root, 'sys/module/br_netfilter'))}
    for family in ('iptables', 'ip6tables', 'arptables'):
        state[family] = hh.read_int(root, 'proc/sys/net/bridge/bridge-nf-call-' + family)
    return state


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return str(gid)


def _stat_entry(path, st):
    if stat.S_ISDIR(st.st_mode):
        kind = 'dir'
    elif stat.S_ISREG(st.st_mode):
        kind = 'file'
    elif stat.S_ISLNK(st.st_mode):
        kind = 'link'
    else:
        kind = 'other'
    return {'path': path, 'kind': kind, 'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid,
            'group': _group_name(st.st_gid)}


def collect_image_dirs(dirs, root='/', max_entries=MAX_DIR_ENTRIES, max_depth=MAX_DIR_DEPTH):
    """{dir: {exists, error, mode, uid, gid, group, entries, truncated}}: the directory and what
    it holds (lstat, never following a link), at most max_depth levels down."""
    result = {}
    for directory in dirs:
        entry = {'exists': False, 'error': None, 'entries': [], 'truncated': False}
        result[directory] = entry
        try:
            st = os.stat(_host_path(root, directory))
        except OSError as exc:
            entry['error'] = exc.strerror or str(exc)
            continue
        entry.update(_stat_entry(directory, st))
        entry['exists'] = True
        pending = [(directory, 1)]
        while pending and not entry['truncated']:
            current, depth = pending.pop(0)
            try:
                names = sorted(os.listdir(_host_path(root, current)))
            except OSError as exc:
                if current == directory:
                    entry['error'] = 'cannot list %s: %s' % (current, exc.strerror or exc)
                continue
            for name in names:
                if len(entry['entries']) >= max_entries:
                    entry['truncated'] = True
                    break
                path = os.path.join(current, name)
                try:
                    child = _stat_entry(path, os.lstat(_host_path(root, path)))
                except OSError:
                    continue
                entry['entries'].append(child)
                if child['kind'] == 'dir' and depth < max_depth:
                    pending.append((path, depth + 1))
    return result


def collect_block(root='/'):
    """Mounts, device-mapper devices, bound loop devices and connected nbd devices."""
    dm = {}
    loops = {}
    nbd = {}
    for name in _listdir(root, 'sys/block'):
        base = 'sys/block/%s/' % name
        if name.startswith('dm-'):
            dm[name] = {'name': hh.read_stripped(root, base + 'dm/name'), 'uuid': hh.read_stripped(root, base + 'dm/uuid') or '',
                        'dev': hh.read_stripped(root, base + 'dev'), 'slaves': _listdir(root, base + 'slaves')}
        elif name.startswith('loop'):
            backing = hh.read_stripped(root, base + 'loop/backing_file')
            if backing:
                loops[name] = backing
        elif name.startswith('nbd'):
            pid = hh.read_int(root, base + 'pid')
            if pid:
                nbd[name] = pid
    return {'mountinfo': hh.read_text(root, 'proc/self/mountinfo'), 'dm': dm, 'loops': loops, 'nbd': nbd}


def firewalld_running(root='/'):
    for pid in _listdir(root, 'proc'):
        if pid.isdigit() and hh.read_stripped(root, 'proc/%s/comm' % pid) == 'firewalld':
            return True
    return False


def collect(params, selected=None, root='/', run=None, lv=None, probe=None, now=None):
    """The facts the selected controls need (see the module docstring)."""
    selected = select_controls(None) if selected is None else selected
    needs = set()
    for cid in selected:
        needs.update(CATALOG[cid][4])
    facts = {'now': now or _utcnow()}
    if needs & {'daemon_conf', 'certs'}:
        facts['daemon_conf'] = dict((name, hh.read_text(root, '/etc/libvirt/' + name)) for name in DAEMON_CONFS)
    if 'qemu_conf' in needs:
        facts['qemu_conf'] = hh.read_text(root, '/etc/libvirt/qemu.conf')
    if 'sasl_conf' in needs:
        facts['sasl_conf'] = hh.read_text(root, '/etc/sasl2/libvirt.conf')
    if needs & {'listeners', 'handshake'}:
        facts['listeners'] = {'tcp': hh.read_text(root, 'proc/net/tcp'), 'tcp6': hh.read_text(root, 'proc/net/tcp6')}
    if 'handshake' in needs:
        port = params.get('tls_port') or DEFAULT_TLS_PORT
        target = probe_target(listeners(facts), port)
        if target is None:
            facts['handshake'] = {'address': None, 'outcome': 'not_attempted',
                                  'detail': 'nothing listens on TCP port %d' % port}
        else:
            facts['handshake'] = (probe or tls_probe)(target[0], target[1], params.get('handshake_timeout') or 5)
    if 'certs' in needs:
        _path, values, _error = _daemon_conf(facts, 'remote')
        facts['certs'] = collect_certs(root, values)
    if 'guests' in needs:
        facts['guests'] = collect_guests(params.get('uri') or lc.DEFAULT_URI, root, lv)
    if 'lsm' in needs:
        facts['lsm'] = {'apparmor': hh.apparmor_state(root), 'selinux': hh.selinux_state(root)}
    if 'firewall' in needs:
        running = firewalld_running(root)
        facts['firewall'] = {'nft': _run(run, ['nft', '-j', 'list', 'ruleset']), 'firewalld_running': running,
                             'default_zone': _run(run, ['firewall-cmd', '--get-default-zone']) if running else None,
                             'zones': _run(run, ['firewall-cmd', '--list-all-zones']) if running else None}
    if 'bridges' in needs:
        facts['bridges'] = collect_bridges(root)
    if 'addresses' in needs:
        facts['addresses'] = _run(run, ['ip', '-j', 'addr', 'show'])
    if 'bridge_nf' in needs:
        facts['bridge_nf'] = collect_bridge_nf(root)
    if 'image_dirs' in needs:
        facts['image_dirs'] = collect_image_dirs(params.get('image_dirs') or DEFAULT_IMAGE_DIRS, root)
    if 'block' in needs:
        facts['block'] = collect_block(root)
    if 'audit' in needs:
        facts['audit'] = {'list': _run(run, ['auditctl', '-l']), 'status': _run(run, ['auditctl', '-s'])}
    if 'cmdline' in needs:
        facts['cmdline'] = hh.read_text(root, 'proc/cmdline')
    return facts


# --------------------------------------------------------------------------
# Evaluation (pure)
# --------------------------------------------------------------------------

def _guests(facts):
    """(running guests, None) or (None, why they cannot be read)."""
    data = facts.get('guests')
    if data is None:
        return None, 'the running guests were not read'
    if data.get('error') and not data.get('domains'):
        return None, data['error']
    return data.get('domains') or [], None


def _parse_xml(text):
    try:
        return ET.fromstring(text) if text else None
    except ET.ParseError:
        return None


def listening_on(facts, port):
    return [entry for entry in listeners(facts) if entry['port'] == port]


def c_tls_001(facts, params):
    port = params['tls_port']
    on_port = listening_on(facts, port)
    if not on_port:
        return 'fail', ['nothing listens on TCP port %d (/proc/net/tcp, /proc/net/tcp6)' % port]
    return 'pass', ['listening on %s (/proc/net/%s)' % (show_address(e['address'], e['port']), 'tcp6' if e['family'] == 'ipv6' else 'tcp')
                    for e in on_port]


def c_tls_002(facts, params):
    probe = facts.get('handshake') or {'outcome': 'not_attempted', 'detail': 'no handshake was made'}
    evidence = []
    if probe.get('address'):
        evidence.append('TLS handshake to %s without a client certificate' % probe['address'])
    if probe.get('version'):
        subject = ', server certificate %s' % probe['peer_subject'] if probe.get('peer_subject') else ''
        evidence.append('handshake: %s %s%s' % (probe['version'], probe.get('cipher') or '', subject))
    evidence.append('%s: %s' % (probe['outcome'], probe.get('detail') or ''))
    outcome = probe['outcome']
    if outcome in ('refused_in_handshake', 'refused_after_handshake'):
        return 'pass', evidence
    if outcome in ('no_answer', 'not_tls'):
        return 'warn', evidence
    if outcome == 'not_attempted':
        evidence.append('no TLS listener: the refusal of clients without a certificate cannot be measured')
    return 'fail', evidence


def _dn_orders(subject):
    rdns = [part.strip() for part in re.split(r'(?<!\\),', subject)]
    return [','.join(rdns), ','.join(reversed(rdns))]


def dn_conflicts(patterns, subjects):
    """'pattern' admits subject lines; libvirt matches with fnmatch, case-sensitive, and
    GnuTLS versions print the DN in either order."""
    found = []
    for pattern in patterns:
        for subject in subjects:
            for form in _dn_orders(subject):
                if fnmatch.fnmatchcase(form, pattern):
                    found.append("'%s' admits %s" % (pattern, form))
                    break
    return found


def _load_pem(loader, text):
    """(what loader makes of the PEM text, None) or (None, why not)."""
    if text is None:
        return None, 'absent'
    if not xx.HAS_CRYPTOGRAPHY:
        return None, 'cannot read it: the Python module cryptography is missing'
    try:
        return loader(text), None
    except xx.X509Error as exc:
        return None, str(exc)


def _load_cert(text):
    """(certificate, None) or (None, why not)."""
    return _load_pem(xx.load_certificate, text)


def c_tls_003(facts, params):
    path, conf, error = _daemon_conf(facts, 'remote')
    if conf is None:
        return 'fail', [error]
    patterns = conf.get('tls_allowed_dn_list')
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        return 'fail', ['%s: tls_allowed_dn_list not set: every client certificate of the CA may log in' % path]
    evidence = ['%s: tls_allowed_dn_list = %s' % (path, json.dumps(patterns))]
    bad = [p for p in patterns if not str(p).strip() or str(p).strip() == '*']
    if bad:
        return 'fail', evidence + ['a blank or bare * pattern admits every certificate of the CA']
    certs = facts.get('certs') or {}
    subjects = []
    for cert_path in [conf.get('cert_file') or SERVER_CERT] + [entry[1] for entry in QEMU_CERTS]:
        cert, _why = _load_cert(certs.get(cert_path))
        if cert is not None:
            subjects.append(xx.name_to_string(cert.subject))
            evidence.append('%s: %s' % (cert_path, subjects[-1]))
    if not subjects:
        return 'warn', evidence + ['no server or QEMU certificate could be read to test the patterns against']
    conflicts = dn_conflicts([str(p) for p in patterns], subjects)
    if conflicts:
        return 'fail', evidence + conflicts
    return 'pass', evidence + ['no pattern admits one of these %d subjects' % len(subjects)]


def c_tls_004(facts, params):
    path, conf, error = _daemon_conf(facts, 'remote')
    if conf is None:
        return 'fail', [error]
    listen_tcp, listen_text = _setting(conf, 'listen_tcp', 0)
    auth_tcp, auth_text = _setting(conf, 'auth_tcp', 'sasl')
    tcp = [e for e in listeners(facts) if e['port'] == _as_int(conf.get('tcp_port')) or e['port'] == TCP_PORT]
    evidence = ['%s: %s, %s' % (path, listen_text, auth_text)]
    if tcp:
        evidence.append('listening on %s' % ', '.join(show_address(e['address'], e['port']) for e in tcp))
    else:
        evidence.append('nothing listens on TCP port %d' % TCP_PORT)
    mechs = parse_sasl_mechs(facts.get('sasl_conf'))
    if auth_tcp == 'sasl' and (tcp or _as_int(listen_tcp)):
        evidence.append('/etc/sasl2/libvirt.conf mech_list: %s' % (' '.join(mechs) if mechs else 'not set'))
    if auth_tcp == 'none' and (tcp or _as_int(listen_tcp) == 1):
        return 'fail', evidence + ['TCP without authentication: anyone who reaches the port manages every guest']
    if tcp and auth_tcp != 'sasl':
        return 'fail', evidence + ['auth_tcp %s on a listening TCP port (only sasl authenticates there)' % auth_tcp]
    return 'pass', evidence


def _ca_bundle(text):
    """(the CAs of a bundle, None) or (None, why not)."""
    return _load_pem(xcrl.load_ca_bundle, text)


def _verify_against(cert, cas, now, min_days):
    """Problems of cert against the best CA of a bundle (the one that signed it)."""
    best = None
    for ca in cas:
        problems = xx.verify_certificate(cert, ca, now=now, min_days_left=min_days)
        if xx.not_after(ca) > now and xx.not_after(ca) - now < datetime.timedelta(days=min_days):
            problems.append('the CA expires on %s, within %d days' % (xx.iso(xx.not_after(ca)), min_days))
        if best is None or not any(p.startswith('not signed') for p in problems):
            best = problems
            if not any(p.startswith('not signed') for p in problems):
                break
    return best if best is not None else ['no CA certificate']


def c_tls_005(facts, params):
    now = facts['now']
    min_days = params['certificate_min_days']
    certs = facts.get('certs') or {}
    _path, conf, _error = _daemon_conf(facts, 'remote')
    conf = conf or {}
    items = [('libvirtd server', conf.get('cert_file') or SERVER_CERT, conf.get('ca_file') or CA_CERT, True)]
    items.extend((what, cert, ca, False) for what, cert, ca, _crl in QEMU_CERTS)
    evidence = []
    failed = False
    for what, cert_path, ca_path, required in items:
        cert, why = _load_cert(certs.get(cert_path))
        if cert is None:
            if required or certs.get(cert_path) is not None:
                failed = True
                evidence.append('%s %s: %s' % (what, cert_path, why))
            else:
                evidence.append('%s %s: absent, not checked' % (what, cert_path))
            continue
        if certs.get(ca_path) is None and ca_path != CA_CERT:
            ca_path = CA_CERT
        cas, why = _ca_bundle(certs.get(ca_path))
        if cas is None:
            failed = True
            evidence.append('%s %s: the CA %s is %s' % (what, cert_path, ca_path, why))
            continue
        problems = _verify_against(cert, cas, now, min_days)
        days = (xx.not_after(cert) - now).days
        line = '%s %s: %s, not after %s (%d days), CA %s' % (what, cert_path, xx.name_to_string(cert.subject),
                                                             xx.iso(xx.not_after(cert)), days, ca_path)
        if problems:
            failed = True
            line += ': ' + '; '.join(problems)
        else:
            line += ': chain and dates OK'
        evidence.append(line)
    return ('fail' if failed else 'pass'), evidence


def c_tls_006(facts, params):
    now = facts['now']
    certs = facts.get('certs') or {}
    _path, conf, _error = _daemon_conf(facts, 'remote')
    conf = conf or {}
    items = [(conf.get('crl_file') or CA_CRL, conf.get('ca_file') or CA_CERT, bool(conf.get('crl_file')))]
    items.extend((crl, ca, False) for _what, _cert, ca, crl in QEMU_CERTS)
    evidence = []
    failed = False
    seen = set()
    for crl_path, ca_path, configured in items:
        if crl_path in seen:
            continue
        seen.add(crl_path)
        text = certs.get(crl_path)
        if text is None:
            if configured:
                failed = True
                evidence.append('%s: absent, but libvirtd.conf crl_file names it' % crl_path)
            continue
        if not xx.HAS_CRYPTOGRAPHY:
            failed = True
            evidence.append('%s: cannot read it: the Python module cryptography is missing' % crl_path)
            continue
        try:
            crl = xcrl.load_crl(text)
        except xx.X509Error as exc:
            failed = True
            evidence.append('%s: %s' % (crl_path, exc))
            continue
        next_update = xcrl._crl_time(crl, 'next_update')  # pylint: disable=protected-access
        line = '%s: issuer %s, %d revoked' % (crl_path, xx.name_to_string(crl.issuer), len(list(crl)))
        problems = []
        if next_update is None:
            problems.append('no nextUpdate')
        elif next_update <= now:
            problems.append('expired: nextUpdate %s is past' % _iso(next_update))
        else:
            line += ', nextUpdate %s (%d days)' % (_iso(next_update), (next_update - now).days)
        cas, _why = _ca_bundle(certs.get(ca_path) if certs.get(ca_path) is not None else certs.get(CA_CERT))
        if cas and not any(ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key()) for ca in cas):
            problems.append('not signed by the CA in %s' % ca_path)
        if problems:
            failed = True
            line += ': ' + '; '.join(problems)
        evidence.append(line)
    if not evidence:
        return 'not_applicable', ['no CRL installed (%s and the QEMU ca-crl.pem files are absent)' % CA_CRL]
    return ('fail' if failed else 'pass'), evidence


def _served(guest):
    """What a running guest's QEMU serves ({vnc, spice}), from its command line, else its live XML."""
    if guest.get('cmdline'):
        return qg.analyse_cmdline(guest['cmdline']), 'command line'
    try:
        definition = qg.analyse_definition(guest.get('live_xml') or '<domain/>')
    except qg.GraphicsXMLError:
        definition = []
    served = {'vnc': [], 'spice': []}
    for graphics in definition:
        served[graphics['type']].append({'plaintext': graphics['plaintext'], 'tls': None,
                                         'address': ','.join(graphics['listen']) or None})
    return served, 'live XML'


def _console_guest_problems(facts, kind):
    guests, error = _guests(facts)
    if guests is None:
        return ['running guests: %s' % error], []
    problems = []
    notes = []
    for guest in guests:
        served, source = _served(guest)
        for console in served[kind]:
            if console['plaintext']:
                if kind == 'vnc':
                    problems.append('guest %s serves VNC without TLS on %s (%s)' % (guest['name'], console.get('address'), source))
                else:
                    problems.append('guest %s serves SPICE with a plaintext port %s (%s)'
                                    % (guest['name'], console.get('port') or console.get('address'), source))
    with_console = [g['name'] for g in guests if _served(g)[0][kind]]
    tail = ', none in plaintext' if not problems else ''
    notes.append('%d running guest(s), %d with a %s console%s' % (len(guests), len(with_console), kind.upper(), tail))
    return problems, notes


def c_con_001(facts, params):
    conf, error = _qemu_conf(facts)
    if conf is None:
        return 'fail', [error]
    vnc_tls, tls_text = _setting(conf, 'vnc_tls', 0)
    verify, verify_text = _effective_verify(conf, 'vnc')
    evidence = ['qemu.conf: %s, %s' % (tls_text, verify_text)]
    problems, notes = _console_guest_problems(facts, 'vnc')
    ok = _as_int(vnc_tls) == 1 and verify == 1 and not problems
    return ('pass' if ok else 'fail'), evidence + problems + notes


def c_con_002(facts, params):
    conf, error = _qemu_conf(facts)
    if conf is None:
        return 'fail', [error]
    spice_tls, tls_text = _setting(conf, 'spice_tls', 0)
    evidence = ['qemu.conf: %s' % tls_text]
    problems, notes = _console_guest_problems(facts, 'spice')
    ok = _as_int(spice_tls) == 1 and not problems
    return ('pass' if ok else 'fail'), evidence + problems + notes


def _wildcard(address):
    return (address or '').strip('[]') in ('0.0.0.0', '::', '*', '')


def c_con_003(facts, params):
    conf, error = _qemu_conf(facts)
    if conf is None:
        return 'fail', [error]
    evidence = []
    failed = False
    for key in ('vnc_listen', 'spice_listen'):
        value, text = _setting(conf, key, '127.0.0.1')
        if isinstance(value, str) and _wildcard(value):
            failed = True
            text += ' (wildcard: every address of the host, guest-facing ones included)'
        evidence.append('qemu.conf: ' + text)
    guests, gerror = _guests(facts)
    if guests is None:
        return 'fail', evidence + ['running guests: %s' % gerror]
    for guest in guests:
        try:
            definition = qg.analyse_definition(guest.get('live_xml') or '<domain/>')
        except qg.GraphicsXMLError:
            continue
        for graphics in definition:
            for address in graphics['listen']:
                if _wildcard(address):
                    failed = True
                    evidence.append('guest %s: %s console listens on %s' % (guest['name'], graphics['type'].upper(), address))
    evidence.append('%d running guest(s) checked (live XML listen addresses)' % len(guests))
    return ('fail' if failed else 'pass'), evidence


def c_mig_001(facts, params):
    conf, error = _qemu_conf(facts)
    if conf is None:
        return 'fail', [error]
    force, force_text = _setting(conf, 'migrate_tls_force', 0)
    verify, verify_text = _effective_verify(conf, 'migrate')
    evidence = ['qemu.conf: %s, %s' % (force_text, verify_text)]
    if _as_int(force) != 1:
        evidence.append('without migrate_tls_force (libvirt >= 6.9) a migration without VIR_MIGRATE_TLS is accepted in plaintext')
    return ('pass' if _as_int(force) == 1 and verify == 1 else 'fail'), evidence


def port_range(conf, prefix, defaults):
    """(low, high) of qemu.conf's <prefix>_min/<prefix>_max, libvirt's ``defaults`` where unset."""
    conf = conf or {}
    return (_as_int(conf.get(prefix + '_min')) or defaults[0], _as_int(conf.get(prefix + '_max')) or defaults[1])


def _ports_restricted(facts, prefix, defaults, label, what, whole):
    """A qemu.conf port range's firewall control (SVK-MIG-002, SVK-CON-004):
    ``label`` names the range in the evidence, ``what``/``whole`` as for
    firewall_restriction."""
    conf, error = _qemu_conf(facts)
    wanted = port_range(conf, prefix, defaults)
    evidence = ['%s ports %d-%d (%s)' % (label, wanted[0], wanted[1], 'qemu.conf' if conf is not None else error + ', defaults')]
    status, found = firewall_restriction(facts, wanted, NFT_TABLE, what, whole)
    return status, evidence + found


def firewalld_openings(zones, default_zone, wanted):
    """Lines naming every opening of the port range to all sources in zones that
    apply to every source (the default zone, zones with interfaces)."""
    openings = []
    notes = []
    for name, zone in sorted(zones.items()):
        everyone = name == default_zone or zone['default'] or bool(zone['interfaces'])
        if not everyone:
            if zone['sources']:
                notes.append('zone %s applies to sources %s only' % (name, ' '.join(zone['sources'])))
            continue
        if zone['target'].upper() == 'ACCEPT':
            openings.append('zone %s has target ACCEPT: every port is open' % name)
        for port in zone['ports']:
            number, _sep, proto = port.partition('/')
            span = _span_of(number)
            if proto == 'tcp' and span and _overlaps(span, wanted):
                openings.append('zone %s opens port %s to every source' % (name, port))
        for rule in zone['rich_rules']:
            match = re.search(r'\bport\s+port="(\d+(?:-\d+)?)"\s+protocol="tcp"', rule)
            if not match or not re.search(r'\baccept\b', rule) or re.search(r'\bsource\s+(not\s+)?(address|ipset|mac)=', rule):
                continue
            if _overlaps(_span_of(match.group(1)), wanted):
                openings.append('zone %s rich rule without source: %s' % (name, rule))
        if zone['services']:
            notes.append('zone %s services (ports not resolved): %s' % (name, ' '.join(zone['services'])))
    return openings, notes


def nft_restrictions(ruleset, wanted):
    """(restrictions, openings) of the port range in the input base chains of an nft JSON ruleset.

    A restriction is a drop/reject rule that matches only TCP destination ports
    covering the whole range (or a base chain with policy drop); an opening is an
    unconditional accept of ports of the range before that rule.
    """
    items = ruleset.get('nftables') or []
    chains = {}
    for item in items:
        chain = item.get('chain') if isinstance(item, dict) else None
        if chain and chain.get('hook') == 'input':
            chains[(chain.get('family'), chain.get('table'), chain.get('name'))] = chain
    restrictions = []
    openings = []
    closed = set()
    for item in items:
        rule = item.get('rule') if isinstance(item, dict) else None
        if not rule:
            continue
        key = (rule.get('family'), rule.get('table'), rule.get('chain'))
        if key not in chains or key in closed:
            continue
        shape = nft_rule_shape(rule.get('expr'))
        where = 'table %s %s chain %s' % key
        if shape['verdict'] in ('drop', 'reject') and not shape['restricted'] and shape['dports'] \
                and _covers(shape['dports'], wanted):
            restrictions.append((key, '%s: tcp dport %s %s' % (where, _spans_text(shape['dports']), shape['verdict'])))
            closed.add(key)
        elif shape['verdict'] == 'accept' and not shape['restricted'] and shape['dports'] \
                and any(_overlaps(span, wanted) for span in shape['dports']):
            openings.append('%s: tcp dport %s accept from every source, before any drop' % (where, _spans_text(shape['dports'])))
            closed.add(key)
    for key, chain in sorted(chains.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        if chain.get('policy') == 'drop' and key not in closed:
            restrictions.append((key, 'table %s %s chain %s: policy drop' % key))
    return restrictions, openings


def _spans_text(spans):
    return '{ %s }' % ', '.join('%d' % low if low == high else '%d-%d' % (low, high) for low, high in spans)


def firewall_restriction(facts, wanted, own_table, what, whole=None):
    """(status, evidence) of whether the host's firewall keeps every source
    but the allowed ones from the TCP ports ``wanted`` (low, high): firewalld's
    zones while it runs, else an input rule of the role's own nftables table
    ``own_table`` that drops them. ``what`` names the ports in the evidence,
    ``whole`` (default ``what``) all of them."""
    firewall = facts.get('firewall') or {}
    if firewall.get('firewalld_running'):
        zones_cmd = firewall.get('zones')
        if not zones_cmd or zones_cmd['rc'] != 0:
            return 'fail', ['firewalld runs but firewall-cmd --list-all-zones failed: %s'
                            % ((zones_cmd or {}).get('err') or 'firewall-cmd not found').strip()]
        default = (firewall.get('default_zone') or {}).get('out', '').strip()
        openings, notes = firewalld_openings(parse_firewalld_zones(zones_cmd['out']), default, wanted)
        evidence = ['firewalld is running (default zone %s)' % (default or 'unknown')]
        if openings:
            return 'fail', evidence + openings + notes
        return 'pass', evidence + ['no zone that applies to every source opens %s' % what] + notes
    nft = firewall.get('nft')
    if nft is None:
        return 'fail', ['firewalld is not running and nft is not installed: nothing restricts %s' % what]
    if nft['rc'] != 0:
        return 'fail', ['nft -j list ruleset failed: %s' % (nft['err'] or nft['out']).strip()]
    try:
        ruleset = json.loads(nft['out'] or '{}')
    except ValueError as exc:
        return 'fail', ['nft -j list ruleset: not JSON (%s)' % exc]
    restrictions, openings = nft_restrictions(ruleset, wanted)
    own = [text for key, text in restrictions if key[:2] == own_table]
    others = [text for key, text in restrictions if key[:2] != own_table]
    if openings:
        return 'fail', openings + own + others
    if own:
        return 'pass', own + others
    loaded = any(isinstance(item, dict) and 'table' in item and (item['table'].get('family'), item['table'].get('name')) == own_table
                 for item in ruleset.get('nftables') or [])
    state = ('table %s %s has no input rule that drops %s' if loaded else 'table %s %s is not loaded') % (
        own_table + ((whole or what,) if loaded else ()))
    if others:
        return 'warn', [state + '; %s is restricted elsewhere (accepts in other chains not analysed)' % what] + others
    return 'fail', [state + ' and no input chain drops %s' % what]


def c_mig_002(facts, params):
    return _ports_restricted(facts, 'migration_port', MIGRATION_PORTS, 'migration', 'the range', 'the whole range')


def c_con_004(facts, params):
    return _ports_restricted(facts, 'remote_display_port', DISPLAY_PORTS, 'console', 'the console range',
                             'the whole console range')


def c_tls_007(facts, params):
    port = params['tls_port']
    on_port = listening_on(facts, port)
    if not on_port:
        return 'not_applicable', ['nothing listens on TCP port %d: no TLS port to restrict' % port]
    evidence = ['TLS port listening on %s' % ', '.join(show_address(e['address'], e['port']) for e in on_port)]
    status, found = firewall_restriction(facts, (port, port), LIBVIRT_NFT_TABLE, 'port %d' % port)
    return status, evidence + found


def _libvirt_bridges(facts):
    """({bridge: 'network NAME, forward MODE'} of libvirt's networks, note or None)."""
    data = facts.get('guests') or {}
    if data.get('error') and not data.get('networks'):
        return None, 'libvirt networks unknown (%s): virbr* bridges taken for them' % data['error']
    return dict((net['bridge'], 'libvirt network %s, forward %s' % (net['name'], net['forward']))
                for net in data.get('networks') or [] if net.get('bridge') and net.get('forward') != 'bridge'), None


def c_net_001(facts, params):
    bridges = facts.get('bridges') or {}
    used = dict((name, info) for name, info in sorted(bridges.items()) if info['guest_ports'])
    if not used:
        return 'not_applicable', ['no bridge has a guest (vnet/tap) port (%d bridge(s): %s)'
                                  % (len(bridges), ', '.join(sorted(bridges)) or 'none')]
    addresses_cmd = facts.get('addresses')
    addresses = parse_ip_addresses(addresses_cmd['out']) if addresses_cmd and addresses_cmd['rc'] == 0 else None
    if addresses is None:
        return 'warn', ['cannot read the interface addresses (ip -j addr show: %s)'
                        % ('not installed' if not addresses_cmd else (addresses_cmd['err'] or 'no JSON').strip())]
    networks, note = _libvirt_bridges(facts)
    evidence = [note] if note else []
    status = 'pass'
    for name, info in used.items():
        own = addresses.get(name) or []
        ports = ', '.join(info['guest_ports'])
        if not own:
            evidence.append('%s (guest ports %s): no global address' % (name, ports))
            continue
        libvirt_net = networks.get(name) if networks is not None else ('libvirt network (by name)' if name.startswith('virbr') else None)
        if libvirt_net:
            evidence.append('%s (%s; guest ports %s) has %s: a libvirt NAT/routed network\'s bridge carries a host '
                            'address by design' % (name, libvirt_net, ports, ', '.join(own)))
            status = 'warn' if status == 'pass' else status
        else:
            evidence.append('%s (guest ports %s) has %s: guests share a link with the host\'s own address'
                            % (name, ports, ', '.join(own)))
            status = 'fail'
    return status, evidence


def c_net_002(facts, params):
    state = facts.get('bridge_nf') or {}
    if not state.get('loaded'):
        return 'not_applicable', ['br_netfilter is not loaded (/sys/module/br_netfilter absent): bridged frames never reach '
                                  'iptables, ip6tables or arptables']
    evidence = []
    failed = False
    for family in ('iptables', 'ip6tables', 'arptables'):
        value = state.get(family)
        evidence.append('net.bridge.bridge-nf-call-%s = %s' % (family, 'unreadable' if value is None else value))
        if value != 0:
            failed = True
    for name, info in sorted((facts.get('bridges') or {}).items()):
        on = [family for family, value in sorted(info.get('nf_call', {}).items()) if value]
        if on:
            failed = True
            evidence.append('bridge %s: nf_call_%s = 1 (per-bridge override)' % (name, ', nf_call_'.join(on)))
    return ('fail' if failed else 'pass'), evidence


def c_net_003(facts, params):
    guests, error = _guests(facts)
    if guests is None:
        return 'fail', ['running guests: %s' % error]
    if not guests:
        return 'not_applicable', ['no running guest']
    evidence = []
    failed = False
    for guest in guests:
        root = _parse_xml(guest.get('live_xml'))
        if root is None:
            failed = True
            evidence.append('guest %s: live XML unreadable (%s)' % (guest['name'], guest.get('xml_error') or 'parse error'))
            continue
        interfaces = root.findall('./devices/interface')
        if not interfaces:
            evidence.append('guest %s: no network interface' % guest['name'])
        for iface in interfaces:
            target = iface.find('target')
            dev = target.get('dev') if target is not None else None
            source = iface.find('source')
            where = (source.get('bridge') or source.get('network') or source.get('dev')) if source is not None else None
            ref = iface.find('filterref')
            label = 'guest %s %s (%s %s)' % (guest['name'], dev or iface.get('type'), iface.get('type'), where or '')
            if ref is None or not ref.get('filter'):
                failed = True
                evidence.append(label + ': no filterref')
            else:
                evidence.append(label + ': filter %s' % ref.get('filter'))
    return ('fail' if failed else 'pass'), _clip(evidence)


def c_cnf_001(facts, params):
    conf, error = _qemu_conf(facts)
    if conf is None:
        return 'fail', [error]
    driver, driver_text = _setting(conf, 'security_driver')
    default_confined, default_text = _setting(conf, 'security_default_confined', 1)
    require, require_text = _setting(conf, 'security_require_confined', 0)
    drivers = driver if isinstance(driver, list) else ([driver] if driver else [])
    evidence = ['qemu.conf: %s, %s, %s' % (driver_text, default_text, require_text)]
    ok = bool(set(drivers) & {'apparmor', 'selinux'}) and 'none' not in drivers
    if not drivers:
        evidence.append('security_driver unset: libvirt uses the first LSM it finds, or none')
    ok = ok and _as_int(default_confined) == 1 and _as_int(require) == 1
    data = facts.get('guests') or {}
    models = data.get('secmodels')
    if models is not None:
        evidence.append('libvirt security models: %s' % (', '.join(models) or 'none'))
        if drivers and not set(drivers) & set(models):
            ok = False
            evidence.append('the running daemon offers none of %s' % ', '.join(drivers))
    elif data.get('error'):
        evidence.append('libvirt security models unknown: %s' % data['error'])
    return ('pass' if ok else 'fail'), evidence


def _label_base(label):
    return re.sub(r'\s+\([a-z_-]+\)$', '', label or '')


def c_cnf_002(facts, params):
    guests, error = _guests(facts)
    if guests is None:
        return 'fail', ['running guests: %s' % error]
    if not guests:
        return 'not_applicable', ['no running guest']
    lsm = facts.get('lsm') or {}
    profiles = (lsm.get('apparmor') or {}).get('profiles') or {}
    selinux = lsm.get('selinux') or {}
    bases = {}
    for guest in guests:
        label = (guest.get('process') or {}).get('lsm_label')
        if label:
            bases.setdefault(_label_base(label), []).append(guest['name'])
    evidence = []
    failed = False
    for guest in guests:
        process = guest.get('process') or {}
        pid = process.get('pid')
        label = process.get('lsm_label')
        prefix = 'guest %s pid %s' % (guest['name'], pid)
        if pid is None:
            failed = True
            evidence.append('guest %s: qemu pid unknown (/run/libvirt/qemu/%s.pid unreadable)' % (guest['name'], guest['name']))
            continue
        if not label:
            failed = True
            evidence.append('%s: /proc/%s/attr/current unreadable' % (prefix, pid))
            continue
        problems = []
        if hh.is_unconfined_label(label):
            problems.append('unconfined')
        elif ':' in label:  # SELinux context
            if selinux.get('enforcing') is not True:
                problems.append('SELinux is not enforcing')
        else:
            match = re.search(r'\(([a-z_-]+)\)$', label)
            mode = match.group(1) if match else profiles.get(_label_base(label))
            if mode != 'enforce':
                problems.append('AppArmor mode %s' % (mode or 'unknown'))
            kernel = profiles.get(_label_base(label))
            if kernel and kernel != 'enforce':
                problems.append('loaded in %s mode' % kernel)
        others = [name for name in bases.get(_label_base(label), []) if name != guest['name']]
        if others:
            problems.append('same label as %s' % ', '.join(others))
        if problems:
            failed = True
        evidence.append('%s: %s%s' % (prefix, label, ': ' + '; '.join(problems) if problems else ''))
    return ('fail' if failed else 'pass'), _clip(evidence)


def c_cnf_003(facts, params):
    guests, error = _guests(facts)
    if guests is None:
        return 'fail', ['running guests: %s' % error]
    if not guests:
        return 'not_applicable', ['no running guest']
    evidence = []
    failed = False
    for guest in guests:
        process = guest.get('process') or {}
        if process.get('pid') is None:
            failed = True
            evidence.append('guest %s: qemu pid unknown' % guest['name'])
            continue
        problems = []
        if process.get('uid') in (None, 0):
            problems.append('runs as root' if process.get('uid') == 0 else 'uid unreadable')
        if process.get('seccomp') != 2:
            problems.append('no seccomp filter')
        cap = process.get('cap_eff')
        if cap is None or int(cap, 16) != 0:
            problems.append('effective capabilities %s' % (cap or 'unreadable'))
        if problems:
            failed = True
        evidence.append('guest %s pid %s: uid %s, Seccomp %s, CapEff %s%s' % (
            guest['name'], process['pid'], process.get('uid'), process.get('seccomp'), cap,
            ': ' + '; '.join(problems) if problems else ''))
    return ('fail' if failed else 'pass'), _clip(evidence)


def _mode(value):
    return '%04o' % value


def c_sto_001(facts, params):
    data = facts.get('image_dirs') or {}
    evidence = []
    status = 'pass'
    for directory in params['image_dirs']:
        entry = data.get(directory) or {'exists': False, 'error': 'not read'}
        if not entry.get('exists'):
            evidence.append('%s: %s' % (directory, entry.get('error') or 'absent'))
            status = 'fail'
            continue
        problems = []
        if entry['kind'] != 'dir':
            problems.append('not a directory')
        if entry['mode'] & ~0o711:
            problems.append('mode %s grants more than 0711 (others could list or add images)' % _mode(entry['mode']))
        if entry['uid'] != 0:
            problems.append('owned by uid %d, not root' % entry['uid'])
        tail = ': ' + '; '.join(problems) if problems else ''
        evidence.append('%s: mode %s uid %d group %s%s' % (directory, _mode(entry['mode']), entry['uid'], entry['group'], tail))
        if problems:
            status = 'fail'
        if entry.get('error'):
            evidence.append(entry['error'] + ' (run the module as root)')
            status = 'warn' if status == 'pass' else status
            continue
        bad = []
        files = 0
        for child in entry['entries']:
            mode = child['mode']
            if child['kind'] == 'file':
                files += 1
                group_ok = not mode & 0o070 or (not mode & 0o010 and child['group'] in QEMU_GROUPS)
                if mode & 0o007 or not group_ok:
                    bad.append('%s: mode %s group %s' % (child['path'], _mode(mode), child['group']))
            elif child['kind'] == 'dir' and mode & 0o006:
                bad.append('%s/: mode %s' % (child['path'], _mode(mode)))
        if bad:
            status = 'fail'
            evidence.extend(_clip(bad, 10))
        truncated = ' (listing truncated)' if entry.get('truncated') else ''
        verdict = '%d too open' % len(bad) if bad else 'none readable by others'
        evidence.append('%s: %d image file(s)%s, %s' % (directory, files, truncated, verdict))
    return status, evidence


def _dm_index(block):
    dm = block.get('dm') or {}
    by_dev = dict((info.get('dev'), name) for name, info in dm.items() if info.get('dev'))
    by_name = dict((info.get('name'), name) for name, info in dm.items() if info.get('name'))
    return dm, by_dev, by_name


def _crypt_chain(dm, name, seen=None):
    """The dm-crypt mapping name under device-mapper device name (dm-N), or None."""
    seen = seen or set()
    if name in seen or name not in dm:
        return None
    seen.add(name)
    info = dm[name]
    if info.get('uuid', '').startswith('CRYPT-'):
        return info.get('name') or name
    for slave in info.get('slaves') or []:
        found = _crypt_chain(dm, slave, seen)
        if found:
            return found
    return None


def _device_crypt(block, path=None, dev=None):
    """The dm-crypt mapping a block device path (/dev/mapper/X, /dev/dm-N) or a maj:min rests on."""
    dm, by_dev, by_name = _dm_index(block)
    name = None
    if dev:
        name = by_dev.get(dev)
    elif path:
        if path.startswith('/dev/mapper/'):
            name = by_name.get(path[len('/dev/mapper/'):])
        elif path.startswith('/dev/dm-'):
            name = path[len('/dev/'):]
    return _crypt_chain(dm, name) if name else None


def _containing_mount(mounts, path):
    best = None
    for mount in mounts:
        if _under(path, mount['mountpoint']) and (best is None or len(mount['mountpoint']) >= len(best['mountpoint'])):
            best = mount
    return best


def _guest_disks(guest):
    """[(target, kind, source path, encrypted by qemu)] of the disks of a running guest's live XML."""
    root = _parse_xml(guest.get('live_xml'))
    disks = []
    if root is None:
        return disks
    for disk in root.findall('./devices/disk'):
        source = disk.find('source')
        path = None
        if source is not None:
            path = source.get('file') or source.get('dev')
        target = disk.find('target')
        disks.append({'target': target.get('dev') if target is not None else '?', 'type': disk.get('type'), 'path': path,
                      'device': disk.get('device', 'disk'), 'readonly': disk.find('readonly') is not None,
                      'qemu_luks': disk.find('encryption') is not None or (source is not None and source.find('encryption') is not None)})
    return disks


def c_sto_002(facts, params):
    block = facts.get('block') or {}
    mounts = parse_mountinfo(block.get('mountinfo'))
    evidence = []
    encrypted = False
    for directory in params['image_dirs']:
        holder = _containing_mount(mounts, directory)
        if holder is not None:
            crypt = _device_crypt(block, dev=holder['dev'])
            if crypt:
                encrypted = True
                evidence.append('%s is on %s (dm-crypt %s)' % (directory, holder['source'], crypt))
            else:
                evidence.append('%s is on %s (%s, not dm-crypt)' % (directory, holder['source'], holder['fstype']))
        for mount in mounts:
            if mount['mountpoint'] != directory and _under(mount['mountpoint'], directory):
                crypt = _device_crypt(block, dev=mount['dev'])
                if crypt:
                    encrypted = True
                evidence.append('%s mounted at %s%s' % (mount['source'], mount['mountpoint'],
                                                        ' (dm-crypt %s)' % crypt if crypt else ' (not dm-crypt)'))
    guests, error = _guests(facts)
    plain = []
    if guests is None:
        evidence.append('running guests unknown: %s' % error)
    else:
        for guest in guests:
            for disk in _guest_disks(guest):
                if not disk['path'] or disk['readonly'] or disk['device'] in ('cdrom', 'floppy'):
                    continue
                label = 'guest %s %s %s' % (guest['name'], disk['target'], disk['path'])
                if disk['qemu_luks']:
                    encrypted = True
                    evidence.append(label + ': LUKS image (qemu)')
                    continue
                crypt = _device_crypt(block, path=disk['path']) if disk['type'] == 'block' else None
                if crypt is None and disk['type'] == 'file':
                    holder = _containing_mount(mounts, disk['path'])
                    crypt = _device_crypt(block, dev=holder['dev']) if holder else None
                if crypt:
                    encrypted = True
                    evidence.append('%s: on dm-crypt %s' % (label, crypt))
                else:
                    plain.append(label + ': not on dm-crypt')
    if plain:
        return 'warn', _clip(evidence + plain)
    if not encrypted:
        return 'warn', evidence + ['no dm-crypt mapping holds an image directory or a running guest\'s disk']
    return 'pass', _clip(evidence)


def c_sto_003(facts, params):
    block = facts.get('block') or {}
    mounts = parse_mountinfo(block.get('mountinfo'))
    dirs = params['image_dirs']
    guests, error = _guests(facts)
    files = set()
    devices = set()
    for guest in guests or []:
        for disk in _guest_disks(guest):
            if disk['path'] and disk['type'] == 'file':
                files.add(disk['path'])
            elif disk['path'] and disk['type'] == 'block':
                devices.add(disk['path'])
    dm, _by_dev, by_name = _dm_index(block)
    guest_devs = set()
    for path in devices:
        name = by_name.get(path[len('/dev/mapper/'):]) if path.startswith('/dev/mapper/') else None
        if name and dm[name].get('dev'):
            guest_devs.add(dm[name]['dev'])
    problems = []

    def is_image(path):
        path = re.sub(r'\s+\(deleted\)$', '', path or '')
        return path in files or any(_under(path, d) for d in dirs)
    for loop, backing in sorted((block.get('loops') or {}).items()):
        if is_image(backing):
            problems.append('/dev/%s is backed by %s' % (loop, backing))
    for nbd, pid in sorted((block.get('nbd') or {}).items()):
        problems.append('/dev/%s is connected (pid %s): an image is exported to the host as a block device' % (nbd, pid))
    for mount in mounts:
        if mount['source'].startswith('/') and not mount['source'].startswith('/dev/') and is_image(mount['source']):
            problems.append('%s is mounted at %s' % (mount['source'], mount['mountpoint']))
        elif mount['source'] in devices or mount['dev'] in guest_devs:
            problems.append('the guest disk %s is mounted at %s' % (mount['source'], mount['mountpoint']))
    if problems:
        return 'fail', _clip(problems)
    evidence = ['no loop device backed by an image (%d bound), no nbd device connected, no image mounted (%d mounts)'
                % (len(block.get('loops') or {}), len(mounts))]
    if guests is None:
        evidence.append('guest disks outside %s not checked: %s' % (', '.join(dirs), error))
    return 'pass', evidence


def c_img_001(facts, params):
    guests, error = _guests(facts)
    if guests is None:
        return 'fail', ['running guests: %s' % error]
    if not guests:
        return 'not_applicable', ['no running guest']
    evidence = []
    failed = False
    for guest in guests:
        live = _parse_xml(guest.get('live_xml'))
        inactive = _parse_xml(guest.get('inactive_xml'))
        if live is None:
            failed = True
            evidence.append('guest %s: live XML unreadable (%s)' % (guest['name'], guest.get('xml_error') or 'parse error'))
            continue
        definition = inactive if inactive is not None else live
        declared = {}
        for disk in definition.findall('./devices/disk'):
            target = disk.find('target')
            declared[target.get('dev') if target is not None else None] = disk
        if inactive is None:
            evidence.append('guest %s is transient: its formats are read from the live XML' % guest['name'])
        for disk in live.findall('./devices/disk'):
            source = disk.find('source')
            if source is None or not source.attrib:
                continue
            target = disk.find('target')
            dev = target.get('dev') if target is not None else '?'
            own = declared.get(dev)
            driver = own.find('driver') if own is not None else None
            fmt = driver.get('type') if driver is not None else None
            label = 'guest %s %s' % (guest['name'], dev)
            problems = []
            if not fmt:
                problems.append('no <driver type=...> in the definition: the format is not declared')
            chain = disk.find('backingStore')
            backing = chain.find('source') if chain is not None else None
            if backing is not None and backing.attrib:
                own_chain = own.find('backingStore') if own is not None else None
                if own_chain is None or own_chain.find('source') is None:
                    problems.append('backing file %s is in use but not declared (no <backingStore> in the definition)'
                                    % (backing.get('file') or backing.get('dev') or backing.get('name')))
            if problems:
                failed = True
                evidence.append('%s: %s' % (label, '; '.join(problems)))
            else:
                evidence.append('%s: format %s%s' % (label, fmt, ', declared backing chain' if backing is not None and backing.attrib
                                                     else ', no backing file'))
    return ('fail' if failed else 'pass'), _clip(evidence)


def c_aud_001(facts, params):
    audit = facts.get('audit') or {}
    listed = audit.get('list')
    status_cmd = audit.get('status')
    if listed is None or status_cmd is None:
        return 'fail', ['auditctl not found: auditd is not installed']
    if status_cmd['rc'] != 0:
        return 'fail', ['auditctl -s failed: %s' % (status_cmd['err'] or status_cmd['out']).strip()]
    status = ak.parse_status(status_cmd['out'])
    enabled = status.get('enabled')
    pid = status.get('pid')
    evidence = ['auditctl -s: enabled %s, pid %s' % (enabled, pid)]
    active = enabled in (1, 2) and isinstance(pid, int) and pid > 0
    if not active:
        evidence.append('auditing is off or no audit daemon is attached')
    if listed['rc'] != 0:
        return 'fail', evidence + ['auditctl -l failed: %s' % (listed['err'] or listed['out']).strip()]
    syscalls = watches = 0
    keys = set()
    for line in listed['out'].splitlines():
        canon = ak.canonical(line, uid_of=lambda value: value)
        key = ak.key_of(canon) if canon else None
        if not key or not key.startswith('virt_'):
            continue
        keys.add(key)
        if line.strip().startswith('-w') or any(name == 'path' for name, _op, _value in canon[3]):
            watches += 1
        else:
            syscalls += 1
    evidence.append('auditctl -l: %d virt_* syscall rule(s), %d virt_* file watch(es)' % (syscalls, watches))
    if keys:
        evidence.append('keys: %s' % ', '.join(sorted(keys)))
    ok = active and syscalls > 0 and watches > 0
    if not syscalls or not watches:
        evidence.append('both syscall rules and file watches with a virt_* key are expected')
    return ('pass' if ok else 'fail'), evidence


def c_aud_002(facts, params):
    text = facts.get('cmdline')
    if text is None:
        return 'fail', ['/proc/cmdline unreadable']
    words = text.split()
    audit = [w for w in words if w.startswith('audit=') or w.startswith('audit_backlog_limit=')]
    if 'audit=1' in words:
        return 'pass', ['/proc/cmdline: %s' % ' '.join(audit)]
    if audit:
        return 'fail', ['/proc/cmdline: %s' % ' '.join(audit)]
    return 'fail', ['/proc/cmdline has no audit= parameter: processes started before auditd are not audited']


def c_aud_003(facts, params):
    path, conf, error = _daemon_conf(facts, 'audit')
    if conf is None:
        return 'fail', [error]
    level, level_text = _setting(conf, 'audit_level', 1)
    logging, logging_text = _setting(conf, 'audit_logging', 0)
    evidence = ['%s: %s, %s' % (path, level_text, logging_text)]
    level = _as_int(level)
    if level == 0:
        return 'fail', evidence + ['audit_level 0: libvirt writes no audit records']
    if level != 2:
        return 'warn', evidence + ['audit_level %s: libvirt audits while host auditing is on but keeps running without it '
                                   '(2 refuses to)' % level]
    if _as_int(logging) != 1:
        return 'warn', evidence + ['audit_logging 0: the records are not copied to libvirt\'s own log']
    return 'pass', evidence


EVALUATORS = {
    'SVK-TLS-001': c_tls_001, 'SVK-TLS-002': c_tls_002, 'SVK-TLS-003': c_tls_003, 'SVK-TLS-004': c_tls_004,
    'SVK-TLS-005': c_tls_005, 'SVK-TLS-006': c_tls_006, 'SVK-TLS-007': c_tls_007,
    'SVK-CON-001': c_con_001, 'SVK-CON-002': c_con_002, 'SVK-CON-003': c_con_003, 'SVK-CON-004': c_con_004,
    'SVK-MIG-001': c_mig_001, 'SVK-MIG-002': c_mig_002,
    'SVK-NET-001': c_net_001, 'SVK-NET-002': c_net_002, 'SVK-NET-003': c_net_003,
    'SVK-CNF-001': c_cnf_001, 'SVK-CNF-002': c_cnf_002, 'SVK-CNF-003': c_cnf_003,
    'SVK-STO-001': c_sto_001, 'SVK-STO-002': c_sto_002, 'SVK-STO-003': c_sto_003, 'SVK-IMG-001': c_img_001,
    'SVK-AUD-001': c_aud_001, 'SVK-AUD-002': c_aud_002, 'SVK-AUD-003': c_aud_003,
}


def normalize_params(params):
    """The evaluation parameters with their defaults; PostureError for bad values."""
    out = {
        'tls_port': DEFAULT_TLS_PORT if params.get('tls_port') is None else params['tls_port'],
        'certificate_min_days': 30 if params.get('certificate_min_days') is None else params['certificate_min_days'],
        'image_dirs': list(params.get('image_dirs') or DEFAULT_IMAGE_DIRS),
        'handshake_timeout': 5 if params.get('handshake_timeout') is None else params['handshake_timeout'],
        'uri': params.get('uri') or lc.DEFAULT_URI,
    }
    if not 0 < out['tls_port'] < 65536:
        raise PostureError('tls_port must be a TCP port (1-65535), got %s' % out['tls_port'])
    if out['certificate_min_days'] < 0:
        raise PostureError('certificate_min_days must not be negative, got %s' % out['certificate_min_days'])
    if out['handshake_timeout'] <= 0:
        raise PostureError('handshake_timeout must be positive, got %s' % out['handshake_timeout'])
    relative = [d for d in out['image_dirs'] if not str(d).startswith('/')]
    if relative:
        raise PostureError('image_dirs must be absolute paths: %s' % ', '.join(relative))
    out['image_dirs'] = [os.path.normpath(d) for d in out['image_dirs']]
    return out


def evaluate(facts, params, selected=None):
    """{'controls': [...], 'summary': {...}} of the selected controls (all by default) over facts."""
    selected = select_controls(None) if selected is None else selected
    controls = []
    summary = dict((status, 0) for status in STATUSES)
    for cid in sorted(selected):
        area, severity, title, references, _needs = CATALOG[cid]
        try:
            status, evidence = EVALUATORS[cid](facts, params)
        except Exception as exc:  # one unreadable fact must not hide the other controls
            status, evidence = 'fail', ['could not be evaluated: %s: %s' % (exc.__class__.__name__, exc)]
        summary[status] += 1
        controls.append({'id': cid, 'title': title, 'area': area, 'severity': severity, 'status': status,
                         'evidence': [str(line) for line in evidence], 'references': list(references)})
    return {'controls': controls, 'summary': summary}
