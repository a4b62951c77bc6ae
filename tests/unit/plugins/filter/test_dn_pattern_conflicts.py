"""The allowed-DN guard of libvirt_remote: which tls_allowed_dn_list patterns admit a server or QEMU subject."""
import pytest

from ansible_collections.secvirt.kvm.plugins.filter.dn_pattern_conflicts import (
    FilterModule, dn_pattern_conflicts)

SERVER = "CN=kvm1.example.org,O=Example,C=DE"          # RFC 4514, as x509_verify reports it
QEMU = "CN=kvm1.example.org,OU=qemu,O=Example,C=DE"


def test_the_filter_is_registered():
    assert FilterModule().filters()["dn_pattern_conflicts"] is dn_pattern_conflicts


@pytest.mark.parametrize("pattern", [
    "C=DE,O=Example,*",                 # certificate order, as libvirt 9 matches it
    "C=DE,O=Example,CN=*",              # admits libvirtd's own server subject
    "*O=Example*",
    "C=DE,O=Example,OU=qemu,CN=*",      # admits QEMU's certificate
    "CN=*,OU=qemu,O=Example,C=DE",      # the same in RFC 4514 order
    "*",
])
def test_patterns_that_admit_a_server_or_qemu_subject_are_reported(pattern):
    found = dn_pattern_conflicts([pattern], [SERVER, QEMU])
    assert found, pattern
    assert all(pattern in line for line in found)


def test_client_only_patterns_are_accepted_next_to_a_refused_one():
    clients = ["C=DE,O=Example,OU=operators,CN=*", "CN=*,OU=operators,O=Example,C=DE"]
    assert dn_pattern_conflicts(clients, [SERVER, QEMU]) == []
    bad = dn_pattern_conflicts(clients + ["C=DE,O=Example,CN=*"], [SERVER, QEMU])
    assert bad == ["'C=DE,O=Example,CN=*' admits C=DE,O=Example,CN=kvm1.example.org"]


def test_escaped_commas_stay_inside_their_attribute():
    subject = r"CN=kvm1,O=Example\, Inc.,C=US"
    assert dn_pattern_conflicts([r"C=US,O=Example\, Inc.,CN=*"], [subject])
    assert dn_pattern_conflicts(["C=US,O=Example,*"], [subject]) == []


def test_empty_subjects_and_patterns():
    assert dn_pattern_conflicts([], [SERVER]) == []
    assert dn_pattern_conflicts(["*"], ["", None]) == []
