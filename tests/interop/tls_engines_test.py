"""Issue 18: the MQTT ports behave the same on either TLS engine (OpenSSL 3, GnuTLS 3.7), with
session tickets on or off: TLS 1.2 and 1.3, resumption where it is on (with the device's
identity and policy after a resumed handshake), ALPN on both ports, server cipher preference
with AEAD first, no TLS 1.1. The client is Python's ssl module (OpenSSL), speaking MQTT 3.1.1
CONNECT/CONNACK itself."""

import json
import os
import socket
import ssl
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd  # noqa: E402

# A device may connect only with its thing's name as client id (policy variables read the
# certificate's registry entry, so this checks the identity after a resumed handshake too).
OWN_NAME = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "iot:Connect",
    "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"}]}


def connect_packet(client_id):
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return out
        out += chunk
    return out


class Engine:
    """One fleetkeyd with the given engine and ticket setting, and one device."""

    def __init__(self, engine, tickets, extra=""):
        self.tmp = tempfile.mkdtemp(prefix="fk_tls_%s_" % engine)
        cfg = os.path.join(self.tmp, "fleetkeyd.toml")
        with open(cfg, "w") as f:
            f.write("[mqtt]\ntls_session_tickets = %s\n%s"
                    % ("true" if tickets else "false", extra))
        self.server = Fleetkeyd(os.path.join(self.tmp, "data"), "--config", cfg,
                                "--tls-engine", engine)
        self.server.create_policy("own-name", OWN_NAME)
        self.dev = self.server.create_device("dev-" + engine, policy="own-name", thing=True)
        self.name = "dev-" + engine

    def context(self, version=None, alpn=None, ciphers=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.server.root_ca)
        ctx.load_cert_chain(self.dev["cert"], self.dev["key"])
        if version:
            ctx.minimum_version = version
            ctx.maximum_version = version
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if ciphers:
            ctx.set_ciphers(ciphers)
        return ctx

    def mqtt(self, ctx, client_id=None, session=None, port=None):
        """(CONNACK return code or None, the TLS socket's facts)."""
        raw = socket.create_connection(("localhost", port or self.server.mqtt_port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        try:
            s.sendall(connect_packet(client_id or self.name))
            ack = read_exact(s, 4)
            facts = {"reused": s.session_reused, "version": s.version(), "cipher": s.cipher()[0],
                     "alpn": s.selected_alpn_protocol(), "session": s.session}
            return (ack[3] if len(ack) == 4 and ack[0] == 0x20 else None), facts
        finally:
            s.close()

    def stop(self):
        self.server.stop()


class TlsEngines(unittest.TestCase):
    def each(self, tickets):
        for engine in ("openssl", "gnutls"):
            e = Engine(engine, tickets)
            try:
                with open(os.path.join(e.server.data_dir, "endpoints.json")) as f:
                    endpoints = json.load(f)
                self.assertEqual(endpoints["mqtt"]["tls_engine"], engine)
                self.assertEqual(endpoints["mqtt"]["tls_session_tickets"], tickets)
                yield engine, e
            finally:
                e.stop()

    def test_resumption_with_tickets_keeps_the_identity(self):
        for engine, e in self.each(tickets=True):
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                with self.subTest(engine=engine, version=version):
                    ctx = e.context(version)
                    rc, first = e.mqtt(ctx)
                    self.assertEqual(rc, 0)
                    self.assertFalse(first["reused"])
                    rc, again = e.mqtt(ctx, session=first["session"])
                    self.assertEqual(rc, 0, "resumed connect refused")
                    self.assertTrue(again["reused"], "%s did not resume %s" % (engine, version))
                    # The identity after resumption: the policy still decides by the thing.
                    rc, other = e.mqtt(ctx, client_id="someone-else", session=again["session"])
                    self.assertTrue(other["reused"])
                    self.assertEqual(rc, 5, "a resumed session connected as another client id")

    def test_no_tickets_means_full_handshakes(self):
        for engine, e in self.each(tickets=False):
            ctx = e.context(ssl.TLSVersion.TLSv1_3)
            rc, first = e.mqtt(ctx)
            self.assertEqual(rc, 0)
            rc, again = e.mqtt(ctx, session=first["session"])
            self.assertEqual(rc, 0)
            self.assertFalse(again["reused"], engine)
            # TLS 1.2 session ids: OpenSSL's server cache resumes them; GnuTLS keeps no cache.
            ctx12 = e.context(ssl.TLSVersion.TLSv1_2)
            rc, first = e.mqtt(ctx12)
            rc, again = e.mqtt(ctx12, session=first["session"])
            self.assertEqual(rc, 0)
            self.assertEqual(again["reused"], engine == "openssl", engine)

    def test_alpn_versions_and_ciphers(self):
        for engine, e in self.each(tickets=False):
            with self.subTest(engine=engine):
                rc, f = e.mqtt(e.context(alpn=["mqtt", "x-amzn-mqtt-ca"]))
                self.assertEqual((rc, f["alpn"]), (0, "x-amzn-mqtt-ca"))
                rc, f = e.mqtt(e.context(alpn=["mqtt"]))
                self.assertEqual((rc, f["alpn"]), (0, "mqtt"))
                rc, f = e.mqtt(e.context(alpn=["h2"]))  # not ours: continues without ALPN
                self.assertEqual((rc, f["alpn"]), (0, None))
                alpn_port = e.server.alpn_port
                rc, f = e.mqtt(e.context(alpn=["x-amzn-mqtt-ca"]), port=alpn_port)
                self.assertEqual((rc, f["alpn"]), (0, "x-amzn-mqtt-ca"))
                for offer in (None, ["mqtt"]):
                    with self.assertRaises(ssl.SSLError) as refused:
                        e.mqtt(e.context(alpn=offer), port=alpn_port)
                    self.assertIn("NO APPLICATION PROTOCOL", str(refused.exception).upper())
                # Server preference: a TLS 1.2 client listing CBC first still gets AEAD.
                rc, f = e.mqtt(e.context(ssl.TLSVersion.TLSv1_2, ciphers=(
                    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")))
                self.assertEqual(rc, 0)
                self.assertIn("GCM", f["cipher"])
                self.assertEqual(f["version"], "TLSv1.2")
                rc, f = e.mqtt(e.context())
                self.assertEqual(f["version"], "TLSv1.3")
                ctx11 = e.context()
                ctx11.minimum_version = ssl.TLSVersion.TLSv1
                ctx11.maximum_version = ssl.TLSVersion.TLSv1_1
                ctx11.set_ciphers("DEFAULT:@SECLEVEL=0")
                with self.assertRaises((ssl.SSLError, ConnectionError)):
                    e.mqtt(ctx11)


    def test_idle_sockets_do_not_shut_the_accept_gate(self):
        # Past max_pending_handshakes new connections wait in the kernel's backlog, but only
        # while the I/O threads are busy: sockets that never send a ClientHello cost no CPU
        # and must not keep a real device out until the handshake timeout (10 s) frees them.
        for engine in ("openssl", "gnutls"):
            e = Engine(engine, True, "max_pending_handshakes = 4\n")
            idle = []
            try:
                for _ in range(40):
                    idle.append(socket.create_connection(("localhost", e.server.mqtt_port)))
                t0 = time.time()
                rc, _ = e.mqtt(e.context())
                took = time.time() - t0
                self.assertEqual(rc, 0, engine)
                self.assertLess(took, 3.0, "%s: a device waited behind idle sockets" % engine)
            finally:
                for s in idle:
                    s.close()
                e.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
