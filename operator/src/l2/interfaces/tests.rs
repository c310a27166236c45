use super::*;

fn link(name: &str) -> Link {
    Link {
        name: name.into(),
        up: true,
        broadcast: true,
        ipv6_link_local: true,
        ..Link::default()
    }
}

#[test]
fn the_default_list_leaves_uplinks_and_drops_container_and_cni_interfaces() {
    let ex = Exclusions::default();
    for name in ["eth0", "ens3", "bond0", "enp0s31f6", "lo0", "vlan100"] {
        assert!(!ex.excludes(name), "{name}");
    }
    for name in [
        "lo",
        "docker0",
        "veth1a2b",
        "cali123",
        "flannel.1",
        "cni0",
        "kube-ipvs0",
        "lxc_health",
        "tunl0",
        "virbr0",
        "nodelocaldns",
    ] {
        assert!(ex.excludes(name), "{name}");
    }
}

#[test]
fn only_up_free_arp_capable_interfaces_answer() {
    let ex = Exclusions::default();
    let both = Responders {
        arp: true,
        ndp: true,
    };
    assert_eq!(responders(&link("eth0"), &ex), both);
    for broken in [
        Link {
            up: false,
            ..link("eth0")
        },
        Link {
            enslaved: true,
            ..link("eth0")
        },
        Link {
            noarp: true,
            ..link("eth0")
        },
        link("docker0"),
    ] {
        assert_eq!(
            responders(&broken, &ex),
            Responders::default(),
            "{broken:?}"
        );
    }
    let point_to_point = Link {
        broadcast: false,
        ..link("wg0")
    };
    assert_eq!(
        responders(&point_to_point, &ex),
        Responders {
            arp: false,
            ndp: true
        }
    );
    let v4_only = Link {
        ipv6_link_local: false,
        ..link("eth1")
    };
    assert!(!responders(&v4_only, &ex).ndp);
}

#[test]
fn metallb_s_configmap_file_is_read_and_bad_patterns_are_named() {
    let ex = Exclusions::from_yaml("announcedInterfacesToExclude:\n- ^eth1$\n- ^br-.*\n").unwrap();
    assert!(ex.excludes("eth1") && ex.excludes("br-lan"));
    assert!(!ex.excludes("eth10") && !ex.excludes("docker0"));
    let err = Exclusions::from_yaml("announcedInterfacesToExclude: ['^ok$', '(']").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("announcedInterfacesToExclude[1]: \"(\" is not a regular expression"),
        "{err}"
    );
    assert!(Exclusions::from_yaml("announcedInterfacesToExclude: 3").is_err());
}

#[test]
fn interfaces_are_read_from_sysfs_and_if_inet6() {
    let dir = std::env::temp_dir().join(format!("ferrolb-links-{}", std::process::id()));
    let net = dir.join("class/net");
    for (index, (name, flags)) in [
        ("eth0", "0x1003"),
        ("eth1", "0x1002"),
        ("br0", "0x1003"),
        ("wg0", "0x91"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::create_dir_all(net.join(name)).unwrap();
        std::fs::write(net.join(name).join("flags"), format!("{flags}\n")).unwrap();
        std::fs::write(net.join(name).join("ifindex"), format!("{}\n", index + 2)).unwrap();
        std::fs::write(
            net.join(name).join("address"),
            format!("02:00:00:00:00:{index:02x}\n"),
        )
        .unwrap();
    }
    // eth1 is a bridge port.
    std::fs::write(net.join("eth1/master"), "").unwrap();
    // Gone before its flags could be read.
    std::fs::create_dir_all(net.join("tmp0")).unwrap();
    let inet6 = dir.join("if_inet6");
    std::fs::write(
        &inet6,
        "fe80000000000000020000fffe00000a 02 40 20 80     eth0\nfd000000000000000000000000000002 04 40 00 80     br0\n00000000000000000000000000000001 01 80 10 80       lo\n",
    )
    .unwrap();
    let links = Link::scan(&net, &inet6).unwrap();
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["br0", "eth0", "eth1", "wg0"]);
    let eth0 = &links[1];
    assert!(eth0.up && eth0.broadcast && !eth0.noarp && !eth0.enslaved && eth0.ipv6_link_local);
    assert_eq!((eth0.index, eth0.mac), (2, Mac([2, 0, 0, 0, 0, 0])));
    assert!(links[2].enslaved && !links[2].up);
    // br0 has only a global IPv6 address; wg0 is point-to-point and NOARP.
    assert!(!links[0].ipv6_link_local);
    assert!(links[3].noarp && !links[3].broadcast);
    std::fs::remove_dir_all(&dir).unwrap();

    // This machine's own loopback: up, no broadcast.
    let here = Link::scan(Path::new("/sys/class/net"), Path::new("/proc/net/if_inet6")).unwrap();
    let lo = here.iter().find(|l| l.name == "lo").expect("lo is listed");
    assert!(lo.up && !lo.broadcast);
    assert_eq!((lo.index, lo.mac), (1, Mac::ZERO));
}

#[test]
fn named_interfaces_limit_where_an_ip_is_answered() {
    let named: BTreeSet<String> = ["eth1".to_string()].into();
    assert!(answers_on(&named, "eth1"));
    assert!(!answers_on(&named, "eth0"));
    assert!(answers_on(&BTreeSet::new(), "eth0"));
}
