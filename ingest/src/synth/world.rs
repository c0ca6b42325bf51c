//! The organisation the synthetic archive describes: its accounts, regions, principals, VPCs,
//! network interfaces, buckets, keys and functions — everything the log generators refer to, drawn
//! once from the seed so that every file of one archive tells the same story.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::SynthConfig;
use super::emit::{Alphabet, random_id, uuid};
use super::weighted::Table;

/// Everything shared by the generated files.
#[derive(Debug)]
pub(crate) struct World {
    /// `o-` followed by 10 lowercase alphanumerics.
    pub org_id: String,
    /// Name of the organization trail.
    pub trail: String,
    /// Bucket the archive pretends to live in (named in digest files).
    pub bucket: String,
    /// Regions in use; the first is the home region.
    pub regions: Vec<Region>,
    /// Weight of each region in `regions`.
    pub region_weights: Vec<f64>,
    /// Member accounts.
    pub accounts: Vec<Account>,
    /// Relative activity of each account in `accounts`.
    pub account_weights: Vec<f64>,
    /// Whether the background must stay clear of every built-in detection (`SynthConfig::benign`).
    pub benign: bool,
}

/// One AWS region.
#[derive(Debug)]
pub(crate) struct Region {
    /// `us-east-1`.
    pub name: String,
    /// `use1`, the prefix of its availability-zone IDs.
    pub az_prefix: String,
}

/// One member account and what lives in it.
#[derive(Debug)]
pub(crate) struct Account {
    /// 12 digits.
    pub id: String,
    /// Principals that act in this account.
    pub principals: Vec<Principal>,
    /// Index into `principals`, weighted by how busy each principal is (heavy-tailed).
    pub activity: Table<usize>,
    /// IAM role names that exist in the account.
    pub roles: Vec<String>,
    /// S3 buckets owned by the account.
    pub buckets: Vec<String>,
    /// Lambda function names.
    pub functions: Vec<String>,
    /// One KMS key ID (a UUID) per region, in `World::regions` order.
    pub kms_keys: Vec<String>,
    /// One NAT gateway public address per region: where workloads' API calls appear to come from.
    pub nat_ips: Vec<Ipv4Addr>,
    /// VPCs in every region.
    pub vpcs: Vec<Vpc>,
}

/// A VPC, with its flow log and its network interfaces.
#[derive(Debug)]
pub(crate) struct Vpc {
    /// Index into `World::regions`.
    pub region: usize,
    /// `vpc-` and 17 hex digits.
    pub id: String,
    /// Second octet of its `10.x.0.0/16` CIDR.
    pub octet: u8,
    /// `fl-` and 17 hex digits.
    pub flow_log_id: String,
    /// Whether its flow log uses the custom version-5 field list instead of the default format.
    pub custom_format: bool,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// Network interfaces.
    pub enis: Vec<Eni>,
    /// Inbound Resolver endpoint, the `srcids` of queries forwarded from on-premises.
    pub resolver_endpoint: String,
}

/// A subnet of a VPC.
#[derive(Debug)]
pub(crate) struct Subnet {
    /// `subnet-` and 17 hex digits.
    pub id: String,
    /// `use1-az4`.
    pub az_id: String,
    /// Third octet of its `/24`.
    pub octet: u8,
}

/// What a network interface is attached to; decides what traffic it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EniRole {
    /// A web server in a public subnet: inbound 80/443 from the internet, and scans.
    Web,
    /// An application server: talks to databases and to AWS APIs.
    App,
    /// A database: receives 5432/3306/6379 from inside the VPC.
    Database,
    /// A NAT gateway: no instance; forwards outbound traffic.
    NatGateway,
    /// A Lambda function's interface: outbound HTTPS only.
    Lambda,
}

/// One elastic network interface.
#[derive(Debug)]
pub(crate) struct Eni {
    /// `eni-` and 17 hex digits.
    pub id: String,
    /// Index into `Vpc::subnets`.
    pub subnet: usize,
    /// Primary private address.
    pub ip: Ipv4Addr,
    /// IPv6 address, for the dual-stack interfaces.
    pub ipv6: Option<Ipv6Addr>,
    /// `i-` and 17 hex digits, for interfaces attached to instances.
    pub instance: Option<String>,
    /// What it does.
    pub role: EniRole,
}

/// How a principal appears in `userIdentity.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityKind {
    /// An IAM user with a long-term access key.
    IamUser,
    /// A role session.
    AssumedRole,
    /// An AWS service acting on its own behalf (no ARN, `invokedBy`).
    AwsService,
    /// The account root user.
    Root,
    /// A federated user from `GetFederationToken`.
    FederatedUser,
}

/// What kind of actor a principal is; picks its API calls, user agents and source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persona {
    /// A person in the console.
    ConsoleHuman,
    /// A person with the CLI or scripts.
    CliHuman,
    /// An application: Lambda functions, EC2 instance roles, service users.
    Workload,
    /// CI/CD and infrastructure-as-code.
    Pipeline,
    /// An AWS service principal.
    Service,
    /// The root user.
    Root,
}

/// The issuer in `userIdentity.sessionContext.sessionIssuer`.
#[derive(Debug)]
pub(crate) struct Issuer {
    /// `Role` or `IAMUser`.
    pub kind: &'static str,
    /// `AROA…` or `AIDA…`.
    pub principal_id: String,
    /// ARN of the role or user.
    pub arn: String,
    /// Role or user name.
    pub user_name: String,
}

/// Someone or something that makes API calls.
#[derive(Debug)]
pub(crate) struct Principal {
    /// `userIdentity.type`.
    pub kind: IdentityKind,
    /// What it does.
    pub persona: Persona,
    /// `userIdentity.arn`; empty for AWS services.
    pub arn: String,
    /// `userIdentity.principalId`.
    pub principal_id: String,
    /// `userIdentity.userName` for IAM users; the session name for sessions.
    pub user_name: String,
    /// Session issuer, for role sessions and federated users.
    pub issuer: Option<Issuer>,
    /// Long-term key (`AKIA…`) for IAM users; the stem of session keys (`ASIA…`) otherwise.
    pub access_key: String,
    /// For AWS services, the service host (`lambda.amazonaws.com`).
    pub invoked_by: &'static str,
    /// Whether its sessions were created with MFA.
    pub mfa: bool,
    /// Public addresses a person works from.
    pub home_ips: Vec<Ipv4Addr>,
}

const ACCOUNT_NAMES: [&str; 8] = ["prod", "management", "security", "staging", "dev", "log-archive", "data", "sandbox"];
const FIRST_NAMES: [&str; 24] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia",
    "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe", "omar", "li", "priya",
];
const LAST_NAMES: [&str; 16] = [
    "smith", "jones", "garcia", "chen", "nguyen", "patel", "kim", "muller", "rossi", "silva", "kowalski", "haddad",
    "okafor", "larsen", "tanaka", "dubois",
];
const PERMISSION_SETS: [&str; 4] = ["AdministratorAccess", "PowerUserAccess", "ReadOnlyAccess", "SecurityAudit"];
const APPS: [&str; 12] = [
    "orders",
    "billing",
    "ingest",
    "thumbnail",
    "notify",
    "auth",
    "search",
    "report",
    "etl",
    "sync",
    "payments",
    "inventory",
];
const APP_SUFFIXES: [&str; 5] = ["processor", "handler", "api", "worker", "consumer"];
const SERVICES: [&str; 6] = [
    "lambda.amazonaws.com",
    "ec2.amazonaws.com",
    "cloudtrail.amazonaws.com",
    "ssm.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "config.amazonaws.com",
];
/// First octets of consumer and business ISP space (never private or reserved ranges).
const PUBLIC_OCTETS: [u8; 14] = [24, 67, 73, 76, 81, 86, 98, 104, 174, 176, 185, 195, 203, 212];
/// First octets of Amazon EC2 address space, where Elastic IPs come from.
pub(crate) const AWS_OCTETS: [u8; 6] = [3, 18, 34, 44, 52, 54];

impl World {
    /// Draws the organisation from `rng`.
    pub(crate) fn build(config: &SynthConfig, rng: &mut ChaCha8Rng) -> World {
        let org_id = organization_id(rng);
        let regions: Vec<Region> =
            config.regions.iter().map(|name| Region { name: name.clone(), az_prefix: az_prefix(name) }).collect();
        // The home region carries most activity; the others trail off geometrically.
        let region_weights: Vec<f64> =
            (0..regions.len()).map(|i| if i == 0 { 1.0 } else { 0.3 * 0.5f64.powi(i as i32 - 1) }).collect();

        let n_accounts = config.accounts as usize;
        let per_account = (config.principals as usize / n_accounts).max(12);
        let mut used_octets = std::collections::HashSet::new();
        let mut accounts: Vec<Account> = (0..n_accounts)
            .map(|a| {
                let name = if a < ACCOUNT_NAMES.len() {
                    ACCOUNT_NAMES[a].to_string()
                } else {
                    format!("{}-{}", ACCOUNT_NAMES[a % ACCOUNT_NAMES.len()], a / ACCOUNT_NAMES.len())
                };
                Account::build(rng, &name, &regions, per_account, &mut used_octets)
            })
            .collect();
        if config.benign {
            // An organisation that enforces MFA for console users. Set after the draws, so the rest
            // of the world is the same as without `benign`.
            for principal in accounts.iter_mut().flat_map(|a| a.principals.iter_mut()) {
                if principal.kind == IdentityKind::IamUser && principal.persona == Persona::ConsoleHuman {
                    principal.mfa = true;
                }
            }
        }
        // Accounts are listed busiest first (prod), with a gentle heavy tail behind.
        let account_weights = (0..n_accounts).map(|a| 1.0 / (a as f64 + 1.0).powf(0.8)).collect();
        World {
            org_id,
            trail: "org-trail".to_string(),
            bucket: config.bucket.clone(),
            regions,
            region_weights,
            accounts,
            account_weights,
            benign: config.benign,
        }
    }
}

impl Account {
    fn build(
        rng: &mut ChaCha8Rng,
        name: &str,
        regions: &[Region],
        n_principals: usize,
        used_octets: &mut std::collections::HashSet<u8>,
    ) -> Account {
        let id = format!("{}{}", rng.random_range(1..10u8), random_digits(rng, 11));
        let functions: Vec<String> = (0..rng.random_range(4..10usize))
            .map(|_| format!("{}-{}", pick(rng, &APPS), pick(rng, &APP_SUFFIXES)))
            .collect();
        let buckets: Vec<String> = ["app-data", "artifacts", "backups", "uploads", "reports"]
            .iter()
            .take(rng.random_range(2..6usize))
            .map(|purpose| format!("{name}-{purpose}-{id}"))
            .collect();
        let mut roles: Vec<String> =
            ["OrganizationAccountAccessRole", "github-actions-deploy", "terraform-apply", "SecurityAudit"]
                .iter()
                .map(|r| r.to_string())
                .collect();
        roles.extend(functions.iter().map(|f| format!("{f}-role")));

        let mut principals = Vec::with_capacity(n_principals);
        let mut weights = Vec::with_capacity(n_principals);
        principals.push(Principal::root(rng, &id));
        weights.push(0.02);
        for service in SERVICES {
            principals.push(Principal::service(service));
            weights.push(5.0);
        }
        while principals.len() < n_principals {
            let roll: f64 = rng.random();
            let p = if roll < 0.35 {
                let person = person_name(rng);
                let set = pick(rng, &PERMISSION_SETS);
                let role = format!("AWSReservedSSO_{set}_{}", random_id(rng, Alphabet::Hex, 16));
                let persona = if rng.random_bool(0.6) { Persona::ConsoleHuman } else { Persona::CliHuman };
                Principal::session(rng, &id, &role, &format!("{person}@example.com"), persona, true)
            } else if roll < 0.65 {
                let function = pick(rng, &functions).clone();
                if rng.random_bool(0.6) {
                    Principal::session(rng, &id, &format!("{function}-role"), &function, Persona::Workload, false)
                } else {
                    let session = format!("i-{}", random_id(rng, Alphabet::Hex, 17));
                    let role = format!("{}-instance-role", pick(rng, &APPS));
                    Principal::session(rng, &id, &role, &session, Persona::Workload, false)
                }
            } else if roll < 0.75 {
                if rng.random_bool(0.5) {
                    Principal::session(rng, &id, "github-actions-deploy", "GitHubActions", Persona::Pipeline, false)
                } else {
                    let session = format!("terraform-{}", rng.random_range(1000..9999u32));
                    Principal::session(rng, &id, "terraform-apply", &session, Persona::Pipeline, false)
                }
            } else if roll < 0.95 {
                if rng.random_bool(0.6) {
                    let persona = if rng.random_bool(0.3) { Persona::ConsoleHuman } else { Persona::CliHuman };
                    let name = person_name(rng);
                    Principal::user(rng, &id, &name, persona)
                } else {
                    let user = format!("svc-{}", pick(rng, &APPS));
                    Principal::user(rng, &id, &user, Persona::Workload)
                }
            } else {
                let name = *pick(rng, &FIRST_NAMES);
                Principal::federated(rng, &id, name)
            };
            let persona_factor = match p.persona {
                Persona::Workload => 3.0,
                Persona::Pipeline => 1.0,
                _ => 0.7,
            };
            principals.push(p);
            weights.push(persona_factor);
        }
        // Zipf over a random ranking: a few principals do most of the work, most do a little.
        let mut ranks: Vec<usize> = (0..principals.len()).collect();
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.random_range(0..=i));
        }
        let activity = Table::new(
            weights.iter().zip(&ranks).enumerate().map(|(i, (w, &rank))| (i, w / (rank as f64 + 1.0).powf(1.1))),
        );

        let kms_keys = regions.iter().map(|_| uuid(rng)).collect();
        let nat_ips = regions.iter().map(|_| public_ip(rng, &AWS_OCTETS)).collect();
        let mut vpcs = Vec::new();
        for (r, region) in regions.iter().enumerate() {
            let count = if r == 0 { 2 } else { 1 };
            for _ in 0..count {
                vpcs.push(Vpc::build(rng, r, region, used_octets));
            }
        }
        Account { id, principals, activity, roles, buckets, functions, kms_keys, nat_ips, vpcs }
    }
}

impl Principal {
    fn root(rng: &mut ChaCha8Rng, account: &str) -> Principal {
        Principal {
            kind: IdentityKind::Root,
            persona: Persona::Root,
            arn: format!("arn:aws:iam::{account}:root"),
            principal_id: account.to_string(),
            user_name: String::new(),
            issuer: None,
            access_key: format!("ASIA{}", random_id(rng, Alphabet::UpperAlnum, 12)),
            invoked_by: "",
            mfa: true,
            home_ips: vec![public_ip(rng, &PUBLIC_OCTETS)],
        }
    }

    fn service(host: &'static str) -> Principal {
        Principal {
            kind: IdentityKind::AwsService,
            persona: Persona::Service,
            arn: String::new(),
            principal_id: String::new(),
            user_name: String::new(),
            issuer: None,
            access_key: String::new(),
            invoked_by: host,
            mfa: false,
            home_ips: Vec::new(),
        }
    }

    fn session(
        rng: &mut ChaCha8Rng,
        account: &str,
        role: &str,
        session: &str,
        persona: Persona,
        mfa: bool,
    ) -> Principal {
        let role_id = format!("AROA{}", random_id(rng, Alphabet::UpperAlnum, 17));
        let home_ips = (0..rng.random_range(1..3)).map(|_| public_ip(rng, &PUBLIC_OCTETS)).collect();
        Principal {
            kind: IdentityKind::AssumedRole,
            persona,
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            principal_id: format!("{role_id}:{session}"),
            user_name: session.to_string(),
            issuer: Some(Issuer {
                kind: "Role",
                principal_id: role_id,
                arn: if role.starts_with("AWSReservedSSO_") {
                    format!("arn:aws:iam::{account}:role/aws-reserved/sso.amazonaws.com/{role}")
                } else {
                    format!("arn:aws:iam::{account}:role/{role}")
                },
                user_name: role.to_string(),
            }),
            access_key: format!("ASIA{}", random_id(rng, Alphabet::UpperAlnum, 12)),
            invoked_by: "",
            mfa,
            home_ips,
        }
    }

    fn user(rng: &mut ChaCha8Rng, account: &str, name: &str, persona: Persona) -> Principal {
        let home_ips = (0..rng.random_range(1..3)).map(|_| public_ip(rng, &PUBLIC_OCTETS)).collect();
        Principal {
            kind: IdentityKind::IamUser,
            persona,
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            principal_id: format!("AIDA{}", random_id(rng, Alphabet::UpperAlnum, 17)),
            user_name: name.to_string(),
            issuer: None,
            access_key: format!("AKIA{}", random_id(rng, Alphabet::UpperAlnum, 16)),
            invoked_by: "",
            mfa: rng.random_bool(0.5),
            home_ips,
        }
    }

    fn federated(rng: &mut ChaCha8Rng, account: &str, name: &str) -> Principal {
        Principal {
            kind: IdentityKind::FederatedUser,
            persona: Persona::CliHuman,
            arn: format!("arn:aws:sts::{account}:federated-user/{name}"),
            principal_id: format!("{account}:{name}"),
            user_name: name.to_string(),
            issuer: Some(Issuer {
                kind: "IAMUser",
                principal_id: format!("AIDA{}", random_id(rng, Alphabet::UpperAlnum, 17)),
                arn: format!("arn:aws:iam::{account}:user/federation-broker"),
                user_name: "federation-broker".to_string(),
            }),
            access_key: format!("ASIA{}", random_id(rng, Alphabet::UpperAlnum, 12)),
            invoked_by: "",
            mfa: false,
            home_ips: vec![public_ip(rng, &PUBLIC_OCTETS)],
        }
    }
}

impl Vpc {
    fn build(
        rng: &mut ChaCha8Rng,
        region: usize,
        info: &Region,
        used_octets: &mut std::collections::HashSet<u8>,
    ) -> Vpc {
        // Distinct /16s across the organisation, as a real address plan would have (while they last).
        let mut octet = rng.random_range(0..=255u8);
        for _ in 0..64 {
            if used_octets.insert(octet) {
                break;
            }
            octet = rng.random_range(0..=255u8);
        }
        let subnets: Vec<Subnet> = (0..3u8)
            .map(|i| Subnet {
                id: format!("subnet-{}", random_id(rng, Alphabet::Hex, 17)),
                az_id: format!("{}-az{}", info.az_prefix, i + 1),
                octet: if i == 0 { 100 } else { i * 16 },
            })
            .collect();
        let dual_stack = rng.random_bool(0.4);
        let v6_prefix: u16 = rng.random();
        let mut enis = Vec::new();
        let n_enis = rng.random_range(6..24usize);
        for e in 0..n_enis {
            let role = match e {
                0 => EniRole::NatGateway,
                1 | 2 => EniRole::Web,
                _ => *pick(rng, &[EniRole::App, EniRole::App, EniRole::App, EniRole::Database, EniRole::Lambda]),
            };
            // Public-facing interfaces sit in the public subnet (index 0).
            let subnet = if matches!(role, EniRole::NatGateway | EniRole::Web) { 0 } else { rng.random_range(1..3) };
            let ip = Ipv4Addr::new(10, octet, subnets[subnet].octet, rng.random_range(4..250));
            let ipv6 = (dual_stack && role != EniRole::NatGateway)
                .then(|| Ipv6Addr::new(0x2600, 0x1f18, v6_prefix, u16::from(octet), 0, 0, rng.random(), rng.random()));
            let instance = matches!(role, EniRole::Web | EniRole::App | EniRole::Database)
                .then(|| format!("i-{}", random_id(rng, Alphabet::Hex, 17)));
            enis.push(Eni {
                id: format!("eni-{}", random_id(rng, Alphabet::Hex, 17)),
                subnet,
                ip,
                ipv6,
                instance,
                role,
            });
        }
        Vpc {
            region,
            id: format!("vpc-{}", random_id(rng, Alphabet::Hex, 17)),
            octet,
            flow_log_id: format!("fl-{}", random_id(rng, Alphabet::Hex, 17)),
            custom_format: rng.random_bool(0.3),
            subnets,
            enis,
            resolver_endpoint: format!("rslvr-in-{}", random_id(rng, Alphabet::Hex, 17)),
        }
    }
}

/// `o-` and 10 lowercase alphanumerics: the first draw of the world's stream.
pub(crate) fn organization_id(rng: &mut ChaCha8Rng) -> String {
    format!("o-{}", random_id(rng, Alphabet::LowerAlnum, 10))
}

/// `use1` for `us-east-1`, `euw1` for `eu-west-1`, `apse2` for `ap-southeast-2`.
fn az_prefix(region: &str) -> String {
    let mut parts = region.split('-');
    let area = parts.next().unwrap_or("us");
    let direction = parts.next().unwrap_or("east");
    let number = parts.next().unwrap_or("1");
    let dir: String = match direction {
        "east" | "west" | "north" | "south" | "central" => direction[..1].to_string(),
        other => {
            // Compound directions: southeast → se, northwest → nw.
            let half = if other.starts_with("north") { "n" } else { "s" };
            let rest = other.trim_start_matches("north").trim_start_matches("south");
            format!("{half}{}", rest.chars().next().unwrap_or('e'))
        }
    };
    format!("{area}{dir}{number}")
}

fn person_name<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("{}.{}", pick(rng, &FIRST_NAMES), pick(rng, &LAST_NAMES))
}

fn random_digits<R: Rng + ?Sized>(rng: &mut R, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

/// A uniformly chosen element of a non-empty slice.
pub(crate) fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A public address whose first octet is one of `first_octets`.
pub(crate) fn public_ip<R: Rng + ?Sized>(rng: &mut R, first_octets: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(*pick(rng, first_octets), rng.random_range(1..255), rng.random(), rng.random_range(1..255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn az_prefixes_follow_aws_naming() {
        for (region, want) in
            [("us-east-1", "use1"), ("eu-west-1", "euw1"), ("ap-southeast-2", "apse2"), ("eu-central-1", "euc1")]
        {
            assert_eq!(az_prefix(region), want);
        }
    }
}
