//! Where a lake lives: a local directory or an S3 prefix, and how to reach the latter.
//!
//! Both the writer (`ingest`) and the readers (`query`) take a location as the user typed it
//! (`./lake`, `/data/lake`, `s3://bucket/prefix`) and need the same answer, so it is decided here
//! once. Nothing here touches the file system or the network.

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;

/// A lake's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// A directory on local disk.
    Local(PathBuf),
    /// An S3 prefix, as `s3://bucket/prefix/` (always ending in `/`).
    S3(Url),
}

impl LakeLocation {
    /// Reads a location: `s3://bucket[/prefix]` is S3, anything else is a local path.
    pub fn parse(location: &str) -> Result<LakeLocation, String> {
        if location.is_empty() {
            return Err("the lake location is empty".into());
        }
        let Some(rest) = location.strip_prefix("s3://") else {
            if location.contains("://") {
                return Err(format!("{location}: only local paths and s3:// locations are supported"));
            }
            return Ok(LakeLocation::Local(PathBuf::from(location)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{location}: no bucket name"));
        }
        let prefix = prefix.trim_end_matches('/');
        // A prefix that climbs out of itself would let one lake's tables land in another's.
        if prefix.split('/').any(|part| part == ".." || part == ".") || prefix.contains("//") {
            return Err(format!("{location}: the prefix may not contain empty, `.` or `..` segments"));
        }
        let text = if prefix.is_empty() { format!("s3://{bucket}/") } else { format!("s3://{bucket}/{prefix}/") };
        let url = Url::parse(&text).map_err(|e| format!("{location}: {e}"))?;
        Ok(LakeLocation::S3(url))
    }

    /// Options for the Delta/object-store S3 client: the endpoint of an S3-compatible store (or
    /// emulator) when one is set, with plain HTTP allowed for a loopback endpoint. Credentials and
    /// region come from the standard AWS environment and are not repeated here.
    pub fn storage_options(&self, endpoint_url: Option<&str>) -> HashMap<String, String> {
        let mut options = HashMap::new();
        if let (LakeLocation::S3(_), Some(endpoint)) = (self, endpoint_url) {
            options.insert("aws_endpoint".to_owned(), endpoint.to_owned());
            if endpoint.starts_with("http://") {
                options.insert("aws_allow_http".to_owned(), "true".to_owned());
            }
            options.insert("aws_virtual_hosted_style_request".to_owned(), "false".to_owned());
        }
        options
    }
}

/// Checks a data file path as a table's Delta log names it (percent-decoded): it must be a relative
/// path inside the table. The Delta protocol also allows absolute URIs and readers resolve `..`, so
/// a forged log entry could otherwise make a reader of the lake (`bunker serve` included) read any
/// file or bucket its credentials reach.
pub fn check_data_file_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("data file path {:?} {why}", path.chars().take(200).collect::<String>()));
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return refuse("is absolute; a table's files are inside the table");
    }
    if Url::parse(path).is_ok() || path.contains("://") {
        return refuse("is a URI; a table's files are inside the table");
    }
    // URL resolution treats `%2e` as a dot too, and Windows paths use `\`.
    let climbs = path.split(['/', '\\']).any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == ".."
    });
    if climbs {
        return refuse("climbs out of the table with `..`");
    }
    if path.chars().any(char::is_control) {
        return refuse("holds control characters");
    }
    Ok(())
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeLocation::Local(path) => write!(f, "{}", path.display()),
            LakeLocation::S3(url) => write!(f, "{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_read_as_local_or_s3() {
        assert_eq!(LakeLocation::parse("lake").expect("local"), LakeLocation::Local("lake".into()));
        let s3 = LakeLocation::parse("s3://archive-lake/bunker").expect("s3");
        assert_eq!(s3.to_string(), "s3://archive-lake/bunker/");
        assert_eq!(LakeLocation::parse("s3://archive-lake").expect("s3").to_string(), "s3://archive-lake/");
        assert_eq!(LakeLocation::parse("s3://archive-lake/a/b/").expect("s3").to_string(), "s3://archive-lake/a/b/");
    }

    #[test]
    fn bad_locations_are_refused_with_a_reason() {
        assert!(LakeLocation::parse("").is_err());
        assert!(LakeLocation::parse("s3://").expect_err("no bucket").contains("no bucket"));
        assert!(LakeLocation::parse("s3://b/../other").expect_err("escape").contains(".."));
        assert!(LakeLocation::parse("s3://b/a//c").is_err());
        assert!(LakeLocation::parse("gs://b/a").expect_err("scheme").contains("only local paths"));
    }

    #[test]
    fn data_file_paths_stay_inside_their_table() {
        for good in ["date=2025-03-03/part-00000-67ef2978-c000.zstd.parquet", "part-0.parquet", "a/./b.parquet"] {
            assert_eq!(check_data_file_path(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("../../outside/x.parquet", ".."),
            ("date=2025-03-03/../../../etc/x.parquet", ".."),
            ("date=2025-03-03/%2E%2e/%2e./x.parquet", ".."),
            ("a\\..\\..\\x.parquet", ".."),
            ("/etc/passwd", "absolute"),
            ("file:///tmp/x.parquet", "URI"),
            ("s3://other-bucket/secrets.parquet", "URI"),
            ("c:/x.parquet", "URI"),
            ("date=2025-03-03/x\n.parquet", "control"),
        ] {
            let reason = check_data_file_path(bad).expect_err(bad);
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }

    #[test]
    fn endpoint_options_only_for_s3() {
        let s3 = LakeLocation::parse("s3://b/p").expect("s3");
        let options = s3.storage_options(Some("http://127.0.0.1:5000"));
        assert_eq!(options.get("aws_endpoint").map(String::as_str), Some("http://127.0.0.1:5000"));
        assert_eq!(options.get("aws_allow_http").map(String::as_str), Some("true"));
        assert!(s3.storage_options(None).is_empty());
        assert!(LakeLocation::Local("x".into()).storage_options(Some("http://h")).is_empty());
    }
}
