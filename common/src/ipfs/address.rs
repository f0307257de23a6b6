//! The accepted spellings of an API address (`http://host:port`,
//! `host:port`, kubo's multiaddr `/ip4/.../tcp/...`), all made into one
//! normalised `http://host:port` base URL. Using it is the client's business.

use reqwest::Url;

/// `http://host:port` from the accepted spellings; no trailing slash.
pub(super) fn normalise_api_url(input: &str) -> Result<String, String> {
    let s = input.trim();
    let s = if s.starts_with('/') {
        multiaddr_to_url(s)?
    } else if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let url = Url::parse(&s).map_err(|e| format!("{input:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{input:?}: only http:// is supported"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{input:?}: no host"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{input:?}: unexpected query or fragment"));
    }
    let port = url.port_or_known_default().ok_or_else(|| format!("{input:?}: no port"))?;
    let path = url.path().trim_end_matches('/');
    Ok(format!("http://{host}:{port}{path}"))
}

/// `http://host:port` from kubo's multiaddr form (`/ip4/H/tcp/P`, also
/// `/ip6`, `/dns`, `/dns4`, `/dns6`, with an optional `/http`).
fn multiaddr_to_url(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "dns" | "dns4" | "dns6", host, "tcp", port, rest @ ..]
            if rest.iter().all(|p| *p == "http" || p.is_empty()) =>
        {
            Ok(format!("http://{host}:{port}"))
        }
        ["", "ip6", host, "tcp", port, rest @ ..] if rest.iter().all(|p| *p == "http" || p.is_empty()) => {
            Ok(format!("http://[{host}]:{port}"))
        }
        _ => Err(format!("{s:?}: unsupported multiaddr")),
    }
}
