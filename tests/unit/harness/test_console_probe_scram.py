"""The console probe's SCRAM-SHA-256 client against RFC 7677's example (no socket, no VM)."""
import importlib.util
import os
import socket
import struct

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "secvirt_console_probe", os.path.join(HERE, "..", "..", "..", "molecule", "_harness", "console_probe.py"))
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)

# RFC 7677, section 3
NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _client():
    return probe.ScramSha256Client("user", "pencil", nonce=NONCE)


def test_rfc7677_exchange():
    scram = _client()
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert scram.client_final(SERVER_FIRST) == CLIENT_FINAL
    scram.check_server_final(SERVER_FINAL)


def test_wrong_password_gives_another_proof_and_rejects_the_real_server_signature():
    scram = probe.ScramSha256Client("user", "pencil!", nonce=NONCE)
    scram.client_first()
    assert scram.client_final(SERVER_FIRST) != CLIENT_FINAL
    with pytest.raises(probe.ScramError, match="signature does not match"):
        scram.check_server_final(SERVER_FINAL)


def test_forged_server_signature_is_refused():
    scram = _client()
    scram.client_first()
    scram.client_final(SERVER_FIRST)
    with pytest.raises(probe.ScramError, match="signature does not match"):
        scram.check_server_final(b"v=" + b"A" * 43 + b"=")


def test_server_error_and_bad_server_first_are_refused():
    scram = _client()
    scram.client_first()
    with pytest.raises(probe.ScramError, match="does not extend"):
        scram.client_final(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(probe.ScramError, match="does not extend"):
        scram.client_final(b"r=" + NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(probe.ScramError, match="extension"):
        scram.client_final(b"m=x," + SERVER_FIRST)
    with pytest.raises(probe.ScramError, match="invalid-proof"):
        scram.check_server_final(b"e=invalid-proof")


def test_user_name_is_escaped():
    scram = probe.ScramSha256Client("a=b,c", "x", nonce=NONCE)
    assert scram.client_first() == b"n,,n=a=3Db=2Cc,r=" + NONCE.encode()


def test_generated_nonce_is_fresh_and_comma_free():
    first, second = probe.ScramSha256Client("u", "p"), probe.ScramSha256Client("u", "p")
    assert first.nonce != second.nonce and "," not in first.nonce and len(first.nonce) >= 24


def test_sasl_framing_follows_qemu():
    """QEMU drops the last byte of client data (it expects a NUL) and sends its data with a NUL."""
    left, right = socket.socketpair()
    with left, right:
        probe.sasl_send(left, b"abc")
        probe.sasl_send(left, None)
        assert right.recv(100) == struct.pack(">I", 4) + b"abc\0" + struct.pack(">I", 0)
        right.sendall(struct.pack(">I", 4) + b"xyz\0" + b"\0" + struct.pack(">I", 0) + b"\1")
        assert probe.sasl_recv(left) == (b"xyz", False)
        assert probe.sasl_recv(left) == (None, True)
