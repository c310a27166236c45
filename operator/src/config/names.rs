//! Grammars for the strings ferrolb accepts: Kubernetes names and label syntax, and the
//! stricter forms required of anything that reaches frr.conf (one word, no control
//! characters, within FRR's and Linux's length limits), so no object can inject FRR commands.

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
pub(crate) const MAX_INTERFACE_LEN: usize = 15;
/// Longest BFD profile name FRR accepts.
pub(crate) const MAX_BFD_PROFILE_LEN: usize = 63;
/// Longest TCP MD5 key the kernel accepts.
pub(crate) const MAX_PASSWORD_LEN: usize = 80;

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 subdomain: what Kubernetes requires of most object names.
pub(crate) fn check_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 253 {
        return Err(format!("{value:?} is longer than 253 characters"));
    }
    for label in value.split('.') {
        let ok = !label.is_empty()
            && label.chars().all(|c| is_alnum_lower(c) || c == '-')
            && label.starts_with(is_alnum_lower)
            && label.ends_with(is_alnum_lower);
        if !ok {
            return Err(format!(
                "{value:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 label: the form of namespace names.
pub(crate) fn check_dns_label(value: &str) -> Result<(), String> {
    check_subdomain(value)?;
    if value.contains('.') || value.len() > 63 {
        return Err(format!(
            "{value:?} is not a valid namespace name: at most 63 characters, no '.'"
        ));
    }
    Ok(())
}

fn check_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| check_subdomain(p).is_ok());
    if !prefix_ok || !check_label_name(name) {
        return Err(format!(
            "{key:?} is not a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of the label-name alphabet.
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || check_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// One word for FRR: printable ASCII without whitespace, of at most `max` characters.
fn check_word(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{what} {value:?} contains {}; only printable ASCII without spaces is accepted",
            describe_char(c)
        ));
    }
    if value.len() > max {
        return Err(format!("{what} {value:?} is longer than {max} characters"));
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        '\n' => "a line break".to_string(),
        '\r' => "a carriage return".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("the character {c:?}"),
    }
}

/// A Linux interface name as FRR takes it in `neighbor IF interface`.
pub(crate) fn check_interface(value: &str) -> Result<(), String> {
    check_word("interface name", value, MAX_INTERFACE_LEN)?;
    if value.contains('/') || value == "." || value == ".." {
        return Err(format!(
            "interface name {value:?} is not a valid Linux interface name"
        ));
    }
    Ok(())
}

/// A Linux VRF device name, as FRR takes it in `router bgp ASN vrf NAME`.
pub(crate) fn check_vrf(value: &str) -> Result<(), String> {
    check_word("VRF name", value, MAX_INTERFACE_LEN)?;
    if value.contains('/') || value == "." || value == ".." {
        return Err(format!(
            "VRF name {value:?} is not a valid Linux device name"
        ));
    }
    if value == "default" {
        return Err("VRF name \"default\" is FRR's name for the main routing table; leave vrf unset instead".into());
    }
    Ok(())
}

/// A BFD profile name as FRR takes it in `profile NAME`.
pub(crate) fn check_bfd_profile_name(value: &str) -> Result<(), String> {
    check_subdomain(value)?;
    check_word("BFD profile name", value, MAX_BFD_PROFILE_LEN)
}

/// A TCP MD5 password as FRR takes it in `neighbor X password PASSWORD`: printable ASCII,
/// inner spaces allowed, no leading or trailing space, at most 80 characters.
pub(crate) fn check_password(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the password must not be empty".into());
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the password contains {}; FRR takes the password as one word of printable ASCII",
            describe_char(c)
        ));
    }
    if value.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_LEN} characters, the TCP MD5 key limit"
        ));
    }
    Ok(())
}

/// A Community alias name: one word without whitespace or control characters.
pub(crate) fn check_alias(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the alias name must not be empty".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "alias name {value:?} contains {}",
            describe_char(c)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_accept_kubernetes_names_and_reject_others() {
        assert!(check_subdomain("prod-pool.v1").is_ok());
        assert_eq!(
            check_subdomain("Prod").unwrap_err(),
            "\"Prod\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        );
        assert!(check_subdomain("-a").is_err());
        assert!(check_subdomain("a..b").is_err());
        assert!(check_subdomain(&"a".repeat(254)).is_err());
    }

    #[test]
    fn label_keys_allow_a_dns_prefix() {
        assert!(check_label_key("kubernetes.io/hostname").is_ok());
        assert!(check_label_key("zone").is_ok());
        assert!(check_label_key("bad key").is_err());
        assert!(check_label_key("UPPER.example/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a b").is_err());
    }

    #[test]
    fn words_for_frr_reject_whitespace_and_control_characters() {
        assert!(check_interface("eth0.100").is_ok());
        assert_eq!(
            check_interface("eth0\nrouter bgp 1").unwrap_err(),
            "interface name \"eth0\\nrouter bgp 1\" contains a line break; only printable ASCII without spaces is accepted"
        );
        assert!(check_interface("averyveryverylongname").is_err());
        assert!(check_vrf("red").is_ok());
        assert!(check_vrf("re d").is_err());
        assert!(check_vrf("default").is_err());
        assert!(check_bfd_profile_name("fast").is_ok());
        assert!(check_bfd_profile_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn passwords_are_one_word_of_printable_ascii() {
        assert!(check_password("a!b#c?d\"e'f\\g{h}|~`$%^&*()_+-=;:,.<>/").is_ok());
        assert_eq!(
            check_password("pw\r\n neighbor 1.1.1.1 shutdown").unwrap_err(),
            "the password contains a carriage return; FRR takes the password as one word of printable ASCII"
        );
        assert_eq!(
            check_password("pass word").unwrap_err(),
            "the password contains a space; FRR takes the password as one word of printable ASCII"
        );
        assert!(check_password(" lead").is_err());
        assert!(check_password("caf\u{e9}").is_err());
        assert!(check_password(&"x".repeat(81)).is_err());
        assert!(check_password("").is_err());
    }
}
