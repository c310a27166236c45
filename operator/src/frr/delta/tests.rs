use super::*;
use crate::frr::fixtures::{advertisement, bfd, model, peer, pool, service};

fn base() -> String {
    [
        pool("web", "198.51.100.0/24"),
        peer("tor1", "10.0.0.1", ""),
        advertisement("all", "web", ""),
        service("a", "198.51.100.10", ""),
        service("b", "198.51.100.11", ""),
    ]
    .concat()
}

#[test]
fn the_same_configuration_needs_no_command() {
    let a = model(&base());
    assert!(diff(&a, &a).unwrap().is_empty());
}

#[test]
fn a_new_service_in_a_covered_pool_is_one_network_line() {
    let a = model(&base());
    let b = model(&(base() + &service("c", "198.51.100.12", "")));
    let delta = diff(&a, &b).unwrap();
    assert_eq!(
        delta.commands,
        [
            "router bgp 64512",
            " address-family ipv4 unicast",
            "  network 198.51.100.12/32",
            " exit-address-family",
            "exit"
        ]
    );
    assert!(delta.refresh.is_empty());
    assert_eq!((delta.networks_added, delta.networks_removed), (1, 0));
    let back = diff(&b, &a).unwrap();
    assert_eq!(back.commands[2], "  no network 198.51.100.12/32");
    assert_eq!((back.networks_added, back.networks_removed), (0, 1));
}

/// Where the first command starting with `text` is.
fn position(commands: &[String], text: &str) -> usize {
    commands
        .iter()
        .position(|c| c.starts_with(text))
        .unwrap_or_else(|| panic!("no {text:?} in {commands:#?}"))
}

#[test]
fn a_removed_peer_goes_before_its_route_map_and_lists() {
    let a = model(&(base() + &peer("tor2", "10.0.0.2", "")));
    let b = model(&base());
    let delta = diff(&a, &b).unwrap();
    let at = |text: &str| position(&delta.commands, text);
    assert!(at(" no neighbor 10.0.0.2") < at("no route-map 10.0.0.2-out-"));
    assert!(at(" no neighbor 10.0.0.2") < at("no ip prefix-list 10.0.0.2-plain-ipv4"));
}

#[test]
fn a_new_peer_comes_after_its_lists_and_route_map() {
    let a = model(&base());
    let b = model(&(base() + &peer("tor2", "10.0.0.2", ", holdTime: 9s")));
    let delta = diff(&a, &b).unwrap();
    let at = |text: &str| position(&delta.commands, text);
    assert!(at("ip prefix-list 10.0.0.2-plain-ipv4") < at(" neighbor 10.0.0.2 remote-as"));
    assert!(at("route-map 10.0.0.2-out-") < at("  neighbor 10.0.0.2 route-map"));
    assert!(
        delta
            .commands
            .contains(&" neighbor 10.0.0.2 timers 3 9".to_string())
    );
}

#[test]
fn a_policy_change_attaches_a_new_route_map_instead_of_editing_one() {
    let a = model(&base());
    let tagged = [
        pool("web", "198.51.100.0/24"),
        peer("tor1", "10.0.0.1", ""),
        advertisement("all", "web", ", communities: [\"64512:7\"]"),
        service("a", "198.51.100.10", ""),
        service("b", "198.51.100.11", ""),
    ]
    .concat();
    let b = model(&tagged);
    let delta = diff(&a, &b).unwrap();
    let new_map = &b.route_maps[0].name;
    assert!(
        delta
            .commands
            .contains(&format!("  neighbor 10.0.0.1 route-map {new_map} out"))
    );
    assert!(
        delta
            .commands
            .contains(&format!("no route-map {}", a.route_maps[0].name))
    );
    assert!(delta.refresh.is_empty(), "re-pointing refreshes by itself");
}

#[test]
fn a_network_moving_between_existing_lists_refreshes_the_neighbour() {
    // Two advertisements split the pool by Service label: `hot` Services get a community.
    let world = |hot: &str| {
        [
            pool("web", "198.51.100.0/24"),
            peer("tor1", "10.0.0.1", ""),
            advertisement(
                "hot",
                "web",
                ", communities: [\"64512:7\"], serviceSelectors: [{matchLabels: {hot: \"yes\"}}]",
            ),
            advertisement(
                "cold",
                "web",
                ", serviceSelectors: [{matchLabels: {hot: \"no\"}}]",
            ),
            service("a", "198.51.100.10", "hot: \"yes\""),
            service("b", "198.51.100.11", "hot: \"no\""),
            service("c", "198.51.100.12", &format!("hot: \"{hot}\"")),
        ]
        .concat()
    };
    let a = model(&world("no"));
    let b = model(&world("yes"));
    assert_eq!(a.route_maps[0].name, b.route_maps[0].name);
    let delta = diff(&a, &b).unwrap();
    assert_eq!(
        delta.refresh,
        ["clear bgp ipv4 unicast 10.0.0.1 soft out"],
        "{:#?}",
        delta.commands
    );
}

#[test]
fn a_route_map_changed_under_its_name_needs_a_reload() {
    let a = model(&base());
    let mut b = a.clone();
    b.route_maps[0].entries[0]
        .set
        .push("local-preference 7".into());
    let error = diff(&a, &b).unwrap_err();
    assert!(error.0.contains("would change in place"), "{error}");
}

#[test]
fn a_bfd_profile_edit_types_defaults_explicitly() {
    let with = |spec: &str| {
        model(&(base() + &bfd("fast", spec) + &peer("tor2", "10.0.0.2", ", bfdProfile: fast")))
    };
    let a = with("receiveInterval: 100, echoMode: true");
    let b = with("transmitInterval: 100");
    let delta = diff(&a, &b).unwrap();
    assert_eq!(
        delta.commands,
        [
            "bfd",
            " profile fast",
            "  transmit-interval 100",
            "  receive-interval 300",
            "  no echo-mode",
            " exit",
            "exit"
        ]
    );
}

#[test]
fn the_last_bfd_profile_going_removes_the_bfd_node() {
    let a = model(&(base() + &bfd("fast", "") + &peer("tor2", "10.0.0.2", ", bfdProfile: fast")));
    let b = model(&(base() + &peer("tor2", "10.0.0.2", "")));
    let delta = diff(&a, &b).unwrap();
    assert_eq!(delta.commands.last().map(String::as_str), Some("no bfd"));
    assert!(
        delta
            .commands
            .contains(&" no neighbor 10.0.0.2 bfd".to_string())
    );
}
