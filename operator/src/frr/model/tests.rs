use super::policy::*;
use super::*;

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn well_known_communities_print_by_name() {
    assert_eq!(community_word(65535, 65281), "no-export");
    assert_eq!(community_word(65535, 666), "blackhole");
    assert_eq!(community_word(0, 0), "internet");
    assert_eq!(community_word(64512, 100), "64512:100");
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn no_ranges() -> FamilyNetworks {
    FamilyNetworks::new(Vec::new(), &BTreeSet::new())
}

fn lines(list: &PrefixList) -> Vec<String> {
    list.entries
        .iter()
        .map(|e| match e.le {
            Some(le) => format!("{} {} le {le}", e.action, e.prefix.unwrap()),
            None => format!("{} {}", e.action, e.prefix.unwrap()),
        })
        .collect()
}

#[test]
fn prefix_sequence_numbers_do_not_depend_on_the_other_prefixes() {
    let (a, b) = (net("10.0.0.1/32"), net("10.0.0.2/32"));
    let alone = prefix_list("l".into(), &[a], &no_ranges(), &mut SeqCache::default());
    let both = prefix_list("l".into(), &[a, b], &no_ranges(), &mut SeqCache::default());
    let seq_of = |l: &PrefixList, p: IpNet| {
        l.entries
            .iter()
            .find(|e| e.prefix == Some(p))
            .map(|e| e.seq)
    };
    assert_eq!(seq_of(&alone, a), seq_of(&both, a));
    assert!(both.entries.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn colliding_sequence_numbers_move_to_the_next_free_one() {
    let (a, b) = (net("10.0.0.1/32"), net("10.0.0.2/32"));
    let mut seqs = SeqCache::default();
    seqs.0.insert((a, false), MAX_HASHED_SEQ);
    seqs.0.insert((b, false), MAX_HASHED_SEQ);
    let list = prefix_list("l".into(), &[a, b], &no_ranges(), &mut seqs);
    let pairs: Vec<(u32, Option<IpNet>)> = list.entries.iter().map(|e| (e.seq, e.prefix)).collect();
    assert_eq!(pairs, [(1, Some(b)), (MAX_HASHED_SEQ, Some(a))]);
}

#[test]
fn a_list_holding_every_network_of_a_pool_cidr_holds_the_cidr() {
    let pools: BTreeSet<IpNet> =
        [net("10.0.0.0/24"), net("10.0.1.0/24"), net("10.9.9.9/32")].into();
    let all: BTreeSet<IpNet> = [
        "10.0.0.1/32",
        "10.0.0.2/32",
        "10.0.0.3/32",
        "10.0.1.1/32",
        "10.0.1.2/32",
        "10.0.0.0/16",
        "10.9.9.9/32",
    ]
    .map(net)
    .into();
    let networks = FamilyNetworks::new(all.iter().copied().collect(), &pools);
    // A /32 pool is never a range, and the /16 aggregate lies in no pool CIDR.
    let every: Vec<IpNet> = all.iter().copied().collect();
    let list = prefix_list("l".into(), &every, &networks, &mut SeqCache::default());
    let mut got = lines(&list);
    got.sort();
    assert_eq!(
        got,
        [
            "permit 10.0.0.0/16",
            "permit 10.0.0.0/24 le 32",
            "permit 10.0.1.0/24 le 32",
            "permit 10.9.9.9/32"
        ]
    );
    // Missing one network of 10.0.0.0/24: its members are listed one by one.
    let some = ["10.0.0.1/32", "10.0.0.2/32", "10.0.1.1/32", "10.0.1.2/32"].map(net);
    let list = prefix_list("l".into(), &some, &networks, &mut SeqCache::default());
    let mut got = lines(&list);
    got.sort();
    assert_eq!(
        got,
        [
            "permit 10.0.0.1/32",
            "permit 10.0.0.2/32",
            "permit 10.0.1.0/24 le 32"
        ]
    );
}

#[test]
fn attributes_name_their_list_and_long_ones_are_hashed() {
    let mut attributes = RouteAttributes::default();
    assert_eq!(attributes_word(&attributes), "plain");
    attributes.local_pref = Some(200);
    attributes
        .communities
        .insert(BgpCommunity::Standard(64500, 100));
    attributes
        .communities
        .insert(BgpCommunity::Large(64500, 1, 2));
    assert_eq!(attributes_word(&attributes), "lp200-c64500:100-lc64500:1:2");
    assert_eq!(
        set_lines(&attributes),
        [
            "community 64500:100 additive",
            "large-community 64500:1:2 additive",
            "local-preference 200"
        ]
    );
    for i in 0..10 {
        attributes
            .communities
            .insert(BgpCommunity::Standard(64500, i));
    }
    let word = attributes_word(&attributes);
    assert!(word.starts_with('a') && word.len() == 9, "{word}");
}

#[test]
fn the_router_id_is_the_nodes_ipv4_address_unless_a_peer_sets_one() {
    let node = |addresses: &[&str]| NodeView {
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        ..NodeView::named("node-a")
    };
    // The first IPv4 address, wherever the IPv6 ones are.
    assert_eq!(
        node_router_id(&node(&["fd00::11", "10.0.0.11", "10.0.0.99"])),
        Some(Ipv4Addr::new(10, 0, 0, 11))
    );
    // IPv6 only: stable, from the name.
    let six = node_router_id(&node(&["fd00::11"]));
    assert_eq!(six, Some(Ipv4Addr::from(crc32(b"node-a"))));
    // Addresses not known: FRR picks.
    assert_eq!(node_router_id(&node(&[])), None);
}
