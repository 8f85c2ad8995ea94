//! Which addresses rekey may connect to on an admin's behalf. Link-local and
//! cloud metadata addresses are refused always (they hand out the host's own
//! cloud credentials); loopback and private ranges only when the operator
//! says so, since a self-hosted install reaches its own databases on them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The rule an address falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// 169.254.0.0/16, fe80::/10: never reachable.
    LinkLocal,
    /// Cloud metadata services outside link-local (100.100.100.200,
    /// fd00:ec2::254): never reachable.
    Metadata,
    /// 127.0.0.0/8, ::1 and the unspecified address (which Linux connects
    /// to the local host): refused when `egress_deny` names `loopback`.
    Loopback,
    /// RFC 1918, shared (100.64/10) and unique-local (fc00::/7) addresses:
    /// refused when `egress_deny` names `private`.
    Private,
    /// Multicast and broadcast: nothing to connect to.
    Reserved,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::LinkLocal => "link_local",
            Rule::Metadata => "metadata",
            Rule::Loopback => "loopback",
            Rule::Private => "private",
            Rule::Reserved => "reserved",
        }
    }

    /// Why the rule refuses, for the error a person reads.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::LinkLocal => "link-local addresses are always refused",
            Rule::Metadata => "cloud metadata addresses are always refused",
            Rule::Loopback => {
                "loopback addresses are refused by egress_deny (allow a range with egress_allow)"
            }
            Rule::Private => {
                "private addresses are refused by egress_deny (allow a range with egress_allow)"
            }
            Rule::Reserved => "multicast and broadcast addresses are refused",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an address is, before the operator's choices.
pub fn classify(ip: IpAddr) -> Option<Rule> {
    // ::ffff:169.254.169.254 is the IPv4 address in disguise.
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Rule> {
    let o = ip.octets();
    if ip.is_link_local() {
        Some(Rule::LinkLocal)
    } else if ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some(Rule::Metadata)
    } else if ip.is_loopback() || ip.is_unspecified() || o[0] == 0 {
        Some(Rule::Loopback)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some(Rule::Private)
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some(Rule::Reserved)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Rule> {
    let s = ip.segments();
    if (s[0] & 0xffc0) == 0xfe80 {
        Some(Rule::LinkLocal)
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some(Rule::Metadata)
    } else if ip.is_loopback() || ip.is_unspecified() {
        Some(Rule::Loopback)
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some(Rule::Private)
    } else if ip.is_multicast() {
        Some(Rule::Reserved)
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("egress_deny: {0:?} is not a rule (use private, loopback)")]
    UnknownRule(String),
    #[error("egress_allow: {0:?} is not a CIDR (e.g. 10.1.0.0/16) or an address")]
    BadCidr(String),
}

/// The operator's policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    deny_loopback: bool,
    deny_private: bool,
    allow: Vec<IpNet>,
}

impl Policy {
    pub fn new(deny: &[String], allow: &[String]) -> Result<Policy, PolicyError> {
        let mut p = Policy::default();
        for d in deny {
            match d.trim().to_ascii_lowercase().as_str() {
                "private" => p.deny_private = true,
                "loopback" => p.deny_loopback = true,
                "" => {}
                other => return Err(PolicyError::UnknownRule(other.to_string())),
            }
        }
        for a in allow {
            let a = a.trim();
            if a.is_empty() {
                continue;
            }
            let net = a
                .parse::<IpNet>()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| PolicyError::BadCidr(a.to_string()))?;
            p.allow.push(net);
        }
        Ok(p)
    }

    /// The rule that refuses `ip`, if any.
    pub fn check(&self, ip: IpAddr) -> Result<(), Rule> {
        let Some(rule) = classify(ip) else {
            return Ok(());
        };
        let canonical = ip.to_canonical();
        let allowed = || self.allow.iter().any(|n| n.contains(&canonical));
        match rule {
            Rule::LinkLocal | Rule::Metadata | Rule::Reserved => Err(rule),
            Rule::Loopback if self.deny_loopback && !allowed() => Err(rule),
            Rule::Private if self.deny_private && !allowed() => Err(rule),
            Rule::Loopback | Rule::Private => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn always_refused() {
        let p = Policy::default();
        for a in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "224.0.0.1",
        ] {
            assert!(p.check(ip(a)).is_err(), "{a}");
        }
        let allow_all = Policy::new(&[], &["0.0.0.0/0".into(), "::/0".into()]).unwrap();
        assert_eq!(
            allow_all.check(ip("169.254.169.254")),
            Err(Rule::LinkLocal),
            "egress_allow cannot open metadata"
        );
    }

    #[test]
    fn private_and_loopback_by_setting() {
        let open = Policy::default();
        let closed = Policy::new(&["private".into(), "loopback".into()], &[]).unwrap();
        for (a, rule) in [
            ("127.0.0.1", Rule::Loopback),
            ("::1", Rule::Loopback),
            ("0.0.0.0", Rule::Loopback),
            ("10.1.2.3", Rule::Private),
            ("172.20.0.1", Rule::Private),
            ("192.168.1.1", Rule::Private),
            ("100.64.0.1", Rule::Private),
            ("fd12::1", Rule::Private),
            ("::ffff:10.0.0.1", Rule::Private),
        ] {
            assert_eq!(open.check(ip(a)), Ok(()), "{a}");
            assert_eq!(closed.check(ip(a)), Err(rule), "{a}");
        }
        assert_eq!(closed.check(ip("93.184.216.34")), Ok(()));
        let except = Policy::new(&["private".into()], &["10.1.0.0/16".into()]).unwrap();
        assert_eq!(except.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(except.check(ip("10.2.0.1")), Err(Rule::Private));
    }

    #[test]
    fn bad_settings() {
        assert!(Policy::new(&["public".into()], &[]).is_err());
        assert!(Policy::new(&[], &["10.0.0.0/33".into()]).is_err());
    }
}
