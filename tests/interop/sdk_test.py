"""interop_08: the device SDK against a real fleetkeyd. The locker controller provisions itself
(JSON and CBOR, CSR and server keys, MQTT 3.1.1 and 5), receives a command from mosquitto_pub
and reports its state (mosquitto_sub sees it), resumes after a restart without a second
identity, reconnects after fleetkeyd restarts, and runs on direct certificates from
`fleetkey create-device`; bad credentials and refusals end with their precise errors; the
process killed at every provisioning state and restarted ends with exactly one identity; the
fleet simulator provisions a storm of devices."""
import datetime
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd, LockerProcess, free_port  # noqa: E402

BIN = os.path.dirname(os.path.abspath(os.environ.get("FLEETKEYD", "build/bin/fleetkeyd")))
FLEETKEY = os.path.abspath(os.environ.get("FLEETKEY", os.path.join(BIN, "fleetkey")))
LOCKER = os.environ.get("LOCKER_CONTROLLER", os.path.join(BIN, "locker-controller"))
FLEET_SIM = os.environ.get("FLEET_SIM", os.path.join(BIN, "fleetkey-fleet-sim"))
USAGE = os.environ.get("SDK_USAGE", os.path.join(BIN, "fleetkey-sdk-usage"))
SERVER = None
TMP = None
ADMIN = None
CLAIM = None


def setUpModule():
    global SERVER, TMP, ADMIN, CLAIM
    TMP = tempfile.mkdtemp(prefix="fk_sdk_")
    config = os.path.join(TMP, "fleetkeyd.toml")
    with open(config, "w") as f:
        f.write("[provisioning]\nmax_requests_per_second = 1000\nmax_server_keys_per_second = 1000\nmax_requests_per_client_per_second = 1000\n")
    # Fixed ports: the restart test brings fleetkeyd back where the devices look for it.
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", config, mqtt_port=free_port(),
                       api_port=free_port())
    SERVER.create_policy("admin", ALLOW_ALL)
    ADMIN = SERVER.create_device("admin", policy="admin")
    fleetkey("create-claim", "--template", "LockerTemplate", "--out", "claim")
    CLAIM = os.path.join(TMP, "claim")


def tearDownModule():
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def fleetkey(*args, check=True):
    e = dict(os.environ, FLEETKEY_DATA_DIR=SERVER.data_dir)
    for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FLEETKEY_ENDPOINT_URL"):
        e.pop(k, None)
    r = subprocess.run([FLEETKEY, *args], env=e, cwd=TMP, capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("fleetkey %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def aws_json(*args):
    return json.loads(SERVER.aws(*args).stdout)


def principals_of(thing):
    return [p.rsplit("/", 1)[1] for p in aws_json("list-thing-principals", "--thing-name",
                                                   thing)["principals"]]


def cert_status(cert_id):
    return aws_json("describe-certificate", "--certificate-id",
                    cert_id)["certificateDescription"]["status"]


def Locker(*args, env=None):
    """The locker controller on the current fleetkeyd (tests restart it on the same port)."""
    return LockerProcess(LOCKER, SERVER.mqtt_port, *args, env=env)


def admin_pub(topic, payload):
    subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
                    SERVER.root_ca, "--cert", ADMIN["cert"], "--key", ADMIN["key"],
                    "-i", "admin-pub-%d" % time.time_ns(), "-t", topic, "-m", payload, "-q", "1"],
                   check=True, timeout=20)


class AdminSub:
    def __init__(self, topic, count):
        self.p = subprocess.Popen(
            ["mosquitto_sub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
             SERVER.root_ca, "--cert", ADMIN["cert"], "--key", ADMIN["key"],
             "-i", "admin-sub-%d" % time.time_ns(), "-t", topic, "-C", str(count), "-W", "30"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)

    def messages(self):
        out = self.p.communicate(timeout=40)[0]
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def record_of(state_dir):
    with open(os.path.join(state_dir, "provisioning.json")) as f:
        return json.load(f)


class FleetProvisioning(unittest.TestCase):
    def provision_and_command(self, serial, *flags):
        state = os.path.join(TMP, "state-" + serial)
        thing = "locker-controller-" + serial
        sub = AdminSub("lockers/%s/state" % thing, 2)
        locker = Locker(*[f for f in flags if f == "--mqtt5"], "fleet", "--claim-dir", CLAIM,
                        "--serial", serial, "--state-dir", state,
                        *[f for f in flags if f != "--mqtt5"])
        try:
            locker.wait_for("provisioned: thing " + thing)
            locker.wait_for("state closed published")
            admin_pub("lockers/%s/commands" % thing, "open")
            locker.wait_for("command on lockers/%s/commands: open" % thing)
            locker.wait_for("state open published")
            states = sub.messages()
            self.assertEqual([m["state"] for m in states], ["closed", "open"])
            self.assertEqual(states[1], {"thing": thing, "state": "open", "reason": "open"})
        finally:
            self.assertEqual(locker.stop(), 0)
        rec = record_of(state)
        self.assertEqual(rec["stage"], "registered")
        self.assertEqual(rec["thingName"], thing)
        self.assertNotIn("certificateOwnershipToken", rec)
        # Exactly one identity, ACTIVE, and it is the one on the device.
        self.assertEqual(principals_of(thing), [rec["certificateId"]])
        self.assertEqual(cert_status(rec["certificateId"]), "ACTIVE")
        for name in ("provisioning.json", "device.private.key"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(state, name)).st_mode), 0o600)
        return state, thing, rec

    def test_json_csr_mqtt311(self):
        self.provision_and_command("SN-J311")

    def test_cbor_csr_mqtt5(self):
        self.provision_and_command("SN-C5", "--format", "cbor", "--mqtt5")

    def test_cbor_server_keys(self):
        state, _, rec = self.provision_and_command("SN-CK", "--format", "cbor", "--server-keys")
        self.assertNotIn("certificateSigningRequest", rec)

    def test_json_rsa_key(self):
        state, _, _ = self.provision_and_command("SN-RSA", "--rsa")
        with open(os.path.join(state, "device.private.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        self.assertEqual(key.key_size, 2048)

    def test_restart_reuses_the_identity_and_never_touches_the_claim(self):
        state, thing, rec = self.provision_and_command("SN-RESTART")
        locker = Locker("fleet", "--claim-dir", CLAIM, "--serial", "SN-RESTART",
                        "--state-dir", state)
        try:
            line = locker.wait_for("provisioned: thing " + thing)
            self.assertIn("(1 connections)", line)
            self.assertNotIn("provisioning state: claim-connect", "\n".join(locker.all))
        finally:
            locker.stop()
        self.assertEqual(principals_of(thing), [rec["certificateId"]])

    def test_register_refused_by_the_allow_list(self):
        with open(os.path.join(TMP, "allowed.txt"), "w") as f:
            f.write("SN-LISTED\n")
        fleetkey("create-claim", "--template", "ListedTemplate", "--allow-list",
                 os.path.join(TMP, "allowed.txt"), "--out", "claim-listed")
        state = os.path.join(TMP, "state-unlisted")
        locker = Locker("fleet", "--claim-dir", os.path.join(TMP, "claim-listed"), "--serial",
                        "SN-UNLISTED", "--state-dir", state)
        code, out = locker.finish()
        self.assertEqual(code, 3, out)
        self.assertIn("provisioning failed (registration-rejected): RegisterThing rejected: 403 "
                      "NotAllowed", out)
        self.assertIn("SN-UNLISTED", out)
        self.assertEqual(record_of(state)["stage"], "certificate-issued")

    def test_revoked_claim_is_refused_without_retrying(self):
        fleetkey("create-claim", "--template", "RevokedTemplate", "--out", "claim-revoked")
        with open(os.path.join(TMP, "claim-revoked", "claim.json")) as f:
            claim_id = json.load(f)["claimCertificateId"]
        SERVER.aws("update-certificate", "--certificate-id", claim_id, "--new-status", "REVOKED")
        locker = Locker("fleet", "--claim-dir", os.path.join(TMP, "claim-revoked"), "--serial",
                        "SN-REV", "--state-dir", os.path.join(TMP, "state-rev"))
        code, out = locker.finish()
        self.assertEqual(code, 3, out)
        self.assertIn("provisioning failed (claim-rejected)", out)
        self.assertEqual(out.count("provisioning state: claim-connect"), 1, out)


class PowerLoss(unittest.TestCase):
    POINTS = ["claim-connect", "subscribe", "generate-keys", "save-key-ready", "saved-key-ready",
              "send-request", "save-certificate-issued", "saved-certificate-issued", "register",
              "save-registered", "saved-registered", "device-connect"]

    def test_killed_at_every_state_then_restarted_has_exactly_one_identity(self):
        for i, point in enumerate(self.POINTS):
            with self.subTest(point=point):
                serial = "SN-PL%02d" % i
                thing = "locker-controller-" + serial
                state = os.path.join(TMP, "state-pl-%d" % i)
                args = ("fleet", "--claim-dir", CLAIM, "--serial", serial, "--state-dir", state)
                crashed = Locker(*args, env={"FLEETKEY_SDK_CRASH_AT": point})
                code, out = crashed.finish()
                self.assertEqual(code, -signal.SIGKILL, out)
                self.assertIn("crash point " + point, out)
                locker = Locker(*args)
                try:
                    locker.wait_for("provisioned: thing " + thing, timeout=40)
                    locker.wait_for("state closed published")
                finally:
                    self.assertEqual(locker.stop(), 0)
                rec = record_of(state)
                self.assertEqual(principals_of(thing), [rec["certificateId"]], point)
                self.assertEqual(cert_status(rec["certificateId"]), "ACTIVE")
                said = "\n".join(locker.all)
                if point in ("save-registered", "register"):
                    # Resumed at RegisterThing with the saved token, no new certificate.
                    self.assertIn("provisioning state: register", said)
                    self.assertNotIn("provisioning state: send-request", said)
                if point == "save-registered":
                    # The server had committed and the reply was lost: the token is refused
                    # now, and the device proves its registration by connecting as the thing.
                    self.assertIn("provisioning state: device-connect", said)
                if point in ("saved-registered", "device-connect"):
                    self.assertNotIn("provisioning state: claim-connect", said)


class ServerRestart(unittest.TestCase):
    def test_locker_reconnects_after_fleetkeyd_restarts(self):
        global SERVER
        state = os.path.join(TMP, "state-srv")
        locker = Locker("fleet", "--claim-dir", CLAIM, "--serial", "SN-SRV", "--state-dir", state)
        thing = "locker-controller-SN-SRV"
        try:
            locker.wait_for("state closed published")
            mqtt_port, api_port = SERVER.mqtt_port, int(SERVER.api_url.rsplit(":", 1)[1])
            config = os.path.join(TMP, "fleetkeyd.toml")
            self.assertEqual(SERVER.stop(), 0)
            locker.wait_for("disconnected (network)")
            SERVER = Fleetkeyd(SERVER.data_dir, "--config", config, mqtt_port=mqtt_port,
                               api_port=api_port)
            locker.wait_for("connected as %s (reconnects: 1)" % thing, timeout=60)
            locker.wait_for("state closed published")
            admin_pub("lockers/%s/commands" % thing, json.dumps({"command": "open"}))
            locker.wait_for("state open published")
        finally:
            self.assertEqual(locker.stop(), 0)


class Outage(unittest.TestCase):
    def test_first_boot_during_an_outage_provisions_once_the_server_is_back(self):
        global SERVER
        mqtt_port, api_port = SERVER.mqtt_port, int(SERVER.api_url.rsplit(":", 1)[1])
        config = os.path.join(TMP, "fleetkeyd.toml")
        self.assertEqual(SERVER.stop(), 0)
        state = os.path.join(TMP, "state-outage")
        locker = Locker("fleet", "--claim-dir", CLAIM, "--serial", "SN-OUT", "--state-dir", state)
        try:
            locker.wait_for("provisioning state: backoff (network: TCP connect")
            locker.wait_for("provisioning state: backoff (network: TCP connect")
            SERVER = Fleetkeyd(SERVER.data_dir, "--config", config, mqtt_port=mqtt_port,
                               api_port=api_port)
            locker.wait_for("provisioned: thing locker-controller-SN-OUT", timeout=60)
            locker.wait_for("state closed published")
        finally:
            self.assertEqual(locker.stop(), 0)
        self.assertEqual(principals_of("locker-controller-SN-OUT"),
                         [record_of(state)["certificateId"]])


def make_cert(subject_cn, issuer_cert, issuer_key, key, not_before, not_after):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(issuer_cert.subject if issuer_cert else
                      x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after))
    return b.sign(issuer_key, hashes.SHA256())


def pem(obj):
    if hasattr(obj, "public_bytes") and hasattr(obj, "serial_number"):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class DirectCertificates(unittest.TestCase):
    def test_create_device_bundle_connects_at_once(self):
        fleetkey("create-device", "locker-controller-201")
        d = os.path.join(TMP, "locker-controller-201")
        sub = AdminSub("lockers/locker-controller-201/state", 2)
        locker = Locker("direct", "--cert-dir", d)
        try:
            line = locker.wait_for("direct certificates ok")
            self.assertIn("thing locker-controller-201", line)
            locker.wait_for("state closed published")
            admin_pub("lockers/locker-controller-201/commands", "close")
            locker.wait_for("state closed published")
            self.assertEqual([m["reason"] for m in sub.messages()], ["connected", "close"])
        finally:
            self.assertEqual(locker.stop(), 0)

    def test_revoked_certificate_cuts_the_session_and_is_not_retried(self):
        fleetkey("create-device", "locker-controller-202")
        locker = Locker("direct", "--cert-dir", os.path.join(TMP, "locker-controller-202"))
        locker.wait_for("state closed published")
        fleetkey("certs", "revoke", "--thing", "locker-controller-202")
        code, out = locker.finish(timeout=30)
        self.assertEqual(code, 2, out)
        self.assertIn("refused (device-rejected)", out)
        self.assertEqual(out.count("connected as locker-controller-202"), 1, out)

    def bad_bundle(self, name, cert, key, root):
        d = os.path.join(TMP, "bad-" + name)
        os.makedirs(d)
        for fname, data in (("device.cert.pem", cert), ("device.private.key", key),
                            ("root-ca.pem", root)):
            if data is not None:
                with open(os.path.join(d, fname), "wb") as f:
                    f.write(data)
        locker = Locker("direct", "--cert-dir", d)
        return locker.finish(timeout=20)

    def test_bad_credentials_are_refused_before_connecting(self):
        ca_dir = SERVER.ca_dir
        with open(os.path.join(ca_dir, "issuing-ca.pem"), "rb") as f:
            issuing = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(ca_dir, "issuing-ca.key"), "rb") as f:
            issuing_key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(TMP, "claim", "root-ca.pem"), "rb") as f:
            root = f.read()
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        expired = make_cert("old", issuing, issuing_key, key, now - 10 * day, now - day)
        future = make_cert("early", issuing, issuing_key, key, now + day, now + 10 * day)
        good = make_cert("good", issuing, issuing_key, key, now - day, now + 10 * day)
        other_key = ec.generate_private_key(ec.SECP256R1())
        rogue = make_cert("rogue", None, other_key, other_key, now - day, now + 10 * day)
        cases = [
            ("expired", pem(expired), pem(key), root, "Expired", "expired at"),
            ("future", pem(future), pem(key), root, "NotYetValid", "not valid before"),
            ("mismatch", pem(good), pem(other_key), root, "KeyMismatch", "device.private.key"),
            ("wrongca", pem(rogue), pem(other_key), root, "UntrustedChain",
             "does not chain to the root CA"),
            ("missing", pem(good), None, root, "MissingFile", "device.private.key"),
            ("garbage", b"not a certificate\n", pem(key), root, "Malformed", "no PEM"),
        ]
        for name, cert, k, r, code_name, text in cases:
            with self.subTest(case=name):
                code, out = self.bad_bundle(name, cert, k, r)
                self.assertEqual(code, 2, out)
                self.assertIn("credentials refused (%s)" % code_name, out)
                self.assertIn(text, out)
                self.assertNotIn("connected", out)
        # The control case: the same good certificate with its key passes the checks (its
        # thing has no policy, so the server then refuses it: refused, not a check failure).
        code, out = self.bad_bundle("good", pem(good), pem(key), root)
        self.assertIn("direct certificates ok", out)


class UsageExample(unittest.TestCase):
    def test_the_smallest_program_provisions_then_connects_directly(self):
        state = os.path.join(TMP, "state-usage")
        sub = AdminSub("lockers/locker-controller-SN-USAGE/state", 2)
        for _ in range(2):  # provisions, then runs on the saved credentials
            r = subprocess.run([USAGE, "localhost", str(SERVER.mqtt_port), CLAIM, state,
                                "SN-USAGE"], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout.strip(), "locker-controller-SN-USAGE: published")
        self.assertEqual(sub.p.communicate(timeout=40)[0].split(), ["hello", "hello"])
        self.assertEqual(len(principals_of("locker-controller-SN-USAGE")), 1)


class FleetSimulator(unittest.TestCase):
    def test_a_storm_of_devices_each_gets_one_identity(self):
        r = subprocess.run([FLEET_SIM, "--port", str(SERVER.mqtt_port), "--claim-dir", CLAIM,
                            "--devices", "40", "--concurrency", "20", "--format", "cbor",
                            "--prefix", "SIM-T-", "--json"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual(report["completed"], 40)
        self.assertEqual(report["failed"], {})
        self.assertGreater(report["provisioned_per_s"], 0)
        self.assertLessEqual(report["p50_ms"], report["p99_ms"])
        self.assertEqual(report["connects_per_device"], 2.0)
        for i in (0, 17, 39):
            self.assertEqual(len(principals_of("locker-controller-SIM-T-%d" % i)), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
