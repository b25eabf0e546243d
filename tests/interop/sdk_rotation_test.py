"""Issue 19, part 1: certificate rotation by the device SDK, run by the locker controller against
a real fleetkeyd: on request, because the certificate nears expiry, after fleet provisioning,
and killed (SIGKILL, as a power cut) at every rotation state and around every save, then
restarted: each time the thing ends with exactly one ACTIVE certificate, the one on the device."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, LockerProcess, cli_env  # noqa: E402

BIN = os.path.dirname(os.path.abspath(os.environ.get("FLEETKEYD", "build/bin/fleetkeyd")))
FLEETKEY = os.path.abspath(os.environ.get("FLEETKEY", os.path.join(BIN, "fleetkey")))
LOCKER = os.environ.get("LOCKER_CONTROLLER", os.path.join(BIN, "locker-controller"))
SERVER = None
TMP = None


def setUpModule():
    global SERVER, TMP
    TMP = tempfile.mkdtemp(prefix="fk_sdk_rotation_")
    config = os.path.join(TMP, "fleetkeyd.toml")
    with open(config, "w") as f:
        f.write("[rotation]\nmax_requests_per_hour = 100\n")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", config)
    fleetkey("create-claim", "--template", "LockerTemplate", "--out", "claim")


def tearDownModule():
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def fleetkey(*args):
    r = subprocess.run([FLEETKEY, *args], env=cli_env(SERVER.data_dir), cwd=TMP,
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("fleetkey %s: %s" % (" ".join(args), r.stderr))
    return r


def aws_json(*args):
    return json.loads(SERVER.aws(*args).stdout)


def active_certificates(thing):
    out = set()
    for arn in aws_json("list-thing-principals", "--thing-name", thing)["principals"]:
        cert = arn.rsplit("/", 1)[1]
        status = aws_json("describe-certificate", "--certificate-id",
                          cert)["certificateDescription"]["status"]
        if status == "ACTIVE":
            out.add(cert)
    return out


def certificate_id(pem_file):
    der = subprocess.run(["openssl", "x509", "-in", pem_file, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def Locker(*args, env=None):
    return LockerProcess(LOCKER, SERVER.mqtt_port, *args, env=env)


class LockerRotation(unittest.TestCase):
    def direct_device(self, name):
        fleetkey("create-device", name)
        folder = os.path.join(TMP, name)
        return folder, certificate_id(os.path.join(folder, "device.cert.pem"))

    def test_1_rotate_now_then_restart_with_the_new_identity(self):
        folder, old = self.direct_device("locker-controller-501")
        locker = Locker("--rotate-now", "direct", "--cert-dir", folder)
        try:
            locker.wait_for("rotation: asked")
            locker.wait_for("rotated: certificate")
            locker.wait_for("state closed published")  # reported after the rotation
        finally:
            self.assertEqual(locker.stop(), 0)
        new = certificate_id(os.path.join(folder, "device.cert.pem"))
        self.assertNotEqual(new, old)
        self.assertEqual(active_certificates("locker-controller-501"), {new})
        self.assertFalse(os.path.exists(os.path.join(folder, "rotation.json")))
        self.assertEqual(oct(os.stat(os.path.join(folder, "device.private.key")).st_mode & 0o777),
                         "0o600")
        # Started again: the new certificate, no second rotation.
        locker = Locker("direct", "--cert-dir", folder)
        try:
            locker.wait_for("state closed published")
        finally:
            self.assertEqual(locker.stop(), 0)
        self.assertNotIn("rotation:", "\n".join(locker.all))

    def test_2_rotates_by_itself_when_the_certificate_nears_expiry(self):
        folder, old = self.direct_device("locker-controller-502")
        # create-device certificates run to 2049: a window of 100 years makes it due now.
        locker = Locker("--rotate-before-days", "36500", "direct", "--cert-dir", folder)
        try:
            locker.wait_for("rotation: certificate expires within the window")
            locker.wait_for("rotated: certificate")
        finally:
            self.assertEqual(locker.stop(), 0)
        self.assertEqual(active_certificates("locker-controller-502"),
                         {certificate_id(os.path.join(folder, "device.cert.pem"))})

    def test_3_fleet_provisioned_locker_rotates_and_its_record_follows(self):
        state = os.path.join(TMP, "state-fleet")
        claim = os.path.join(TMP, "claim")
        locker = Locker("--rotate-now", "fleet", "--claim-dir", claim, "--serial", "SN-ROT",
                        "--state-dir", state)
        try:
            locker.wait_for("provisioned: thing locker-controller-SN-ROT")
            locker.wait_for("rotated: certificate", timeout=40)
        finally:
            self.assertEqual(locker.stop(), 0)
        with open(os.path.join(state, "provisioning.json")) as f:
            record = json.load(f)
        self.assertEqual(record["certificateId"],
                         certificate_id(os.path.join(state, "device.cert.pem")))
        self.assertEqual(active_certificates("locker-controller-SN-ROT"), {record["certificateId"]})
        locker = Locker("fleet", "--claim-dir", claim, "--serial", "SN-ROT", "--state-dir", state)
        try:
            locker.wait_for("state closed published")
        finally:
            self.assertEqual(locker.stop(), 0)

    POINTS = ["rotation-generate-keys", "save-rotation-key-ready", "saved-rotation-key-ready",
              "rotation-subscribe", "rotation-send-request", "save-rotation-issued",
              "saved-rotation-issued", "rotation-switch", "commit-rotation", "committed-rotation",
              "rotation-complete"]

    def test_4_killed_at_every_rotation_step_then_restarted_has_exactly_one_identity(self):
        for i, point in enumerate(self.POINTS):
            with self.subTest(point=point):
                name = "locker-controller-6%02d" % i
                folder, old = self.direct_device(name)
                crashed = Locker("--rotate-now", "direct", "--cert-dir", folder,
                                 env={"FLEETKEY_SDK_CRASH_AT": point})
                code, out = crashed.finish()
                self.assertEqual(code, -signal.SIGKILL, out)
                self.assertIn("crash point " + point, out)
                locker = Locker("direct", "--cert-dir", folder)
                try:
                    if point not in ("rotation-generate-keys", "save-rotation-key-ready",
                                     "rotation-complete", "committed-rotation"):
                        locker.wait_for("rotated: certificate")
                    locker.wait_for("state closed published")
                finally:
                    self.assertEqual(locker.stop(), 0)
                on_device = certificate_id(os.path.join(folder, "device.cert.pem"))
                self.assertEqual(active_certificates(name), {on_device}, point)
                if point in ("rotation-generate-keys", "save-rotation-key-ready"):
                    self.assertEqual(on_device, old, "nothing was asked before the key was saved")
                else:
                    self.assertNotEqual(on_device, old)
                self.assertFalse(os.path.exists(os.path.join(folder, "rotation.json")), point)


if __name__ == "__main__":
    unittest.main(verbosity=2)
