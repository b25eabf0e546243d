"""interop_06: the fleetkey CLI against a real fleetkeyd: create-device files that connect and
publish with mosquitto_pub; a batch of 200 with its manifest; a batch killed midway (and one
killed right after fleetkeyd made a certificate) rerun to exactly one thing and one ACTIVE
certificate per device; PKCS#12 bundles; revoking a connected device cuts its session;
create-claim's bundle provisions a device (paho); expiring, status; the bad inputs with their
exit codes and messages."""

import csv
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd, cli_env  # noqa: E402

FLEETKEY = os.environ.get("FLEETKEY", "build/bin/fleetkey")
SERVER = None
TMP = None
ADMIN = None


def setUpModule():
    global SERVER, TMP, ADMIN
    TMP = tempfile.mkdtemp(prefix="fk_cli_")
    config = os.path.join(TMP, "fleetkeyd.toml")
    with open(config, "w") as f:
        f.write("[ca]\ndevice_validity_days = 20\n"
                "[provisioning]\nmax_requests_per_second = 1000\nmax_server_keys_per_second = 1000\nmax_requests_per_client_per_second = 1000\n")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", config)
    SERVER.create_policy("admin", ALLOW_ALL)
    ADMIN = SERVER.create_device("admin", policy="admin")


def tearDownModule():
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def fleetkey(*args, env=None, cwd=None, check=True):
    """Runs the CLI as an operator would, finding fleetkeyd through its data folder."""
    r = subprocess.run([FLEETKEY, *args], env=cli_env(SERVER.data_dir, env), cwd=cwd or TMP, capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("fleetkey %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def fleetkey_json(*args, **kw):
    return json.loads(fleetkey("--output", "json", *args, **kw).stdout)


def aws_json(*args):
    return json.loads(SERVER.aws(*args).stdout)


def cert_id_of(path):
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.fingerprint(hashes.SHA256()).hex()


_SNAPSHOT = r"""
import json, sys, boto3
iot = boto3.client("iot", endpoint_url=sys.argv[1])
prefix = sys.argv[2]
things = [t["thingName"] for p in iot.get_paginator("list_things").paginate()
          for t in p["things"]]
principals = {t: iot.list_thing_principals(thingName=t)["principals"]
              for t in things if prefix and t.startswith(prefix)}
certs = [c for p in iot.get_paginator("list_certificates").paginate(pageSize=250)
         for c in p["certificates"]]
print(json.dumps({"things": things, "principals": principals, "certificates": certs},
                 default=str))
"""


def snapshot(prefix=""):
    """The registry through boto3 (the python3 on PATH has it) in one process: every thing,
    the principals of those named with `prefix`, every certificate."""
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=SERVER.endpoints["credentials_file"],
               AWS_CONFIG_FILE=SERVER.endpoints["aws_config_file"])
    env.pop("AWS_PROFILE", None)
    r = subprocess.run(["python3", "-c", _SNAPSHOT, SERVER.api_url, prefix], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError("boto3 snapshot failed: " + r.stderr)
    return json.loads(r.stdout)


def principals(thing):
    return snapshot(thing)["principals"][thing]


def all_certificates():
    return snapshot()["certificates"]


def things_with_prefix(prefix):
    return [t for t in snapshot()["things"] if t.startswith(prefix)]


def assert_one_active_cert_each(test, names):
    """Exactly one principal per thing, and it is ACTIVE."""
    prefix = os.path.commonprefix(list(names))
    snap = snapshot(prefix)
    statuses = {c["certificateId"]: c["status"] for c in snap["certificates"]}
    ids = set()
    for n in names:
        p = snap["principals"][n]
        test.assertEqual(len(p), 1, n)
        ids.add(p[0].rsplit("/", 1)[1])
    for i in ids:
        test.assertEqual(statuses[i], "ACTIVE")
    return ids


class Subscriber:
    """mosquitto_sub with the admin certificate, collecting lines."""

    def __init__(self, topic):
        self.p = subprocess.Popen(
            ["mosquitto_sub", "-h", "localhost", "-p", str(SERVER.mqtt_port),
             "--cafile", SERVER.root_ca, "--cert", ADMIN["cert"], "--key", ADMIN["key"],
             "-i", "admin-sub-%d" % time.time_ns(), "-t", topic, "-v", "-W", "20"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)

    def lines(self):
        self.p.terminate()
        return self.p.communicate(timeout=10)[0].splitlines()


class CreateDevice(unittest.TestCase):
    def test_files_connect_and_publish_with_mosquitto_pub(self):
        r = fleetkey_json("create-device", "locker-controller-101", "--attributes",
                          "site=berlin,floor=2")
        d = os.path.join(TMP, "locker-controller-101")
        self.assertEqual(r["folder"], "./locker-controller-101")
        for f in ("device.cert.pem", "device.private.key", "root-ca.pem"):
            self.assertTrue(os.path.exists(os.path.join(d, f)), f)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(d, "device.private.key")).st_mode),
                         0o600)
        self.assertEqual(cert_id_of(os.path.join(d, "device.cert.pem")), r["certificateId"])
        self.assertFalse(os.path.exists(os.path.join(d, ".pending.key")))
        thing = aws_json("describe-thing", "--thing-name", "locker-controller-101")
        self.assertEqual(thing["attributes"], {"site": "berlin", "floor": "2"})
        self.assertEqual(len(principals("locker-controller-101")), 1)
        sub = Subscriber("lockers/#")
        p = subprocess.run(
            ["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
             os.path.join(d, "root-ca.pem"), "--cert", os.path.join(d, "device.cert.pem"),
             "--key", os.path.join(d, "device.private.key"), "-i", "locker-controller-101",
             "-t", "lockers/locker-controller-101/state", "-m", "closed", "-q", "1"],
            capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        time.sleep(0.5)
        self.assertIn("lockers/locker-controller-101/state closed", sub.lines())
        # The default policy is thing-scoped: another client id is refused.
        p = subprocess.run(
            ["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
             os.path.join(d, "root-ca.pem"), "--cert", os.path.join(d, "device.cert.pem"),
             "--key", os.path.join(d, "device.private.key"), "-i", "someone-else",
             "-t", "lockers/locker-controller-101/state", "-m", "x"],
            capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        # A rerun changes nothing.
        again = fleetkey_json("create-device", "locker-controller-101")
        self.assertTrue(again["alreadyDone"])
        self.assertEqual(again["certificateId"], r["certificateId"])
        self.assertEqual(len(principals("locker-controller-101")), 1)

    def test_device_csr_keeps_its_key(self):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr-dev")])).sign(
            key, hashes.SHA256())
        path = os.path.join(TMP, "csr-dev.csr")
        with open(path, "wb") as f:
            f.write(csr.public_bytes(serialization.Encoding.PEM))
        r = fleetkey_json("create-device", "csr-dev", "--csr", path, "--out", "csr-out")
        d = os.path.join(TMP, "csr-out")
        self.assertFalse(os.path.exists(os.path.join(d, "device.private.key")))
        with open(os.path.join(d, "device.cert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(cert.public_key().public_numbers(), key.public_key().public_numbers())
        self.assertEqual(r["thingName"], "csr-dev")

    def test_server_keys(self):
        r = fleetkey_json("create-device", "server-keys-dev", "--server-keys", "--out", "sk")
        d = os.path.join(TMP, "sk")
        with open(os.path.join(d, "device.private.key")) as f:
            self.assertIn("PRIVATE KEY", f.read())
        self.assertEqual(aws_json("describe-certificate", "--certificate-id",
                                  r["certificateId"])["certificateDescription"]["status"],
                         "ACTIVE")

    def test_crash_after_the_certificate_was_made_resumes_without_a_second(self):
        before = len(all_certificates())
        r = fleetkey("create-device", "fp-dev", env={"FLEETKEY_FAILPOINT": "certificate-made"},
                     check=False)
        self.assertEqual(r.returncode, 137)
        self.assertEqual(len(all_certificates()), before + 1)  # made, not yet recorded
        self.assertFalse(os.path.exists(os.path.join(TMP, "fp-dev", "device.cert.pem")))
        out = fleetkey_json("create-device", "fp-dev")
        self.assertTrue(out["resumed"])
        self.assertEqual(len(all_certificates()), before + 1)  # found again, not made twice
        assert_one_active_cert_each(self, ["fp-dev"])
        self.assertEqual(cert_id_of(os.path.join(TMP, "fp-dev", "device.cert.pem")),
                         out["certificateId"])

    def test_bad_inputs_exit_codes_and_messages(self):
        fleetkey("create-device", "taken-dev", "--out", "taken")
        r = fleetkey("create-device", "taken-dev", "--out", "taken-elsewhere", check=False)
        self.assertEqual(r.returncode, 6)
        self.assertIn("already exists on fleetkeyd", r.stderr)
        r = fleetkey("create-device", "bad name", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("only letters, digits", r.stderr)
        r = fleetkey("--endpoint-url", "http://127.0.0.1:1", "status", check=False)
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot reach fleetkeyd", r.stderr)
        r = fleetkey("--endpoint-url", SERVER.api_url, "status",
                     env={"AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
                          "AWS_SECRET_ACCESS_KEY": "wrong"}, check=False)
        self.assertEqual(r.returncode, 4)
        self.assertIn("security token included in the request is invalid", r.stderr)
        # An output folder that cannot be made: nothing is left on the server.
        blocker = os.path.join(TMP, "a-file")
        open(blocker, "w").close()
        r = fleetkey("create-device", "unwritable-dev", "--out", blocker + "/dev", check=False)
        self.assertEqual(r.returncode, 7)
        self.assertIn(blocker, r.stderr)
        self.assertEqual(things_with_prefix("unwritable-dev"), [])
        r = fleetkey("create-device", "nopolicy-dev", "--policy", "no-such-policy", check=False)
        self.assertEqual(r.returncode, 5)
        self.assertIn("policy no-such-policy does not exist", r.stderr)
        r = fleetkey("things", "describe", "no-such-thing", check=False)
        self.assertEqual(r.returncode, 5)
        r = fleetkey("expiring", "--within", "3w", check=False)
        self.assertEqual(r.returncode, 2)
        r = fleetkey("create-device", "badcsr-dev", "--csr", blocker, check=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(things_with_prefix("badcsr-dev"), [])


class Batches(unittest.TestCase):
    def test_batch_of_200_with_manifest(self):
        r = fleetkey_json("create-devices", "--prefix", "lc-", "--from", "101", "--to", "300",
                          "--out", "batch200")
        self.assertEqual(r["made"], 200)
        self.assertEqual(r["failed"], 0)
        out = os.path.join(TMP, "batch200")
        with open(os.path.join(out, "manifest.csv")) as f:
            rows = list(csv.DictReader(f))
        with open(os.path.join(out, "manifest.json")) as f:
            devices = json.load(f)["devices"]
        self.assertEqual(len(rows), 200)
        self.assertEqual(len(devices), 200)
        self.assertEqual([x["thing_name"] for x in rows], ["lc-%d" % i for i in range(101, 301)])
        for row in rows[:20] + rows[-5:]:
            cert_path = os.path.join(out, row["thing_name"], "device.cert.pem")
            self.assertEqual(cert_id_of(cert_path), row["certificate_id"])
            self.assertEqual(row["sha256_fingerprint"].replace(":", "").lower(),
                             row["certificate_id"])
            with open(cert_path, "rb") as f:
                c = x509.load_pem_x509_certificate(f.read())
            self.assertEqual(format(c.serial_number, "x"), row["serial"].lstrip("0"))
            self.assertEqual(c.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ"), row["not_after"])
        names = things_with_prefix("lc-")
        self.assertEqual(sorted(names), sorted(x["thing_name"] for x in rows))
        ids = assert_one_active_cert_each(self, names)
        self.assertEqual(ids, {x["certificate_id"] for x in rows})
        # Progress lines when not on a terminal.
        r2 = fleetkey("create-devices", "--prefix", "lc-", "--from", "101", "--to", "300",
                      "--out", "batch200")
        self.assertIn("progress: 200/200 devices", r2.stderr)
        self.assertIn("already done                   200", r2.stdout)

    def test_killed_batch_rerun_has_one_thing_and_one_certificate_each(self):
        before = len(all_certificates())
        args = ["create-devices", "--prefix", "kill-", "--from", "1", "--to", "300",
                "--out", "killed", "--no-progress"]
        out = os.path.join(TMP, "killed")
        e = dict(os.environ, FLEETKEY_DATA_DIR=SERVER.data_dir)
        for cut in (40, 120):  # two kill -9 at different points
            p = subprocess.Popen([FLEETKEY, *args], env=e, cwd=TMP, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while time.time() < deadline:
                done = 0
                if os.path.isdir(out):
                    done = sum(os.path.exists(os.path.join(out, n, "device.cert.pem"))
                               for n in os.listdir(out))
                if done >= cut:
                    break
                time.sleep(0.01)
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.assertLess(len([n for n in os.listdir(out)
                             if os.path.exists(os.path.join(out, n, "device.cert.pem"))]), 300)
        r = fleetkey_json(*args)
        self.assertEqual(r["made"] + r["resumed"] + r["alreadyDone"], 300)
        self.assertGreater(r["alreadyDone"], 0)
        self.assertEqual(r["failed"], 0)
        names = things_with_prefix("kill-")
        self.assertEqual(len(names), 300)
        assert_one_active_cert_each(self, names)
        self.assertEqual(len(all_certificates()), before + 300)  # no stray certificate
        with open(os.path.join(out, "manifest.csv")) as f:
            self.assertEqual(len(list(csv.DictReader(f))), 300)

    def test_ctrl_c_stops_cleanly_and_rerun_finishes(self):
        args = ["create-devices", "--prefix", "int-", "--from", "1", "--to", "400",
                "--out", "interrupted", "--no-progress", "--parallel", "2"]
        e = dict(os.environ, FLEETKEY_DATA_DIR=SERVER.data_dir)
        p = subprocess.Popen([FLEETKEY, *args], env=e, cwd=TMP, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.4)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("rerun the same command", err)
        r = fleetkey_json(*args)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["notStarted"], 0)
        assert_one_active_cert_each(self, things_with_prefix("int-"))
        self.assertEqual(len(things_with_prefix("int-")), 400)

    def test_pkcs12_bundles_keep_keys_encrypted(self):
        r = fleetkey_json("create-devices", "--names-file", self.names_file(), "--out", "p12",
                          "--bundle", "pkcs12", "--passwords-file", "p12-passwords.csv")
        self.assertEqual(r["made"], 3)
        with open(os.path.join(TMP, "p12-passwords.csv")) as f:
            passwords = {row["thing_name"]: row["password"] for row in csv.DictReader(f)}
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(TMP, "p12-passwords.csv")).st_mode),
                         0o600)
        for name in ("site-a-1", "site-a-2", "site-b-1"):
            d = os.path.join(TMP, "p12", name)
            self.assertFalse(os.path.exists(os.path.join(d, "device.private.key")))
            self.assertFalse(os.path.exists(os.path.join(d, ".pending.key")))
            bad = subprocess.run(["openssl", "pkcs12", "-in", os.path.join(d, "device.p12"),
                                  "-passin", "pass:wrong", "-nodes"], capture_output=True)
            self.assertNotEqual(bad.returncode, 0)
            ok = subprocess.run(["openssl", "pkcs12", "-in", os.path.join(d, "device.p12"),
                                 "-passin", "pass:" + passwords[name], "-nodes"],
                                capture_output=True, text=True)
            self.assertEqual(ok.returncode, 0, ok.stderr)
            self.assertIn("PRIVATE KEY", ok.stdout)
            self.assertIn("friendlyName: " + name, ok.stdout)

    def names_file(self):
        path = os.path.join(TMP, "names.txt")
        with open(path, "w") as f:
            f.write("# the lockers of two sites\nsite-a-1\nsite-a-2\n\nsite-b-1\n")
        return path


class Revocation(unittest.TestCase):
    def test_revoking_a_connected_device_cuts_its_session(self):
        fleetkey("create-device", "revoke-dev")
        d = os.path.join(TMP, "revoke-dev")
        c = mqtt.Client(client_id="revoke-dev", protocol=mqtt.MQTTv311)
        ctx = ssl.create_default_context(cafile=os.path.join(d, "root-ca.pem"))
        ctx.load_cert_chain(os.path.join(d, "device.cert.pem"), os.path.join(d, "device.private.key"))
        c.tls_set_context(ctx)
        connected, gone = threading.Event(), threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.on_disconnect = lambda *a: gone.set()
        c.connect("localhost", SERVER.mqtt_port, keepalive=60)
        c.loop_start()
        self.assertTrue(connected.wait(10))
        t0 = time.time()
        r = fleetkey_json("certs", "revoke", "--thing", "revoke-dev")
        self.assertEqual(r[0]["status"], "REVOKED")
        self.assertTrue(gone.wait(5))
        self.assertLess(time.time() - t0, 1.5)
        c.loop_stop()
        cert_id = principals("revoke-dev")[0].rsplit("/", 1)[1]
        self.assertEqual(aws_json("describe-certificate", "--certificate-id",
                                  cert_id)["certificateDescription"]["status"], "REVOKED")
        # things delete --with-certificates removes the rest.
        fleetkey("things", "delete", "revoke-dev", "--with-certificates")
        r = SERVER.aws("describe-certificate", "--certificate-id", cert_id, check=False)
        self.assertIn("ResourceNotFoundException", r.stderr)


class Claim(unittest.TestCase):
    def provision(self, bundle, serial):
        """The device's side of fleet provisioning with the claim bundle (paho, JSON, CSR)."""
        with open(os.path.join(bundle, "claim.json")) as f:
            claim = json.load(f)
        c = mqtt.Client(client_id="claim-" + serial, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=os.path.join(bundle, "root-ca.pem"))
        ctx.load_cert_chain(os.path.join(bundle, "claim.cert.pem"),
                            os.path.join(bundle, "claim.private.key"))
        c.tls_set_context(ctx)
        replies, cond = [], threading.Condition()

        def on_message(cl, u, m):
            with cond:
                replies.append((m.topic, json.loads(m.payload)))
                cond.notify_all()

        c.on_message = on_message
        c.connect(claim["endpoint"], claim["port"])
        c.loop_start()
        create = "$aws/certificates/create-from-csr/json"
        prov = "$aws/provisioning-templates/%s/provision/json" % claim["templateName"]
        for t in (create + "/+", prov + "/+"):
            c.subscribe(t, 1)
        time.sleep(0.4)

        def request(topic, body):
            with cond:
                replies.clear()
            c.publish(topic, json.dumps(body), qos=1)
            with cond:
                cond.wait_for(lambda: replies, timeout=10)
                self.assertTrue(replies, "no reply on " + topic)
                return replies[0]

        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)])).sign(key, hashes.SHA256())
        topic, made = request(create, {"certificateSigningRequest": csr.public_bytes(
            serialization.Encoding.PEM).decode()})
        self.assertTrue(topic.endswith("/accepted"), made)
        topic, reg = request(prov, {"certificateOwnershipToken": made["certificateOwnershipToken"],
                                    "parameters": {"SerialNumber": serial}})
        c.loop_stop()
        c.disconnect()
        return topic.endswith("/accepted"), reg, made, key

    def test_claim_bundle_provisions_a_device(self):
        allow = os.path.join(TMP, "serials.txt")
        with open(allow, "w") as f:
            f.write("SN-0001\nSN-0002\n")
        r = fleetkey_json("create-claim", "--template", "LockerFleet", "--allow-list", allow,
                          "--out", "claim")
        bundle = os.path.join(TMP, "claim")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(bundle, "claim.private.key")).st_mode),
                         0o600)
        self.assertEqual(r["claimPolicy"], "LockerFleet-claim")
        claim_policy = aws_json("get-policy", "--policy-name", "LockerFleet-claim")
        self.assertIn("$aws/provisioning-templates/LockerFleet/provision/*",
                      claim_policy["policyDocument"])
        ok, reg, made, key = self.provision(bundle, "SN-0001")
        self.assertTrue(ok, reg)
        self.assertEqual(reg["thingName"], "locker-controller-SN-0001")
        self.assertEqual(reg["deviceConfiguration"]["commandsTopic"],
                         "lockers/locker-controller-SN-0001/commands")
        # The device reconnects as itself and publishes its state.
        cert = os.path.join(TMP, "sn1.pem")
        keyf = os.path.join(TMP, "sn1.key")
        with open(cert, "w") as f:
            f.write(made["certificatePem"])
        with open(keyf, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        p = subprocess.run(
            ["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
             os.path.join(bundle, "root-ca.pem"), "--cert", cert, "--key", keyf,
             "-i", "locker-controller-SN-0001", "-t", "lockers/locker-controller-SN-0001/state",
             "-m", "open", "-q", "1"], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        # Locked down: a serial outside the allow-list, and a serial used twice, are refused.
        ok, reg, _, _ = self.provision(bundle, "SN-9999")
        self.assertFalse(ok)
        ok, reg, _, _ = self.provision(bundle, "SN-0001")
        self.assertFalse(ok)
        # A second claim bundle into the same folder is refused, not overwritten.
        r = fleetkey("create-claim", "--template", "LockerFleet", "--out", "claim", check=False)
        self.assertEqual(r.returncode, 6)
        desc = fleetkey_json("templates", "describe", "LockerFleet")
        self.assertEqual(desc["allowList"]["parameter"], "SerialNumber")
        # Issue 15: the allow-list can be inspected: counts and each value, used or not.
        self.assertEqual((desc["allowList"]["values"], desc["allowList"]["used"],
                          desc["allowList"]["unused"]), (2, 1, 1))
        shown = fleetkey_json("templates", "allow-list", "show", "LockerFleet")
        self.assertEqual(shown["values"], [{"value": "SN-0001", "used": True},
                                           {"value": "SN-0002", "used": False}])
        unused = fleetkey_json("templates", "allow-list", "show", "LockerFleet", "--unused")
        self.assertEqual([v["value"] for v in unused["values"]], ["SN-0002"])

    def test_claim_for_an_existing_template_names_that_template_s_device_policy(self):
        """Issue 15: create-claim used to report fleetkey-device for any existing template."""
        body = {"Parameters": {"SerialNumber": {"Type": "String"},
                               "AWS::IoT::Certificate::Id": {"Type": "String"}},
                "Resources": {
                    "thing": {"Type": "AWS::IoT::Thing",
                              "Properties": {"ThingName": {"Ref": "SerialNumber"}}},
                    "certificate": {"Type": "AWS::IoT::Certificate",
                                    "Properties": {"CertificateId":
                                                   {"Ref": "AWS::IoT::Certificate::Id"},
                                                   "Status": "ACTIVE"}},
                    "policy": {"Type": "AWS::IoT::Policy",
                               "Properties": {"PolicyName": "vending-device"}}}}
        SERVER.create_policy("vending-device", ALLOW_ALL)
        SERVER.aws("create-provisioning-template", "--template-name", "Vending",
                   "--template-body", json.dumps(body), "--provisioning-role-arn",
                   "arn:aws:iam::123456789012:role/provisioning", "--enabled")
        r = fleetkey_json("create-claim", "--template", "Vending", "--out", "claim-vending")
        self.assertEqual(r["devicePolicy"], "vending-device")
        self.assertTrue(r["templateExisted"])
        with open(os.path.join(TMP, "claim-vending", "claim.json")) as f:
            self.assertEqual(json.load(f)["devicePolicy"], "vending-device")


class RoughEdges(unittest.TestCase):
    """Issue 15, defect 7."""

    def test_global_flags_work_after_the_subcommand(self):
        status = json.loads(fleetkey("status", "--output", "json").stdout)
        self.assertEqual(status["status"], "ok")
        nested = json.loads(fleetkey("things", "list", "--output", "json").stdout)
        self.assertIsInstance(nested, list)

    def test_create_device_of_a_revoked_identity_is_not_nothing_to_do(self):
        fleetkey("create-device", "revoked-dev")
        fleetkey("certs", "revoke", "--thing", "revoked-dev")
        r = fleetkey("create-device", "revoked-dev", check=False)
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)
        self.assertIn("is now REVOKED", r.stderr)
        self.assertNotIn("nothing to do", r.stdout)

    def test_batch_stops_when_fleetkeyd_goes_away_with_exit_3(self):
        other = Fleetkeyd(os.path.join(TMP, "data-gone"))
        try:
            e = cli_env(other.data_dir)
            out = os.path.join(TMP, "gone")
            p = subprocess.Popen([FLEETKEY, "create-devices", "--prefix", "gone-", "--from", "1",
                                  "--to", "400", "--out", "gone", "--no-progress",
                                  "--parallel", "2"],
                                 env=e, cwd=TMP, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            deadline = time.time() + 60
            while time.time() < deadline:
                if os.path.isdir(out) and sum(
                        os.path.exists(os.path.join(out, n, "device.cert.pem"))
                        for n in os.listdir(out)) >= 20:
                    break
                time.sleep(0.01)
            other.proc.send_signal(signal.SIGKILL)  # fleetkeyd goes away mid-batch
            stdout, stderr = p.communicate(timeout=120)
        finally:
            other.cleanup()
        self.assertEqual(p.returncode, 3, stderr[-2000:])
        failed = [l for l in stderr.splitlines() if l.startswith("failed: ")]
        self.assertLessEqual(len(failed), 2, "stopped at the first failures (2 workers)")
        self.assertIn("cannot be reached", stderr)


class Reports(unittest.TestCase):
    def test_expiring_and_status(self):
        fleetkey("create-device", "expiry-dev")
        soon = fleetkey_json("expiring", "--within", "30d")["certificates"]
        entry = [c for c in soon if "expiry-dev" in c["things"]]
        self.assertEqual(len(entry), 1)
        self.assertLessEqual(entry[0]["notAfter"], time.time() + 20 * 86400 + 60)
        self.assertEqual(fleetkey_json("expiring", "--within", "10d")["certificates"], [])
        table = fleetkey("expiring", "--within", "30d").stdout
        self.assertIn("expiry-dev", table)
        self.assertIn("19d", table)
        status = fleetkey_json("status")
        things = aws_json("list-things")["things"]
        self.assertEqual(status["things"], len(things))
        certs = all_certificates()
        self.assertEqual(status["certificates"]["ACTIVE"],
                         len([c for c in certs if c["status"] == "ACTIVE"]))
        self.assertEqual(status["status"], "ok")
        listed = fleetkey_json("things", "list")
        self.assertEqual(len(listed), len(things))


if __name__ == "__main__":
    unittest.main(verbosity=2)
