"""Issue 19, part 2: just-in-time registration (JITR) and provisioning (JITP) from a CA made by
openssl here (not by fleetkeyd), registered with the aws CLI the way AWS's JITR and JITP guides
do it; the devices are mosquitto_pub and paho presenting their certificate together with the CA
certificate. The events subscriber is a paho client with a fleetkey-made certificate."""

import hashlib
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

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd, write_config  # noqa: E402

SERVER = None  # AWS's behaviour: the first connect is refused
EAGER = None  # [provisioning] jitp_first_connect = "accept"
TMP = None
ROLE = "arn:aws:iam::123456789012:role/JITPRole"

# AWS's JITP guide's template, in substance: the thing named after the certificate's CN with its
# country as an attribute, a policy of its own, the certificate ACTIVE.
JITP_TEMPLATE = {
    "Parameters": {
        "AWS::IoT::Certificate::CommonName": {"Type": "String"},
        "AWS::IoT::Certificate::Country": {"Type": "String"},
        "AWS::IoT::Certificate::Id": {"Type": "String"},
    },
    "Resources": {
        "thing": {
            "Type": "AWS::IoT::Thing",
            "Properties": {
                "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
                "AttributePayload": {"version": "v1",
                                     "country": {"Ref": "AWS::IoT::Certificate::Country"}},
            },
        },
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                           "Status": "ACTIVE"},
        },
        "policy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {"PolicyDocument": json.dumps({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "iot:Connect",
                     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
                    {"Effect": "Allow", "Action": "iot:Publish",
                     "Resource": "arn:aws:iot:*:*:topic/lockers/${iot:Connection.Thing.ThingName}"},
                ]})},
        },
    },
}


def setUpModule():
    global SERVER, EAGER, TMP
    TMP = tempfile.mkdtemp(prefix="fk_jit_")
    SERVER = start("refuse")
    EAGER = start("accept")


def start(mode):
    cfg = write_config(os.path.join(TMP, mode + ".toml"),
                       '[provisioning]\njitp_first_connect = "%s"\n' % mode, "jit_" + mode)
    os.makedirs(os.path.join(TMP, mode), exist_ok=True)
    server = Fleetkeyd(os.path.join(TMP, mode, "data"), "--config", cfg)
    server.create_policy("admin", ALLOW_ALL)
    return server


def tearDownModule():
    codes = [SERVER.stop(), EAGER.stop()]
    if not os.environ.get("FK_KEEP_TMP"):
        subprocess.run(["rm", "-rf", TMP])
    if codes != [0, 0]:
        raise AssertionError("fleetkeyd did not stop cleanly: %s" % codes)


def path(name):
    return os.path.join(TMP, name)


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


def read(p):
    with open(p) as f:
        return f.read()


def make_ca(name):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", path(name + ".key"), "-out", path(name + ".pem"), "-subj", "/O=Acme/CN=" + name,
        "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return path(name + ".pem")


def make_device(ca, name, subject):
    """A device key and certificate signed by `ca`; returns (cert + CA chain, key, certificateId)."""
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", path(name + ".key"), "-out", path(name + ".csr"), "-subj", subject)
    run("openssl", "x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca + ".pem"),
        "-CAkey", path(ca + ".key"), "-set_serial", str(int(time.time() * 1e6) % 10**12),
        "-out", path(name + ".pem"), "-days", "30")
    der = subprocess.run(["openssl", "x509", "-in", path(name + ".pem"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(path(name + ".chain.pem"), "w") as f:
        f.write(read(path(name + ".pem")) + read(path(ca + ".pem")))
    return path(name + ".chain.pem"), path(name + ".key"), hashlib.sha256(der).hexdigest()


def register_ca(server, name, *extra):
    """RegisterCACertificate with a verification certificate (CN = the registration code)."""
    code = json.loads(server.aws("get-registration-code").stdout)["registrationCode"]
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", path(name + "-verif.key"), "-out", path(name + "-verif.csr"), "-subj", "/CN=" + code)
    run("openssl", "x509", "-req", "-in", path(name + "-verif.csr"), "-CA", path(name + ".pem"),
        "-CAkey", path(name + ".key"), "-out", path(name + "-verif.pem"), "-days", "30")
    out = server.aws("register-ca-certificate", "--ca-certificate", "file://" + path(name + ".pem"),
                     "--verification-cert", "file://" + path(name + "-verif.pem"),
                     "--set-as-active", *extra)
    return json.loads(out.stdout)["certificateId"]


def publish(server, chain, key, client_id, topic="lockers/x"):
    """mosquitto_pub as the device: (exit code, stderr)."""
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(server.mqtt_port),
                        "--cafile", server.root_ca, "--cert", chain, "--key", key, "-i", client_id,
                        "-t", topic, "-m", "hello", "-q", "1"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


def aws_error(server, *args):
    """The AWS error code of an aws CLI call that must fail."""
    r = server.aws(*args, check=False)
    if r.returncode == 0:
        raise AssertionError("aws iot %s succeeded" % " ".join(args))
    found = re.search(r"An error occurred \((\w+)\)", r.stderr)
    return found.group(1) if found else r.stderr


def describe_status(server, cert_id):
    out = json.loads(server.aws("describe-certificate", "--certificate-id", cert_id).stdout)
    return out["certificateDescription"]["status"], out["certificateDescription"]


class Events:
    """A paho subscriber on $aws/events/certificates/registered/# (what AWS's JITR guide has a
    rule forward to a Lambda)."""

    def __init__(self, server, name):
        dev = server.create_device(name, policy="admin")
        self.messages = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=name, protocol=mqtt.MQTTv311)
        ctx = ssl.create_default_context(cafile=server.root_ca)
        ctx.load_cert_chain(dev["cert"], dev["key"])
        self.c.tls_set_context(ctx)
        self.c.on_connect = lambda c, u, f, rc, *a: c.subscribe(
            "$aws/events/certificates/registered/#", qos=0)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload)))
        self.c.connect("localhost", server.mqtt_port, keepalive=60)
        self.c.loop_start()
        assert self.subscribed.wait(10), "events subscriber did not subscribe"

    def wait(self, count, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.messages) < count:
            time.sleep(0.02)
        return self.messages

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class JustInTimeRegistration(unittest.TestCase):
    def test_1_jitr_registers_pending_publishes_event_then_activated_device_connects(self):
        ca = make_ca("jitr-ca")
        ca_id = register_ca(SERVER, "jitr-ca", "--allow-auto-registration")
        described = json.loads(SERVER.aws("describe-ca-certificate", "--certificate-id",
                                          ca_id).stdout)
        self.assertEqual(described["certificateDescription"]["autoRegistrationStatus"], "ENABLE")
        events = Events(SERVER, "jitr-rule")
        try:
            chain, key, cert_id = make_device("jitr-ca", "jitr-dev", "/C=US/O=Acme/CN=locker-201")
            code, err = publish(SERVER, chain, key, "locker-201")
            self.assertNotEqual(code, 0, "the first connect is refused (AWS's JITR)")
            self.assertIn("not authorised", err)
            msgs = events.wait(1)
            self.assertEqual(len(msgs), 1, msgs)
            topic, body = msgs[0]
            self.assertEqual(topic, "$aws/events/certificates/registered/" + ca_id)
            self.assertEqual(body["certificateId"], cert_id)
            self.assertEqual(body["caCertificateId"], ca_id)
            self.assertEqual(body["certificateStatus"], "PENDING_ACTIVATION")
            self.assertEqual(body["awsAccountId"], SERVER.endpoints["account_id"])
            self.assertIsInstance(body["timestamp"], int)
            self.assertIn("certificateRegistrationTimestamp", body)
            status, desc = describe_status(SERVER, cert_id)
            self.assertEqual(status, "PENDING_ACTIVATION")
            self.assertEqual(desc["caCertificateId"], ca_id)
            self.assertEqual(desc["certificatePem"].strip(), read(path("jitr-dev.pem")).strip())

            # Connecting again before activation: refused, registered once, no second event.
            code, err = publish(SERVER, chain, key, "locker-201")
            self.assertNotEqual(code, 0)
            time.sleep(0.3)
            self.assertEqual(len(events.messages), 1)
            self.assertIn("PENDING_ACTIVATION", SERVER.read_log())

            # What the guide's Lambda does: activate, attach a policy; the device then connects.
            SERVER.aws("update-certificate", "--certificate-id", cert_id, "--new-status", "ACTIVE")
            SERVER.aws("attach-policy", "--policy-name", "admin", "--target", desc["certificateArn"])
            code, err = publish(SERVER, chain, key, "locker-201")
            self.assertEqual(code, 0, err)
            # The device certificate alone (no CA certificate in the chain) also works once known.
            code, err = publish(SERVER, path("jitr-dev.pem"), key, "locker-201")
            self.assertEqual(code, 0, err)
        finally:
            events.close()

    def test_2_auto_registration_off_or_ca_inactive_registers_nothing(self):
        make_ca("off-ca")
        ca_id = register_ca(SERVER, "off-ca")  # auto-registration not allowed
        events = Events(SERVER, "off-rule")
        try:
            chain, key, cert_id = make_device("off-ca", "off-dev", "/CN=locker-202")
            code, _ = publish(SERVER, chain, key, "locker-202")
            self.assertNotEqual(code, 0)
            self.assertEqual(aws_error(SERVER, "describe-certificate", "--certificate-id",
                                        cert_id), "ResourceNotFoundException")
            self.assertTrue(SERVER.wait_log("does not allow auto-registration"))
            # Enabled afterwards (update-ca-certificate, as AWS's guide shows): the next connect
            # registers it.
            SERVER.aws("update-ca-certificate", "--certificate-id", ca_id,
                       "--new-auto-registration-status", "ENABLE")
            code, _ = publish(SERVER, chain, key, "locker-202")
            self.assertNotEqual(code, 0)
            self.assertEqual(describe_status(SERVER, cert_id)[0], "PENDING_ACTIVATION")
            self.assertEqual(len(events.wait(1)), 1)

            # The CA made INACTIVE: its devices fail the TLS handshake; nothing is registered.
            SERVER.aws("update-ca-certificate", "--certificate-id", ca_id, "--new-status",
                       "INACTIVE")
            chain2, key2, cert2 = make_device("off-ca", "off-dev2", "/CN=locker-203")
            deadline = time.time() + 5
            code, err = publish(SERVER, chain2, key2, "locker-203")
            while code == 0 and time.time() < deadline:  # trust anchors swap within ms
                time.sleep(0.05)
                code, err = publish(SERVER, chain2, key2, "locker-203")
            self.assertNotEqual(code, 0)
            self.assertEqual(aws_error(SERVER, "describe-certificate", "--certificate-id",
                                        cert2), "ResourceNotFoundException")
            time.sleep(0.3)
            self.assertEqual(len(events.messages), 1)
        finally:
            events.close()

    def test_3_a_chain_with_the_wrong_ca_is_refused_and_registers_nothing(self):
        make_ca("known-ca")
        register_ca(SERVER, "known-ca", "--allow-auto-registration")
        make_ca("stranger-ca")  # never registered
        _, key, cert_id = make_device("stranger-ca", "stranger-dev", "/CN=locker-204")
        # Signed by the stranger, presented with the registered CA's certificate.
        with open(path("wrong.chain.pem"), "w") as f:
            f.write(read(path("stranger-dev.pem")) + read(path("known-ca.pem")))
        code, err = publish(SERVER, path("wrong.chain.pem"), key, "locker-204")
        self.assertNotEqual(code, 0)
        code, err = publish(SERVER, path("stranger-dev.chain.pem"), key, "locker-204")
        self.assertNotEqual(code, 0)
        self.assertEqual(aws_error(SERVER, "describe-certificate", "--certificate-id",
                                    cert_id), "ResourceNotFoundException")

    def test_4_racing_first_connects_register_once(self):
        make_ca("race-ca")
        register_ca(SERVER, "race-ca", "--allow-auto-registration")
        events = Events(SERVER, "race-rule")
        try:
            chain, key, cert_id = make_device("race-ca", "race-dev", "/CN=locker-205")
            procs = [subprocess.Popen(
                ["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
                 SERVER.root_ca, "--cert", chain, "--key", key, "-i", "locker-205-%d" % i, "-t",
                 "x", "-m", "m"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for i in range(6)]
            codes = [p.wait(timeout=30) for p in procs]
            self.assertTrue(all(c != 0 for c in codes), codes)
            self.assertEqual(describe_status(SERVER, cert_id)[0], "PENDING_ACTIVATION")
            time.sleep(0.5)
            mine = [m for m in events.messages if m[1]["certificateId"] == cert_id]
            self.assertEqual(len(mine), 1, events.messages)
        finally:
            events.close()


class JustInTimeProvisioning(unittest.TestCase):
    def test_5_jitp_inline_template_first_connect_refused_then_device_works(self):
        make_ca("jitp-ca")
        with open(path("jitp-config.json"), "w") as f:
            json.dump({"templateBody": json.dumps(JITP_TEMPLATE), "roleArn": ROLE}, f)
        ca_id = register_ca(SERVER, "jitp-ca", "--allow-auto-registration",
                            "--registration-config", "file://" + path("jitp-config.json"))
        described = json.loads(SERVER.aws("describe-ca-certificate", "--certificate-id",
                                          ca_id).stdout)
        self.assertEqual(described["registrationConfig"]["roleArn"], ROLE)
        self.assertEqual(json.loads(described["registrationConfig"]["templateBody"]),
                         JITP_TEMPLATE)
        chain, key, cert_id = make_device("jitp-ca", "jitp-dev", "/C=DE/O=Acme/CN=locker-301")
        code, err = publish(SERVER, chain, key, "locker-301", "lockers/locker-301")
        self.assertNotEqual(code, 0, "AWS's JITP: the provisioning connect is refused")
        status, desc = describe_status(SERVER, cert_id)
        self.assertEqual(status, "ACTIVE")
        self.assertEqual(desc["caCertificateId"], ca_id)
        thing = json.loads(SERVER.aws("describe-thing", "--thing-name", "locker-301").stdout)
        self.assertEqual(thing["attributes"], {"version": "v1", "country": "DE"})
        principals = json.loads(SERVER.aws("list-thing-principals", "--thing-name",
                                           "locker-301").stdout)["principals"]
        self.assertEqual(principals, [desc["certificateArn"]])
        policies = json.loads(SERVER.aws("list-attached-policies", "--target",
                                         desc["certificateArn"]).stdout)["policies"]
        self.assertEqual(len(policies), 1)
        # The reconnect works, within what the template's policy allows.
        code, err = publish(SERVER, chain, key, "locker-301", "lockers/locker-301")
        self.assertEqual(code, 0, err)

    def test_6_jitp_template_failures_make_nothing(self):
        make_ca("bad-ca")
        with open(path("bad-config.json"), "w") as f:
            json.dump({"templateBody": json.dumps(JITP_TEMPLATE), "roleArn": ROLE}, f)
        ca_id = register_ca(SERVER, "bad-ca", "--allow-auto-registration",
                            "--registration-config", "file://" + path("bad-config.json"))
        # The template declares Country; this certificate has none: provisioning fails.
        chain, key, cert_id = make_device("bad-ca", "nocountry", "/O=Acme/CN=locker-302")
        code, _ = publish(SERVER, chain, key, "locker-302")
        self.assertNotEqual(code, 0)
        self.assertTrue(SERVER.wait_log("the certificate has no subject field Country"))
        self.assertEqual(aws_error(SERVER, "describe-certificate", "--certificate-id",
                                    cert_id), "ResourceNotFoundException")
        self.assertEqual(aws_error(SERVER, "describe-thing", "--thing-name", "locker-302"),
                         "ResourceNotFoundException")
        # A template whose policy name does not exist: the transaction keeps nothing.
        broken = json.loads(json.dumps(JITP_TEMPLATE))
        broken["Resources"]["policy"]["Properties"] = {"PolicyName": "no-such-policy"}
        SERVER.aws("update-ca-certificate", "--certificate-id", ca_id, "--registration-config",
                   json.dumps({"templateBody": json.dumps(broken), "roleArn": ROLE}))
        chain, key, cert_id = make_device("bad-ca", "nopolicy", "/C=FR/O=Acme/CN=locker-303")
        code, _ = publish(SERVER, chain, key, "locker-303")
        self.assertNotEqual(code, 0)
        self.assertEqual(aws_error(SERVER, "describe-certificate", "--certificate-id",
                                    cert_id), "ResourceNotFoundException")
        self.assertEqual(aws_error(SERVER, "describe-thing", "--thing-name", "locker-303"),
                         "ResourceNotFoundException")
        # Bad registration configs are refused when stored, in AWS's shape.
        for config in ({"templateBody": "{not json", "roleArn": ROLE},
                       {"templateBody": json.dumps(JITP_TEMPLATE)},  # no roleArn
                       {"templateName": "no-such-template"}):
            code = aws_error(SERVER, "update-ca-certificate", "--certificate-id", ca_id,
                              "--registration-config", json.dumps(config))
            self.assertIn(code, ("InvalidRequestException", "ResourceNotFoundException"), config)
        SERVER.aws("create-provisioning-template", "--template-name", "fleet-tpl",
                   "--provisioning-role-arn", ROLE, "--template-body", json.dumps(JITP_TEMPLATE))
        self.assertEqual(aws_error(SERVER, "update-ca-certificate", "--certificate-id", ca_id,
                                    "--registration-config", json.dumps({"templateName": "fleet-tpl"})),
                         "InvalidRequestException")
        # removeAutoRegistration: off, and the template forgotten.
        SERVER.aws("update-ca-certificate", "--certificate-id", ca_id, "--remove-auto-registration")
        described = json.loads(SERVER.aws("describe-ca-certificate", "--certificate-id",
                                          ca_id).stdout)
        self.assertEqual(described["certificateDescription"]["autoRegistrationStatus"], "DISABLE")
        self.assertNotIn("registrationConfig", described)

    def test_7_jitp_by_template_name_accepted_at_once_when_configured(self):
        make_ca("eager-ca")
        EAGER.aws("create-provisioning-template", "--template-name", "jitp-lockers",
                  "--type", "JITP", "--provisioning-role-arn", ROLE, "--enabled",
                  "--template-body", json.dumps(JITP_TEMPLATE))
        register_ca(EAGER, "eager-ca", "--allow-auto-registration", "--registration-config",
                    "templateName=jitp-lockers")
        chain, key, cert_id = make_device("eager-ca", "eager-dev", "/C=NL/O=Acme/CN=locker-401")
        code, err = publish(EAGER, chain, key, "locker-401", "lockers/locker-401")
        self.assertEqual(code, 0, "jitp_first_connect = accept: the first connect goes on: " + err)
        self.assertEqual(describe_status(EAGER, cert_id)[0], "ACTIVE")
        thing = json.loads(EAGER.aws("describe-thing", "--thing-name", "locker-401").stdout)
        self.assertEqual(thing["attributes"]["country"], "NL")
        # A disabled template provisions nothing.
        EAGER.aws("update-provisioning-template", "--template-name", "jitp-lockers",
                  "--no-enabled")
        chain, key, cert_id = make_device("eager-ca", "eager-dev2", "/C=NL/O=Acme/CN=locker-402")
        code, _ = publish(EAGER, chain, key, "locker-402", "lockers/locker-402")
        self.assertNotEqual(code, 0)
        self.assertTrue(EAGER.wait_log("template jitp-lockers is disabled"))
        self.assertEqual(aws_error(EAGER, "describe-certificate", "--certificate-id",
                                    cert_id), "ResourceNotFoundException")


if __name__ == "__main__":
    unittest.main(verbosity=2)
