#include "app/config.h"

#include <gtest/gtest.h>

namespace fk::app {
namespace {

Status parse(std::string_view text, Config& c) {
  return parse_config(text, "test.toml", c);
}

TEST(Config, DefaultsAreDocumentedValues) {
  Config c;
  EXPECT_EQ(c.data_dir, "./fleetkey-data");
  EXPECT_EQ(c.mqtt.port, 8883);
  EXPECT_EQ(c.api.port, 8443);
  EXPECT_EQ(c.api.bind, "127.0.0.1");
  EXPECT_EQ(c.ca.ca_key.type, crypto::KeyType::kEcP256);
  EXPECT_EQ(c.aws.region, "us-east-1");
  EXPECT_EQ(c.registry_path(), "./fleetkey-data/registry.db");
}

TEST(Config, DefaultsAreAws) {
  Config c;
  EXPECT_EQ(c.mqtt.port, 8883);
  EXPECT_EQ(c.mqtt.alpn_port, 443);
  EXPECT_EQ(c.mqtt.threads, 0);
  EXPECT_EQ(c.mqtt.max_publishes_per_second, 100);
  EXPECT_EQ(c.mqtt.max_bytes_per_second, 512 * 1024);
  EXPECT_TRUE(c.mqtt.enforce_policies);
}

TEST(Config, ParsesEverySetting) {
  Config c;
  Status st = parse(R"(
data_dir = "/var/lib/fleetkey"
log_level = "debug"
[mqtt]
bind = "127.0.0.1"
port = 0
max_publishes_per_second = 0
max_bytes_per_second = 1048576
[api]
port = 9443
[ca]
key_type = "rsa-3072"
organization = "Acme"
server_names = ["iot.acme.test", "10.0.0.5"]
device_validity_days = 365
[aws]
region = "eu-central-1"
account_id = "000011112222"
[storage]
path = "/data/registry.db"
)",
                    c);
  ASSERT_TRUE(st.is_ok()) << st.message();
  EXPECT_EQ(c.data_dir, "/var/lib/fleetkey");
  EXPECT_EQ(c.mqtt.port, 0);
  EXPECT_EQ(c.mqtt.bind, "127.0.0.1");
  EXPECT_EQ(c.mqtt.max_publishes_per_second, 0);
  EXPECT_EQ(c.mqtt.max_bytes_per_second, 1048576);
  EXPECT_EQ(c.api.port, 9443);
  EXPECT_EQ(c.ca.ca_key.type, crypto::KeyType::kRsa);
  EXPECT_EQ(c.ca.ca_key.rsa_bits, 3072);
  EXPECT_EQ(c.ca.server_names.size(), 2u);
  EXPECT_EQ(c.ca.device_validity_days, 365);
  EXPECT_EQ(c.aws.account_id, "000011112222");
  EXPECT_EQ(c.registry_path(), "/data/registry.db");
}

TEST(Config, ClusterSection) {
  Config c;
  EXPECT_FALSE(c.cluster.enabled);  // a single node unless configured
  ASSERT_TRUE(parse("[storage]\nbackend = \"postgres\"\nnode_id = \"n1\"\n"
                    "[cluster]\nnats = \"nats://a:4222,nats://b:4222\"\nreplicas = 1\n"
                    "lease_ms = 3000\ndead_after_ms = 5000\nstream_max_age_seconds = 600\n",
                    c)
                  .is_ok());
  EXPECT_TRUE(c.cluster.enabled);
  EXPECT_EQ(c.cluster.nats, "nats://a:4222,nats://b:4222");
  EXPECT_EQ(c.cluster.replicas, 1);
  EXPECT_EQ(c.cluster.lease_ms, 3000);
  EXPECT_EQ(c.cluster.dead_after_ms, 5000);
  EXPECT_EQ(c.cluster.heartbeat_ms, 1000);
  EXPECT_EQ(c.cluster.stream_max_age_seconds, 600);
}

TEST(Config, TlsEngineAndTickets) {
  Config c;
  // The defaults chosen by bench/tls_engines.sh (docs/decisions.md).
  EXPECT_EQ(c.mqtt.tls_engine, net::TlsEngineKind::kGnuTls);
  EXPECT_TRUE(c.mqtt.tls_session_tickets);
  EXPECT_EQ(c.mqtt.max_pending_handshakes, 1024);
  ASSERT_TRUE(parse("[mqtt]\ntls_engine = \"openssl\"\ntls_session_tickets = false\n"
                    "max_pending_handshakes = 0\n",
                    c)
                  .is_ok());
  EXPECT_EQ(c.mqtt.tls_engine, net::TlsEngineKind::kOpenSsl);
  EXPECT_FALSE(c.mqtt.tls_session_tickets);
  EXPECT_EQ(c.mqtt.max_pending_handshakes, 0);
  Config d;
  Status bad = parse("[mqtt]\ntls_engine = \"boringssl\"\n", d);
  EXPECT_EQ(bad.message(), "mqtt.tls_engine: must be \"openssl\" or \"gnutls\"");
  bad = parse("[mqtt]\ntls_session_tickets = 1\n", d);
  EXPECT_EQ(bad.message(), "mqtt.tls_session_tickets: must be true or false");
}

TEST(Config, RevocationUrls) {
  Config c;
  EXPECT_EQ(c.ca.crl_url, "");
  EXPECT_EQ(c.ca.ocsp_url, "");
  ASSERT_TRUE(parse("[ca]\ncrl_url = \"http://iot.example.com:8080/crl\"\n"
                    "ocsp_url = \"https://iot.example.com/ocsp\"\n",
                    c)
                  .is_ok());
  EXPECT_EQ(c.ca.crl_url, "http://iot.example.com:8080/crl");
  EXPECT_EQ(c.ca.ocsp_url, "https://iot.example.com/ocsp");
}

TEST(Config, JitpFirstConnect) {
  Config c;
  EXPECT_FALSE(c.provisioning.jitp_accept_first_connect);  // AWS's way by default
  ASSERT_TRUE(parse("[provisioning]\njitp_first_connect = \"accept\"\n", c).is_ok());
  EXPECT_TRUE(c.provisioning.jitp_accept_first_connect);
  ASSERT_TRUE(parse("[provisioning]\njitp_first_connect = \"refuse\"\n", c).is_ok());
  EXPECT_FALSE(c.provisioning.jitp_accept_first_connect);
}

TEST(Config, Rotation) {
  Config c;
  EXPECT_EQ(c.rotation.overlap_seconds, 7 * 86400);
  EXPECT_EQ(c.rotation.max_requests_per_hour, 6);
  ASSERT_TRUE(
      parse("[rotation]\noverlap_seconds = 3600\nmax_requests_per_hour = 0.5\n", c).is_ok());
  EXPECT_EQ(c.rotation.overlap_seconds, 3600);
  EXPECT_EQ(c.rotation.max_requests_per_hour, 0.5);
  EXPECT_EQ(c.timeline.retention_days, 30);
  EXPECT_EQ(c.timeline.max_events, 1'000'000);
  ASSERT_TRUE(parse("[timeline]\nretention_days = 7\nmax_events = 5000\n"
                    "per_device_per_minute = 12\n",
                    c)
                  .is_ok());
  EXPECT_EQ(c.timeline.retention_days, 7);
  EXPECT_EQ(c.timeline.max_events, 5000);
  EXPECT_EQ(c.timeline.per_device_per_minute, 12);
}

TEST(Config, ErrorsNameTheSetting) {
  struct Case {
    const char* toml;
    const char* expected;
  };
  for (const Case& k : {
           Case{"[mqtt]\nprot = 1\n", "mqtt.prot: unknown setting"},
           Case{"[mqtt]\nport = \"x\"\n", "mqtt.port: must be an integer"},
           Case{"[api]\nport = 70000\n", "api.port: must be 0..65535"},
           Case{"[mqtt]\nmax_bytes_per_second = 10\n",
                "mqtt.max_bytes_per_second: must be 0 (no limit) or 1024"},
           Case{"[ca]\nkey_type = \"dsa\"\n", "ca.key_type: unknown key type"},
           Case{"[ca]\nkey_type = \"rsa-2048\"\n",
                "ca.key_type: a CA's RSA key must be at least 3072"},
           Case{"[ca]\nserver_names = [\"a\", 3]\n", "ca.server_names[1]: must be a string"},
           Case{"[ca]\ncrl_url = \"ftp://x/crl\"\n", "ca.crl_url: must be an http:// or https://"},
           Case{"[ca]\nocsp_url = \"http://a/o,DNS:evil\"\n",
                "ca.ocsp_url: must be a URL without spaces, commas or semicolons"},
           Case{"[aws]\naccount_id = \"12\"\n", "aws.account_id: must be 12 digits"},
           Case{"[rotation]\noverlap_seconds = 0\n",
                "rotation.overlap_seconds: must be an integer from 1"},
           Case{"[rotation]\nmax_requests_per_hour = -1\n",
                "rotation.max_requests_per_hour: must be a number from 0"},
           Case{"[timeline]\nretention_days = 0\n",
                "timeline.retention_days: must be an integer from 1 to 3650"},
           Case{"[timeline]\nmax_events = 10\n",
                "timeline.max_events: must be an integer from 100"},
           Case{"[timeline]\nper_device_per_minute = \"many\"\n",
                "timeline.per_device_per_minute: must be a number from 1 to 6000"},
           Case{"[timeline]\nkeep = 1\n", "timeline.keep"},
           Case{"[provisioning]\njitp_first_connect = true\n",
                "provisioning.jitp_first_connect: must be \"refuse\" (AWS) or \"accept\""},
           Case{"log_level = \"loud\"\n", "log_level: must be debug"},
           Case{"colour = 1\n", "colour: unknown setting"},
           Case{"[mqtt\n", "test.toml:1:"},
           Case{"[cluster]\nreplicas = 3\n", "cluster.nats: the NATS servers' URLs are required"},
           Case{"[cluster]\nnats = \"nats://a:4222\"\n",
                "cluster: needs the shared registry: storage.backend = \"postgres\""},
           Case{"[storage]\nbackend = \"postgres\"\n[cluster]\nnats = \"n\"\nreplicas = 9\n",
                "cluster.replicas: must be an integer from 1 to 5"},
           Case{"[storage]\nbackend = \"postgres\"\n[cluster]\nnats = \"n\"\nlease_ms = 9000\n",
                "cluster.dead_after_ms: must be longer than cluster.lease_ms"},
           Case{"[storage]\nbackend = \"postgres\"\n[cluster]\nnats = \"n\"\nlease = 1\n",
                "cluster.lease: unknown setting"},
       }) {
    Config c;
    Status st = parse(k.toml, c);
    ASSERT_FALSE(st.is_ok()) << k.toml;
    EXPECT_NE(st.message().find(k.expected), std::string::npos) << st.message();
  }
}

}  // namespace
}  // namespace fk::app
