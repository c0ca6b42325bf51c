//! The S3 side of ingestion: reading source objects and listing an archive prefix.
//!
//! bunker only ever reads the source bucket (`s3:GetObject`, `s3:ListBucket`); SSE-KMS objects are
//! decrypted by S3 on the way out, so the only extra permission is `kms:Decrypt` through S3.
//! Object bodies are read as a stream with a cap, so a huge object fails early instead of filling
//! memory, whatever its `Content-Length` claims.
//!
//! Listing for a backfill walks the AWS key layout (`AWSLogs/[o-org/]<account>/<service>/<region or
//! vpc>/YYYY/MM/DD/`) with `/` as the delimiter, and once it reaches the year level it lists only the
//! day prefixes inside the requested date range — months of an archive are not listed to read a week.
//!
//! The S3 and SQS clients are built here too: with a limit on each attempt of a call (the SDK has
//! none of its own) and with their retries counted in the metrics.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use chrono::{Datelike, NaiveDate};

use crate::classify::ObjectRef;
use crate::{IngestError, Result};

/// How deep the date-aware listing descends looking for the year level before listing everything.
const MAX_LAYOUT_DEPTH: usize = 8;

/// How long one attempt of an S3 or SQS call may take, up to its response head, by default.
///
/// The SDK sets no such limit: a connection that goes silent (a black-holed peer, a stuck
/// middlebox) would hold the call — and the message it works for — for ever, its visibility
/// extended all the while. An attempt that times out is retried like any transient failure. It
/// must exceed the long-poll wait (at most 20 s); bodies are streamed after the head and are
/// guarded by the SDK's stalled-stream protection instead.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the AWS configuration the standard way (environment, profile, SSO, web identity, ECS and
/// instance roles), with an optional endpoint for S3-compatible stores and emulators, and
/// `request_timeout` as the limit on each attempt of a call (see [`DEFAULT_REQUEST_TIMEOUT`]).
pub async fn load_aws_config(endpoint_url: Option<&str>, request_timeout: Duration) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder().operation_attempt_timeout(request_timeout).build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .timeout_config(timeouts);
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// An S3 client for the source bucket; path-style addressing when a custom endpoint is set, since
/// emulators and most S3-compatible stores do not resolve bucket sub-domains. Its retries are
/// counted in `bunker_aws_retries_total{service="s3"}`.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .interceptor(CountRetries { service: "s3" })
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// An SQS client for the worker's queue. Its retries are counted in
/// `bunker_aws_retries_total{service="sqs"}`.
pub fn sqs_client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let sqs_config = aws_sdk_sqs::config::Builder::from(config).interceptor(CountRetries { service: "sqs" }).build();
    aws_sdk_sqs::Client::from_conf(sqs_config)
}

/// Counts the attempts the SDK makes after the first one of a call (it retries throttling, 5xx,
/// timeouts and broken connections on its own, up to five attempts). Without this, the retries
/// that absorb most transient failures would be invisible: the call simply succeeds, later.
#[derive(Debug)]
struct CountRetries {
    service: &'static str,
}

/// Marks a call whose first attempt has started; it lives in the call's own configuration bag.
#[derive(Debug, Clone)]
struct AttemptStarted;

impl Storable for AttemptStarted {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if is_retry(cfg) {
            metrics::counter!("bunker_aws_retries_total", "service" => self.service).increment(1);
        }
        Ok(())
    }
}

/// Whether the attempt about to start is a retry of the call this bag belongs to (and records
/// that an attempt started).
fn is_retry(cfg: &mut ConfigBag) -> bool {
    let retry = cfg.load::<AttemptStarted>().is_some();
    cfg.interceptor_state().store_put(AttemptStarted);
    retry
}

/// Reads source objects from S3.
#[derive(Debug, Clone)]
pub struct S3Source {
    client: aws_sdk_s3::Client,
    max_object_bytes: u64,
}

impl S3Source {
    /// A source that refuses objects whose stored size exceeds `max_object_bytes`.
    pub fn new(client: aws_sdk_s3::Client, max_object_bytes: u64) -> S3Source {
        S3Source { client, max_object_bytes }
    }

    /// The object's stored bytes, read as a stream.
    pub async fn fetch(&self, object: &ObjectRef) -> Result<Vec<u8>> {
        let response = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| sdk_error(&object.id(), "GetObject", e))?;
        let announced = response.content_length().unwrap_or(0).max(0) as u64;
        if announced > self.max_object_bytes {
            return Err(IngestError::TooLarge { key: object.id(), limit_bytes: self.max_object_bytes });
        }
        let mut data = Vec::with_capacity(announced as usize);
        let mut body = response.body;
        while let Some(chunk) = body.try_next().await.map_err(|e| IngestError::Fetch {
            object: object.id(),
            operation: "GetObject",
            reason: format!("reading the body: {}", error_chain(&e)),
            transient: true,
        })? {
            if (data.len() + chunk.len()) as u64 > self.max_object_bytes {
                return Err(IngestError::TooLarge { key: object.id(), limit_bytes: self.max_object_bytes });
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    /// Every object under `prefix` in `bucket`; with a date range, only those under the day
    /// prefixes of the range (objects outside the dated layout are then left out).
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        dates: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Vec<ObjectRef>> {
        let mut objects = Vec::new();
        match dates {
            None => self.list_all(bucket, prefix, &mut objects).await?,
            Some(range) => {
                let mut stack = vec![(prefix.to_owned(), 0usize)];
                while let Some((prefix, depth)) = stack.pop() {
                    let (children, _) = self.list_level(bucket, &prefix).await?;
                    let years: Vec<i32> = children.iter().filter_map(|c| year_of(&prefix, c)).collect();
                    if !years.is_empty() {
                        for day in days(range).filter(|d| years.contains(&d.year())) {
                            let day_prefix = format!("{prefix}{:04}/{:02}/{:02}/", day.year(), day.month(), day.day());
                            self.list_all(bucket, &day_prefix, &mut objects).await?;
                        }
                    } else if depth >= MAX_LAYOUT_DEPTH {
                        self.list_all(bucket, &prefix, &mut objects).await?;
                    } else {
                        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
                    }
                }
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// The sub-prefixes and objects directly under `prefix`.
    async fn list_level(&self, bucket: &str, prefix: &str) -> Result<(Vec<String>, Vec<ObjectRef>)> {
        let mut prefixes = Vec::new();
        let mut objects = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(bucket).prefix(prefix).delimiter("/").into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(&format!("s3://{bucket}/{prefix}"), "ListObjectsV2", e))?;
            prefixes.extend(page.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
            objects.extend(page.contents().iter().filter_map(|o| object_ref(bucket, o)));
        }
        Ok((prefixes, objects))
    }

    async fn list_all(&self, bucket: &str, prefix: &str, out: &mut Vec<ObjectRef>) -> Result<()> {
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(&format!("s3://{bucket}/{prefix}"), "ListObjectsV2", e))?;
            out.extend(page.contents().iter().filter_map(|o| object_ref(bucket, o)));
        }
        Ok(())
    }
}

fn object_ref(bucket: &str, object: &aws_sdk_s3::types::Object) -> Option<ObjectRef> {
    let mut listed = ObjectRef::new(bucket, object.key()?, object.size().unwrap_or(0).max(0) as u64);
    listed.etag = object.e_tag().map(|e| crate::classify::normalized_etag(e).to_owned());
    Some(listed)
}

/// The year a child prefix names, when it is `<parent>YYYY/`.
fn year_of(parent: &str, child: &str) -> Option<i32> {
    let part = child.strip_prefix(parent)?.strip_suffix('/')?;
    (part.len() == 4 && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse().ok()).flatten()
}

fn days((since, until): (NaiveDate, NaiveDate)) -> impl Iterator<Item = NaiveDate> {
    since.iter_days().take_while(move |d| *d <= until)
}

/// Classifies an SDK error: only "the object or bucket is not there" is permanent. The reason is
/// S3's own code and message, not the whole response.
pub(crate) fn sdk_error<E>(object: &str, operation: &'static str, error: SdkError<E, HttpResponse>) -> IngestError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let (permanent, reason) = match &error {
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("error");
            let message = e.err().message().unwrap_or("");
            let status = e.raw().status().as_u16();
            (is_permanent(code), format!("{code}: {message} (HTTP {status})"))
        }
        other => (false, DisplayErrorContext(other).to_string()),
    };
    IngestError::Fetch { object: object.to_owned(), operation, reason, transient: !permanent }
}

/// Error codes that no retry will change for this object: it is gone, its key cannot exist, or it
/// was archived to a storage class GetObject cannot read. Access and KMS errors are not among them:
/// a fixed policy makes the retry succeed.
fn is_permanent(code: &str) -> bool {
    matches!(code, "NoSuchKey" | "NoSuchBucket" | "NotFound" | "KeyTooLongError" | "InvalidObjectState")
}

fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_second_and_later_attempts_of_a_call_count_as_retries() {
        let mut call = ConfigBag::base();
        assert!(!is_retry(&mut call));
        assert!(is_retry(&mut call));
        assert!(is_retry(&mut call));
        // Another call starts with a bag of its own.
        assert!(!is_retry(&mut ConfigBag::base()));
    }

    #[test]
    fn year_prefixes_are_recognised_only_as_four_digits() {
        assert_eq!(year_of("AWSLogs/1/CloudTrail/us-east-1/", "AWSLogs/1/CloudTrail/us-east-1/2025/"), Some(2025));
        assert_eq!(year_of("a/", "a/us-east-1/"), None);
        assert_eq!(year_of("a/", "a/20251/"), None);
        assert_eq!(year_of("a/", "b/2025/"), None);
    }

    #[test]
    fn a_date_range_yields_every_day_once() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let all: Vec<_> = days((d("2025-02-27"), d("2025-03-02"))).collect();
        assert_eq!(all, vec![d("2025-02-27"), d("2025-02-28"), d("2025-03-01"), d("2025-03-02")]);
        assert_eq!(days((d("2025-03-02"), d("2025-03-01"))).count(), 0);
    }
}
