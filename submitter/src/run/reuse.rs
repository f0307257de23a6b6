//! The task cache around one job: before it starts, its tasks whose
//! outputs the cache knows and the store still holds are settled without
//! running (maps first; reduces when every map was); when it ends, the
//! results its attempts settled are recorded.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use ipdc_common::ipfs::{IpfsClient, Timeouts};

use crate::controller::Controller;
use crate::task_cache::{Entry, TaskCache, intended_executor};

/// How long the store may take to show it holds one output: one it cannot
/// find that soon is taken as gone (its task runs again).
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Outputs checked at once.
const CHECKS_IN_FLIGHT: usize = 16;

/// Settles what the cache can of `ctl`'s tasks; returns how many it settled.
pub async fn reuse(cache: &TaskCache, ipfs: &IpfsClient, ctl: &mut Controller) -> usize {
    let timeouts = Timeouts { connect: PRESENCE_TIMEOUT, request: PRESENCE_TIMEOUT, ..Timeouts::default() };
    let Ok(probe) = IpfsClient::with_timeouts(ipfs.api(), timeouts) else { return 0 };
    let mut settled = 0;
    loop {
        let wanted = ctl.cacheable();
        let found: Vec<(String, String, Entry)> = wanted
            .iter()
            .filter_map(|(task, kind)| {
                let key = cache.key(ctl.code(), ctl.reducers(), kind);
                let entry = cache.get(&key)?;
                Some((task.clone(), key, entry))
            })
            .collect();
        let held: Vec<bool> = stream::iter(&found)
            .map(|(_, _, entry)| holds(&probe, entry))
            .buffered(CHECKS_IN_FLIGHT)
            .collect()
            .await;
        let mut any = false;
        for ((task, key, entry), held) in found.into_iter().zip(held) {
            if !held {
                cache.forget(&key);
            } else if ctl.reuse(&task, entry.output, entry.agreed_by) {
                settled += 1;
                any = true;
            }
        }
        // Maps, then (once every map is settled) reduces, then nothing.
        if !any {
            return settled;
        }
    }
}

/// Whether the store still has every output of `entry`.
async fn holds(probe: &IpfsClient, entry: &Entry) -> bool {
    let outputs = entry.output.cids.iter().zip(&entry.output.sizes).filter(|(_, size)| **size > 0);
    for (cid, _) in outputs {
        if probe.stat(cid).await.is_err() {
            return false;
        }
    }
    true
}

/// Records the results `ctl`'s attempts settled (after the job, done or
/// failed: a job that failed in its reduces keeps its maps).
pub fn remember(cache: &TaskCache, ctl: &Controller) {
    let executor = intended_executor(ctl.code());
    for s in ctl.settled() {
        if s.output.executor != executor {
            continue;
        }
        let key = cache.key(ctl.code(), ctl.reducers(), &s.kind);
        cache.put(&key, &Entry { output: s.output, agreed_by: s.agreed_by });
    }
}
