"""crash: kill -9 of fleetkeyd during a fleet provisioning storm, then a restart on the same
data: no half-registered device (every provisioned thing has its ACTIVE certificate, every
certificate made ACTIVE by provisioning has its thing), and every device that received
RegisterThing `accepted` connects with its certificate."""

import json
import os
import shutil
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(__file__))
from fleet_provisioning_test import CLAIM_POLICY, DEVICE_POLICY, TEMPLATE, make_csr  # noqa: E402
from fleetkeyd import Fleetkeyd  # noqa: E402


class Device:
    """One device running the provisioning flow over one claim connection."""

    def __init__(self, server, claim, serial, results):
        self.server, self.serial, self.results = server, serial, results
        self.replies = {}
        self.event = threading.Event()
        self.c = mqtt.Client(client_id="claim-%s" % serial)
        ctx = ssl.create_default_context(cafile=server.root_ca)
        ctx.load_cert_chain(claim["cert"], claim["key"])
        self.c.tls_set_context(ctx)
        self.c.on_message = self._on_message

    def _on_message(self, c, u, m):
        self.replies[m.topic] = m.payload
        self.event.set()

    def wait(self, prefix, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for t, p in list(self.replies.items()):
                if t.startswith(prefix):
                    del self.replies[t]
                    return t.endswith("/accepted"), p
            self.event.wait(0.05)
            self.event.clear()
        return None, None

    def run(self):
        try:
            self.c.connect("localhost", self.server.mqtt_port, 30)
        except OSError:
            return
        self.c.loop_start()
        try:
            csr_topic = "$aws/certificates/create-from-csr/json"
            reg_topic = "$aws/provisioning-templates/LockerTemplate/provision/json"
            self.c.subscribe([(csr_topic + "/+", 1), (reg_topic + "/+", 1)])
            time.sleep(0.1)
            csr, key = make_csr("locker-" + self.serial)
            self.c.publish(csr_topic, json.dumps({"certificateSigningRequest": csr}), qos=1)
            ok, p = self.wait(csr_topic)
            if not ok:
                return
            created = json.loads(p)
            self.c.publish(reg_topic, json.dumps({
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": self.serial}}), qos=1)
            ok, p = self.wait(reg_topic)
            if ok:
                self.results.append({"thing": json.loads(p)["thingName"],
                                     "id": created["certificateId"],
                                     "pem": created["certificatePem"], "key": key})
        finally:
            self.c.loop_stop()
            self.c.disconnect()


class ProvisioningCrash(unittest.TestCase):
    def test_kill_during_storm(self):
        tmp = tempfile.mkdtemp(prefix="fk_fpcrash_")
        data = os.path.join(tmp, "data")
        server = Fleetkeyd(data)
        try:
            server.create_policy("claim", CLAIM_POLICY)
            server.create_policy("locker-device", DEVICE_POLICY)
            claim = server.create_device("claim", policy="claim")
            server.aws("create-provisioning-template", "--template-name", "LockerTemplate",
                       "--template-body", json.dumps(TEMPLATE), "--provisioning-role-arn",
                       "arn:aws:iam::123456789012:role/provisioning", "--enabled")
            results = []
            stop = threading.Event()
            counter = iter(range(10000, 99999))
            lock = threading.Lock()

            def worker():
                while not stop.is_set():
                    with lock:
                        serial = str(next(counter))
                    Device(server, claim, serial, results).run()

            threads = [threading.Thread(target=worker) for _ in range(12)]
            for t in threads:
                t.start()
            deadline = time.time() + 30
            while len(results) < 40 and time.time() < deadline:
                time.sleep(0.05)
            server.proc.kill()  # kill -9 in the middle of the storm
            server.proc.wait()
            stop.set()
            for t in threads:
                t.join(60)
            accepted = list(results)
            self.assertGreaterEqual(len(accepted), 40, "the storm did not get going")
            server.stop()

            server = Fleetkeyd(data)
            # Every device that was told `accepted` connects with its certificate.
            for d in accepted:
                cert = os.path.join(tmp, d["thing"] + ".pem")
                key = os.path.join(tmp, d["thing"] + ".key")
                with open(cert, "w") as f:
                    f.write(d["pem"])
                with open(key, "w") as f:
                    f.write(d["key"])
                c = mqtt.Client(client_id=d["thing"])
                ctx = ssl.create_default_context(cafile=server.root_ca)
                ctx.load_cert_chain(cert, key)
                c.tls_set_context(ctx)
                got = threading.Event()
                rc = []
                c.on_connect = lambda cl, u, f, r: (rc.append(r), got.set())
                c.connect("localhost", server.mqtt_port, 30)
                c.loop_start()
                self.assertTrue(got.wait(10), d["thing"])
                c.loop_stop()
                c.disconnect()
                self.assertEqual(rc, [0], d["thing"])
            # Nothing half-made, read from the registry file itself (the server stopped): each
            # provisioned thing has one ACTIVE certificate, each ACTIVE certificate but the
            # claim's has its thing.
            server.stop()
            db = sqlite3.connect("file:%s?mode=ro" % server.endpoints["registry"], uri=True)
            lockers = [r[0] for r in db.execute(
                "SELECT name FROM things WHERE name LIKE 'locker-%'")]
            self.assertGreaterEqual(len(lockers), len(accepted))
            self.assertTrue({d["thing"] for d in accepted} <= set(lockers))
            for name in lockers:
                rows = db.execute(
                    "SELECT c.status FROM thing_principals p JOIN certificates c "
                    "ON p.principal LIKE '%/' || c.certificate_id WHERE p.thing_name = ?",
                    (name,)).fetchall()
                self.assertEqual(rows, [("ACTIVE",)], name)
            orphans = db.execute(
                "SELECT certificate_id FROM certificates c WHERE status = 'ACTIVE' "
                "AND certificate_id != ? AND NOT EXISTS (SELECT 1 FROM thing_principals p "
                "WHERE p.principal LIKE '%/' || c.certificate_id)", (claim["id"],)).fetchall()
            self.assertEqual(orphans, [])
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone(), ("ok",))
            db.close()
        finally:
            server.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
