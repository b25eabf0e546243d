"""interop_03: IoT policies enforced by a real fleetkeyd on real MQTT clients (paho, run by
/usr/bin/python3) and managed with the real aws CLI: the article's thing-scoped device policy,
the restricted claim policy, and a policy detached from a live session."""

import json
import os
import ssl
import sys
import threading
import time
import unittest

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd  # noqa: E402

SERVER = None
ARN = None  # "arn:aws:iot:<region>:<account>:"

DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": "arn:aws:iot:*:*:topicfilter/things/${iot:Connection.Thing.ThingName}/*"},
    ],
}

# The article's claim policy: connect, and the provisioning topics of one template only.
CLAIM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": ["arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*",
                      "arn:aws:iot:*:*:topic/$aws/provisioning-templates/LockerTemplate/provision/*"]},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*",
                      "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/LockerTemplate/provision/*"]},
    ],
}


def setUpModule():
    global SERVER, ARN
    SERVER = Fleetkeyd()
    SERVER.create_policy("device", DEVICE_POLICY)
    SERVER.create_policy("claim", CLAIM_POLICY)
    SERVER.create_policy("admin", ALLOW_ALL)
    ARN = "arn:aws:iot:%s:%s:" % (SERVER.endpoints["region"], SERVER.endpoints["account_id"])


def tearDownModule():
    code = SERVER.stop()
    SERVER.cleanup()
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


class Client:
    def __init__(self, client_id, dev, version=mqtt.MQTTv311):
        self.c = mqtt.Client(client_id=client_id, protocol=version)
        ctx = ssl.create_default_context(cafile=SERVER.root_ca)
        ctx.load_cert_chain(dev["cert"], dev["key"])
        self.c.tls_set_context(ctx)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subacks = {}
        self.suback_event = threading.Event()
        self.messages = []
        self.rc = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, rc, *a: self.disconnected.set()
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.c.connect_async("localhost", SERVER.mqtt_port, keepalive=60)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc, *a):
        self.rc = rc if isinstance(rc, int) else rc.value
        self.connected.set()

    def _on_subscribe(self, c, u, mid, granted, *a):
        self.subacks[mid] = [g if isinstance(g, int) else g.value for g in granted]
        self.suback_event.set()

    def wait_connected(self):
        assert self.connected.wait(10), "no CONNACK"
        return self.rc

    def subscribe(self, topic, qos=1):
        self.suback_event.clear()
        _, mid = self.c.subscribe(topic, qos)
        deadline = time.time() + 5
        while mid not in self.subacks and time.time() < deadline:
            if self.disconnected.is_set():
                return None  # MQTT 3.1.1: AWS closes the connection
            time.sleep(0.02)
        return self.subacks.get(mid)

    def publish(self, topic, payload, qos=1):
        return self.c.publish(topic, payload, qos=qos)

    def received(self, topic, payload, timeout=3):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (topic, payload) in self.messages:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def device(name):
    return SERVER.create_device(name, policy="device", thing=True)


class DevicePolicy(unittest.TestCase):
    def test_devices_reach_only_their_own_topics(self):
        a, b = device("locker-201"), device("locker-202")
        admin = Client("admin-1", SERVER.create_device("admin-1", policy="admin"))
        self.assertEqual(admin.wait_connected(), 0)
        ca = Client("locker-201", a, version=mqtt.MQTTv5)
        cb = Client("locker-202", b, version=mqtt.MQTTv5)
        self.assertEqual(ca.wait_connected(), 0)
        self.assertEqual(cb.wait_connected(), 0)
        # Own topics: subscribe and receive.
        self.assertEqual(ca.subscribe("things/locker-201/commands"), [1])
        self.assertEqual(cb.subscribe("things/locker-202/commands"), [1])
        admin.publish("things/locker-201/commands", b"open").wait_for_publish()
        self.assertTrue(ca.received("things/locker-201/commands", b"open"))
        # The other's topics and wildcards over all lockers: SUBACK 0x87 (MQTT 5).
        self.assertEqual(ca.subscribe("things/locker-202/commands"), [0x87])
        self.assertEqual(ca.subscribe("things/+/commands"), [0x87])
        # A publishes on B's commands: refused, B receives nothing.
        ca.publish("things/locker-202/commands", b"forged").wait_for_publish()
        self.assertFalse(cb.received("things/locker-202/commands", b"forged", timeout=1))
        self.assertTrue(SERVER.wait_log("iot:Publish on topic/things/locker-202/commands"))
        # A publishes on its own state topic: the admin (subscribed to all) receives it.
        self.assertEqual(admin.subscribe("things/#"), [1])
        ca.publish("things/locker-201/state", b"closed").wait_for_publish()
        self.assertTrue(admin.received("things/locker-201/state", b"closed"))
        for c in (ca, cb, admin):
            c.stop()

    def test_mqtt311_refusals_close_the_connection(self):
        a = device("locker-203")
        c = Client("locker-203", a)
        self.assertEqual(c.wait_connected(), 0)
        c.publish("things/locker-999/state", b"x", qos=0)
        self.assertTrue(c.disconnected.wait(5), "3.1.1 publish refusal must close the connection")
        c.c.loop_stop()
        c2 = Client("locker-203", a)
        self.assertEqual(c2.wait_connected(), 0)
        self.assertIsNone(c2.subscribe("things/locker-999/#"))
        self.assertTrue(c2.disconnected.is_set())
        c2.c.loop_stop()

    def test_a_certificate_cannot_connect_as_another_thing(self):
        a = device("locker-204")
        device("locker-205")
        v5 = Client("locker-205", a, version=mqtt.MQTTv5)  # A's certificate, B's client id
        self.assertEqual(v5.wait_connected(), 0x87)
        v5.c.loop_stop()
        v3 = Client("locker-205", a)
        self.assertEqual(v3.wait_connected(), 5)
        v3.c.loop_stop()
        self.assertTrue(SERVER.wait_log("iot:Connect on client/locker-205 for certificate " + a["id"]))

    def test_no_policy_no_connect(self):
        bare = SERVER.create_device("bare")
        c = Client("bare", bare, version=mqtt.MQTTv5)
        self.assertEqual(c.wait_connected(), 0x87)
        c.c.loop_stop()
        self.assertTrue(SERVER.wait_log("no statement allowed it"))


class ClaimPolicy(unittest.TestCase):
    def test_claim_reaches_only_the_provisioning_topics(self):
        claim = SERVER.create_device("claim", policy="claim")
        c = Client("factory-claim-1", claim, version=mqtt.MQTTv5)
        self.assertEqual(c.wait_connected(), 0)
        self.assertEqual(c.subscribe("$aws/certificates/create-from-csr/json/accepted"), [1])
        self.assertEqual(c.subscribe("$aws/certificates/create-from-csr/json/rejected"), [1])
        self.assertEqual(
            c.subscribe("$aws/provisioning-templates/LockerTemplate/provision/json/accepted"), [1])
        # Another template, device topics, everything: refused.
        self.assertEqual(
            c.subscribe("$aws/provisioning-templates/OtherTemplate/provision/json/accepted"), [0x87])
        self.assertEqual(c.subscribe("things/locker-201/commands"), [0x87])
        self.assertEqual(c.subscribe("#"), [0x87])
        c.stop()
        # In MQTT 3.1.1 a publish outside the provisioning topics closes the connection.
        c3 = Client("factory-claim-2", claim)
        self.assertEqual(c3.wait_connected(), 0)
        c3.publish("things/locker-201/state", b"x", qos=1)
        self.assertTrue(c3.disconnected.wait(5))
        c3.c.loop_stop()


class LiveChanges(unittest.TestCase):
    def test_detaching_the_policy_takes_effect_on_a_live_session(self):
        a = device("locker-206")
        admin = Client("admin-2", SERVER.create_device("admin-2", policy="admin"))
        self.assertEqual(admin.wait_connected(), 0)
        c = Client("locker-206", a, version=mqtt.MQTTv5)
        self.assertEqual(c.wait_connected(), 0)
        self.assertEqual(c.subscribe("things/locker-206/commands"), [1])
        admin.publish("things/locker-206/commands", b"before").wait_for_publish()
        self.assertTrue(c.received("things/locker-206/commands", b"before"))
        SERVER.aws("detach-policy", "--policy-name", "device", "--target", a["arn"])
        time.sleep(1.0)  # the promise: under a second
        # The existing subscription no longer receives (iot:Receive on every delivery).
        admin.publish("things/locker-206/commands", b"after").wait_for_publish()
        self.assertFalse(c.received("things/locker-206/commands", b"after", timeout=1))
        self.assertEqual(c.subscribe("things/locker-206/other"), [0x87])
        # Attached again: allowed again, same session.
        SERVER.aws("attach-policy", "--policy-name", "device", "--target", a["arn"])
        time.sleep(1.0)
        admin.publish("things/locker-206/commands", b"again").wait_for_publish()
        self.assertTrue(c.received("things/locker-206/commands", b"again"))
        c.stop()
        admin.stop()


class ApiOnTheSameEngine(unittest.TestCase):
    def test_test_authorization_and_effective_policies(self):
        a = device("locker-207")
        out = json.loads(SERVER.aws(
            "test-authorization", "--principal", a["arn"], "--client-id", "locker-207",
            "--auth-infos",
            json.dumps([{"actionType": "PUBLISH", "resources": [ARN + "topic/things/locker-207/state"]},
                        {"actionType": "PUBLISH", "resources": [ARN + "topic/things/locker-208/state"]},
                        {"actionType": "CONNECT", "resources": [ARN + "client/locker-207"]}])).stdout)
        decisions = [r["authDecision"] for r in out["authResults"]]
        self.assertEqual(decisions, ["ALLOWED", "IMPLICIT_DENY", "ALLOWED"])
        self.assertEqual(out["authResults"][0]["allowed"]["policies"][0]["policyName"], "device")
        # Without the client id there is no thing: the thing-scoped resources cannot resolve.
        out = json.loads(SERVER.aws(
            "test-authorization", "--principal", a["arn"], "--auth-infos",
            json.dumps([{"actionType": "PUBLISH",
                         "resources": [ARN + "topic/things/locker-207/state"]}])).stdout)
        self.assertEqual(out["authResults"][0]["authDecision"], "IMPLICIT_DENY")
        self.assertIn("iot:Connection.Thing.ThingName", out["authResults"][0]["missingContextValues"])
        eff = json.loads(SERVER.aws("get-effective-policies", "--principal", a["arn"],
                                    "--thing-name", "locker-207").stdout)
        self.assertEqual([p["policyName"] for p in eff["effectivePolicies"]], ["device"])
        self.assertIn("${iot:Connection.Thing.ThingName}", eff["effectivePolicies"][0]["policyDocument"])

    def test_malformed_policy_is_refused_with_the_reason(self):
        r = SERVER.aws("create-policy", "--policy-name", "bad", "--policy-document",
                       json.dumps({"Version": "2012-10-17",
                                   "Statement": [{"Effect": "Allow", "Action": "iot:Publsh",
                                                  "Resource": "*"}]}), check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("MalformedPolicyException", r.stderr)
        self.assertIn("Statement[0].Action: unknown action 'iot:Publsh'", r.stderr)
        r = SERVER.aws("get-policy", "--policy-name", "bad", check=False)
        self.assertIn("ResourceNotFoundException", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
