// The everyday commands: templates, policies, things, certs (list, describe, delete, revoke,
// deactivate, activate, rotate), expiring and status.
#include <iostream>
#include <sstream>

#include "base/clock.h"
#include "base/files.h"
#include "base/strings.h"
#include "cli/batch.h"
#include "cli/commands.h"
#include "cli/device_factory.h"
#include "crypto/x509.h"

namespace fk::cli {

Result<std::unique_ptr<IotClient>> Globals::client() const {
  FK_ASSIGN_OR_RETURN(Connection c, resolve_connection(flags, process_env));
  return IotClient::create(c);
}

std::string default_device_policy_document() {
  const std::string t = "${iot:Connection.Thing.ThingName}";
  json doc = {{"Version", "2012-10-17"},
              {"Statement",
               json::array({{{"Effect", "Allow"},
                             {"Action", "iot:Connect"},
                             {"Resource", "arn:aws:iot:*:*:client/" + t}},
                            {{"Effect", "Allow"},
                             {"Action", {"iot:Publish", "iot:Receive", "iot:RetainPublish"}},
                             {"Resource",
                              {"arn:aws:iot:*:*:topic/lockers/" + t + "/*",
                               "arn:aws:iot:*:*:topic/$aws/things/" + t + "/*",
                               "arn:aws:iot:*:*:topic/$fleetkey/certificates/rotate/*"}}},
                            {{"Effect", "Allow"},
                             {"Action", "iot:Subscribe"},
                             {"Resource",
                              {"arn:aws:iot:*:*:topicfilter/lockers/" + t + "/*",
                               "arn:aws:iot:*:*:topicfilter/$aws/things/" + t + "/*",
                               "arn:aws:iot:*:*:topicfilter/$fleetkey/certificates/rotate/*"}}},
                            // The device renews its own certificate (docs/rotation.md).
                            {{"Effect", "Allow"},
                             {"Action", "fleetkey:RotateCertificate"},
                             {"Resource", "arn:aws:iot:*:*:cert/*"}}})}};
  return doc.dump();
}

Status ensure_policy(IotClient& api, const std::string& name, const std::string& document) {
  auto got = api.call("GET", "/policies/" + encode(name));
  if (got.is_ok()) return Status::ok();
  if (got.status().code() != ErrorCode::kNotFound) return got.status();
  auto made = api.call("POST", "/policies/" + encode(name), json{{"policyDocument", document}});
  // Made meanwhile by a parallel run: as good.
  if (!made.is_ok() && made.status().code() != ErrorCode::kAlreadyExists) return made.status();
  return Status::ok();
}

Result<std::string> fetch_root_ca(IotClient& api) {
  FK_ASSIGN_OR_RETURN(json j, api.call("GET", "/fleetkey/root-ca"));
  // The bundle (root + issuing CA) when the server has one: devices check their certificate's
  // chain against it offline (the SDK's load_direct_credentials).
  std::string pem = j.value("caBundlePem", j.value("rootCaPem", ""));
  if (pem.empty()) return internal_error("fleetkeyd sent no root CA");
  return pem;
}

namespace {

std::string str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

std::string when(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "";
  return format_utc(j[key].get<std::int64_t>());
}

using Op = std::function<int(IotClient&)>;

int with_client(Globals& g, const Op& op) {
  auto api = g.client();
  if (!api.is_ok()) return report_error(api.status());
  return op(**api);
}

// `<group> list`: every item of a paged list operation, as a table or JSON.
void add_list(CLI::App* group, const std::string& help, Globals& g, const std::string& path,
              const std::string& member, const std::string& size_param,
              std::vector<std::string> headers,
              std::function<std::vector<std::string>(const json&)> row) {
  group->add_subcommand("list", help)->callback([&g, path, member, size_param, headers, row] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto all = api.list_all(path, member, size_param);
      if (!all.is_ok()) return report_error(all.status());
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : *all) rows.push_back(row(x));
      print(g.format(), *all, headers, rows);
      return static_cast<int>(kExitOk);
    });
  });
}

// `<group> delete NAME`: DELETE <path_prefix>NAME (`arg` names the argument: name, id).
void add_delete(CLI::App* group, const std::string& help, Globals& g,
                const std::string& path_prefix, const std::string& arg = "name") {
  auto name = std::make_shared<std::string>();
  auto* del = group->add_subcommand("delete", help);
  del->add_option(arg, *name)->required();
  del->callback([&g, name, path_prefix] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x = api.call("DELETE", path_prefix + encode(*name));
      if (!x.is_ok()) return report_error(x.status());
      print(g.format(), json{{"deleted", *name}}, {"DELETED"}, {{*name}});
      return static_cast<int>(kExitOk);
    });
  });
}

// The certificates of a thing (its principals), as ids.
Result<std::vector<std::string>> certificates_of(IotClient& api, const std::string& thing) {
  FK_ASSIGN_OR_RETURN(json p, api.call("GET", "/things/" + encode(thing) + "/principals"));
  std::vector<std::string> out;
  for (const auto& arn : p.value("principals", json::array())) {
    std::string a = arn;
    auto slash = a.rfind("/");
    if (a.find(":cert/") != std::string::npos && slash != std::string::npos)
      out.push_back(a.substr(slash + 1));
  }
  return out;
}

int set_status(Globals& g, const std::string& id, const std::string& thing,
               const std::string& new_status) {
  if (id.empty() == thing.empty())
    return report_error(invalid_request("name one certificate id, or --thing NAME"));
  return with_client(g, [&](IotClient& api) {
    std::vector<std::string> ids = {id};
    if (!thing.empty()) {
      auto found = certificates_of(api, thing);
      if (!found.is_ok()) return report_error(found.status());
      if (found->empty())
        return report_error(not_found("thing " + thing + " has no certificate attached"));
      ids = *found;
    }
    json out = json::array();
    std::vector<std::vector<std::string>> rows;
    for (const auto& c : ids) {
      auto r = api.call("PUT", "/certificates/" + encode(c) + "?newStatus=" + new_status);
      if (!r.is_ok()) return report_error(r.status());
      out.push_back({{"certificateId", c}, {"status", new_status}});
      rows.push_back({c, new_status});
    }
    print(g.format(), out, {"CERTIFICATE", "STATUS"}, rows);
    return static_cast<int>(kExitOk);
  });
}

void add_templates(CLI::App& app, Globals& g) {
  auto* t = app.add_subcommand("templates", "provisioning templates")->require_subcommand(1);
  add_list(t, "list templates", g, "/provisioning-templates", "templates", "maxResults",
           {"NAME", "ENABLED", "TYPE", "MODIFIED"}, [](const json& x) {
             return std::vector<std::string>{str(x, "templateName"), str(x, "enabled"),
                                             str(x, "type"), when(x, "lastModifiedDate")};
           });
  auto name = std::make_shared<std::string>();
  auto* d = t->add_subcommand("describe", "show a template and its allow-list");
  d->add_option("name", *name)->required();
  d->callback([&g, name] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x = api.call("GET", "/provisioning-templates/" + encode(*name));
      if (!x.is_ok()) return report_error(x.status());
      auto allow =
          api.call("GET", "/fleetkey/provisioning-templates/" + encode(*name) + "/allow-list");
      json out = *x;
      out["allowList"] = allow.is_ok() ? *allow : json(nullptr);
      print(g.format(), out, {"FIELD", "VALUE"},
            {{"name", str(*x, "templateName")},
             {"enabled", str(*x, "enabled")},
             {"default version", str(*x, "defaultVersionId")},
             {"pre-provisioning hook", str(*x, "preProvisioningHook")},
             {"allow-list",
              allow.is_ok() ? "parameter " + str(*allow, "parameter") +
                                  (allow->value("singleUse", false) ? ", single use" : "") + "; " +
                                  str(*allow, "values") + " values, " + str(*allow, "used") +
                                  " used, " + str(*allow, "unused") + " unused"
                            : "none (any value may provision)"},
             {"body", str(*x, "templateBody")}});
      return static_cast<int>(kExitOk);
    });
  });
  add_delete(t, "delete a template", g, "/provisioning-templates/");
  auto* al = t->add_subcommand("allow-list", "a template's allow-list")->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto parameter = std::make_shared<std::string>("SerialNumber");
  auto reusable = std::make_shared<bool>(false);
  auto unused_only = std::make_shared<bool>(false);
  auto* show = al->add_subcommand("show", "the allow-list's values, each used or not");
  show->add_option("name", *name, "template")->required();
  show->add_flag("--unused", *unused_only, "only the values no device has used yet");
  show->callback([&g, name, unused_only] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      const std::string path = "/fleetkey/provisioning-templates/" + encode(*name) + "/allow-list";
      auto summary = api.call("GET", path);
      if (!summary.is_ok()) return report_error(summary.status());
      auto values = api.list_all(path + "/values", "values", "maxResults");
      if (!values.is_ok()) return report_error(values.status());
      json out = *summary;
      out["values"] = json::array();
      std::vector<std::vector<std::string>> rows;
      for (const auto& v : *values) {
        if (*unused_only && v.value("used", false)) continue;
        out["values"].push_back(v);
        rows.push_back({str(v, "value"), v.value("used", false) ? "used" : "unused"});
      }
      out["valueCount"] = summary->value("values", 0);
      print(g.format(), out, {"VALUE", "STATE"}, rows);
      if (g.format() != OutputFormat::kJson)
        std::cerr << str(*summary, "values") << " values: " << str(*summary, "used") << " used, "
                  << str(*summary, "unused") << " unused\n";
      return static_cast<int>(kExitOk);
    });
  });
  auto* imp = al->add_subcommand("import", "replace the allow-list with the values in FILE");
  imp->add_option("name", *name, "template")->required();
  imp->add_option("file", *file, "one value per line")->required();
  imp->add_option("--parameter", *parameter, "the parameter checked (default SerialNumber)");
  imp->add_flag("--reusable", *reusable, "values may provision more than once");
  imp->callback([&g, name, file, parameter, reusable] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto values = read_names_file(*file);
      if (!values.is_ok()) return report_error(values.status());
      auto r =
          api.call("PUT", "/fleetkey/provisioning-templates/" + encode(*name) + "/allow-list",
                   json{{"parameter", *parameter}, {"singleUse", !*reusable}, {"values", *values}});
      if (!r.is_ok()) return report_error(r.status());
      print(g.format(), *r, {"TEMPLATE", "PARAMETER", "VALUES", "SINGLE USE"},
            {{*name, *parameter, str(*r, "count"), str(*r, "singleUse")}});
      return static_cast<int>(kExitOk);
    });
  });
}

void add_policies(CLI::App& app, Globals& g) {
  auto* p = app.add_subcommand("policies", "IoT policies")->require_subcommand(1);
  add_list(p, "list policies", g, "/policies", "policies", "pageSize", {"NAME"},
           [](const json& x) { return std::vector<std::string>{str(x, "policyName")}; });
  auto name = std::make_shared<std::string>();
  auto* d = p->add_subcommand("describe", "show a policy's default version and targets");
  d->add_option("name", *name)->required();
  d->callback([&g, name] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x = api.call("GET", "/policies/" + encode(*name));
      if (!x.is_ok()) return report_error(x.status());
      auto targets = api.call("POST", "/policy-targets/" + encode(*name) + "?pageSize=250");
      json out = *x;
      out["targets"] = targets.is_ok() ? (*targets)["targets"] : json::array();
      print(g.format(), out, {"FIELD", "VALUE"},
            {{"name", str(*x, "policyName")},
             {"default version", str(*x, "defaultVersionId")},
             {"targets", std::to_string(out["targets"].size())},
             {"document", str(*x, "policyDocument")}});
      return static_cast<int>(kExitOk);
    });
  });
  add_delete(p, "delete a policy (detach it first)", g, "/policies/");
}

void add_things(CLI::App& app, Globals& g) {
  auto* t = app.add_subcommand("things", "things")->require_subcommand(1);
  add_list(t, "list things", g, "/things", "things", "maxResults", {"NAME", "TYPE", "ATTRIBUTES"},
           [](const json& x) {
             return std::vector<std::string>{str(x, "thingName"), str(x, "thingTypeName"),
                                             str(x, "attributes")};
           });
  auto name = std::make_shared<std::string>();
  auto* d = t->add_subcommand("describe", "a thing and its certificates");
  d->add_option("name", *name)->required();
  d->callback([&g, name] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x = api.call("GET", "/things/" + encode(*name));
      if (!x.is_ok()) return report_error(x.status());
      auto certs = certificates_of(api, *name);
      if (!certs.is_ok()) return report_error(certs.status());
      json out = *x;
      out["certificates"] = json::array();
      std::vector<std::vector<std::string>> rows = {{"name", str(*x, "thingName")},
                                                    {"attributes", str(*x, "attributes")}};
      for (const auto& c : *certs) {
        auto cd = api.call("GET", "/certificates/" + encode(c));
        if (!cd.is_ok()) continue;
        const json& desc = (*cd)["certificateDescription"];
        out["certificates"].push_back({{"certificateId", c},
                                       {"status", str(desc, "status")},
                                       {"notAfter", desc["validity"]["notAfter"]}});
        rows.push_back({"certificate", c + " " + str(desc, "status") + " until " +
                                           when(desc["validity"], "notAfter")});
      }
      print(g.format(), out, {"FIELD", "VALUE"}, rows);
      return static_cast<int>(kExitOk);
    });
  });
  auto with_certs = std::make_shared<bool>(false);
  auto* del = t->add_subcommand("delete", "delete a thing");
  del->add_option("name", *name)->required();
  del->add_flag("--with-certificates", *with_certs,
                "also revoke, detach and delete its certificates (and their policy attachments)");
  del->callback([&g, name, with_certs] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto certs = certificates_of(api, *name);
      if (!certs.is_ok()) return report_error(certs.status());
      json deleted_certs = json::array();
      for (const auto& c : *certs) {
        auto cd = api.call("GET", "/certificates/" + encode(c));
        if (!cd.is_ok()) return report_error(cd.status());
        const std::string arn = (*cd)["certificateDescription"].value("certificateArn", "");
        auto r = api.call("DELETE", "/things/" + encode(*name) + "/principals", nullptr,
                          {{"x-amzn-principal", arn}});
        if (!r.is_ok()) return report_error(r.status());
        if (!*with_certs) continue;
        if (auto s = api.call("PUT", "/certificates/" + encode(c) + "?newStatus=REVOKED");
            !s.is_ok())
          return report_error(s.status());
        auto pols = api.call("POST", "/attached-policies/" + encode(arn) + "?pageSize=250");
        if (pols.is_ok())
          for (const auto& p : (*pols)["policies"])
            (void)api.call("POST", "/target-policies/" + encode(p.value("policyName", "")),
                           json{{"target", arn}});
        if (auto s = api.call("DELETE", "/certificates/" + encode(c) + "?forceDelete=true");
            !s.is_ok())
          return report_error(s.status());
        deleted_certs.push_back(c);
      }
      auto r = api.call("DELETE", "/things/" + encode(*name));
      if (!r.is_ok()) return report_error(r.status());
      print(g.format(), json{{"deleted", *name}, {"certificatesDeleted", deleted_certs}},
            {"DELETED", "CERTIFICATES DELETED"}, {{*name, std::to_string(deleted_certs.size())}});
      return static_cast<int>(kExitOk);
    });
  });
}

// `certs rotate`: a new bundle for direct-certificate devices, one or a batch; the old
// certificate stays ACTIVE until the device connects with the new one or the server's overlap
// window ends (docs/rotation.md).
void add_rotate(CLI::App* certs, Globals& g) {
  struct Flags {
    std::string thing;
    std::vector<std::string> things;
    std::string things_file;
    std::string out;
    std::string key_type = "ec-p256";
  };
  auto f = std::make_shared<Flags>();
  auto* r = certs->add_subcommand(
      "rotate",
      "new certificate and key for a thing (same thing, policies, groups); rerun to "
      "resume");
  r->add_option("--thing", f->thing, "the thing whose certificate is rotated");
  r->add_option("--things", f->things, "a batch: thing names, comma-separated")->delimiter(',');
  r->add_option("--things-file", f->things_file, "a batch: one thing name per line");
  r->add_option("--out", f->out,
                "folder of the bundle (default ./NAME); a batch: a folder per thing in it "
                "(default ./devices)");
  r->add_option("--key-type", f->key_type, "ec-p256 (default), ec-p384, rsa-2048, rsa-3072");
  r->callback([&g, f] {
    std::vector<std::string> names = f->things;
    if (!f->things_file.empty()) {
      auto text = read_file(f->things_file);
      if (!text.is_ok()) {
        g.exit_code = report_error(text.status());
        return;
      }
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) {
        line = std::string(trim(line));
        if (!line.empty() && line[0] != '#') names.push_back(line);
      }
    }
    const bool batch = !names.empty();
    if (batch == !f->thing.empty()) {
      g.exit_code = report_error(invalid_request("give --thing, or --things / --things-file"));
      return;
    }
    if (!batch) names.push_back(f->thing);
    auto key = crypto::parse_key_spec(f->key_type);
    if (!key.is_ok()) {
      g.exit_code = report_error(key.status());
      return;
    }
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto ca = fetch_root_ca(api);
      if (!ca.is_ok()) return report_error(ca.status());
      DeviceFactory factory(api, *ca);
      json done = json::array();
      json failed = json::array();
      std::vector<std::vector<std::string>> rows;
      int last_error = kExitOk;
      for (const auto& name : names) {
        const std::string folder =
            batch ? (f->out.empty() ? "devices" : f->out) + "/" + name : f->out;
        auto rec = factory.rotate(name, folder, *key);
        if (!rec.is_ok()) {
          if (!batch) return report_error(rec.status());
          failed.push_back({{"thingName", name}, {"error", rec.status().message()}});
          rows.push_back({name, "FAILED: " + rec.status().message(), "", "", ""});
          last_error = kExitBatchPartial;
          continue;
        }
        done.push_back({{"thingName", rec->thing_name},
                        {"certificateId", rec->certificate_id},
                        {"previousCertificateId", rec->previous_certificate_id},
                        {"previousCertificateDeactivatesAt", rec->previous_deactivates_at},
                        {"folder", rec->folder},
                        {"replayed", rec->replayed}});
        rows.push_back({rec->thing_name, rec->certificate_id, rec->previous_certificate_id,
                        format_utc(rec->previous_deactivates_at), rec->folder});
      }
      json out = batch ? json{{"rotated", done}, {"failed", failed}} : done.at(0);
      print(g.format(), out,
            {"THING", "NEW CERTIFICATE", "OLD CERTIFICATE", "OLD INACTIVE BY", "FOLDER"}, rows);
      return last_error;
    });
  });
}

void add_certs(CLI::App& app, Globals& g) {
  auto* c = app.add_subcommand("certs", "device certificates")->require_subcommand(1);
  add_list(c, "list certificates", g, "/certificates", "certificates", "pageSize",
           {"CERTIFICATE", "STATUS", "CREATED"}, [](const json& x) {
             return std::vector<std::string>{str(x, "certificateId"), str(x, "status"),
                                             when(x, "creationDate")};
           });
  auto id = std::make_shared<std::string>();
  auto thing = std::make_shared<std::string>();
  auto* d = c->add_subcommand("describe", "a certificate");
  d->add_option("id", *id)->required();
  d->callback([&g, id] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x = api.call("GET", "/certificates/" + encode(*id));
      if (!x.is_ok()) return report_error(x.status());
      const json& desc = (*x)["certificateDescription"];
      print(g.format(), *x, {"FIELD", "VALUE"},
            {{"certificate", str(desc, "certificateId")},
             {"status", str(desc, "status")},
             {"not before", when(desc["validity"], "notBefore")},
             {"not after", when(desc["validity"], "notAfter")},
             {"sha256 fingerprint", colon_fingerprint(str(desc, "certificateId"))}});
      return static_cast<int>(kExitOk);
    });
  });
  for (const auto& [verb, status, help] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"revoke", "REVOKED", "revoke (live sessions are cut at once)"},
           {"deactivate", "INACTIVE", "deactivate (live sessions are cut at once)"},
           {"activate", "ACTIVE", "activate"}}) {
    auto* s = c->add_subcommand(verb, help + ": a certificate, or every certificate of --thing");
    s->add_option("id", *id, "certificate id");
    s->add_option("--thing", *thing, "the thing whose certificates change");
    std::string st = status;
    s->callback([&g, id, thing, st] { g.exit_code = set_status(g, *id, *thing, st); });
  }
  add_delete(c, "delete a certificate (INACTIVE or REVOKED, detached)", g, "/certificates/", "id");
  add_rotate(c, g);
}

void add_expiring(CLI::App& app, Globals& g) {
  auto within = std::make_shared<std::string>("30d");
  auto* e = app.add_subcommand("expiring", "certificates that expire soon, by thing");
  e->add_option("--within", *within, "e.g. 30d (default), 12h, 90m");
  e->callback([&g, within] {
    auto secs = parse_duration(*within);
    if (!secs.is_ok()) {
      g.exit_code = report_error(secs.status());
      return;
    }
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x =
          api.call("GET", "/fleetkey/expiring-certificates?withinSeconds=" + std::to_string(*secs));
      if (!x.is_ok()) return report_error(x.status());
      const EpochSeconds now = SystemClock::instance().now();
      std::vector<std::vector<std::string>> rows;
      for (const auto& c : (*x)["certificates"]) {
        std::string things;
        for (const auto& t : c["things"])
          things += (things.empty() ? "" : ",") + t.get<std::string>();
        const std::int64_t left = c.value("notAfter", std::int64_t{0}) - now;
        rows.push_back({things.empty() ? "(no thing)" : things, c.value("certificateId", ""),
                        c.value("status", ""), when(c, "notAfter"),
                        left < 0 ? "expired" : std::to_string(left / 86400) + "d"});
      }
      print(g.format(), *x, {"THING", "CERTIFICATE", "STATUS", "NOT AFTER", "LEFT"}, rows);
      return static_cast<int>(kExitOk);
    });
  });
}

// --since/--until ("2h": that long ago) as the query "from=<ms>&to=<ms>&" (each only if given).
Result<std::string> time_range_query(const std::string& since, const std::string& until) {
  const std::int64_t now_ms = SystemClock::instance().now() * 1000;
  std::string out;
  for (auto [flag, param] : {std::pair{&since, "from"}, std::pair{&until, "to"}}) {
    if (flag->empty()) continue;
    FK_ASSIGN_OR_RETURN(std::int64_t secs, parse_duration(*flag));
    out += std::string(param) + "=" + std::to_string(now_ms - secs * 1000) + "&";
  }
  return out;
}

// `audit`: the control-plane changes (who, what, from where, the result), oldest first.
void add_audit(CLI::App& app, Globals& g) {
  struct Flags {
    std::string since, until, access_key, resource;
    std::int64_t limit = 1000;
    bool jsonl = false;
  };
  auto f = std::make_shared<Flags>();
  auto* a =
      app.add_subcommand("audit", "control-plane changes: who changed what, when, from where");
  a->add_option("--since", f->since, "e.g. 2h, 7d (ago)");
  a->add_option("--until", f->until, "e.g. 1h (ago); default now");
  a->add_option("--access-key", f->access_key, "only this access key's changes");
  a->add_option("--resource", f->resource, "only changes of this thing, certificate, policy...");
  a->add_option("--limit", f->limit, "at most this many records (default 1000)")
      ->check(CLI::Range(1, 1000000));
  a->add_flag("--jsonl", f->jsonl, "one JSON record per line (for export)");
  a->callback([&g, f] {
    auto range = time_range_query(f->since, f->until);
    if (!range.is_ok()) {
      g.exit_code = report_error(range.status());
      return;
    }
    std::string base = "/fleetkey/audit?" + *range;
    if (!f->access_key.empty()) base += "accessKey=" + encode(f->access_key) + "&";
    if (!f->resource.empty()) base += "resource=" + encode(f->resource) + "&";
    g.exit_code = with_client(g, [&](IotClient& api) {
      json all = json::array();
      std::int64_t after = 0;
      while (static_cast<std::int64_t>(all.size()) < f->limit) {
        const std::int64_t page = std::min<std::int64_t>(1000, f->limit - all.size());
        auto x = api.call(
            "GET", base + "limit=" + std::to_string(page) + "&after=" + std::to_string(after));
        if (!x.is_ok()) return report_error(x.status());
        for (auto& r : (*x)["records"]) all.push_back(std::move(r));
        if (!x->contains("after")) break;
        after = (*x)["after"].get<std::int64_t>();
      }
      if (f->jsonl) {
        for (const auto& r : all) std::cout << r.dump() << "\n";
        return static_cast<int>(kExitOk);
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : all)
        rows.push_back(
            {format_utc(r.value("time", std::int64_t{0}) / 1000), r.value("accessKey", ""),
             r.value("source", ""), r.value("operation", ""), r.value("resource", ""),
             std::to_string(r.value("status", 0)) +
                 (r.value("errorCode", "").empty() ? "" : " " + r.value("errorCode", ""))});
      print(g.format(), json{{"records", all}},
            {"TIME", "ACCESS KEY", "SOURCE", "OPERATION", "RESOURCE", "RESULT"}, rows);
      return static_cast<int>(kExitOk);
    });
  });
}

// `timeline NAME`: what happened to a thing, certificate or client id, oldest first.
void add_timeline(CLI::App& app, Globals& g) {
  struct Flags {
    std::string name, since, until;
    std::int64_t limit = 100;
    bool jsonl = false;
  };
  auto f = std::make_shared<Flags>();
  auto* t = app.add_subcommand(
      "timeline", "what happened to a device: connects, refusals, provisioning, status changes");
  t->add_option("name", f->name, "thing name, certificate id or client id")->required();
  t->add_option("--since", f->since, "e.g. 2h, 7d (ago)");
  t->add_option("--until", f->until, "e.g. 1h (ago); default now");
  t->add_option("--limit", f->limit, "the newest this many events (default 100)")
      ->check(CLI::Range(1, 100000));
  t->add_flag("--jsonl", f->jsonl, "one JSON event per line (for export)");
  t->callback([&g, f] {
    auto range = time_range_query(f->since, f->until);
    if (!range.is_ok()) {
      g.exit_code = report_error(range.status());
      return;
    }
    std::string base = "/fleetkey/timeline/" + encode(f->name) + "?" + *range;
    g.exit_code = with_client(g, [&](IotClient& api) {
      json newest_first = json::array();
      std::int64_t before = 0;
      json first;
      while (static_cast<std::int64_t>(newest_first.size()) < f->limit) {
        const std::int64_t page = std::min<std::int64_t>(1000, f->limit - newest_first.size());
        auto x = api.call("GET", base + "limit=" + std::to_string(page) +
                                     (before != 0 ? "&before=" + std::to_string(before) : ""));
        if (!x.is_ok()) return report_error(x.status());
        if (first.is_null()) first = *x;
        for (auto& e : (*x)["events"]) newest_first.push_back(std::move(e));
        if (!x->contains("before")) break;
        before = (*x)["before"].get<std::int64_t>();
      }
      json events = json::array();
      for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) events.push_back(*it);
      if (f->jsonl) {
        for (const auto& e : events) std::cout << e.dump() << "\n";
        return static_cast<int>(kExitOk);
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& e : events) {
        std::string cert = e.value("certificateId", "");
        if (cert.size() > 12) cert = cert.substr(0, 12) + "...";
        rows.push_back({format_utc(e.value("time", std::int64_t{0}) / 1000), e.value("event", ""),
                        e.value("reason", ""), e.value("clientId", ""), cert, e.value("actor", ""),
                        e.value("detail", "")});
      }
      print(
          g.format(),
          json{{"name", f->name}, {"certificateIds", first["certificateIds"]}, {"events", events}},
          {"TIME", "EVENT", "REASON", "CLIENT", "CERTIFICATE", "BY", "DETAIL"}, rows);
      return static_cast<int>(kExitOk);
    });
  });
}

// `diagnose NAME`: can this device connect now, and if not, why (exit 0: it can or is
// connected; 9: it cannot, or is not provisioned; 5: nothing is known of NAME).
void add_diagnose(CLI::App& app, Globals& g) {
  struct Flags {
    std::string name, client_id;
  };
  auto f = std::make_shared<Flags>();
  auto* d = app.add_subcommand("diagnose",
                               "why a device cannot connect or provision: a verdict to act on");
  d->add_option("name", f->name, "thing name, certificate id or client id")->required();
  d->add_option("--client-id", f->client_id,
                "the client id the device connects with (default: the thing's name)");
  d->callback([&g, f] {
    g.exit_code = with_client(g, [&](IotClient& api) {
      auto x =
          api.call("GET", "/fleetkey/diagnose/" + encode(f->name) +
                              (f->client_id.empty() ? "" : "?clientId=" + encode(f->client_id)));
      if (!x.is_ok()) return report_error(x.status());
      const std::string verdict = x->value("verdict", "");
      if (g.format() == OutputFormat::kJson) {
        std::cout << x->dump(2) << "\n";
      } else {
        std::cout << x->value("summary", "") << "\n";
        for (const auto& c : (*x)["certificates"]) {
          std::string line =
              "  certificate " + c.value("certificateId", "") + ": " + c.value("status", "");
          if (c.contains("notAfter")) line += ", valid until " + c.value("notAfter", "");
          if (c.contains("statusSince"))
            line +=
                ", since " + c.value("statusSince", "") + " by " + c.value("statusChangedBy", "");
          if (c.contains("connect") && !c["connect"].value("allowed", false))
            line += "; connect refused: " + c["connect"].value("reason", "");
          std::cout << line << "\n";
        }
        if (x->contains("lastRefusal")) {
          const json& r = (*x)["lastRefusal"];
          std::cout << "  last refusal: " << format_utc(r.value("time", std::int64_t{0}) / 1000)
                    << " " << r.value("event", "") << " " << r.value("reason", "") << ": "
                    << r.value("detail", "") << "\n";
        }
      }
      return static_cast<int>(
          verdict == "connected" || verdict == "can_connect" ? kExitOk : kExitCannotConnect);
    });
  });
}

void add_status(CLI::App& app, Globals& g) {
  app.add_subcommand("status", "server health, things, certificates by status, connections")
      ->callback([&g] {
        g.exit_code = with_client(g, [&](IotClient& api) {
          auto x = api.call("GET", "/fleetkey/status");
          if (!x.is_ok()) return report_error(x.status());
          json out = *x;
          out["endpointUrl"] = api.connection().endpoint_url;
          std::vector<std::vector<std::string>> rows = {
              {"server", api.connection().endpoint_url + " " + str(*x, "status")},
              {"mqtt", str(*x, "mqttEndpoint") + ":" + str(*x, "mqttPort")},
              {"things", str(*x, "things")},
              {"connections", str(*x, "connections")}};
          for (const auto& [k, v] : (*x)["certificates"].items())
            rows.push_back({"certificates " + k, v.dump()});
          if (x->contains("nodes")) {
            rows.push_back({"cluster connections", str(*x, "clusterConnections")});
            for (const auto& n : (*x)["nodes"])
              rows.push_back({"node " + str(n, "node"),
                              str(n, "api") + ", MQTT port " + str(n, "mqttPort") + ", " +
                                  str(n, "connections") + " connections, seen " +
                                  str(n, "seenSecondsAgo") + " s ago"});
          }
          print(g.format(), out, {"FLEETKEYD", ""}, rows);
          return static_cast<int>(kExitOk);
        });
      });
}

}  // namespace

void add_admin_commands(CLI::App& app, Globals& g) {
  add_templates(app, g);
  add_policies(app, g);
  add_things(app, g);
  add_certs(app, g);
  add_expiring(app, g);
  add_audit(app, g);
  add_timeline(app, g);
  add_diagnose(app, g);
  add_status(app, g);
}

}  // namespace fk::cli
