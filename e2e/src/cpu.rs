//! Who used the machine's CPU while something happened: every process's own CPU time read
//! from `/proc` every 250 ms on a thread of its own, summed per interval by program (and, for
//! a process in a lab node's network namespace, the node). A process that starts and ends
//! between two samples is not seen; a child's time stays its own (waited-for children's time
//! is not added to their parent, which would count a long-lived child twice).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::rss::{argv, namespace_link, own_ticks, ticks_per_second};

/// How often the processes are read.
const EVERY: Duration = Duration::from_millis(250);

/// One interval between two samples: its end, the machine's busy and total time (all
/// cores, clock ticks) and each program's own time in it.
#[derive(Debug)]
struct Interval {
    end: Instant,
    busy: u64,
    total: u64,
    by_program: BTreeMap<String, u64>,
}

/// The machine's CPU use by program, sampled until [`CpuSampler::finish`].
#[derive(Debug)]
pub struct CpuSampler {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Interval>>>,
}

/// What a [`CpuSampler`] saw.
#[derive(Debug)]
pub struct CpuUse {
    intervals: Vec<Interval>,
    ticks_per_second: f64,
    cores: usize,
}

impl CpuSampler {
    /// Starts sampling; `nodes` are the network namespaces whose processes are labelled with
    /// the namespace's name (`bgpd@n1`).
    pub fn start(nodes: &[&crate::netns::Netns]) -> CpuSampler {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let namespaces: HashMap<String, String> = nodes
            .iter()
            .filter_map(|node| Some((namespace_link(node).ok()?, short_node_name(node.name()))))
            .collect();
        let thread = std::thread::spawn(move || {
            let mut labels: HashMap<u32, String> = HashMap::new();
            let mut last = read_processes(&namespaces, &mut labels);
            let mut last_machine = machine_ticks().unwrap_or_default();
            let mut intervals = Vec::new();
            while flag.load(Ordering::Relaxed) {
                std::thread::sleep(EVERY);
                let now = read_processes(&namespaces, &mut labels);
                let machine = machine_ticks().unwrap_or(last_machine);
                let mut by_program: BTreeMap<String, u64> = BTreeMap::new();
                for (pid, (label, ticks)) in &now {
                    // A process first seen now started within the interval: all its time is.
                    let before = last.get(pid).map_or(0, |(_, t)| *t);
                    let used = ticks.saturating_sub(before);
                    if used > 0 {
                        *by_program.entry(label.clone()).or_default() += used;
                    }
                }
                labels.retain(|pid, _| now.contains_key(pid));
                intervals.push(Interval {
                    end: Instant::now(),
                    busy: machine.0.saturating_sub(last_machine.0),
                    total: machine.1.saturating_sub(last_machine.1),
                    by_program,
                });
                last = now;
                last_machine = machine;
            }
            intervals
        });
        CpuSampler {
            running,
            thread: Some(thread),
        }
    }

    /// Stops sampling.
    pub fn finish(mut self) -> CpuUse {
        self.running.store(false, Ordering::Relaxed);
        let intervals = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        CpuUse {
            intervals,
            ticks_per_second: ticks_per_second().unwrap_or(100.0),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl CpuUse {
    /// The machine's use from `from` to `to` (the intervals that end in it), in words: how
    /// busy its cores were and the `top` programs with their CPU seconds, the busiest first
    /// (`CPU 1.9 of 2.0 cores over 1.0 s: kube-apiserver 0.71 s, bgpd@n1 0.40 s, …`).
    pub fn describe(&self, from: Instant, to: Instant, top: usize) -> String {
        let Some((cores, programs)) = self.within(from, to) else {
            return "CPU not sampled then".to_string();
        };
        let listed = busiest(&programs, top)
            .iter()
            .map(|(label, seconds)| format!("{label} {seconds:.2} s"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "CPU {cores:.1} of {} cores over {:.1} s: {listed}",
            self.cores,
            (to - from).as_secs_f64()
        )
    }

    /// The cores busy on average from `from` to `to` (the intervals that end in it) and each
    /// program's CPU seconds then; `None` when no interval ended then.
    fn within(&self, from: Instant, to: Instant) -> Option<(f64, BTreeMap<String, f64>)> {
        let within: Vec<&Interval> = self
            .intervals
            .iter()
            .filter(|i| i.end > from && i.end <= to)
            .collect();
        if within.is_empty() {
            return None;
        }
        let (busy, total) = within
            .iter()
            .fold((0, 0), |(b, t), i| (b + i.busy, t + i.total));
        let mut programs: BTreeMap<String, f64> = BTreeMap::new();
        for interval in &within {
            for (label, ticks) in &interval.by_program {
                *programs.entry(label.clone()).or_default() +=
                    *ticks as f64 / self.ticks_per_second;
            }
        }
        let cores = if total == 0 {
            0.0
        } else {
            self.cores as f64 * busy as f64 / total as f64
        };
        Some((cores, programs))
    }
}

/// The `top` entries of `programs` by CPU seconds, the most first (ties by name).
fn busiest(programs: &BTreeMap<String, f64>, top: usize) -> Vec<(&str, f64)> {
    let mut sorted: Vec<(&str, f64)> = programs.iter().map(|(l, s)| (l.as_str(), *s)).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    sorted.truncate(top);
    sorted
}

/// A lab namespace's node name: what follows the last `-` (`flvs123-n1` → `n1`).
fn short_node_name(namespace: &str) -> String {
    namespace
        .rsplit('-')
        .next()
        .unwrap_or(namespace)
        .to_string()
}

/// Every process's label and own CPU ticks; `labels` caches each pid's label.
fn read_processes(
    namespaces: &HashMap<String, String>,
    labels: &mut HashMap<u32, String>,
) -> HashMap<u32, (String, u64)> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(ticks) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| own_ticks(&s))
        else {
            continue;
        };
        let label = labels
            .entry(pid)
            .or_insert_with(|| label_of(&entry.path(), namespaces))
            .clone();
        found.insert(pid, (label, ticks));
    }
    found
}

/// A process's label: its program's file name, with its first argument when that is a
/// subcommand (`ferrolb speaker`), and `@node` when it runs in a lab node's namespace.
fn label_of(proc_dir: &std::path::Path, namespaces: &HashMap<String, String>) -> String {
    let argv = argv(proc_dir).unwrap_or_default();
    let mut label = match argv.first() {
        // A kernel thread has no command line: its name.
        None => std::fs::read_to_string(proc_dir.join("comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_else(|_| "?".to_string()),
        Some(program) => program.rsplit('/').next().unwrap_or(program).to_string(),
    };
    if label == "ferrolb"
        && let Some(subcommand) = argv.get(1).filter(|a| !a.starts_with('-'))
    {
        label = format!("{label} {subcommand}");
    }
    let node = std::fs::read_link(proc_dir.join("ns/net"))
        .ok()
        .and_then(|link| namespaces.get(link.to_str()?).cloned());
    match node {
        Some(node) => format!("{label}@{node}"),
        None => label,
    }
}

/// The machine's busy and total CPU ticks, all cores, from `/proc/stat` (idle and I/O wait
/// are not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_ticks_of(&stat)
}

fn machine_ticks_of(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let counted = values.get(..8)?;
    let total: u64 = counted.iter().sum();
    let idle = counted[3] + counted[4];
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_leave_idle_and_io_wait_out_of_busy() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
        assert_eq!(machine_ticks_of(stat), Some((160, 980)));
        assert_eq!(machine_ticks_of("intr 1 2 3"), None);
    }

    #[test]
    fn the_busiest_programs_come_first_and_ties_by_name() {
        let programs: BTreeMap<String, f64> = [
            ("etcd", 0.5),
            ("bgpd@n1", 0.9),
            ("apiserver", 0.9),
            ("x", 0.1),
        ]
        .into_iter()
        .map(|(l, s)| (l.to_string(), s))
        .collect();
        assert_eq!(
            busiest(&programs, 3),
            vec![("apiserver", 0.9), ("bgpd@n1", 0.9), ("etcd", 0.5)]
        );
    }

    #[test]
    fn a_lab_namespace_is_named_by_its_node() {
        assert_eq!(short_node_name("flvs123-n1"), "n1");
        assert_eq!(short_node_name("n2"), "n2");
    }

    #[test]
    fn the_sampler_sees_this_process_work() {
        let sampler = CpuSampler::start(&[]);
        let from = Instant::now();
        // Spins until this process has used 0.6 s more (however busy the machine is).
        let ticks = || own_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let (start, mut x) = (ticks(), 0u64);
        while ((ticks() - start) as f64) < 0.6 * ticks_per_second().unwrap() {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        std::thread::sleep(EVERY * 2);
        let used = sampler.finish();
        let me = std::env::args()
            .next()
            .and_then(|a| a.rsplit('/').next().map(str::to_string))
            .unwrap();
        let (cores, programs) = used.within(from, Instant::now()).unwrap();
        let mine = programs.get(&me).copied().unwrap_or(0.0);
        assert!(
            mine >= 0.4,
            "{me} used {mine} s while spinning 0.6 s: {}",
            used.describe(from, Instant::now(), 5)
        );
        assert!(cores > 0.0 && cores <= used.cores as f64 + 0.01);
    }
}
