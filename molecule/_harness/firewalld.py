"""Start the firewalld that the virt disk carries dormant.

The virt disk has firewalld installed but switched off (the "dormant" set
of tests/harness/packages.txt: every unit it ships disabled, no D-Bus
activation file), so that libvirt on the other tests' hosts never sees a
firewalld. A test that needs an operator's running firewalld calls
``wake(host)`` on a clone, which leaves the host as ``apt-get install
firewalld`` would have (enabled and running) without installing it under
TCG (48.6 s on an idle VM, against a few seconds for this). ``host`` is a
testinfra host.
"""


def wake(host):
    """Enable and start firewalld; assert that it runs and will at boot."""
    cmd = host.run("systemctl enable --now firewalld.service && firewall-cmd --state")
    assert cmd.rc == 0 and cmd.stdout.strip() == "running", cmd.stdout[-2000:] + cmd.stderr[-2000:]
    assert host.service("firewalld").is_enabled
