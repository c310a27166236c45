//! What a router does to a prefix while something else happens: its next hops sampled every
//! 50 ms on a thread of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::nexthops;
use crate::netns::Netns;

/// The next hops of one prefix in a router's kernel, sampled until [`NexthopSampler::finish`].
#[derive(Debug)]
pub struct NexthopSampler {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(Instant, usize)>>>,
}

/// What the samples showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    /// The fewest next hops seen (0: the prefix was withdrawn at some point).
    pub fewest: usize,
    /// How long, in all, the prefix had fewer next hops than at the first sample.
    pub reduced: Duration,
    /// How many next hops were withdrawn, one at a time (the decreases between samples,
    /// summed).
    pub withdrawn: usize,
    /// When the prefix had no next hop at all: each period's first sample and length.
    pub unrouted: Vec<(Instant, Duration)>,
}

impl NexthopSampler {
    /// Starts sampling `prefix` in `router`'s kernel.
    pub fn start(router: &Netns, prefix: &str) -> NexthopSampler {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, router, prefix) = (
            running.clone(),
            router.name().to_string(),
            prefix.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let router = Netns::attach(&router);
            let mut samples = Vec::new();
            while flag.load(Ordering::Relaxed) {
                let hops = nexthops(&router, &prefix).map(|h| h.len()).unwrap_or(0);
                samples.push((Instant::now(), hops));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        NexthopSampler {
            running,
            thread: Some(thread),
        }
    }

    /// Stops sampling and sums up.
    pub fn finish(mut self) -> Sampled {
        self.running.store(false, Ordering::Relaxed);
        let samples = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        summarize(&samples)
    }
}

impl Drop for NexthopSampler {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn summarize(samples: &[(Instant, usize)]) -> Sampled {
    let Some(&(_, first)) = samples.first() else {
        return Sampled {
            fewest: 0,
            reduced: Duration::ZERO,
            withdrawn: 0,
            unrouted: Vec::new(),
        };
    };
    let fewest = samples.iter().map(|(_, hops)| *hops).min().unwrap_or(0);
    let reduced = samples
        .windows(2)
        .filter(|pair| pair[0].1 < first)
        .map(|pair| pair[1].0.duration_since(pair[0].0))
        .sum();
    let withdrawn = samples
        .windows(2)
        .map(|pair| pair[0].1.saturating_sub(pair[1].1))
        .sum();
    let mut unrouted: Vec<(Instant, Duration)> = Vec::new();
    let mut open: Option<Instant> = None;
    for &(at, hops) in samples {
        match (hops, open) {
            (0, None) => open = Some(at),
            (1.., Some(from)) => {
                unrouted.push((from, at.duration_since(from)));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(&(last, _))) = (open, samples.last()) {
        unrouted.push((from, last.duration_since(from)));
    }
    Sampled {
        fewest,
        reduced,
        withdrawn,
        unrouted,
    }
}

/// The `p`th percentile of `values` (nearest rank); NaN when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted
        .get(rank.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// The median of `values`: of an even count, the mean of the middle two; NaN when there are
/// none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_take_the_nearest_rank_of_the_sorted_values() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert_eq!(percentile(&values, 99.0), 5.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn the_time_with_fewer_hops_than_at_the_start_is_summed() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let samples = [
            (at(0), 2),
            (at(50), 2),
            (at(100), 1),
            (at(150), 0),
            (at(200), 2),
            (at(250), 1),
            (at(300), 2),
        ];
        assert_eq!(
            summarize(&samples),
            Sampled {
                fewest: 0,
                reduced: Duration::from_millis(150),
                withdrawn: 3,
                unrouted: vec![(at(150), Duration::from_millis(50))],
            }
        );
        assert_eq!(summarize(&[]).fewest, 0);
        assert_eq!(summarize(&[(t, 2)]).reduced, Duration::ZERO);
    }
}

/// A router's kernel routes as `ip monitor route` reports them, each line with when it was
/// read, until dropped.
#[derive(Debug)]
pub struct RouteMonitor {
    child: std::process::Child,
    /// How long a wait lasts at most (30 s unless changed).
    pub timeout: Duration,
    /// The lines read so far and not yet taken: (when, line).
    pub lines: std::sync::mpsc::Receiver<(Instant, String)>,
}

impl RouteMonitor {
    /// Starts `ip monitor route` in `router`'s namespace.
    pub fn start(router: &str) -> anyhow::Result<RouteMonitor> {
        use anyhow::Context as _;
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("ip")
            .args(["-n", router, "monitor", "route"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting ip monitor")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(RouteMonitor {
            child,
            timeout: Duration::from_secs(30),
            lines,
        })
    }

    /// Drops the lines read so far.
    pub fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Waits ([`RouteMonitor::timeout`] at most) for the first line that `matches`; returns
    /// when it was read.
    pub fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> anyhow::Result<Instant> {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if matches(&line) => return Ok(at),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => anyhow::bail!("timed out waiting for {what}"),
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("ip monitor ended"),
            }
        }
    }

    /// Waits until `prefix` (an address) enters the FIB; returns when.
    pub fn wait_routed(&self, prefix: &str) -> anyhow::Result<Instant> {
        let start = format!("{prefix} ");
        self.wait_line(&format!("{prefix} in the FIB"), |l| l.starts_with(&start))
    }

    /// Waits until `router` holds no route for `prefix` any more; returns when the kernel
    /// deleted it (with ECMP, the first withdrawal only replaces the route).
    pub fn wait_unrouted(&self, router: &Netns, prefix: &str) -> anyhow::Result<Instant> {
        let deleted = format!("Deleted {prefix} ");
        loop {
            let at = self.wait_line(&format!("{prefix} leaving the FIB"), |l| {
                l.starts_with(&deleted)
            })?;
            if nexthops(router, prefix)?.is_empty() {
                return Ok(at);
            }
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
