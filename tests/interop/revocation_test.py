"""Issue 19, part 3: revocation data for third parties. fleetkeyd's issuing CA publishes a CRL and
answers OCSP (RFC 6960) on the API port without SigV4; new certificates carry both URLs when
configured. Checked with the tools third parties use: `openssl ocsp`, `openssl verify -crl_check`,
`openssl crl`, and `fleetkey certs revoke` / the aws CLI to change a certificate's status."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, cli_env, free_port, write_config  # noqa: E402

FLEETKEY = os.environ.get("FLEETKEY", "build/bin/fleetkey")
SERVER = None
TMP = None


def setUpModule():
    global SERVER, TMP
    TMP = tempfile.mkdtemp(prefix="fk_revocation_")
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    # FK_TEST_STORAGE=postgres: the registry (and its serial and status lookups) on PostgreSQL.
    cfg = write_config(os.path.join(TMP, "fleetkeyd.toml"),
                       '[ca]\ncrl_url = "%s/crl"\nocsp_url = "%s/ocsp"\n' % (base, base), "rev")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", cfg, api_port=port)


def tearDownModule():
    SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])


def path(name):
    return os.path.join(TMP, name)


def write(name, data):
    with open(path(name), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path(name)


def read(file_path, mode="r"):
    with open(file_path, mode) as f:
        return f.read()


def chain():
    return write("chain.pem", read(SERVER.root_ca) + read(issuing_ca()))


def new_certificate(name):
    made = json.loads(SERVER.aws("create-keys-and-certificate", "--set-as-active").stdout)
    write(name + ".pem", made["certificatePem"])
    return made["certificateId"], path(name + ".pem")


def fleetkey(*args):
    r = subprocess.run([FLEETKEY, *args], env=cli_env(SERVER.data_dir), capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("fleetkey %s: %s" % (" ".join(args), r.stderr))
    return r


def issuing_ca():
    return os.path.join(SERVER.ca_dir, "issuing-ca.pem")


def ocsp(cert=None, serial=None, issuer=None, extra=()):
    """`openssl ocsp` against fleetkeyd: its status line for the certificate, and the whole
    output (the response's signature is verified against fleetkey's root CA)."""
    args = ["openssl", "ocsp", "-issuer", issuer or issuing_ca(), "-url",
            SERVER.endpoints["ocsp_url"], "-CAfile", SERVER.root_ca, *extra]
    args += ["-cert", cert] if cert else ["-serial", serial]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def crl_pem():
    status, ctype, body = http("GET", SERVER.endpoints["crl_url"] + ".pem")
    assert status == 200, (status, body)
    return write("crl.pem", body.decode())


def verify_with_crl(cert):
    r = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", chain(), "-CRLfile",
                        crl_pem(), cert], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


class RevocationTest(unittest.TestCase):
    def test_1_urls_in_endpoints_and_certificates(self):
        e = SERVER.endpoints
        self.assertEqual(e["crl_url"], e["api"]["url"] + "/crl")
        self.assertEqual(e["ocsp_url"], e["api"]["url"] + "/ocsp")
        _, pem = new_certificate("urls")
        text = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn("X509v3 CRL Distribution Points", text)
        self.assertIn("URI:" + e["crl_url"], text)
        self.assertIn("OCSP - URI:" + e["ocsp_url"], text)

    def test_2_good_then_revoked_within_a_second(self):
        cert_id, pem = new_certificate("dev")
        other_id, other = new_certificate("other")
        out = ocsp(pem)
        self.assertIn(pem + ": good", out)
        self.assertIn("Response verify OK", out)
        code, out = verify_with_crl(pem)
        self.assertEqual(code, 0, out)
        fleetkey("certs", "revoke", cert_id)
        t0 = time.time()
        out = ocsp(pem)
        ocsp_took = time.time() - t0
        self.assertIn(pem + ": revoked", out)
        self.assertIn("Response verify OK", out)
        code, out = verify_with_crl(pem)
        crl_took = time.time() - t0
        self.assertNotEqual(code, 0)
        self.assertIn("certificate revoked", out)
        self.assertLess(ocsp_took, 1.0)
        self.assertLess(crl_took, 2.0)  # the OCSP call and two openssl runs included
        # Only that one: the other certificate of the same CA is still good.
        self.assertIn(other + ": good", ocsp(other))
        code, out = verify_with_crl(other)
        self.assertEqual(code, 0, out)
        print("revoked: OCSP said so %.2f s after `fleetkey certs revoke`" % ocsp_took)

    def test_3_deleted_after_revocation_stays_revoked(self):
        cert_id, pem = new_certificate("deleted")
        fleetkey("certs", "revoke", cert_id)
        SERVER.aws("delete-certificate", "--certificate-id", cert_id)
        self.assertIn(pem + ": revoked", ocsp(pem))
        code, out = verify_with_crl(pem)
        self.assertIn("certificate revoked", out)

    def test_4_inactive_is_not_revoked(self):
        cert_id, pem = new_certificate("inactive")
        SERVER.aws("update-certificate", "--certificate-id", cert_id, "--new-status", "INACTIVE")
        self.assertIn(pem + ": good", ocsp(pem))
        code, out = verify_with_crl(pem)
        self.assertEqual(code, 0, out)

    def test_5_unknown_serials_and_issuers(self):
        self.assertIn("0x4A1B2C3D: unknown", ocsp(serial="0x4A1B2C3D"))
        # A certificate of a CA fleetkey does not know.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", path("other-ca.key"),
                        "-out", path("other-ca.pem"), "-subj", "/CN=Other CA", "-days", "30"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", path("stranger.key"), "-out", path("stranger.csr"),
                        "-subj", "/CN=stranger"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", path("stranger.csr"), "-CA",
                        path("other-ca.pem"), "-CAkey", path("other-ca.key"), "-out",
                        path("stranger.pem"), "-days", "30"], check=True, capture_output=True)
        out = ocsp(path("stranger.pem"), issuer=path("other-ca.pem"))
        self.assertIn(path("stranger.pem") + ": unknown", out)

    def test_5b_registered_ca_answered_by_registry_status(self):
        # A CA made by openssl, registered with its verification certificate, and a device
        # certificate it signed registered under it: answered by its registry status, the
        # response signed by fleetkey's issuing CA (trusted as the responder: -VAfile).
        def run(*args):
            subprocess.run(args, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", path("reg-ca.key"), "-out", path("reg-ca.pem"), "-subj",
            "/CN=Registered CA", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        code = json.loads(SERVER.aws("get-registration-code").stdout)["registrationCode"]

        def signed(name, cn):
            run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + cn)
            run("openssl", "x509", "-req", "-in", path(name + ".csr"), "-CA", path("reg-ca.pem"),
                "-CAkey", path("reg-ca.key"), "-out", path(name + ".pem"), "-days", "30")
            return path(name + ".pem")
        verification = signed("verification", code)
        SERVER.aws("register-ca-certificate", "--ca-certificate", "file://" + path("reg-ca.pem"),
                   "--verification-cert", "file://" + verification, "--set-as-active")
        device = signed("reg-dev", "reg-dev")
        cert_id = json.loads(SERVER.aws(
            "register-certificate", "--certificate-pem", "file://" + device,
            "--ca-certificate-pem", "file://" + path("reg-ca.pem"), "--set-as-active").stdout)[
                "certificateId"]
        trust = ("-VAfile", issuing_ca())
        out = ocsp(device, issuer=path("reg-ca.pem"), extra=trust)
        self.assertIn(device + ": good", out)
        self.assertIn("Response verify OK", out)
        SERVER.aws("update-certificate", "--certificate-id", cert_id, "--new-status", "REVOKED")
        out = ocsp(device, issuer=path("reg-ca.pem"), extra=trust)
        self.assertIn(device + ": revoked", out)
        self.assertIn("Response verify OK", out)
        # A serial the registered CA never had registered here.
        self.assertIn("0x77: unknown", ocsp(serial="0x77", issuer=path("reg-ca.pem"), extra=trust))

    def test_6_get_form_and_crl_fields(self):
        _, pem = new_certificate("get")
        subprocess.run(["openssl", "ocsp", "-issuer", issuing_ca(), "-cert", pem, "-reqout",
                        path("req.der")], check=True, capture_output=True)
        req = read(path("req.der"), "rb")
        url = SERVER.endpoints["ocsp_url"] + "/" + urllib.parse.quote(
            base64.b64encode(req).decode(), safe="")
        status, ctype, body = http("GET", url)
        self.assertEqual((status, ctype), (200, "application/ocsp-response"))
        write("resp.der", body)
        text = subprocess.run(["openssl", "ocsp", "-respin", path("resp.der"), "-resp_text",
                               "-noverify"], capture_output=True, text=True).stdout
        self.assertIn("Cert Status: good", text)
        # The CRL: DER at the URL the certificates carry, signed by the issuing CA, numbered.
        status, ctype, der = http("GET", SERVER.endpoints["crl_url"])
        self.assertEqual((status, ctype), (200, "application/pkix-crl"))
        write("crl.der", der)
        r = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", path("crl.der"), "-noout",
                            "-text", "-CAfile", chain()], capture_output=True, text=True)
        self.assertIn("verify OK", r.stdout + r.stderr)
        self.assertIn("X509v3 CRL Number", r.stdout)
        self.assertIn("Next Update", r.stdout)

    def test_7_malformed_requests(self):
        url = SERVER.endpoints["ocsp_url"]
        hdr = {"Content-Type": "application/ocsp-request"}
        # OCSPResponse { responseStatus malformedRequest(1) } = 30 03 0a 01 01
        for body in (b"", b"\x30\x03\x02\x01\x00", b"\x30" * 5000, os.urandom(300)):
            status, ctype, resp = http("POST", url, body, hdr)
            self.assertEqual(status, 200)
            self.assertEqual(resp, b"\x30\x03\x0a\x01\x01", body[:8])
        # A question whose CertID parses but cannot be encoded back (its hash algorithm's
        # parameters are an empty constructed value; found by the ocsp_request fuzzer).
        unencodable = bytes.fromhex(
            "30683066303f303d303b300906052b0e03021d200004" + "1413f4a535cf31c9c30eef2b40a90ac9"
            "00d7ec39e70414cacffb0684e8d545ebb8d41db92457af9e9f8125020212"
            "34a2233021301f06092b0601050507300102041204107eda640aa41bff5c29444f7428fbf2a6")
        status, _, resp = http("POST", url, unencodable, hdr)
        self.assertEqual((status, resp), (200, b"\x30\x03\x0a\x01\x01"))
        status, _, resp = http("GET", url + "/not%20base64!")
        self.assertEqual((status, resp), (200, b"\x30\x03\x0a\x01\x01"))
        # Too many questions in one request.
        args = ["openssl", "ocsp", "-issuer", issuing_ca(), "-reqout", path("many.der")]
        for i in range(20):
            args += ["-serial", "0x%x" % (i + 1)]
        subprocess.run(args, check=True, capture_output=True)
        status, _, resp = http("POST", url, read(path("many.der"), "rb"), hdr)
        self.assertEqual(resp, b"\x30\x03\x0a\x01\x01")
        # Still answering.
        _, pem = new_certificate("after")
        self.assertIn(pem + ": good", ocsp(pem))

    def test_8_no_signature_needed_but_only_these_paths(self):
        status, _, _ = http("GET", SERVER.endpoints["api"]["url"] + "/certificates")
        self.assertEqual(status, 403)  # everything else still wants SigV4


if __name__ == "__main__":
    unittest.main(verbosity=2)
