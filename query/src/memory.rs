//! How much memory a query may hold. Every session bunker opens draws on one pool, so a query over
//! months of logs (or a detection over all of history) spills its aggregations and sorts to disk
//! instead of growing until the kernel kills the process.
//!
//! The limit is `BUNKER_MEMORY_LIMIT` (`8GiB`, `512MiB`, `2G`, or bytes) when set, else half of the
//! machine's physical memory.
//!
//! Every session also shares one cache of Parquet footers and page indexes.

use std::sync::{Arc, OnceLock};

use datafusion::common::Result;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The environment variable that sets the limit.
pub const LIMIT_VAR: &str = "BUNKER_MEMORY_LIMIT";

/// How much Parquet metadata (footers, page indexes) the process keeps, least recently used
/// first out. The benchmark lake's week of ten million CloudTrail events is 380 files whose
/// footers take 8 MB on disk (21 KB each); the cap keeps a worker's share of memory small.
const FOOTER_CACHE_BYTES: usize = 64 << 20;

/// Used when neither the variable nor `/proc/meminfo` says.
const FALLBACK: usize = 4 << 30;

/// A runtime for one session, drawing on the process's one memory pool of [`limit`] bytes and
/// spilling to the system's temp directory. Only the pool is shared: each session keeps its own
/// object-store registry, so a store made for one lake or one async runtime never serves another.
pub fn runtime() -> Result<Arc<RuntimeEnv>> {
    // Parquet footers and page indexes are shared too: a shell or a Flight SQL server opens a
    // session per connection, and reading the same footers for every statement was most of
    // the time of a selective query. Entries are checked against the file's size and time.
    static FOOTERS: OnceLock<Arc<FileMetadataCache>> = OnceLock::new();
    let mut caches = CacheManagerConfig::default().with_metadata_cache_limit(FOOTER_CACHE_BYTES);
    if let Some(shared) = FOOTERS.get() {
        caches = caches.with_file_metadata_cache(Some(shared.clone()));
    }
    let runtime = RuntimeEnvBuilder::new().with_memory_pool(pool()?).with_cache_manager(caches).build_arc()?;
    FOOTERS.get_or_init(|| runtime.cache_manager.get_file_metadata_cache());
    Ok(runtime)
}

fn pool() -> Result<Arc<dyn MemoryPool>> {
    static POOL: OnceLock<Arc<dyn MemoryPool>> = OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool.clone());
    }
    let limit = limit().map_err(datafusion::error::DataFusionError::Configuration)?;
    // Fair shares between the operators that can spill; the five largest consumers are named
    // when a query still does not fit.
    let consumers = std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN);
    let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(FairSpillPool::new(limit), consumers));
    Ok(POOL.get_or_init(|| pool).clone())
}

/// The memory limit in bytes: [`LIMIT_VAR`], else half of physical memory.
pub fn limit() -> Result<usize, String> {
    match std::env::var(LIMIT_VAR) {
        Ok(text) => parse_size(&text).map_err(|why| format!("{LIMIT_VAR}={text}: {why}")),
        Err(_) => Ok(physical_memory().map_or(FALLBACK, |bytes| bytes / 2)),
    }
}

fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `8GiB`, `8G`, `512MiB`, `512M`, `64KiB`, or a plain byte count.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| "expected a size such as 8GiB or 512MiB".to_owned())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB, GiB or TiB")),
    };
    let bytes = number * scale;
    // NaN fails this comparison too.
    if bytes.is_nan() || bytes < 64.0 * 1024.0 * 1024.0 {
        return Err("at least 64MiB, or queries cannot run at all".to_owned());
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_the_usual_spellings() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("134217728"), Ok(128 << 20));
        for bad in ["", "lots", "8 parsecs", "1MiB", "-4G"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_default_is_half_the_machine() {
        if std::env::var(LIMIT_VAR).is_err() {
            let limit = limit().expect("limit");
            assert!(limit >= 64 << 20, "{limit}");
            assert_eq!(Some(limit), physical_memory().map(|m| m / 2));
        }
    }
}
