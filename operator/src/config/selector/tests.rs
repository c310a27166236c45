use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn obj() -> ObjectRef {
    ObjectRef::new("L2Advertisement", "metallb-system", "l2")
}

fn parse(sel: LabelSelector) -> Result<Selector, Vec<String>> {
    let mut f = Findings::default();
    parse_selector(&sel, &obj(), "spec.nodeSelectors[0]", &mut f)
        .ok_or_else(|| f.errors.iter().map(|e| e.to_string()).collect())
}

#[test]
fn match_labels_and_expressions_are_anded() {
    let sel = parse(LabelSelector {
        match_labels: Some([("zone".to_string(), "a".to_string())].into()),
        match_expressions: Some(vec![
            expr("rack", "NotIn", &["r1"]),
            expr("gpu", "DoesNotExist", &[]),
        ]),
    })
    .unwrap();
    assert!(sel.matches(&labels(&[("zone", "a"), ("rack", "r2")])));
    assert!(sel.matches(&labels(&[("zone", "a")])));
    assert!(!sel.matches(&labels(&[("zone", "a"), ("rack", "r1")])));
    assert!(!sel.matches(&labels(&[("zone", "a"), ("gpu", "yes")])));
    assert!(!sel.matches(&labels(&[("zone", "b")])));
    assert_eq!(sel.to_string(), "zone=a,rack notin (r1),!gpu");
}

#[test]
fn empty_selector_matches_everything() {
    let sel = parse(LabelSelector::default()).unwrap();
    assert!(sel.is_everything());
    assert!(sel.matches(&labels(&[("x", "y")])));
}

#[test]
fn unknown_operator_is_rejected_with_the_choices() {
    let err = parse(LabelSelector {
        match_expressions: Some(vec![expr("a", "Gt", &["1"])]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[0].matchExpressions[0].operator: \"Gt\" is not a selector operator; use In, NotIn, Exists or DoesNotExist"
        ]
    );
}

#[test]
fn operator_value_rules_are_enforced() {
    let err = parse(LabelSelector {
        match_expressions: Some(vec![expr("a", "In", &[])]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[0].matchExpressions[0].values: operator In needs at least one value"
        ]
    );
    let err = parse(LabelSelector {
        match_expressions: Some(vec![expr("a", "Exists", &["x"])]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[0].matchExpressions[0].values: operator Exists takes no values"
        ]
    );
}

#[test]
fn duplicate_values_and_expressions_are_rejected() {
    let err = parse(LabelSelector {
        match_expressions: Some(vec![expr("a", "In", &["x", "x"])]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[0].matchExpressions[0].values[1]: value \"x\" is listed twice"
        ]
    );
    let err = parse(LabelSelector {
        match_expressions: Some(vec![
            expr("a", "In", &["x", "y"]),
            expr("a", "In", &["y", "x"]),
        ]),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            "L2Advertisement/metallb-system/l2: spec.nodeSelectors[0].matchExpressions[1]: the same match expression is listed twice"
        ]
    );
}

#[test]
fn duplicate_selectors_in_a_list_are_rejected() {
    let one = LabelSelector {
        match_labels: Some([("a".to_string(), "b".to_string())].into()),
        ..Default::default()
    };
    let mut f = Findings::default();
    let out = parse_selectors(
        Some(&vec![one.clone(), one]),
        &obj(),
        "spec.nodeSelectors",
        &mut f,
    );
    assert!(out.is_none());
    assert_eq!(
        f.errors[0].to_string(),
        "L2Advertisement/metallb-system/l2: spec.nodeSelectors[1]: duplicates spec.nodeSelectors[0] (a=b)"
    );
}

#[test]
fn invalid_label_syntax_is_rejected() {
    let err = parse(LabelSelector {
        match_labels: Some([("bad key".to_string(), "v".to_string())].into()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].contains("is not a valid label key"), "{err:?}");
}
