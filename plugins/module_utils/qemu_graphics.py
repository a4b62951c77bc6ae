# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a guest's VNC and SPICE consoles accept, from its XML and its QEMU command line.

Pure logic (no libvirt, no host access): secvirt.kvm.libvirt_graphics calls
these with what it read, the unit tests with literal XML and command lines.

With qemu.conf ``vnc_tls = 1`` every VNC console libvirt starts speaks
VeNCrypt/x509 only. ``spice_tls = 1`` only *adds* a TLS port: a SPICE
console keeps its plaintext port unless the guest's ``<graphics
type='spice'>`` says ``defaultMode='secure'`` (or every channel it names is
secure and the default is too). The inactive definition says what the next
start will do; the running QEMU's command line says what is served now.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import xml.etree.ElementTree as ET

WILDCARDS = ('0.0.0.0', '::', '[::]', '*')


class GraphicsXMLError(Exception):
    """The guest XML could not be read."""


def _listens(graphics):
    """Every address the console is told to listen on, as libvirt writes it
    (``listen=`` and ``<listen type='address'>``); ``socket``/``none`` listens
    are not network listens."""
    addresses = []
    kinds = []
    for listen in graphics.findall('listen'):
        kind = listen.get('type') or 'address'
        kinds.append(kind)
        if kind == 'address' and listen.get('address'):
            addresses.append(listen.get('address'))
        if kind == 'network':
            addresses.append('network:%s' % (listen.get('network') or ''))
    if graphics.get('listen') and graphics.get('listen') not in addresses:
        addresses.append(graphics.get('listen'))
    network = not kinds or any(kind in ('address', 'network') for kind in kinds)
    return addresses, network


def spice_plaintext(graphics):
    """True when a SPICE console defined like this keeps a plaintext port.

    defaultMode='secure' puts every channel on the TLS port unless a channel
    is explicitly insecure; any other default leaves at least the channels
    not named secure on the plaintext port.
    """
    channels = graphics.findall('channel')
    if graphics.get('defaultMode') == 'secure':
        return any(ch.get('mode') == 'insecure' for ch in channels)
    return True


def analyse_definition(xml_text):
    """[{type, listen, network, autoport, plaintext, default_mode}] of a
    guest's graphics devices, as its definition asks for them."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise GraphicsXMLError('cannot parse the guest XML: %s' % exc)
    result = []
    for graphics in root.findall('./devices/graphics'):
        kind = graphics.get('type')
        if kind not in ('vnc', 'spice'):
            continue
        addresses, network = _listens(graphics)
        entry = {'type': kind, 'listen': addresses, 'network': network,
                 'autoport': graphics.get('autoport', 'no') == 'yes' or graphics.get('port') in (None, '-1')}
        if kind == 'spice':
            entry['default_mode'] = graphics.get('defaultMode', 'any')
            entry['plaintext'] = network and spice_plaintext(graphics)
        else:
            # vnc_tls applies to every network VNC console libvirt starts
            entry['plaintext'] = False
        result.append(entry)
    return result


def secure_spice_xml(xml_text):
    """The definition with every SPICE console secure-only, or None when
    nothing needs to change. Explicitly insecure channels become secure."""
    root = ET.fromstring(xml_text)
    changed = False
    for graphics in root.findall("./devices/graphics[@type='spice']"):
        if not spice_plaintext(graphics):
            continue
        graphics.set('defaultMode', 'secure')
        for channel in graphics.findall('channel'):
            if channel.get('mode') == 'insecure':
                channel.set('mode', 'secure')
        # a fixed plaintext port would be reserved for nothing
        if graphics.get('port') not in (None, '-1') and graphics.get('autoport') != 'yes':
            graphics.set('port', '-1')
        changed = True
    if not changed:
        return None
    return ET.tostring(root, encoding='unicode')


def _options(arg):
    """QEMU's key=value,key=value (the first item may be a bare value)."""
    out = {}
    for index, item in enumerate(arg.split(',')):
        if '=' in item:
            key, value = item.split('=', 1)
            out[key] = value
        elif index == 0:
            out[''] = item
        else:
            out[item] = 'on'
    return out


def analyse_cmdline(argv):
    """What the running QEMU serves: {'vnc': [..], 'spice': [..]}, each
    {plaintext, tls, address, port, tls_port} from its -vnc/-spice options."""
    served = {'vnc': [], 'spice': []}
    for index, arg in enumerate(argv[:-1]):
        value = argv[index + 1]
        if arg == '-vnc':
            opts = _options(value)
            address = opts.get('vnc', opts.get(''))
            network = bool(address) and not address.startswith('unix:') and address != 'none'
            tls = 'tls-creds' in opts or 'tls' in opts
            served['vnc'].append({'address': address, 'network': network, 'tls': tls,
                                  'plaintext': network and not tls})
        elif arg == '-spice':
            opts = _options(value)
            port = opts.get('port')
            tls_port = opts.get('tls-port')
            plain = port not in (None, '0', '-1') and not opts.get('unix')
            served['spice'].append({'address': opts.get('addr'), 'port': port, 'tls_port': tls_port,
                                    'tls': tls_port not in (None, '0', '-1'), 'plaintext': plain})
    return served


def listens_outside(definition, allowed):
    """The explicit listen addresses of a definition's consoles that are not
    in ``allowed`` (a wildcard is always outside unless allowed itself)."""
    outside = []
    for graphics in definition:
        for address in graphics['listen']:
            if address.startswith('network:'):
                outside.append(address)
            elif address not in allowed:
                outside.append(address)
    return sorted(set(outside))


def parse_proc_stat_start(stat_text):
    """The process's start time in clock ticks after boot (field 22 of
    /proc/<pid>/stat; the command name in parentheses may hold spaces)."""
    rest = stat_text[stat_text.rindex(')') + 2:].split()
    return int(rest[19])


def certificate_reload_plan(running, cert_mtime, state, fingerprint, can_reload):
    """Which running guests serve an older console certificate than the one installed.

    ``running`` is ``{uuid: {'name', 'pid', 'started', 'vnc', 'spice'}}``
    (``started`` in seconds since the epoch); ``state`` what an earlier run
    recorded (``{uuid: {'pid', 'fingerprint'}}``). A guest started after the
    certificate file was written loaded it at start; one that an earlier run
    reloaded with this fingerprint (same QEMU process) has it too. The rest
    serve an older certificate: VNC can be reloaded in place (libvirt >= 10.2),
    SPICE cannot (restart). Returns (reload, stale, new_state).
    """
    reload_names, stale, new_state = [], [], {}
    for uuid, guest in sorted(running.items(), key=lambda item: item[1]['name']):
        seen = state.get(uuid) or {}
        if guest['started'] >= cert_mtime:
            new_state[uuid] = {'pid': guest['pid'], 'fingerprint': fingerprint, 'spice_stale': False}
            continue
        if seen.get('pid') == guest['pid'] and seen.get('fingerprint') == fingerprint:
            new_state[uuid] = seen
            if seen.get('spice_stale'):
                stale.append(guest['name'])
            continue
        if guest['vnc'] and can_reload:
            reload_names.append(guest['name'])
            new_state[uuid] = {'pid': guest['pid'], 'fingerprint': fingerprint, 'spice_stale': bool(guest['spice'])}
            if guest['spice']:
                stale.append(guest['name'])
        elif guest['vnc'] or guest['spice']:
            stale.append(guest['name'])
    return reload_names, stale, new_state
