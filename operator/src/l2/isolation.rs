//! When a layer-2 owner should stop answering because it is cut off.
//!
//! A speaker that hears no other speaker cannot tell whether the others died or it was cut
//! off from them. If it was cut off while clients still reach it, the others declare it dead
//! within a second and elect new owners for its IPs, and from then on two nodes answer for
//! the same IPs (MetalLB #2838). So a speaker that hears no other speaker although others
//! are known, and cannot reach the API server either, stops answering once both have lasted
//! [`DEFAULT_AFTER`]: the rest of the cluster, which still has the control plane, is the
//! side that keeps the IPs.
//!
//! The trade-off: when the other speakers are really gone and the API server is down at the
//! same time (a control plane on the dead nodes), the last speaker standing stops answering
//! too. A cluster that would rather keep that node answering sets the bound to zero
//! (`--ml-isolated-ms=0`), which is MetalLB's behaviour. A speaker that knows no other node
//! (a one-node cluster) is never isolated: nobody else would take its IPs.

use std::time::Duration;

use tokio::time::Instant;

/// How long a speaker may be cut off before it stops answering.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(10);

/// Tracks whether this speaker is cut off.
#[derive(Clone, Debug)]
pub struct Isolation {
    after: Option<Duration>,
    /// Since when no other speaker has been alive (though others are known).
    alone_since: Option<Instant>,
    /// The last time the API server answered.
    reached: Option<Instant>,
}

impl Isolation {
    /// Isolated after `after` cut off; `None` never.
    pub fn new(after: Option<Duration>) -> Isolation {
        Isolation {
            after,
            alone_since: None,
            reached: None,
        }
    }

    /// The API server answered at `at`.
    pub fn reached(&mut self, at: Instant) {
        self.reached = Some(self.reached.map_or(at, |was| was.max(at)));
    }

    /// Records whether this speaker is `alone` (gossip settled, no other speaker alive, some
    /// other node known) at `now`, and answers whether it is isolated.
    pub fn observe(&mut self, alone: bool, now: Instant) -> bool {
        let Some(after) = self.after else {
            return false;
        };
        if !alone {
            self.alone_since = None;
            return false;
        }
        let since = *self.alone_since.get_or_insert(now);
        // Cut off from the API since its last answer, or since being alone if it answered
        // after that.
        let cut_off_since = self.reached.map_or(since, |reached| reached.max(since));
        now.saturating_duration_since(cut_off_since) >= after
    }

    /// Whether the API server should be asked now: only while alone, when its answer decides.
    pub fn asking(&self) -> bool {
        self.after.is_some() && self.alone_since.is_some()
    }

    /// When [`Isolation::observe`] may next turn true without anything else changing.
    pub fn deadline(&self) -> Option<Instant> {
        let since = self.alone_since?;
        let cut_off_since = self.reached.map_or(since, |reached| reached.max(since));
        Some(cut_off_since + self.after?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn alone_and_without_the_api_for_the_bound_is_isolated() {
        let t0 = Instant::now();
        let mut isolation = Isolation::new(Some(10 * S));
        assert!(!isolation.observe(false, t0));
        assert!(!isolation.asking());
        assert!(!isolation.observe(true, t0 + S));
        assert!(isolation.asking());
        assert_eq!(isolation.deadline(), Some(t0 + 11 * S));
        assert!(!isolation.observe(true, t0 + 10 * S));
        assert!(isolation.observe(true, t0 + 11 * S));
        // The API answers again: not isolated, and the clock starts from its answer.
        isolation.reached(t0 + 12 * S);
        assert!(!isolation.observe(true, t0 + 12 * S));
        assert!(!isolation.observe(true, t0 + 21 * S));
        assert!(isolation.observe(true, t0 + 22 * S));
        // Another speaker is heard: not isolated, and a new period starts from scratch.
        assert!(!isolation.observe(false, t0 + 23 * S));
        assert!(!isolation.asking());
        assert!(!isolation.observe(true, t0 + 24 * S));
        assert!(!isolation.observe(true, t0 + 33 * S));
        assert!(isolation.observe(true, t0 + 34 * S));
    }

    #[test]
    fn an_api_that_answers_keeps_a_lone_speaker_answering() {
        let t0 = Instant::now();
        let mut isolation = Isolation::new(Some(10 * S));
        for second in 0..60 {
            let now = t0 + second * S;
            isolation.reached(now);
            assert!(!isolation.observe(true, now), "at {second} s");
        }
    }

    #[test]
    fn with_no_bound_a_speaker_is_never_isolated() {
        let t0 = Instant::now();
        let mut isolation = Isolation::new(None);
        assert!(!isolation.observe(true, t0));
        assert!(!isolation.observe(true, t0 + 3_600 * S));
        assert!(!isolation.asking());
        assert_eq!(isolation.deadline(), None);
    }
}
