"""Issue 20, part 3: the audit log. A scripted session with the aws CLI (changes and reads, one
failing change), then `fleetkey audit`: every change, in order, with its access key, source and
result; no read; no secret. Bad ranges and limits are refused."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fleetkeyd import Fleetkeyd, cli_env, signed_call  # noqa: E402

FLEETKEY = os.path.abspath(os.environ.get("FLEETKEY", "build/bin/fleetkey"))
SERVER = None
TMP = None


def setUpModule():
    global SERVER, TMP
    TMP = tempfile.mkdtemp(prefix="fk_audit_")
    SERVER = Fleetkeyd(os.path.join(TMP, "data"))


def tearDownModule():
    code = SERVER.stop()
    subprocess.run(["rm", "-rf", TMP])
    if code != 0:
        raise AssertionError("fleetkeyd did not stop cleanly (exit %s)" % code)


def fleetkey(*args, check=True):
    r = subprocess.run([FLEETKEY, *args], env=cli_env(SERVER.data_dir), cwd=TMP,
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("fleetkey %s: %s" % (" ".join(args), r.stderr))
    return r


class Audit(unittest.TestCase):
    def test_1_a_scripted_aws_cli_session_every_change_nothing_else(self):
        policy = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]})
        SERVER.aws("create-thing", "--thing-name", "locker-1")
        SERVER.aws("describe-thing", "--thing-name", "locker-1")  # a read
        SERVER.aws("update-thing", "--thing-name", "locker-1", "--attribute-payload",
                   json.dumps({"attributes": {"site": "berlin"}}))
        SERVER.aws("list-things")  # a read
        SERVER.aws("create-policy", "--policy-name", "p1", "--policy-document", policy)
        made = json.loads(SERVER.aws("create-keys-and-certificate", "--set-as-active").stdout)
        SERVER.aws("attach-policy", "--policy-name", "p1", "--target", made["certificateArn"])
        SERVER.aws("get-policy", "--policy-name", "p1")  # a read
        failed = SERVER.aws("delete-policy", "--policy-name", "no-such-policy", check=False)
        self.assertNotEqual(failed.returncode, 0)

        out = fleetkey("audit", "--jsonl").stdout
        records = [json.loads(line) for line in out.splitlines()]
        ops = [r["operation"] for r in records]
        # AWS's operation names, as CloudTrail logs them.
        self.assertEqual(ops, ["CreateThing", "UpdateThing", "CreatePolicy",
                               "CreateKeysAndCertificate", "AttachPolicy", "DeletePolicy"], out)
        seqs = [r["sequence"] for r in records]
        self.assertEqual(seqs, sorted(seqs))
        with open(SERVER.endpoints["credentials_file"]) as f:
            key = f.read()
        for r in records:
            self.assertIn(r["accessKey"], key)
            self.assertTrue(r["accessKey"].startswith("AKIA"))
            self.assertEqual(r["source"], "127.0.0.1")
        self.assertEqual(records[0]["resource"], "locker-1")
        self.assertEqual(records[1]["request"]["body"]["attributePayload"],
                         {"attributes": {"site": "berlin"}})
        self.assertEqual((records[-1]["status"], records[-1]["errorCode"]),
                         (404, "ResourceNotFoundException"))
        self.assertEqual(records[0]["status"], 200)
        # No secret: the server-made private key is in the response, never in the log.
        self.assertNotIn("PRIVATE KEY", out)
        self.assertNotIn(made["keyPair"]["PrivateKey"][40:80], out)

        # Queries: by resource, by access key, by time.
        by_resource = fleetkey("audit", "--jsonl", "--resource", "p1").stdout.splitlines()
        self.assertEqual([json.loads(x)["operation"] for x in by_resource],
                         ["CreatePolicy", "AttachPolicy"])
        self.assertEqual(fleetkey("audit", "--jsonl", "--access-key", "AKIANOBODY").stdout, "")
        self.assertEqual(len(fleetkey("audit", "--jsonl", "--since", "1h").stdout.splitlines()),
                         len(records))
        self.assertEqual(fleetkey("audit", "--jsonl", "--until", "1h").stdout, "")
        table = fleetkey("audit").stdout
        self.assertIn("CreateThing", table)

    def test_2_bad_ranges_and_limits_are_refused(self):
        for query in ("from=10&to=5", "limit=100000", "limit=0", "from=abc", "after=-1"):
            status, body = signed_call(SERVER.endpoints, "GET", "/fleetkey/audit?" + query)
            self.assertEqual(status, 400, (query, body))
            self.assertIn("message", json.loads(body))
        r = fleetkey("audit", "--since", "soon", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        # The log cannot be written through the API: no route changes it.
        status, _ = signed_call(SERVER.endpoints, "DELETE", "/fleetkey/audit")
        self.assertIn(status, (404, 405))


if __name__ == "__main__":
    unittest.main(verbosity=2)
