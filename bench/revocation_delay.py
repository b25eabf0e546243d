"""The delay from a revocation's HTTP 200 on one node to the TCP close of the device's session on
another (bench/cluster.sh, bench/cluster_mqtt.sh):
  revocation_delay.py WORK N MQTT_PORT API_URL ROOT_CA FLEETKEY
WORK/rev/rev-<i>/ holds the devices made by `fleetkey create-devices --prefix rev-`."""
import os, ssl, subprocess, sys, threading, time
import paho.mqtt.client as mqtt
work, n, port, api2, ca, fleetkey = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
env = dict(os.environ, FLEETKEY_ENDPOINT_URL=api2)
delays = []
for i in range(1, n + 1):
    name = "rev-%d" % i
    d = os.path.join(work, "rev", name)
    closed = []
    up = threading.Event()
    c = mqtt.Client(client_id=name, protocol=mqtt.MQTTv311)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(os.path.join(d, "device.cert.pem"), os.path.join(d, "device.private.key"))
    c.tls_set_context(ctx)
    c.on_connect = lambda *a: up.set()
    c.on_disconnect = lambda *a: closed.append(time.monotonic())
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    if not up.wait(10):
        print("device %s could not connect" % name); sys.exit(1)
    r = subprocess.run([fleetkey, "certs", "revoke", "--thing", name], env=env,
                       capture_output=True, text=True)
    t200 = time.monotonic()  # the CLI exits right after the API's 200
    if r.returncode != 0:
        print("revoke failed: " + r.stderr); sys.exit(1)
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.001)
    c.loop_stop()
    if not closed:
        print("%s: not closed within 5 s" % name); sys.exit(1)
    delays.append((closed[0] - t200) * 1000)
delays.sort()
q = lambda p: delays[min(len(delays) - 1, int(p * (len(delays) - 1)))]
print("| revocations | p50 ms | p99 ms | max ms | min ms |")
print("|---|---|---|---|---|")
print("| %d | %.1f | %.1f | %.1f | %.1f |" % (n, q(0.5), q(0.99), delays[-1], delays[0]))
print()
print("(ms from the fleetkey CLI's exit, right after node 2's HTTP 200, to the close seen by the")
print("device on node 3; negative: the close arrived before the CLI had exited)")
