#!/usr/bin/python3
"""Interop tier, the MQTT broker: a real fleetkeyd, real clients (mosquitto_pub/sub and
python3-paho-mqtt), certificates made through the real aws CLI. Runs with Debian's
/usr/bin/python3 (paho and cryptography are Debian packages)."""

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd, make_fixture_certificate  # noqa: E402

SERVER = None
DEV = {}


def setUpModule():
    global SERVER
    # The 512 KiB/s per-connection limit would make the flood test below take minutes: it is
    # lifted here and tested on a server of its own (Limits.test_throughput_limit...).
    global CONFIG_DIR
    CONFIG_DIR = tempfile.mkdtemp(prefix="fk_broker_cfg_")
    config = os.path.join(CONFIG_DIR, "fleetkeyd.toml")
    with open(config, "w") as f:
        f.write("[mqtt]\nmax_bytes_per_second = 0\n")
    SERVER = Fleetkeyd(None, "--config", config)
    # This file tests the broker's MQTT behaviour; policies have their own (interop_03).
    SERVER.create_policy("all", ALLOW_ALL)
    for name in ("alpha", "beta", "gamma"):
        DEV[name] = SERVER.create_device(name, policy="all")


def tearDownModule():
    code = SERVER.stop()
    log = SERVER.read_log()
    SERVER.cleanup()
    subprocess.run(["rm", "-rf", CONFIG_DIR])
    if code != 0:
        sys.stderr.write("fleetkeyd exited with %s; its log ends with:\n%s\n" % (code, log[-4000:]))
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


class Client:
    """A paho client with events for what the tests wait on."""

    def __init__(self, client_id, device="alpha", version=mqtt.MQTTv311, clean=True,
                 cert=None, key=None, port=None, alpn=None, will=None, keepalive=60,
                 connect=True, session_expiry=None, cafile=None):
        self.version = version
        kwargs = {"client_id": client_id, "protocol": version}
        if version != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        ctx = ssl.create_default_context(cafile=cafile or SERVER.root_ca)
        ctx.load_cert_chain(cert or DEV[device]["cert"], key or DEV[device]["key"])
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.c.tls_set_context(ctx)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.rc = None
        self.flags = None
        self.connack_props = None
        self.disconnect_rc = None
        self.granted = None
        self.messages = []
        self.message_event = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        if will:
            self.c.will_set(*will)
        self.port = port or SERVER.mqtt_port
        self.keepalive = keepalive
        self.clean = clean
        self.session_expiry = session_expiry
        if connect:
            self.start()

    def start(self):
        props = None
        kwargs = {}
        if self.version == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
                kwargs["properties"] = props
        self.c.connect("localhost", self.port, keepalive=self.keepalive, **kwargs)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.rc = rc if isinstance(rc, int) else rc.value
        self.flags = flags
        self.connack_props = properties
        self.connected.set()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnect_rc = rc if isinstance(rc, int) else rc.value
        self.disconnected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.append(msg)
        self.message_event.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.granted = [g if isinstance(g, int) else g.value for g in granted]
        self.subscribed.set()

    def wait_connected(self, timeout=10):
        assert self.connected.wait(timeout), "no CONNACK"
        return self.rc

    def subscribe(self, topic, qos=1):
        self.subscribed.clear()
        self.c.subscribe(topic, qos)
        assert self.subscribed.wait(10), "no SUBACK"
        return self.granted

    def wait_messages(self, n, timeout=10):
        deadline = time.time() + timeout
        while len(self.messages) < n and time.time() < deadline:
            self.message_event.wait(0.1)
            self.message_event.clear()
        return self.messages

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def mosquitto(tool, *args, device="alpha", timeout=15):
    cmd = [tool, "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile", SERVER.root_ca,
           "--cert", DEV[device]["cert"], "--key", DEV[device]["key"], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class PublishSubscribe(unittest.TestCase):
    def test_mosquitto_clients_both_versions(self):
        for sub_v, pub_v in (("mqttv311", "mqttv5"), ("mqttv5", "mqttv311")):
            topic = "lockers/mq-%s/state" % sub_v
            sub = subprocess.Popen(
                ["mosquitto_sub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
                 SERVER.root_ca, "--cert", DEV["alpha"]["cert"], "--key", DEV["alpha"]["key"],
                 "-t", topic, "-C", "1", "-V", sub_v, "-q", "1", "-i", "sub-" + sub_v],
                stdout=subprocess.PIPE, text=True)
            self.assertTrue(SERVER.wait_log("client=sub-" + sub_v), "subscriber did not connect")
            time.sleep(0.2)
            r = mosquitto("mosquitto_pub", "-t", topic, "-m", "open", "-q", "1", "-V", pub_v,
                          "-i", "pub-" + pub_v, device="beta")
            self.assertEqual(r.returncode, 0, r.stderr)
            out, _ = sub.communicate(timeout=10)
            self.assertEqual(out.strip(), "open")

    def test_paho_qos1_and_granted_qos(self):
        sub = Client("paho-sub", "alpha")
        self.assertEqual(sub.wait_connected(), 0)
        self.assertEqual(sub.subscribe("things/paho/#", 1), [1])
        self.assertEqual(sub.subscribe("things/paho2/x", 0), [0])
        pub = Client("paho-pub", "beta", version=mqtt.MQTTv5)
        self.assertEqual(pub.wait_connected(), 0)
        # AWS: Maximum QoS 1, retain available, topic alias maximum 8.
        self.assertEqual(pub.connack_props.MaximumQoS, 1)
        self.assertEqual(pub.connack_props.TopicAliasMaximum, 8)
        info = pub.c.publish("things/paho/a/b", b"x" * 1000, qos=1)
        info.wait_for_publish(10)
        self.assertTrue(info.is_published())
        msgs = sub.wait_messages(1)
        self.assertEqual(msgs[0].topic, "things/paho/a/b")
        self.assertEqual(msgs[0].qos, 1)
        self.assertEqual(len(msgs[0].payload), 1000)
        # AWS: "#" does not match its parent level.
        pub.c.publish("things/paho", b"parent", qos=1).wait_for_publish(10)
        time.sleep(0.3)
        self.assertEqual(len(sub.messages), 1)
        sub.stop()
        pub.stop()

    def test_shared_subscription_delivers_each_message_once(self):
        w1 = Client("share-w1", "alpha", version=mqtt.MQTTv5)
        w2 = Client("share-w2", "beta")  # AWS offers shared subscriptions on 3.1.1 too
        watcher = Client("share-all", "gamma")
        for c in (w1, w2, watcher):
            self.assertEqual(c.wait_connected(), 0)
        self.assertEqual(w1.connack_props.SharedSubscriptionAvailable, 1)
        self.assertEqual(w1.subscribe("$share/workers/jobs/+", 1), [1])
        self.assertEqual(w2.subscribe("$share/workers/jobs/+", 1), [1])
        watcher.subscribe("jobs/+", 1)
        pub = Client("share-pub", "alpha")
        pub.wait_connected()
        for i in range(10):
            pub.c.publish("jobs/%d" % i, ("job%d" % i).encode(), qos=1).wait_for_publish(10)
        watcher.wait_messages(10)
        deadline = time.time() + 5
        while len(w1.messages) + len(w2.messages) < 10 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        got = sorted(m.payload for m in w1.messages + w2.messages)
        self.assertEqual(got, sorted(("job%d" % i).encode() for i in range(10)))  # each once
        self.assertGreater(len(w1.messages), 0)
        self.assertGreater(len(w2.messages), 0)
        self.assertEqual(len(watcher.messages), 10)  # ordinary subscribers still get all
        # A malformed shared filter is refused.
        self.assertEqual(w1.subscribe("$share//jobs", 1), [0x8F])
        for c in (w1, w2, watcher, pub):
            c.stop()

    def test_retained_exact_filter_only(self):
        pub = Client("ret-pub", "alpha", version=mqtt.MQTTv5)
        pub.wait_connected()
        pub.c.publish("ret/one", b"kept", qos=1, retain=True).wait_for_publish(10)
        exact = Client("ret-exact", "beta")
        exact.wait_connected()
        exact.subscribe("ret/one", 1)
        msgs = exact.wait_messages(1, timeout=5)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0].payload, b"kept")
        self.assertTrue(msgs[0].retain)
        wild = Client("ret-wild", "beta")
        wild.wait_connected()
        wild.subscribe("ret/#", 1)
        time.sleep(0.5)
        self.assertEqual(wild.messages, [])  # AWS: no retained delivery to wildcards
        # A live forward has RETAIN=0; an empty retained payload deletes.
        pub.c.publish("ret/one", b"", qos=1, retain=True).wait_for_publish(10)
        later = Client("ret-later", "gamma")
        later.wait_connected()
        later.subscribe("ret/one", 1)
        time.sleep(0.5)
        self.assertEqual(later.messages, [])
        for c in (pub, exact, wild, later):
            c.stop()

    def test_last_will_on_abnormal_disconnect(self):
        watcher = Client("will-watch", "alpha")
        watcher.wait_connected()
        watcher.subscribe("wills/+", 1)
        doomed = Client("will-doomed", "beta", will=("wills/doomed", b"gone", 1, False))
        doomed.wait_connected()
        doomed.c.loop_stop()
        doomed.c.socket().close()  # no DISCONNECT: the will must be published
        msgs = watcher.wait_messages(1)
        self.assertEqual(msgs[0].payload, b"gone")
        polite = Client("will-polite", "beta", will=("wills/polite", b"should not", 1, False))
        polite.wait_connected()
        polite.stop()
        time.sleep(0.5)
        self.assertEqual([m.topic for m in watcher.messages], ["wills/doomed"])
        watcher.stop()

    def test_lifecycle_events(self):
        watcher = Client("lc-watch", "alpha")
        watcher.wait_connected()
        watcher.subscribe("$aws/events/presence/+/lc-target", 1)
        target = Client("lc-target", "beta")
        target.wait_connected()
        target.stop()
        msgs = watcher.wait_messages(2)
        events = [json.loads(m.payload) for m in msgs]
        self.assertEqual([e["eventType"] for e in events], ["connected", "disconnected"])
        self.assertEqual(events[0]["clientId"], "lc-target")
        self.assertEqual(events[0]["principalIdentifier"], DEV["beta"]["id"])
        self.assertTrue(events[1]["clientInitiatedDisconnect"])
        self.assertEqual(events[1]["disconnectReason"], "CLIENT_INITIATED_DISCONNECT")
        watcher.stop()


class Sessions(unittest.TestCase):
    def test_takeover_drops_the_older_connection(self):
        # MQTT 5: the older connection gets DISCONNECT 0x8E (Session taken over).
        first = subprocess.Popen(
            ["mosquitto_sub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
             SERVER.root_ca, "--cert", DEV["alpha"]["cert"], "--key", DEV["alpha"]["key"],
             "-t", "takeover/x", "-i", "same-id", "-V", "mqttv5", "-d"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.assertTrue(SERVER.wait_log("client=same-id"))
        second = Client("same-id", "beta", version=mqtt.MQTTv5)
        self.assertEqual(second.wait_connected(), 0)
        out, _ = first.communicate(timeout=10)
        self.assertIn("Received DISCONNECT (142)", out)
        self.assertTrue(SERVER.wait_log("client id taken over"))
        second.stop()
        # MQTT 3.1.1: the older connection is closed.
        old = Client("same-311", "alpha")
        self.assertEqual(old.wait_connected(), 0)
        old.c.reconnect_delay_set(60, 60)
        new = Client("same-311", "beta")
        self.assertEqual(new.wait_connected(), 0)
        self.assertTrue(old.disconnected.wait(5))
        new.stop()
        old.c.loop_stop()

    def test_persistent_session_resumes_with_queued_qos1(self):
        a = Client("persist-a", "alpha", clean=False)
        a.wait_connected()
        a.subscribe("persist/a", 1)
        a.stop()
        time.sleep(0.3)
        pub = Client("persist-pub", "beta")
        pub.wait_connected()
        for i in range(3):
            pub.c.publish("persist/a", ("m%d" % i).encode(), qos=1).wait_for_publish(10)
        pub.c.publish("persist/a", b"qos0-dropped", qos=0).wait_for_publish(10)
        pub.stop()
        b = Client("persist-a", "alpha", clean=False)
        b.wait_connected()
        self.assertEqual(b.flags["session present"], 1)
        msgs = b.wait_messages(3)
        self.assertEqual([m.payload for m in msgs], [b"m0", b"m1", b"m2"])
        b.stop()
        # A clean session starts empty.
        c = Client("persist-a", "alpha", clean=True)
        c.wait_connected()
        self.assertEqual(c.flags["session present"], 0)
        c.stop()

    def test_keep_alive_is_clamped(self):
        c = Client("ka-low", "alpha", version=mqtt.MQTTv5, keepalive=5)
        c.wait_connected()
        self.assertEqual(c.connack_props.ServerKeepAlive, 30)
        c.stop()


class Certificates(unittest.TestCase):
    def fixture(self, name, **kw):
        return make_fixture_certificate(SERVER.ca_dir, os.path.join(SERVER.tmp, "pki"), name, **kw)

    def test_unregistered_certificate_gets_not_authorized(self):
        cert, key = self.fixture("unregistered")
        v5 = Client("unreg5", cert=cert, key=key, version=mqtt.MQTTv5)
        self.assertEqual(v5.wait_connected(), 0x87)
        v3 = Client("unreg3", cert=cert, key=key)
        self.assertEqual(v3.wait_connected(), 5)
        self.assertTrue(SERVER.wait_log("is not registered"))
        v5.c.loop_stop()
        v3.c.loop_stop()

    def test_inactive_and_revoked_certificates_refused(self):
        for status in ("INACTIVE", "REVOKED"):
            dev = SERVER.create_device("st-" + status, policy="all")
            SERVER.aws("update-certificate", "--certificate-id", dev["id"], "--new-status", status)
            c = Client("st-" + status, cert=dev["cert"], key=dev["key"], version=mqtt.MQTTv5)
            self.assertEqual(c.wait_connected(), 0x87, status)
            self.assertTrue(SERVER.wait_log("certificate %s is %s" % (dev["id"], status)))
            c.c.loop_stop()

    def test_tls_refusals_name_the_reason(self):
        import datetime
        now = datetime.datetime.utcnow()
        cases = {
            "certificate has expired": self.fixture(
                "expired", not_before=now - datetime.timedelta(days=10),
                not_after=now - datetime.timedelta(days=1)),
            "certificate is not yet valid": self.fixture(
                "future", not_before=now + datetime.timedelta(days=1),
                not_after=now + datetime.timedelta(days=10)),
            "unable to get local issuer certificate": self.fixture("foreign", foreign_ca=True),
        }
        for reason, (cert, key) in cases.items():
            r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port),
                                "--cafile", SERVER.root_ca, "--cert", cert, "--key", key,
                                "-t", "x", "-m", "y"], capture_output=True, text=True, timeout=15)
            self.assertNotEqual(r.returncode, 0, reason)
            self.assertTrue(SERVER.wait_log(reason), "log lacks: " + reason)
        # No client certificate at all.
        r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port),
                            "--cafile", SERVER.root_ca, "-t", "x", "-m", "y"],
                           capture_output=True, text=True, timeout=15)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(SERVER.wait_log("peer did not return a certificate"))

    def test_revocation_cuts_a_live_session_within_a_second(self):
        dev = SERVER.create_device("to-revoke", policy="all")
        c = Client("to-revoke", cert=dev["cert"], key=dev["key"], version=mqtt.MQTTv5)
        self.assertEqual(c.wait_connected(), 0)
        c.c.reconnect_delay_set(60, 60)
        start = time.time()
        SERVER.aws("update-certificate", "--certificate-id", dev["id"], "--new-status", "REVOKED")
        acked = time.time()
        self.assertTrue(c.disconnected.wait(5), "session was not cut")
        cut = time.time()
        delay_after_ack = cut - acked
        print("\nrevocation: session cut %.3f s after the API answered (%.3f s after the CLI "
              "started)" % (delay_after_ack, cut - start), file=sys.stderr)
        self.assertLess(delay_after_ack, 1.0)
        c.c.loop_stop()
        again = Client("to-revoke-2", cert=dev["cert"], key=dev["key"], version=mqtt.MQTTv5)
        self.assertEqual(again.wait_connected(), 0x87)
        again.c.loop_stop()

    def test_alpn_port_requires_x_amzn_mqtt_ca(self):
        ok = Client("alpn-ok", "alpha", port=SERVER.alpn_port, alpn=["x-amzn-mqtt-ca"])
        self.assertEqual(ok.wait_connected(), 0)
        ok.stop()
        # The official SDK offers the ALPN on 8883 too: accepted.
        also = Client("alpn-8883", "alpha", alpn=["x-amzn-mqtt-ca"])
        self.assertEqual(also.wait_connected(), 0)
        also.stop()
        r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.alpn_port),
                            "--cafile", SERVER.root_ca, "--cert", DEV["alpha"]["cert"],
                            "--key", DEV["alpha"]["key"], "-t", "x", "-m", "y"],
                           capture_output=True, text=True, timeout=15)
        self.assertNotEqual(r.returncode, 0)


class Shutdown(unittest.TestCase):
    def test_sigterm_with_connected_clients(self):
        global SERVER
        own = Fleetkeyd()
        saved = SERVER
        try:
            SERVER = own  # the Client helper talks to SERVER
            own.create_policy("all", ALLOW_ALL)
            dev = own.create_device("shutdown", policy="all")
            c = Client("shutdown-5", cert=dev["cert"], key=dev["key"], version=mqtt.MQTTv5)
            self.assertEqual(c.wait_connected(), 0)
            c.c.reconnect_delay_set(60, 60)
            start = time.time()
            self.assertEqual(own.stop(), 0)  # SIGTERM; must exit cleanly, and soon
            self.assertLess(time.time() - start, 10)
            self.assertTrue(c.disconnected.wait(5))
            c.c.loop_stop()
        finally:
            SERVER = saved
            own.cleanup()


class Limits(unittest.TestCase):
    def test_topic_with_more_than_seven_slashes(self):
        c = Client("deep", "alpha", version=mqtt.MQTTv5)
        c.wait_connected()
        c.c.reconnect_delay_set(60, 60)
        c.c.publish("a/b/c/d/e/f/g/h/i", b"x", qos=1)
        self.assertTrue(c.disconnected.wait(5))
        self.assertEqual(c.disconnect_rc, 0x90)  # Topic Name invalid
        c.c.loop_stop()
        # $aws/rules/<rule>/ does not count.
        self.assertTrue(SERVER.wait_log("topic has more than 7 slashes"))

    def test_subscriber_vanishing_mid_flood_does_not_hurt_the_server(self):
        sub = Client("flood-sub", "alpha")
        sub.wait_connected()
        sub.subscribe("flood/x", 0)
        pub = Client("flood-pub", "beta")
        pub.wait_connected()
        for _ in range(2000):
            pub.c.publish("flood/x", b"z" * 10000, qos=0)
        sub.c.loop_stop()
        sub.c.socket().close()  # gone while the server is still writing to it
        for _ in range(2000):
            pub.c.publish("flood/x", b"z" * 10000, qos=0)
        pub.c.publish("flood/x", b"last", qos=1).wait_for_publish(10)
        pub.stop()
        after = Client("after-flood", "gamma")
        self.assertEqual(after.wait_connected(), 0)
        after.stop()

    def test_throughput_limit_delays_but_delivers_everything(self):
        # A server with AWS's default 512 KiB/s per connection: 1.5 MiB from one publisher
        # spans at least three one-second windows, so it cannot take less than a second, and
        # every message arrives (delayed, not dropped).
        server = Fleetkeyd()
        try:
            server.create_policy("all", ALLOW_ALL)
            dev = server.create_device("limited", policy="all")
            sub = Client("tp-sub", cert=dev["cert"], key=dev["key"], port=server.mqtt_port,
                         cafile=server.root_ca)
            sub.wait_connected()
            sub.subscribe("tp/x", 1)
            pub = Client("tp-pub", cert=dev["cert"], key=dev["key"], port=server.mqtt_port,
                         cafile=server.root_ca)
            pub.wait_connected()
            payload = b"p" * (100 * 1024)
            start = time.time()
            infos = [pub.c.publish("tp/x", payload, qos=1) for _ in range(15)]
            for info in infos:
                info.wait_for_publish(30)
            elapsed = time.time() - start
            self.assertEqual(len(sub.wait_messages(15, timeout=30)), 15)
            print("throughput test: %.2f s" % elapsed, file=sys.stderr)
            self.assertGreaterEqual(elapsed, 1.0)
            self.assertTrue(server.wait_log("broker.bytes_throttled"))
            pub.stop()
            sub.stop()
        finally:
            server.stop()
            server.cleanup()

    def test_client_id_longer_than_128_bytes(self):
        c = Client("x" * 129, "alpha", version=mqtt.MQTTv5)
        self.assertEqual(c.wait_connected(), 0x85)
        c.c.loop_stop()

    def test_malformed_packet_closes_only_that_connection(self):
        ctx = ssl.create_default_context(cafile=SERVER.root_ca)
        ctx.load_cert_chain(DEV["gamma"]["cert"], DEV["gamma"]["key"])
        raw = ctx.wrap_socket(socket.create_connection(("localhost", SERVER.mqtt_port)),
                              server_hostname="localhost")
        raw.sendall(bytes.fromhex("100c00044d5154540403003c0000"))  # reserved flag set
        raw.settimeout(5)
        self.assertEqual(raw.recv(10), b"")  # closed
        raw.close()
        self.assertTrue(SERVER.wait_log("reserved CONNECT flag set"))
        healthy = Client("after-garbage", "gamma")
        self.assertEqual(healthy.wait_connected(), 0)
        healthy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
