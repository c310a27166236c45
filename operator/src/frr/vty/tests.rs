use super::*;

#[tokio::test]
async fn the_daemons_are_the_vty_sockets_but_watchfrr_and_a_late_one_makes_the_set_stale() {
    let dir = std::env::temp_dir().join(format!("ferrolb-vty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut listeners = Vec::new();
    for daemon in ["zebra", "watchfrr"] {
        listeners.push(
            std::os::unix::net::UnixListener::bind(dir.join(format!("{daemon}.vty"))).unwrap(),
        );
    }
    std::fs::write(dir.join("zserv.api"), "").unwrap();
    std::fs::write(dir.join("zebra.pid"), "1").unwrap();
    let found: Vec<String> = daemon_sockets(&dir).unwrap().into_keys().collect();
    assert_eq!(found, ["zebra"]);
    // Connected to zebra alone (its "enable" is never answered here, so the set is
    // built by hand); bgpd's socket appearing makes it stale.
    let stream = UnixStream::connect(dir.join("zebra.vty")).await.unwrap();
    let vty = Vty {
        connections: BTreeMap::from([(
            "zebra".to_string(),
            Connection {
                stream,
                buffer: Vec::new(),
            },
        )]),
    };
    assert!(!vty.is_stale(&dir));
    listeners.push(std::os::unix::net::UnixListener::bind(dir.join("bgpd.vty")).unwrap());
    assert!(vty.is_stale(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn texts<'a>(routed: &'a [(String, Vec<Routed<'_>>)], daemon: &str) -> Vec<(&'a str, bool)> {
    routed
        .iter()
        .find(|(d, _)| d == daemon)
        .map(|(_, l)| l.iter().map(|r| (r.text, r.checked)).collect())
        .unwrap_or_default()
}

#[test]
fn each_block_goes_to_its_daemons_and_route_map_sets_to_bgpd_alone() {
    let commands = lines(
        "log stdout informational\nip nht resolve-via-default\nbfd\n profile fast\n  detect-multiplier 3\n exit\nexit\nip prefix-list pl seq 1 permit 10.0.0.1/32\nroute-map rm permit 1\n match ip address prefix-list pl\n set community 1:1\nexit\nrouter bgp 64512\n neighbor 10.0.0.1 remote-as 64513\n address-family ipv4 unicast\n  network 10.0.0.1/32\n exit-address-family\nexit\nno route-map old\nno router bgp 64999",
    );
    // Zebra's lines go to zebra on FRR 8.4, to mgmtd on FRR 10 (zebra keeps `log`).
    for (dialect, daemons, order, front) in [
        (
            Dialect::Frr8,
            &["bfdd", "bgpd", "staticd", "zebra"][..],
            &["bfdd", "zebra", "staticd", "bgpd"][..],
            "zebra",
        ),
        (
            Dialect::Frr10,
            &["bfdd", "bgpd", "mgmtd", "staticd", "zebra"][..],
            &["bfdd", "mgmtd", "zebra", "staticd", "bgpd"][..],
            "mgmtd",
        ),
    ] {
        let routed = route(&commands, daemons, dialect).unwrap();
        let got: Vec<&str> = routed.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(got, order, "{dialect}");
        assert_eq!(
            texts(&routed, "bfdd"),
            [
                ("log stdout informational", true),
                ("bfd", true),
                (" profile fast", true),
                ("  detect-multiplier 3", true),
                (" exit", true),
                ("exit", true),
                ("ip prefix-list pl seq 1 permit 10.0.0.1/32", false),
            ]
        );
        assert_eq!(
            texts(&routed, front),
            [
                ("log stdout informational", true),
                ("ip nht resolve-via-default", true),
                ("ip prefix-list pl seq 1 permit 10.0.0.1/32", false),
                ("route-map rm permit 1", false),
                (" match ip address prefix-list pl", false),
                ("exit", false),
                ("no route-map old", false),
            ],
            "{dialect}"
        );
        for bystander in ["staticd", "zebra"].into_iter().filter(|d| *d != front) {
            assert_eq!(
                texts(&routed, bystander),
                [("log stdout informational", true)],
                "{dialect}"
            );
        }
        let bgpd = texts(&routed, "bgpd");
        assert!(bgpd.contains(&(" set community 1:1", true)));
        assert!(bgpd.contains(&("  network 10.0.0.1/32", true)));
        assert_eq!(bgpd.last(), Some(&("no router bgp 64999", true)));
        assert!(bgpd.iter().all(|(_, checked)| *checked));
    }
}

#[test]
fn lines_outside_the_grammar_or_without_their_daemon_are_unroutable() {
    for text in [
        "interface eth0\n ip address 10.0.0.1/24\nexit",
        " stray",
        "exit",
        "ip route 10.0.0.0/8 Null0",
    ] {
        assert!(
            matches!(
                route(&lines(text), &["zebra", "bgpd", "bfdd"], Dialect::Frr8),
                Err(VtyError::Unroutable(_))
            ),
            "{text}"
        );
    }
    let err = route(
        &lines("bfd\n profile x\n exit\nexit"),
        &["zebra", "bgpd"],
        Dialect::Frr8,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no direct route for \"bfd (bfdd is not running)\""
    );
}

#[test]
fn answers_are_split_at_their_terminators() {
    let mut buffer = b"first\n\0\0\0\0% Unknown command\n\0\0\0\x02par".to_vec();
    assert_eq!(
        take_reply(&mut buffer),
        Some(Reply {
            status: 0,
            output: "first\n".into()
        })
    );
    assert_eq!(
        take_reply(&mut buffer),
        Some(Reply {
            status: 2,
            output: "% Unknown command\n".into()
        })
    );
    assert_eq!(take_reply(&mut buffer), None);
    assert_eq!(buffer, b"par");
}

mod hostile_replies {
    //! Whatever a daemon or vtysh sends back — garbage bytes, JSON of any shape, text that
    //! looks almost like a configuration — the readers return an answer or an error and
    //! never panic: the speaker reads these every few seconds.

    use proptest::prelude::*;
    use serde_json::Value;

    use crate::frr::running::{
        canonical, digest, first_difference, is_blank, normalise_running, same_configuration,
    };
    use crate::frr::sessions::{bfd_sessions, bgp_sessions};

    /// JSON values of any shape, a few levels deep, with the keys FRR's replies use.
    fn json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "bgpState",
            "messageStats",
            "opensRecv",
            "updatesSent",
            "addressFamilyInfo",
            "sentPrefixCounter",
            "connectionsEstablished",
            "connectionsDropped",
            "vrfName",
            "peer",
            "vrf",
            "status",
            "default",
            "10.0.0.1",
        ])
        .prop_map(str::to_string);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Lines that look like FRR's configuration, shuffled and cut anywhere.
    fn config_text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("Current configuration:".to_string()),
            Just("!".to_string()),
            Just("exit".to_string()),
            Just(" exit-address-family".to_string()),
            Just("router bgp 64512".to_string()),
            Just(" address-family ipv4 unicast".to_string()),
            Just("bfd".to_string()),
            Just("end".to_string()),
            "[ a-z0-9./:-]{0,30}",
        ];
        prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn session_readers_take_any_json(value in json()) {
            let text = value.to_string();
            let _ = bgp_sessions(&text);
            let _ = bfd_sessions(&text);
        }

        #[test]
        fn session_readers_take_any_text(text in ".{0,200}") {
            let _ = bgp_sessions(&text);
            let _ = bfd_sessions(&text);
        }

        #[test]
        fn the_reply_splitter_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut buffer = bytes;
            let before = buffer.len();
            while let Some(_reply) = super::take_reply(&mut buffer) {}
            prop_assert!(buffer.len() <= before);
        }

        #[test]
        fn the_running_configuration_readers_take_any_text(a in config_text(), b in config_text()) {
            let (a, b) = (normalise_running(&a), normalise_running(&b));
            let _ = is_blank(&a);
            let _ = canonical(&a);
            let _ = first_difference(&a, &b);
            let _ = same_configuration(&a, &b);
            let _ = digest(&a);
        }
    }
}
