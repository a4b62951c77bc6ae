# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one way the secvirt.kvm modules replace a configuration file.

A temporary file in the destination's directory, then AnsibleModule's
atomic_move (an existing file keeps its owner, mode and SELinux context;
readers see the old or the new content, never half of it), then the
owner/mode the caller asks for through set_fs_attributes_if_different.
Two writers keep their own path on purpose: x509_files (keys and
certificates, opened relative to a directory descriptor so that no link is
followed) and vlan_bridge_host (the network files of a transaction that a
fake host replaces in the unit tests).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes


def replace_file(module, path, content, backup=False):
    """Write ``content`` (text or bytes) to ``path`` atomically.

    Returns the backup's path when ``backup`` is true and a previous file
    existed, else None. The temporary file never outlives a failure.
    """
    backup_file = None
    if backup and os.path.exists(path):
        backup_file = module.backup_local(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix='.secvirt-')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(to_bytes(content, errors='surrogate_or_strict'))
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return backup_file


def enforce_attributes(module, path, changed, mode=None, owner=None, group=None):
    """Bring the file's owner/group/mode to what is asked; returns ``changed``
    or True when an attribute had to change (check mode: would change)."""
    file_args = module.load_file_common_arguments(dict(path=path, mode=mode, owner=owner, group=group))
    return module.set_fs_attributes_if_different(file_args, changed)
