"""molecule/_harness/listeners.py on this machine (testinfra's local
backend, real sockets): the wait for a background listener that binds late,
which a fixed one-second sleep lost (debian13, 2026-12-06)."""
import importlib.util
import os
import socket
import subprocess
import sys
import time

import pytest
import testinfra

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "secvirt_listeners", os.path.join(HERE, "..", "..", "..", "molecule", "_harness", "listeners.py"))
listeners = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(listeners)

HOST = testinfra.get_host("local://")
LATE = ("import socket, sys, time; time.sleep(2.5); s = socket.socket(socket.AF_INET, %s); "
        "s.bind(('127.0.0.1', int(sys.argv[1]))); %s time.sleep(60)")


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def late_listener(port, kind="SOCK_STREAM"):
    """A process that binds ``port`` only 2.5 s after it started, as a
    Python server under emulation does."""
    return subprocess.Popen([sys.executable, "-c", LATE % ("socket." + kind, "s.listen();" if kind == "SOCK_STREAM" else ""),
                             str(port)])


def test_a_late_tcp_listener_is_waited_for_where_one_second_was_not_enough():
    port = free_port()
    proc = late_listener(port)
    try:
        time.sleep(1)                                   # what the tests did before
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), 5).close()
        listeners.wait_bound(HOST, [port])
        socket.create_connection(("127.0.0.1", port), 5).close()   # now it answers
    finally:
        proc.kill()
        proc.wait()


def test_a_late_udp_listener_is_waited_for():
    port = free_port(socket.SOCK_DGRAM)
    proc = late_listener(port, "SOCK_DGRAM")
    try:
        started = time.monotonic()
        listeners.wait_bound(HOST, [port], "udp")
        assert time.monotonic() - started > 1
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_port_nobody_binds_fails_with_its_name_and_a_bound_one_passes():
    port = free_port()
    with pytest.raises(AssertionError, match="nothing bound to tcp/%d after 1 s" % port):
        listeners.wait_bound(HOST, [port], timeout=1)
    with socket.socket() as server:                      # the control: bound and listening, returns at once
        server.bind(("127.0.0.1", 0))
        server.listen()
        started = time.monotonic()
        listeners.wait_bound(HOST, [server.getsockname()[1]], timeout=1)
        assert time.monotonic() - started < 1


def test_start_http_returns_listening_servers_and_their_pids():
    ports = [free_port(), free_port()]
    pids = listeners.start_http(HOST, "127.0.0.1", ports)
    try:
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), 5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert conn.recv(12).startswith(b"HTTP/1.0 200")
    finally:
        HOST.run("kill %s" % " ".join(pids))
