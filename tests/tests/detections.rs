//! The built-in detections over generated archives: a benign background raises no alert at all,
//! so that attacks injected into it (`bunker gen --attacks`) are the only thing that can alert.

use bunker_detect::engine::run_over_lake;
use bunker_detect::pack::builtin_validated;
use bunker_detect::regions::{RegionConfig, Regions};
use bunker_ingest::synth::{SynthConfig, generate};
use bunker_query::LakeSession;

use crate::support::ingest;

#[tokio::test]
async fn a_benign_archive_raises_no_alert_from_any_builtin_rule() {
    let rules = builtin_validated().await.expect("the built-in pack");
    for (events, seed, accounts) in [(20_000, 1, 5), (20_000, 2, 3)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (archive, lake) = (dir.path().join("archive"), dir.path().join("lake"));
        let config = SynthConfig { days: 3, accounts, benign: true, ..SynthConfig::new(events, seed) };
        generate(&archive, &config).expect("generate");
        let summary = ingest(&archive, &lake).await;
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);

        let session = LakeSession::open(&lake).await.expect("open session");
        // The organization allows the archive's regions, and a day of history is enough for a
        // first use of a region to alert: the background must not trip the region rules either.
        let regions = Regions::new(&RegionConfig {
            allowed: config.regions.clone(),
            learning: Some("1d".into()),
            ..RegionConfig::default()
        })
        .expect("regions");
        let alerts = run_over_lake(&session, &rules, &regions, None, None).await.expect("run every rule over history");
        let fired: Vec<String> = alerts
            .iter()
            .map(|a| {
                format!(
                    "{} ({} matches, first {:?} in {:?})",
                    a.rule_id,
                    a.count,
                    a.event_ids.first(),
                    a.source_keys.first()
                )
            })
            .collect();
        assert!(fired.is_empty(), "seed {seed}: the benign background alerts:\n{}", fired.join("\n"));
    }
}
