//! Route 53 Resolver query log files: one JSON object per line, fields in the order the Resolver
//! writes them (`version`, `account_id`, `region`, `vpc_id`, `query_timestamp`, `query_name`,
//! `query_type`, `query_class`, `rcode`, `answers`, `srcaddr`, `srcport`, `transport`, `srcids`,
//! then the DNS Firewall fields when a rule matched).
//!
//! Queries are a weighted mix of AWS endpoints, internal names, public sites behind CNAME chains,
//! AAAA and PTR lookups, NXDOMAIN from search-suffix expansion and typos, and rare DNS Firewall
//! blocks. A name always resolves to the same addresses within an archive.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::emit::{Alphabet, fnv, push_field, push_iso, push_u64, random_id};
use super::plan::{WINDOW_SECS, Window};
use super::world::{EniRole, Vpc, World, pick};

const AWS_SERVICES: [&str; 13] = [
    "sts",
    "s3",
    "ec2",
    "ssm",
    "ec2messages",
    "ssmmessages",
    "logs",
    "monitoring",
    "kms",
    "secretsmanager",
    "sqs",
    "dynamodb",
    "lambda",
];
/// Public names and the CNAME chain (if any) before their A records.
const PUBLIC_NAMES: [(&str, &[&str]); 10] = [
    ("api.github.com.", &[]),
    ("github.com.", &[]),
    ("registry-1.docker.io.", &[]),
    ("pypi.org.", &["dualstack.python.map.fastly.net."]),
    ("files.pythonhosted.org.", &["dualstack.python.map.fastly.net."]),
    ("hooks.slack.com.", &["hooks-slack-com.global.ssl.fastly.net."]),
    ("api.datadoghq.com.", &["alb-api-datadoghq-com.elb.us-east-1.amazonaws.com."]),
    ("www.example.com.", &["d1a2b3c4d5e6f7.cloudfront.net."]),
    ("security.ubuntu.com.", &[]),
    ("ntp.ubuntu.com.", &[]),
];
const TYPO_NAMES: [&str; 5] = [
    "githb.com.",
    "wpad.ec2.internal.",
    "api.github.com.ec2.internal.",
    "metadata.google.internal.",
    "db-prod.internal.",
];
pub(crate) const BLOCKED_NAMES: [&str; 3] =
    ["pool.minexmr.com.", "x7f2k9q.duckdns.org.", "update.windows-telemetry.top."];
/// NXDOMAIN answers one source may get in one file of a benign background. A source's queries in
/// one 5-minute bin come from at most one file per VPC of its account (query logs deliver every 5
/// minutes, aligned as the rule's bins are), so even nine VPCs stay below the 50 of
/// `aws-dns-nxdomain-burst`.
const BENIGN_NXDOMAIN_PER_SOURCE: usize = 4;

/// Writes one query log file for `window`; returns the number of lines.
pub(crate) fn write(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, world: &World, window: &Window) -> u64 {
    let account = &world.accounts[window.account];
    let vpc = &account.vpcs[window.place];
    let region = world.regions[vpc.region].name.as_str();
    let mut times: Vec<i64> = (0..window.records).map(|_| window.start + rng.random_range(0..WINDOW_SECS)).collect();
    times.sort_unstable();
    let sources: Vec<_> = vpc.enis.iter().filter(|e| e.role != EniRole::NatGateway).collect();
    let mut nxdomains: HashMap<Ipv4Addr, usize> = HashMap::new();
    out.reserve(times.len() * 420);
    for &time in &times {
        let mut query = query(rng, vpc, region, world.benign);
        // Most queries come from instances; a few are forwarded from on-premises through an inbound
        // Resolver endpoint.
        let forwarded = rng.random_bool(0.03) || sources.is_empty();
        let src = if forwarded {
            Ipv4Addr::new(192, 168, rng.random_range(0..16), rng.random_range(2..250))
        } else {
            pick(rng, &sources).ip
        };
        if world.benign && query.rcode == "NXDOMAIN" {
            let seen = nxdomains.entry(src).or_insert(0usize);
            *seen += 1;
            if *seen > BENIGN_NXDOMAIN_PER_SOURCE {
                query = dmarc_lookup();
            }
        }
        out.extend_from_slice(b"{\"version\":\"1.100000\",");
        push_field(out, "account_id", &account.id);
        out.push(b',');
        push_field(out, "region", region);
        out.push(b',');
        push_field(out, "vpc_id", &vpc.id);
        out.extend_from_slice(b",\"query_timestamp\":\"");
        push_iso(out, time);
        out.extend_from_slice(b"\",");
        push_field(out, "query_name", &query.name);
        out.push(b',');
        push_field(out, "query_type", query.qtype);
        out.extend_from_slice(b",\"query_class\":\"IN\",");
        push_field(out, "rcode", query.rcode);
        out.extend_from_slice(b",\"answers\":[");
        for (i, (rdata, rtype)) in query.answers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            push_field(out, "Rdata", rdata);
            out.push(b',');
            push_field(out, "Type", rtype);
            out.extend_from_slice(b",\"Class\":\"IN\"}");
        }
        out.extend_from_slice(b"],");
        push_field(out, "srcaddr", &src.to_string());
        out.extend_from_slice(b",\"srcport\":\"");
        push_u64(out, rng.random_range(1024..65535u64));
        out.extend_from_slice(b"\",");
        push_field(out, "transport", if rng.random_bool(0.95) { "UDP" } else { "TCP" });
        out.extend_from_slice(b",\"srcids\":{");
        if forwarded {
            push_field(out, "resolver_endpoint", &vpc.resolver_endpoint);
        } else if let Some(instance) = sources.iter().find(|e| e.ip == src).and_then(|e| e.instance.as_ref()) {
            push_field(out, "instance", instance);
        }
        out.push(b'}');
        if let Some(action) = query.firewall {
            out.push(b',');
            push_field(out, "firewall_rule_action", action);
            out.extend_from_slice(b",\"firewall_rule_group_id\":\"rslvr-frg-");
            out.extend_from_slice(&vpc.id.as_bytes()[4..].iter().take(16).copied().collect::<Vec<u8>>());
            out.extend_from_slice(b"\",\"firewall_domain_list_id\":\"rslvr-fdl-");
            out.extend_from_slice(random_id(rng, Alphabet::Hex, 16).as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
    }
    window.records
}

/// A query and its outcome.
struct Query {
    name: String,
    qtype: &'static str,
    rcode: &'static str,
    answers: Vec<(String, &'static str)>,
    firewall: Option<&'static str>,
}

/// A query for `vpc`; a `benign` one never asks for a [`BLOCKED_NAMES`] name.
fn query(rng: &mut ChaCha8Rng, vpc: &Vpc, region: &str, benign: bool) -> Query {
    let roll: f64 = rng.random();
    let mut q = Query { name: String::new(), qtype: "A", rcode: "NOERROR", answers: Vec::new(), firewall: None };
    if roll < 0.36 {
        let service = pick(rng, &AWS_SERVICES);
        q.name = if *service == "sts" && rng.random_bool(0.3) {
            "sts.amazonaws.com.".to_string()
        } else {
            format!("{service}.{region}.amazonaws.com.")
        };
        let h = fnv(&q.name);
        for i in 0..1 + h % 3 {
            q.answers.push((ipv4_from(h.rotate_left(i as u32 * 16), &[52, 54, 3, 18]), "A"));
        }
    } else if roll < 0.52 {
        // Private names: EC2 host names and a private hosted zone behind an internal ALB.
        let host = pick(rng, &vpc.enis).ip;
        if rng.random_bool(0.5) {
            q.name = ec2_host_name(host, region);
            q.answers.push((host.to_string(), "A"));
        } else {
            q.name = "orders-api.internal.example.com.".to_string();
            let alb = format!("internal-orders-{}.{region}.elb.amazonaws.com.", &vpc.id[4..14]);
            q.answers.push((alb, "CNAME"));
            q.answers.push((Ipv4Addr::new(10, vpc.octet, 16, 10 + (fnv(&vpc.id) % 200) as u8).to_string(), "A"));
        }
    } else if roll < 0.80 {
        let (name, chain) = *pick(rng, &PUBLIC_NAMES);
        q.name = name.to_string();
        for target in chain {
            q.answers.push((target.to_string(), "CNAME"));
        }
        let h = fnv(chain.last().copied().unwrap_or(name));
        for i in 0..1 + h % 4 {
            q.answers.push((ipv4_from(h.rotate_left(i as u32 * 13), &[140, 151, 104, 185]), "A"));
        }
    } else if roll < 0.87 {
        let (name, _) = *pick(rng, &PUBLIC_NAMES);
        q.name = name.to_string();
        q.qtype = "AAAA";
        // Not every site has IPv6: an empty NOERROR answer is the usual "no AAAA".
        if !fnv(name).is_multiple_of(3) {
            let h = fnv(name);
            q.answers
                .push((format!("2606:50c0:{:x}:{:x}::{:x}", (h >> 48) as u16, (h >> 32) as u16, h as u16), "AAAA"));
        }
    } else if roll < 0.91 {
        let host = pick(rng, &vpc.enis).ip;
        let [a, b, c, d] = host.octets();
        q.name = format!("{d}.{c}.{b}.{a}.in-addr.arpa.");
        q.qtype = "PTR";
        q.answers.push((ec2_host_name(host, region), "PTR"));
    } else if roll < 0.955 {
        q.name = pick(rng, &TYPO_NAMES).to_string();
        q.rcode = "NXDOMAIN";
    } else if roll < 0.958 && !benign {
        q.name = pick(rng, &BLOCKED_NAMES).to_string();
        if rng.random_bool(0.7) {
            q.firewall = Some("BLOCK");
            q.rcode = "NXDOMAIN";
        } else {
            q.firewall = Some("ALERT");
            q.answers.push((ipv4_from(fnv(&q.name), &[45, 91, 185]), "A"));
        }
    } else if roll < 0.961 {
        q.name = "legacy-ldap.corp.example.com.".to_string();
        q.rcode = "SERVFAIL";
    } else {
        q = dmarc_lookup();
    }
    q
}

/// Service discovery and mail checks: a TXT lookup that always succeeds.
fn dmarc_lookup() -> Query {
    Query {
        name: "_dmarc.example.com.".to_string(),
        qtype: "TXT",
        rcode: "NOERROR",
        answers: vec![("\"v=DMARC1; p=reject; rua=mailto:dmarc@example.com\"".to_string(), "TXT")],
        firewall: None,
    }
}

/// `ip-10-0-1-5.ec2.internal.` in us-east-1, `ip-10-0-1-5.eu-west-1.compute.internal.` elsewhere.
fn ec2_host_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ip-{a}-{b}-{c}-{d}.ec2.internal.")
    } else {
        format!("ip-{a}-{b}-{c}-{d}.{region}.compute.internal.")
    }
}

fn ipv4_from(h: u64, first_octets: &[u8]) -> String {
    let first = first_octets[(h % first_octets.len() as u64) as usize];
    Ipv4Addr::new(first, (h >> 8) as u8, (h >> 16) as u8, ((h >> 24) as u8).max(1)).to_string()
}
