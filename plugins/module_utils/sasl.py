# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manage Cyrus SASL sasldb users (libvirt's SASL credential database).

Only the Cyrus tools write the database (``saslpasswd2``) and list its users
(``sasldblistusers2``), so for that the on-disk format (Berkeley DB, gdbm or
LMDB depending on the build) does not matter; only the password check below
reads the file itself. Passwords travel on the tool's stdin (``-p``), never on argv, and
``-n`` keeps the cleartext ``userPassword`` property out of the database: only
the salted mechanism secrets (SCRAM) are stored.

Changing a password follows ``update_password``: ``on_mismatch`` checks the
wanted password against what the database stores and sets it when it does not
match, ``on_create`` sets it only for new users, ``always`` on every run (and
reports a change). The check reads the database file itself (``read_sasldb``:
Berkeley DB hash, the format of Debian's Cyrus SASL), because the tools only
list property names. It derives the SCRAM keys from the password with the
stored salt and iteration count and compares them in constant time with the
stored StoredKey and ServerKey (RFC 5802/5803); a cleartext ``userPassword``
(``store_plaintext``) is compared in constant time as well. Nothing is written,
printed or passed on argv. A database in another format, or a user with no
verifier this code understands, gives no verdict (``None``), never a guess.

``run`` is a callable ``run(argv, data=None) -> (rc, stdout, stderr)``
(AnsibleModule.run_command in the module, a fake in unit tests).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import re
import socket
import struct

LIST_RE = re.compile(r'^(?P<user>[^@\s]+)@(?P<realm>[^:\s]*):\s*(?P<prop>\S+)\s*$')
NAME_RE = re.compile(r'^[A-Za-z0-9._-]+$')
# saslpasswd2 -p reads at most 2047 bytes and stops at a NUL: refuse what it
# would silently cut (with room to spare) instead of storing another password
PASSWORD_MAX_BYTES = 1024
SCRAM_HASHES = {'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-224': 'sha224', 'SCRAM-SHA-256': 'sha256',
                'SCRAM-SHA-384': 'sha384', 'SCRAM-SHA-512': 'sha512'}
SCRAM_RE = re.compile(r'^(?P<scheme>SCRAM-SHA-[0-9]+)\$(?P<iterations>[0-9]{1,9}):(?P<salt>[A-Za-z0-9+/=]+)'
                      r'\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)$')
# refuse to spend minutes on a verifier planted with an absurd iteration count
SCRAM_MAX_ITERATIONS = 10000000

# Berkeley DB hash database (db.h / dbinc/db_page.h)
BDB_HASH_MAGIC = 0x061561
BDB_P_HASH_UNSORTED = 2
BDB_P_OVERFLOW = 7
BDB_P_HASH = 13
BDB_H_KEYDATA = 1
BDB_H_OFFPAGE = 3
BDB_PAGE_HEADER = 26


def server_realm():
    """The realm a Cyrus SASL server (libvirtd) gives users by default.

    Servers that pass no realm to sasl_server_new() (libvirtd does so) look
    users up in the realm of the server's canonical host name: getaddrinfo()
    with AI_CANONNAME on gethostname(). saslpasswd2's own default is the bare
    gethostname(), which differs whenever the canonical name is a FQDN; users
    created there are then never found ("unable to canonify user").
    """
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    except (socket.gaierror, UnicodeError):
        return name
    for info in infos:
        if info[3]:
            return info[3]
    return name


class SaslError(Exception):
    pass


class _NotReadable(Exception):
    pass


def stored_form(password):
    """The bytes ``saslpasswd2 -p`` stores for ``password`` (what a client must type).

    It hashes the UTF-8 bytes as they are (no SASLprep) and drops one trailing
    newline. Passwords it would silently shorten are refused; the message never
    contains the password.
    """
    if not isinstance(password, bytes):
        password = password.encode('utf-8')
    if b'\0' in password:
        raise SaslError('a SASL password must not contain a NUL character (saslpasswd2 would cut it there)')
    if password.endswith(b'\n'):
        password = password[:-1]
    if len(password) > PASSWORD_MAX_BYTES:
        raise SaslError('a SASL password must not be longer than %d bytes (saslpasswd2 would cut it)'
                        % PASSWORD_MAX_BYTES)
    return password


def _b64(text):
    return base64.b64decode(text.encode('ascii'), validate=True)


def scram_matches(verifier, password):
    """Whether the RFC 5803 ``authPassword`` value ``verifier`` is that of ``password`` (bytes).

    ``scheme$iterations:salt$StoredKey:ServerKey``. SaltedPassword = PBKDF2-HMAC(
    password, salt, iterations); StoredKey = H(HMAC(SaltedPassword, "Client Key")),
    ServerKey = HMAC(SaltedPassword, "Server Key"); both compared in constant time.
    None when the value is not a verifier this code understands.
    """
    try:
        match = SCRAM_RE.match(verifier.decode('ascii'))
    except (UnicodeDecodeError, AttributeError):
        return None
    if not match or match.group('scheme') not in SCRAM_HASHES:
        return None
    hash_name = SCRAM_HASHES[match.group('scheme')]
    iterations = int(match.group('iterations'))
    if not 1 <= iterations <= SCRAM_MAX_ITERATIONS:
        return None
    try:
        salt, stored_key, server_key = (_b64(match.group(g)) for g in ('salt', 'stored', 'server'))
    except (binascii.Error, ValueError):
        return None
    size = hashlib.new(hash_name).digest_size
    if not salt or len(stored_key) != size or len(server_key) != size:
        return None
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hash_name).digest()
    stored_ok = hmac.compare_digest(hashlib.new(hash_name, client_key).digest(), stored_key)
    server_ok = hmac.compare_digest(hmac.new(salted, b'Server Key', hash_name).digest(), server_key)
    return bool(stored_ok & server_ok)


def _bdb_overflow(data, pagesize, order, pgno, length):
    value = b''
    seen = set()
    while len(value) < length:
        if pgno == 0 or pgno in seen or (pgno + 1) * pagesize > len(data):
            raise _NotReadable()
        seen.add(pgno)
        page = data[pgno * pagesize:(pgno + 1) * pagesize]
        if struct.unpack('B', page[25:26])[0] != BDB_P_OVERFLOW:
            raise _NotReadable()
        next_pgno = struct.unpack(order + 'I', page[16:20])[0]
        chunk = struct.unpack(order + 'H', page[22:24])[0]
        value += page[BDB_PAGE_HEADER:BDB_PAGE_HEADER + chunk]
        pgno = next_pgno
    if len(value) != length:
        raise _NotReadable()
    return value


def _bdb_page_items(data, pagesize, order, page):
    entries = struct.unpack(order + 'H', page[20:22])[0]
    start = BDB_PAGE_HEADER + 2 * entries
    if entries % 2 or start > pagesize:
        raise _NotReadable()
    offsets = struct.unpack(order + '%dH' % entries, page[BDB_PAGE_HEADER:start])
    items = []
    end = pagesize
    for offset in offsets:
        # items are packed from the end of the page: each ends where the previous one starts
        if not start <= offset < end:
            raise _NotReadable()
        item = page[offset:end]
        end = offset
        kind = struct.unpack('B', item[0:1])[0]
        if kind == BDB_H_KEYDATA:
            items.append(item[1:])
        elif kind == BDB_H_OFFPAGE and len(item) >= 12:
            pgno, length = struct.unpack(order + 'II', item[4:12])
            items.append(_bdb_overflow(data, pagesize, order, pgno, length))
        else:  # duplicates: sasldb never stores them
            raise _NotReadable()
    return zip(items[0::2], items[1::2])


def parse_bdb_hash(data):
    """``{(user, realm, property): value}`` of a sasldb in Berkeley DB hash format.

    Every bucket page is read in file order (no hash function needed); keys are
    ``user NUL realm NUL property``. None when ``data`` is not such a database
    (another format, encrypted, or damaged).
    """
    order = None
    for candidate in ('<', '>'):
        if len(data) >= 512 and struct.unpack(candidate + 'I', data[12:16])[0] == BDB_HASH_MAGIC:
            order = candidate
    if order is None:
        return None
    pagesize = struct.unpack(order + 'I', data[20:24])[0]
    encrypted = struct.unpack('B', data[24:25])[0]
    if encrypted or pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1) or len(data) % pagesize:
        return None
    entries = {}
    try:
        for pgno in range(1, len(data) // pagesize):
            page = data[pgno * pagesize:(pgno + 1) * pagesize]
            if struct.unpack('B', page[25:26])[0] not in (BDB_P_HASH, BDB_P_HASH_UNSORTED):
                continue
            for key, value in _bdb_page_items(data, pagesize, order, page):
                parts = key.split(b'\0')
                if len(parts) != 3:
                    continue
                key = tuple(part.decode('utf-8', 'replace') for part in parts)
                if key in entries:
                    raise _NotReadable()
                entries[key] = value
    except (_NotReadable, struct.error):
        return None
    return entries


def read_sasldb(path):
    """The sasldb's entries (see ``parse_bdb_hash``), None when unreadable."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError):
        return None
    return parse_bdb_hash(data)


def parse_list(output):
    """Parse ``sasldblistusers2`` output into {(user, realm): set(properties)}."""
    users = {}
    for line in output.splitlines():
        match = LIST_RE.match(line.strip())
        if match:
            users.setdefault((match.group('user'), match.group('realm')), set()).add(match.group('prop'))
    return users


class SaslDb(object):
    def __init__(self, run, path, appname='libvirt', realm=None,
                 saslpasswd='saslpasswd2', listusers='sasldblistusers2', exists=None,
                 store_plaintext=False):
        self.run = run
        self.path = path
        self.appname = appname
        self.realm = realm
        self.saslpasswd = saslpasswd
        self.listusers = listusers
        self.exists = exists if exists is not None else True
        self.store_plaintext = store_plaintext
        self._entries = None

    def check_password(self, name, realm, password):
        """True/False: whether ``password`` is the one stored for name@realm; None: cannot tell.

        Reads the file (once) and keeps nothing but the verifiers; the verdict
        is False as soon as one stored credential does not match.
        """
        if not self.exists:
            return None
        if self._entries is None:
            self._entries = read_sasldb(self.path)
            if self._entries is None:
                self._entries = False
        if not self._entries:
            return None
        wanted = stored_form(password)
        verdicts = []
        verifier = self._entries.get((name, realm, 'authPassword'))
        if verifier is not None:
            verdicts.append(scram_matches(verifier, wanted))
        cleartext = self._entries.get((name, realm, 'userPassword'))
        if cleartext is not None:
            verdicts.append(hmac.compare_digest(cleartext, wanted))
        if False in verdicts:
            return False
        return True if True in verdicts else None

    def list(self):
        """Current users as {(user, realm): set(properties)}."""
        if not self.exists:
            return {}
        rc, out, err = self.run([self.listusers, '-f', self.path])
        if rc != 0:
            raise SaslError('%s failed (rc=%s): %s' % (self.listusers, rc, err.strip() or out.strip()))
        return parse_list(out)

    def _realm_args(self, realm):
        return ['-u', realm] if realm else []

    def set_password(self, name, password, create):
        argv = [self.saslpasswd, '-p'] + ([] if self.store_plaintext else ['-n'])
        argv += ['-a', self.appname, '-f', self.path]
        argv += self._realm_args(self.realm)
        if create:
            argv.append('-c')
        argv.append(name)
        rc, out, err = self.run(argv, data=password)
        if rc != 0:
            raise SaslError('%s could not set the password of %s (rc=%s): %s'
                            % (self.saslpasswd, name, rc, (err or out).strip()))

    def delete(self, name, realm):
        argv = [self.saslpasswd, '-d', '-a', self.appname, '-f', self.path]
        argv += self._realm_args(realm)
        argv.append(name)
        rc, out, err = self.run(argv)
        if rc != 0:
            raise SaslError('%s could not delete %s@%s (rc=%s): %s'
                            % (self.saslpasswd, name, realm, rc, (err or out).strip()))


def plan(current, wanted, exclusive, update_password, realm=None, store_plaintext=False, check=None):
    """Decide the actions.

    ``wanted``: list of dicts {name, password, state}. Returns a list of
    (action, name, realm) with action in create/update/delete/scrub.
    ``check(name, realm, password)`` answers True/False/None (see
    ``SaslDb.check_password``); ``update_password=on_mismatch`` updates a user
    when it answers False for one of the user's entries.
    """
    actions = []
    names = set()
    for user in wanted:
        name = user['name']
        if not NAME_RE.match(name):
            raise SaslError('invalid SASL user name %r (letters, digits, ".", "_", "-")' % name)
        if name in names:
            raise SaslError('SASL user %s listed twice' % name)
        names.add(name)
        keys = sorted(k for k in current if k[0] == name and (realm is None or k[1] == realm))
        state = user.get('state') or 'present'
        if state == 'absent':
            # every realm: a client can name the realm (user@realm) and log in
            # with an entry that is not in the server's default realm
            actions.extend(('delete', k[0], k[1]) for k in sorted(current) if k[0] == name)
            continue
        if not user.get('password'):
            raise SaslError('SASL user %s needs a password when state=present' % name)
        stored_form(user['password'])
        if not keys:
            actions.append(('create', name, realm))
        elif update_password == 'always':
            actions.append(('update', name, realm))
        elif update_password == 'on_mismatch' and check is not None:
            # a user that still has a cleartext property is re-created below anyway
            if store_plaintext or not any('userPassword' in current[k] for k in keys):
                if any(check(k[0], k[1], user['password']) is False for k in keys):
                    actions.append(('update', name, realm))
    if exclusive:
        # every realm, for the same reason: only the wanted users in the
        # managed realm stay
        for key in sorted(current):
            if key[0] not in names or (realm is not None and key[1] != realm):
                if ('delete', key[0], key[1]) not in actions:
                    actions.append(('delete', key[0], key[1]))
    # users that still carry a cleartext userPassword property (created
    # without -n by hand): rewrite them so the cleartext disappears
    for key, props in sorted(current.items()):
        if store_plaintext:
            break
        if 'userPassword' in props and key[0] in names and (realm is None or key[1] == realm):
            user = [u for u in wanted if u['name'] == key[0]][0]
            if (user.get('state') or 'present') == 'present':
                actions = [a for a in actions if a[:2] != ('update', key[0])]
                actions.append(('scrub', key[0], key[1]))
    return actions


def missing_secrets(current, actions, realm=None):
    """Users just created/updated that the database does not list at all.

    With ``-n`` only mechanism secrets are stored; Cyrus SASL's SCRAM stores
    its verifier (authPassword) only with ``scram_secret_generate: yes`` in the
    application's config, and without it the user is left with no credential
    at all, so it could never log in.
    """
    names = set(a[1] for a in actions if a[0] in ('create', 'update', 'scrub'))
    present = set(k[0] for k in current if realm is None or k[1] == realm)
    return sorted(names - present)


def apply(db, actions, wanted):
    passwords = dict((u['name'], u.get('password')) for u in wanted)
    for action, name, realm in actions:
        if action == 'delete':
            db.delete(name, realm)
        elif action == 'scrub':
            # delete and re-create: saslpasswd2 -n does not drop an existing
            # userPassword property by itself
            db.delete(name, realm)
            db.set_password(name, passwords[name], create=True)
        else:
            db.set_password(name, passwords[name], create=(action == 'create'))
