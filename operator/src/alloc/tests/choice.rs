//! The [`Choice`] behind a decision: how the pool was found, why every other pool was not.

use super::*;

fn choice_of(config: &Config, services: &[AllocService], name: &str) -> Choice {
    let key = services
        .iter()
        .find(|s| s.key.name == name)
        .unwrap()
        .key
        .clone();
    let (_, mut decisions) = allocate_all_explaining(config, services, &scope(), Some(&key));
    let choice = decisions.remove(&key).unwrap().choice.map(|c| *c);
    assert!(
        decisions.values().all(|d| d.choice.is_none()),
        "only the Service asked about carries its choice"
    );
    choice.unwrap()
}

#[test]
fn the_choice_says_why_each_other_pool_was_refused() {
    let config = load(&format!(
        "{}{}{}{}",
        pool(
            "full",
            "{addresses: [10.0.0.0/32], serviceAllocation: {priority: 1, namespaces: [ns]}}"
        ),
        pool("open", "{addresses: [10.0.1.0/24]}"),
        pool("manual", "{addresses: [10.0.2.0/24], autoAssign: false}"),
        pool("six", "{addresses: [\"2001:db8::/64\"]}")
    ));
    let first = svc("ns", "first");
    let second = svc("ns", "second");
    let choice = choice_of(&config, &[first.clone(), second.clone()], "second");
    assert_eq!(choice.how, Some(How::Automatic));
    let reasons: Vec<(&str, &str)> = choice
        .refused
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("full", "pool full exhausted (1/1 IPv4 in use)"),
            (
                "manual",
                "autoAssign: false (used only when asked for by name or IP)"
            ),
            ("six", "it has no IPv4 addresses"),
        ],
        "the tried pool says how full it was; 'open' was chosen"
    );

    // A requested IP refused in its pool: the pool says exactly why, the others that the IP
    // is not theirs.
    let mut clash = sharing("clash", "k", 80);
    clash.requested_ips = Ok(vec![ip("10.0.1.0")]);
    let holder = sharing("holder", "k", 80);
    let mut holder_kept = holder.clone();
    holder_kept.ingress = vec![ip("10.0.1.0")];
    let choice = choice_of(&config, &[holder_kept, clash], "clash");
    assert_eq!(choice.how, Some(How::RequestedIps));
    assert_eq!(
        choice.refused["open"],
        "port TCP/80 of IP 10.0.1.0 is already used by ns/holder"
    );
    assert_eq!(choice.refused["full"], "the requested IPs are not in it");

    // Kept IPs and a Service refused before any pool: every pool says so.
    let mut kept = svc("ns", "kept");
    kept.ingress = vec![ip("10.0.1.9")];
    let choice = choice_of(&config, std::slice::from_ref(&kept), "kept");
    assert_eq!(choice.how, Some(How::Kept));
    assert_eq!(choice.refused["full"], "the Service keeps the IPs it holds");
    let mut dual = svc("ns", "dual");
    dual.policy = FamilyPolicy::RequireDualStack;
    let choice = choice_of(&config, std::slice::from_ref(&dual), "dual");
    assert_eq!(choice.how, None);
    assert!(
        choice
            .refused
            .values()
            .all(|r| r.contains("RequireDualStack")),
        "{choice:?}"
    );
}
