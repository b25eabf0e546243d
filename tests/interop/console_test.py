"""Issue 20, part 5: the web console in a real headless Chromium (Debian's chromium, driven by
Selenium through Debian's chromedriver): sign in with an access key, find a device, see it
connected (a real paho client), revoke it after the confirmation, see it disconnected and the
timeline entry; the overview and the templates page. Screenshots go to
$FK_ARTIFACTS_DIR (default build/artifacts/console). Then the bad input: console requests with no
session, a forged or ended one, without the CSRF header, from another origin; wrong secrets;
nothing secret in the page's storage."""
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, write_config  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARTIFACTS = os.environ.get("FK_ARTIFACTS_DIR", os.path.join(REPO, "build", "artifacts", "console"))
SERVER = None
TMP = None
BROWSER = None
KEY = None
SECRET = None

DEVICE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Subscribe", "iot:Receive"], "Resource": "*"}]}
TEMPLATE = {"Parameters": {"SerialNumber": {"Type": "String"}},
            "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
                "ThingName": {"Fn::Join": ["", ["locker-", {"Ref": "SerialNumber"}]]}}}}}


def setUpModule():
    global SERVER, TMP, BROWSER, KEY, SECRET
    TMP = tempfile.mkdtemp(prefix="fk_console_")
    config = write_config(os.path.join(TMP, "fleetkeyd.toml"), "", "console")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"), "--config", config)
    with open(SERVER.endpoints["credentials_file"]) as f:
        creds = dict(line.split("=", 1) for line in f if "=" in line)
    KEY = creds["aws_access_key_id "].strip() if "aws_access_key_id " in creds else \
        creds["aws_access_key_id"].strip()
    SECRET = (creds.get("aws_secret_access_key ") or creds["aws_secret_access_key"]).strip()
    SERVER.create_policy("device", DEVICE_POLICY)
    SERVER.aws("create-provisioning-template", "--template-name", "LockerFleet",
               "--template-body", json.dumps(TEMPLATE), "--provisioning-role-arn",
               "arn:aws:iam::123456789012:role/provisioning", "--enabled")
    os.makedirs(ARTIFACTS, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--user-data-dir=" + os.path.join(TMP, "chromium")):
        options.add_argument(flag)
    BROWSER = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    BROWSER.set_page_load_timeout(30)


def tearDownModule():
    if BROWSER:
        BROWSER.quit()
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def wait(condition, timeout=15):
    # The live pages redraw every 3 s: an element found just before may be replaced.
    return WebDriverWait(BROWSER, timeout, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException]).until(condition)


def click(element_id):
    """Clicks the element with this id, again if a redraw replaced it meanwhile."""
    for _ in range(5):
        try:
            wait(EC.element_to_be_clickable((By.ID, element_id))).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError("could not click " + element_id)


def text_of(element_id):
    return wait(EC.presence_of_element_located((By.ID, element_id))).text


def shot(name):
    BROWSER.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))


def sign_in(key, secret):
    BROWSER.get(SERVER.api_url + "/console/")
    BROWSER.delete_all_cookies()  # a fresh browser session
    BROWSER.get(SERVER.api_url + "/console/")
    wait(EC.visibility_of_element_located((By.ID, "access-key"))).send_keys(key)
    BROWSER.find_element(By.ID, "secret-key").send_keys(secret)
    BROWSER.find_element(By.ID, "signin-button").click()


class Device:
    """A locker connected with paho (as its thing), which notices being cut."""

    def __init__(self, d, client_id):
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)
        ctx = ssl.create_default_context(cafile=SERVER.root_ca)
        ctx.load_cert_chain(d["cert"], d["key"])
        self.c.tls_set_context(ctx)
        self.up, self.gone = threading.Event(), threading.Event()
        self.c.on_connect = lambda *a: self.up.set()
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.reconnect_delay_set(60, 120)
        self.c.connect_async("localhost", SERVER.mqtt_port, keepalive=60)
        self.c.loop_start()
        assert self.up.wait(10), "no CONNACK"

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def http(method, path, body=None, headers=None):
    req = urllib.request.Request(SERVER.api_url + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class Console(unittest.TestCase):
    def test_1_sign_in_find_a_device_see_it_connected_revoke_it(self):
        for i in range(3):
            SERVER.create_device("locker-%d" % (300 + i), policy="device", thing=True)
        d = SERVER.create_device("locker-controller-101", policy="device", thing=True)
        SERVER.aws("update-thing", "--thing-name", "locker-controller-101", "--attribute-payload",
                   json.dumps({"attributes": {"site": "berlin-hbf"}}))
        device = Device(d, "locker-controller-101")

        # A wrong secret: refused, stays on the sign-in form.
        sign_in(KEY, "not-the-secret")
        wait(lambda b: "wrong" in b.find_element(By.ID, "signin-error").text)
        shot("0-sign-in-refused")

        sign_in(KEY, SECRET)
        wait(EC.visibility_of_element_located((By.ID, "card-connected")))
        wait(lambda b: b.find_element(By.ID, "card-connected").text.endswith("1"))
        self.assertIn(KEY, BROWSER.find_element(By.ID, "who").text)
        shot("1-overview")

        # Find it: the things page, search by part of the name.
        click("nav-things")
        box = wait(EC.visibility_of_element_located((By.ID, "thing-search")))
        box.send_keys("controller")
        BROWSER.find_element(By.ID, "thing-search-button").click()
        wait(lambda b: [e.text for e in b.find_elements(By.CLASS_NAME, "thing-link")] ==
             ["locker-controller-101"])
        shot("2-things-search")
        BROWSER.find_element(By.LINK_TEXT, "locker-controller-101").click()

        # Its page: connected, from where, with which certificate.
        wait(lambda b: "connected as locker-controller-101" in b.find_element(By.ID, "verdict").text)
        wait(lambda b: "locker-controller-101 from 127.0.0.1" in
             b.find_element(By.ID, "connections-" + d["id"]).text)
        wait(lambda b: b.find_element(By.ID, "status-" + d["id"]).text == "ACTIVE")
        wait(lambda b: "site=berlin-hbf" in b.find_element(By.ID, "view").text)
        shot("3-thing-connected")

        # Revoke: a confirmation first; Cancel changes nothing.
        click("revoke-" + d["id"])
        wait(EC.visibility_of_element_located((By.ID, "modal-text")))
        self.assertIn("can never be activated again", BROWSER.find_element(By.ID, "modal-text").text)
        shot("4-revoke-confirmation")
        click("modal-cancel")
        time.sleep(0.5)
        self.assertFalse(device.gone.is_set())
        status = json.loads(SERVER.aws("describe-certificate", "--certificate-id", d["id"]).stdout)
        self.assertEqual(status["certificateDescription"]["status"], "ACTIVE")
        click("revoke-" + d["id"])
        click("modal-confirm")

        # Cut at once; the page shows it disconnected, REVOKED, and the timeline says why.
        self.assertTrue(device.gone.wait(5), "the device was not disconnected")
        wait(lambda b: b.find_element(By.ID, "status-" + d["id"]).text == "REVOKED")
        wait(lambda b: "not connected" in b.find_element(By.ID, "connections-" + d["id"]).text)
        wait(lambda b: "cannot connect" in b.find_element(By.ID, "verdict").text)
        wait(lambda b: all(x in b.find_element(By.ID, "timeline").text
                           for x in ("AUTH_ERROR", "ACTIVE -> REVOKED", KEY)))  # KEY: who did it
        shot("5-thing-revoked")
        device.stop()
        status = json.loads(SERVER.aws("describe-certificate", "--certificate-id", d["id"]).stdout)
        self.assertEqual(status["certificateDescription"]["status"], "REVOKED")
        # The console's change is in the audit log, under the signed-in access key.
        status_code, body, _ = http("GET", "/console/api/fleetkey/audit?resource=" + d["id"],
                                    headers={"X-Fleetkey-Csrf": self.csrf(),
                                             "Cookie": self.cookie()})
        self.assertEqual(status_code, 200, body)
        records = json.loads(body)["records"]
        self.assertEqual([(r["operation"], r["accessKey"]) for r in records],
                         [("UpdateCertificate", KEY)])

        # The templates page.
        click("nav-provisioning")
        wait(lambda b: "LockerFleet" in b.find_element(By.ID, "view").text)
        shot("6-templates")

        # Nothing secret in the page's storage: no secret key, no CSRF token at rest.
        storage = BROWSER.execute_script(
            "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
            " document.cookie])")
        self.assertNotIn(SECRET, storage)
        self.assertEqual(storage, '[[],[],""]')  # the session cookie is HttpOnly

    def cookie(self):
        c = BROWSER.get_cookie("fk_console")
        return "fk_console=" + c["value"]

    def csrf(self):
        status, body, _ = http("GET", "/console/session", headers={"Cookie": self.cookie()})
        self.assertEqual(status, 200, body)
        return json.loads(body)["csrfToken"]

    def test_2_requests_without_a_good_session_are_refused(self):
        sign_in(KEY, SECRET)
        wait(EC.visibility_of_element_located((By.ID, "card-connected")))
        cookie = self.cookie()
        csrf = self.csrf()
        ok = {"Cookie": cookie, "X-Fleetkey-Csrf": csrf}
        self.assertEqual(http("GET", "/console/api/things", headers=ok)[0], 200)
        # No session, a forged one, no CSRF header, a wrong one, another site's Origin.
        for headers, want in (({}, 401),
                              ({"Cookie": "fk_console=" + "0" * 64, "X-Fleetkey-Csrf": csrf}, 401),
                              ({"Cookie": cookie}, 403),
                              ({"Cookie": cookie, "X-Fleetkey-Csrf": "0" * 64}, 403),
                              (dict(ok, Origin="https://evil.example"), 403)):
            status, body, hdrs = http("GET", "/console/api/things", headers=headers)
            self.assertEqual(status, want, (headers, body))
            self.assertIn("message", json.loads(body))
        # A cross-site write is refused too, and changes nothing.
        made = SERVER.create_device("locker-csrf", policy="device", thing=True)
        status, _, _ = http("PUT", "/console/api/certificates/%s?newStatus=REVOKED" % made["id"],
                            headers=dict(ok, Origin="https://evil.example"))
        self.assertEqual(status, 403)
        desc = json.loads(SERVER.aws("describe-certificate", "--certificate-id", made["id"]).stdout)
        self.assertEqual(desc["certificateDescription"]["status"], "ACTIVE")
        # Sign-in: bad bodies and a cross-site sign-in.
        for body in (b"", b"{", b'{"accessKeyId": 5}', b"x" * 10000):
            self.assertEqual(http("POST", "/console/session", body)[0], 400, body[:10])
        status, _, _ = http("POST", "/console/session",
                            json.dumps({"accessKeyId": KEY, "secretAccessKey": SECRET}).encode(),
                            {"Origin": "https://evil.example"})
        self.assertEqual(status, 403)
        # The pages say what browsers must not do with them.
        status, page, hdrs = http("GET", "/console/")
        self.assertEqual(status, 200)
        self.assertIn("frame-ancestors 'none'", hdrs.get("Content-Security-Policy", ""))
        self.assertNotIn(SECRET, page)
        # Signing out ends the session: its cookie is refused afterwards (an ended session).
        click("sign-out")
        wait(EC.visibility_of_element_located((By.ID, "signin-form")))
        shot("7-signed-out")
        self.assertEqual(http("GET", "/console/api/things", headers=ok)[0], 401)
        # The SigV4 API is unchanged: a console cookie is no signature.
        self.assertEqual(http("GET", "/things", headers={"Cookie": cookie})[0], 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
