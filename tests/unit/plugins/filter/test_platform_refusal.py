"""platform_refusal: the one list of tested platforms the roles check first."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.secvirt.kvm.plugins.filter.platform_refusal import platform_refusal


@pytest.mark.parametrize("major", ["12", "13", 13])
def test_debian_12_and_13_are_accepted(major):
    assert platform_refusal({"distribution": "Debian", "distribution_major_version": major,
                             "distribution_version": "%s.8" % major}, "pki") == ""


@pytest.mark.parametrize("facts, runs", [
    ({"distribution": "Debian", "distribution_major_version": "11", "distribution_version": "11.11"}, "Debian 11.11"),
    ({"distribution": "Ubuntu", "distribution_major_version": "24", "distribution_version": "24.04"}, "Ubuntu 24.04"),
    ({"distribution": "Fedora", "distribution_major_version": "41"}, "Fedora 41"),
    ({}, "an unknown distribution"),
])
def test_other_platforms_are_refused_with_what_the_host_runs(facts, runs):
    msg = platform_refusal(facts, "audit")
    assert msg == ("secvirt.kvm.audit is tested on Debian 12 (bookworm) and Debian 13 (trixie) only; "
                   "this host runs %s. Nothing was changed." % runs)


def test_no_facts_is_an_error_not_a_pass():
    with pytest.raises(AnsibleFilterError, match="expects the host facts"):
        platform_refusal("Debian 12", "pki")
