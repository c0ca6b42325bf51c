//! CloudTrail log files: `{"Records":[...]}` in compact JSON, each record's fields in the order
//! AWS writes them, for a weighted mix of API calls that depends on who is calling.
//!
//! A file gets its window, account, region and record count from the plan; this module picks the
//! principals (a few busy ones dominate a window, as in real files), their calls, source addresses,
//! user agents, occasional errors, and the call-specific `requestParameters`, `responseElements`,
//! `additionalEventData` and `resources`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::emit::{Alphabet, fnv, iso, push_field, push_iso, push_u64, push_uuid, random_id, sts_expiration, uuid};
use super::plan::{WINDOW_SECS, Window};
use super::weighted::Table;
use super::world::{AWS_OCTETS, Account, IdentityKind, Persona, Principal, World, pick, public_ip};

/// How a call's free-form parts look.
#[derive(Debug, Clone, Copy)]
enum Detail {
    /// `requestParameters` and `responseElements` both null.
    Plain,
    /// Fixed `requestParameters`, null `responseElements`.
    Static(&'static str),
    AssumeRole,
    S3Object,
    Bucket,
    RoleName,
    CreateAccessKey,
    Decrypt,
    GenerateDataKey,
    ConsoleLogin,
    Invoke,
    UpdateFunction,
    LookupEvents,
    LogStream,
    Secret,
    Parameter,
    CreateTags,
    RunInstances,
    AuthorizeIngress,
    /// An SSM command or session on the principal's own instance (one instance, never a fleet).
    SendCommand,
    StartSession,
    /// A console delete of a few objects in one batch.
    DeleteObjects,
    /// RDS: backup retention set to a working value; a manual snapshot.
    ModifyDbInstance,
    DbSnapshot,
    /// An EBS snapshot shared with another account of the organization.
    ShareSnapshot,
    /// A role trusting a service or the account itself.
    CreateRole,
    /// An instance resized (not its user data).
    ModifyInstanceAttribute,
    /// A Lambda function invocable by S3 for one bucket of the account.
    AddPermission,
    /// Objects under `tmp/` expire after 30 days, in a bucket that holds no logs.
    PutBucketLifecycle,
    /// A bucket readable by a role of the account and by the organization's other accounts.
    PutBucketPolicy,
}

/// One kind of API call.
#[derive(Debug)]
struct EventSpec {
    source: &'static str,
    name: &'static str,
    read_only: bool,
    /// A data event (`eventCategory` `Data`, `managementEvent` false).
    data: bool,
    /// Served by a global endpoint, so recorded in us-east-1 only.
    global: bool,
    version: &'static str,
    detail: Detail,
}

const fn mgmt(source: &'static str, name: &'static str, read_only: bool, detail: Detail) -> EventSpec {
    EventSpec { source, name, read_only, data: false, global: false, version: "1.09", detail }
}
const fn data(source: &'static str, name: &'static str, read_only: bool, detail: Detail) -> EventSpec {
    EventSpec { source, name, read_only, data: true, global: false, version: "1.10", detail }
}
const fn global(source: &'static str, name: &'static str, read_only: bool, detail: Detail) -> EventSpec {
    EventSpec { source, name, read_only, data: false, global: true, version: "1.08", detail }
}

const STS: &str = "sts.amazonaws.com";
const EC2: &str = "ec2.amazonaws.com";
const S3: &str = "s3.amazonaws.com";
const IAM: &str = "iam.amazonaws.com";
const KMS: &str = "kms.amazonaws.com";
const LAMBDA: &str = "lambda.amazonaws.com";

static ASSUME_ROLE: EventSpec = mgmt(STS, "AssumeRole", true, Detail::AssumeRole);
static GET_CALLER_IDENTITY: EventSpec = mgmt(STS, "GetCallerIdentity", true, Detail::Plain);
static DESCRIBE_INSTANCES: EventSpec =
    mgmt(EC2, "DescribeInstances", true, Detail::Static(r#"{"instancesSet":{},"filterSet":{}}"#));
static DESCRIBE_SECURITY_GROUPS: EventSpec = mgmt(
    EC2,
    "DescribeSecurityGroups",
    true,
    Detail::Static(r#"{"securityGroupSet":{},"securityGroupIdSet":{},"filterSet":{}}"#),
);
static DESCRIBE_VPCS: EventSpec = mgmt(EC2, "DescribeVpcs", true, Detail::Static(r#"{"vpcSet":{},"filterSet":{}}"#));
static DESCRIBE_SUBNETS: EventSpec =
    mgmt(EC2, "DescribeSubnets", true, Detail::Static(r#"{"subnetSet":{},"filterSet":{}}"#));
static DESCRIBE_VOLUMES: EventSpec =
    mgmt(EC2, "DescribeVolumes", true, Detail::Static(r#"{"volumeSet":{},"filterSet":{}}"#));
static DESCRIBE_REGIONS: EventSpec =
    mgmt(EC2, "DescribeRegions", true, Detail::Static(r#"{"regionSet":{},"allRegions":false}"#));
static CREATE_TAGS: EventSpec = mgmt(EC2, "CreateTags", false, Detail::CreateTags);
static RUN_INSTANCES: EventSpec = mgmt(EC2, "RunInstances", false, Detail::RunInstances);
static AUTHORIZE_INGRESS: EventSpec = mgmt(EC2, "AuthorizeSecurityGroupIngress", false, Detail::AuthorizeIngress);
static GET_OBJECT: EventSpec = data(S3, "GetObject", true, Detail::S3Object);
static PUT_OBJECT: EventSpec = data(S3, "PutObject", false, Detail::S3Object);
static HEAD_OBJECT: EventSpec = data(S3, "HeadObject", true, Detail::S3Object);
static LIST_BUCKETS: EventSpec = mgmt(S3, "ListBuckets", true, Detail::Static(r#"{"Host":"s3.amazonaws.com"}"#));
static GET_BUCKET_ACL: EventSpec = mgmt(S3, "GetBucketAcl", true, Detail::Bucket);
static LIST_ROLES: EventSpec = global(IAM, "ListRoles", true, Detail::Plain);
static GET_ROLE: EventSpec = global(IAM, "GetRole", true, Detail::RoleName);
static LIST_ATTACHED_ROLE_POLICIES: EventSpec = global(IAM, "ListAttachedRolePolicies", true, Detail::RoleName);
static LIST_USERS: EventSpec = global(IAM, "ListUsers", true, Detail::Plain);
static GET_POLICY_VERSION: EventSpec = global(
    IAM,
    "GetPolicyVersion",
    true,
    Detail::Static(r#"{"policyArn":"arn:aws:iam::aws:policy/ReadOnlyAccess","versionId":"v112"}"#),
);
static GET_ACCOUNT_SUMMARY: EventSpec = global(IAM, "GetAccountSummary", true, Detail::Plain);
static CREATE_ACCESS_KEY: EventSpec = global(IAM, "CreateAccessKey", false, Detail::CreateAccessKey);
static DECRYPT: EventSpec = mgmt(KMS, "Decrypt", true, Detail::Decrypt);
static GENERATE_DATA_KEY: EventSpec = mgmt(KMS, "GenerateDataKey", true, Detail::GenerateDataKey);
static CONSOLE_LOGIN: EventSpec = global("signin.amazonaws.com", "ConsoleLogin", false, Detail::ConsoleLogin);
static INVOKE: EventSpec = data(LAMBDA, "Invoke", false, Detail::Invoke);
static LIST_FUNCTIONS: EventSpec = mgmt(LAMBDA, "ListFunctions20150331", true, Detail::Plain);
static UPDATE_FUNCTION_CODE: EventSpec = mgmt(LAMBDA, "UpdateFunctionCode20150331v2", false, Detail::UpdateFunction);
static LOOKUP_EVENTS: EventSpec = mgmt("cloudtrail.amazonaws.com", "LookupEvents", true, Detail::LookupEvents);
static DESCRIBE_TRAILS: EventSpec =
    mgmt("cloudtrail.amazonaws.com", "DescribeTrails", true, Detail::Static(r#"{"includeShadowTrails":true}"#));
static PUT_LOG_EVENTS: EventSpec = data("logs.amazonaws.com", "PutLogEvents", false, Detail::LogStream);
static CREATE_LOG_STREAM: EventSpec = mgmt("logs.amazonaws.com", "CreateLogStream", false, Detail::LogStream);
static GET_SECRET_VALUE: EventSpec = mgmt("secretsmanager.amazonaws.com", "GetSecretValue", true, Detail::Secret);
static GET_PARAMETER: EventSpec = mgmt("ssm.amazonaws.com", "GetParameter", true, Detail::Parameter);
static DESCRIBE_STACKS: EventSpec = mgmt("cloudformation.amazonaws.com", "DescribeStacks", true, Detail::Plain);
static DESCRIBE_ORGANIZATION: EventSpec =
    global("organizations.amazonaws.com", "DescribeOrganization", true, Detail::Plain);

// Near misses: calls the rules watch, in the forms ordinary operations make them. Only a benign
// background makes them (see `NEAR_MISS_CALLS`), so that "the pack stays quiet" is measured on
// traffic that comes close to what it looks for, not only on traffic it never reads.
const SSM: &str = "ssm.amazonaws.com";
const RDS: &str = "rds.amazonaws.com";
static SEND_COMMAND: EventSpec = mgmt(SSM, "SendCommand", false, Detail::SendCommand);
static START_SESSION: EventSpec = mgmt(SSM, "StartSession", false, Detail::StartSession);
static DELETE_OBJECT: EventSpec = data(S3, "DeleteObject", false, Detail::S3Object);
static DELETE_OBJECTS: EventSpec = data(S3, "DeleteObjects", false, Detail::DeleteObjects);
static MODIFY_DB_INSTANCE: EventSpec = mgmt(RDS, "ModifyDBInstance", false, Detail::ModifyDbInstance);
static CREATE_DB_SNAPSHOT: EventSpec = mgmt(RDS, "CreateDBSnapshot", false, Detail::DbSnapshot);
static MODIFY_SNAPSHOT_ATTRIBUTE: EventSpec = mgmt(EC2, "ModifySnapshotAttribute", false, Detail::ShareSnapshot);
static CREATE_ROLE: EventSpec = global(IAM, "CreateRole", false, Detail::CreateRole);
static MODIFY_INSTANCE_ATTRIBUTE: EventSpec =
    mgmt(EC2, "ModifyInstanceAttribute", false, Detail::ModifyInstanceAttribute);
static ADD_PERMISSION: EventSpec = mgmt(LAMBDA, "AddPermission20150331v2", false, Detail::AddPermission);
static PUT_BUCKET_LIFECYCLE: EventSpec = mgmt(S3, "PutBucketLifecycle", false, Detail::PutBucketLifecycle);
static PUT_BUCKET_POLICY: EventSpec = mgmt(S3, "PutBucketPolicy", false, Detail::PutBucketPolicy);

type Mix = &'static [(&'static EventSpec, f64)];

const CONSOLE_MIX: Mix = &[
    (&CONSOLE_LOGIN, 3.0),
    (&DESCRIBE_INSTANCES, 6.0),
    (&DESCRIBE_SECURITY_GROUPS, 3.0),
    (&DESCRIBE_VPCS, 2.0),
    (&DESCRIBE_SUBNETS, 2.0),
    (&DESCRIBE_VOLUMES, 1.0),
    (&DESCRIBE_REGIONS, 2.0),
    (&LIST_BUCKETS, 3.0),
    (&GET_BUCKET_ACL, 1.0),
    (&LIST_ROLES, 2.0),
    (&GET_ROLE, 2.0),
    (&LIST_ATTACHED_ROLE_POLICIES, 1.0),
    (&LIST_USERS, 1.0),
    (&GET_ACCOUNT_SUMMARY, 1.0),
    (&LOOKUP_EVENTS, 3.0),
    (&DESCRIBE_TRAILS, 1.0),
    (&LIST_FUNCTIONS, 2.0),
    (&DESCRIBE_STACKS, 2.0),
    (&DECRYPT, 1.0),
    (&GET_SECRET_VALUE, 1.0),
    (&DESCRIBE_ORGANIZATION, 1.0),
    (&CREATE_TAGS, 0.5),
    (&AUTHORIZE_INGRESS, 0.2),
    (&CREATE_ACCESS_KEY, 0.05),
    (&DELETE_OBJECTS, 0.1),
    (&START_SESSION, 0.1),
    (&PUT_BUCKET_POLICY, 0.05),
];
const CLI_MIX: Mix = &[
    (&GET_CALLER_IDENTITY, 4.0),
    (&ASSUME_ROLE, 2.0),
    (&DESCRIBE_INSTANCES, 5.0),
    (&DESCRIBE_SECURITY_GROUPS, 2.0),
    (&DESCRIBE_VPCS, 1.0),
    (&DESCRIBE_SUBNETS, 1.0),
    (&DESCRIBE_REGIONS, 1.0),
    (&GET_OBJECT, 6.0),
    (&PUT_OBJECT, 2.0),
    (&LIST_BUCKETS, 2.0),
    (&GET_ROLE, 1.0),
    (&LIST_ROLES, 1.0),
    (&LOOKUP_EVENTS, 1.0),
    (&INVOKE, 1.0),
    (&LIST_FUNCTIONS, 1.0),
    (&GET_PARAMETER, 1.0),
    (&GET_SECRET_VALUE, 1.0),
    (&DECRYPT, 1.0),
    (&RUN_INSTANCES, 0.2),
    (&CREATE_ACCESS_KEY, 0.05),
    (&SEND_COMMAND, 0.1),
    (&START_SESSION, 0.1),
    (&DELETE_OBJECT, 0.3),
];
const WORKLOAD_MIX: Mix = &[
    (&GET_OBJECT, 20.0),
    (&PUT_OBJECT, 10.0),
    (&HEAD_OBJECT, 4.0),
    (&DECRYPT, 10.0),
    (&GENERATE_DATA_KEY, 6.0),
    (&PUT_LOG_EVENTS, 8.0),
    (&CREATE_LOG_STREAM, 1.0),
    (&ASSUME_ROLE, 3.0),
    (&GET_CALLER_IDENTITY, 1.0),
    (&GET_SECRET_VALUE, 3.0),
    (&GET_PARAMETER, 4.0),
    (&INVOKE, 4.0),
    (&DESCRIBE_INSTANCES, 2.0),
    (&DELETE_OBJECT, 0.5),
];
const PIPELINE_MIX: Mix = &[
    (&ASSUME_ROLE, 3.0),
    (&GET_CALLER_IDENTITY, 3.0),
    (&DESCRIBE_INSTANCES, 4.0),
    (&DESCRIBE_SECURITY_GROUPS, 3.0),
    (&DESCRIBE_VPCS, 3.0),
    (&DESCRIBE_SUBNETS, 3.0),
    (&DESCRIBE_VOLUMES, 1.0),
    (&DESCRIBE_REGIONS, 1.0),
    (&GET_ROLE, 3.0),
    (&LIST_ATTACHED_ROLE_POLICIES, 2.0),
    (&GET_POLICY_VERSION, 1.0),
    (&GET_OBJECT, 3.0),
    (&PUT_OBJECT, 2.0),
    (&UPDATE_FUNCTION_CODE, 1.0),
    (&LIST_FUNCTIONS, 1.0),
    (&DESCRIBE_STACKS, 3.0),
    (&CREATE_TAGS, 1.0),
    (&RUN_INSTANCES, 0.5),
    (&AUTHORIZE_INGRESS, 0.3),
    (&GENERATE_DATA_KEY, 1.0),
    (&SEND_COMMAND, 0.1),
    (&CREATE_ROLE, 0.2),
    (&MODIFY_DB_INSTANCE, 0.1),
    (&CREATE_DB_SNAPSHOT, 0.1),
    (&MODIFY_SNAPSHOT_ATTRIBUTE, 0.05),
    (&MODIFY_INSTANCE_ATTRIBUTE, 0.1),
    (&ADD_PERMISSION, 0.1),
    (&PUT_BUCKET_LIFECYCLE, 0.1),
    (&PUT_BUCKET_POLICY, 0.05),
];
const SERVICE_MIX: Mix = &[(&ASSUME_ROLE, 10.0), (&DECRYPT, 3.0), (&GENERATE_DATA_KEY, 3.0), (&GET_BUCKET_ACL, 1.0)];
const ROOT_MIX: Mix = &[
    (&CONSOLE_LOGIN, 3.0),
    (&GET_ACCOUNT_SUMMARY, 2.0),
    (&DESCRIBE_REGIONS, 1.0),
    (&LIST_BUCKETS, 1.0),
    (&DESCRIBE_ORGANIZATION, 1.0),
];

const BROWSERS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
];
const AWS_CLI: &str = "aws-cli/2.15.22 Python/3.11.8 Darwin/23.3.0 exe/x86_64 prompt/off";
const SDK_AGENTS: [&str; 3] = [
    "Boto3/1.34.49 md/Botocore#1.34.49 ua/2.0 os/linux#5.10.209 md/arch#x86_64 lang/python#3.12.2 cfg/retry-mode#legacy Botocore/1.34.49",
    "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.0 md/GOOS#linux md/GOARCH#amd64 api/s3#1.51.1",
    "aws-sdk-java/2.25.3 Linux/5.10.209 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache",
];
const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.39.1 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.0 md/GOOS#linux md/GOARCH#amd64";
const TLS_SUITES: [(&str, &str); 3] = [
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
];
const OBJECT_PREFIXES: [&str; 6] = ["data", "uploads", "exports", "logs", "images", "reports"];
const OBJECT_EXTENSIONS: [&str; 5] = ["json", "parquet", "csv", "gz", "png"];

/// Calls a built-in detection flags whoever makes them (`aws-iam-credentials-created`), left
/// out of a benign background.
const FLAGGED_CALLS: [&str; 1] = ["CreateAccessKey"];

/// The near misses, made only in a benign background: the other archives keep the calls, and so
/// the alerts, that tests and benchmarks count on (the entries sit at the end of each mix, so a
/// zero weight leaves every other pick as it was).
const NEAR_MISS_CALLS: [&str; 12] = [
    "SendCommand",
    "StartSession",
    "DeleteObject",
    "DeleteObjects",
    "ModifyDBInstance",
    "CreateDBSnapshot",
    "ModifySnapshotAttribute",
    "CreateRole",
    "ModifyInstanceAttribute",
    "AddPermission20150331v2",
    "PutBucketLifecycle",
    "PutBucketPolicy",
];

/// The call mix of every persona, with and without global-endpoint calls.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// Indexed by `persona_slot(persona) * 2 + global_allowed`.
    tables: Vec<Table<&'static EventSpec>>,
}

const PERSONAS: [Persona; 6] =
    [Persona::ConsoleHuman, Persona::CliHuman, Persona::Workload, Persona::Pipeline, Persona::Service, Persona::Root];

fn persona_slot(persona: Persona) -> usize {
    PERSONAS.iter().position(|&p| p == persona).unwrap_or(0)
}

impl Catalog {
    /// Builds the weighted tables once per archive; a `benign` catalog never picks a
    /// [`FLAGGED_CALLS`] call, and only a `benign` one picks [`NEAR_MISS_CALLS`].
    pub(crate) fn new(benign: bool) -> Catalog {
        let mut tables = Vec::new();
        for persona in PERSONAS {
            let mix = match persona {
                Persona::ConsoleHuman => CONSOLE_MIX,
                Persona::CliHuman => CLI_MIX,
                Persona::Workload => WORKLOAD_MIX,
                Persona::Pipeline => PIPELINE_MIX,
                Persona::Service => SERVICE_MIX,
                Persona::Root => ROOT_MIX,
            };
            let mix: Vec<(&'static EventSpec, f64)> = mix
                .iter()
                .map(|&(spec, w)| {
                    let dropped =
                        if benign { FLAGGED_CALLS.contains(&spec.name) } else { NEAR_MISS_CALLS.contains(&spec.name) };
                    (spec, if dropped { 0.0 } else { w })
                })
                .collect();
            // Global-endpoint calls (IAM, sign-in, Organizations) are recorded in us-east-1 only.
            tables.push(Table::new(mix.iter().map(|&(spec, w)| (spec, if spec.global { 0.0 } else { w }))));
            tables.push(Table::new(mix));
        }
        Catalog { tables }
    }

    fn pick(&self, rng: &mut ChaCha8Rng, persona: Persona, global_allowed: bool) -> &'static EventSpec {
        self.tables[persona_slot(persona) * 2 + usize::from(global_allowed)].pick(rng)
    }
}

/// Everything about one record that its parts need.
struct Call<'a> {
    account: &'a Account,
    region: &'a str,
    region_index: usize,
    principal: &'a Principal,
    spec: &'static EventSpec,
    time: i64,
    /// Whether the principal is in the console (browser session credentials).
    console: bool,
    /// Whether a failure may be an access-denied error (a benign background allows one per
    /// principal ARN and file; see [`write`]).
    may_deny: bool,
    /// Another account of the organization (the account itself when it is the only one).
    sibling: &'a str,
}

/// Writes one CloudTrail file's content for `window`; returns the number of records.
pub(crate) fn write(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, world: &World, catalog: &Catalog, window: &Window) -> u64 {
    let account = &world.accounts[window.account];
    let sibling = world.accounts[(window.account + 1) % world.accounts.len()].id.as_str();
    let region = world.regions[window.place].name.as_str();
    let global_allowed = region == "us-east-1";
    let mut times: Vec<i64> = (0..window.records).map(|_| window.start + rng.random_range(0..WINDOW_SECS)).collect();
    times.sort_unstable();
    // A few principals dominate any one window; the rest of the organisation adds background.
    let focus: Vec<usize> = (0..rng.random_range(2..8)).map(|_| active_principal(rng, account, world.benign)).collect();
    // In a benign background each principal ARN (several principals may share one, as CI sessions
    // do) gets at most one access-denied error per file, so no 10-minute bin (two windows, in each
    // region) comes near the 20 of `aws-access-denied-burst`.
    let mut denied: Vec<&str> = Vec::new();
    let mut resources = Vec::with_capacity(256);
    out.reserve(window.records as usize * 1300);
    out.extend_from_slice(b"{\"Records\":[");
    for (i, &time) in times.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let who = if i == 0 && world.benign {
            // Someone, not AWS itself, acts in every file: the region baseline counts only them.
            working_principal(rng, account)
        } else if rng.random_bool(0.7) {
            *pick(rng, &focus)
        } else {
            active_principal(rng, account, world.benign)
        };
        let principal = &account.principals[who];
        let spec = catalog.pick(rng, principal.persona, global_allowed);
        let console = matches!(principal.persona, Persona::ConsoleHuman | Persona::Root);
        let may_deny = !world.benign || !denied.contains(&principal.arn.as_str());
        let call =
            Call { account, region, region_index: window.place, principal, spec, time, console, may_deny, sibling };
        if write_record(out, &mut resources, rng, &call) {
            denied.push(&principal.arn);
        }
    }
    out.extend_from_slice(b"]}");
    window.records
}

/// A principal drawn by how busy it is; in a benign background, never the root user (whose every
/// API call and sign-in a built-in rule flags).
fn active_principal(rng: &mut ChaCha8Rng, account: &Account, benign: bool) -> usize {
    loop {
        let who = *account.activity.pick(rng);
        if !benign || account.principals[who].kind != IdentityKind::Root {
            return who;
        }
    }
}

/// A principal drawn by how busy it is, that is neither an AWS service nor the root user.
fn working_principal(rng: &mut ChaCha8Rng, account: &Account) -> usize {
    loop {
        let who = *account.activity.pick(rng);
        if !matches!(account.principals[who].kind, IdentityKind::Root | IdentityKind::AwsService) {
            return who;
        }
    }
}

/// Writes one record; returns whether it failed with an access-denied error.
fn write_record(out: &mut Vec<u8>, resources: &mut Vec<u8>, rng: &mut ChaCha8Rng, call: &Call<'_>) -> bool {
    let Call { account, region, principal, spec, time, .. } = *call;
    let is_service = principal.kind == IdentityKind::AwsService;
    let is_login = matches!(spec.detail, Detail::ConsoleLogin);

    out.extend_from_slice(b"{\"eventVersion\":\"");
    out.extend_from_slice(spec.version.as_bytes());
    out.extend_from_slice(b"\",\"userIdentity\":");
    write_identity(out, principal, &account.id, time, call.console);
    out.extend_from_slice(b",\"eventTime\":\"");
    push_iso(out, time);
    out.extend_from_slice(b"\",");
    push_field(out, "eventSource", spec.source);
    out.push(b',');
    push_field(out, "eventName", spec.name);
    out.push(b',');
    push_field(out, "awsRegion", if spec.global { "us-east-1" } else { region });
    out.push(b',');

    let (source_ip, via_endpoint) = source_address(rng, call);
    push_field(out, "sourceIPAddress", &source_ip);
    out.push(b',');
    push_field(out, "userAgent", user_agent(rng, call, is_login));
    out.push(b',');

    // A few percent of calls fail; AWS services' own calls practically never do.
    let failed = !is_service
        && rng.random_bool(if is_login {
            0.05
        } else if spec.read_only {
            0.02
        } else {
            0.05
        });
    let denied = failed && write_error(out, rng, call);
    resources.clear();
    let bucket_host = write_detail(out, resources, rng, call, failed);

    if !is_login {
        out.extend_from_slice(b"\"requestID\":\"");
        if spec.source == S3 {
            out.extend_from_slice(random_id(rng, Alphabet::UpperAlnum, 16).as_bytes());
        } else {
            push_uuid(out, rng);
        }
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"\"eventID\":\"");
    push_uuid(out, rng);
    out.extend_from_slice(b"\",\"readOnly\":");
    out.extend_from_slice(if spec.read_only { b"true" } else { b"false" });
    if !resources.is_empty() {
        out.extend_from_slice(b",\"resources\":[");
        out.extend_from_slice(resources);
        out.push(b']');
    }
    out.extend_from_slice(b",\"eventType\":\"");
    out.extend_from_slice(if is_login { b"AwsConsoleSignIn" } else { b"AwsApiCall" });
    out.extend_from_slice(b"\",\"managementEvent\":");
    out.extend_from_slice(if spec.data { b"false" } else { b"true" });
    out.push(b',');
    push_field(out, "recipientAccountId", &account.id);
    if is_service {
        out.extend_from_slice(b",\"sharedEventID\":\"");
        push_uuid(out, rng);
        out.push(b'"');
    }
    if via_endpoint {
        out.extend_from_slice(b",\"vpcEndpointId\":\"vpce-");
        out.extend_from_slice(random_id(rng, Alphabet::Hex, 17).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"eventCategory\":\"");
    out.extend_from_slice(if spec.data { b"Data" } else { b"Management" });
    out.push(b'"');
    if !is_service && !is_login {
        let (version, suite) = *pick(rng, &TLS_SUITES);
        out.extend_from_slice(b",\"tlsDetails\":{");
        push_field(out, "tlsVersion", version);
        out.push(b',');
        push_field(out, "cipherSuite", suite);
        out.extend_from_slice(b",\"clientProvidedHostHeader\":\"");
        match &bucket_host {
            Some(host) => out.extend_from_slice(host.as_bytes()),
            None => write_host(out, call),
        }
        out.extend_from_slice(b"\"}");
        if call.console {
            out.extend_from_slice(b",\"sessionCredentialFromConsole\":\"true\"");
        }
    }
    out.push(b'}');
    denied
}

/// `userIdentity`. Session keys and creation dates change every hour, as real sessions do.
fn write_identity(out: &mut Vec<u8>, p: &Principal, account: &str, time: i64, console: bool) {
    let session_start = time - time.rem_euclid(3600);
    let session_key = |out: &mut Vec<u8>| {
        out.extend_from_slice(p.access_key.as_bytes());
        let mut hour = (session_start / 3600) as u64;
        for _ in 0..4 {
            out.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(hour % 32) as usize]);
            hour /= 32;
        }
    };
    let attributes = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"\"webIdFederationData\":{},\"attributes\":{\"creationDate\":\"");
        push_iso(out, session_start);
        out.extend_from_slice(b"\",\"mfaAuthenticated\":\"");
        out.extend_from_slice(if p.mfa { b"true" } else { b"false" });
        out.extend_from_slice(b"\"}}");
    };
    let common = |out: &mut Vec<u8>, kind: &str| {
        out.extend_from_slice(b"{");
        push_field(out, "type", kind);
        out.push(b',');
        push_field(out, "principalId", &p.principal_id);
        out.push(b',');
        push_field(out, "arn", &p.arn);
        out.push(b',');
        push_field(out, "accountId", account);
        out.extend_from_slice(b",\"accessKeyId\":\"");
    };
    match p.kind {
        IdentityKind::AwsService => {
            out.extend_from_slice(b"{\"type\":\"AWSService\",");
            push_field(out, "invokedBy", p.invoked_by);
            out.push(b'}');
        }
        IdentityKind::IamUser => {
            common(out, "IAMUser");
            if console {
                session_key(out);
            } else {
                out.extend_from_slice(p.access_key.as_bytes());
            }
            out.extend_from_slice(b"\",");
            push_field(out, "userName", &p.user_name);
            if console {
                out.extend_from_slice(b",\"sessionContext\":{\"sessionIssuer\":{},");
                attributes(out);
            }
            out.push(b'}');
        }
        IdentityKind::Root => {
            common(out, "Root");
            session_key(out);
            out.extend_from_slice(b"\",\"sessionContext\":{\"sessionIssuer\":{},");
            attributes(out);
            out.push(b'}');
        }
        IdentityKind::AssumedRole | IdentityKind::FederatedUser => {
            common(out, if p.kind == IdentityKind::AssumedRole { "AssumedRole" } else { "FederatedUser" });
            session_key(out);
            out.extend_from_slice(b"\",\"sessionContext\":{\"sessionIssuer\":{");
            if let Some(issuer) = &p.issuer {
                push_field(out, "type", issuer.kind);
                out.push(b',');
                push_field(out, "principalId", &issuer.principal_id);
                out.push(b',');
                push_field(out, "arn", &issuer.arn);
                out.push(b',');
                push_field(out, "accountId", account);
                out.push(b',');
                push_field(out, "userName", &issuer.user_name);
            }
            out.extend_from_slice(b"},");
            attributes(out);
            out.push(b'}');
        }
    }
}

/// `sourceIPAddress`, and whether the call came through a VPC endpoint.
fn source_address(rng: &mut ChaCha8Rng, call: &Call<'_>) -> (String, bool) {
    let p = call.principal;
    match p.persona {
        Persona::Service => (p.invoked_by.to_string(), false),
        Persona::Workload | Persona::Pipeline => {
            let roll: f64 = rng.random();
            if roll < 0.08 {
                // Through an interface endpoint: the caller's private address is what CloudTrail sees.
                let octet = call.account.vpcs.iter().find(|v| v.region == call.region_index).map_or(0, |v| v.octet);
                (format!("10.{octet}.{}.{}", rng.random_range(16..48u8), rng.random_range(4..250u8)), true)
            } else if roll < 0.12 || p.user_name == "GitHubActions" {
                (public_ip(rng, &AWS_OCTETS).to_string(), false)
            } else {
                (call.account.nat_ips[call.region_index].to_string(), false)
            }
        }
        _ => {
            let ip = p.home_ips.get(rng.random_range(0..p.home_ips.len().max(1))).copied();
            (ip.map_or_else(|| public_ip(rng, &AWS_OCTETS).to_string(), |ip| ip.to_string()), false)
        }
    }
}

fn user_agent(rng: &mut ChaCha8Rng, call: &Call<'_>, is_login: bool) -> &'static str {
    let p = call.principal;
    match p.persona {
        Persona::Service => p.invoked_by,
        Persona::ConsoleHuman | Persona::Root => {
            if is_login || rng.random_bool(0.6) {
                // A person keeps one browser.
                BROWSERS[p.principal_id.len() % BROWSERS.len()]
            } else {
                "AWS Internal"
            }
        }
        Persona::CliHuman => {
            if rng.random_bool(0.75) {
                AWS_CLI
            } else {
                SDK_AGENTS[0]
            }
        }
        Persona::Workload => SDK_AGENTS[p.principal_id.len() % SDK_AGENTS.len()],
        Persona::Pipeline => {
            if p.user_name.starts_with("terraform") {
                TERRAFORM
            } else {
                AWS_CLI
            }
        }
    }
}

/// `errorCode` and `errorMessage`; returns whether the error is an access-denied one.
fn write_error(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, call: &Call<'_>) -> bool {
    let spec = call.spec;
    let service = spec.source.split('.').next().unwrap_or("");
    let (code, message): (&str, String) = if matches!(spec.detail, Detail::ConsoleLogin) {
        // Failed sign-ins carry only a message.
        out.extend_from_slice(b"\"errorMessage\":\"Failed authentication\",");
        return false;
    } else if spec.read_only && rng.random_bool(0.3) {
        if service == "ec2" {
            ("Client.RequestLimitExceeded", "Request limit exceeded.".to_string())
        } else {
            ("ThrottlingException", "Rate exceeded".to_string())
        }
    } else if spec.name == "GetObject" && rng.random_bool(0.4) {
        ("NoSuchKey", "The specified key does not exist.".to_string())
    } else if !call.may_deny {
        if service == "ec2" {
            ("Client.RequestLimitExceeded", "Request limit exceeded.".to_string())
        } else {
            ("ThrottlingException", "Rate exceeded".to_string())
        }
    } else if service == "s3" {
        ("AccessDenied", "Access Denied".to_string())
    } else if service == "ec2" {
        (
            "Client.UnauthorizedOperation",
            format!(
                "You are not authorized to perform this operation. User: {} is not authorized to perform: ec2:{} because no identity-based policy allows the ec2:{} action",
                call.principal.arn, spec.name, spec.name
            ),
        )
    } else {
        (
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: {service}:{} because no identity-based policy allows the {service}:{} action",
                call.principal.arn, spec.name, spec.name
            ),
        )
    };
    push_field(out, "errorCode", code);
    out.push(b',');
    push_field(out, "errorMessage", &message);
    out.push(b',');
    code.contains("AccessDenied") || code.contains("Unauthorized")
}

/// The host name the client connected to.
fn write_host(out: &mut Vec<u8>, call: &Call<'_>) {
    let service = call.spec.source.split('.').next().unwrap_or("");
    out.extend_from_slice(service.as_bytes());
    if !call.spec.global {
        out.push(b'.');
        out.extend_from_slice(call.region.as_bytes());
    }
    out.extend_from_slice(b".amazonaws.com");
}

/// `requestParameters`, `responseElements` and `additionalEventData` (each followed by a comma),
/// and the record's `resources` into `resources`. Returns the virtual-hosted bucket host name for
/// S3 calls on a bucket, which is what their clients connect to.
fn write_detail(
    out: &mut Vec<u8>,
    resources: &mut Vec<u8>,
    rng: &mut ChaCha8Rng,
    call: &Call<'_>,
    failed: bool,
) -> Option<String> {
    let Call { account, region, principal, spec, time, .. } = *call;
    let acct = account.id.as_str();
    let params = |out: &mut Vec<u8>, json: &str| {
        out.extend_from_slice(b"\"requestParameters\":");
        out.extend_from_slice(json.as_bytes());
        out.push(b',');
    };
    // Failed calls return nothing.
    let response = |out: &mut Vec<u8>, json: &str| {
        out.extend_from_slice(b"\"responseElements\":");
        out.extend_from_slice(if failed { b"null" } else { json.as_bytes() });
        out.push(b',');
    };
    let resource = |resources: &mut Vec<u8>, account: Option<&str>, kind: &str, arn: &str| {
        if !resources.is_empty() {
            resources.push(b',');
        }
        resources.push(b'{');
        if let Some(account) = account {
            push_field(resources, "accountId", account);
            resources.push(b',');
        }
        push_field(resources, "type", kind);
        resources.push(b',');
        push_field(resources, "ARN", arn);
        resources.push(b'}');
    };
    let bucket = pick(rng, &account.buckets).as_str();
    let function = pick(rng, &account.functions).as_str();
    let key_arn = || format!("arn:aws:kms:{region}:{acct}:key/{}", account.kms_keys[call.region_index]);
    let bucket_host = matches!(
        spec.detail,
        Detail::S3Object
            | Detail::Bucket
            | Detail::DeleteObjects
            | Detail::PutBucketLifecycle
            | Detail::PutBucketPolicy
    )
    .then(|| format!("{bucket}.s3.{region}.amazonaws.com"));
    match spec.detail {
        Detail::Plain => {
            params(out, "null");
            response(out, "null");
        }
        Detail::Static(json) => {
            params(out, json);
            response(out, "null");
        }
        Detail::AssumeRole => {
            let role = pick(rng, &account.roles);
            let session = if principal.kind == IdentityKind::AwsService {
                format!("{}", time * 1000 + rng.random_range(0..1000))
            } else if principal.user_name.is_empty() {
                "session".to_string()
            } else {
                principal.user_name.clone()
            };
            let role_arn = format!("arn:aws:iam::{acct}:role/{role}");
            let duration = if rng.random_bool(0.3) { ",\"durationSeconds\":3600" } else { "" };
            params(out, &format!(r#"{{"roleArn":"{role_arn}","roleSessionName":"{session}"{duration}}}"#));
            let token = random_id(rng, Alphabet::Alnum, 80);
            let role_id = random_id(rng, Alphabet::UpperAlnum, 17);
            response(
                out,
                &format!(
                    r#"{{"credentials":{{"accessKeyId":"ASIA{key}","sessionToken":"IQoJb3JpZ2luX2VjE{token}","expiration":"{exp}"}},"assumedRoleUser":{{"assumedRoleId":"AROA{role_id}:{session}","arn":"arn:aws:sts::{acct}:assumed-role/{role}/{session}"}}}}"#,
                    key = random_id(rng, Alphabet::UpperAlnum, 16),
                    exp = sts_expiration(time + 3600),
                ),
            );
            resource(resources, Some(acct), "AWS::IAM::Role", &role_arn);
        }
        Detail::S3Object => {
            let key = format!(
                "{}/{}/{}.{}",
                pick(rng, &OBJECT_PREFIXES),
                &iso(time)[..10],
                random_id(rng, Alphabet::LowerAlnum, 12),
                pick(rng, &OBJECT_EXTENSIONS)
            );
            params(
                out,
                &format!(r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"{key}"}}"#),
            );
            let put = spec.name == "PutObject";
            response(out, if put { r#"{"x-amz-server-side-encryption":"aws:kms"}"# } else { "null" });
            let size = rng.random_range(200..5_000_000u64);
            // A delete moves no object bytes either way.
            let (bytes_in, bytes_out) = if put {
                (size, 0)
            } else if spec.name == "DeleteObject" || failed {
                (0, 0)
            } else {
                (0, size)
            };
            out.extend_from_slice(b"\"additionalEventData\":{\"SignatureVersion\":\"SigV4\",\"CipherSuite\":\"TLS_AES_128_GCM_SHA256\",\"bytesTransferredIn\":");
            push_u64(out, bytes_in);
            out.extend_from_slice(b",\"AuthenticationMethod\":\"AuthHeader\",\"x-amz-id-2\":\"");
            out.extend_from_slice(random_id(rng, Alphabet::Alnum, 56).as_bytes());
            out.extend_from_slice(b"\",\"bytesTransferredOut\":");
            push_u64(out, bytes_out);
            out.extend_from_slice(b"},");
            resource(resources, None, "AWS::S3::Object", &format!("arn:aws:s3:::{bucket}/{key}"));
            resource(resources, Some(acct), "AWS::S3::Bucket", &format!("arn:aws:s3:::{bucket}"));
        }
        Detail::Bucket => {
            params(
                out,
                &format!(r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","acl":""}}"#),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::S3::Bucket", &format!("arn:aws:s3:::{bucket}"));
        }
        Detail::RoleName => {
            params(out, &format!(r#"{{"roleName":"{}"}}"#, pick(rng, &account.roles)));
            response(out, "null");
        }
        Detail::CreateAccessKey => {
            let user =
                if principal.kind == IdentityKind::IamUser { principal.user_name.as_str() } else { "svc-backup" };
            params(out, &format!(r#"{{"userName":"{user}"}}"#));
            response(
                out,
                &format!(
                    r#"{{"accessKey":{{"accessKeyId":"AKIA{}","status":"Active","userName":"{user}","createDate":"{}"}}}}"#,
                    random_id(rng, Alphabet::UpperAlnum, 16),
                    sts_expiration(time)
                ),
            );
        }
        Detail::Decrypt => {
            params(
                out,
                &format!(
                    r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::{bucket}/{}"}}}}"#,
                    random_id(rng, Alphabet::LowerAlnum, 12)
                ),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::KMS::Key", &key_arn());
        }
        Detail::GenerateDataKey => {
            let key = key_arn();
            params(
                out,
                &format!(
                    r#"{{"keyId":"{key}","encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::{bucket}"}},"keySpec":"AES_256"}}"#
                ),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::KMS::Key", &key);
        }
        Detail::ConsoleLogin => {
            params(out, "null");
            out.extend_from_slice(b"\"responseElements\":{\"ConsoleLogin\":\"");
            out.extend_from_slice(if failed { b"Failure" } else { b"Success" });
            out.extend_from_slice(b"\"},\"additionalEventData\":{\"LoginTo\":\"https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true\",\"MobileVersion\":\"No\",\"MFAUsed\":\"");
            out.extend_from_slice(if principal.mfa { b"Yes" } else { b"No" });
            out.extend_from_slice(b"\"},");
        }
        Detail::Invoke => {
            let arn = format!("arn:aws:lambda:{region}:{acct}:function:{function}");
            params(out, &format!(r#"{{"functionName":"{arn}","invocationType":"Event"}}"#));
            response(out, "null");
            out.extend_from_slice(b"\"additionalEventData\":{\"functionVersion\":\"");
            out.extend_from_slice(arn.as_bytes());
            out.extend_from_slice(b":$LATEST\"},");
            resource(resources, Some(acct), "AWS::Lambda::Function", &arn);
        }
        Detail::UpdateFunction => {
            params(out, &format!(r#"{{"functionName":"{function}","publish":true,"dryRun":false}}"#));
            response(
                out,
                &format!(
                    r#"{{"functionName":"{function}","functionArn":"arn:aws:lambda:{region}:{acct}:function:{function}","runtime":"python3.12","role":"arn:aws:iam::{acct}:role/{function}-role","handler":"app.handler","codeSize":{size},"description":"","timeout":30,"memorySize":256,"lastModified":"{modified}","codeSha256":"{sha}=","version":"$LATEST","tracingConfig":{{"mode":"PassThrough"}},"revisionId":"{revision}","state":"Active","lastUpdateStatus":"InProgress","packageType":"Zip","architectures":["arm64"]}}"#,
                    size = rng.random_range(2_000..40_000_000u32),
                    modified = iso(time),
                    sha = random_id(rng, Alphabet::Alnum, 43),
                    revision = uuid(rng),
                ),
            );
        }
        Detail::LookupEvents => {
            let name = pick(rng, &["ConsoleLogin", "CreateAccessKey", "RunInstances", "AssumeRole"]);
            params(
                out,
                &format!(
                    r#"{{"lookupAttributes":[{{"attributeKey":"EventName","attributeValue":"{name}"}}],"maxResults":50}}"#
                ),
            );
            response(out, "null");
        }
        Detail::LogStream => {
            params(
                out,
                &format!(
                    r#"{{"logGroupName":"/aws/lambda/{function}","logStreamName":"{}/[$LATEST]{}"}}"#,
                    &iso(time)[..10].replace('-', "/"),
                    random_id(rng, Alphabet::Hex, 32)
                ),
            );
            response(out, "null");
        }
        Detail::Secret => {
            params(
                out,
                &format!(
                    r#"{{"secretId":"arn:aws:secretsmanager:{region}:{acct}:secret:{function}/db-credentials-{}"}}"#,
                    random_id(rng, Alphabet::Alnum, 6)
                ),
            );
            response(out, "null");
        }
        Detail::Parameter => {
            params(out, &format!(r#"{{"name":"/{function}/config/db-host","withDecryption":true}}"#));
            response(out, "null");
        }
        Detail::CreateTags => {
            params(
                out,
                &format!(
                    r#"{{"resourcesSet":{{"items":[{{"resourceId":"i-{}"}}]}},"tagSet":{{"items":[{{"key":"Owner","value":"platform"}}]}}}}"#,
                    random_id(rng, Alphabet::Hex, 17)
                ),
            );
            response(out, &format!(r#"{{"requestId":"{}","_return":true}}"#, uuid(rng)));
        }
        Detail::RunInstances => {
            let image = random_id(rng, Alphabet::Hex, 17);
            params(
                out,
                &format!(
                    r#"{{"instancesSet":{{"items":[{{"imageId":"ami-{image}","minCount":1,"maxCount":1}}]}},"instanceType":"t3.micro","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"disableApiStop":false,"clientToken":"{}"}}"#,
                    uuid(rng)
                ),
            );
            response(
                out,
                &format!(
                    r#"{{"requestId":"{}","reservationId":"r-{}","ownerId":"{acct}","groupSet":{{}},"instancesSet":{{"items":[{{"instanceId":"i-{}","imageId":"ami-{image}","instanceState":{{"code":0,"name":"pending"}},"instanceType":"t3.micro","launchTime":{}}}]}}}}"#,
                    uuid(rng),
                    random_id(rng, Alphabet::Hex, 17),
                    random_id(rng, Alphabet::Hex, 17),
                    time * 1000
                ),
            );
        }
        Detail::AuthorizeIngress => {
            let port = *pick(rng, &[22u16, 3389, 443, 5432]);
            // The benign background opens only HTTPS to the world; admin and database ports are
            // opened to the VPC range. (The world-open admin port is an attack the detections catch.)
            let cidr = if port == 443 { "0.0.0.0/0" } else { "10.0.0.0/8" };
            params(
                out,
                &format!(
                    r#"{{"groupId":"sg-{}","ipPermissions":{{"items":[{{"ipProtocol":"tcp","fromPort":{port},"toPort":{port},"groups":{{}},"ipRanges":{{"items":[{{"cidrIp":"{cidr}"}}]}},"ipv6Ranges":{{}},"prefixListIds":{{}}}}]}}}}"#,
                    random_id(rng, Alphabet::Hex, 17)
                ),
            );
            response(out, &format!(r#"{{"requestId":"{}","_return":true}}"#, uuid(rng)));
        }
        Detail::SendCommand => {
            let instance = own_instance(principal);
            params(
                out,
                &format!(
                    r#"{{"instanceIds":["{instance}"],"documentName":"AWS-RunShellScript","parameters":"HIDDEN_DUE_TO_SECURITY_REASONS","interactive":false}}"#
                ),
            );
            response(
                out,
                &format!(
                    r#"{{"command":{{"commandId":"{}","documentName":"AWS-RunShellScript","instanceIds":["{instance}"],"targets":[],"status":"Pending","maxConcurrency":"50","maxErrors":"0"}}}}"#,
                    uuid(rng)
                ),
            );
        }
        Detail::StartSession => {
            let who = if principal.user_name.is_empty() { "session" } else { principal.user_name.as_str() };
            let session = format!("{who}-{}", random_id(rng, Alphabet::Hex, 17));
            params(out, &format!(r#"{{"target":"{}"}}"#, own_instance(principal)));
            response(
                out,
                &format!(
                    r#"{{"sessionId":"{session}","tokenValue":"Value hidden due to security reasons.","streamUrl":"wss://ssmmessages.{region}.amazonaws.com/v1/data-channel/{session}?role=publish_subscribe"}}"#
                ),
            );
        }
        Detail::DeleteObjects => {
            params(
                out,
                &format!(r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","delete":""}}"#),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::S3::Bucket", &format!("arn:aws:s3:::{bucket}"));
        }
        Detail::ModifyDbInstance => {
            let db = format!("{function}-db");
            let days = *pick(rng, &[7u32, 14, 35]);
            params(
                out,
                &format!(
                    r#"{{"dBInstanceIdentifier":"{db}","backupRetentionPeriod":{days},"applyImmediately":false}}"#
                ),
            );
            response(
                out,
                &format!(
                    r#"{{"dBInstanceIdentifier":"{db}","dBInstanceClass":"db.r6g.large","engine":"postgres","dBInstanceStatus":"available","backupRetentionPeriod":{days},"publiclyAccessible":false,"dBInstanceArn":"arn:aws:rds:{region}:{acct}:db:{db}"}}"#
                ),
            );
        }
        Detail::DbSnapshot => {
            let db = format!("{function}-db");
            let snapshot = format!("{db}-{}", &iso(time)[..10]);
            params(out, &format!(r#"{{"dBSnapshotIdentifier":"{snapshot}","dBInstanceIdentifier":"{db}"}}"#));
            response(
                out,
                &format!(
                    r#"{{"dBSnapshotIdentifier":"{snapshot}","dBInstanceIdentifier":"{db}","status":"creating","snapshotType":"manual","dBSnapshotArn":"arn:aws:rds:{region}:{acct}:snapshot:{snapshot}"}}"#
                ),
            );
        }
        Detail::ShareSnapshot => {
            let snapshot = random_id(rng, Alphabet::Hex, 17);
            let change = if call.sibling == acct { "remove" } else { "add" };
            params(
                out,
                &format!(
                    r#"{{"snapshotId":"snap-{snapshot}","createVolumePermission":{{"{change}":{{"items":[{{"userId":"{}"}}]}}}},"attributeType":"CREATE_VOLUME_PERMISSION"}}"#,
                    call.sibling
                ),
            );
            response(out, &format!(r#"{{"requestId":"{}","_return":true}}"#, uuid(rng)));
        }
        Detail::CreateRole => {
            let role = format!("{function}-exec-{}", random_id(rng, Alphabet::LowerAlnum, 6));
            // The trust policy is a JSON document inside a string, as IAM records it.
            let trusted = if rng.random_bool(0.5) {
                r#"{\"Service\":\"lambda.amazonaws.com\"}"#.to_string()
            } else {
                format!(r#"{{\"AWS\":\"arn:aws:iam::{acct}:root\"}}"#)
            };
            params(
                out,
                &format!(
                    r#"{{"roleName":"{role}","assumeRolePolicyDocument":"{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{trusted},\"Action\":\"sts:AssumeRole\"}}]}}"}}"#
                ),
            );
            response(
                out,
                &format!(
                    r#"{{"role":{{"path":"/","roleName":"{role}","roleId":"AROA{}","arn":"arn:aws:iam::{acct}:role/{role}","createDate":"{}"}}}}"#,
                    random_id(rng, Alphabet::UpperAlnum, 17),
                    sts_expiration(time)
                ),
            );
        }
        Detail::ModifyInstanceAttribute => {
            params(
                out,
                &format!(
                    r#"{{"instanceId":"i-{}","instanceType":{{"value":"{}"}}}}"#,
                    random_id(rng, Alphabet::Hex, 17),
                    pick(rng, &["m6i.large", "c6g.xlarge", "t3.medium"])
                ),
            );
            response(out, &format!(r#"{{"requestId":"{}","_return":true}}"#, uuid(rng)));
        }
        Detail::AddPermission => {
            params(
                out,
                &format!(
                    r#"{{"functionName":"{function}","statementId":"s3-notify","action":"lambda:InvokeFunction","principal":"s3.amazonaws.com","sourceArn":"arn:aws:s3:::{bucket}","sourceAccount":"{acct}"}}"#
                ),
            );
            response(
                out,
                &format!(
                    r#"{{"statement":"{{\"Sid\":\"s3-notify\",\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"s3.amazonaws.com\"}},\"Action\":\"lambda:InvokeFunction\",\"Resource\":\"arn:aws:lambda:{region}:{acct}:function:{function}\",\"Condition\":{{\"StringEquals\":{{\"AWS:SourceAccount\":\"{acct}\"}},\"ArnLike\":{{\"AWS:SourceArn\":\"arn:aws:s3:::{bucket}\"}}}}}}"}}"#
                ),
            );
        }
        Detail::PutBucketLifecycle => {
            params(
                out,
                &format!(
                    r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","lifecycle":"","LifecycleConfiguration":{{"xmlns":"http://s3.amazonaws.com/doc/2006-03-01/","Rule":{{"ID":"expire-tmp","Filter":{{"Prefix":"tmp/"}},"Status":"Enabled","Expiration":{{"Days":30}}}}}}}}"#
                ),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::S3::Bucket", &format!("arn:aws:s3:::{bucket}"));
        }
        Detail::PutBucketPolicy => {
            let readers = if call.sibling == acct {
                format!(r#""arn:aws:iam::{acct}:role/{function}-role""#)
            } else {
                format!(r#"["arn:aws:iam::{acct}:role/{function}-role","arn:aws:iam::{}:root"]"#, call.sibling)
            };
            params(
                out,
                &format!(
                    r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","policy":"","bucketPolicy":{{"Version":"2012-10-17","Statement":[{{"Sid":"ReadersInTheOrg","Effect":"Allow","Principal":{{"AWS":{readers}}},"Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}}}"#
                ),
            );
            response(out, "null");
            resource(resources, Some(acct), "AWS::S3::Bucket", &format!("arn:aws:s3:::{bucket}"));
        }
    }
    bucket_host
}

/// The instance a principal works on: operators reach their own box with SSM, not the fleet.
fn own_instance(principal: &Principal) -> String {
    format!("i-0{:016x}", fnv(&principal.arn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_persona_has_regional_calls() {
        // A non-us-east-1 file must still find something for every persona to do.
        for persona in PERSONAS {
            let mix = Catalog::new(false);
            let table = &mix.tables[persona_slot(persona) * 2];
            assert!(table.items().iter().any(|spec| !spec.global), "{persona:?}");
        }
    }
}
