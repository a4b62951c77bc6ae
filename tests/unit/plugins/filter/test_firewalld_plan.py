"""firewalld_plan: rich rules for the managed port ranges only from the
allowed sources; every other opening of those ports (rich rule, port,
service) taken away; openings of other ports left alone."""
import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.secvirt.kvm.plugins.filter.firewalld_plan import firewalld_plan

RULES = [{"sources": ["10.254.0.0/24", "fd00::/64"], "ports": "5900-5999"},
         {"sources": ["10.254.0.12"], "ports": "49152-49215"}]
CONSOLE_V4 = 'rule family="ipv4" source address="10.254.0.0/24" port port="5900-5999" protocol="tcp" accept'
CONSOLE_V6 = 'rule family="ipv6" source address="fd00::/64" port port="5900-5999" protocol="tcp" accept'
PEER = 'rule family="ipv4" source address="10.254.0.12" port port="49152-49215" protocol="tcp" accept'


def test_an_empty_zone_gets_one_rule_per_source_and_range_and_loses_nothing():
    plan = firewalld_plan({"rich_rules": [], "ports": [], "services": ["ssh"]}, RULES, services=["vnc-server"])
    assert plan == {"add": [CONSOLE_V4, CONSOLE_V6, PEER], "remove": []}


def test_a_zone_that_holds_the_rules_needs_nothing():
    current = {"rich_rules": [CONSOLE_V4, PEER, CONSOLE_V6, ""], "ports": ["22/tcp"], "services": ["ssh", "dhcpv6-client"]}
    assert firewalld_plan(current, RULES, services=["vnc-server"]) == {"add": [], "remove": []}


def test_every_other_opening_of_a_managed_port_is_taken_away_and_nothing_else():
    stray = 'rule family="ipv4" source address="0.0.0.0/0" port port="5901" protocol="tcp" accept'
    old_peer = 'rule family="ipv4" source address="10.254.0.99" port port="49152-49215" protocol="tcp" accept'
    ssh = 'rule family="ipv4" source address="192.0.2.0/24" port port="22" protocol="tcp" accept'
    udp = 'rule family="ipv4" source address="0.0.0.0/0" port port="5900" protocol="udp" accept'
    current = {"rich_rules": [CONSOLE_V4, stray, old_peer, ssh, udp],
               "ports": ["5900-5903/tcp", "49200/tcp", "49200/udp", "8080/tcp", "5800-5900/tcp"],
               "services": ["ssh", "vnc-server"]}
    plan = firewalld_plan(current, RULES, services=["vnc-server"])
    assert plan["add"] == [CONSOLE_V6, PEER]
    assert plan["remove"] == ["--remove-rich-rule=" + stray, "--remove-rich-rule=" + old_peer,
                              "--remove-port=5900-5903/tcp", "--remove-port=49200/tcp", "--remove-port=5800-5900/tcp",
                              "--remove-service=vnc-server"]


def test_a_range_without_sources_is_closed_to_everyone():
    current = {"rich_rules": [PEER], "ports": [], "services": []}
    plan = firewalld_plan(current, [{"sources": [], "ports": "49152-49215"}])
    assert plan == {"add": [], "remove": ["--remove-rich-rule=" + PEER]}


@pytest.mark.parametrize("ports", ["5999-5900", "vnc", ""])
def test_a_bad_range_is_refused(ports):
    with pytest.raises(AnsibleFilterError, match="firewalld_plan"):
        firewalld_plan({"rich_rules": [], "ports": [], "services": []}, [{"sources": [], "ports": ports}])


# as firewalld 2.x (Debian 13) prints it for `firewall-cmd --permanent --info-zone=public`
INFO_ZONE = """public (default)
  target: default
  ingress-priority: 0
  egress-priority: 0
  icmp-block-inversion: no
  interfaces:\x20
  sources:\x20
  services: dhcpv6-client ssh vnc-server
  ports: 5900-5903/tcp 8080/tcp
  protocols:\x20
  forward: yes
  masquerade: no
  forward-ports:\x20
  source-ports:\x20
  icmp-blocks:\x20
  rich rules:\x20
\trule family="ipv4" source address="10.254.0.0/24" port port="5900-5999" protocol="tcp" accept
\trule family="ipv4" source address="0.0.0.0/0" port port="49200" protocol="tcp" accept
"""


def test_the_info_zone_text_is_read():
    plan = firewalld_plan(INFO_ZONE, RULES, services=["vnc-server"])
    assert plan["add"] == [CONSOLE_V6, PEER]
    assert plan["remove"] == ['--remove-rich-rule=rule family="ipv4" source address="0.0.0.0/0" port port="49200" protocol="tcp" accept',
                              "--remove-port=5900-5903/tcp", "--remove-service=vnc-server"]


def test_an_empty_zone_text_is_read():
    empty = "public\n  services: \n  ports: \n  rich rules: \n"
    assert firewalld_plan(empty, RULES) == {"add": [CONSOLE_V4, CONSOLE_V6, PEER], "remove": []}
