"""interop_04: fleet provisioning end to end with a real MQTT client (paho, /usr/bin/python3)
against a real fleetkeyd, set up with the real aws CLI: claim connect -> CSR or server keys ->
RegisterThing -> reconnect with the new certificate -> publish on its own topic, in JSON and
CBOR, MQTT 3.1.1 and 5; and the bad inputs, each answered on /rejected with its errorCode."""

import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import cbor2
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd  # noqa: E402

SERVER = None
CLAIM = None
TMP = None

CLAIM_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": ["arn:aws:iot:*:*:topic/$aws/certificates/create/*",
                      "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*",
                      "arn:aws:iot:*:*:topic/$aws/provisioning-templates/*/provision/*"]},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/certificates/create/*",
                      "arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*",
                      "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/*/provision/*"]},
    ],
}
DEVICE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive", "iot:Subscribe"],
         "Resource": ["arn:aws:iot:*:*:topic/lockers/${iot:Connection.Thing.ThingName}/*",
                      "arn:aws:iot:*:*:topicfilter/lockers/${iot:Connection.Thing.ThingName}/*"]},
    ],
}
TEMPLATE = {
    "Parameters": {"SerialNumber": {"Type": "String"},
                   "AWS::IoT::Certificate::Id": {"Type": "String"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Fn::Join": ["", ["locker-", {"Ref": "SerialNumber"}]]},
                                 "AttributePayload": {"serial": {"Ref": "SerialNumber"}}}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                       "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "locker-device"}},
    },
    "DeviceConfiguration": {"stateTopic": {"Fn::Sub": "lockers/locker-${SerialNumber}/state"}},
}


HOOK_CALLS = []


class HookHandler(http.server.BaseHTTPRequestHandler):
    """The pre-provisioning webhook: /allow (overrides SerialNumber), /deny, /slow, /error."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        HOOK_CALLS.append((self.path, body))
        if self.path == "/slow":
            time.sleep(2.5)
        if self.path == "/error":
            self.send_response(500)
            self.end_headers()
            return
        answer = {"allowProvisioning": self.path != "/deny"}
        if self.path == "/allow":
            answer["parameterOverrides"] = {"SerialNumber": "9" + body["parameters"]["SerialNumber"]}
        data = json.dumps(answer).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # /slow: fleetkeyd stopped waiting, as it should

    def log_message(self, *a):
        pass


def setUpModule():
    global SERVER, CLAIM, TMP, HOOK
    TMP = tempfile.mkdtemp(prefix="fk_fp_")
    config = os.path.join(TMP, "fleetkeyd.toml")
    with open(config, "w") as f:
        f.write("[provisioning]\nhook_timeout_ms = 1000\nmax_requests_per_second = 1000\nmax_server_keys_per_second = 1000\nmax_requests_per_client_per_second = 1000\n")
    SERVER = Fleetkeyd(None, "--config", config)
    HOOK = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HookHandler)
    threading.Thread(target=HOOK.serve_forever, daemon=True).start()
    SERVER.create_policy("claim", CLAIM_POLICY)
    SERVER.create_policy("locker-device", DEVICE_POLICY)
    SERVER.create_policy("admin", ALLOW_ALL)
    CLAIM = SERVER.create_device("claim", policy="claim")
    for name, enabled in (("LockerTemplate", True), ("DisabledTemplate", False)):
        SERVER.aws("create-provisioning-template", "--template-name", name, "--template-body",
                   json.dumps(TEMPLATE), "--provisioning-role-arn",
                   "arn:aws:iam::123456789012:role/provisioning",
                   *(["--enabled"] if enabled else ["--no-enabled"]))


def tearDownModule():
    HOOK.shutdown()
    code = SERVER.stop()
    SERVER.cleanup()
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


class Mqtt:
    def __init__(self, client_id, cert, key, version, server=None):
        server = server or SERVER
        self.c = mqtt.Client(client_id=client_id, protocol=version)
        ctx = ssl.create_default_context(cafile=server.root_ca)
        ctx.load_cert_chain(cert, key)
        self.c.tls_set_context(ctx)
        self.connected = threading.Event()
        self.rc = None
        self.messages = []
        self.lock = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: None
        self.c.connect_async("localhost", server.mqtt_port, keepalive=60)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, c, u, flags, rc, *a):
        self.rc = rc if isinstance(rc, int) else rc.value
        self.connected.set()

    def _on_message(self, c, u, m):
        with self.lock:
            self.messages.append((m.topic, m.payload))
            self.lock.notify_all()

    def subscribe(self, *topics):
        for t in topics:
            r, mid = self.c.subscribe(t, 1)
            assert r == 0
        time.sleep(0.3)

    def request(self, topic, payload, timeout=20):
        """Publishes and waits for the reply on topic/accepted or topic/rejected."""
        with self.lock:
            self.messages.clear()
        self.c.publish(topic, payload, qos=1)
        deadline = time.time() + timeout
        with self.lock:
            while time.time() < deadline:
                for t, p in self.messages:
                    if t in (topic + "/accepted", topic + "/rejected"):
                        return t.endswith("/accepted"), p
                self.lock.wait(0.1)
        raise AssertionError("no reply on " + topic)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def enc(fmt, obj):
    return json.dumps(obj) if fmt == "json" else cbor2.dumps(obj)


def dec(fmt, payload):
    return json.loads(payload) if fmt == "json" else cbor2.loads(payload)


def make_csr(cn, kind="ec"):
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else \
        rsa.generate_private_key(public_exponent=65537, key_size=1024 if kind == "weak" else 2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def claim_client(name, version=mqtt.MQTTv311):
    c = Mqtt(name, CLAIM["cert"], CLAIM["key"], version)
    assert c.rc == 0, c.rc
    return c


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class FullFlow(unittest.TestCase):
    def provision(self, fmt, version, mode, serial):
        c = claim_client("claim-" + serial, version)
        create = "$aws/certificates/create-from-csr/" + fmt if mode == "csr" else \
            "$aws/certificates/create/" + fmt
        provision = "$aws/provisioning-templates/LockerTemplate/provision/" + fmt
        c.subscribe(create + "/accepted", create + "/rejected",
                    provision + "/accepted", provision + "/rejected")
        if mode == "csr":
            csr, key_pem = make_csr("locker-" + serial)
            ok, payload = c.request(create, enc(fmt, {"certificateSigningRequest": csr}))
        else:
            ok, payload = c.request(create, b"" if fmt == "cbor" else "{}")
        reply = dec(fmt, payload)
        self.assertTrue(ok, reply)
        if mode == "keys":
            key_pem = reply["privateKey"]
            self.assertEqual(set(reply), {"certificateId", "certificatePem", "privateKey",
                                          "certificateOwnershipToken"})
        else:
            self.assertEqual(set(reply), {"certificateId", "certificatePem",
                                          "certificateOwnershipToken"})
        cert_id = reply["certificateId"]
        # Until RegisterThing the certificate is PENDING_ACTIVATION.
        d = json.loads(SERVER.aws("describe-certificate", "--certificate-id", cert_id).stdout)
        self.assertEqual(d["certificateDescription"]["status"], "PENDING_ACTIVATION")
        ok, payload = c.request(provision, enc(fmt, {
            "certificateOwnershipToken": reply["certificateOwnershipToken"],
            "parameters": {"SerialNumber": serial}}))
        registered = dec(fmt, payload)
        self.assertTrue(ok, registered)
        self.assertEqual(registered, {"thingName": "locker-" + serial,
                                      "deviceConfiguration": {
                                          "stateTopic": "lockers/locker-%s/state" % serial}})
        c.stop()
        # Registered and durable: the thing, its principal, the certificate ACTIVE.
        thing = json.loads(SERVER.aws("describe-thing", "--thing-name", "locker-" + serial).stdout)
        self.assertEqual(thing["attributes"], {"serial": serial})
        d = json.loads(SERVER.aws("describe-certificate", "--certificate-id", cert_id).stdout)
        self.assertEqual(d["certificateDescription"]["status"], "ACTIVE")
        # Reconnect as the device, publish on its own topic; an admin sees it.
        cert = write(os.path.join(TMP, serial + ".pem"), reply["certificatePem"])
        key = write(os.path.join(TMP, serial + ".key"), key_pem)
        admin_dev = SERVER.create_device("admin-" + serial, policy="admin")
        admin = Mqtt("admin-" + serial, admin_dev["cert"], admin_dev["key"], mqtt.MQTTv311)
        admin.subscribe("lockers/#")
        dev = Mqtt("locker-" + serial, cert, key, version)
        self.assertEqual(dev.rc, 0)
        dev.c.publish("lockers/locker-%s/state" % serial, b"closed", qos=1).wait_for_publish()
        deadline = time.time() + 5
        while time.time() < deadline and \
                ("lockers/locker-%s/state" % serial, b"closed") not in admin.messages:
            time.sleep(0.05)
        self.assertIn(("lockers/locker-%s/state" % serial, b"closed"), admin.messages)
        dev.stop()
        admin.stop()
        return reply["certificateOwnershipToken"]

    def test_json_csr_mqtt311(self):
        self.provision("json", mqtt.MQTTv311, "csr", "1001")

    def test_json_keys_mqtt5(self):
        self.provision("json", mqtt.MQTTv5, "keys", "1002")

    def test_cbor_csr_mqtt5(self):
        self.provision("cbor", mqtt.MQTTv5, "csr", "1003")

    def test_cbor_keys_mqtt311(self):
        self.provision("cbor", mqtt.MQTTv311, "keys", "1004")


class ReadmeFiveCommands(unittest.TestCase):
    """The README's "Fleet provisioning in five commands", run as written with the files it
    names (examples/fleet-provisioning/), then a device provisions with the claim."""

    def test_the_readme_commands_and_files_provision_a_device(self):
        files = os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                             "fleet-provisioning")
        server = Fleetkeyd()
        try:
            env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=server.endpoints["credentials_file"],
                       AWS_CONFIG_FILE=server.endpoints["aws_config_file"])
            env.pop("AWS_PROFILE", None)
            script = r'''set -e
A="--endpoint-url $API"
aws iot create-policy $A --policy-name claim --policy-document file://claim-policy.json >/dev/null
aws iot create-policy $A --policy-name locker-device --policy-document file://device-policy.json >/dev/null
aws iot create-provisioning-template $A --template-name LockerTemplate --template-body file://template.json \
    --provisioning-role-arn arn:aws:iam::123456789012:role/provisioning --enabled >/dev/null
aws iot create-keys-and-certificate $A --set-as-active > "$OUT/claim.json"
aws iot attach-policy $A --policy-name claim --target $(python3 -c "import json;print(json.load(open('$OUT/claim.json'))['certificateArn'])")
'''
            r = subprocess.run(["bash", "-c", script], cwd=files, capture_output=True, text=True,
                               env=dict(env, API=server.api_url, OUT=TMP), timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            claim = json.load(open(os.path.join(TMP, "claim.json")))
            cert = write(os.path.join(TMP, "readme-claim.pem"), claim["certificatePem"])
            key = write(os.path.join(TMP, "readme-claim.key"), claim["keyPair"]["PrivateKey"])
            c = Mqtt("claim-readme", cert, key, mqtt.MQTTv311, server=server)
            create = "$aws/certificates/create-from-csr/json"
            provision = "$aws/provisioning-templates/LockerTemplate/provision/json"
            c.subscribe(create + "/accepted", create + "/rejected",
                        provision + "/accepted", provision + "/rejected")
            csr, _ = make_csr("readme-device")
            ok, payload = c.request(create, json.dumps({"certificateSigningRequest": csr}))
            self.assertTrue(ok, payload)
            token = json.loads(payload)["certificateOwnershipToken"]
            ok, payload = c.request(provision, json.dumps({
                "certificateOwnershipToken": token, "parameters": {"SerialNumber": "R-1"}}))
            self.assertTrue(ok, payload)
            self.assertEqual(json.loads(payload)["thingName"], "locker-controller-R-1")
            c.stop()
        finally:
            self.assertEqual(server.stop(), 0)
            server.cleanup()


class BadInput(unittest.TestCase):
    """Each refusal on /rejected with its own errorCode; the connection stays usable."""

    @classmethod
    def setUpClass(cls):
        cls.c = claim_client("claim-bad", mqtt.MQTTv5)
        cls.c.subscribe("$aws/certificates/create-from-csr/+/+",
                        "$aws/certificates/create/+/+",
                        "$aws/provisioning-templates/+/provision/+/+")

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def rejected(self, topic, payload, fmt="json"):
        ok, p = self.c.request(topic, payload)
        self.assertFalse(ok, p)
        r = dec(fmt, p)
        self.assertEqual(set(r), {"statusCode", "errorCode", "errorMessage"})
        self.assertTrue(r["errorMessage"])
        return r

    def token(self):
        csr, _ = make_csr("bad")
        ok, p = self.c.request("$aws/certificates/create-from-csr/json",
                               json.dumps({"certificateSigningRequest": csr}))
        self.assertTrue(ok)
        return json.loads(p)

    def test_malformed_payloads(self):
        r = self.rejected("$aws/certificates/create-from-csr/json", "{not json")
        self.assertEqual(r["errorCode"], "InvalidPayload")
        r = self.rejected("$aws/certificates/create-from-csr/cbor", b"\xa1", fmt="cbor")
        self.assertEqual(r["errorCode"], "InvalidPayload")
        r = self.rejected("$aws/certificates/create-from-csr/json",
                          json.dumps({"certificateSigningRequest": 5}))
        self.assertEqual(r["errorCode"], "InvalidPayload")

    def test_bad_csrs(self):
        r = self.rejected("$aws/certificates/create-from-csr/json",
                          json.dumps({"certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"}))
        self.assertEqual(r["errorCode"], "InvalidCertificateSigningRequest")
        weak, _ = make_csr("weak", kind="weak")
        r = self.rejected("$aws/certificates/create-from-csr/json",
                          json.dumps({"certificateSigningRequest": weak}))
        self.assertEqual(r["errorCode"], "InvalidCertificateSigningRequest")
        self.assertIn("1024", r["errorMessage"])
        r = self.rejected("$aws/certificates/create-from-csr/json",
                          json.dumps({"certificateSigningRequest": "x" * 5000}))
        self.assertEqual(r["errorCode"], "InvalidCertificateSigningRequest")

    def test_templates_and_parameters(self):
        t = self.token()
        r = self.rejected("$aws/provisioning-templates/missing-template/provision/json",
                          json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"],
                                      "parameters": {"SerialNumber": "2001"}}))
        self.assertEqual((r["statusCode"], r["errorCode"]), (404, "ResourceNotFound"))
        r = self.rejected("$aws/provisioning-templates/DisabledTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"],
                                      "parameters": {"SerialNumber": "2001"}}))
        self.assertEqual(r["errorCode"], "TemplateDisabled")
        r = self.rejected("$aws/provisioning-templates/LockerTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"]}))
        self.assertEqual((r["errorCode"], r["errorMessage"]),
                         ("InvalidParameters", "Missing required parameter: SerialNumber"))
        # Nothing was stored by the refusals: the thing does not exist.
        self.assertNotEqual(SERVER.aws("describe-thing", "--thing-name", "locker-2001",
                                       check=False).returncode, 0)

    def test_tokens(self):
        r = self.rejected("$aws/provisioning-templates/LockerTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": "",
                                      "parameters": {"SerialNumber": "2002"}}))
        self.assertEqual((r["errorCode"], r["errorMessage"]),
                         ("InvalidCertificateOwnershipToken",
                          "Certificate ownership token cannot be empty."))
        r = self.rejected("$aws/provisioning-templates/LockerTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": "forged.token",
                                      "parameters": {"SerialNumber": "2002"}}))
        self.assertEqual(r["errorCode"], "InvalidCertificateOwnershipToken")
        # A token works once.
        t = self.token()
        req = json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"],
                          "parameters": {"SerialNumber": "2003"}})
        ok, _ = self.c.request("$aws/provisioning-templates/LockerTemplate/provision/json", req)
        self.assertTrue(ok)
        r = self.rejected("$aws/provisioning-templates/LockerTemplate/provision/json", req)
        self.assertEqual(r["errorCode"], "InvalidCertificateOwnershipToken")
        self.assertIn("already been used", r["errorMessage"])
        # A token from another claim certificate.
        other_claim = SERVER.create_device("claim-2", policy="claim")
        o = Mqtt("claim-other", other_claim["cert"], other_claim["key"], mqtt.MQTTv311)
        o.subscribe("$aws/provisioning-templates/+/provision/+/+")
        t = self.token()
        ok, p = o.request("$aws/provisioning-templates/LockerTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"],
                                      "parameters": {"SerialNumber": "2004"}}))
        o.stop()
        self.assertFalse(ok)
        self.assertIn("another claim certificate", json.loads(p)["errorMessage"])

    def test_existing_thing_is_refused_by_default(self):
        SERVER.aws("create-thing", "--thing-name", "locker-2005")
        t = self.token()
        r = self.rejected("$aws/provisioning-templates/LockerTemplate/provision/json",
                          json.dumps({"certificateOwnershipToken": t["certificateOwnershipToken"],
                                      "parameters": {"SerialNumber": "2005"}}))
        self.assertEqual((r["statusCode"], r["errorCode"]), (409, "ResourceConflict"))
        self.assertIn("already exists", r["errorMessage"])
        # Nothing half-done: the certificate is still pending, nothing attached to it.
        d = json.loads(SERVER.aws("describe-certificate", "--certificate-id",
                                  t["certificateId"]).stdout)
        self.assertEqual(d["certificateDescription"]["status"], "PENDING_ACTIVATION")
        principals = json.loads(SERVER.aws("list-thing-principals", "--thing-name",
                                           "locker-2005").stdout)
        self.assertEqual(principals["principals"], [])

    def test_replies_go_only_to_the_asker(self):
        spy = claim_client("claim-spy")
        spy.subscribe("$aws/certificates/create/json/accepted")
        ok, _ = self.c.request("$aws/certificates/create/json", "{}")
        self.assertTrue(ok)
        time.sleep(0.5)
        self.assertEqual(spy.messages, [])
        spy.stop()


class LockDown(unittest.TestCase):
    def test_allow_list_single_use_and_counters(self):
        SERVER.aws("create-provisioning-template", "--template-name", "ListedTemplate",
                   "--template-body", json.dumps(TEMPLATE), "--provisioning-role-arn",
                   "arn:aws:iam::123456789012:role/provisioning", "--enabled")
        status, out = SERVER.fleetkey_api(
            "PUT", "/fleetkey/provisioning-templates/ListedTemplate/allow-list",
            {"parameter": "SerialNumber", "values": ["3001", "3002"], "singleUse": True})
        self.assertEqual((status, out["count"]), (200, 2))
        c = claim_client("claim-listed", mqtt.MQTTv5)
        topic = "$aws/provisioning-templates/ListedTemplate/provision/json"
        c.subscribe("$aws/certificates/create-from-csr/json/+", topic + "/+")

        def register(serial, thing_name=None):
            csr, _ = make_csr("x")
            ok, p = c.request("$aws/certificates/create-from-csr/json",
                              json.dumps({"certificateSigningRequest": csr}))
            self.assertTrue(ok)
            tok = json.loads(p)["certificateOwnershipToken"]
            return c.request(topic, json.dumps({"certificateOwnershipToken": tok,
                                                "parameters": {"SerialNumber": serial}}))

        ok, p = register("3999")
        self.assertFalse(ok)
        self.assertEqual((json.loads(p)["statusCode"], json.loads(p)["errorCode"]),
                         (403, "NotAllowed"))
        self.assertIn("'3999' is not on the allow-list", json.loads(p)["errorMessage"])
        ok, p = register("3001")
        self.assertTrue(ok, p)
        # Single use: the thing is deleted by an operator, the serial still cannot come back ...
        SERVER.aws("detach-thing-principal", "--thing-name", "locker-3001", "--principal",
                   json.loads(SERVER.aws("list-thing-principals", "--thing-name",
                                         "locker-3001").stdout)["principals"][0])
        SERVER.aws("delete-thing", "--thing-name", "locker-3001")
        ok, p = register("3001")
        self.assertFalse(ok)
        self.assertEqual(json.loads(p)["errorCode"], "AlreadyProvisioned")
        # ... until it is re-enabled.
        status, _ = SERVER.fleetkey_api(
            "POST", "/fleetkey/provisioning-templates/ListedTemplate/allow-list/re-enable",
            {"values": ["3001"]})
        self.assertEqual(status, 200)
        ok, p = register("3001")
        self.assertTrue(ok, p)
        c.stop()
        status, metrics = SERVER.fleetkey_api("GET", "/fleetkey/metrics")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(metrics["provisioning.RegisterThing.Success"], 2)
        self.assertGreaterEqual(metrics["provisioning.RegisterThing.Failure.NotAllowed"], 1)
        self.assertGreaterEqual(metrics["provisioning.RegisterThing.Failure.AlreadyProvisioned"], 1)
        self.assertGreaterEqual(metrics["provisioning.CreateCertificateFromCsr.Success"], 4)


class PreProvisioningHook(unittest.TestCase):
    def register_with(self, path, serial):
        name = "Hook" + path.strip("/").capitalize()
        r = SERVER.aws("describe-provisioning-template", "--template-name", name, check=False)
        if r.returncode != 0:
            SERVER.aws("create-provisioning-template", "--template-name", name, "--template-body",
                       json.dumps(TEMPLATE), "--provisioning-role-arn",
                       "arn:aws:iam::123456789012:role/provisioning", "--enabled",
                       "--pre-provisioning-hook",
                       json.dumps({"targetArn": "http://127.0.0.1:%d%s" % (HOOK.server_port, path),
                                   "payloadVersion": "2020-04-01"}))
        c = claim_client("claim-hook-" + serial)
        topic = "$aws/provisioning-templates/%s/provision/json" % name
        c.subscribe("$aws/certificates/create-from-csr/json/+", topic + "/+")
        csr, _ = make_csr("hook")
        ok, p = c.request("$aws/certificates/create-from-csr/json",
                          json.dumps({"certificateSigningRequest": csr}))
        self.assertTrue(ok)
        created = json.loads(p)
        ok, p = c.request(topic, json.dumps({
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": serial}}))
        c.stop()
        return ok, json.loads(p), created

    def test_allow_with_parameter_overrides(self):
        ok, reply, created = self.register_with("/allow", "4001")
        self.assertTrue(ok, reply)
        self.assertEqual(reply["thingName"], "locker-94001")  # the hook's override
        path, body = [c for c in HOOK_CALLS if c[0] == "/allow"][-1]
        self.assertEqual(set(body), {"claimCertificateId", "certificateId", "certificatePem",
                                     "templateArn", "clientId", "parameters"})
        self.assertEqual(body["claimCertificateId"], CLAIM["id"])
        self.assertEqual(body["certificateId"], created["certificateId"])
        self.assertEqual(body["clientId"], "claim-hook-4001")
        self.assertEqual(body["parameters"], {"SerialNumber": "4001"})
        self.assertTrue(body["templateArn"].endswith(":provisioningtemplate/HookAllow"))

    def test_refusals(self):
        for path, fragment in (("/deny", "refused provisioning"),
                               ("/slow", "no answer within 1000 ms"),
                               ("/error", "answered HTTP 500")):
            ok, reply, _ = self.register_with(path, "4002")
            self.assertFalse(ok, path)
            self.assertEqual((reply["statusCode"], reply["errorCode"]), (403, "AccessDenied"))
            self.assertIn(fragment, reply["errorMessage"])
        self.assertNotEqual(SERVER.aws("describe-thing", "--thing-name", "locker-4002",
                                       check=False).returncode, 0)


class Validation(unittest.TestCase):
    def test_bad_template_is_refused_with_the_place(self):
        bad = dict(TEMPLATE)
        bad["Resources"] = {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Ref": "Serial"}}}}
        r = SERVER.aws("create-provisioning-template", "--template-name", "Bad", "--template-body",
                       json.dumps(bad), "--provisioning-role-arn",
                       "arn:aws:iam::123456789012:role/p", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("InvalidRequestException", r.stderr)
        self.assertIn("Resources.thing.Properties.ThingName.Ref", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
