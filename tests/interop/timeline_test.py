"""Issue 20, parts 1 and 2: the device timeline and `fleetkey diagnose`, table-driven. Each row
makes one refusal (or disconnect) happen with real clients (mosquitto_pub, paho) against a real
fleetkeyd set up with the aws CLI, then checks the timeline entry that names its cause
(`fleetkey timeline --jsonl`) and the diagnose verdict, summary and exit code
(`fleetkey diagnose`, `--output json`). Bad queries are refused; no secret is in any output."""
import hashlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import datetime

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import (Fleetkeyd, cli_env, make_fixture_certificate, signed_call,  # noqa: E402
                       write_config)

FLEETKEY = os.path.abspath(os.environ.get("FLEETKEY", "build/bin/fleetkey"))
SERVER = None
TMP = None
ACCESS_KEY = None

# Devices connect as their thing (AWS's usual policy).
DEVICE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive"],
     "Resource": "*"}]}
# Allows a connect only as "someone-else".
NARROW_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "OnlySomeoneElse", "Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/someone-else"}]}
CLAIM_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive", "iot:Subscribe"],
     "Resource": "*"}]}
TEMPLATE = {
    "Parameters": {"SerialNumber": {"Type": "String"},
                   "AWS::IoT::Certificate::Id": {"Type": "String"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Fn::Join": ["", ["locker-", {"Ref": "SerialNumber"}]]}}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                       "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device"}}}}


def setUpModule():
    global SERVER, TMP, ACCESS_KEY
    TMP = tempfile.mkdtemp(prefix="fk_timeline_")
    config = write_config(os.path.join(TMP, "fleetkeyd.toml"),
                          "[provisioning]\nmax_requests_per_second = 1000\n"
                          "max_requests_per_client_per_second = 1000\n", "timeline")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", config)
    SERVER.create_policy("device", DEVICE_POLICY)
    SERVER.create_policy("narrow", NARROW_POLICY)
    SERVER.create_policy("claim", CLAIM_POLICY)
    SERVER.aws("create-provisioning-template", "--template-name", "Lockers", "--template-body",
               json.dumps(TEMPLATE), "--provisioning-role-arn",
               "arn:aws:iam::123456789012:role/provisioning", "--enabled")
    with open(SERVER.endpoints["credentials_file"]) as f:
        ACCESS_KEY = [l.split("=", 1)[1].strip() for l in f
                      if l.strip().startswith("aws_access_key_id")][0]


def tearDownModule():
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def fleetkey(*args):
    return subprocess.run([FLEETKEY, *args], env=cli_env(SERVER.data_dir), cwd=TMP,
                          capture_output=True, text=True, timeout=60)


def timeline(name):
    r = fleetkey("timeline", name, "--jsonl")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def diagnose(name, *extra):
    r = fleetkey("diagnose", name, "--output", "json", *extra)
    text = fleetkey("diagnose", name, *extra)
    assert text.returncode == r.returncode, (text.returncode, r.returncode)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), text.stdout + r.stderr


def mosquitto(cert, key, client_id):
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port),
                        "--cafile", SERVER.root_ca, "--cert", cert, "--key", key, "-i", client_id,
                        "-t", "lockers/%s/state" % client_id, "-m", "up", "-q", "1"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode


class Paho:
    """A connected paho client that records how its connection ended."""

    def __init__(self, cert, key, client_id):
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)
        ctx = ssl.create_default_context(cafile=SERVER.root_ca)
        ctx.load_cert_chain(cert, key)
        self.c.tls_set_context(ctx)
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.replies = []
        self.lock = threading.Condition()
        self.c.on_connect = lambda c, u, f, rc, *a: self.connected.set()
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(60, 120)  # no reconnect within a test
        self.c.connect_async("localhost", SERVER.mqtt_port, keepalive=60)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_message(self, c, u, m):
        with self.lock:
            self.replies.append((m.topic, m.payload))
            self.lock.notify_all()

    def request(self, topic, payload):
        self.c.subscribe(topic + "/+", 1)
        time.sleep(0.3)
        self.c.publish(topic, payload, qos=1)
        deadline = time.time() + 15
        with self.lock:
            while time.time() < deadline:
                for t, p in self.replies:
                    if t in (topic + "/accepted", topic + "/rejected"):
                        return t.endswith("/accepted"), json.loads(p)
                self.lock.wait(0.1)
        raise AssertionError("no reply on " + topic)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def device(name, policy="device", thing=True):
    return SERVER.create_device(name, policy=policy, thing=thing)


def certificate_id_of(cert_path):
    with open(cert_path, "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def wait_for(fn, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(0.1)


def find(events, event, reason=None):
    return [e for e in events if e["event"] == event and (reason is None or e["reason"] == reason)]


def csr(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(
            key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------- the rows
# Each makes its case happen for a fresh device and returns (subject, diagnose args).

def inactive():
    d = device("tl-inactive")
    assert mosquitto(d["cert"], d["key"], "tl-inactive") == 0
    SERVER.aws("update-certificate", "--certificate-id", d["id"], "--new-status", "INACTIVE")
    assert mosquitto(d["cert"], d["key"], "tl-inactive") != 0
    return "tl-inactive", ()


def revoked():
    d = device("tl-revoked")
    SERVER.aws("update-certificate", "--certificate-id", d["id"], "--new-status", "REVOKED")
    assert mosquitto(d["cert"], d["key"], "tl-revoked") != 0
    return "tl-revoked", ()


def unknown_certificate():
    cert, key = make_fixture_certificate(SERVER.ca_dir, os.path.join(TMP, "unknown"), "tl-unknown")
    assert mosquitto(cert, key, "tl-unknown") != 0
    return certificate_id_of(cert), ()


def policy_denied():
    d = device("tl-narrow", policy="narrow")
    assert mosquitto(d["cert"], d["key"], "tl-narrow") != 0
    return "tl-narrow", ()


def expired():
    now = datetime.datetime.utcnow()
    cert, key = make_fixture_certificate(SERVER.ca_dir, os.path.join(TMP, "expired"), "tl-expired",
                                         not_before=now - datetime.timedelta(days=10),
                                         not_after=now - datetime.timedelta(days=1))
    with open(cert) as f:
        reg = json.loads(SERVER.aws("register-certificate-without-ca", "--certificate-pem",
                                    f.read(), "--status", "ACTIVE").stdout)
    SERVER.aws("create-thing", "--thing-name", "tl-expired")
    SERVER.aws("attach-thing-principal", "--thing-name", "tl-expired", "--principal",
               reg["certificateArn"])
    assert mosquitto(cert, key, "tl-expired") != 0
    return "tl-expired", ()


def takeover():
    d = device("tl-takeover")
    first = Paho(d["cert"], d["key"], "tl-takeover")
    assert mosquitto(d["cert"], d["key"], "tl-takeover") == 0
    assert first.gone.wait(5), "the first connection was not taken over"
    first.stop()
    return "tl-takeover", ()


def revoked_while_connected():
    d = device("tl-cut")
    live = Paho(d["cert"], d["key"], "tl-cut")
    SERVER.aws("update-certificate", "--certificate-id", d["id"], "--new-status", "REVOKED")
    assert live.gone.wait(5), "the revoked certificate's session was not cut"
    live.stop()
    return "tl-cut", ()


def connected_now():
    d = device("tl-online")
    connected_now.client = Paho(d["cert"], d["key"], "tl-online")
    return "tl-online", ()


def client_disconnect():
    d = device("tl-bye")
    assert mosquitto(d["cert"], d["key"], "tl-bye") == 0
    return "tl-bye", ()


def provision(serial, template="Lockers", csr_pem=None, token=None):
    """A device of its own claim (client id serial-<serial>): CreateCertificateFromCsr (unless
    `token` is given), then RegisterThing with `template`. Returns the last (accepted, reply)."""
    claim = SERVER.create_device("claim-" + serial, policy="claim")
    c = Paho(claim["cert"], claim["key"], "serial-" + serial)
    try:
        if token is None:
            ok, made = c.request("$aws/certificates/create-from-csr/json",
                                 json.dumps({"certificateSigningRequest": csr_pem or csr(serial)}))
            if not ok or template is None:
                return ok, made
            token = made["certificateOwnershipToken"]
        return c.request("$aws/provisioning-templates/%s/provision/json" % template,
                         json.dumps({"certificateOwnershipToken": token,
                                     "parameters": {"SerialNumber": serial}}))
    finally:
        c.stop()


def rejected_with(code, *args, **kwargs):
    ok, r = provision(*args, **kwargs)
    assert not ok and r["errorCode"] == code, r


def provisioning_bad_csr():
    rejected_with("InvalidCertificateSigningRequest", "7001", template=None,
                  csr_pem="-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n"
                          "-----END CERTIFICATE REQUEST-----\n")
    return "serial-7001", ()


def provisioning_missing_template():
    rejected_with("ResourceNotFound", "7002", template="NoSuchTemplate")
    return "serial-7002", ()


def provisioning_bad_token():
    rejected_with("InvalidCertificateOwnershipToken", "7003", token="not-a-token")
    return "serial-7003", ()


def provisioning_template_disabled():
    SERVER.aws("create-provisioning-template", "--template-name", "Paused", "--template-body",
               json.dumps(TEMPLATE), "--provisioning-role-arn",
               "arn:aws:iam::123456789012:role/provisioning", "--no-enabled")
    rejected_with("TemplateDisabled", "7005", template="Paused")
    return "serial-7005", ()


def provisioning_thing_exists():
    SERVER.aws("create-thing", "--thing-name", "locker-7006")  # lock-down: no takeover
    rejected_with("ResourceConflict", "7006")
    return "serial-7006", ()


def rotation_refused():
    d = device("tl-rotate")  # its policy has no fleetkey:RotateCertificate
    c = Paho(d["cert"], d["key"], "tl-rotate")
    ok, r = c.request("$fleetkey/certificates/rotate/json",
                      json.dumps({"certificateSigningRequest": csr("tl-rotate")}))
    c.stop()
    assert not ok and r["errorCode"] == "AccessDenied", r
    return "tl-rotate", ()


def provisioned():
    ok, r = provision("7004")
    assert ok, r
    return "locker-7004", ()


# (name, make it happen, the timeline entry (event, reason) that names the cause, verdict,
#  exit code, what the summary says, the actor of a status change or None)
ROWS = [
    ("INACTIVE certificate", inactive, ("connect_refused", "certificate_not_active"),
     "cannot_connect", 9, ["is INACTIVE since", "(UpdateCertificate by {key})"],
     ("certificate_status", "INACTIVE", "{key}")),
    ("REVOKED certificate", revoked, ("connect_refused", "certificate_revoked"),
     "cannot_connect", 9, ["is REVOKED since", "(UpdateCertificate by {key})"],
     ("certificate_status", "REVOKED", "{key}")),
    ("unregistered certificate", unknown_certificate, ("connect_refused", "certificate_unknown"),
     "cannot_connect", 9, ["is not registered", "certificate_unknown"], None),
    ("policy refuses iot:Connect", policy_denied, ("connect_refused", "policy_denied"),
     "cannot_connect", 9, ["iot:Connect on client/tl-narrow"], None),
    ("expired certificate (TLS)", expired, ("tls_failed", "certificate_expired"),
     "cannot_connect", 9, ["expired on"], None),
    ("client id taken over", takeover, ("disconnected", "DUPLICATE_CLIENTID"),
     "can_connect", 0, ["can connect as tl-takeover"], None),
    ("revoked while connected", revoked_while_connected, ("disconnected", "AUTH_ERROR"),
     "cannot_connect", 9, ["is REVOKED since"], ("certificate_status", "REVOKED", "{key}")),
    ("connected now", connected_now, ("connected", "MQTT 3.1.1"),
     "connected", 0, ["connected as tl-online since"], None),
    ("the device disconnected", client_disconnect, ("disconnected", "CLIENT_INITIATED_DISCONNECT"),
     "can_connect", 0, ["can connect as tl-bye"], None),
    ("provisioning: bad CSR", provisioning_bad_csr,
     ("provisioning_rejected", "InvalidCertificateSigningRequest"), "not_provisioned", 9,
     ["not provisioned", "InvalidCertificateSigningRequest"], None),
    ("provisioning: no such template", provisioning_missing_template,
     ("provisioning_rejected", "ResourceNotFound"), "not_provisioned", 9,
     ["not provisioned", "ResourceNotFound"], None),
    ("provisioning: bad ownership token", provisioning_bad_token,
     ("provisioning_rejected", "InvalidCertificateOwnershipToken"), "not_provisioned", 9,
     ["InvalidCertificateOwnershipToken"], None),
    ("provisioning: template disabled", provisioning_template_disabled,
     ("provisioning_rejected", "TemplateDisabled"), "not_provisioned", 9,
     ["TemplateDisabled"], None),
    ("provisioning: the thing exists (lock-down)", provisioning_thing_exists,
     ("provisioning_rejected", "ResourceConflict"), "not_provisioned", 9,
     ["ResourceConflict"], None),
    ("rotation without the policy action", rotation_refused,
     ("rotation_rejected", "AccessDenied"), "can_connect", 0,
     ["can connect as tl-rotate", "last refusal", "fleetkey:RotateCertificate"], None),
    ("provisioned by RegisterThing", provisioned, ("principal_attached", ""),
     "can_connect", 0, ["can connect as locker-7004"],
     ("certificate_status", "ACTIVE", "claim certificate")),
]


class TimelineAndDiagnose(unittest.TestCase):
    def test_1_each_refusal_has_its_timeline_entry_and_verdict(self):
        for name, make, (event, reason), verdict, code, says, status_change in ROWS:
            with self.subTest(name):
                subject, args = make()
                events = wait_for(lambda: find(timeline(subject), event, reason))
                self.assertTrue(events, "%s: no %s/%s in %s" % (name, event, reason,
                                                                json.dumps(timeline(subject))))
                e = events[-1]
                self.assertTrue(e["time"] > 0 and e["sequence"] > 0)
                if event in ("connect_refused", "disconnected", "connected", "tls_failed"):
                    self.assertTrue(e["source"].startswith("127.0.0.1"), e)
                    self.assertEqual(len(e["certificateId"]), 64, e)
                if status_change:
                    changes = find(timeline(subject), *status_change[:2])
                    self.assertTrue(changes, name)
                    self.assertIn(status_change[2].replace("{key}", ACCESS_KEY),
                                  changes[-1]["actor"], name)
                got_code, out, text = diagnose(subject, *args)
                self.assertEqual((got_code, out.get("verdict")), (code, verdict),
                                 "%s: %s" % (name, text))
                for s in says:
                    self.assertIn(s.replace("{key}", ACCESS_KEY), out["summary"], name)
                self.assertIn(out["summary"], text)  # the table form prints it first
                for secret in ("PRIVATE KEY", "certificateOwnershipToken"):
                    self.assertNotIn(secret, json.dumps(out) + json.dumps(timeline(subject)))
        connected_now.client.stop()

    def test_2_a_thing_timeline_is_in_order_with_its_certificates(self):
        d = device("tl-order")
        self.assertEqual(mosquitto(d["cert"], d["key"], "tl-order"), 0)
        SERVER.aws("update-certificate", "--certificate-id", d["id"], "--new-status", "INACTIVE")
        self.assertNotEqual(mosquitto(d["cert"], d["key"], "tl-order"), 0)
        events = wait_for(lambda: len(timeline("tl-order")) >= 7 and timeline("tl-order"))
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds, ["certificate_created", "thing_created", "principal_attached",
                                 "connected", "disconnected", "certificate_status",
                                 "connect_refused"], json.dumps(events, indent=1))
        self.assertEqual([e["time"] for e in events], sorted(e["time"] for e in events))
        # The same events by certificate id, and by time (the CLI's times are whole seconds).
        self.assertEqual([e["sequence"] for e in timeline(d["id"])],
                         [e["sequence"] for e in events])
        time.sleep(1.1)
        r = fleetkey("timeline", "tl-order", "--until", "0s", "--jsonl")
        self.assertEqual(len(r.stdout.splitlines()), 7)
        r = fleetkey("timeline", "tl-order", "--since", "0s", "--jsonl")
        self.assertEqual(r.stdout, "")
        table = fleetkey("timeline", "tl-order")
        self.assertEqual(table.returncode, 0)
        self.assertIn("certificate_not_active", table.stdout)
        self.assertIn(ACCESS_KEY, table.stdout)

    def test_3_bad_queries_and_unknown_names(self):
        for query in ("from=10&to=5", "limit=100000", "limit=0", "from=abc", "before=-1"):
            status, body = signed_call(SERVER.endpoints, "GET",
                                       "/fleetkey/timeline/tl-order?" + query)
            self.assertEqual(status, 400, (query, body))
        status, body = signed_call(SERVER.endpoints, "GET", "/fleetkey/timeline/" + "x" * 300)
        self.assertEqual(status, 400, body)
        # Nothing known of it: diagnose says so (exit 5), the timeline is empty.
        code, _, text = diagnose("never-seen-anywhere")
        self.assertEqual(code, 5, text)
        self.assertEqual(timeline("never-seen-anywhere"), [])
        # Without a signature: refused, nothing leaked.
        import urllib.request
        import urllib.error
        try:
            urllib.request.urlopen(SERVER.api_url + "/fleetkey/timeline/tl-order", timeout=5)
            self.fail("an unsigned timeline request was answered")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 403)

    def test_4_a_flapping_device_is_bounded(self):
        # 60 refused connects in a row: the device's timeline keeps its burst (30 a minute by
        # default) and says how many were left out; the server keeps serving.
        cert, key = make_fixture_certificate(SERVER.ca_dir, os.path.join(TMP, "flap"), "tl-flap")
        procs = [subprocess.Popen(["mosquitto_pub", "-h", "localhost", "-p",
                                   str(SERVER.mqtt_port), "--cafile", SERVER.root_ca, "--cert",
                                   cert, "--key", key, "-i", "tl-flap", "-t", "x", "-m", "y"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(60)]
        for p in procs:
            p.wait(timeout=60)
        cid = certificate_id_of(cert)
        refused = wait_for(lambda: len(find(timeline(cid), "connect_refused")) >= 30 and
                           find(timeline(cid), "connect_refused"))
        self.assertTrue(refused)
        self.assertLessEqual(len(refused), 32)
        status, body = SERVER.fleetkey_api("GET", "/fleetkey/status")
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
