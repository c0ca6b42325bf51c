//! The files in a log archive that are not log records bunker ingests: CloudTrail digest files
//! (the integrity chain over the log files) and other AWS logs that share the bucket (an ALB
//! access log, an AWS Config snapshot). Ingest must recognise the first and skip the others.
//!
//! Digest hashes and signatures are random hex of the right length: bunker never validates them,
//! and computing real ones would need the private key AWS signs with.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::emit::{Alphabet, iso, push_field, push_iso, random_id, uuid};
use super::plan::{Digest, Foreign, WINDOW_SECS};
use super::world::{World, pick, public_ip};

/// Writes a digest file's JSON.
pub(crate) fn write_digest(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, world: &World, digest: &Digest) {
    let account = &world.accounts[digest.account];
    let bucket = world.bucket.as_str();
    out.push(b'{');
    push_field(out, "awsAccountId", &account.id);
    out.extend_from_slice(b",\"digestStartTime\":\"");
    push_iso(out, digest.start);
    out.extend_from_slice(b"\",\"digestEndTime\":\"");
    push_iso(out, digest.end);
    out.extend_from_slice(b"\",");
    push_field(out, "digestS3Bucket", bucket);
    out.push(b',');
    push_field(out, "digestS3Object", &digest.key);
    out.push(b',');
    push_field(out, "digestPublicKeyFingerprint", &random_id(rng, Alphabet::Hex, 32));
    out.extend_from_slice(b",\"digestSignatureAlgorithm\":\"SHA256withRSA\",");
    let newest = digest.log_files.iter().map(|(_, t)| *t).max();
    let oldest = digest.log_files.iter().map(|(_, t)| *t).min();
    let time_or_null = |out: &mut Vec<u8>, name: &str, t: Option<i64>| match t {
        Some(t) => push_field(out, name, &iso(t)),
        None => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":null");
        }
    };
    time_or_null(out, "newestEventTime", newest.map(|t| t + WINDOW_SECS - 1));
    out.push(b',');
    time_or_null(out, "oldestEventTime", oldest);
    out.push(b',');
    // The first digest of a chain has no predecessor.
    match &digest.previous {
        Some(previous) => {
            push_field(out, "previousDigestS3Bucket", bucket);
            out.push(b',');
            push_field(out, "previousDigestS3Object", previous);
            out.push(b',');
            push_field(out, "previousDigestHashValue", &random_id(rng, Alphabet::Hex, 64));
            out.extend_from_slice(b",\"previousDigestHashAlgorithm\":\"SHA-256\",");
            push_field(out, "previousDigestSignature", &random_id(rng, Alphabet::Hex, 512));
        }
        None => out.extend_from_slice(
            b"\"previousDigestS3Bucket\":null,\"previousDigestS3Object\":null,\"previousDigestHashValue\":null,\"previousDigestHashAlgorithm\":null,\"previousDigestSignature\":null",
        ),
    }
    out.extend_from_slice(b",\"logFiles\":[");
    for (i, (key, start)) in digest.log_files.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        push_field(out, "s3Bucket", bucket);
        out.push(b',');
        push_field(out, "s3Object", key);
        out.push(b',');
        push_field(out, "hashValue", &random_id(rng, Alphabet::Hex, 64));
        out.extend_from_slice(b",\"hashAlgorithm\":\"SHA-256\",");
        push_field(out, "newestEventTime", &iso(start + WINDOW_SECS - 1));
        out.push(b',');
        push_field(out, "oldestEventTime", &iso(*start));
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Writes the content of a file of another AWS log type.
pub(crate) fn write_foreign(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, world: &World, foreign: &Foreign) {
    match foreign {
        Foreign::AlbAccessLog { account, region, at, lb_id } => {
            let account = &world.accounts[*account];
            let region = &world.regions[*region].name;
            let vpc = &account.vpcs[0];
            for i in 0..rng.random_range(50..200) {
                let t = at - WINDOW_SECS + i;
                let status = *pick(rng, &[200u16, 200, 200, 200, 301, 304, 403, 404, 502]);
                let path = pick(rng, &["/", "/api/orders", "/api/orders/42", "/health", "/login", "/static/app.js"]);
                let target = pick(rng, &vpc.enis).ip;
                let line = format!(
                    "https {time}.{micros:06}Z app/web-alb/{lb_id} {client}:{cport} {target}:8080 0.001 0.{ms:03} 0.000 {status} {status} {rx} {tx} \"GET https://www.example.com:443{path} HTTP/1.1\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\" TLS_AES_128_GCM_SHA256 TLSv1.3 arn:aws:elasticloadbalancing:{region}:{acct}:targetgroup/web-tg/{tg} \"Root=1-{trace_time:08x}-{trace}\" \"www.example.com\" \"arn:aws:acm:{region}:{acct}:certificate/{cert}\" 1 {time}.000000Z \"forward\" \"-\" \"-\" \"{target}:8080\" \"{status}\" \"-\" \"-\" TID_{tid}\n",
                    time = &iso(t)[..19],
                    micros = rng.random_range(0..1_000_000u32),
                    client = public_ip(rng, &[24, 73, 81, 98, 176]),
                    cport = rng.random_range(32768..61000u16),
                    ms = rng.random_range(1..400u16),
                    rx = rng.random_range(200..2000u32),
                    tx = rng.random_range(200..90_000u32),
                    acct = account.id,
                    tg = random_id(rng, Alphabet::Hex, 16),
                    trace_time = t,
                    trace = random_id(rng, Alphabet::Hex, 24),
                    cert = uuid(rng),
                    tid = random_id(rng, Alphabet::Hex, 32),
                );
                out.extend_from_slice(line.as_bytes());
            }
        }
        Foreign::ConfigSnapshot { account, region, at } => {
            let account = &world.accounts[*account];
            let region = &world.regions[*region].name;
            out.extend_from_slice(b"{\"fileVersion\":\"1.0\",\"configSnapshotId\":\"");
            out.extend_from_slice(uuid(rng).as_bytes());
            out.extend_from_slice(b"\",\"configurationItems\":[");
            let instances: Vec<_> = account.vpcs[0].enis.iter().filter_map(|e| e.instance.as_ref()).collect();
            for (i, instance) in instances.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let item = format!(
                    r#"{{"configurationItemVersion":"1.3","configurationItemCaptureTime":"{time}","configurationStateId":{state},"awsAccountId":"{acct}","configurationItemStatus":"OK","resourceType":"AWS::EC2::Instance","resourceId":"{instance}","awsRegion":"{region}","availabilityZone":"{region}a","tags":{{"Name":"app-{i}"}},"relatedEvents":[],"relationships":[],"configuration":{{"instanceId":"{instance}","instanceType":"t3.large","state":{{"code":16,"name":"running"}}}},"supplementaryConfiguration":{{}}}}"#,
                    time = iso(at - 600 + i as i64),
                    state = at * 1000 + i as i64,
                    acct = account.id,
                );
                out.extend_from_slice(item.as_bytes());
            }
            out.extend_from_slice(b"]}");
        }
    }
}
