"""Issue 20, part 4: GET /metrics in the Prometheus text format, parsed by a real parser (Python's
prometheus_client, Debian's python3-prometheus-client) before and after traffic made with
mosquitto_pub and the aws CLI; loopback-only by default, a bearer token when configured."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import ALLOW_ALL, Fleetkeyd  # noqa: E402

SERVER = None
TOKEN_SERVER = None
TMP = None
TOKEN = "scrape-token-0123456789"


def setUpModule():
    global SERVER, TOKEN_SERVER, TMP
    TMP = tempfile.mkdtemp(prefix="fk_metrics_")
    os.makedirs(os.path.join(TMP, "a"))
    SERVER = Fleetkeyd(os.path.join(TMP, "a", "data"))
    SERVER.create_policy("all", ALLOW_ALL)
    cfg = os.path.join(TMP, "token.toml")
    with open(cfg, "w") as f:
        f.write('[api]\nbind = "0.0.0.0"\nallow_plain_http_on_network = true\n'
                'metrics_token = "%s"\n' % TOKEN)
    os.makedirs(os.path.join(TMP, "b"), exist_ok=True)
    TOKEN_SERVER = Fleetkeyd(os.path.join(TMP, "b", "data"), "--config", cfg)


def tearDownModule():
    codes = [SERVER.stop(), TOKEN_SERVER.stop()]
    subprocess.run(["rm", "-rf", TMP])
    if codes != [0, 0]:
        raise AssertionError("fleetkeyd did not stop cleanly: %s" % codes)


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(server=None, headers=None):
    """{(name, frozenset(labels)): value} of every sample, and the family types."""
    status, ctype, body = get((server or SERVER).api_url + "/metrics", headers)
    assert status == 200, (status, body)
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    samples, types = {}, {}
    for family in text_string_to_metric_families(body):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types, body


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def mosquitto(cert, key, client_id, server=None):
    server = server or SERVER
    return subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(server.mqtt_port),
                           "--cafile", server.root_ca, "--cert", cert, "--key", key, "-i",
                           client_id, "-t", "m/x", "-m", "hi", "-q", "1"],
                          capture_output=True, text=True, timeout=30).returncode


def non_loopback_address():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: only the route's source address
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


class Metrics(unittest.TestCase):
    def test_1_scrape_parses_before_and_after_traffic(self):
        before, types, body = scrape()
        for name, kind in [("fleetkey_mqtt_connections", "gauge"),
                           ("fleetkey_mqtt_connects", "counter"),
                           ("fleetkey_mqtt_connect_duration_seconds", "histogram"),
                           ("fleetkey_tls_handshake_duration_seconds", "histogram"),
                           ("fleetkey_tls_handshake_failures", "counter"),
                           ("fleetkey_mqtt_messages_received", "counter"),
                           ("fleetkey_mqtt_messages_dropped", "counter"),
                           ("fleetkey_revocation_cut_duration_seconds", "histogram"),
                           ("fleetkey_provisioning_requests", "counter"),
                           ("fleetkey_registry_commit_duration_seconds", "histogram"),
                           ("fleetkey_certificates_expiring_soon", "gauge")]:
            self.assertEqual(types.get(name), kind, name)
        self.assertNotIn("BEGIN", body)  # no certificate, key or token in a scrape
        # Traffic: an accepted connect with a message, a refused one, a failed handshake.
        good = SERVER.create_device("m-good", policy="all")
        self.assertEqual(mosquitto(good["cert"], good["key"], "m-good"), 0)
        off = SERVER.create_device("m-off", active=False, policy="all")
        self.assertNotEqual(mosquitto(off["cert"], off["key"], "m-off"), 0)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                        os.path.join(TMP, "stranger.key"), "-out",
                        os.path.join(TMP, "stranger.pem"), "-subj", "/CN=stranger", "-days", "2"],
                       check=True, capture_output=True)
        self.assertNotEqual(mosquitto(os.path.join(TMP, "stranger.pem"),
                                      os.path.join(TMP, "stranger.key"), "m-stranger"), 0)
        after, _, _ = scrape()
        self.assertGreaterEqual(
            value(after, "fleetkey_mqtt_connects_total", result="accepted", reason="success") -
            value(before, "fleetkey_mqtt_connects_total", result="accepted", reason="success"), 1)
        # The refusal's cause, not only its MQTT reason code.
        self.assertGreaterEqual(
            value(after, "fleetkey_mqtt_connects_total", result="refused",
                  reason="certificate_not_active"), 1)
        self.assertGreaterEqual(
            value(after, "fleetkey_tls_handshake_failures_total", listener="mqtt") -
            value(before, "fleetkey_tls_handshake_failures_total", listener="mqtt"), 1)
        self.assertGreaterEqual(value(after, "fleetkey_mqtt_messages_received_total") -
                                value(before, "fleetkey_mqtt_messages_received_total"), 1)
        self.assertGreaterEqual(
            value(after, "fleetkey_mqtt_connect_duration_seconds_count"), 1)
        self.assertGreaterEqual(
            value(after, "fleetkey_tls_handshake_duration_seconds_count", listener="mqtt"), 2)
        self.assertGreater(value(after, "fleetkey_registry_commit_duration_seconds_count"),
                           value(before, "fleetkey_registry_commit_duration_seconds_count"))
        # Buckets are cumulative and end with +Inf = count.
        inf = value(after, "fleetkey_mqtt_connect_duration_seconds_bucket", le="+Inf")
        self.assertEqual(inf, value(after, "fleetkey_mqtt_connect_duration_seconds_count"))

    def test_1b_scrapes_under_load_parse_and_traffic_goes_on(self):
        dev = SERVER.create_device("m-load", policy="all")
        errors = []
        stop = time.time() + 4

        def publish():
            while time.time() < stop:
                if mosquitto(dev["cert"], dev["key"], "m-load-%d" % time.time_ns()) != 0:
                    errors.append("publish failed")

        import threading
        workers = [threading.Thread(target=publish) for _ in range(3)]
        for w in workers:
            w.start()
        scrapes = 0
        while time.time() < stop:
            samples, _, _ = scrape()  # parses, or fails the test
            scrapes += 1
        for w in workers:
            w.join()
        self.assertEqual(errors, [])
        self.assertGreater(scrapes, 10)
        self.assertGreater(value(scrape()[0], "fleetkey_mqtt_connects_total", result="accepted",
                                 reason="success"), 5)

    def test_2_revocation_cut_is_measured(self):
        dev = SERVER.create_device("m-cut", policy="all")
        sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(SERVER.mqtt_port),
                                "--cafile", SERVER.root_ca, "--cert", dev["cert"], "--key",
                                dev["key"], "-i", "m-cut", "-t", "x"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                if value(scrape()[0], "fleetkey_mqtt_connections") >= 1:
                    break
                time.sleep(0.1)
            before = value(scrape()[0], "fleetkey_revocation_cut_duration_seconds_count")
            SERVER.aws("update-certificate", "--certificate-id", dev["id"], "--new-status",
                       "REVOKED")
            sub.wait(timeout=10)
            after = value(scrape()[0], "fleetkey_revocation_cut_duration_seconds_count")
            self.assertEqual(after - before, 1)
        finally:
            if sub.poll() is None:
                sub.kill()

    def test_3_expiring_certificates_are_counted(self):
        before = value(scrape()[0], "fleetkey_certificates_expiring_soon", within="30d")
        # fleetkey's own certificates run to 2049; one registered here expires in 10 days.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                        os.path.join(TMP, "soon.key"), "-out", os.path.join(TMP, "soon.pem"),
                        "-subj", "/CN=soon", "-days", "10", "-addext",
                        "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
        SERVER.aws("register-certificate-without-ca", "--certificate-pem",
                   "file://" + os.path.join(TMP, "soon.pem"), "--status", "ACTIVE")
        after = value(scrape()[0], "fleetkey_certificates_expiring_soon", within="30d")
        self.assertEqual(after - before, 1)

    def test_3b_the_grafana_dashboard_queries_existing_metrics(self):
        import re
        _, types, _ = scrape()
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                               "grafana-fleetkey.json")) as f:
            dashboard = json.load(f)
        names = set()
        for p in dashboard["panels"]:
            for t in p["targets"]:
                names.update(re.findall(r"fleetkey_[a-z0-9_]+", t["expr"]))
        self.assertGreater(len(names), 8)
        for n in names:
            family = re.sub(r"_(bucket|sum|count|total)$", "", n)
            self.assertIn(family, types, n)

    def test_4_bearer_token_when_configured(self):
        url = TOKEN_SERVER.api_url + "/metrics"
        self.assertEqual(get(url)[0], 401)
        self.assertEqual(get(url, {"Authorization": "Bearer wrong-token-xxxxxxxx"})[0], 401)
        samples, _, _ = scrape(TOKEN_SERVER, {"Authorization": "Bearer " + TOKEN})
        self.assertIn(("fleetkey_mqtt_connections", frozenset()), samples)
        # Everything else on the API still needs SigV4.
        self.assertEqual(get(TOKEN_SERVER.api_url + "/things")[0], 403)

    def test_5_loopback_only_without_a_token(self):
        addr = non_loopback_address()
        if addr is None:
            self.skipTest("this machine has no address besides loopback")
        cfg = os.path.join(TMP, "open.toml")
        with open(cfg, "w") as f:
            f.write('[api]\nbind = "0.0.0.0"\nallow_plain_http_on_network = true\n')
        os.makedirs(os.path.join(TMP, "c"), exist_ok=True)
        server = Fleetkeyd(os.path.join(TMP, "c", "data"), "--config", cfg)
        try:
            port = server.endpoints["api"]["port"]
            status, _, body = get("http://%s:%d/metrics" % (addr, port))
            self.assertEqual(status, 403, body)
            self.assertIn("metrics_token", body)
            self.assertEqual(get("http://127.0.0.1:%d/metrics" % port)[0], 200)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
