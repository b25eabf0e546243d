// The device timeline and diagnose (issue 20; docs/timeline.md):
//   GET /fleetkey/timeline/{name}  what happened to a thing, certificate or client id
//   GET /fleetkey/diagnose/{name}  whether it can connect now, and if not, why
#include <algorithm>
#include <limits>
#include <set>

#include "api/routing.h"
#include "base/strings.h"
#include "registry/arn.h"
#include "registry/validation.h"

namespace fk::api {

namespace {

using registry::Txn;
using storage::CertificateStatus;

// The identities a name stands for: itself as a thing, a client id and (when it is one) a
// certificate id; a thing's certificates (attached now, or ever, as its timeline says); a
// certificate's things (their names are the usual client ids).
struct Identities {
  std::optional<storage::ThingRecord> thing;
  std::optional<storage::CertificateRecord> certificate;
  std::set<std::string> things;
  std::set<std::string> certificate_ids;
  std::set<std::string> client_ids;
  std::vector<std::string> attached;  // the thing's certificates now, or the certificate's things
};

constexpr std::size_t kMaxCertificatesPerThing = 100;

Result<Identities> identities_of(ApiContext& ctx, Txn& t, const std::string& name) {
  Identities id;
  id.things.insert(name);
  id.client_ids.insert(name);
  auto& store = t.store();
  FK_ASSIGN_OR_RETURN(id.thing, store.get_thing(name));
  if (id.thing) {
    FK_ASSIGN_OR_RETURN(auto principals, store.list_thing_principals(
                                             name, storage::Page{"", kMaxCertificatesPerThing}));
    for (const auto& arn : principals) {
      auto parsed = registry::parse_arn(ctx.arns(), arn);
      if (parsed.is_ok() && parsed->kind == "cert") {
        id.certificate_ids.insert(parsed->id);
        id.attached.push_back(parsed->id);
      }
    }
    // Certificates it had before (detached, rotated away, deleted).
    storage::TimelineQuery q;
    q.things = {name};
    q.limit = 200;
    FK_ASSIGN_OR_RETURN(auto past, store.list_timeline(q));
    for (const auto& e : past)
      if (!e.certificate_id.empty() && id.certificate_ids.size() < kMaxCertificatesPerThing)
        id.certificate_ids.insert(e.certificate_id);
  }
  if (registry::check_certificate_id(name).is_ok()) {
    id.certificate_ids.insert(name);
    FK_ASSIGN_OR_RETURN(id.certificate, store.get_certificate(name));
    if (id.certificate) {
      FK_ASSIGN_OR_RETURN(auto things, store.list_principal_things(ctx.arns().certificate(name),
                                                                   storage::Page{"", 20}));
      for (const auto& th : things) {
        id.things.insert(th);
        id.client_ids.insert(th);
        id.attached.push_back(th);
      }
    }
  }
  return id;
}

storage::TimelineQuery query_of(const Identities& id) {
  storage::TimelineQuery q;
  q.things.assign(id.things.begin(), id.things.end());
  q.certificate_ids.assign(id.certificate_ids.begin(), id.certificate_ids.end());
  q.client_ids.assign(id.client_ids.begin(), id.client_ids.end());
  return q;
}

json event_json(const DeviceEvent& e) {
  return {{"sequence", e.sequence},  {"time", e.at_ms},
          {"thing", e.thing},        {"certificateId", e.certificate_id},
          {"clientId", e.client_id}, {"source", e.source},
          {"event", e.event},        {"reason", e.reason},
          {"detail", e.detail},      {"actor", e.actor}};
}

std::string iso_ms(std::int64_t ms) {
  return format_utc(ms / 1000);
}

// "3f9a1c2b7d4e..." : enough of a certificate id to find it again.
std::string short_id(const std::string& id) {
  return id.size() > 12 ? id.substr(0, 12) + "..." : id;
}

// What made a status change: the API operation the registry noted at the end of its detail
// ("ACTIVE -> INACTIVE (UpdateCertificate)"), else what the event says.
std::string what_changed(const DeviceEvent& e) {
  const auto open = e.detail.rfind(" (");
  if (open != std::string::npos && !e.detail.empty() && e.detail.back() == ')')
    return e.detail.substr(open + 2, e.detail.size() - open - 3);
  return e.event == "certificate_created" ? "recorded" : "status changed";
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

void by_time_newest_first(std::vector<DeviceEvent>& events) {
  std::stable_sort(events.begin(), events.end(), [](const DeviceEvent& a, const DeviceEvent& b) {
    return a.at_ms != b.at_ms ? a.at_ms > b.at_ms : a.sequence > b.sequence;
  });
}

bool is_refusal(const DeviceEvent& e) {
  return e.event == "connect_refused" || e.event == "tls_failed" ||
         e.event == "provisioning_rejected" || e.event == "rotation_rejected";
}

}  // namespace

void add_device_routes(RouteTable& t, ApiContext& ctx) {
  // The fleet's activity over the last `minutes` (1..1440, default 60), from the timeline (all
  // nodes): connects and provisionings per minute, refusals by cause, every (event, reason).
  t.add("GET", "/fleetkey/activity", [&ctx](Call& c) -> Result<json> {
    FK_ASSIGN_OR_RETURN(std::int64_t minutes, int_param(c, "minutes", 60, 1, 1440));
    if (ctx.config.flush_timeline) ctx.config.flush_timeline();
    const std::int64_t since = (ctx.clock.now() - minutes * 60) * 1000;
    std::vector<storage::TimelineCount> counts;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(counts, txn.store().count_timeline(since));
      return Status::ok();
    }));
    json all = json::array();
    json refusals = json::object();
    std::int64_t connects = 0, provisioned = 0;
    for (const auto& n : counts) {
      all.push_back({{"event", n.event}, {"reason", n.reason}, {"count", n.count}});
      if (n.event == "connected") connects += n.count;
      if (n.event == "provisioning_accepted" && n.reason == "RegisterThing") provisioned += n.count;
      if (is_refusal(DeviceEvent{0, 0, "", "", "", "", n.event, "", "", ""})) {
        const std::string key = n.event + ":" + n.reason;
        refusals[key] = refusals.value(key, std::int64_t{0}) + n.count;
      }
    }
    const double m = static_cast<double>(minutes);
    return json{{"since", since},
                {"minutes", minutes},
                {"connectsPerMinute", static_cast<double>(connects) / m},
                {"provisioningsPerMinute", static_cast<double>(provisioned) / m},
                {"refusals", refusals},
                {"counts", all}};
  });

  // What happened to a thing, certificate or client id, newest first, a page at a time
  // (`before` = the last sequence seen), within [from, to) (epoch ms).
  t.add("GET", "/fleetkey/timeline/{name}", [&ctx](Call& c) -> Result<json> {
    const std::string& name = c.labels["name"];
    if (name.empty() || name.size() > 256) return bad_member("name", "1 to 256 characters");
    const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    storage::TimelineQuery range;
    FK_ASSIGN_OR_RETURN(range.from_ms, int_param(c, "from", 0, 0, kMax));
    FK_ASSIGN_OR_RETURN(range.to_ms, int_param(c, "to", kMax, 0, kMax));
    if (range.from_ms > range.to_ms) return invalid_request("from must not be after to");
    FK_ASSIGN_OR_RETURN(range.before_sequence, int_param(c, "before", 0, 0, kMax));
    FK_ASSIGN_OR_RETURN(std::int64_t limit, int_param(c, "limit", 100, 1, 1000));
    if (ctx.config.flush_timeline) ctx.config.flush_timeline();
    json out;
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(Identities id, identities_of(ctx, txn, name));
      storage::TimelineQuery q = query_of(id);
      q.from_ms = range.from_ms;
      q.to_ms = range.to_ms;
      q.before_sequence = range.before_sequence;
      q.limit = static_cast<std::size_t>(limit);
      FK_ASSIGN_OR_RETURN(auto events, txn.store().list_timeline(q));
      // Pages go by sequence (commit order); within a page, by when it happened (the broker's
      // events are committed in batches, after registry changes made meanwhile).
      std::vector<DeviceEvent> shown = events;
      by_time_newest_first(shown);
      json list = json::array();
      for (const auto& e : shown) list.push_back(event_json(e));
      out = {{"name", name},
             {"thing", id.thing.has_value()},
             {"certificateIds", json(id.certificate_ids)},
             {"events", list}};
      if (events.size() == q.limit) out["before"] = events.back().sequence;
      return Status::ok();
    }));
    return out;
  });

  // Whether `name` (a thing, a certificate id or a client id) can connect now, and if not, why:
  // from the registry, the policy engine (the connect decision the broker would make) and the
  // timeline. verdict: "connected", "can_connect", "cannot_connect" or "not_provisioned".
  t.add("GET", "/fleetkey/diagnose/{name}", [&ctx](Call& c) -> Result<json> {
    const std::string& name = c.labels["name"];
    if (name.empty() || name.size() > 256) return bad_member("name", "1 to 256 characters");
    const std::optional<std::string> given_client = c.q("clientId");
    if (given_client && (given_client->empty() || given_client->size() > 128))
      return bad_member("clientId", "1 to 128 characters");
    if (ctx.config.flush_timeline) ctx.config.flush_timeline();
    Identities id;
    std::vector<DeviceEvent> recent;
    std::map<std::string, storage::CertificateRecord> records;
    std::map<std::string, DeviceEvent> status_events;  // the newest status change of each
    FK_RETURN_IF_ERROR(ctx.registry.read([&](Txn& txn) -> Status {
      FK_ASSIGN_OR_RETURN(id, identities_of(ctx, txn, name));
      storage::TimelineQuery q = query_of(id);
      q.limit = 200;
      FK_ASSIGN_OR_RETURN(recent, txn.store().list_timeline(q));
      by_time_newest_first(recent);
      std::set<std::string> ids = id.certificate_ids;
      for (const auto& e : recent)
        if (!e.certificate_id.empty() && ids.size() < 2 * kMaxCertificatesPerThing)
          ids.insert(e.certificate_id);
      for (const auto& cid : ids) {
        FK_ASSIGN_OR_RETURN(auto rec, txn.store().get_certificate(cid));
        if (rec) records.emplace(cid, std::move(*rec));
      }
      return Status::ok();
    }));
    for (const auto& e : recent)  // newest first: the first one of each certificate wins
      if ((e.event == "certificate_status" || e.event == "certificate_created") &&
          !status_events.count(e.certificate_id))
        status_events.emplace(e.certificate_id, e);
    const bool known = id.thing || id.certificate || !recent.empty();
    if (!known)
      return not_found(name + " is not a thing, a registered certificate or a client id " +
                       "fleetkeyd has seen");

    // The client id the device connects with: given, else the thing's name, else the
    // certificate's (only) thing, else the name itself.
    std::string client_id = given_client.value_or(name);
    if (!given_client && id.certificate && !id.thing && id.attached.size() == 1)
      client_id = id.attached.front();
    // The certificates that count: the thing's attached ones, or the certificate itself, or
    // those the client id was last seen with.
    std::vector<std::string> certs;
    if (id.thing) {
      certs = id.attached;
    } else if (registry::check_certificate_id(name).is_ok()) {
      certs = {name};
    } else {
      for (const auto& e : recent)
        if (!e.certificate_id.empty() && e.client_id == name &&
            std::find(certs.begin(), certs.end(), e.certificate_id) == certs.end())
          certs.push_back(e.certificate_id);
    }

    const EpochSeconds now = ctx.clock.now();
    json cert_list = json::array();
    std::vector<std::string> why_not;
    std::optional<std::string> can_with;
    std::optional<LiveConnectionInfo> live;
    std::string live_certificate;
    for (const auto& cid : certs) {
      json cj = {{"certificateId", cid}};
      auto rec = records.find(cid);
      if (rec == records.end()) {
        cj["status"] = "NOT_REGISTERED";
        why_not.push_back("certificate " + short_id(cid) + " is not registered");
        cert_list.push_back(cj);
        continue;
      }
      const storage::CertificateRecord& r = rec->second;
      const std::string status(storage::to_string(r.status));
      cj["status"] = status;
      cj["notAfter"] = format_utc(r.not_after);
      std::string since;
      if (auto se = status_events.find(cid); se != status_events.end()) {
        cj["statusSince"] = iso_ms(se->second.at_ms);
        cj["statusChangedBy"] = se->second.actor;
        since = " since " + iso_ms(se->second.at_ms) + " (" + what_changed(se->second) + " by " +
                se->second.actor + ")";
      }
      if (ctx.config.live_connections) {
        json conns = json::array();
        for (const auto& l : ctx.config.live_connections(cid)) {
          conns.push_back({{"clientId", l.client_id},
                           {"source", l.remote_address},
                           {"since", iso_ms(l.connected_at_ms)}});
          if (!live && (l.client_id == client_id || !id.thing)) {
            live = l;
            live_certificate = cid;
          }
        }
        cj["connections"] = conns;
      }
      if (r.status != CertificateStatus::kActive) {
        why_not.push_back("certificate " + short_id(cid) + " is " + status + since);
      } else if (r.not_after < now) {
        why_not.push_back("certificate " + short_id(cid) + " expired on " +
                          format_utc(r.not_after) + " (its TLS handshake is refused)");
        cj["expired"] = true;
      } else if (r.not_before > now) {
        why_not.push_back("certificate " + short_id(cid) + " is not valid before " +
                          format_utc(r.not_before));
      } else if (ctx.config.check_connect) {
        ConnectCheck check = ctx.config.check_connect(cid, client_id);
        cj["connect"] = {
            {"allowed", check.allowed}, {"cause", check.cause}, {"reason", check.reason}};
        if (check.allowed) {
          if (!can_with) can_with = cid;
        } else {
          why_not.push_back(check.reason.empty() ? "certificate " + short_id(cid) +
                                                       " may not connect (" + check.cause + ")"
                                                 : check.reason);
        }
      } else if (!can_with) {
        can_with = cid;
      }
      cert_list.push_back(cj);
    }

    // The newest refusal the timeline has, and the newest events.
    std::optional<DeviceEvent> last_refusal;
    for (const auto& e : recent)
      if (is_refusal(e)) {
        last_refusal = e;
        break;
      }
    json events = json::array();
    for (std::size_t i = 0; i < recent.size() && i < 10; ++i)
      events.push_back(event_json(recent[i]));

    // A client id that is no thing and whose last provisioning answer was a rejection: it has
    // not been provisioned (it may connect with its claim, which is not the question).
    std::optional<DeviceEvent> last_provisioning;
    if (!id.thing && !id.certificate)
      for (const auto& e : recent)
        if (e.client_id == name &&
            (e.event == "provisioning_rejected" || e.event == "provisioning_accepted")) {
          last_provisioning = e;
          break;
        }
    std::string verdict;
    std::string summary;
    if (live) {
      verdict = "connected";
      summary = "connected as " + live->client_id + " since " + iso_ms(live->connected_at_ms) +
                " from " + live->remote_address + " with certificate " + short_id(live_certificate);
    } else if (last_provisioning && last_provisioning->event == "provisioning_rejected") {
      verdict = "not_provisioned";
      summary = "client " + name + " is not provisioned: its last provisioning request was " +
                "rejected at " + iso_ms(last_provisioning->at_ms) + " with errorCode " +
                last_provisioning->reason + " (" + last_provisioning->detail + ")";
    } else if (can_with) {
      verdict = "can_connect";
      summary = "can connect as " + client_id + " with certificate " + short_id(*can_with) +
                " (ACTIVE, valid until " + format_utc(records.at(*can_with).not_after) + ")";
      if (last_refusal)
        summary += "; the last refusal was at " + iso_ms(last_refusal->at_ms) + ": " +
                   (last_refusal->detail.empty() ? last_refusal->reason : last_refusal->detail);
    } else {
      verdict = "cannot_connect";
      if (certs.empty()) why_not.push_back("thing " + name + " has no certificate attached");
      summary = "cannot connect as " + client_id + ": " + join(why_not, "; ");
      if (last_refusal)
        summary += "; last refused at " + iso_ms(last_refusal->at_ms) + " (" + last_refusal->event +
                   ", " + last_refusal->reason + ")";
    }
    json out = {{"name", name},
                {"kind", id.thing ? "thing"
                                  : (registry::check_certificate_id(name).is_ok() ? "certificate"
                                                                                  : "clientId")},
                {"clientId", client_id},
                {"verdict", verdict},
                {"summary", summary},
                {"certificates", cert_list},
                {"recentEvents", events}};
    if (last_refusal) out["lastRefusal"] = event_json(*last_refusal);
    return out;
  });
}

}  // namespace fk::api
