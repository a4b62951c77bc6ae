#!/usr/bin/env python3
"""A userspace Ethernet hub for qemu's ``-netdev stream`` backend.

Every qemu that connects to the unix socket is one port of the hub; each frame
(4-byte big-endian length, then the frame, as qemu's stream/socket netdevs
frame it) is copied to every other port. Frames are never parsed, so 802.1Q
tags and any EtherType pass through untouched, exactly like a dumb hub.

It is the private L2 segment between the test VMs: nothing here touches the
build machine's own network stack, and it exits when the last port that was
ever connected goes away (or on SIGTERM).
"""
import os
import selectors
import signal
import socket
import struct
import sys


def serve(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    buffers = {}
    had_client = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is listener:
                conn, _ = listener.accept()
                conn.setblocking(True)
                sel.register(conn, selectors.EVENT_READ)
                buffers[conn] = b""
                had_client = True
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                buffers.pop(sock, None)
                sock.close()
                if had_client and not buffers:
                    return
                continue
            buf = buffers[sock] + data
            while len(buf) >= 4:
                (length,) = struct.unpack("!I", buf[:4])
                if len(buf) < 4 + length:
                    break
                frame, buf = buf[: 4 + length], buf[4 + length:]
                for other in list(buffers):
                    if other is not sock:
                        try:
                            other.sendall(frame)
                        except OSError:
                            pass
            buffers[sock] = buf


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: hub.py SOCKET_PATH")
    serve(sys.argv[1])
