"""Throw-away listeners that a reachability test starts on a VM, and the
wait until they really listen.

A listener started in the background is not bound when the shell returns:
``python3 -m http.server`` under TCG, beside the other lane, took more than
the one second the tests used to sleep (debian13, 2026-12-06: the station's
positive control got "Connection refused" from port 5990 because nothing
listened there yet, and the suite failed by chance). So the tests wait for
the socket itself, in one remote command, and a listener that never binds
fails with a message naming its port instead of passing as "refused".

``host`` is a testinfra host.
"""
import shlex


def wait_bound(host, ports, proto="tcp", timeout=60):
    """Return once a socket on ``host`` is bound to every port of ``ports``
    (listening, for TCP); fail after ``timeout`` seconds, naming them."""
    flags = {"tcp": "-Htln", "udp": "-Huln"}[proto]
    bound = " && ".join("ss %s %s | grep -q ." % (flags, shlex.quote("sport = :%d" % port)) for port in ports)
    names = ", ".join("%s/%d" % (proto, port) for port in ports)
    host.check_output("i=0; until %s; do i=$((i + 1)); if [ $i -gt %d ]; then "
                      "echo %s >&2; exit 1; fi; sleep 0.2; done"
                      % (bound, timeout * 5, shlex.quote("nothing bound to %s after %d s" % (names, timeout))))


def start_http(host, address, ports, timeout=60):
    """Start ``python3 -m http.server`` on ``address`` for each of ``ports``
    and wait until all listen; the listeners' process IDs, for ``kill``."""
    pids = [host.check_output("python3 -m http.server --bind %s %s >/dev/null 2>&1 & echo $!", address, str(port))
            for port in ports]
    try:
        wait_bound(host, ports, "tcp", timeout)
    except AssertionError:
        host.run("kill %s" % " ".join(pids))
        raise
    return pids
