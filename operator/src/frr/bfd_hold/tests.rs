use super::*;
use crate::frr::fixtures::{advertisement, bfd, model, peer, pool, service};

/// Two peers with BFD (one in a VRF) and one without.
fn with_bfd() -> FrrConfig {
    model(
        &[
            pool("web", "198.51.100.0/24"),
            bfd("fast", "receiveInterval: 100, transmitInterval: 100"),
            peer("tor1", "10.0.0.1", ", bfdProfile: fast"),
            peer("tor2", "10.0.0.2", ", bfdProfile: fast, vrf: red"),
            peer("plain", "10.0.0.3", ""),
            advertisement("all", "web", ""),
            service("a", "198.51.100.10", ""),
        ]
        .concat(),
    )
}

fn session(vrf: &str, peer: &str, up: bool, established: u64) -> BgpSession {
    BgpSession {
        vrf: vrf.to_string(),
        peer: peer.to_string(),
        state: if up { "Established" } else { "Active" }.to_string(),
        up,
        established,
        ..BgpSession::default()
    }
}

/// A session whose peer took the connection and does not answer the OPEN.
fn awaiting(vrf: &str, peer: &str) -> BgpSession {
    BgpSession {
        state: "OpenSent".into(),
        awaiting_open: true,
        ..session(vrf, peer, false, 0)
    }
}

/// The neighbours of `model` that have BFD, as (VRF, peer).
fn bfd_peers(model: &FrrConfig) -> Vec<(Option<String>, String)> {
    model
        .routers
        .iter()
        .flat_map(|r| {
            r.neighbors
                .iter()
                .filter(|n| n.bfd_profile.is_some())
                .map(|n| (r.vrf.as_deref().map(str::to_string), n.peer.to_string()))
        })
        .collect()
}

#[test]
fn every_neighbour_is_held_until_frr_has_it() {
    let model = with_bfd();
    assert!(wants_bfd(&model));
    let hold = BfdHold::new();
    let gated = hold.gate(&model);
    assert!(bfd_peers(&gated).is_empty());
    // Only BFD is left out: the profiles and everything else stay.
    assert_eq!(gated.bfd_profiles, model.bfd_profiles);
    assert_eq!(gated.routers.len(), model.routers.len());
}

#[test]
fn a_session_that_came_up_gets_its_bfd_and_keeps_it_when_it_goes_down() {
    let model = with_bfd();
    let t0 = Instant::now();
    let mut hold = BfdHold::new();
    let down = [
        session("default", "10.0.0.1", false, 0),
        session("red", "10.0.0.2", false, 0),
    ];
    assert!(hold.observe(&down, t0).is_empty());
    // Unreachable peers wait as long as they must.
    assert!(
        hold.observe(&down, t0 + Duration::from_secs(600))
            .is_empty()
    );

    let released = hold.observe(
        &[
            session("default", "10.0.0.1", true, 1),
            session("red", "10.0.0.2", false, 0),
        ],
        t0 + Duration::from_secs(601),
    );
    assert_eq!(
        released,
        vec![Released {
            vrf: "default".into(),
            peer: "10.0.0.1".into(),
            why: Release::Established
        }]
    );
    assert_eq!(
        bfd_peers(&hold.gate(&model)),
        vec![(None, "10.0.0.1".to_string())]
    );

    // Down again (BFD saw the link fail): BFD stays, so the session waits for it.
    assert!(
        hold.observe(
            &[
                session("default", "10.0.0.1", false, 1),
                session("red", "10.0.0.2", false, 0),
            ],
            t0 + Duration::from_secs(602),
        )
        .is_empty()
    );
    assert!(hold.released(None, "10.0.0.1"));
}

#[test]
fn a_neighbour_whose_peer_does_not_answer_the_open_gets_its_bfd_after_the_wait() {
    // FRR 10 with BFD for a neighbour sends its OPEN only once BFD is up: held forever,
    // neither side would move.
    let model = with_bfd();
    let t0 = Instant::now();
    let mut hold = BfdHold::new();
    hold.observe(&[session("red", "10.0.0.2", false, 0)], t0);
    let t1 = t0 + Duration::from_secs(10);
    let red = [awaiting("red", "10.0.0.2")];
    hold.observe(&red, t1);
    assert!(
        hold.observe(&red, t1 + RELEASE_AFTER - Duration::from_millis(1))
            .is_empty()
    );
    // Between two connections (FRR retries) the wait goes on; found waiting again after
    // the whole wait, the neighbour gets its BFD.
    let retrying = [session("red", "10.0.0.2", false, 0)];
    assert!(hold.observe(&retrying, t1 + RELEASE_AFTER).is_empty());
    let released = hold.observe(&red, t1 + RELEASE_AFTER);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].why, Release::PeerWaits);
    assert_eq!(
        bfd_peers(&hold.gate(&model)),
        vec![(Some("red".to_string()), "10.0.0.2".to_string())]
    );
}

#[test]
fn a_restarted_bgpd_or_a_removed_neighbour_starts_over() {
    let t0 = Instant::now();
    let mut hold = BfdHold::new();
    hold.observe(&[session("default", "10.0.0.1", true, 3)], t0);
    assert!(hold.released(None, "10.0.0.1"));
    // bgpd restarted: its counter starts again from 0.
    hold.observe(&[session("default", "10.0.0.1", false, 0)], t0);
    assert!(!hold.released(None, "10.0.0.1"));
    hold.observe(&[session("default", "10.0.0.1", true, 1)], t0);
    assert!(hold.released(None, "10.0.0.1"));
    // Gone from FRR (the peer was deleted), then back: held again.
    hold.observe(&[], t0);
    hold.observe(&[session("default", "10.0.0.1", false, 0)], t0);
    assert!(!hold.released(None, "10.0.0.1"));
}

#[test]
fn nothing_is_copied_when_nothing_is_held() {
    let both = with_bfd();
    let mut hold = BfdHold::new();
    hold.observe(
        &[
            session("default", "10.0.0.1", true, 1),
            session("red", "10.0.0.2", true, 1),
        ],
        Instant::now(),
    );
    assert!(matches!(hold.gate(&both), Cow::Borrowed(_)));
    let plain = model(
        &[
            pool("web", "198.51.100.0/24"),
            peer("plain", "10.0.0.3", ""),
        ]
        .concat(),
    );
    assert!(!wants_bfd(&plain));
    assert!(matches!(BfdHold::new().gate(&plain), Cow::Borrowed(_)));
}

#[test]
fn the_boot_file_is_the_rendering_without_any_neighbours_bfd() {
    use crate::frr::{Dialect, render};
    let model = with_bfd();
    for dialect in [Dialect::Frr8, Dialect::Frr10] {
        let full = render(&model, dialect).unwrap();
        let held = render(&BfdHold::new().gate(&model), dialect).unwrap();
        assert_ne!(full, held);
        assert_eq!(boot_text(&full), format!("{BOOT_NOTE}{held}"));
        // The profiles stay; only the neighbours' lines go.
        assert!(boot_text(&full).contains("\nbfd\n profile fast\n"));
    }
}
