# -*- coding: utf-8 -*-
# Copyright: secvirt.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The descriptions of the attributes every module of the collection
    # declares. A module gives its own "support" (and "details" where its
    # behaviour needs a word); ansible-doc merges the two.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode).
'''

    # Most modules: full check mode and full diff, nothing to add. They use
    # secvirt.kvm.attributes.full instead of repeating the support lines.
    FULL = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode).
    support: full
'''

    # Modules that only read (facts, reports, checks): the same in check
    # mode, nothing to diff. secvirt.kvm.attributes.read_only.
    READ_ONLY = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads, so it runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode).
    support: none
    details: The module never changes anything, so there is nothing to diff.
'''
