use super::*;

#[test]
fn a_restarted_speaker_is_newer_than_its_predecessor_however_often_that_renewed() {
    let addr: SocketAddr = "10.0.0.1:7946".parse().unwrap();
    let mut old = Speaker::new("n1", addr);
    // Renewals come seconds apart in life; a burst of them runs a microsecond each
    // ahead of the clock.
    for _ in 0..1_000 {
        old = old.renew().unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let new = Speaker::new("n1", addr);
    assert!(new.win_addr_conflict(&old));
    assert!(!old.win_addr_conflict(&new));
    let renewed = new.renew().unwrap();
    assert!(renewed.win_addr_conflict(&new));
    assert!(!old.win_addr_conflict(&new));
    assert!(!old.win_addr_conflict(&old));
    assert_eq!(new.addr(), "n1");
}

/// A member's protocol state alone, as the gossip task holds it.
fn protocol(node: &str, host: u8) -> (Gossip, AccumulatingRuntime<Speaker>) {
    use rand::SeedableRng;
    let foca = Foca::new(
        Speaker::new(node, SocketAddr::from(([10, 0, 0, host], DEFAULT_PORT))),
        Timings::default().config(3),
        StdRng::seed_from_u64(7),
        PostcardCodec,
    );
    (foca, AccumulatingRuntime::new())
}

/// Drains what `runtime` holds: the notifications and the timers scheduled.
fn drained(
    runtime: &mut AccumulatingRuntime<Speaker>,
) -> (Vec<OwnedNotification<Speaker>>, Vec<Timer<Speaker>>) {
    while runtime.to_send().is_some() {}
    let notifications = std::iter::from_fn(|| runtime.to_notify()).collect();
    let timers = std::iter::from_fn(|| runtime.to_schedule())
        .map(|(_, timer)| timer)
        .collect();
    (notifications, timers)
}

#[test]
fn a_speaker_that_rejoins_while_it_holds_a_live_member_probes_it_again() {
    // n1 holds n2 alive and n3 down; n3, which holds n1 down, tells it so when n1 announces
    // itself to it.
    let (mut n1, mut rt1) = protocol("n1", 1);
    let (mut n3, mut rt3) = protocol("n3", 3);
    let n2 = Speaker::new("n2", SocketAddr::from(([10, 0, 0, 2], DEFAULT_PORT)));
    let down = foca::Member::down(n3.identity().clone());
    n1.apply_many(
        [foca::Member::alive(n2.clone()), down].into_iter(),
        true,
        &mut rt1,
    )
    .unwrap();
    n3.apply_many(
        std::iter::once(foca::Member::down(n1.identity().clone())),
        true,
        &mut rt3,
    )
    .unwrap();
    drained(&mut rt3);
    n1.announce(n3.identity().clone(), &mut rt1).unwrap();
    let (to, announce) = rt1.to_send().unwrap();
    assert_eq!(to.node, "n3");
    let (told, _) = drained(&mut rt1);
    assert!(told.contains(&OwnedNotification::Active), "{told:?}");
    n3.handle_data(&announce, &mut rt3).unwrap();
    let (to, turn_undead) = rt3.to_send().unwrap();
    assert_eq!(to.node, "n1");
    n1.handle_data(&turn_undead, &mut rt1).unwrap();
    // n1 rejoined under a new identity, n2 still among its members, but foca left it
    // disconnected: no probe scheduled, and it would stay so until n2 wrote to the new
    // identity, which n2 does not know.
    let timers: Vec<_> = std::iter::from_fn(|| rt1.to_schedule())
        .map(|(_, timer)| timer)
        .collect();
    assert!(
        !timers
            .iter()
            .any(|t| matches!(t, Timer::ProbeRandomMember(_)))
    );
    let members: Vec<_> = n1.iter_members().map(|m| m.id().node.clone()).collect();
    assert_eq!(members, ["n2"]);
    // The gossip task, reading foca's notifications, connects it again: it probes n2.
    let heard = notifications(&mut n1, &mut rt1);
    assert_eq!(
        heard,
        Heard {
            accepted: true,
            rejoined: 1
        }
    );
    let (_, timers) = drained(&mut rt1);
    assert!(
        timers
            .iter()
            .any(|t| matches!(t, Timer::ProbeRandomMember(_))),
        "{timers:?}"
    );
}

async fn member(node: &str, key: &[u8]) -> (Members, Arc<MembersMetrics>) {
    member_with(node, key, Timings::default()).await
}

async fn member_with(node: &str, key: &[u8], timings: Timings) -> (Members, Arc<MembersMetrics>) {
    let metrics = Arc::new(MembersMetrics::default());
    let members = Members::start(
        MembersOptions {
            node: node.into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            key: key.to_vec(),
            timings,
            accept_format_2: false,
        },
        Arc::clone(&metrics),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    (members, metrics)
}

async fn until(members: &Members, what: impl Fn(&Liveness) -> bool) -> Duration {
    let started = Instant::now();
    let mut liveness = members.liveness();
    tokio::time::timeout(Duration::from_secs(10), liveness.wait_for(|l| what(l)))
        .await
        .expect("in time")
        .expect("gossip running");
    started.elapsed()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Three members on loopback find each other from their seeds; one that falls silent
/// is declared dead by the others within about a second; one with another key never
/// gets in, and its datagrams are counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_a_silent_one_dies_and_a_wrong_key_stays_out() {
    let mut all = Vec::new();
    for node in ["n1", "n2", "n3"] {
        all.push(member(node, b"cluster key").await);
    }
    let (stranger, _) = member("n4", b"wrong key").await;
    let mut seeds: BTreeMap<String, SocketAddr> = all
        .iter()
        .zip(["n1", "n2", "n3"])
        .map(|((m, _), n)| (n.to_string(), m.local_addr()))
        .collect();
    seeds.insert("n4".into(), stranger.local_addr());
    for (m, _) in &all {
        m.seed(seeds.clone());
    }
    stranger.seed(seeds.clone());
    for (m, _) in &all {
        until(m, |l| l.settled && l.alive == names(&["n1", "n2", "n3"])).await;
    }
    assert_eq!(stranger.liveness().borrow().alive, names(&["n4"]));
    // The stranger's datagrams may still be on their way when the others settle.
    let rejected = || all.iter().map(|(_, m)| m.rejected.get()).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rejected() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rejected() > 0, "no datagram of the stranger was rejected");

    all[2].0.crash();
    let took = until(&all[0].0, |l| l.alive == names(&["n1", "n2"])).await;
    until(&all[1].0, |l| l.alive == names(&["n1", "n2"])).await;
    assert!(
        took < Duration::from_secs(3),
        "declared dead after {took:?}"
    );
}

/// The attack replay protection is for: datagrams of a speaker, captured while it lived,
/// played after it died to a speaker that has just started, and so knows no stamp of it.
/// (A speaker that heard it live has its last stamp; a datagram sent to another node does
/// not verify here at all.) They are dropped, and the dead speaker is never taken for alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_datagrams_of_a_dead_speaker_played_to_a_new_one_are_dropped() {
    let tap = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (victim, _) = member("n2", b"cluster key").await;
    // The victim takes the tap for node n1 and announces itself to it again and again: the
    // tap keeps what it sends.
    victim.seed([("n1".to_string(), tap.local_addr().unwrap())].into());
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while captured.len() < 2 {
        let (len, _) = tokio::time::timeout(Duration::from_secs(10), tap.recv_from(&mut buf))
            .await
            .expect("the victim announces itself")
            .unwrap();
        captured.push(buf[..len].to_vec());
    }
    victim.crash();

    // n1's speaker starts, and hears the captured datagrams over and over for 2 s.
    let (n1, metrics) = member("n1", b"cluster key").await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for datagram in &captured {
            tap.send_to(datagram, n1.local_addr()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen.extend(n1.liveness().borrow().alive.iter().cloned());
    }
    assert_eq!(seen, names(&["n1"]), "the replays were taken");
    assert!(
        metrics.replayed.get() >= 50,
        "replays dropped: {}",
        metrics.replayed.get()
    );
    assert_eq!(metrics.rejected.get(), 0);
}

/// The formats of the datagrams `wire` sends `to` (received on `at`) for one message.
async fn formats(wire: &mut Wire, to: &Speaker, at: &UdpSocket) -> Vec<u8> {
    wire.send(to, b"ping").await;
    let mut formats = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), at.recv_from(&mut buf)).await
    {
        formats.push(buf[0]);
    }
    formats
}

/// During a rolling upgrade from ferrolb 0.1, with format 2 accepted: a speaker heard only
/// in format 2 gets a format-2 copy of each datagram; once heard in format 3, only that.
#[tokio::test]
async fn format_2_copies_go_only_to_speakers_heard_in_format_2() {
    let options = MembersOptions {
        node: "new".into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        key: b"k".to_vec(),
        timings: Timings::default(),
        accept_format_2: true,
    };
    let metrics = Arc::new(MembersMetrics::default());
    let socket = UdpSocket::bind(options.bind).await.unwrap();
    let mut wire = Wire::new(socket, &options, Arc::clone(&metrics));
    let old = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let old_speaker = Speaker::new("old", old.local_addr().unwrap());
    let mut sealer = seal::Sealer::new(b"k", "old");
    assert_eq!(
        wire.check(&sealer.seal_format_2(b"ping"), old_speaker.addr),
        Some(&b"ping"[..])
    );
    assert_eq!(formats(&mut wire, &old_speaker, &old).await, [3, 2]);
    let upgraded = sealer.seal(b"ping", "new", now_micros());
    assert_eq!(wire.check(&upgraded, old_speaker.addr), Some(&b"ping"[..]));
    assert_eq!(formats(&mut wire, &old_speaker, &old).await, [3]);
    assert_eq!(metrics.rejected.get(), 0);
}

/// A flood of junk on the gossip port from one address, at 100 times the source's budget:
/// its datagrams past the budget are dropped unread (no tag computed for them), and the
/// members gossiping through it never lose sight of each other. (A flood faster than the
/// receiver drains its socket loses real datagrams in the kernel too; that is what the
/// suspicion timeout rides out, within limits no test on a shared machine can pin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_dropped_unread_and_the_members_stay_alive() {
    // Slower than the defaults, so that a test machine busy with other tests does not
    // declare a member dead for a stall of its own: what is tested is the flood.
    let timings = Timings {
        probe_period: Duration::from_millis(500),
        probe_rtt: Duration::from_millis(250),
        suspect_to_down: Duration::from_secs(3),
    };
    let (n1, metrics) = member_with("n1", b"cluster key", timings).await;
    let (n2, _) = member_with("n2", b"cluster key", timings).await;
    let seeds: BTreeMap<String, SocketAddr> = [
        ("n1".to_string(), n1.local_addr()),
        ("n2".to_string(), n2.local_addr()),
    ]
    .into();
    n1.seed(seeds.clone());
    n2.seed(seeds);
    until(&n1, |l| l.settled && l.alive == names(&["n1", "n2"])).await;
    until(&n2, |l| l.settled && l.alive == names(&["n1", "n2"])).await;

    // Another loopback address, so the flood's source is not the members' own.
    let flooder = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let target = n1.local_addr();
    let sent = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        // 500 every 10 ms: 50,000 a second.
        while started.elapsed() < Duration::from_secs(3) {
            for _ in 0..500 {
                if flooder.send_to(&[3u8; 200], target).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    let mut saw = BTreeSet::new();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        saw.insert(n1.liveness().borrow().alive.clone());
        saw.insert(n2.liveness().borrow().alive.clone());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = sent.join().unwrap();
    assert_eq!(
        saw,
        BTreeSet::from([names(&["n1", "n2"])]),
        "a member was lost"
    );
    let checked = metrics.rejected.get();
    let dropped = metrics.dropped.get();
    // 3 s at the source's rate, its burst, and slack for a slow start of the clock.
    let allowed = u64::from(budget::PER_SOURCE) * 6;
    assert!(
        checked <= allowed,
        "{checked} of {sent} junk datagrams had their tag computed"
    );
    assert!(dropped > 0, "nothing dropped of {sent}");
}
