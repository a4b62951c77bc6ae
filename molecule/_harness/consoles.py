"""Controller side of the console tests: put console_probe.py on a station,
run it there (as a given user, with a password on its standard input), and
read what QEMU wrote to a guest's log.

``station`` and ``host`` are testinfra hosts.
"""
import base64
import json
import os
import shlex
import time

PROBE = "/tmp/console_probe.py"


def push_probe(station):
    """Copy console_probe.py to the station, readable by every user."""
    with open(os.path.join(os.path.dirname(__file__), "console_probe.py"), "rb") as fh:
        encoded = base64.b64encode(fh.read()).decode()
    station.check_output("printf '%%s' %s | base64 -d > %s && chmod 0644 %s", encoded, PROBE, PROBE)


def probe(station, address, port, mode, *args, **kwargs):
    """Run the probe on the station against ADDRESS:PORT; its JSON result.

    ``user``: run it as this user (runuser); ``password``: given to the
    probe on its standard input (for ``--user``), never in its arguments.
    """
    cmd = "python3 %s %s %d %s %s" % (PROBE, address, int(port), mode, " ".join(shlex.quote(a) for a in args))
    if kwargs.get("user"):
        cmd = "runuser -u %s -- %s" % (shlex.quote(kwargs["user"]), cmd)
    if kwargs.get("password") is not None:
        cmd = "printf '%%s\\n' %s | %s" % (shlex.quote(kwargs["password"]), cmd)
    return json.loads(station.check_output(cmd))


def guest_log(host, guest, needle, attempts=10):
    """The guest's QEMU log once it holds ``needle`` (QEMU writes its trace
    asynchronously), or as it is after ``attempts`` half-second waits."""
    text = ""
    for _attempt in range(attempts):
        text = host.check_output("cat /var/log/libvirt/qemu/%s.log", guest)
        if needle in text:
            break
        time.sleep(0.5)
    return text
