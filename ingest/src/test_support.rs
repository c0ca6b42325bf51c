//! Helpers shared by the parsers' unit tests: the real AWS samples folder, reading a sample
//! (gunzipped when it is gzip), and deterministic noise for "random bytes never panic" tests.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};

/// The folder of real AWS samples, `shared/data/real` beside the workspace (or beside a worktree's
/// parent, or `$BUNKER_REAL_SAMPLES`). Panics with instructions when it is missing, so that a test
/// reading it never passes on nothing.
pub(crate) fn real_samples_dir() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut candidates: Vec<PathBuf> = std::env::var_os("BUNKER_REAL_SAMPLES").map(PathBuf::from).into_iter().collect();
    candidates.extend(crate_dir.ancestors().skip(1).map(|dir| dir.join("shared/data/real")));
    candidates.iter().find(|p| p.join("README.md").is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "the real AWS samples folder is missing; looked in {candidates:?}. \
             Put the shared samples at ../shared/data/real beside the workspace or set BUNKER_REAL_SAMPLES"
        )
    })
}

/// A sample's bytes, decompressed when the file is gzip.
pub(crate) fn read_sample(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return raw;
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// `len` pseudo-random bytes, the same for the same seed.
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// The files under a lake table's folder, its `_delta_log` aside, by path relative to the folder,
/// with their sizes: what storage holds, referenced by the log or not.
#[cfg(feature = "lake")]
pub(crate) fn table_files(table_dir: &Path) -> std::collections::BTreeMap<String, u64> {
    walkdir::WalkDir::new(table_dir)
        .into_iter()
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}: {e}", table_dir.display())))
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let relative = entry.path().strip_prefix(table_dir).expect("under the folder").display().to_string();
            (relative, entry.metadata().expect("metadata").len())
        })
        .filter(|(path, _)| !path.starts_with("_delta_log"))
        .collect()
}
