"""Helpers shared by the interop tests: start a real fleetkeyd on free ports, call its API with
the real aws CLI, and make test certificates (the PKI fixture generator)."""

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

FLEETKEYD = os.environ.get("FLEETKEYD", "build/bin/fleetkeyd")


_SIGNED_CALL = r"""
import sys, urllib.request, urllib.error
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
url, method = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
s = botocore.session.get_session()
req = AWSRequest(method=method, url=url, data=body if body else None,
                 headers={"Content-Type": "application/json"} if body else {})
SigV4Auth(s.get_credentials(), "iot", s.get_config_variable("region") or "us-east-1").add_auth(req)
r = urllib.request.Request(url, data=req.body, method=method, headers=dict(req.headers))
try:
    with urllib.request.urlopen(r) as resp:
        print(resp.status); print(resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"""


def signed_call(endpoints, method, path, body_text=None):
    """A SigV4-signed call to a fleetkeyd API (botocore, in the python3 on PATH, which has it)
    with the admin credentials of its endpoints.json; the body is sent as given (any bytes a
    test needs, however deep). Returns (HTTP status, response text)."""
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=endpoints["credentials_file"],
               AWS_CONFIG_FILE=endpoints["aws_config_file"])
    env.pop("AWS_PROFILE", None)
    r = subprocess.run(["python3", "-c", _SIGNED_CALL, endpoints["api"]["url"] + path, method],
                       input=(body_text or "").encode(), env=env, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError("signed call failed: " + r.stderr.decode())
    status, text = r.stdout.decode().split("\n", 1)
    return int(status), text


def free_port():
    """A loopback TCP port free now (for a server that must know its port before it starts),
    chosen below the kernel's ephemeral range (32768-60999), where an outgoing connection of a
    test running beside this one cannot take it before the server binds it (CI saw that)."""
    import random
    while True:
        with socket.socket() as s:
            port = random.randint(20000, 32000)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def cli_env(data_dir, extra=None):
    """The environment the `fleetkey` CLI runs in for a test: it finds fleetkeyd through its data
    folder only (no profile, keys or endpoint of the shell running the tests)."""
    e = dict(os.environ, FLEETKEY_DATA_DIR=data_dir, **(extra or {}))
    for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "FLEETKEY_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        if k not in (extra or {}):
            e.pop(k, None)
    return e


# A policy that allows every MQTT action: for tests of the broker itself, not of policies.
ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}


def write_config(path, toml, schema):
    """A fleetkeyd config file: `toml`, and with FK_TEST_STORAGE=postgres the registry on the
    PostgreSQL the CTest fixture started, in schema `schema` of this run's own. Returns path."""
    with open(path, "w") as f:
        f.write(toml)
        if os.environ.get("FK_TEST_STORAGE") == "postgres":
            with open(os.environ["FK_POSTGRES_URL_FILE"]) as u:
                url = u.read().strip()
            f.write('\n[storage]\nbackend = "postgres"\nurl = "%s"\nschema = "%s_%d"\n'
                    % (url, schema, os.getpid()))
    return path


class LockerProcess:
    """A locker-controller process on fleetkeyd's MQTT port; its stdout lines are collected."""

    def __init__(self, binary, port, *args, env=None):
        import queue
        import threading
        self.lines = queue.Queue()
        self.all = []
        self.p = subprocess.Popen([binary, "--port", str(port), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=dict(os.environ, **(env or {})))
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        with self.p.stdout:
            for line in self.p.stdout:
                self.all.append(line.rstrip("\n"))
                self.lines.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=30):
        import queue
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError("locker never said %r; it said:\n%s" % (text, "\n".join(self.all)))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=20)

    def finish(self, timeout=60):
        code = self.p.wait(timeout=timeout)
        time.sleep(0.1)
        return code, "\n".join(self.all)


def error_code(fn, *a, **k):
    """(AWS error code, HTTP status) of a boto3 call that must fail."""
    import botocore.exceptions  # the python3 on PATH has it; /usr/bin/python3 tests never call
    try:
        fn(*a, **k)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("no error")


class Fleetkeyd:
    """A fleetkeyd on free ports. Its log (stderr) goes to <data_dir>/../fleetkeyd.log and its
    banner (stdout, when not quiet) to <data_dir>/../fleetkeyd.out."""

    def __init__(self, data_dir=None, *extra, quiet=True, mqtt_port=0, api_port=0):
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.mkdtemp(prefix="fk_interop_")
            data_dir = os.path.join(self.tmp, "data")
        self.data_dir = data_dir
        self.log_path = os.path.join(os.path.dirname(data_dir), "fleetkeyd.log")
        self.out_path = os.path.join(os.path.dirname(data_dir), "fleetkeyd.out")
        self.log = open(self.log_path, "w")
        self.out = open(self.out_path, "w")
        # FK_TEST_STORAGE=postgres runs a test's fleetkeyd on the PostgreSQL the CTest fixture
        # started (a schema of its own), for tests that pass no --config of their own.
        if os.environ.get("FK_TEST_STORAGE") == "postgres" and "--config" not in extra:
            with open(os.environ["FK_POSTGRES_URL_FILE"]) as f:
                url = f.read().strip()
            cfg = os.path.join(os.path.dirname(data_dir), "postgres.toml")
            schema = "t_%d_%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
            with open(cfg, "w") as f:
                f.write('[storage]\nbackend = "postgres"\nurl = "%s"\nschema = "%s"\n'
                        % (url, schema))
            extra = ("--config", cfg) + tuple(extra)
        # FK_TLS_ENGINE=gnutls|openssl: the MQTT ports' TLS engine for this run (CTest runs the
        # device-facing suites with each).
        if os.environ.get("FK_TLS_ENGINE") and "--tls-engine" not in extra:
            extra = ("--tls-engine", os.environ["FK_TLS_ENGINE"]) + tuple(extra)
        self.proc = subprocess.Popen(
            [FLEETKEYD, "--data-dir", data_dir, "--mqtt-port", str(mqtt_port),
             "--api-port", str(api_port),
             "--alpn-port", "0", *(["--quiet"] if quiet else []), *extra],
            stdout=self.out, stderr=self.log)
        self.endpoints = self._wait_ready()
        self.mqtt_port = self.endpoints["mqtt"]["port"]
        self.alpn_port = self.endpoints["mqtt"]["alpn_port"]
        self.api_url = self.endpoints["api"]["url"]
        self.root_ca = self.endpoints["root_ca"]
        self.ca_dir = os.path.join(data_dir, "ca")

    def _wait_ready(self, timeout=30):
        path = os.path.join(self.data_dir, "endpoints.json")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("fleetkeyd exited early: " + self.read_log())
            try:
                with open(path) as f:
                    e = json.load(f)
                if e.get("pid") == self.proc.pid:
                    return e
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError("fleetkeyd did not become ready")

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def read_out(self):
        with open(self.out_path) as f:
            return f.read()

    def wait_log(self, text, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.read_log():
                return True
            time.sleep(0.05)
        return False

    def aws(self, *args, check=True):
        env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=self.endpoints["credentials_file"],
                   AWS_CONFIG_FILE=self.endpoints["aws_config_file"])
        env.pop("AWS_PROFILE", None)
        r = subprocess.run(["aws", "iot", *args, "--endpoint-url", self.api_url, "--output", "json"],
                           env=env, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("aws iot %s failed: %s" % (" ".join(args), r.stderr))
        return r

    def fleetkey_api(self, method, path, body=None):
        """A SigV4-signed call to one of fleetkeyd's own routes (/fleetkey/...), signed by
        botocore (in the python3 on PATH, which has it) with the admin credentials.
        Returns (status, parsed JSON body)."""
        status, text = signed_call(self.endpoints, method, path,
                                   json.dumps(body) if body is not None else None)
        return status, json.loads(text or "{}")

    def create_policy(self, name, document):
        self.aws("create-policy", "--policy-name", name, "--policy-document",
                 document if isinstance(document, str) else json.dumps(document))

    def create_device(self, name, active=True, policy=None, thing=False):
        """A certificate made by the server (CreateKeysAndCertificate), written as files; with
        `policy` attached to it, and with `thing` a thing of that name attached to it."""
        args = ["create-keys-and-certificate"] + (["--set-as-active"] if active else [])
        out = json.loads(self.aws(*args).stdout)
        if policy:
            self.aws("attach-policy", "--policy-name", policy, "--target", out["certificateArn"])
        if thing:
            self.aws("create-thing", "--thing-name", name)
            self.aws("attach-thing-principal", "--thing-name", name,
                     "--principal", out["certificateArn"])
        d = os.path.join(os.path.dirname(self.data_dir), "devices", name)
        os.makedirs(d, exist_ok=True)
        cert, key = os.path.join(d, "device.cert.pem"), os.path.join(d, "device.private.key")
        with open(cert, "w") as f:
            f.write(out["certificatePem"])
        with open(key, "w") as f:
            f.write(out["keyPair"]["PrivateKey"])
        return {"id": out["certificateId"], "arn": out["certificateArn"], "cert": cert, "key": key}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.out.close()
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- PKI fixtures

def make_fixture_certificate(ca_dir, out_dir, name, not_before=None, not_after=None,
                             foreign_ca=False):
    """A device certificate for tests, signed by fleetkey's issuing CA (or by a throw-away
    foreign CA), with the validity asked for. Returns (cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

    now = datetime.datetime.utcnow()
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or now + datetime.timedelta(days=30)
    if foreign_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Test CA")])
    else:
        with open(os.path.join(ca_dir, "issuing-ca.key"), "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
        with open(os.path.join(ca_dir, "issuing-ca.pem"), "rb") as f:
            ca_name = x509.load_pem_x509_certificate(f.read()).subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(out_dir, exist_ok=True)
    cert_path, key_path = os.path.join(out_dir, name + ".pem"), os.path.join(out_dir, name + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path
