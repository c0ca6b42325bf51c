//! A fault-injecting HTTP/1.1 proxy between the `bunker` process under test and `moto_server`.
//!
//! The worker is pointed at the proxy (`AWS_ENDPOINT_URL`), so every S3 call (source `GetObject`,
//! the lake's puts, gets and listings, the conditional put of each Delta commit) and every SQS call
//! goes through it. For each request the proxy decides whether to inject a fault, at the rates of a
//! [`FaultMix`]:
//! - refused before reaching moto: `500 InternalError`, `503 SlowDown`, `503 ServiceUnavailable`,
//!   or a connection reset with no response;
//! - applied by moto, and then the client is told otherwise: a `500 InternalError`, or a reset
//!   with no response — the hard case for a conditional put, whose retry then finds its own write;
//! - a stall: applied, and the response held back for a while (longer than a client's timeout, if
//!   the mix says so);
//! - a truncated response: the head announces `Content-Length: N`, fewer bytes follow, the
//!   connection closes.
//!
//! Decisions are a function of the seed, the request (method, path and query, SQS action) and how
//! many times that same request was seen before, so a run with the same seed injects the same
//! faults into the same requests however the worker's concurrent requests interleave — a failure
//! replays. A retried request is a new occurrence and draws again. The proxy counts what it
//! injected per kind ([`FaultProxy::injected`]), so a test can show that faults really happened.
//!
//! It is deliberately small: one upstream connection per request (with `Connection: close`, so the
//! response ends where moto closes), bodies framed by `Content-Length` or chunked encoding.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy can do to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `500 InternalError`, request not forwarded.
    InternalError,
    /// `503 SlowDown` (SQS: a throttling error), request not forwarded.
    SlowDown,
    /// `503 ServiceUnavailable`, request not forwarded.
    Unavailable,
    /// The connection is reset; the request never reached the server.
    Reset,
    /// The server applied the request; the client gets `500 InternalError`.
    ErrorAfterApply,
    /// The server applied the request; the connection is reset before any response byte.
    ResetAfterApply,
    /// The server applied the request; the response comes after [`FaultMix::stall`].
    Stall,
    /// The server applied the request; the response is cut short and the connection closed.
    Truncate,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Unavailable,
        Fault::Reset,
        Fault::ErrorAfterApply,
        Fault::ResetAfterApply,
        Fault::Stall,
        Fault::Truncate,
    ];
}

/// Rates (0–1, per request) of each fault, and how they behave.
#[derive(Debug, Clone)]
pub struct FaultMix {
    pub name: &'static str,
    pub seed: u64,
    pub rates: BTreeMap<Fault, f64>,
    /// How long a [`Fault::Stall`] holds the response.
    pub stall: Duration,
    /// Extra rate of [`Fault::ResetAfterApply`] on the conditional put of a Delta commit
    /// (`PUT …/_delta_log/NNN.json` with `If-None-Match: *`): few requests, the costliest fault.
    pub commit_reset_after_apply: f64,
}

impl FaultMix {
    pub fn new(name: &'static str, seed: u64, rates: &[(Fault, f64)]) -> FaultMix {
        let rates: BTreeMap<Fault, f64> = rates.iter().copied().collect();
        assert!(rates.values().sum::<f64>() < 1.0, "{name}: fault rates add up to 1 or more");
        FaultMix { name, seed, rates, stall: Duration::from_secs(2), commit_reset_after_apply: 0.0 }
    }

    /// The fault for the `occurrence`-th sighting of a request, if any.
    fn decide(&self, request: &RequestHead, occurrence: u64) -> Option<Fault> {
        let mut hash = Fnv::new(self.seed);
        hash.write(request.method.as_bytes());
        hash.write(request.target.as_bytes());
        hash.write(request.header("x-amz-target").unwrap_or("").as_bytes());
        hash.write(&occurrence.to_le_bytes());
        let draw = hash.uniform();
        if request.is_commit_put() && draw < self.commit_reset_after_apply {
            return Some(Fault::ResetAfterApply);
        }
        // A second, independent draw for the general rates.
        let mut cumulative = 0.0;
        let draw = Fnv::new(hash.finish()).uniform();
        for fault in Fault::ALL {
            cumulative += self.rates.get(&fault).copied().unwrap_or(0.0);
            if draw < cumulative {
                return Some(fault);
            }
        }
        None
    }
}

/// FNV-1a, finished with splitmix64: stable across platforms and Rust versions, unlike std's hasher.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325 ^ seed)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff; // a separator, so ("ab", "c") and ("a", "bc") differ
    }
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&self) -> f64 {
        (self.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Which side of the service a request touched, for the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// SQS (any action).
    Sqs,
    /// S3 GET/HEAD: source objects, lake files and the Delta log, listings.
    S3Read,
    /// S3 PUT/POST/DELETE: lake files.
    S3Write,
    /// The conditional put of a Delta commit.
    Commit,
}

#[derive(Debug, Default)]
struct Tally {
    requests: BTreeMap<Target, u64>,
    injected: BTreeMap<(Fault, Target), u64>,
    /// How often each request (by its decision key) was seen.
    seen: HashMap<(String, String, String), u64>,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, mix: FaultMix) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let mix = Arc::new(mix);
        let shared = tally.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let (upstream, mix, tally) = (upstream.clone(), mix.clone(), shared.clone());
                tokio::spawn(async move {
                    // A connection ends on any I/O error: the client sees that as a reset, which
                    // is one of the faults anyway.
                    let _ = serve(client, &upstream, &mix, &tally).await;
                });
            }
        });
        FaultProxy { endpoint, tally, task }
    }

    /// Faults injected so far, per kind (all targets).
    pub fn injected(&self, fault: Fault) -> u64 {
        lock(&self.tally).injected.iter().filter(|((f, _), _)| *f == fault).map(|(_, n)| n).sum()
    }

    /// Faults injected so far on one target (all kinds).
    pub fn injected_on(&self, target: Target) -> u64 {
        lock(&self.tally).injected.iter().filter(|((_, t), _)| *t == target).map(|(_, n)| n).sum()
    }

    /// A table of requests and injected faults, for the test's output.
    pub fn report(&self) -> String {
        let tally = lock(&self.tally);
        let mut out = format!("requests: {:?}\n", tally.requests);
        for ((fault, target), n) in &tally.injected {
            out.push_str(&format!("  {fault:?} on {target:?}: {n}\n"));
        }
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request or response head: the first line and the headers.
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn is_commit_put(&self) -> bool {
        let path = self.target.split('?').next().unwrap_or("");
        self.method == "PUT"
            && path.contains("/_delta_log/")
            && path.ends_with(".json")
            && self.header("if-none-match").is_some()
    }

    fn service(&self) -> Target {
        if self.header("x-amz-target").is_some_and(|t| t.starts_with("AmazonSQS")) {
            Target::Sqs
        } else if self.is_commit_put() {
            Target::Commit
        } else if matches!(self.method.as_str(), "GET" | "HEAD") {
            Target::S3Read
        } else {
            Target::S3Write
        }
    }
}

/// Reads a head (up to the blank line) into its lines; `None` at a clean end of the connection.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return if lines.is_empty() { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn parse_headers(lines: &[String]) -> Vec<(String, String)> {
    lines.iter().filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect()
}

/// A request body as it came (chunked bodies are passed on still chunked).
async fn read_body<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, head: &RequestHead) -> std::io::Result<Vec<u8>> {
    if head.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut raw = Vec::new();
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).await?;
            raw.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0; size + 2]; // the data and its CRLF
            reader.read_exact(&mut chunk).await?;
            raw.extend_from_slice(&chunk);
            if size == 0 {
                return Ok(raw); // (no trailers from the SDKs under test)
            }
        }
    }
    let length = head.header("content-length").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Serves one client connection, request after request (keep-alive), until it closes.
async fn serve(client: TcpStream, upstream: &str, mix: &FaultMix, tally: &Mutex<Tally>) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    loop {
        let Some(lines) = read_head(&mut client).await? else { return Ok(()) };
        let mut first = lines[0].split_whitespace();
        let head = RequestHead {
            method: first.next().unwrap_or("").to_owned(),
            target: first.next().unwrap_or("").to_owned(),
            headers: parse_headers(&lines[1..]),
        };
        if head.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            client.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = read_body(&mut client, &head).await?;
        let target = head.service();
        let fault = {
            let mut tally = lock(tally);
            *tally.requests.entry(target).or_default() += 1;
            let key = (head.method.clone(), head.target.clone(), head.header("x-amz-target").unwrap_or("").to_owned());
            let seen = tally.seen.entry(key).or_default();
            let occurrence = *seen;
            *seen += 1;
            let fault = mix.decide(&head, occurrence);
            if let Some(fault) = fault {
                *tally.injected.entry((fault, target)).or_default() += 1;
            }
            fault
        };
        let client_stream = client.get_mut();
        match fault {
            Some(Fault::InternalError) => respond_error(client_stream, &head, 500, "InternalError").await?,
            Some(Fault::SlowDown) => respond_error(client_stream, &head, 503, "SlowDown").await?,
            Some(Fault::Unavailable) => respond_error(client_stream, &head, 503, "ServiceUnavailable").await?,
            Some(Fault::Reset) => return reset(client.into_inner()),
            Some(fault) => {
                let response = forward(upstream, &lines, &head, &body).await?;
                match fault {
                    Fault::ErrorAfterApply => respond_error(client_stream, &head, 500, "InternalError").await?,
                    Fault::ResetAfterApply => return reset(client.into_inner()),
                    Fault::Stall => {
                        tokio::time::sleep(mix.stall).await;
                        client_stream.write_all(&response).await?;
                    }
                    _ => {
                        truncate(client_stream, &response).await?;
                        return Ok(());
                    }
                }
            }
            None => {
                let response = forward(upstream, &lines, &head, &body).await?;
                client_stream.write_all(&response).await?;
            }
        }
    }
}

/// Sends the request to moto on a fresh connection and returns the whole response as sent.
async fn forward(upstream: &str, lines: &[String], head: &RequestHead, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut request = format!("{}\r\n", lines[0]);
    for (name, value) in &head.headers {
        // One request per upstream connection: the response then ends where moto closes it. The
        // client's `Expect` was answered here already.
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("expect") {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    server.write_all(request.as_bytes()).await?;
    server.write_all(body).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    Ok(keep_alive(response))
}

/// moto's response says `Connection: close`; the client connection stays open, so drop that
/// header (bodies are framed by `Content-Length` or chunks, which moto always sends).
fn keep_alive(response: Vec<u8>) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return response };
    let head = String::from_utf8_lossy(&response[..end]);
    let kept: Vec<&str> = head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    let mut out = kept.join("\r\n").into_bytes();
    out.extend_from_slice(&response[end..]);
    out
}

/// The head as moto sent it (announcing the full length), half the body, then the connection
/// closes. A response without a body loses half its head instead.
async fn truncate(client: &mut TcpStream, response: &[u8]) -> std::io::Result<()> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
    let body = response.len() - head_end;
    let cut = if body > 0 { head_end + body / 2 } else { head_end / 2 };
    client.write_all(&response[..cut]).await?;
    client.shutdown().await
}

/// Closes with a TCP reset (SO_LINGER 0), as a crashed server or a middlebox does.
fn reset(client: TcpStream) -> std::io::Result<()> {
    // Deprecated because a non-zero linger blocks the thread on drop; zero sends a RST at once.
    #[allow(deprecated)]
    client.set_linger(Some(Duration::ZERO))?;
    drop(client);
    Ok(())
}

/// An error response in the protocol of the request: JSON for SQS, S3's XML otherwise.
async fn respond_error(client: &mut TcpStream, head: &RequestHead, status: u16, code: &str) -> std::io::Result<()> {
    let (content_type, body) = if head.header("x-amz-target").is_some() {
        let code = if code == "SlowDown" { "ThrottlingException" } else { code };
        ("application/x-amz-json-1.0", format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#))
    } else {
        (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the \
                 fault proxy</Message><RequestId>FAULT</RequestId></Error>"
            ),
        )
    };
    let reason = if status == 500 { "Internal Server Error" } else { "Service Unavailable" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn decisions_replay_per_seed_and_follow_the_rates() {
        let mix = FaultMix::new("t", 7, &[(Fault::InternalError, 0.1), (Fault::Truncate, 0.2)]);
        let request = head("GET", "/bucket/key", &[]);
        let draws: Vec<Option<Fault>> = (0..2000).map(|n| mix.decide(&request, n)).collect();
        assert_eq!(draws, (0..2000).map(|n| mix.decide(&request, n)).collect::<Vec<_>>());
        let count = |f| draws.iter().filter(|d| **d == Some(f)).count();
        assert!((150..250).contains(&count(Fault::InternalError)), "{}", count(Fault::InternalError));
        assert!((330..470).contains(&count(Fault::Truncate)), "{}", count(Fault::Truncate));
        let other = FaultMix::new("t", 8, &[(Fault::InternalError, 0.1), (Fault::Truncate, 0.2)]);
        assert_ne!(draws, (0..2000).map(|n| other.decide(&request, n)).collect::<Vec<_>>());
    }

    #[test]
    fn only_conditional_puts_of_the_delta_log_are_commits() {
        let commit = head("PUT", "/lake/t/_delta_log/00000000000000000003.json", &[("If-None-Match", "*")]);
        assert_eq!(commit.service(), Target::Commit);
        assert_eq!(head("PUT", "/lake/t/_delta_log/00000000000000000003.json", &[]).service(), Target::S3Write);
        assert_eq!(head("PUT", "/lake/t/date=2025-03-03/part.parquet", &[]).service(), Target::S3Write);
        assert_eq!(head("POST", "/", &[("X-Amz-Target", "AmazonSQS.ReceiveMessage")]).service(), Target::Sqs);
        assert_eq!(head("GET", "/archive/key", &[]).service(), Target::S3Read);
    }
}
