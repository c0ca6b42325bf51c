//! What makes two reads the same AWS object, and the ledger of the objects a table holds.
//!
//! Exactly-once is promised for the *AWS object*, wherever it is read from: the worker reads
//! `s3://archive/AWSLogs/…`, a responder later ingests an `aws s3 sync` copy of the same objects
//! from `./copy`, or the same folder once as `archive/` and once as `archive/AWSLogs/`. Where an
//! object was read from says nothing about whether its rows are in the lake; what it *is* does:
//! - its **name**, the last segment of its key — AWS names every log file uniquely (account,
//!   service, region, time and a random part), and a synced or exported copy keeps the name even
//!   when the folders above it differ or are gone;
//! - its **size** and the **SHA-256 of its stored bytes**, so that a different object under the
//!   same name (rewritten, replaced, tampered with) is not mistaken for a copy.
//!
//! Each data commit records, beside the source ids it has always listed (`objects`), an identity
//! per object (`identities`: name, archive key, size, SHA-256 and, when read from S3, ETag) in its
//! `commitInfo`. The archive key (from `AWSLogs/` on) is kept for the people reading the log; it
//! does not decide anything, as a copy may sit under any folder.
//!
//! Before its bytes are read an object is known only by what a listing or a notification says:
//! name, size and ETag. A committed object of the same name, size and ETag is the same object
//! (S3 gives a different ETag to different content under one key), so the worker and the backfill
//! need not fetch it again; anything less certain is fetched, hashed and decided at commit.
//!
//! Lakes written before identities were recorded list only source ids. Their objects are held by
//! name alone ("legacy" entries): the same file name from any root is taken to be the same object,
//! which is right for an immutable archive and cannot tell a replaced object from a copy.

use std::collections::HashMap;

use crate::classify::ObjectRef;

/// An object's name: the last segment of its key.
pub fn object_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// An object's key from the `AWSLogs/` segment on, or the whole key outside that layout.
pub fn archive_key(key: &str) -> &str {
    if key.starts_with("AWSLogs/") {
        return key;
    }
    match key.find("/AWSLogs/") {
        Some(at) => &key[at + 1..],
        None => key,
    }
}

/// What a commit knows of one object it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// `None` for a legacy entry, which is held by name alone.
    fingerprint: Option<Fingerprint>,
    /// The version of the first commit holding it: the one with its rows.
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    size: u64,
    sha256: [u8; 32],
    etag: Option<String>,
}

/// A different object committed earlier under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The version whose commit holds the earlier object.
    pub version: u64,
    /// The earlier object's stored size.
    pub size: u64,
    /// The earlier object's SHA-256, in hex.
    pub sha256: String,
}

/// The objects some commit of a table holds, by name.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    by_name: HashMap<String, Vec<Held>>,
}

impl Ledger {
    /// Reads the objects a commit file (a `_delta_log` JSON entry) records under `info_key`, as
    /// held since `version`. Returns how many it found.
    pub(crate) fn read_commit(&mut self, bytes: &[u8], info_key: &str, version: u64) -> usize {
        let mut found = 0;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            let Some(record) = action.pointer(&format!("/commitInfo/{info_key}")) else { continue };
            if let Some(identities) = record.get("identities").and_then(|v| v.as_array()) {
                for identity in identities {
                    if let Some((name, fingerprint)) = parse_identity(identity) {
                        self.hold(name, fingerprint, version);
                        found += 1;
                    }
                }
            } else if let Some(objects) = record.get("objects").and_then(|v| v.as_array()) {
                // Written before identities were recorded: held by name alone.
                for id in objects.iter().filter_map(|o| o.as_str()) {
                    self.hold(object_name(id).to_owned(), None, version);
                    found += 1;
                }
            }
        }
        found
    }

    /// Records that the commit at `version` holds this object, whose bytes have been read.
    pub(crate) fn record(&mut self, object: &ObjectRef, version: u64) {
        match object.sha256 {
            Some(sha256) => {
                let fingerprint = Fingerprint { size: object.size, sha256, etag: object.etag.clone() };
                self.hold(object_name(&object.key).to_owned(), Some(fingerprint), version);
            }
            None => self.hold(object_name(&object.key).to_owned(), None, version),
        }
    }

    /// Adds what another ledger holds.
    pub fn merge(&mut self, other: &Ledger) {
        for (name, held) in &other.by_name {
            for h in held {
                self.hold(name.clone(), h.fingerprint.clone(), h.version);
            }
        }
    }

    fn hold(&mut self, name: String, fingerprint: Option<Fingerprint>, version: u64) {
        let held = self.by_name.entry(name).or_default();
        match held.iter_mut().find(|h| h.fingerprint == fingerprint) {
            // The first commit holding an object is the one with its rows.
            Some(h) => h.version = h.version.min(version),
            None => held.push(Held { fingerprint, version }),
        }
    }

    /// The version of the commit holding this object, if one does.
    ///
    /// With its bytes read (its SHA-256 known), an object is held when an entry of the same name
    /// has the same size and SHA-256, or is a legacy entry. Without them, when an entry of the same
    /// name has the same size and ETag, or is a legacy entry.
    pub fn holds(&self, object: &ObjectRef) -> Option<u64> {
        let held = self.by_name.get(object_name(&object.key))?;
        held.iter()
            .filter(|h| match (&h.fingerprint, object.sha256) {
                (None, _) => true,
                (Some(f), Some(sha256)) => f.size == object.size && f.sha256 == sha256,
                (Some(f), None) => {
                    f.size == object.size
                        && matches!((&f.etag, &object.etag), (Some(a), Some(b)) if !a.is_empty() && a == b)
                }
            })
            .map(|h| h.version)
            .min()
    }

    /// A different object committed earlier under this object's name, when the ledger holds one
    /// and not this object. Only objects whose bytes have been read can be told apart.
    pub fn replaced(&self, object: &ObjectRef) -> Option<Replaced> {
        object.sha256?;
        if self.holds(object).is_some() {
            return None;
        }
        let held = self.by_name.get(object_name(&object.key))?;
        held.iter()
            .filter_map(|h| Some((h.fingerprint.as_ref()?, h.version)))
            .min_by_key(|(_, v)| *v)
            .map(|(f, version)| Replaced { version, size: f.size, sha256: hex::encode(f.sha256) })
    }
}

/// The identity a commit records for an object whose bytes it read.
pub(crate) fn identity_record(object: &ObjectRef) -> serde_json::Value {
    let mut record = serde_json::json!({
        "name": object_name(&object.key),
        "key": archive_key(&object.key),
        "size": object.size,
    });
    if let Some(sha256) = object.sha256 {
        record["sha256"] = hex::encode(sha256).into();
    }
    if let Some(etag) = &object.etag {
        record["etag"] = etag.clone().into();
    }
    record
}

/// The name and fingerprint of a recorded identity; one without a SHA-256 (an object committed
/// without its bytes read, which the drivers never do) is held by name alone.
fn parse_identity(value: &serde_json::Value) -> Option<(String, Option<Fingerprint>)> {
    let name = value.get("name")?.as_str()?.to_owned();
    let fingerprint = (|| {
        let size = value.get("size")?.as_u64()?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(value.get("sha256")?.as_str()?, &mut sha256).ok()?;
        let etag = value.get("etag").and_then(|e| e.as_str()).map(str::to_owned);
        Some(Fingerprint { size, sha256, etag })
    })();
    Some((name, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str, bytes: &[u8], etag: Option<&str>) -> ObjectRef {
        let mut object = ObjectRef::new(bucket, key, bytes.len() as u64);
        object.etag = etag.map(str::to_owned);
        object
    }

    fn read(object: ObjectRef, bytes: &[u8]) -> ObjectRef {
        object.read_as(bytes)
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        read(ObjectRef::new("", "x", 0), bytes).sha256.expect("hashed")
    }

    fn commit_of(objects: &[&ObjectRef]) -> Vec<u8> {
        let ids: Vec<String> = objects.iter().map(|o| o.id()).collect();
        let identities: Vec<_> = objects.iter().map(|o| identity_record(o)).collect();
        let info = serde_json::json!({ "commitInfo": { "bunker": { "objects": ids, "identities": identities } } });
        format!("{{\"add\":{{}}}}\n{info}\n").into_bytes()
    }

    const KEY: &str = "AWSLogs/111122223333/CloudTrail/eu-west-1/2025/03/01/111122223333_CloudTrail_eu-west-1_20250301T0905Z_Ab1.json.gz";

    #[test]
    fn keys_and_names() {
        let cases = [
            (KEY, KEY, "111122223333_CloudTrail_eu-west-1_20250301T0905Z_Ab1.json.gz"),
            (
                "prefix/AWSLogs/o-abc/111122223333/CloudTrail/x.json.gz",
                "AWSLogs/o-abc/111122223333/CloudTrail/x.json.gz",
                "x.json.gz",
            ),
            ("111122223333/CloudTrail/y.json.gz", "111122223333/CloudTrail/y.json.gz", "y.json.gz"),
            ("z.json.gz", "z.json.gz", "z.json.gz"),
        ];
        for (key, archive, name) in cases {
            assert_eq!(archive_key(key), archive, "{key}");
            assert_eq!(object_name(key), name, "{key}");
        }
        assert_eq!(object_name("a/b/c.log.gz"), "c.log.gz");
        assert_eq!(
            crate::classify::normalized_etag("\"9b2cf535f27731c974343645a3985328\""),
            "9b2cf535f27731c974343645a3985328"
        );
    }

    /// The same bytes under the same name are one object from any bucket or folder; other bytes
    /// under that name are not, and are reported as replacing the earlier object.
    #[test]
    fn the_same_bytes_are_held_from_any_root_and_other_bytes_are_not() {
        let bytes = b"the stored bytes of one log file";
        let from_s3 = read(object("archive", KEY, bytes, Some("etag-1")), bytes);
        let mut ledger = Ledger::default();
        assert_eq!(ledger.read_commit(&commit_of(&[&from_s3]), "bunker", 7), 1);

        let copies = [
            object("", &KEY.replacen("AWSLogs/", "", 1), bytes, None),
            object("", &format!("copy/{KEY}"), bytes, None),
            object("other-bucket", &format!("x/{KEY}"), bytes, None),
            object("", object_name(KEY), bytes, None),
        ];
        for copy in copies {
            assert_eq!(ledger.holds(&copy), None, "unread and without an ETag, {} must be read first", copy.key);
            assert_eq!(ledger.holds(&read(copy.clone(), bytes)), Some(7), "{}", copy.key);
        }
        // Before reading: name, size and ETag.
        assert_eq!(ledger.holds(&object("archive", KEY, bytes, Some("etag-1"))), Some(7));
        assert_eq!(ledger.holds(&object("archive", KEY, bytes, Some("etag-2"))), None);

        let other = b"other bytes, of the same length!";
        assert_eq!(other.len(), bytes.len());
        let replaced = read(object("", KEY, other, None), other);
        assert_eq!(ledger.holds(&replaced), None);
        let earlier = ledger.replaced(&replaced).expect("a different object under the same name");
        assert_eq!(
            (earlier.version, earlier.size, earlier.sha256),
            (7, bytes.len() as u64, hex::encode(sha256(bytes)))
        );
        assert_eq!(ledger.replaced(&from_s3), None, "an object is not its own replacement");

        // Once committed as well, both are held, each at its own version.
        ledger.record(&replaced, 9);
        assert_eq!(ledger.holds(&replaced), Some(9));
        assert_eq!(ledger.holds(&from_s3), Some(7));
    }

    /// Commits written before identities were recorded hold their objects by name alone.
    #[test]
    fn legacy_commits_hold_by_name() {
        let legacy = br#"{"commitInfo":{"operation":"WRITE","bunker":{"objects":["s3://a/AWSLogs/1/CloudTrail/k1.json.gz","k2.json.gz"],"rows":3}}}"#;
        let mut ledger = Ledger::default();
        assert_eq!(ledger.read_commit(legacy, "bunker", 3), 2);
        assert_eq!(ledger.holds(&object("", "copy/1/CloudTrail/k1.json.gz", b"x", None)), Some(3));
        assert_eq!(ledger.holds(&read(object("", "elsewhere/k2.json.gz", b"y", None), b"y")), Some(3));
        assert_eq!(ledger.holds(&object("", "k3.json.gz", b"x", None)), None);
        assert_eq!(ledger.read_commit(br#"{"commitInfo":{"operation":"OPTIMIZE"}}"#, "bunker", 4), 0);
    }
}
