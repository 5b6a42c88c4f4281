//! Fetches a `private_key_jwt` client's JWKS from its `jwks_uri` without
//! becoming an SSRF tool: https only, public addresses only (checked at
//! registration and again on every connection, through the resolver, so a
//! DNS answer that changes later does not reach inside), no redirects, no
//! proxy, bounded in time and size, and one error for every failure, so
//! that the answers cannot tell open ports from closed ones. Hosts in
//! `jwks_uri_allow_hosts` are exempt from the https and address rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Whole fetch (connect, TLS, headers and body), in seconds.
pub const JWKS_FETCH_TIMEOUT_S: u64 = 5;
/// Connecting (and, at registration, resolving), in seconds.
pub const JWKS_CONNECT_TIMEOUT_S: u64 = 3;
/// Largest JWKS document read from a `jwks_uri`, in bytes.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most entries in `jwks_uri_allow_hosts`.
pub const MAX_JWKS_ALLOW_HOSTS: usize = 64;
/// The one description a client gets for any fetch failure.
pub const FETCH_FAILED: &str = "the client's keys could not be obtained from its jwks_uri";
/// The one description a registration gets for a `jwks_uri` it may not use.
pub const URI_REFUSED: &str = "jwks_uri must be an https URL whose host has public addresses only";

/// Why a fetch failed: logged by name, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// Not https, no host, or an address that is not public.
    Forbidden,
    /// Refused, unreachable, timed out, TLS failure, redirect or error status.
    Unreachable,
    TooLarge,
    NotJwks,
}

impl FetchError {
    pub fn kind_name(self) -> &'static str {
        match self {
            FetchError::Forbidden => "forbidden_address",
            FetchError::Unreachable => "unreachable",
            FetchError::TooLarge => "too_large",
            FetchError::NotJwks => "not_jwks",
        }
    }
}

/// Checks `jwks_uri_allow_hosts` entries: bare host names or IP addresses.
pub fn check_allow_hosts(hosts: &[String]) -> Result<(), String> {
    if hosts.len() > MAX_JWKS_ALLOW_HOSTS {
        return Err(format!("at most {MAX_JWKS_ALLOW_HOSTS} hosts"));
    }
    for h in hosts {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && (bare.parse::<IpAddr>().is_ok()
                || bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !ok {
            return Err(format!(
                "'{h}' is not a host name or IP address (no scheme, port or path)"
            ));
        }
    }
    Ok(())
}

/// Is `ip` a public unicast address? Loopback, private (RFC 1918),
/// link-local, unique-local, unspecified, multicast, broadcast, CGNAT
/// (100.64/10), documentation, benchmarking and reserved ranges are not,
/// nor are IPv6 forms that embed such an IPv4 address (mapped, compatible,
/// NAT64, 6to4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                        // "this network", unspecified
        || a == 10                                  // RFC 1918
        || a == 127                                 // loopback
        || (a == 100 && (64..128).contains(&b))     // CGNAT 100.64/10
        || (a == 169 && b == 254)                   // link-local
        || (a == 172 && (16..32).contains(&b))      // RFC 1918
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)           // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)         // 6to4 relay anycast
        || (a == 192 && b == 168)                   // RFC 1918
        || (a == 198 && (b == 18 || b == 19))       // benchmarking
        || (a == 198 && b == 51 && c == 100)        // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)         // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:a.b.c.d
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4 2002::/16
    }
    !((s[0] & 0xff00) == 0xff00                     // multicast ff00::/8
        || (s[0] & 0xfe00) == 0xfc00                // unique-local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80                // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0                // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8)       // documentation
        || (s[0] == 0x2001 && s[1] == 0)            // Teredo
        || (s[0] & 0xe000) != 0x2000) // outside global unicast 2000::/3
}

/// Hosts exempt from the https and public-address rules (lower case, IPv6
/// without brackets).
#[derive(Debug, Clone, Default)]
struct AllowHosts(Vec<String>);

impl AllowHosts {
    fn new(hosts: &[String]) -> AllowHosts {
        AllowHosts(hosts.iter().map(|h| bare_host(h)).collect())
    }

    fn allows(&self, host: &str) -> bool {
        let host = bare_host(host);
        self.0.contains(&host)
    }
}

fn bare_host(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// A `jwks_uri` that passed the form checks.
struct Target {
    url: url::Url,
    host: String,
    allowed: bool,
}

/// The resolver's refusal, found again in the connect error's sources.
#[derive(Debug)]
struct ForbiddenAddress;

impl std::fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host has an address that is not public")
    }
}

impl std::error::Error for ForbiddenAddress {}

fn refused_by_resolver(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<ForbiddenAddress>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Resolves names for the fetch client, refusing any name with an address
/// that is not public unless the host is allowed: every connection is made
/// to an address checked here, so DNS rebinding cannot reach inside.
struct GuardedResolver {
    allow: AllowHosts,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allowed = self.allow.allows(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || (!allowed && addrs.iter().any(|a| !is_public(a.ip()))) {
                return Err(Box::new(ForbiddenAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guarded HTTP client for `jwks_uri`s.
pub struct JwksFetcher {
    http: reqwest::Client,
    allow: AllowHosts,
}

impl JwksFetcher {
    pub fn new(allow_hosts: &[String]) -> anyhow::Result<JwksFetcher> {
        let allow = AllowHosts::new(allow_hosts);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(JWKS_FETCH_TIMEOUT_S))
            .connect_timeout(Duration::from_secs(JWKS_CONNECT_TIMEOUT_S))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
            }))
            .build()?;
        Ok(JwksFetcher { http, allow })
    }

    /// The form checks: an absolute https URL (http only for an allowed
    /// host) without credentials, whose host, if an IP address, is public.
    fn target(&self, uri: &str) -> Result<Target, FetchError> {
        let url = url::Url::parse(uri).map_err(|_| FetchError::Forbidden)?;
        let host = url.host_str().ok_or(FetchError::Forbidden)?.to_string();
        let allowed = self.allow.allows(&host);
        let scheme_ok = url.scheme() == "https" || (allowed && url.scheme() == "http");
        if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Forbidden);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        // The resolver never sees an IP literal: it is checked here.
        if !allowed && literal.is_some_and(|ip| !is_public(ip)) {
            return Err(FetchError::Forbidden);
        }
        Ok(Target { url, host, allowed })
    }

    /// At registration: the form checks, and the host's addresses now.
    pub async fn check_registration(&self, uri: &str) -> Result<(), FetchError> {
        let t = self.target(uri)?;
        if t.allowed
            || t.url
                .host()
                .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
        {
            return Ok(());
        }
        let lookup = tokio::net::lookup_host((t.host.as_str(), 0));
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(Duration::from_secs(JWKS_CONNECT_TIMEOUT_S), lookup)
                .await
                .map_err(|_| FetchError::Forbidden)?
                .map_err(|_| FetchError::Forbidden)?
                .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(FetchError::Forbidden);
        }
        Ok(())
    }

    /// Fetches and parses the JWKS at `uri`.
    pub async fn fetch(&self, uri: &str) -> Result<Value, FetchError> {
        let t = self.target(uri)?;
        let mut resp = self.http.get(t.url).send().await.map_err(|e| {
            if refused_by_resolver(&e) {
                FetchError::Forbidden
            } else {
                FetchError::Unreachable
            }
        })?;
        if !resp.status().is_success() {
            return Err(FetchError::Unreachable);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| FetchError::Unreachable)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|_| FetchError::NotJwks)?;
        if !doc.get("keys").is_some_and(Value::is_array) {
            return Err(FetchError::NotJwks);
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(ip(s)), "{s} must be public");
        }
    }

    #[test]
    fn uris_must_be_https_on_public_literals_unless_allowed() {
        let f = JwksFetcher::new(&[]).unwrap();
        for bad in [
            "http://8.8.8.8/jwks",
            "https://127.0.0.1/jwks",
            "https://[::1]/jwks",
            "https://[::ffff:7f00:1]/jwks",
            "https://2130706433/jwks",
            "https://0x7f.1/jwks",
            "https://10.0.0.1:8443/jwks",
            "https://user:pw@8.8.8.8/jwks",
            "ftp://8.8.8.8/jwks",
            "not a url",
        ] {
            assert_eq!(f.target(bad).err(), Some(FetchError::Forbidden), "{bad}");
        }
        assert!(f.target("https://8.8.8.8/jwks").is_ok());
        assert!(f.target("https://keys.example.org/jwks").is_ok());
        let allowing =
            JwksFetcher::new(&["127.0.0.1".into(), "[::1]".into(), "Keys.Internal".into()])
                .unwrap();
        assert!(allowing.target("http://127.0.0.1:8080/jwks").is_ok());
        assert!(allowing.target("https://[::1]/jwks").is_ok());
        assert!(allowing.target("http://keys.internal/jwks").is_ok());
        assert!(allowing.target("http://127.0.0.2/jwks").is_err());
    }

    #[test]
    fn allow_host_entries_are_checked() {
        assert!(
            check_allow_hosts(&["127.0.0.1".into(), "::1".into(), "keys.internal".into()]).is_ok()
        );
        for bad in [
            "https://keys.internal",
            "keys.internal:8080",
            "keys/path",
            "",
        ] {
            assert!(check_allow_hosts(&[bad.to_string()]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_JWKS_ALLOW_HOSTS)
            .map(|i| format!("h{i}"))
            .collect();
        assert!(check_allow_hosts(&many).is_err());
    }

    #[tokio::test]
    async fn registration_refuses_names_of_internal_addresses() {
        let f = JwksFetcher::new(&[]).unwrap();
        assert_eq!(
            f.check_registration("https://localhost/jwks").await,
            Err(FetchError::Forbidden)
        );
        assert_eq!(
            f.check_registration("https://127.0.0.1/jwks").await,
            Err(FetchError::Forbidden)
        );
        let allowing = JwksFetcher::new(&["localhost".into()]).unwrap();
        assert!(allowing
            .check_registration("http://localhost/jwks")
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn fetching_a_name_of_an_internal_address_is_refused_at_connect() {
        // The literal check passes for a name; the resolver refuses it.
        let f = JwksFetcher::new(&[]).unwrap();
        assert_eq!(
            f.fetch("https://localhost:9/jwks").await,
            Err(FetchError::Forbidden)
        );
    }
}
