# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn ``ausearch --raw`` output into structured virtualization events.

Raw audit records look like::

    type=SYSCALL msg=audit(1795429447.040:242): arch=c000003e syscall=83 success=no ...
      comm="daemon-init" exe="/usr/sbin/libvirtd" key="virt_libvirt_cfg"<GS>ARCH=x86_64 SYSCALL=mkdir AUID="unset"
    type=VIRT_CONTROL msg=audit(1795429477.884:263): pid=2395 uid=0 auid=4294967295 ses=4294967295
      subj=unconfined msg='virt=qemu op=start reason=booted vm="web1" uuid=... vm-pid=2443
      exe="/usr/sbin/libvirtd" hostname=? addr=? terminal=? res=success'<GS>UID="root" AUID="unset"

Records sharing ``(time, serial)`` form one event. ``<GS>`` (0x1d) separates
the kernel's fields from the names auditd resolved when it wrote the log
(``log_format = ENRICHED``). Untrusted strings are logged either quoted or
hex-encoded (``proctitle=2F7573...``, multiple keys joined by 0x01); both are
decoded here.

The module ``secvirt.kvm.audit_report`` runs ausearch for a time window and
hands the text to ``parse_events()`` / ``summarize()``.

Plain Python, no Ansible import: unit tests call it directly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import calendar
import datetime
import re
import time

GS = '\x1d'
HEADER_RE = re.compile(r'^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) msg=audit\((?P<time>[0-9]+(?:\.[0-9]+)?):(?P<serial>[0-9]+)\):\s?(?P<body>.*)$')
HEX_RE = re.compile(r'^(?:[0-9A-F]{2})+$')
# Fields whose unquoted value is hex-encoded text (audit_log_untrustedstring).
HEX_FIELDS = frozenset(['name', 'cwd', 'comm', 'exe', 'proctitle', 'path', 'vm', 'cmd', 'key',
                        'data', 'old-chardev', 'new-chardev', 'cgroup', 'img-ctx', 'vm-ctx',
                        'old-disk', 'new-disk', 'old-fs', 'new-fs', 'old-net', 'new-net',
                        'device', 'old-rng', 'new-rng', 'profile', 'operation'])
VIRT_TYPES = frozenset(['VIRT_CONTROL', 'VIRT_RESOURCE', 'VIRT_MACHINE_ID', 'VIRT_INTEGRITY_CHECK',
                        'VIRT_CREATE', 'VIRT_DESTROY', 'VIRT_MIGRATE_IN', 'VIRT_MIGRATE_OUT'])
AVC_TYPES = frozenset(['AVC', 'USER_AVC', 'SELINUX_ERR', 'APPARMOR_DENIED', 'APPARMOR_STATUS'])
KEYWORDS = frozenset(['now', 'recent', 'this-hour', 'boot', 'today', 'yesterday', 'this-week',
                      'week-ago', 'this-month', 'this-year', 'checkpoint'])
RELATIVE_RE = re.compile(r'^-?([0-9]+)\s*(s|sec|m|min|h|hour|hours|d|day|days|w|week|weeks)$')
UNITS = {'s': 1, 'sec': 1, 'm': 60, 'min': 60, 'h': 3600, 'hour': 3600, 'hours': 3600,
         'd': 86400, 'day': 86400, 'days': 86400, 'w': 604800, 'week': 604800, 'weeks': 604800}
UNSET_IDS = ('4294967295', '-1')


class ReportError(ValueError):
    """A time specification or the ausearch output cannot be understood."""


# --------------------------------------------------------------------------
# Time window
# --------------------------------------------------------------------------

def parse_when(value, now=None):
    """Return ``(epoch or None, keyword or None)`` for a time specification.

    Accepted: ausearch keywords (``boot``, ``today``, ``recent``, ...),
    relative ages (``15m``, ``2h``, ``1d``: that long ago), epoch seconds and
    ISO 8601 (``2026-11-23T10:00:00``, ``2026-11-23 10:00``, with ``Z`` or
    ``+01:00``; without an offset the time is local to the host).
    """
    if value is None or value == '':
        return None, None
    now = time.time() if now is None else now
    text = str(value).strip()
    if text in KEYWORDS:
        if text == 'now':
            return now, None
        return None, text
    m = RELATIVE_RE.match(text)
    if m:
        return now - int(m.group(1)) * UNITS[m.group(2)], None
    if re.match(r'^[0-9]+(\.[0-9]+)?$', text):
        return float(text), None
    iso = text.replace('T', ' ')
    offset = None
    m = re.match(r'^(.*?)(Z|[+-][0-9]{2}:?[0-9]{2})$', iso)
    if m and re.match(r'^\d{4}-\d{2}-\d{2}', m.group(1)):
        iso, tz = m.group(1).strip(), m.group(2)
        if tz == 'Z':
            offset = 0
        else:
            sign = -1 if tz[0] == '-' else 1
            digits = tz[1:].replace(':', '')
            offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    for fmt in ('%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M', '%Y-%m-%d'):
        try:
            parsed = datetime.datetime.strptime(iso, fmt)
        except ValueError:
            continue
        if offset is None:
            return time.mktime(parsed.timetuple()), None
        return calendar.timegm(parsed.timetuple()) - offset, None
    raise ReportError('cannot understand time %r: use an ausearch keyword (%s), an age such as 15m/2h/1d, '
                      'epoch seconds or ISO 8601 (2026-11-23T10:00:00)' % (value, ', '.join(sorted(KEYWORDS))))


def ausearch_time_args(epoch, keyword):
    """ausearch's ``-ts``/``-te`` words: ``MM/DD/YY HH:MM:SS`` in the C locale.

    ausearch parses the date with ``strptime(%x)``; under ``LC_ALL=C`` that is
    ``%m/%d/%y`` (two-digit year: ``11/23/2026`` is refused). The seconds are
    truncated: the caller filters the exact window afterwards.
    """
    if keyword:
        return [keyword]
    lt = time.localtime(int(epoch))
    return [time.strftime('%m/%d/%y', lt), time.strftime('%H:%M:%S', lt)]


# --------------------------------------------------------------------------
# Record parsing
# --------------------------------------------------------------------------

def _tokens(body):
    """Yield (name, value, quoted) for the ``name=value`` words of a record body."""
    i = 0
    n = len(body)
    while i < n:
        while i < n and body[i] == ' ':
            i += 1
        if i >= n:
            break
        j = i
        while j < n and body[j] not in '= ':
            j += 1
        if j >= n or body[j] != '=':
            # A bare word (SELinux AVC text such as "avc:  denied  { read } for").
            i = j + 1
            continue
        name = body[i:j]
        j += 1
        if j < n and body[j] in '"\'':
            quote = body[j]
            end = body.find(quote, j + 1)
            if end < 0:
                end = n
            yield name, body[j + 1:end], quote
            i = end + 1
        else:
            end = body.find(' ', j)
            if end < 0:
                end = n
            yield name, body[j:end], None
            i = end


def _dehex(name, value, quote):
    if quote is None and name in HEX_FIELDS and HEX_RE.match(value) and len(value) >= 2:
        try:
            raw = binascii.unhexlify(value)
        except (TypeError, ValueError, binascii.Error):
            return value
        text = raw.decode('utf-8', 'replace')
        if name == 'proctitle':
            return text.replace('\x00', ' ').strip()
        return text
    return value


def parse_fields(body):
    """Fields of a record body; a user message's inner ``msg='...'`` is merged in."""
    fields = {}
    for name, value, quote in _tokens(body):
        if name == 'msg' and quote == "'":
            for iname, ivalue, iquote in _tokens(value):
                fields.setdefault(iname, _dehex(iname, ivalue, iquote))
            continue
        fields.setdefault(name, _dehex(name, value, quote))
    m = re.search(r'avc:\s+(denied|granted)\s+\{([^}]*)\}', body)
    if m:
        fields['avc_result'] = m.group(1)
        fields['avc_perms'] = m.group(2).split()
    return fields


def parse_records(text):
    """Parse raw ausearch output into a list of record dicts."""
    records = []
    # Not splitlines(): it also splits on the 0x1d separator of enriched logs.
    for line in (text or '').split('\n'):
        line = line.rstrip('\r')
        if not line or line.startswith('----') or line.startswith('<no matches>'):
            continue
        m = HEADER_RE.match(line)
        if not m:
            continue
        body = m.group('body')
        enriched = {}
        if GS in body:
            body, extra = body.split(GS, 1)
            for name, value, quote in _tokens(extra):
                enriched[name] = value
        records.append({
            'node': m.group('node'),
            'type': m.group('type'),
            'time': float(m.group('time')),
            'serial': int(m.group('serial')),
            'fields': parse_fields(body),
            'enriched': enriched,
        })
    return records


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------

def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _account(fields, enriched, name):
    """A uid-like field as a name when auditd resolved it, else the number."""
    value = fields.get(name)
    if value is None:
        return None
    if value in UNSET_IDS:
        return 'unset'
    return enriched.get(name.upper()) or value


def iso_time(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=_UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


class _Utc(datetime.tzinfo):
    def utcoffset(self, dt):
        return datetime.timedelta(0)

    def tzname(self, dt):
        return 'UTC'

    def dst(self, dt):
        return datetime.timedelta(0)


_UTC = _Utc()


def build_event(records):
    """One structured event from the records that share a serial."""
    first = records[0]
    event = {
        'serial': first['serial'],
        'epoch': first['time'],
        'time': iso_time(first['time']),
        'node': first['node'],
        'types': [],
        'keys': [],
    }
    paths = []
    for rec in records:
        rtype = rec['type']
        f = rec['fields']
        e = rec['enriched']
        if rtype not in event['types']:
            event['types'].append(rtype)
        if rtype == 'SYSCALL':
            event['syscall'] = e.get('SYSCALL') or f.get('syscall')
            event['success'] = f.get('success') == 'yes'
            event['exit'] = _int(f.get('exit'))
            for name in ('pid', 'ppid'):
                event[name] = _int(f.get(name))
            for name in ('uid', 'auid', 'euid'):
                event[name] = _account(f, e, name)
            event['comm'] = f.get('comm')
            event['exe'] = f.get('exe')
            event['subj'] = f.get('subj')
            key = f.get('key')
            if key and key != '(null)':
                for k in key.split('\x01'):
                    if k and k not in event['keys']:
                        event['keys'].append(k)
        elif rtype == 'PATH':
            paths.append({
                'name': f.get('name'),
                'nametype': f.get('nametype'),
                'mode': f.get('mode'),
                'owner': e.get('OUID') or f.get('ouid'),
                'obj': f.get('obj'),
            })
        elif rtype == 'CWD':
            event['cwd'] = f.get('cwd')
        elif rtype == 'PROCTITLE':
            event['proctitle'] = f.get('proctitle')
        elif rtype in VIRT_TYPES:
            virt = {}
            for name, value in f.items():
                if name in ('pid', 'uid', 'auid', 'ses', 'subj', 'hostname', 'addr', 'terminal'):
                    continue
                virt[name.replace('-', '_')] = value
            event['virt'] = virt
            event['vm'] = f.get('vm')
            event['uuid'] = f.get('uuid')
            event['result'] = f.get('res')
            event['pid'] = _int(f.get('pid'))
            event['uid'] = _account(f, e, 'uid')
            event['auid'] = _account(f, e, 'auid')
            event['exe'] = f.get('exe')
            event['subj'] = f.get('subj')
        elif rtype in AVC_TYPES:
            avc = dict((k, v) for k, v in f.items())
            event['avc'] = avc
            if 'pid' in f and 'pid' not in event:
                event['pid'] = _int(f.get('pid'))
            if f.get('comm') and not event.get('comm'):
                event['comm'] = f.get('comm')
            profile = f.get('profile') or ''
            m = re.match(r'^libvirt-([0-9a-f-]{36})$', profile)
            if m:
                event['uuid'] = m.group(1)
        else:
            event.setdefault('other', []).append({'type': rtype, 'fields': f})
    if paths:
        event['paths'] = paths
    event['key'] = event['keys'][0] if event['keys'] else None
    event['kind'] = _kind(event)
    event['summary'] = _summary(event)
    return event


def _kind(event):
    types = event['types']
    for t in ('VIRT_CONTROL', 'VIRT_RESOURCE', 'VIRT_MACHINE_ID', 'VIRT_MIGRATE_IN', 'VIRT_MIGRATE_OUT',
              'VIRT_INTEGRITY_CHECK', 'VIRT_CREATE', 'VIRT_DESTROY'):
        if t in types:
            return t.lower()
    if any(t in AVC_TYPES for t in types):
        return 'avc'
    if 'SYSCALL' in types:
        return 'syscall'
    return types[0].lower() if types else 'unknown'


def _summary(event):
    kind = event['kind']
    virt = event.get('virt') or {}
    vm = event.get('vm') or event.get('uuid') or '?'
    if kind == 'virt_control':
        return 'VM %s: %s (%s) %s' % (vm, virt.get('op', '?'), virt.get('reason', '?'), event.get('result', '?'))
    if kind == 'virt_resource':
        resrc = virt.get('resrc', '?')
        detail = virt.get('path') or virt.get('new_' + resrc) or virt.get('class') or ''
        return 'VM %s: %s %s %s %s' % (vm, resrc, virt.get('reason', '?'), detail, event.get('result', '?'))
    if kind == 'virt_machine_id':
        return 'VM %s: label %s (model %s)' % (vm, virt.get('vm_ctx', '?'), virt.get('model', '?'))
    if kind.startswith('virt_'):
        return 'VM %s: %s %s' % (vm, kind, event.get('result', '?'))
    if kind == 'avc':
        avc = event.get('avc') or {}
        if 'apparmor' in avc:
            return 'AppArmor %s %s %s by %s (profile %s)' % (
                avc.get('apparmor'), avc.get('operation', '?'), avc.get('name', '?'),
                avc.get('comm', '?'), avc.get('profile', '?'))
        return 'SELinux %s {%s} %s by %s (%s -> %s)' % (
            avc.get('avc_result', '?'), ' '.join(avc.get('avc_perms') or []), avc.get('name', '?'),
            avc.get('comm', '?'), avc.get('scontext', '?'), avc.get('tcontext', '?'))
    if kind == 'syscall':
        target = ''
        for p in event.get('paths') or []:
            if p.get('nametype') not in ('PARENT',) and p.get('name') not in (None, '(null)'):
                target = p['name']
        if not target:
            for p in event.get('paths') or []:
                if p.get('name') not in (None, '(null)'):
                    target = p['name']
        return '%s: %s (%s as %s, auid %s) %s %s: %s' % (
            event.get('key') or '-', event.get('comm') or '?', event.get('exe') or '?',
            event.get('uid') or '?', event.get('auid') or '?', event.get('syscall') or '?',
            target or '?', 'success' if event.get('success') else 'failed (%s)' % event.get('exit'))
    return '%s event' % kind


def parse_events(text):
    """Group raw records into events, oldest first."""
    groups = {}
    order = []
    for rec in parse_records(text):
        ident = (rec['node'], rec['time'], rec['serial'])
        if ident not in groups:
            groups[ident] = []
            order.append(ident)
        groups[ident].append(rec)
    events = [build_event(groups[i]) for i in order]
    events.sort(key=lambda ev: (ev['epoch'], ev['serial']))
    return events


def merge_events(*lists):
    """Merge event lists from several ausearch runs, dropping duplicates."""
    seen = {}
    for events in lists:
        for ev in events:
            ident = (ev['node'], ev['epoch'], ev['serial'])
            if ident not in seen:
                seen[ident] = ev
    return sorted(seen.values(), key=lambda ev: (ev['epoch'], ev['serial']))


def filter_events(events, since=None, until=None, vm=None, key_prefixes=None, types=None):
    out = []
    for ev in events:
        if since is not None and ev['epoch'] < since:
            continue
        if until is not None and ev['epoch'] > until:
            continue
        if vm and vm not in (ev.get('vm'), ev.get('uuid')):
            continue
        if key_prefixes is not None or types is not None:
            by_key = any(k.startswith(p) for k in ev['keys'] for p in (key_prefixes or []))
            by_type = any(t in (types or []) for t in ev['types'])
            if not (by_key or by_type):
                continue
        out.append(ev)
    return out


def sessions(events):
    """VM sessions from VIRT_CONTROL start/stop records, like ``auvirt``."""
    open_by_uuid = {}
    out = []
    for ev in events:
        if ev['kind'] != 'virt_control':
            continue
        virt = ev.get('virt') or {}
        op = virt.get('op')
        uuid = ev.get('uuid') or ev.get('vm')
        if op == 'start':
            sess = {'vm': ev.get('vm'), 'uuid': ev.get('uuid'), 'start': ev['time'],
                    'start_reason': virt.get('reason'), 'start_result': ev.get('result'),
                    'vm_pid': _int(virt.get('vm_pid')), 'stop': None, 'stop_reason': None,
                    'user': ev.get('auid') if ev.get('auid') not in (None, 'unset') else ev.get('uid')}
            if ev.get('result') == 'success':
                open_by_uuid[uuid] = sess
            out.append(sess)
        elif op == 'stop':
            sess = open_by_uuid.pop(uuid, None)
            if sess is None:
                sess = {'vm': ev.get('vm'), 'uuid': ev.get('uuid'), 'start': None, 'start_reason': None,
                        'start_result': None, 'vm_pid': None, 'user': None}
                out.append(sess)
            sess['stop'] = ev['time']
            sess['stop_reason'] = virt.get('reason')
    return out


def summarize(events):
    by_key = {}
    by_type = {}
    for ev in events:
        for k in ev['keys']:
            by_key[k] = by_key.get(k, 0) + 1
        for t in ev['types']:
            by_type[t] = by_type.get(t, 0) + 1
    return {'total': len(events), 'by_key': by_key, 'by_type': by_type}
