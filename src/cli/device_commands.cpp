// create-device, create-devices and create-claim: the factory's commands.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include "base/files.h"
#include "base/strings.h"
#include "cli/batch.h"
#include "cli/commands.h"
#include "cli/device_factory.h"
#include "codec/bounded_json.h"
#include "crypto/x509.h"

namespace fk::cli {
namespace {

std::atomic<bool> g_stop{false};

void on_sigint(int) {
  g_stop.store(true);
}

Result<std::map<std::string, std::string>> parse_attributes(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string part =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    if (part.empty()) continue;
    std::size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0)
      return invalid_request("attribute '" + part + "' is not key=value");
    out[part.substr(0, eq)] = part.substr(eq + 1);
  }
  if (out.size() > 50) return invalid_request("at most 50 attributes per thing");
  return out;
}

struct DeviceFlags {
  std::string policy;
  std::string attributes;
  std::string key_type = "ec-p256";
};

// The shared part of create-device and create-devices: key spec, attributes, the policy
// (the default one made on first use).
Result<DeviceRequest> device_template(IotClient& api, const DeviceFlags& f) {
  DeviceRequest r;
  FK_ASSIGN_OR_RETURN(r.key_spec, crypto::parse_key_spec(f.key_type));
  FK_ASSIGN_OR_RETURN(r.attributes, parse_attributes(f.attributes));
  r.policy_name = f.policy.empty() ? kDefaultDevicePolicy : f.policy;
  if (f.policy.empty()) {
    FK_RETURN_IF_ERROR(ensure_policy(api, r.policy_name, default_device_policy_document()));
  } else {
    auto p = api.call("GET", "/policies/" + encode(r.policy_name));
    if (!p.is_ok() && p.status().code() == ErrorCode::kNotFound)
      return not_found("policy " + r.policy_name +
                       " does not exist; create it first (aws iot create-policy) or leave out "
                       "--policy for fleetkey's thing-scoped device policy");
    FK_RETURN_IF_ERROR(p.status());
  }
  return r;
}

void add_device_flags(CLI::App* sub, DeviceFlags& f) {
  sub->add_option("--policy", f.policy,
                  "IoT policy to attach (default: fleetkey-device, thing-scoped, made on first "
                  "use)");
  sub->add_option("--attributes", f.attributes, "thing attributes, k=v,k2=v2");
  sub->add_option("--key-type", f.key_type,
                  "key made here: ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096");
}

json record_json(const DeviceRecord& r) {
  return {{"thingName", r.thing_name},
          {"certificateId", r.certificate_id},
          {"certificateArn", r.certificate_arn},
          {"serialNumber", r.serial_hex},
          {"notAfter", format_utc(r.not_after)},
          {"folder", r.folder},
          {"resumed", r.resumed},
          {"alreadyDone", r.already_done}};
}

// The restricted claim policy of the article: provisioning topics of this template only.
std::string claim_policy_document(const std::string& template_name) {
  const std::string t = "$aws/provisioning-templates/" + template_name + "/provision/*";
  json doc = {{"Version", "2012-10-17"},
              {"Statement",
               json::array({{{"Effect", "Allow"},
                             {"Action", "iot:Connect"},
                             {"Resource", "arn:aws:iot:*:*:client/*"}},
                            {{"Effect", "Allow"},
                             {"Action", {"iot:Publish", "iot:Receive"}},
                             {"Resource",
                              {"arn:aws:iot:*:*:topic/$aws/certificates/create/*",
                               "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/*",
                               "arn:aws:iot:*:*:topic/" + t}}},
                            {{"Effect", "Allow"},
                             {"Action", "iot:Subscribe"},
                             {"Resource",
                              {"arn:aws:iot:*:*:topicfilter/$aws/certificates/create/*",
                               "arn:aws:iot:*:*:topicfilter/$aws/certificates/create-from-csr/*",
                               "arn:aws:iot:*:*:topicfilter/" + t}}}})}};
  return doc.dump();
}

// The built-in locker-controller template: SerialNumber -> thing <prefix><serial>.
std::string builtin_template(const std::string& thing_prefix, const std::string& device_policy) {
  json body = {
      {"Parameters",
       {{"SerialNumber", {{"Type", "String"}}},
        {"AWS::IoT::Certificate::Id", {{"Type", "String"}}}}},
      {"Resources",
       {{"thing",
         {{"Type", "AWS::IoT::Thing"},
          {"Properties",
           {{"ThingName", {{"Fn::Join", {"", {thing_prefix, {{"Ref", "SerialNumber"}}}}}}},
            {"AttributePayload", {{"serial", {{"Ref", "SerialNumber"}}}}}}}}},
        {"certificate",
         {{"Type", "AWS::IoT::Certificate"},
          {"Properties",
           {{"CertificateId", {{"Ref", "AWS::IoT::Certificate::Id"}}}, {"Status", "ACTIVE"}}}}},
        {"policy",
         {{"Type", "AWS::IoT::Policy"}, {"Properties", {{"PolicyName", device_policy}}}}}}},
      {"DeviceConfiguration",
       {{"commandsTopic", {{"Fn::Sub", "lockers/" + thing_prefix + "${SerialNumber}/commands"}}},
        {"stateTopic", {{"Fn::Sub", "lockers/" + thing_prefix + "${SerialNumber}/state"}}}}}};
  return body.dump();
}

int create_device(Globals& g, const std::string& name, const DeviceFlags& f,
                  const std::string& csr_file, bool server_keys, std::string out) {
  if (Status st = check_thing_name(name); !st.is_ok()) return report_error(st);
  if (!csr_file.empty() && server_keys)
    return report_error(invalid_request("--csr and --server-keys exclude each other"));
  auto api = g.client();
  if (!api.is_ok()) return report_error(api.status());
  auto r = device_template(**api, f);
  if (!r.is_ok()) return report_error(r.status());
  r->thing_name = name;
  r->folder = out.empty() ? "./" + name : out;
  if (!csr_file.empty()) {
    auto csr = read_file(csr_file);
    if (!csr.is_ok())
      return report_error(
          invalid_request("cannot read CSR " + csr_file + ": " + csr.status().message()));
    if (auto info = crypto::parse_csr(*csr); !info.is_ok()) return report_error(info.status());
    r->keys = KeySource::kCsr;
    r->csr_pem = *csr;
  } else if (server_keys) {
    r->keys = KeySource::kServer;
  }
  auto ca = fetch_root_ca(**api);
  if (!ca.is_ok()) return report_error(ca.status());
  DeviceFactory factory(**api, *ca);
  auto rec = factory.create(*r);
  if (!rec.is_ok()) return report_error(rec.status());
  std::vector<std::vector<std::string>> rows = {
      {"thing", rec->thing_name},
      {"certificate", rec->certificate_id},
      {"policy", r->policy_name},
      {"expires", format_utc(rec->not_after)},
      {"files", rec->folder + "/{device.cert.pem," +
                    (r->keys == KeySource::kCsr ? std::string() : "device.private.key,") +
                    "root-ca.pem}"}};
  if (rec->already_done) {
    // The folder's journal says done, but the identity it made may have been revoked (or
    // deactivated) since: then those files no longer connect, and "nothing to do" would lie.
    auto d = (*api)->call("GET", "/certificates/" + rec->certificate_id);
    if (!d.is_ok()) return report_error(d.status());
    const std::string status = (*d)["certificateDescription"].value("status", "");
    if (status != "ACTIVE")
      return report_error(Status{
          ErrorCode::kCertificateState,
          "thing " + name + " was made by an earlier run, but its certificate " +
              rec->certificate_id + " is now " + status + ": the files in " + rec->folder +
              " no longer connect. To give the device a new identity, delete the thing and its "
              "certificates (fleetkey things delete " +
              name + " --with-certificates) and that folder, then run create-device again"});
    rows.push_back({"note", "already made by an earlier run; nothing to do"});
  }
  if (rec->resumed) rows.push_back({"note", "finished an interrupted run"});
  print(g.format(), record_json(*rec), {"FIELD", "VALUE"}, rows);
  return kExitOk;
}

struct BatchFlags {
  std::string prefix, names_file, out = "./devices", bundle, passwords_file;
  long from = -1, to = -1;
  int width = 0, parallel = 4;
  bool no_progress = false;
};

int create_devices(Globals& g, const DeviceFlags& f, const BatchFlags& b) {
  BatchOptions o;
  if (!b.names_file.empty() && !b.prefix.empty())
    return report_error(invalid_request("give either --prefix/--from/--to or --names-file"));
  Result<std::vector<std::string>> names =
      !b.names_file.empty()
          ? read_names_file(b.names_file)
          : (b.prefix.empty() || b.from < 0 || b.to < 0
                 ? Result<std::vector<std::string>>(invalid_request(
                       "name the devices: --prefix P --from N --to M, or --names-file FILE"))
                 : range_names(b.prefix, b.from, b.to, b.width));
  if (!names.is_ok()) return report_error(names.status());
  if (!b.bundle.empty() && b.bundle != "pkcs12")
    return report_error(invalid_request("--bundle takes pkcs12"));
  auto api = g.client();
  if (!api.is_ok()) return report_error(api.status());
  auto r = device_template(**api, f);
  if (!r.is_ok()) return report_error(r.status());
  auto ca = fetch_root_ca(**api);
  if (!ca.is_ok()) return report_error(ca.status());
  o.names = std::move(*names);
  o.out_dir = b.out;
  o.device = *r;
  o.parallel = std::clamp(b.parallel, 1, 32);
  o.bundle = !b.bundle.empty();
  o.passwords_file = b.passwords_file;
  o.terminal = ::isatty(STDERR_FILENO) == 1;
  o.show_progress = !b.no_progress;
  o.stop = &g_stop;
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  auto outcome = run_batch((*api)->connection(), *ca, o);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (!outcome.is_ok()) return report_error(outcome.status());
  if (Status st = write_manifest(o.out_dir, outcome->done); !st.is_ok()) return report_error(st);
  std::size_t made = 0, resumed = 0, skipped = 0;
  for (const auto& d : outcome->done) {
    if (d.already_done)
      ++skipped;
    else if (d.resumed)
      ++resumed;
    else
      ++made;
  }
  json summary = {{"devices", o.names.size()},
                  {"made", made},
                  {"resumed", resumed},
                  {"alreadyDone", skipped},
                  {"failed", outcome->failed.size()},
                  {"notStarted", outcome->not_started},
                  {"manifest", o.out_dir + "/manifest.csv"}};
  json failures = json::array();
  for (const auto& [n, st] : outcome->failed)
    failures.push_back({{"thingName", n}, {"error", st.message()}});
  summary["failures"] = failures;
  if (o.bundle)
    summary["passwords"] =
        o.passwords_file.empty() ? o.out_dir + "/bundle-passwords.csv" : o.passwords_file;
  std::vector<std::vector<std::string>> rows = {
      {"devices", std::to_string(o.names.size())},
      {"made now", std::to_string(made)},
      {"finished (interrupted before)", std::to_string(resumed)},
      {"already done", std::to_string(skipped)},
      {"failed", std::to_string(outcome->failed.size())},
      {"not started (stopped)", std::to_string(outcome->not_started)},
      {"manifest", o.out_dir + "/manifest.csv, manifest.json"}};
  if (o.bundle) rows.push_back({"bundle passwords", summary["passwords"]});
  print(g.format(), summary, {"BATCH", ""}, rows);
  for (const auto& [n, st] : outcome->failed)
    std::cerr << "failed: " << n << ": " << st.message() << "\n";
  if (outcome->unreachable) {
    std::cerr << "stopped: fleetkeyd cannot be reached; rerun the same command to finish the "
                 "batch\n";
    return report_error(*outcome->unreachable);
  }
  if (outcome->not_started > 0 || g_stop.load()) {
    std::cerr << "stopped: rerun the same command to finish the batch\n";
    return 130;
  }
  if (!outcome->failed.empty()) {
    std::cerr << "rerun the same command to retry the failed devices\n";
    // All failed for the same reason (e.g. the server went away): that reason's exit code.
    return outcome->done.empty() ? exit_code_for(outcome->failed.front().second)
                                 : static_cast<int>(kExitBatchPartial);
  }
  return kExitOk;
}

struct ClaimFlags {
  std::string template_name, template_file, device_policy = kDefaultDevicePolicy, out,
                                            thing_prefix = "locker-controller-", allow_list,
                                            parameter = "SerialNumber";
  bool reusable = false;
};

// The policies a template gives its devices: the PolicyName of each AWS::IoT::Policy resource,
// or "inline document" for a PolicyDocument.
std::string device_policies_of(const std::string& template_body) {
  auto j = codec::parse_json(template_body);
  std::string out;
  if (j.is_ok() && j->is_object() && j->contains("Resources") && (*j)["Resources"].is_object()) {
    for (const auto& [name, r] : (*j)["Resources"].items()) {
      if (!r.is_object() || r.value("Type", "") != "AWS::IoT::Policy") continue;
      const json props = r.value("Properties", json::object());
      std::string p = props.contains("PolicyName") && props["PolicyName"].is_string()
                          ? props["PolicyName"].get<std::string>()
                          : std::string("inline document (resource ") + name + ")";
      out += (out.empty() ? "" : ", ") + p;
    }
  }
  return out.empty() ? "none named in the template" : out;
}

int create_claim(Globals& g, const ClaimFlags& f) {
  auto api_r = g.client();
  if (!api_r.is_ok()) return report_error(api_r.status());
  IotClient& api = **api_r;
  const std::string out = f.out.empty() ? "./claim-" + f.template_name : f.out;
  for (const char* file : {"claim.cert.pem", "claim.private.key"})
    if (file_exists(out + "/" + file))
      return report_error(already_exists(out + "/" + file +
                                         " exists; a claim bundle is already there (choose "
                                         "another --out)"));
  std::string body;
  if (!f.template_file.empty()) {
    auto text = read_file(f.template_file);
    if (!text.is_ok())
      return report_error(
          invalid_request("cannot read " + f.template_file + ": " + text.status().message()));
    body = *text;
  } else {
    body = builtin_template(f.thing_prefix, f.device_policy);
  }
  // Policies first (the template names the device policy), then the template.
  if (f.device_policy == kDefaultDevicePolicy) {
    if (Status st = ensure_policy(api, f.device_policy, default_device_policy_document());
        !st.is_ok())
      return report_error(st);
  }
  const std::string claim_policy = f.template_name + "-claim";
  if (Status st = ensure_policy(api, claim_policy, claim_policy_document(f.template_name));
      !st.is_ok())
    return report_error(st);
  bool template_existed = false;
  auto existing = api.call("GET", "/provisioning-templates/" + encode(f.template_name));
  std::string template_body = body;
  if (existing.is_ok()) {
    template_existed = true;
    template_body = existing->value("templateBody", "");
  } else if (existing.status().code() != ErrorCode::kNotFound) {
    return report_error(existing.status());
  } else {
    auto made = api.call(
        "POST", "/provisioning-templates",
        json{{"templateName", f.template_name},
             {"description", "made by fleetkey create-claim"},
             {"templateBody", body},
             {"enabled", true},
             {"provisioningRoleArn", "arn:aws:iam::123456789012:role/fleetkey-provisioning"}});
    if (!made.is_ok()) return report_error(made.status());
  }
  if (!f.allow_list.empty()) {
    auto values = read_names_file(f.allow_list);
    if (!values.is_ok()) return report_error(values.status());
    auto put = api.call(
        "PUT", "/fleetkey/provisioning-templates/" + encode(f.template_name) + "/allow-list",
        json{{"parameter", f.parameter}, {"singleUse", !f.reusable}, {"values", *values}});
    if (!put.is_ok()) return report_error(put.status());
  }
  // The claim certificate: key made here, certificate ACTIVE with the claim policy only.
  auto keys = crypto::generate_key_pair(crypto::KeySpec{crypto::KeyType::kEcP256, 0});
  if (!keys.is_ok()) return report_error(keys.status());
  auto csr = crypto::make_csr(keys->private_key_pem, f.template_name + "-claim");
  if (!csr.is_ok()) return report_error(csr.status());
  if (Status st = make_dirs(out, 0700); !st.is_ok())
    return report_error(Status{ErrorCode::kInternal, st.message()});
  auto ca = fetch_root_ca(api);
  if (!ca.is_ok()) return report_error(ca.status());
  auto cert =
      api.call("POST", "/certificates?setAsActive=true", json{{"certificateSigningRequest", *csr}});
  if (!cert.is_ok()) return report_error(cert.status());
  const std::string arn = (*cert)["certificateArn"];
  if (auto a = api.call("PUT", "/target-policies/" + encode(claim_policy), json{{"target", arn}});
      !a.is_ok())
    return report_error(a.status());
  auto status = api.call("GET", "/fleetkey/status");
  json claim = {{"templateName", f.template_name},
                {"claimCertificateId", (*cert)["certificateId"]},
                {"claimPolicy", claim_policy},
                {"devicePolicy", device_policies_of(template_body)},
                {"endpoint", status.is_ok() ? (*status).value("mqttEndpoint", "") : ""},
                {"port", status.is_ok() ? (*status).value("mqttPort", 8883) : 8883},
                {"files", {"claim.cert.pem", "claim.private.key", "root-ca.pem", "claim.json"}}};
  // The built-in template names things <prefix><SerialNumber>: a device that lost the
  // RegisterThing reply can then prove its registration (the SDK's expected_thing_name).
  if (f.template_file.empty() && !template_existed) claim["thingNamePrefix"] = f.thing_prefix;
  Status st = write_file_atomic(out + "/claim.private.key", keys->private_key_pem, 0600);
  if (st.is_ok())
    st = write_file_atomic(out + "/claim.cert.pem", cert->value("certificatePem", ""), 0644);
  if (st.is_ok()) st = write_file_atomic(out + "/root-ca.pem", *ca, 0644);
  if (st.is_ok()) st = write_file_atomic(out + "/claim.json", claim.dump(2) + "\n", 0644);
  if (!st.is_ok()) return report_error(Status{ErrorCode::kInternal, st.message()});
  claim["folder"] = out;
  claim["templateExisted"] = template_existed;
  print(g.format(), claim, {"FIELD", "VALUE"},
        {{"template", f.template_name + (template_existed ? " (existed, kept)" : " (created)")},
         {"claim certificate", claim["claimCertificateId"]},
         {"claim policy", claim_policy + " (provisioning topics of this template only)"},
         {"device policy", claim["devicePolicy"]},
         {"allow-list", f.allow_list.empty() ? "none" : f.allow_list},
         {"bundle", out + "/{claim.cert.pem,claim.private.key,root-ca.pem,claim.json}"}});
  return kExitOk;
}

}  // namespace

void add_device_commands(CLI::App& app, Globals& g) {
  {
    auto* sub =
        app.add_subcommand("create-device",
                           "one device: thing, certificate, policy; writes device.cert.pem, "
                           "device.private.key (0600), root-ca.pem");
    auto name = std::make_shared<std::string>();
    auto f = std::make_shared<DeviceFlags>();
    auto csr = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto server_keys = std::make_shared<bool>(false);
    sub->add_option("name", *name, "thing name, e.g. locker-controller-101")->required();
    add_device_flags(sub, *f);
    sub->add_option("--csr", *csr, "the device's own CSR (its key never leaves it)");
    sub->add_flag("--server-keys", *server_keys, "let fleetkeyd make the key pair");
    sub->add_option("--out", *out, "output folder (default ./NAME)");
    sub->callback([&g, name, f, csr, out, server_keys] {
      g.exit_code = create_device(g, *name, *f, *csr, *server_keys, *out);
    });
  }
  {
    auto* sub =
        app.add_subcommand("create-devices",
                           "a batch of devices, a folder each plus manifest.csv/.json; rerun to "
                           "resume");
    auto f = std::make_shared<DeviceFlags>();
    auto b = std::make_shared<BatchFlags>();
    sub->add_option("--prefix", b->prefix, "name prefix, e.g. locker-controller-");
    sub->add_option("--from", b->from, "first number");
    sub->add_option("--to", b->to, "last number (inclusive)");
    sub->add_option("--width", b->width, "zero-pad numbers to this many digits");
    sub->add_option("--names-file", b->names_file, "one thing name per line");
    sub->add_option("--out", b->out, "output folder (default ./devices)");
    sub->add_option("--parallel", b->parallel, "devices in flight (default 4)");
    sub->add_option("--bundle", b->bundle,
                    "pkcs12: device.p12 (AES-256) instead of a plain key file");
    sub->add_option("--passwords-file", b->passwords_file,
                    "where bundle passwords go (default <out>/bundle-passwords.csv; keep it "
                    "apart from the bundles)");
    sub->add_flag("--no-progress", b->no_progress, "no progress output");
    add_device_flags(sub, *f);
    sub->callback([&g, f, b] { g.exit_code = create_devices(g, *f, *b); });
  }
  {
    auto* sub =
        app.add_subcommand("create-claim",
                           "fleet provisioning: claim certificate, restricted claim policy, "
                           "provisioning template; writes the claim bundle");
    auto f = std::make_shared<ClaimFlags>();
    sub->add_option("--template", f->template_name, "provisioning template name")->required();
    sub->add_option("--template-file", f->template_file,
                    "template body (JSON); default: the built-in locker-controller template");
    sub->add_option("--thing-prefix", f->thing_prefix,
                    "built-in template: thing name = prefix + SerialNumber");
    sub->add_option("--device-policy", f->device_policy,
                    "policy the built-in template attaches (default fleetkey-device)");
    sub->add_option("--allow-list", f->allow_list, "file of allowed values, one per line");
    sub->add_option("--parameter", f->parameter, "parameter the allow-list checks");
    sub->add_flag("--reusable", f->reusable, "allow-list values may provision more than once");
    sub->add_option("--out", f->out, "output folder (default ./claim-TEMPLATE)");
    sub->callback([&g, f] { g.exit_code = create_claim(g, *f); });
  }
}

}  // namespace fk::cli
