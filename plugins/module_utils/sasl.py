# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manage Cyrus SASL sasldb users (libvirt's SASL credential database).

Only the Cyrus tools touch the database (``saslpasswd2``, ``sasldblistusers2``)
so the on-disk format (Berkeley DB, gdbm or LMDB depending on the build) does
not matter. Passwords travel on the tool's stdin (``-p``), never on argv, and
``-n`` keeps the cleartext ``userPassword`` property out of the database: only
the salted mechanism secrets (SCRAM) are stored.

Because nothing in the database can be turned back into the password without
implementing each mechanism's key derivation, changing a password is decided by
policy (``update_password``): ``on_create`` sets it only for new users,
``always`` sets it on every run (and reports a change).

``run`` is a callable ``run(argv, data=None) -> (rc, stdout, stderr)``
(AnsibleModule.run_command in the module, a fake in unit tests).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import socket

LIST_RE = re.compile(r'^(?P<user>[^@\s]+)@(?P<realm>[^:\s]*):\s*(?P<prop>\S+)\s*$')
NAME_RE = re.compile(r'^[A-Za-z0-9._-]+$')


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


def plan(current, wanted, exclusive, update_password, realm=None, store_plaintext=False):
    """Decide the actions.

    ``wanted``: list of dicts {name, password, state}. Returns a list of
    (action, name, realm) with action in create/update/delete, plus the
    cleartext-property warnings list.
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
        if not keys:
            actions.append(('create', name, realm))
        elif update_password == 'always':
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
