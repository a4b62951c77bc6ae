"""cidr_check and tls_priority_check, the filters behind libvirt_remote's validation."""
import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.secvirt.kvm.plugins.filter import cidr_check as C
from ansible_collections.secvirt.kvm.plugins.filter import tls_priority_check as T


# --- cidr_check --------------------------------------------------------------

def test_cidr_check_accepts_networks_and_single_addresses():
    res = C.cidr_check(["10.254.0.0/24", "10.254.1.7", "2001:db8:10::/64", "2001:DB8::1"])
    assert res == {"invalid": [], "broad": [],
                   "networks": ["10.254.0.0/24", "10.254.1.7/32", "2001:db8:10::/64", "2001:db8::1/128"]}


@pytest.mark.parametrize("bad,why", [
    ("10.254.0.300/24", "not an IPv4 or IPv6"),
    ("10.254.0.0/33", "not an IPv4 or IPv6"),
    ("2001:db8::/129", "not an IPv4 or IPv6"),
    ("10.254.0.1/24", "host bits set (the network is 10.254.0.0/24)"),
    ("010.254.0.0/24", "not an IPv4 or IPv6"),
    ("10.0.0.0/255.0.0.0", "prefix length"),
    ("fe80::1%eth0/128", "characters"),
    ("10.254.0.0/24; accept", "characters"),
    (" 10.254.0.0/24", "characters"),
    ("10.254.0.0/24\n", "characters"),
    ("example.org", "characters"),
    ("", "characters"),
])
def test_cidr_check_names_each_invalid_entry(bad, why):
    res = C.cidr_check(["192.0.2.0/24", bad])
    assert res["networks"] == ["192.0.2.0/24"] and res["broad"] == []
    assert len(res["invalid"]) == 1 and res["invalid"][0].startswith(repr(bad)) and why in res["invalid"][0]


def test_cidr_check_refuses_non_strings_and_non_lists():
    assert C.cidr_check([24])["invalid"] == ["24: not a string"]
    with pytest.raises(AnsibleFilterError):
        C.cidr_check("10.0.0.0/8")


def test_cidr_check_flags_any_source_and_wide_networks():
    res = C.cidr_check(["0.0.0.0/0", "::/0", "10.0.0.0/8", "10.0.0.0/7", "2001:db8::/32", "2001:db8::/31"])
    assert res["broad"] == ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001:db8::/31"] and res["invalid"] == []
    res = C.cidr_check(["10.254.0.0/23", "2001:db8:10::/56"], min_prefix_v4=24, min_prefix_v6=64)
    assert res["broad"] == ["10.254.0.0/23", "2001:db8:10::/56"]
    # prefix 0 stays "broad" even with a minimum of 0
    assert C.cidr_check(["0.0.0.0/0", "1.0.0.0/1"], min_prefix_v4=0)["broad"] == ["0.0.0.0/0"]


@pytest.mark.parametrize("v4,v6", [(-1, 32), (33, 32), (8, 129), ("8", 32)])
def test_cidr_check_refuses_impossible_minimums(v4, v6):
    with pytest.raises(AnsibleFilterError):
        C.cidr_check(["10.0.0.0/8"], min_prefix_v4=v4, min_prefix_v6=v6)


def test_cidr_check_is_registered():
    assert C.FilterModule().filters() == {"cidr_check": C.cidr_check}


# --- tls_priority_check ------------------------------------------------------

@pytest.mark.parametrize("good", [
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
    "SECURE256:-VERS-ALL:+VERS-TLS1.3",
    "normal:-vers-all:+vers-tls1.2",
    "NORMAL:-VERS-TLS1.1:-VERS-TLS1.0:-VERS-SSL3.0",
    "NORMAL:!VERS-TLS1.0:!VERS-TLS1.1:!VERS-SSL3.0",
    "SUITEB128",
    "NONE:+VERS-TLS1.2:+AES-256-GCM:+ECDHE-ECDSA:+AEAD:+SIGN-ALL:+GROUP-ALL:+COMP-NULL:+CTYPE-X509",
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-ARCFOUR-128:-NULL:%SERVER_PRECEDENCE",
    "NORMAL:-VERS-TLS-ALL:+VERS-TLS1.2",
])
def test_tls_priority_check_accepts_modern_strings(good):
    assert T.tls_priority_check(good) == []


@pytest.mark.parametrize("bad,words", [
    ("NORMAL:+VERS-TLS1.0", ["TLS1.0"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-SSL3.0", ["SSL3.0"]),
    ("SECURE256:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.1", ["TLS1.1"]),
    ("NORMAL", ["TLS1.0", "TLS1.1", "-VERS-ALL"]),
    ("SECURE128:-VERS-TLS1.0", ["TLS1.1"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+VERS-ALL", ["TLS1.0", "TLS1.1"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS-ALL", ["TLS1.0"]),
    ("@SYSTEM", ["TLS1.0"]),
    ("LEGACY:-VERS-ALL:+VERS-TLS1.2", ["LEGACY"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+NULL", ["+NULL"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+ARCFOUR-128", ["+ARCFOUR-128"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+RSA-EXPORT", ["+RSA-EXPORT"]),
    ("EXPORT", ["EXPORT"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:+ANON-ECDH", ["+ANON-ECDH"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2:%UNSAFE_RENEGOTIATION", ["%UNSAFE_RENEGOTIATION"]),
    ("NORMAL:-VERS-ALL", ["no TLS version"]),
    ("NORMAL:-VERS-ALL:VERS-TLS1.2", ["VERS-TLS1.2"]),
    ("", ["empty"]),
    ("NORMAL:-VERS-ALL:+VERS-TLS1.2\n", ["newline"]),
])
def test_tls_priority_check_names_what_is_weak(bad, words):
    problems = T.tls_priority_check(bad)
    assert problems, bad
    for word in words:
        assert word in " ".join(problems), (word, problems)


def test_tls_priority_check_refuses_non_strings_and_is_registered():
    assert T.tls_priority_check(None) == ["the priority string must be a non-empty string"]
    assert T.FilterModule().filters() == {"tls_priority_check": T.tls_priority_check}
