#!/usr/bin/env python3
"""Interop tier: the real fleetkeyd binary started as a user would, checked with real tools
(openssl, the aws CLI's credential loader, curl-like HTTP from the standard library).

Run by ctest with FLEETKEYD=<path to the binary>."""

import configparser
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import FLEETKEYD, Fleetkeyd as Server  # noqa: E402


def Fleetkeyd(data_dir, *extra):
    """The shared helper, showing the banner unless --quiet is passed."""
    quiet = "--quiet" in extra
    return Server(data_dir, *[a for a in extra if a != "--quiet"], quiet=quiet)


def key_id_of(endpoints):
    cp = configparser.ConfigParser()
    cp.read(endpoints["credentials_file"])
    return cp["default"]["aws_access_key_id"]


def read(path):
    with open(path) as f:
        return f.read()


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read().decode()


class FleetkeydStart(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fk_interop_")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_first_start_creates_ca_credentials_and_endpoints(self):
        d = Fleetkeyd(self.data)
        try:
            e = d.endpoints
            self.assertGreater(e["mqtt"]["port"], 0)
            self.assertGreater(e["api"]["port"], 0)
            # Health answers over real HTTP; unknown operations get AWS's error shape.
            status, _, body = http_get(e["api"]["port"], "/health")
            self.assertEqual(status, 200)
            health = json.loads(body)
            self.assertEqual((health["status"], health["role"], health["backend"],
                              health["database"], health["eventFeed"], health["connects"]),
                             ("ok", "single", "sqlite", "reachable", "none", "accepted"))
            # Unsigned requests get AWS's 403 shape.
            status, headers, body = http_get(e["api"]["port"], "/things")
            self.assertEqual(status, 403)
            self.assertEqual(headers.get("x-amzn-ErrorType"), "MissingAuthenticationTokenException")
            self.assertIn("message", json.loads(body))
            # Signed requests work with the credentials fleetkeyd wrote (aws CLI, SigV4).
            if shutil.which("aws"):
                env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=e["credentials_file"],
                           AWS_CONFIG_FILE=e["aws_config_file"])
                r = subprocess.run(["aws", "iot", "describe-endpoint", "--endpoint-url",
                                    e["api"]["url"], "--output", "json"], env=env,
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["endpointAddress"], "localhost")
                bad = dict(env, AWS_SECRET_ACCESS_KEY="wrong", AWS_ACCESS_KEY_ID=key_id_of(e))
                r = subprocess.run(["aws", "iot", "describe-endpoint", "--endpoint-url",
                                    e["api"]["url"]], env=bad, capture_output=True, text=True,
                                   timeout=60)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("InvalidSignatureException", r.stderr)
            # The MQTT port is bound and accepts TCP.
            with socket.create_connection(("127.0.0.1", e["mqtt"]["port"]), timeout=5):
                pass
            # Private keys and the credentials are 0600.
            ca = os.path.join(self.data, "ca")
            for name in ("root-ca.key", "issuing-ca.key", "server.key"):
                mode = stat.S_IMODE(os.stat(os.path.join(ca, name)).st_mode)
                self.assertEqual(mode, 0o600, name)
            self.assertEqual(stat.S_IMODE(os.stat(e["credentials_file"]).st_mode), 0o600)
            # The root CA verifies the issuing CA and the server certificate (openssl).
            server_pem = os.path.join(ca, "server.pem")
            r = subprocess.run(["openssl", "verify", "-CAfile", e["root_ca"], "-untrusted",
                                os.path.join(ca, "issuing-ca.pem"), server_pem],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            text = subprocess.run(["openssl", "x509", "-in", server_pem, "-noout", "-text"],
                                  capture_output=True, text=True).stdout
            for san in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
                self.assertIn(san, text)
            self.assertIn("ASN1 OID: prime256v1", subprocess.run(
                ["openssl", "x509", "-in", e["root_ca"], "-noout", "-text"],
                capture_output=True, text=True).stdout)
            # The credentials file is what the aws CLI reads.
            cp = configparser.ConfigParser()
            cp.read(e["credentials_file"])
            key_id = cp["default"]["aws_access_key_id"]
            if shutil.which("aws"):
                env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=e["credentials_file"],
                           AWS_CONFIG_FILE=e["aws_config_file"])
                got = subprocess.run(["aws", "configure", "get", "aws_access_key_id"], env=env,
                                     capture_output=True, text=True).stdout.strip()
                self.assertEqual(got, key_id)
                region = subprocess.run(["aws", "configure", "get", "region"], env=env,
                                        capture_output=True, text=True).stdout.strip()
                self.assertEqual(region, "us-east-1")
            # The registry is a real SQLite file with the schema.
            r = subprocess.run(["sqlite3", e["registry"], "PRAGMA user_version;", ".tables"],
                               capture_output=True, text=True)
            # Migrated to the newest schema: as many as src/storage/sqlite/schema.h lists.
            schema = os.path.join(os.path.dirname(__file__), "..", "..", "src", "storage",
                                  "sqlite", "schema.h")
            with open(schema) as f:
                newest = re.search(r"std::array<const char\*, (\d+)> kMigrations",
                                   f.read()).group(1)
            self.assertEqual(r.stdout.split()[0], newest)
            self.assertIn("certificates", r.stdout)
            idx = subprocess.run(["sqlite3", e["registry"], ".indexes certificates"],
                                 capture_output=True, text=True).stdout
            self.assertIn("certificates_by_serial", idx)
            # A second server on the same folder is refused.
            second = subprocess.run([FLEETKEYD, "--data-dir", self.data, "--mqtt-port", "0",
                                     "--api-port", "0", "--quiet"],
                                    capture_output=True, text=True, timeout=30)
            self.assertEqual(second.returncode, 4)  # another fleetkeyd uses the data folder
            self.assertIn("another fleetkeyd is using", second.stderr)
        finally:
            code = d.stop()
        err, out = d.read_log(), d.read_out()
        self.assertEqual(code, 0, err)
        self.assertIn("fleetkeyd.stopped", err)
        self.assertIn("curl -s http://127.0.0.1:", out)  # what to try next
        self.assertIn("aws iot create-keys-and-certificate", out)
        self.assertFalse(os.path.exists(os.path.join(self.data, "endpoints.json")))

    def test_restart_keeps_identity(self):
        d = Fleetkeyd(self.data, "--quiet")
        root = read(d.endpoints["root_ca"])
        creds = read(d.endpoints["credentials_file"])
        self.assertEqual(d.stop(), 0)
        d = Fleetkeyd(self.data, "--quiet")
        try:
            self.assertEqual(read(d.endpoints["root_ca"]), root)
            self.assertEqual(read(d.endpoints["credentials_file"]), creds)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_bad_config_names_the_key(self):
        cfg = os.path.join(self.tmp, "bad.toml")
        with open(cfg, "w") as f:
            f.write("[mqtt]\nport = 'eighty'\n")
        r = subprocess.run([FLEETKEYD, "--config", cfg, "--data-dir", self.data],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("mqtt.port", r.stderr)
        self.assertFalse(os.path.exists(self.data))  # nothing was created

    def test_config_file_settings_apply(self):
        cfg = os.path.join(self.tmp, "fleetkey.toml")
        with open(cfg, "w") as f:
            f.write('[ca]\nkey_type = "rsa-3072"\nserver_names = ["iot.example.test"]\n'
                    '[aws]\nregion = "eu-central-1"\n')
        d = Fleetkeyd(self.data, "--config", cfg, "--quiet")
        try:
            self.assertEqual(d.endpoints["region"], "eu-central-1")
            text = subprocess.run(["openssl", "x509", "-in", d.endpoints["root_ca"], "-noout",
                                   "-text"], capture_output=True, text=True).stdout
            self.assertIn("Public-Key: (3072 bit)", text)
            server = subprocess.run(["openssl", "x509", "-in",
                                     os.path.join(self.data, "ca", "server.pem"), "-noout",
                                     "-text"], capture_output=True, text=True).stdout
            self.assertIn("DNS:iot.example.test", server)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_port_in_use_fails_with_reason(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            r = subprocess.run([FLEETKEYD, "--data-dir", self.data, "--mqtt-port", "0",
                                "--api-port", str(port), "--quiet"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 3)  # a port cannot be bound
            self.assertIn("api.port: cannot listen on 127.0.0.1:%d" % port, r.stderr)
        finally:
            s.close()

    def test_make_install_stages_programs_config_and_a_service_that_verifies(self):
        """Issue 15: a systemd unit (Restart=on-failure, LimitNOFILE, sandboxing) and
        `make install` (here staged with DESTDIR, as a package build would)."""
        repo = os.path.join(os.path.dirname(__file__), "..", "..")
        stage = os.path.join(self.tmp, "stage")
        bindir = os.path.dirname(os.path.abspath(FLEETKEYD))
        r = subprocess.run(["bash", os.path.join(repo, "scripts", "install.sh")],
                           env=dict(os.environ, DESTDIR=stage, PREFIX="/usr/local"),
                           capture_output=True, text=True, timeout=60)
        if "is missing" in r.stderr and bindir != os.path.abspath(os.path.join(repo, "build", "bin")):
            self.skipTest("install.sh installs build/bin; this run tests " + bindir)
        self.assertEqual(r.returncode, 0, r.stderr)
        for p in ("fleetkeyd", "fleetkey", "locker-controller", "fleetkey-fleet-sim"):
            self.assertTrue(os.access(os.path.join(stage, "usr/local/bin", p), os.X_OK), p)
        unit_path = os.path.join(stage, "etc/systemd/system/fleetkeyd.service")
        unit = read(unit_path)
        for line in ("Restart=on-failure", "LimitNOFILE=20000", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "StateDirectory=fleetkey",
                     "ExecStart=/usr/local/bin/fleetkeyd --config /etc/fleetkey/fleetkeyd.toml"):
            self.assertIn(line, unit)
        if shutil.which("systemd-analyze"):
            staged = unit.replace("ExecStart=/usr/local/bin", "ExecStart=" +
                                  os.path.join(stage, "usr/local/bin"))
            check = os.path.join(self.tmp, "fleetkeyd.service")
            with open(check, "w") as f:
                f.write(staged)
            v = subprocess.run(["systemd-analyze", "verify", check], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(v.returncode, 0, v.stderr)
            self.assertNotIn("Unknown", v.stderr)
        # The shipped configuration is valid: the installed fleetkeyd starts with it.
        d = Fleetkeyd(self.data, "--config", os.path.join(stage, "etc/fleetkey/fleetkeyd.toml"))
        self.assertEqual(d.stop(), 0)
        # A second install keeps an edited configuration.
        with open(os.path.join(stage, "etc/fleetkey/fleetkeyd.toml"), "a") as f:
            f.write("# edited\n")
        subprocess.run(["bash", os.path.join(repo, "scripts", "install.sh")],
                       env=dict(os.environ, DESTDIR=stage), check=True, capture_output=True)
        self.assertIn("# edited", read(os.path.join(stage, "etc/fleetkey/fleetkeyd.toml")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
