# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI.
      - The module opens a read-only connection when it only reads.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python (C(python3-libvirt) on Debian) on the managed host
  - a running libvirt daemon (C(libvirtd) or the modular C(virtqemud)/C(virtnwfilterd))
'''

    # The modules that act on one guest: secvirt.kvm.libvirt.domain
    DOMAIN = r'''
options:
  domain:
    description: Name of the guest (the libvirt domain); it must be defined.
    type: str
    required: true
'''
