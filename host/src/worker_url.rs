//! Which `worker_url`s a buyer host connects to. A seller chooses its `worker_url`
//! freely, so without a check a stranger could point the buyer at the buyer's own
//! internal port (its proxy and admin API), at the router's admin page or at any
//! service on the buyer's network (SSRF, issue 13). By default the buyer connects only
//! to public addresses; `--lan-market` allows loopback, private and link-local ones for
//! a market on one machine or one LAN. This host's own ports on loopback are refused
//! even then.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most addresses of a `worker_url` name that are looked up and checked; a name with
/// more is refused (every one must pass, and checking is per connection).
const RESOLVED_ADDRS_MAX: usize = 16;

/// The buyer's policy for sellers' `worker_url`s (one per [`crate::node::Node`]).
#[derive(Debug, Default)]
pub struct WorkerUrlPolicy {
    /// The market is a LAN (or one machine): loopback, private and link-local
    /// addresses are allowed.
    lan: AtomicBool,
    /// This host's own ports (internal, external, embedded exchange): never a worker.
    own_ports: Mutex<Vec<u16>>,
}

/// What kind of address `ip` is, if it is one a public market must not reach; `None`
/// for a public unicast address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified (this host)")
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                // 100.64/10: carrier-grade NAT, private to the provider's network.
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                Some("broadcast, multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified (this host)")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

impl WorkerUrlPolicy {
    /// Allow (or not) loopback, private and link-local workers: `--lan-market`.
    pub fn set_lan(&self, lan: bool) {
        self.lan.store(lan, Ordering::Relaxed);
    }

    pub fn lan(&self) -> bool {
        self.lan.load(Ordering::Relaxed)
    }

    /// One of this host's own ports: a worker there is refused.
    pub fn add_own_port(&self, port: u16) {
        self.own_ports.lock().expect("own ports lock").push(port);
    }

    /// Why a connection to `addr` is refused, or `None` if it is allowed.
    pub fn refuse(&self, addr: SocketAddr) -> Option<String> {
        let kind = non_public(addr.ip());
        if let Some(kind) = kind
            && !self.lan()
        {
            return Some(format!(
                "{addr} is a {kind} address; this host connects to sellers on public \
                 addresses only (start it with --lan-market for a market on one machine \
                 or one LAN)"
            ));
        }
        let own = self.own_ports.lock().expect("own ports lock").contains(&addr.port());
        let this_host = matches!(kind, Some("loopback") | Some("unspecified (this host)"));
        if own && this_host {
            return Some(format!("{addr} is one of this host's own ports"));
        }
        None
    }

    /// Check a seller's `worker_url` before any connection to it: `http` or `https`,
    /// and every address its host name has passes [`WorkerUrlPolicy::refuse`]. The
    /// error says why, for the buyer's answer.
    pub async fn check(&self, worker_url: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(worker_url)
            .map_err(|e| format!("the seller's worker_url {worker_url:?} is no URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the seller's worker_url {worker_url:?} is not http(s)"));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let Some(host) = url.host_str() else {
            return Err(format!("the seller's worker_url {worker_url:?} has no host"));
        };
        // An IP literal (IPv6 in brackets) is checked as it is; a name by every address
        // it resolves to.
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
        let addrs: Vec<SocketAddr> = match literal {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("the seller's worker_url host {host:?}: {e}"))?
                .take(RESOLVED_ADDRS_MAX + 1)
                .collect(),
        };
        if addrs.is_empty() || addrs.len() > RESOLVED_ADDRS_MAX {
            return Err(format!(
                "the seller's worker_url {worker_url:?} has {} addresses (1..={RESOLVED_ADDRS_MAX})",
                addrs.len()
            ));
        }
        for a in addrs {
            if let Some(why) = self.refuse(a) {
                return Err(format!("refused the seller's worker_url {worker_url}: {why}"));
            }
        }
        Ok(())
    }
}

/// The resolver of the buyer's HTTP client for sellers: a name is resolved again when
/// the client connects, so a name that passed [`WorkerUrlPolicy::check`] and then
/// resolves to a loopback or private address (DNS rebinding) is refused here too.
pub struct CheckedResolver(pub std::sync::Arc<WorkerUrlPolicy>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .take(RESOLVED_ADDRS_MAX)
                .collect();
            if !policy.lan()
                && let Some(kind) = addrs.iter().find_map(|a| non_public(a.ip()))
            {
                let why = format!("{host} resolves to a {kind} address; refused (--lan-market)");
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        for (ip, kind) in [
            ("127.0.0.1", Some("loopback")),
            ("127.0.0.2", Some("loopback")),
            ("0.0.0.0", Some("unspecified (this host)")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("255.255.255.255", Some("broadcast, multicast or reserved")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("fd00::1", Some("private (unique local)")),
            ("fe80::1", Some("link-local")),
            ("8.8.8.8", None),
            ("2001:4860:4860::8888", None),
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), kind, "{ip}");
        }
    }

    #[test]
    fn lan_allows_private_but_never_own_ports_on_this_host() {
        let p = WorkerUrlPolicy::default();
        p.add_own_port(8081);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(p.refuse(a("127.0.0.1:9000")).is_some());
        assert!(p.refuse(a("192.168.1.5:8082")).is_some());
        assert!(p.refuse(a("8.8.8.8:8082")).is_none());
        p.set_lan(true);
        assert!(p.refuse(a("127.0.0.1:9000")).is_none());
        assert!(p.refuse(a("192.168.1.5:8081")).is_none(), "another machine's port");
        assert!(p.refuse(a("127.0.0.1:8081")).is_some(), "this host's own port");
        assert!(p.refuse(a("[::ffff:127.0.0.1]:8081")).is_some());
    }
}
