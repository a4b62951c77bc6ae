# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key and certificate files for the X.509 modules: safe paths, reading, atomic writes, owner and mode.

Plain Python (no Ansible import) so that the unit tests call it directly;
the keys and certificates themselves are handled by ``x509``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import errno
import grp
import os
import pwd
import stat

try:
    from cryptography import x509
except ImportError:  # pragma: no cover - reported through x509.HAS_CRYPTOGRAPHY
    pass

from ansible_collections.secvirt.kvm.plugins.module_utils.x509 import (
    X509Error, _to_bytes, iso, key_type_of, load_certificate, load_private_key, name_to_string, not_after,
    public_key_fingerprint,
)


# --------------------------------------------------------------------------
# Files: never through a link a user could plant
# --------------------------------------------------------------------------
#
# The modules run as root on paths inside users' home directories
# (~/.pki/libvirt/clientkey.pem).  A user who makes such a path, or one of its
# directories, a symlink could make root read, write, chown or chmod a
# root-only file.  So every path is walked one component at a time from an
# open directory (openat-style, with dir_fd): a symlink is followed only when
# it belongs to root (or to the user running the module, who gains nothing by
# fooling himself), the last component must not be a symlink at all, and every
# open uses O_NOFOLLOW, so a link planted between the check and the open makes
# the open fail instead of following it.

_MAX_SYMLINKS = 40
_O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_O_DIRECTORY = getattr(os, 'O_DIRECTORY', 0)
_O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
_O_NONBLOCK = getattr(os, 'O_NONBLOCK', 0)


class UnsafePathError(X509Error):
    """A path goes through a symlink that a user could have planted."""


def _trusted_link_owners():
    return (0, os.geteuid())


def _user_link(path, component, uid):
    return UnsafePathError('refusing %s: %s is a symlink owned by uid %d (not root); '
                           'a user could point it at a root-only file' % (path, component, uid))


def _final_link(path, uid):
    """A link as the file itself is refused whoever owns it."""
    if uid not in _trusted_link_owners():
        return _user_link(path, path, uid)
    return UnsafePathError('refusing %s: %s is a symlink; a key or certificate file must be a regular file, '
                           'not a link that could point at another file' % (path, path))


def _lstat_at(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _open_parent(path, missing_ok=False):
    """(fd of the directory that holds `path`'s last component, that component).

    Every directory from / down is checked as described above.  A missing
    directory raises X509Error 'directory ... does not exist', or returns
    (None, name) when `missing_ok` (check mode: the play would create it).
    """
    path = '%s' % path
    directory, base = os.path.split(path)
    if not base or base in ('.', '..'):
        raise X509Error('%s does not name a file' % path)
    pending = directory.split('/') if directory else []
    shown = '/' if path.startswith('/') else '.'
    fd = os.open(shown, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name in ('', '.'):
                continue
            here = os.path.normpath(os.path.join(shown, name))
            st = _lstat_at(fd, name)
            if st is None:
                if missing_ok:
                    os.close(fd)
                    return None, base
                raise X509Error('directory %s does not exist' % (directory or '.'))
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in _trusted_link_owners():
                    raise _user_link(path, here, st.st_uid)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise X509Error('refusing %s: too many levels of symbolic links' % path)
                target = os.readlink(name, dir_fd=fd)
                again = _lstat_at(fd, name)
                if again is None or (again.st_ino, again.st_dev, again.st_uid) != (st.st_ino, st.st_dev, st.st_uid):
                    raise UnsafePathError('refusing %s: %s changed while it was checked' % (path, here))
                if target.startswith('/'):
                    os.close(fd)
                    fd = -1  # nothing to close should the next open fail
                    fd = os.open('/', os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
                    shown = '/'
                pending[0:0] = target.split('/')
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise X509Error('refusing %s: %s is not a directory' % (path, here))
            try:
                child = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise UnsafePathError('refusing %s: %s changed while it was checked' % (path, here))
                raise
            os.close(fd)
            fd = child
            shown = here
        return fd, base
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _check_final(path, dir_fd, base):
    """lstat of the last component (None when absent); refuse a link or anything but a regular file."""
    st = _lstat_at(dir_fd, base)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _final_link(path, st.st_uid)
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise X509Error('refusing %s: it is a directory, not a regular file' % path)
        raise X509Error('refusing %s: it is not a regular file' % path)
    return st


def _open_final(path, dir_fd, base, flags):
    """Open the last component without following a link; (fd, fstat) or (None, None) when absent."""
    try:
        fd = os.open(base, flags | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None, None
        if exc.errno == errno.ELOOP:
            st = _lstat_at(dir_fd, base)
            raise _final_link(path, st.st_uid if st is not None else -1)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        raise X509Error('refusing %s: it is not a regular file' % path)
    return fd, st


def check_path(path, missing_ok=False):
    """Raise X509Error unless `path` can safely be read, written and chowned as root.

    No component may be a symlink owned by anyone but root (or the user running
    the module), the file itself must be a regular file or absent, and its
    directory must exist unless `missing_ok` (check mode).
    """
    dir_fd, base = _open_parent(path, missing_ok)
    if dir_fd is None:
        return
    try:
        _check_final(path, dir_fd, base)
    finally:
        os.close(dir_fd)


def read_file(path):
    """File bytes, or None when it (or its directory) does not exist; never through a user's link."""
    try:
        dir_fd, base = _open_parent(path, missing_ok=True)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    if dir_fd is None:
        return None
    try:
        fd, _st = _open_final(path, dir_fd, base, os.O_RDONLY)
    finally:
        os.close(dir_fd)
    if fd is None:
        return None
    with os.fdopen(fd, 'rb') as handle:
        return handle.read()


def atomic_write(path, data, mode=0o600):
    """Write through a 0600 temp file in the same (checked) directory and rename over `path`.

    The secret never sits in a file with wider permissions than `mode`, and a
    reader never sees a half-written key or certificate.
    """
    dir_fd, base = _open_parent(path)
    try:
        _check_final(path, dir_fd, base)
        tmp = None
        for _attempt in range(100):
            name = '.secvirt-%s' % binascii.hexlify(os.urandom(6)).decode('ascii')
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600,
                             dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    continue
                raise
            tmp = name
            break
        if tmp is None:
            raise X509Error('cannot create a temporary file in %s' % os.path.dirname(path))
        try:
            with os.fdopen(fd, 'wb') as handle:
                os.fchmod(handle.fileno(), mode & 0o600)
                handle.write(_to_bytes(data))
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except Exception:
            if _lstat_at(dir_fd, tmp) is not None:
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def resolve_owner(owner, group):
    """(uid, gid) from user and group names or numbers; X509Error when unknown."""
    ids = []
    for value, lookup, what in ((owner, lambda n: pwd.getpwnam(n).pw_uid, 'user'),
                                (group, lambda n: grp.getgrnam(n).gr_gid, 'group')):
        text = ('%s' % value).strip()
        if text.isdigit():
            ids.append(int(text))
            continue
        try:
            ids.append(lookup(text))
        except KeyError:
            raise X509Error('unknown %s %r' % (what, text))
    return tuple(ids)


def set_attributes(path, uid, gid, mode, check_mode=False):
    """Give an existing regular file owner, group and mode through its descriptor (never a link).

    Returns whether anything was (or in check mode would be) changed; False
    when the file does not exist.
    """
    dir_fd, base = _open_parent(path, missing_ok=check_mode)
    if dir_fd is None:
        return False
    try:
        fd, st = _open_final(path, dir_fd, base, os.O_RDONLY)
    finally:
        os.close(dir_fd)
    if fd is None:
        return False
    try:
        changed = False
        if (st.st_uid, st.st_gid) != (uid, gid):
            changed = True
            if not check_mode:
                os.fchown(fd, uid, gid)
        # chown clears set-id bits: compare the mode after it
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            changed = True
            if not check_mode:
                os.fchmod(fd, mode)
        return changed
    finally:
        os.close(fd)


def stat_file(path):
    """lstat of `path` reached safely, or None (absent, unsafe or unreadable)."""
    try:
        dir_fd, base = _open_parent(path, missing_ok=True)
        if dir_fd is None:
            return None
        try:
            return _lstat_at(dir_fd, base)
        finally:
            os.close(dir_fd)
    except (X509Error, OSError):
        return None


def parse_mode(value, where='', secret=True):
    """Octal mode string -> int; refuse modes that expose a secret or make files executable."""
    try:
        mode = int('%s' % value, 8)
    except (TypeError, ValueError):
        raise X509Error('%s: mode %r is not an octal mode' % (where, value))
    if secret and mode & 0o007:
        raise X509Error('%s: mode %s would let other users read or change a private key' % (where, value))
    if mode & 0o7000 or mode & 0o111:
        raise X509Error('%s: mode %s has execute or special bits' % (where, value))
    return mode


def plan_key(path, key_type, regenerate=False):
    """(existing key or None, reason, file bytes) for a key file that must hold a `key_type` key.

    reason is '' when the existing key is kept, otherwise missing, unreadable,
    type (another key type than wanted) or regenerate.
    """
    data = read_file(path)
    if data is None:
        return None, 'missing', data
    try:
        key = load_private_key(data)
    except X509Error:
        return None, 'unreadable', data
    if key_type_of(key) != key_type:
        return None, 'type', data
    if regenerate:
        return None, 'regenerate', data
    return key, '', data


def _crl_summary(data):
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise X509Error('not a PEM CRL')
    next_update = getattr(crl, 'next_update_utc', None) or crl.next_update
    return 'CRL %s next update %s, %d revoked' % (name_to_string(crl.issuer),
                                                  next_update.strftime('%Y-%m-%dT%H:%M:%SZ') if next_update else 'none',
                                                  len(list(crl)))


def file_summary(path, data, kind='key', with_attrs=True):
    """One log-safe line about a key or certificate file (never its secret content)."""
    if data is None:
        return '%s: absent\n' % path
    attrs = ''
    st = stat_file(path) if with_attrs else None
    if st is not None and stat.S_ISREG(st.st_mode):
        attrs = ' mode %04o uid %d gid %d' % (st.st_mode & 0o7777, st.st_uid, st.st_gid)
    try:
        if kind == 'key':
            key = load_private_key(data)
            what = '%s key %s' % (key_type_of(key), public_key_fingerprint(key)[:23])
        elif kind == 'crl':
            what = _crl_summary(data)
        else:
            cert = load_certificate(data)
            what = 'certificate %s serial %x not after %s' % (
                name_to_string(cert.subject), cert.serial_number, iso(not_after(cert)))
    except X509Error:
        what = 'unreadable %s' % kind
    return '%s: %s%s\n' % (path, what, attrs)
