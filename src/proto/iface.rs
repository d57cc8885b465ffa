//! Interfaces added and deleted while the daemon runs (`dvr-ctl interface
//! ...`, methods `interface_add`, `interface_delete`, `interface_list`,
//! `interface_show`): what is asked and what is answered. The same
//! [`IfaceSpec`] is what the daemon saves, to add them again at its next
//! start.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;

/// Queue pairs an interface may ask for.
pub const MAX_QUEUES: u16 = 16;

/// The devices an interface can be added as at run time (NICs, the underlay
/// and the external port stay in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IfaceType {
    /// A VM's vhost-user socket.
    #[serde(rename = "vhost-user")]
    VhostUser,
    /// A Linux interface read through AF_PACKET.
    #[serde(rename = "af_packet")]
    AfPacket,
    /// A tap interface the daemon creates.
    #[serde(rename = "tap")]
    Tap,
}

impl IfaceType {
    pub fn name(self) -> &'static str {
        match self {
            IfaceType::VhostUser => "vhost-user",
            IfaceType::AfPacket => "af_packet",
            IfaceType::Tap => "tap",
        }
    }
}

/// An interface to add: `interface_add`'s params, and one entry of the
/// daemon's saved interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IfaceSpec {
    /// The name model ports bind to (`port set --binding NAME`).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: IfaceType,
    /// vhost-user: the socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// vhost-user: dvr connects to a socket the VM's QEMU made (and again
    /// whenever it reappears), instead of making the socket itself.
    #[serde(default)]
    pub client: bool,
    /// af_packet, tap: the Linux interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Queue pairs (vhost-user: as many as the guest may enable).
    #[serde(default = "one")]
    pub queues: u16,
    /// The worker that polls its first RX queue (default: the one polling
    /// the fewest queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
}

fn one() -> u16 {
    1
}

/// A port name as the configuration accepts it: 1 to 24 letters, digits,
/// '-' or '_'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl IfaceSpec {
    /// What can be said of the request alone (the daemon checks the rest:
    /// names in use, workers, the device itself).
    pub fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "interface name {:?}: use 1 to 24 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if !(1..=MAX_QUEUES).contains(&self.queues) {
            return Err(format!(
                "interface {}: --queues {}: use 1 to {MAX_QUEUES}",
                self.name, self.queues
            ));
        }
        match self.kind {
            IfaceType::VhostUser => {
                let Some(s) = &self.socket else {
                    return Err(format!(
                        "interface {}: a vhost-user interface needs --socket PATH",
                        self.name
                    ));
                };
                let text = s.to_string_lossy();
                if !s.is_absolute() || text.contains([',', '=']) || text.len() > 107 {
                    return Err(format!(
                        "interface {}: socket {text:?}: an absolute path of at most 107 bytes, without ',' or '='",
                        self.name
                    ));
                }
                if self.iface.is_some() {
                    return Err(format!(
                        "interface {}: --iface does not apply to vhost-user",
                        self.name
                    ));
                }
            }
            IfaceType::AfPacket | IfaceType::Tap => {
                let Some(i) = &self.iface else {
                    return Err(format!(
                        "interface {}: a {} interface needs --iface NAME",
                        self.name,
                        self.kind.name()
                    ));
                };
                if i.is_empty() || i.len() > 15 || i.contains(['/', ',', ' ', '=']) {
                    return Err(format!(
                        "interface {}: {i:?} is not a valid Linux interface name",
                        self.name
                    ));
                }
                if self.socket.is_some() || self.client {
                    return Err(format!(
                        "interface {}: --socket and --client apply to vhost-user only",
                        self.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `interface_delete` and `interface_show`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IfaceName {
    pub name: String,
}

/// Which worker polls an RX queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePoll {
    pub queue: u16,
    pub worker: usize,
    pub core: usize,
}

/// An interface as the daemon shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfaceInfo {
    pub name: String,
    /// Its index in the tables (`show stats` lists ports by it).
    pub index: u16,
    /// vhost-user, af_packet, tap, pci, pcap, ring, null.
    #[serde(rename = "type")]
    pub kind: String,
    /// vm, underlay or external.
    pub role: String,
    /// `config` (from the configuration file: not deleted at run time) or
    /// `runtime` (added by `interface add`, saved, added again at start).
    pub origin: String,
    pub driver: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub client: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    pub mac: MacAddr,
    pub link_up: bool,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Which worker polls each RX queue.
    pub polled_by: Vec<QueuePoll>,
    /// The model ports bound to it here.
    pub bound: Vec<String>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// A model port as `port show` / `port list` answer it: the model's port
/// and its status on the node asked ([`port_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    #[serde(flatten)]
    pub port: crate::model::Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A model port's status on this node, as `openstack port list` shows it:
/// `ACTIVE` when it is bound here to an interface whose link is up, `DOWN`
/// when it is bound here and its interface is missing or down, or when it
/// is bound to no host; `N/A` when another host serves it (that host's
/// daemon knows).
pub fn port_status(host: Option<&str>, me: &str, link: Option<bool>) -> &'static str {
    match (host, link) {
        (Some(h), Some(true)) if h == me => "ACTIVE",
        (Some(h), _) if h == me => "DOWN",
        (Some(_), _) => "N/A",
        (None, _) => "DOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(name: &str, socket: &str) -> IfaceSpec {
        IfaceSpec {
            name: name.into(),
            kind: IfaceType::VhostUser,
            socket: Some(socket.into()),
            client: false,
            iface: None,
            queues: 1,
            worker: None,
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(vhost("vhu1", "/run/vm1.sock").check().is_ok());
        assert!(vhost("", "/run/vm1.sock").check().is_err());
        assert!(vhost("a b", "/run/vm1.sock").check().is_err());
        assert!(vhost("vhu1", "relative.sock").check().is_err());
        assert!(vhost("vhu1", "/run/a,b.sock").check().is_err());
        let mut s = vhost("vhu1", "/run/vm1.sock");
        s.queues = 0;
        assert!(s.check().unwrap_err().contains("--queues"));
        s.queues = MAX_QUEUES + 1;
        assert!(s.check().is_err());
        let tap = IfaceSpec {
            kind: IfaceType::Tap,
            socket: None,
            iface: Some("dvrtap0".into()),
            ..vhost("t0", "/x")
        };
        assert!(tap.check().is_ok());
        let bad = IfaceSpec {
            iface: Some("a/b".into()),
            ..tap.clone()
        };
        assert!(bad.check().is_err());
        let no_iface = IfaceSpec { iface: None, ..tap };
        assert!(no_iface.check().unwrap_err().contains("--iface"));
    }

    #[test]
    fn specs_read_back_and_refuse_unknown_keys() {
        let s = vhost("vhu1", "/run/vm1.sock");
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<IfaceSpec>(&text).unwrap(), s);
        let with_default: IfaceSpec =
            serde_json::from_str(r#"{"name":"x","type":"tap","iface":"t"}"#).unwrap();
        assert_eq!(with_default.queues, 1);
        assert!(serde_json::from_str::<IfaceSpec>(r#"{"name":"x","type":"pci"}"#).is_err());
        assert!(serde_json::from_str::<IfaceSpec>(
            r#"{"name":"x","type":"tap","iface":"t","z":1}"#
        )
        .is_err());
    }

    #[test]
    fn a_port_view_reads_the_port_and_its_status() {
        let m = crate::testkit::ns_model();
        let mut port = m.ports.values().next().unwrap().clone();
        port.host = None;
        port.binding = Some("vhu1".into());
        let mut v = serde_json::to_value(&port).unwrap();
        v.as_object_mut()
            .unwrap()
            .insert("status".into(), "ACTIVE".into());
        let pv: PortView = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(pv.port, port);
        assert_eq!(pv.status.as_deref(), Some("ACTIVE"));
        assert_eq!(serde_json::to_value(&pv).unwrap(), v);
    }

    #[test]
    fn status_as_openstack_shows_it() {
        assert_eq!(port_status(Some("cn1"), "cn1", Some(true)), "ACTIVE");
        assert_eq!(port_status(Some("cn1"), "cn1", Some(false)), "DOWN");
        assert_eq!(port_status(Some("cn1"), "cn1", None), "DOWN");
        assert_eq!(port_status(Some("cn2"), "cn1", Some(true)), "N/A");
        assert_eq!(port_status(None, "cn1", None), "DOWN");
    }
}
