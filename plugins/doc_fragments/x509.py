# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # What the x509_* modules need where they run (x509_ca and x509_sign on
    # the controller, the others on the managed host).
    DOCUMENTATION = r'''
options: {}
requirements:
  - cryptography >= 38.0 (Python library; C(python3-cryptography) on Debian) on the host that runs the module
'''
