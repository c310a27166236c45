//! FRR's session state, read from `show bgp vrf all neighbors json` and
//! `show bfd peers json` into typed values. Pure: the speaker runs the commands and hands the
//! text here. Fields FRR leaves out (a session that never came up has no prefix counters)
//! read as zero; text that is not the JSON FRR prints is an error.

use std::collections::BTreeMap;

use serde_json::Value;

/// One BGP session as FRR reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpSession {
    /// The VRF (`default` for the default one).
    pub vrf: String,
    /// The neighbour: address or interface.
    pub peer: String,
    /// FRR's state word (`Established`, `Active`, `Connect`, …).
    pub state: String,
    /// Whether the session is Established.
    pub up: bool,
    /// Prefixes sent to the neighbour, over every address family.
    pub prefixes_sent: u64,
    /// UPDATE messages sent.
    pub updates_sent: u64,
    /// Times the session came up.
    pub established: u64,
    /// Times it went down.
    pub dropped: u64,
    /// The neighbour took the connection and has never answered an OPEN: FRR is in
    /// OpenSent and has received none (an FRR with BFD configured waits for BFD so).
    pub awaiting_open: bool,
}

/// One BFD session as FRR reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdSession {
    /// The peer address.
    pub peer: String,
    /// The VRF.
    pub vrf: String,
    /// `up`, `down`, `init` or `shutdown`.
    pub status: String,
}

impl BfdSession {
    /// Whether the session is up.
    pub fn up(&self) -> bool {
        self.status == "up"
    }
}

/// Why state text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// Not JSON.
    #[error("FRR's {what} is not JSON: {source}")]
    NotJson {
        /// Which command.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// JSON of another shape.
    #[error("FRR's {what} has an unexpected shape")]
    Shape {
        /// Which command.
        what: &'static str,
    },
}

fn parse(text: &str, what: &'static str) -> Result<Value, SessionsError> {
    // vtysh prints `{}` or nothing at all when a daemon has nothing to say.
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|source| SessionsError::NotJson { what, source })
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Reads `show bgp vrf all neighbors json`: sessions by (VRF, neighbour).
pub fn bgp_sessions(text: &str) -> Result<Vec<BgpSession>, SessionsError> {
    const WHAT: &str = "show bgp vrf all neighbors json";
    let value = parse(text, WHAT)?;
    let vrfs = value
        .as_object()
        .ok_or(SessionsError::Shape { what: WHAT })?;
    let mut out = Vec::new();
    for (vrf_key, vrf) in vrfs {
        let Some(neighbors) = vrf.as_object() else {
            continue;
        };
        let vrf_name = neighbors
            .get("vrfName")
            .and_then(Value::as_str)
            .unwrap_or(vrf_key)
            .to_string();
        for (peer, n) in neighbors {
            if !n.is_object() {
                continue; // vrfId, vrfName
            }
            let state = n["bgpState"].as_str().unwrap_or("Unknown").to_string();
            let prefixes_sent = n["addressFamilyInfo"]
                .as_object()
                .map(|families| {
                    families
                        .values()
                        .map(|f| number(&f["sentPrefixCounter"]))
                        .sum()
                })
                .unwrap_or(0);
            let awaiting_open = state == "OpenSent" && number(&n["messageStats"]["opensRecv"]) == 0;
            out.push(BgpSession {
                vrf: vrf_name.clone(),
                peer: peer.clone(),
                up: state == "Established",
                state,
                prefixes_sent,
                updates_sent: number(&n["messageStats"]["updatesSent"]),
                established: number(&n["connectionsEstablished"]),
                dropped: number(&n["connectionsDropped"]),
                awaiting_open,
            });
        }
    }
    out.sort_by(|a, b| (&a.vrf, &a.peer).cmp(&(&b.vrf, &b.peer)));
    Ok(out)
}

/// Reads `show bfd peers json`.
pub fn bfd_sessions(text: &str) -> Result<Vec<BfdSession>, SessionsError> {
    const WHAT: &str = "show bfd peers json";
    let value = parse(text, WHAT)?;
    let list = match &value {
        Value::Array(list) => list.as_slice(),
        Value::Object(map) if map.is_empty() => &[],
        _ => return Err(SessionsError::Shape { what: WHAT }),
    };
    let mut out: Vec<BfdSession> = list
        .iter()
        .map(|p| BfdSession {
            peer: p["peer"].as_str().unwrap_or_default().to_string(),
            vrf: p["vrf"].as_str().unwrap_or("default").to_string(),
            status: p["status"].as_str().unwrap_or("unknown").to_string(),
        })
        .collect();
    out.sort_by(|a, b| (&a.vrf, &a.peer).cmp(&(&b.vrf, &b.peer)));
    Ok(out)
}

/// BGP sessions keyed by neighbour (default VRF) or `neighbour%vrf`.
pub fn by_peer(sessions: &[BgpSession]) -> BTreeMap<String, &BgpSession> {
    sessions
        .iter()
        .map(|s| {
            let key = if s.vrf == "default" {
                s.peer.clone()
            } else {
                format!("{}%{}", s.peer, s.vrf)
            };
            (key, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEIGHBORS: &str = r#"{
      "default": {
        "vrfId": 0, "vrfName": "default",
        "10.98.0.1": {
          "remoteAs": 64513, "bgpState": "Established",
          "connectionsEstablished": 2, "connectionsDropped": 1,
          "messageStats": {"updatesSent": 12, "updatesRecv": 0},
          "addressFamilyInfo": {
            "ipv4Unicast": {"sentPrefixCounter": 10000},
            "ipv6Unicast": {"sentPrefixCounter": 3}
          }
        },
        "10.98.0.3": {"remoteAs": 64520, "bgpState": "OpenSent", "connectionsEstablished": 0, "connectionsDropped": 0,
                      "messageStats": {"opensSent": 3, "opensRecv": 0}}
      },
      "red": {"vrfId": 7, "vrfName": "red", "10.1.0.1": {"bgpState": "Connect"},
              "10.1.0.2": {"bgpState": "OpenSent", "messageStats": {"opensSent": 2, "opensRecv": 1}}}
    }"#;

    #[test]
    fn neighbours_of_every_vrf_are_read_with_their_counters() {
        let sessions = bgp_sessions(NEIGHBORS).unwrap();
        assert_eq!(sessions.len(), 4);
        let up = &sessions[0];
        assert_eq!(
            (up.peer.as_str(), up.up, up.prefixes_sent, up.updates_sent),
            ("10.98.0.1", true, 10003, 12)
        );
        assert_eq!((up.established, up.dropped), (2, 1));
        assert!(!sessions[1].up);
        assert_eq!(sessions[2].vrf, "red");
        // Reached, and never an OPEN back.
        let awaiting: Vec<bool> = sessions.iter().map(|s| s.awaiting_open).collect();
        assert_eq!(awaiting, [false, true, false, false]);
        let keys: Vec<String> = by_peer(&sessions).into_keys().collect();
        assert_eq!(
            keys,
            ["10.1.0.1%red", "10.1.0.2%red", "10.98.0.1", "10.98.0.3"]
        );
    }

    #[test]
    fn bfd_peers_are_read_and_nothing_is_no_peers() {
        let text = r#"[{"peer":"10.98.0.1","vrf":"default","status":"up"},{"peer":"10.98.0.2","status":"down"}]"#;
        let peers = bfd_sessions(text).unwrap();
        assert!(peers[0].up() && !peers[1].up());
        assert!(bfd_sessions("").unwrap().is_empty());
        assert!(bfd_sessions("{}").unwrap().is_empty());
        assert!(bfd_sessions("% Unknown command").is_err());
    }
}
