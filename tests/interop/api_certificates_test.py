"""interop_07: certificates from outside fleetkey's CA and the provisioning operations of the
API, through boto3 and the aws CLI against a real fleetkeyd: GetRegistrationCode,
RegisterCACertificate with its verification certificate, Describe/Update/List/Delete CA,
RegisterCertificate (its device then connects with mosquitto_pub, and is refused once its CA is
INACTIVE), RegisterCertificateWithoutCA, ListCertificatesByCA with paginators, RegisterThing
over HTTP, CreateProvisioningClaim (5 minutes), and each operation group's AWS errors through
the aws CLI."""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest

import boto3
import botocore.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd, error_code  # noqa: E402

SERVER = None
IOT = None
TMP = None


def setUpModule():
    global SERVER, IOT, TMP
    SERVER = Fleetkeyd()
    TMP = tempfile.mkdtemp(prefix="fk_api_certs_")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = SERVER.endpoints["credentials_file"]
    os.environ["AWS_CONFIG_FILE"] = SERVER.endpoints["aws_config_file"]
    os.environ.pop("AWS_PROFILE", None)
    IOT = boto3.session.Session().client("iot", endpoint_url=SERVER.api_url)
    IOT.create_policy(policyName="all", policyDocument=json.dumps(ALLOW_ALL))


def tearDownModule():
    code = SERVER.stop()
    SERVER.cleanup()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert, ca_key, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def mosquitto_pub(cert, key, client_id):
    c = write(os.path.join(TMP, client_id + ".pem"), pem(cert))
    k = write(os.path.join(TMP, client_id + ".key"), key_pem(key))
    return subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(SERVER.mqtt_port), "--cafile",
         SERVER.root_ca, "--cert", c, "--key", k, "-i", client_id, "-t", "lockers/x/state",
         "-m", "hello", "-q", "1"], capture_output=True, text=True, timeout=20)


class CaCertificates(unittest.TestCase):
    def test_register_ca_then_its_devices(self):
        code = IOT.get_registration_code()["registrationCode"]
        self.assertRegex(code, "^[0-9a-f]{64}$")
        self.assertEqual(IOT.get_registration_code()["registrationCode"], code)  # stable
        IOT.delete_registration_code()
        new_code = IOT.get_registration_code()["registrationCode"]
        self.assertNotEqual(new_code, code)
        ca0, ca0_key = make_ca("Factory CA 0")
        stale, _ = issue(ca0, ca0_key, code)
        self.assertEqual(error_code(IOT.register_ca_certificate, caCertificate=pem(ca0),
                                    verificationCertificate=pem(stale)),
                         ("RegistrationCodeValidationException", 400))
        code = new_code
        ca_cert, ca_key = make_ca("Factory CA 1")
        verification, _ = issue(ca_cert, ca_key, code)
        wrong, _ = issue(ca_cert, ca_key, "not-the-code")
        self.assertEqual(error_code(IOT.register_ca_certificate, caCertificate=pem(ca_cert),
                                    verificationCertificate=pem(wrong)),
                         ("RegistrationCodeValidationException", 400))
        r = IOT.register_ca_certificate(caCertificate=pem(ca_cert),
                                        verificationCertificate=pem(verification),
                                        setAsActive=True, allowAutoRegistration=False)
        ca_id = r["certificateId"]
        self.assertEqual(ca_id, ca_cert.fingerprint(hashes.SHA256()).hex())
        self.assertTrue(r["certificateArn"].endswith(":cacert/" + ca_id))
        self.assertEqual(error_code(IOT.register_ca_certificate, caCertificate=pem(ca_cert),
                                    verificationCertificate=pem(verification))[1], 409)
        d = IOT.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
        self.assertEqual((d["status"], d["autoRegistrationStatus"]), ("ACTIVE", "DISABLE"))
        self.assertIn(ca_id, [c["certificateId"] for c in IOT.list_ca_certificates()["certificates"]])

        # A device certificate of that CA, registered and ACTIVE, connects.
        dev, dev_key = issue(ca_cert, ca_key, "ext-device-1")
        reg = IOT.register_certificate(certificatePem=pem(dev), caCertificatePem=pem(ca_cert),
                                       status="ACTIVE")
        IOT.attach_policy(policyName="all", target=reg["certificateArn"])
        self.assertEqual(mosquitto_pub(dev, dev_key, "ext-device-1").returncode, 0)
        d = IOT.describe_certificate(certificateId=reg["certificateId"])["certificateDescription"]
        self.assertEqual(d["caCertificateId"], ca_id)
        # More of them, listed by CA across pages.
        for i in range(2, 8):
            c, _ = issue(ca_cert, ca_key, "ext-device-%d" % i)
            IOT.register_certificate(certificatePem=pem(c), caCertificatePem=pem(ca_cert))
        pages = IOT.get_paginator("list_certificates_by_ca").paginate(
            caCertificateId=ca_id, PaginationConfig={"PageSize": 3})
        ids = [c["certificateId"] for p in pages for c in p["certificates"]]
        self.assertEqual(len(ids), 7)
        self.assertEqual(len(set(ids)), 7)
        self.assertEqual(error_code(IOT.list_certificates_by_ca, caCertificateId="0" * 64),
                         ("ResourceNotFoundException", 404))

        # The CA set INACTIVE: its devices are refused.
        IOT.update_ca_certificate(certificateId=ca_id, newStatus="INACTIVE",
                                  newAutoRegistrationStatus="ENABLE")
        d = IOT.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
        self.assertEqual((d["status"], d["autoRegistrationStatus"]), ("INACTIVE", "ENABLE"))
        self.assertNotEqual(mosquitto_pub(dev, dev_key, "ext-device-1").returncode, 0)
        # An INACTIVE CA leaves the trust store: the handshake fails, and the log says so.
        self.assertTrue(SERVER.wait_log("unable to get local issuer certificate"))
        self.assertEqual(error_code(IOT.update_ca_certificate, certificateId=ca_id,
                                    newStatus="REVOKED")[1], 400)
        # A CA with certificates cannot be deleted.
        code_, status = error_code(IOT.delete_ca_certificate, certificateId=ca_id)
        self.assertIn(status, (406, 409))

    def test_certificates_of_unknown_cas_and_without_ca(self):
        other_ca, other_key = make_ca("Unregistered CA")
        dev, dev_key = issue(other_ca, other_key, "orphan")
        self.assertEqual(error_code(IOT.register_certificate, certificatePem=pem(dev))[0],
                         "CertificateValidationException")
        r = IOT.register_certificate_without_ca(certificatePem=pem(dev), status="ACTIVE")
        d = IOT.describe_certificate(certificateId=r["certificateId"])["certificateDescription"]
        self.assertEqual(d["status"], "ACTIVE")
        self.assertIsNone(d.get("caCertificateId"))
        self.assertEqual(error_code(IOT.register_certificate_without_ca,
                                    certificatePem="garbage")[0],
                         "CertificateValidationException")
        self.assertEqual(error_code(IOT.register_certificate_without_ca,
                                    certificatePem=pem(dev))[1], 409)

    def test_sni_only_ca_needs_no_verification(self):
        ca_cert, _ = make_ca("SNI CA")
        r = IOT.register_ca_certificate(caCertificate=pem(ca_cert), certificateMode="SNI_ONLY")
        d = IOT.describe_ca_certificate(certificateId=r["certificateId"])["certificateDescription"]
        self.assertEqual((d["certificateMode"], d["status"]), ("SNI_ONLY", "INACTIVE"))
        IOT.delete_ca_certificate(certificateId=r["certificateId"])
        self.assertEqual(error_code(IOT.describe_ca_certificate,
                                    certificateId=r["certificateId"])[0],
                         "ResourceNotFoundException")


TEMPLATE = {
    "Parameters": {"ThingName": {"Type": "String"},
                   "AWS::IoT::Certificate::Id": {"Type": "String"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing",
                  "Properties": {"ThingName": {"Ref": "ThingName"},
                                 "AttributePayload": {"line": "3"}}},
        "certificate": {"Type": "AWS::IoT::Certificate",
                        "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                       "Status": "ACTIVE"}},
        "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "all"}},
    },
}


class Provisioning(unittest.TestCase):
    def test_register_thing_over_http(self):
        cert = IOT.create_keys_and_certificate(setAsActive=False)
        r = IOT.register_thing(templateBody=json.dumps(TEMPLATE),
                               parameters={"ThingName": "bulk-1",
                                           "AWS::IoT::Certificate::Id": cert["certificateId"]})
        self.assertEqual(r["certificatePem"], cert["certificatePem"])
        self.assertEqual(set(r["resourceArns"]), {"thing", "certificate", "policy"})
        self.assertTrue(r["resourceArns"]["thing"].endswith(":thing/bulk-1"))
        self.assertEqual(IOT.describe_thing(thingName="bulk-1")["attributes"], {"line": "3"})
        self.assertEqual(IOT.list_thing_principals(thingName="bulk-1")["principals"],
                         [cert["certificateArn"]])
        d = IOT.describe_certificate(certificateId=cert["certificateId"])
        self.assertEqual(d["certificateDescription"]["status"], "ACTIVE")
        # Bad input: nothing is left behind.
        self.assertEqual(error_code(IOT.register_thing, templateBody="{not json",
                                    parameters={})[0], "InvalidRequestException")
        self.assertEqual(error_code(IOT.register_thing, templateBody=json.dumps(TEMPLATE),
                                    parameters={"ThingName": "bulk-2",
                                                "AWS::IoT::Certificate::Id": "f" * 64})[0],
                         "ResourceNotFoundException")
        self.assertEqual(error_code(IOT.describe_thing, thingName="bulk-2")[0],
                         "ResourceNotFoundException")

    def test_create_provisioning_claim(self):
        IOT.create_provisioning_template(
            templateName="ClaimTemplate", templateBody=json.dumps(TEMPLATE), enabled=True,
            provisioningRoleArn="arn:aws:iam::123456789012:role/provisioning")
        r = IOT.create_provisioning_claim(templateName="ClaimTemplate")
        cert = x509.load_pem_x509_certificate(r["certificatePem"].encode())
        expires = r["expiration"].timestamp()
        now = datetime.datetime.now(datetime.timezone.utc).timestamp()
        self.assertAlmostEqual(expires - now, 300, delta=10)
        self.assertAlmostEqual(cert.not_valid_after_utc.timestamp(), expires, delta=2)
        self.assertIn("PRIVATE KEY", r["keyPair"]["PrivateKey"])
        policies = IOT.list_attached_policies(
            target=IOT.describe_certificate(certificateId=r["certificateId"])[
                "certificateDescription"]["certificateArn"])["policies"]
        self.assertEqual([p["policyName"] for p in policies], ["fleetkey-claim-ClaimTemplate"])
        doc = IOT.get_policy(policyName="fleetkey-claim-ClaimTemplate")["policyDocument"]
        self.assertIn("$aws/provisioning-templates/ClaimTemplate/provision/*", doc)
        self.assertEqual(error_code(IOT.create_provisioning_claim, templateName="Nope")[0],
                         "ResourceNotFoundException")


class HttpsApi(unittest.TestCase):
    """[api] tls = true (the server certificate) and further keys from credentials_file."""

    def test_https_and_extra_keys(self):
        d = tempfile.mkdtemp(prefix="fk_https_", dir=TMP)
        creds = write(os.path.join(d, "factory.creds"),
                      "[line1]\naws_access_key_id = AKIAFACTORYLINE00001\n"
                      "aws_secret_access_key = line1-secret\n"
                      "[line2]\naws_access_key_id = AKIAFACTORYLINE00002\n"
                      "aws_secret_access_key = line2-secret\n")
        cfg = write(os.path.join(d, "fleetkeyd.toml"),
                    '[api]\ntls = true\ncredentials_file = "%s"\n' % creds)
        server = Fleetkeyd(os.path.join(d, "data"), "--config", cfg)
        try:
            self.assertTrue(server.api_url.startswith("https://"))
            for key, secret in (("AKIAFACTORYLINE00001", "line1-secret"),
                                ("AKIAFACTORYLINE00002", "line2-secret")):
                iot = boto3.client("iot", endpoint_url=server.api_url, region_name="us-east-1",
                                   aws_access_key_id=key, aws_secret_access_key=secret,
                                   verify=server.root_ca)
                iot.create_thing(thingName="via-" + key[-1])
            self.assertEqual(len(iot.list_things()["things"]), 2)
            bad = boto3.client("iot", endpoint_url=server.api_url, region_name="us-east-1",
                               aws_access_key_id="AKIAFACTORYLINE00001",
                               aws_secret_access_key="wrong", verify=server.root_ca)
            self.assertEqual(error_code(bad.list_things), ("InvalidSignatureException", 403))
            # Plain HTTP on the https port gets no answer; an untrusted CA fails the handshake.
            plain = subprocess.run(["curl", "-s", "-m", "5",
                                    server.api_url.replace("https://", "http://") + "/health"],
                                   capture_output=True)
            self.assertNotEqual(plain.returncode, 0)
            untrusted = boto3.client("iot", endpoint_url=server.api_url, region_name="us-east-1",
                                     aws_access_key_id=key, aws_secret_access_key=secret,
                                     verify="/etc/ssl/certs/ca-certificates.crt")
            with self.assertRaises(botocore.exceptions.SSLError):
                untrusted.list_things()
        finally:
            self.assertEqual(server.stop(), 0)


def signed(method, path, body=None, raw=None):
    """A SigV4-signed request as botocore signs it; returns (status, error type, body)."""
    import urllib.error
    import urllib.request
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = AWSRequest(method=method, url=SERVER.api_url + path, data=data,
                     headers={"Content-Type": "application/json"} if data else {})
    session = boto3.session.Session()
    SigV4Auth(session.get_credentials(), "iot", "us-east-1").add_auth(req)
    r = urllib.request.Request(SERVER.api_url + path, data=req.body, method=method,
                               headers=dict(req.headers))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, "", json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-amzn-ErrorType", ""), json.loads(e.read() or b"{}")


class BadInput(unittest.TestCase):
    """Each refusal with AWS's exception and status, and the server keeps serving."""

    def test_refusals(self):
        cases = [
            (("GET", "/no-such-operation"), 404, "UnknownOperationException"),
            (("PATCH", "/certificates"), 405, "MethodNotAllowedException"),
            (("POST", "/things/malformed-json", None, b"{not json"), 400, "SerializationException"),
            (("POST", "/things/array-body", None, b"[1,2]"), 400, "SerializationException"),
            (("POST", "/policies/typed", {"policyDocument": 42}), 400, "InvalidRequestException"),
            (("POST", "/things/bad%20name"), 400, "InvalidRequestException"),
            (("GET", "/things?nextToken=made-up"), 400, "InvalidRequestException"),
            (("GET", "/certificates?marker=made-up"), 400, "InvalidRequestException"),
            (("GET", "/things?maxResults=0"), 400, "InvalidRequestException"),
            (("GET", "/things?maxResults=251"), 400, "InvalidRequestException"),
        ]
        for args, status, exception in cases:
            code, etype, body = signed(*args)
            self.assertEqual((code, etype.split(":")[0]), (status, exception), args[:2])
            self.assertIn("message", body, args[:2])
        # A body over the limit (1 MiB) is refused from its Content-Length, before it is read.
        import http.client
        host, port = SERVER.api_url.replace("http://", "").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/things/big")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders()
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.getheader("x-amzn-ErrorType")),
                         (413, "InvalidRequestException"))
        self.assertIn("larger than the limit", json.loads(resp.read())["message"])
        conn.close()
        for name in ("malformed-json", "array-body", "big", "typed"):
            self.assertEqual(error_code(IOT.describe_thing, thingName=name)[0],
                             "ResourceNotFoundException")
        # Tokens given out work; the server still serves.
        for i in range(3):
            IOT.create_thing(thingName="tok-%d" % i)
        first = IOT.list_things(maxResults=1)
        self.assertIn("nextToken", first)
        second = IOT.list_things(maxResults=1, nextToken=first["nextToken"])
        self.assertNotEqual(first["things"], second["things"])


def aws(*args):
    return subprocess.run(["aws", "iot", *args, "--endpoint-url", SERVER.api_url,
                           "--output", "json"], capture_output=True, text=True, timeout=60)


class AwsCliErrors(unittest.TestCase):
    """The aws CLI, one call per operation group, with AWS's exceptions."""

    def test_each_group(self):
        cases = [
            (["describe-thing", "--thing-name", "missing"], "ResourceNotFoundException"),
            (["describe-thing-type", "--thing-type-name", "missing"], "ResourceNotFoundException"),
            (["describe-thing-group", "--thing-group-name", "missing"],
             "ResourceNotFoundException"),
            (["create-policy", "--policy-name", "all", "--policy-document",
              json.dumps(ALLOW_ALL)], "ResourceAlreadyExistsException"),
            (["create-certificate-from-csr", "--certificate-signing-request", "not a csr"],
             "InvalidRequestException"),
            (["describe-ca-certificate", "--certificate-id", "0" * 64],
             "ResourceNotFoundException"),
            (["describe-provisioning-template", "--template-name", "missing"],
             "ResourceNotFoundException"),
            (["list-thing-principals", "--thing-name", "missing"], "ResourceNotFoundException"),
        ]
        for args, exception in cases:
            r = aws(*args)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(exception, r.stderr, args)
        made = json.loads(aws("create-keys-and-certificate", "--set-as-active").stdout)
        r = aws("delete-certificate", "--certificate-id", made["certificateId"])
        self.assertIn("CertificateStateException", r.stderr)
        ok = aws("get-registration-code")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(len(json.loads(ok.stdout)["registrationCode"]), 64)
        listed = aws("list-ca-certificates")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        bad = subprocess.run(["aws", "iot", "list-things", "--endpoint-url", SERVER.api_url],
                             env=dict(os.environ, AWS_ACCESS_KEY_ID="AKIAFAKEFAKEFAKEFAKE",
                                      AWS_SECRET_ACCESS_KEY="wrong",
                                      AWS_SHARED_CREDENTIALS_FILE="/nonexistent"),
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("UnrecognizedClientException", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
