"""Issue 19, part 1: certificate rotation that keeps the thing. Devices rotate over MQTT (paho,
JSON and CBOR) on $fleetkey/certificates/rotate; direct-certificate devices with `fleetkey certs
rotate`; the results checked with the aws CLI and mosquitto_pub. The device SDK's and the locker
controller's rotation (with power cuts) are in sdk_rotation_test.py."""

import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import cbor2
import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, cli_env, write_config  # noqa: E402

FLEETKEY = os.path.abspath(os.environ.get("FLEETKEY", "build/bin/fleetkey"))
SERVER = None  # overlap 1 day, 4 rotation requests per hour
SHORT = None  # overlap 2 s
TMP = None

ROTATOR = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
    {"Effect": "Allow", "Action": "fleetkey:RotateCertificate", "Resource": "arn:aws:iot:*:*:cert/*"},
]}
NO_ROTATION = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}


def setUpModule():
    global SERVER, SHORT, TMP
    TMP = tempfile.mkdtemp(prefix="fk_rotation_")
    SERVER = start("main", "[rotation]\noverlap_seconds = 86400\nmax_requests_per_hour = 4\n")
    SHORT = start("short", "[rotation]\noverlap_seconds = 2\n")


def start(name, toml):
    cfg = write_config(os.path.join(TMP, name + ".toml"), toml, "rot_" + name)
    os.makedirs(os.path.join(TMP, name), exist_ok=True)
    server = Fleetkeyd(os.path.join(TMP, name, "data"), "--config", cfg)
    server.create_policy("rotator", ROTATOR)
    server.create_policy("no-rotation", NO_ROTATION)
    return server


def tearDownModule():
    codes = [SERVER.stop(), SHORT.stop()]
    if not os.environ.get("FK_KEEP_TMP"):
        subprocess.run(["rm", "-rf", TMP])
    if codes != [0, 0]:
        raise AssertionError("fleetkeyd did not stop cleanly: %s" % codes)


def path(name):
    return os.path.join(TMP, name)


def read(p):
    with open(p) as f:
        return f.read()


def new_csr(name, key_args=("ec", "-pkeyopt", "ec_paramgen_curve:P-256")):
    subprocess.run(["openssl", "req", "-newkey", *key_args, "-nodes", "-keyout",
                    path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + name],
                   check=True, capture_output=True)
    with open(path(name + ".csr")) as f:
        return f.read()


def csr_for_key(name, key_file):
    subprocess.run(["openssl", "req", "-new", "-key", key_file, "-out", path(name + ".csr"),
                    "-subj", "/CN=" + name], check=True, capture_output=True)
    with open(path(name + ".csr")) as f:
        return f.read()


def status(server, cert_id):
    out = json.loads(server.aws("describe-certificate", "--certificate-id", cert_id).stdout)
    return out["certificateDescription"]["status"]


def wait_status(server, cert_id, want, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if status(server, cert_id) == want:
            return True
        time.sleep(0.05)
    return False


def device(server, name, policy="rotator"):
    """A thing with attributes, in a group, its certificate with `policy` attached."""
    d = server.create_device(name, policy=policy, thing=True)
    server.aws("update-thing", "--thing-name", name, "--attribute-payload",
               json.dumps({"attributes": {"site": "berlin"}}))
    server.aws("create-thing-group", "--thing-group-name", "lockers-" + name)
    server.aws("add-thing-to-thing-group", "--thing-group-name", "lockers-" + name,
               "--thing-name", name)
    return d


class Device:
    """A paho client connected with a device certificate, subscribed to the rotation replies."""

    def __init__(self, server, name, dev, fmt="json"):
        self.fmt = fmt
        self.replies = []
        self.got = threading.Event()
        self.closed = threading.Event()
        self.c = mqtt.Client(client_id=name, protocol=mqtt.MQTTv311)
        ctx = ssl.create_default_context(cafile=server.root_ca)
        ctx.load_cert_chain(dev["cert"], dev["key"])
        self.c.tls_set_context(ctx)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.on_disconnect = lambda *a: self.closed.set()
        self.c.connect("localhost", server.mqtt_port, keepalive=60)
        self.c.loop_start()
        self.c.subscribe("$fleetkey/certificates/rotate/%s/+" % fmt, qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, c, u, m):
        body = json.loads(m.payload) if self.fmt == "json" else cbor2.loads(m.payload)
        self.replies.append((m.topic.rsplit("/", 1)[1], body))
        self.got.set()

    def rotate(self, csr=None, raw=None):
        self.got.clear()
        payload = raw if raw is not None else (
            json.dumps({"certificateSigningRequest": csr}) if self.fmt == "json"
            else cbor2.dumps({"certificateSigningRequest": csr}))
        self.c.publish("$fleetkey/certificates/rotate/" + self.fmt, payload, qos=1)
        assert self.got.wait(10), "no rotation reply"
        return self.replies[-1]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def mosquitto(server, cert, key, client_id):
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(server.mqtt_port),
                        "--cafile", server.root_ca, "--cert", cert, "--key", key, "-i", client_id,
                        "-t", "lockers/%s/state" % client_id, "-m", "up", "-q", "1"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


class MqttRotation(unittest.TestCase):
    def test_1_json_rotation_keeps_the_thing_and_completes_on_first_connect(self):
        dev = device(SERVER, "rot-1")
        live = Device(SERVER, "rot-1", dev)
        try:
            kind, body = live.rotate(new_csr("rot-1-new"))
            self.assertEqual(kind, "accepted", body)
            new_id = body["certificateId"]
            self.assertEqual(body["previousCertificateId"], dev["id"])
            self.assertGreater(body["previousCertificateDeactivatesAt"], time.time() + 86000)
            self.assertIn("BEGIN CERTIFICATE", body["certificatePem"])
            # Replayed (a reply lost to a power cut): the same certificate, not a second one.
            kind, again = live.rotate(read(path("rot-1-new.csr")))
            self.assertEqual(again["certificateId"], new_id)
            # Same thing, same policies; the thing keeps its group and attributes.
            new_arn = json.loads(SERVER.aws("describe-certificate", "--certificate-id", new_id)
                                 .stdout)["certificateDescription"]["certificateArn"]
            principals = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "rot-1")
                                    .stdout)["principals"]
            self.assertEqual(sorted(principals), sorted([dev["arn"], new_arn]))
            policies = json.loads(SERVER.aws("list-attached-policies", "--target", new_arn)
                                  .stdout)["policies"]
            self.assertEqual([p["policyName"] for p in policies], ["rotator"])
            self.assertEqual(status(SERVER, new_id), "ACTIVE")
            self.assertEqual(status(SERVER, dev["id"]), "ACTIVE", "old stays ACTIVE meanwhile")
            # The device connects with its new certificate: the old one becomes INACTIVE (never
            # REVOKED) and its live session is cut.
            with open(path("rot-1-new.pem"), "w") as f:
                f.write(body["certificatePem"])
            code, err = mosquitto(SERVER, path("rot-1-new.pem"), path("rot-1-new.key"), "rot-1")
            self.assertEqual(code, 0, err)
            self.assertTrue(wait_status(SERVER, dev["id"], "INACTIVE"))
            self.assertTrue(live.closed.wait(5), "the old certificate's session is cut")
            groups = json.loads(SERVER.aws("list-thing-groups-for-thing", "--thing-name", "rot-1")
                                .stdout)["thingGroups"]
            self.assertEqual([g["groupName"] for g in groups], ["lockers-rot-1"])
            thing = json.loads(SERVER.aws("describe-thing", "--thing-name", "rot-1").stdout)
            self.assertEqual(thing["attributes"], {"site": "berlin"})
            code, err = mosquitto(SERVER, dev["cert"], dev["key"], "rot-1")
            self.assertNotEqual(code, 0, "the old certificate no longer connects")
            code, err = mosquitto(SERVER, path("rot-1-new.pem"), path("rot-1-new.key"), "rot-1")
            self.assertEqual(code, 0, err)
        finally:
            live.close()

    def test_2_cbor_rotation(self):
        dev = device(SERVER, "rot-2")
        live = Device(SERVER, "rot-2", dev, fmt="cbor")
        try:
            kind, body = live.rotate(new_csr("rot-2-new"))
            self.assertEqual(kind, "accepted", body)
            self.assertEqual(body["previousCertificateId"], dev["id"])
            self.assertEqual(status(SERVER, body["certificateId"]), "ACTIVE")
        finally:
            live.close()

    def test_3_bad_requests_change_nothing(self):
        dev = device(SERVER, "rot-3")
        live = Device(SERVER, "rot-3", dev)
        before = len(json.loads(SERVER.aws("list-certificates").stdout)["certificates"])
        try:
            # The current certificate's own key.
            kind, body = live.rotate(csr_for_key("rot-3-same", dev["key"]))
            self.assertEqual((kind, body["statusCode"], body["errorCode"]),
                             ("rejected", 400, "InvalidRequest"), body)
            self.assertIn("current certificate's key", body["errorMessage"])
            # A key AWS does not accept (RSA 1024).
            kind, body = live.rotate(new_csr("rot-3-weak", ("rsa:1024",)))
            self.assertEqual((kind, body["errorCode"]),
                             ("rejected", "InvalidCertificateSigningRequest"), body)
            # Not a CSR; not JSON.
            kind, body = live.rotate("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
            self.assertEqual(body["errorCode"], "InvalidCertificateSigningRequest", body)
            kind, body = live.rotate(raw=b"{not json")
            self.assertEqual((body["statusCode"], body["errorCode"]), (400, "InvalidPayload"))
        finally:
            live.close()
        after = len(json.loads(SERVER.aws("list-certificates").stdout)["certificates"])
        self.assertEqual(after, before, "nothing was made")
        self.assertEqual(status(SERVER, dev["id"]), "ACTIVE", "the identity is untouched")

    def test_4_without_the_policy_action_or_over_the_rate(self):
        dev = device(SERVER, "rot-4", policy="no-rotation")
        live = Device(SERVER, "rot-4", dev)
        try:
            kind, body = live.rotate(new_csr("rot-4-new"))
            self.assertEqual((kind, body["statusCode"], body["errorCode"]),
                             ("rejected", 403, "AccessDenied"), body)
            self.assertIn("fleetkey:RotateCertificate", body["errorMessage"])
        finally:
            live.close()
        principals = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "rot-4")
                                .stdout)["principals"]
        self.assertEqual(principals, [dev["arn"]])
        # 4 requests an hour for one certificate (the server's setting), then Throttled.
        dev = device(SERVER, "rot-5")
        live = Device(SERVER, "rot-5", dev)
        try:
            kinds = [live.rotate(new_csr("rot-5-%d" % i)) for i in range(5)]
            self.assertEqual([k for k, _ in kinds[:4]], ["accepted"] * 4)
            self.assertEqual((kinds[4][0], kinds[4][1]["statusCode"], kinds[4][1]["errorCode"]),
                             ("rejected", 429, "Throttled"))
            # Each new request replaced the unused certificate before it: one new one remains.
            principals = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "rot-5")
                                    .stdout)["principals"]
            self.assertEqual(len(principals), 2, principals)
            for _, body in kinds[:3]:
                r = SERVER.aws("describe-certificate", "--certificate-id", body["certificateId"],
                               check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("ResourceNotFoundException", r.stderr)
        finally:
            live.close()

    def test_5_overlap_window_ends_old_becomes_inactive_and_its_session_is_cut(self):
        dev = device(SHORT, "rot-6")
        live = Device(SHORT, "rot-6", dev)
        try:
            kind, body = live.rotate(new_csr("rot-6-new"))
            self.assertEqual(kind, "accepted", body)
            self.assertLessEqual(body["previousCertificateDeactivatesAt"], time.time() + 3)
            self.assertTrue(wait_status(SHORT, dev["id"], "INACTIVE", timeout=6))
            self.assertTrue(live.closed.wait(3))
            self.assertEqual(status(SHORT, body["certificateId"]), "ACTIVE")
            with open(path("rot-6-new.pem"), "w") as f:
                f.write(body["certificatePem"])
            code, err = mosquitto(SHORT, path("rot-6-new.pem"), path("rot-6-new.key"), "rot-6")
            self.assertEqual(code, 0, err)
        finally:
            live.close()


def fleetkey(server, *args, check=True):
    r = subprocess.run([FLEETKEY, *args], env=cli_env(server.data_dir), capture_output=True,
                       text=True, timeout=120, cwd=TMP)
    if check and r.returncode != 0:
        raise AssertionError("fleetkey %s: %s" % (" ".join(args), r.stderr))
    return r


class CliRotation(unittest.TestCase):
    def test_6_certs_rotate_for_a_direct_certificate_device(self):
        out = path("direct")
        fleetkey(SERVER, "create-device", "locker-controller-101", "--out", out)
        old = json.loads(fleetkey(SERVER, "--output", "json", "things", "describe",
                                  "locker-controller-101").stdout)
        old_cert = read(os.path.join(out, "device.cert.pem"))
        r = json.loads(fleetkey(SERVER, "--output", "json", "certs", "rotate", "--thing",
                                "locker-controller-101", "--out", out).stdout)
        self.assertNotEqual(read(os.path.join(out, "device.cert.pem")), old_cert)
        self.assertFalse(os.path.exists(os.path.join(out, ".rotation.key")))
        self.assertEqual(oct(os.stat(os.path.join(out, "device.private.key")).st_mode & 0o777),
                         "0o600")
        self.assertEqual(status(SERVER, r["previousCertificateId"]), "ACTIVE")
        code, err = mosquitto(SERVER, os.path.join(out, "device.cert.pem"),
                              os.path.join(out, "device.private.key"), "locker-controller-101")
        self.assertEqual(code, 0, err)
        self.assertTrue(wait_status(SERVER, r["previousCertificateId"], "INACTIVE"))
        self.assertIsNotNone(old)

    def test_7_certs_rotate_resumes_after_a_crash_and_runs_a_batch(self):
        out = path("batch")
        for n in ("locker-201", "locker-202"):
            fleetkey(SERVER, "create-device", n, "--out", os.path.join(out, n))
        # Killed after the server made the certificate, before the bundle was written: the
        # rerun sends the same CSR and gets the same certificate (no second one).
        env_crash = dict(cli_env(SERVER.data_dir), FLEETKEY_FAILPOINT="rotation-issued")
        r = subprocess.run([FLEETKEY, "certs", "rotate", "--thing", "locker-201", "--out",
                            os.path.join(out, "locker-201")], env=env_crash, cwd=TMP,
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(os.path.exists(os.path.join(out, "locker-201", ".rotation.key")))
        first = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "locker-201")
                           .stdout)["principals"]
        self.assertEqual(len(first), 2)
        r = json.loads(fleetkey(SERVER, "--output", "json", "certs", "rotate", "--things",
                                "locker-201,locker-202,no-such-thing", "--out", out,
                                check=False).stdout)
        self.assertEqual(sorted(x["thingName"] for x in r["rotated"]), ["locker-201", "locker-202"])
        self.assertEqual([x["thingName"] for x in r["failed"]], ["no-such-thing"])
        replayed = [x for x in r["rotated"] if x["thingName"] == "locker-201"][0]
        self.assertTrue(replayed["replayed"])
        again = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "locker-201")
                           .stdout)["principals"]
        self.assertEqual(sorted(again), sorted(first), "no second new certificate")
        for n in ("locker-201", "locker-202"):
            code, err = mosquitto(SERVER, os.path.join(out, n, "device.cert.pem"),
                                  os.path.join(out, n, "device.private.key"), n)
            self.assertEqual(code, 0, err)

    def test_8_inactive_or_revoked_certificates_do_not_rotate(self):
        out = path("inactive")
        fleetkey(SERVER, "create-device", "locker-301", "--out", out)
        fleetkey(SERVER, "certs", "deactivate", "--thing", "locker-301")
        r = fleetkey(SERVER, "certs", "rotate", "--thing", "locker-301", "--out", out, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ACTIVE certificates", r.stderr)
        cert_id = json.loads(SERVER.aws("list-thing-principals", "--thing-name", "locker-301")
                             .stdout)["principals"][0].rsplit("/", 1)[1]
        SERVER.aws("update-certificate", "--certificate-id", cert_id, "--new-status", "REVOKED")
        status_code, body = SERVER.fleetkey_api(
            "POST", "/fleetkey/certificates/rotate",
            {"certificateId": cert_id, "certificateSigningRequest": new_csr("locker-301-new")})
        self.assertEqual(status_code, 406, body)  # AWS's CertificateStateException
        self.assertIn("REVOKED", json.dumps(body))
        self.assertEqual(status(SERVER, cert_id), "REVOKED")


if __name__ == "__main__":
    unittest.main(verbosity=2)
