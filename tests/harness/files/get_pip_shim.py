"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip.py from ci-files.testing.ansible.com to put pip
into the empty virtual environments of the `import` sanity test. That host is
not reachable from our CI (only Debian mirrors and PyPI are), so
tests/harness/sanity.sh places this file in ansible-test's cache instead: it
seeds pip from the interpreter's own ensurepip and then installs exactly the
pip version ansible-test asked for from PyPI, with ansible-test's options.

ansible-test runs this with a scrubbed environment, so a machine whose HTTPS
goes through an inspecting proxy loses its CA bundle setting (PIP_CERT); the
system bundle is therefore written into the new environment's own pip.conf,
which also serves the requirement installs that follow.
"""
import ensurepip
import os
import subprocess
import sys

BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
if os.path.exists(BUNDLE) and sys.prefix != sys.base_prefix:
    with open(os.path.join(sys.prefix, "pip.conf"), "a") as conf:
        conf.write("[global]\ncert = %s\n" % BUNDLE)
ARGS = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
# ensurepip points PIP_CONFIG_FILE at /dev/null in this process; undo that
# so the pip.conf files (and the CA bundle) count again.
os.environ.pop("PIP_CONFIG_FILE", None)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + ARGS))
