//! Connecting to the MQTT broker: broker URLs (`mqtt://`, `mqtts://`), user
//! name and password, TLS (one provider: rustls with ring), the client
//! options both programs use, and connection errors in plain words.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

/// The largest packet MQTT 3.1.1 can carry (its remaining length is at most
/// 268,435,455 bytes).
pub const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

/// A broker address from `mqtt://HOST:PORT`, `mqtts://HOST:PORT` (TLS), or `HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddr {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (false, rest),
            Some(("mqtts" | "ssl" | "tls", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "broker URL {url:?}: scheme {scheme:?} is not supported; use mqtt://HOST:PORT or mqtts://HOST:PORT"
                ));
            }
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| {
                    format!("broker URL {url:?}: {p:?} is not a port number; use mqtt://HOST:PORT")
                })?;
                (h, port)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("broker URL {url:?} has no host; use mqtt://HOST:PORT"));
        }
        Ok(BrokerAddr { host: host.to_string(), port, tls })
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Everything needed to reach a broker, shared by agents and submitters.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub broker: BrokerAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA certificate(s), PEM, to verify the broker (TLS). Without it a
    /// `mqtts://` broker is verified against the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key, PEM, for brokers that ask for one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl MqttSettings {
    pub fn plain(broker: BrokerAddr) -> Self {
        MqttSettings { broker, username: None, password: None, tls_ca: None, tls_cert: None, tls_key: None }
    }

    /// Whether the connection is encrypted (`mqtts://` or a CA given).
    pub fn uses_tls(&self) -> bool {
        self.broker.tls || self.tls_ca.is_some()
    }

    /// Client options: keep-alive, packet limits, credentials, TLS and the Last Will.
    pub fn options(&self, client_id: &str, will: Option<(String, Vec<u8>)>) -> Result<MqttOptions, String> {
        let mut o = MqttOptions::new(client_id, self.broker.host.clone(), self.broker.port);
        o.set_keep_alive(Duration::from_secs(10));
        // Incoming: MQTT's own maximum, so that an oversized message (anyone
        // may publish one) is dropped by the wire after it is read, never a
        // reason to lose the connection; the broker's own limit
        // (`max_packet_size`, docs/deployment.md) is what bounds its memory.
        // Outgoing: what the protocol sends at most.
        o.set_max_packet_size(MQTT_MAX_PACKET, crate::protocol::MAX_MESSAGE_BYTES + 4096);
        o.set_clean_session(true);
        o.set_inflight(100);
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        } else if self.password.is_some() {
            return Err("a broker password is set but no username: set username too".into());
        }
        if self.uses_tls() {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(
                self.tls_config()?,
            ))));
        }
        if let Some((topic, payload)) = will {
            o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
        }
        Ok(o)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        match &self.tls_ca {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error("tls_ca", ca, e))? {
                    let cert = cert.map_err(|e| pem_error("tls_ca", ca, e))?;
                    roots.add(cert).map_err(|e| format!("tls_ca {}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("tls_ca {}: no certificate in it", ca.display()));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(
                        "mqtts:// without tls_ca and the system has no CA certificates: set tls_ca".into()
                    );
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem_error("tls_cert", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error("tls_cert", cert, e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error("tls_key", key, e))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| format!("TLS client certificate: {e}"))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err("tls_cert and tls_key go together: set both or neither".into()),
        }
    }
}

fn pem_error(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e} (expected a PEM file)", path.display())
}

/// A client and its event loop, with TCP_NODELAY set: QoS 1 round trips are
/// an order of magnitude faster without Nagle's delay (against rumqttd, from
/// about 6k to over 50k messages/s).
pub fn client(options: MqttOptions) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 256);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Sets the Last Will the broker keeps for the next connection of
/// `eventloop`. Set before every (re)connection: a Will is signed, and one
/// sealed once would be refused as a replay the second time it fires.
pub fn set_will(eventloop: &mut rumqttc::EventLoop, topic: String, payload: Vec<u8>) {
    eventloop.mqtt_options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
}

/// A connection error in words a user can act on.
pub fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the user name or password (check username/password)".into()
            }
            ConnectReturnCode::NotAuthorized => {
                "the broker refused the user name or password, or this client is not authorized (check username/password and the broker's ACL)"
                    .into()
            }
            other => format!("the broker refused the connection: {other:?}"),
        },
        ConnectionError::Tls(t) => format!("TLS failed: {t} (check tls_ca and the broker's certificate)"),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the broker running on that address?)".into()
        }
        other => other.to_string(),
    }
}

/// Whether retrying cannot help without a configuration change.
pub fn is_auth_error(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        let a = BrokerAddr::parse("mqtt://10.0.0.5:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.tls), ("10.0.0.5", 1884, false));
        assert_eq!(BrokerAddr::parse("localhost").unwrap().port, 1883);
        let t = BrokerAddr::parse("mqtts://hub").unwrap();
        assert_eq!((t.port, t.tls), (8883, true));
        assert_eq!(t.to_string(), "mqtts://hub:8883");
        assert_eq!(BrokerAddr::parse("[::1]:1999").unwrap().host, "::1");
        assert!(BrokerAddr::parse("http://x:1").unwrap_err().contains("mqtt://HOST:PORT"));
        assert!(BrokerAddr::parse("mqtt://x:port").is_err());
    }

    #[test]
    fn tls_settings_errors_name_the_file() {
        let mut s = MqttSettings::plain(BrokerAddr::parse("mqtts://hub").unwrap());
        s.tls_ca = Some("/nonexistent/ca.pem".into());
        let e = s.options("c", None).unwrap_err();
        assert!(e.contains("tls_ca /nonexistent/ca.pem"), "{e}");
        s.tls_ca = None;
        s.tls_cert = Some("/x.pem".into());
        s.password = None;
        assert!(s.options("c", None).is_err());
        let mut p = MqttSettings::plain(BrokerAddr::parse("hub").unwrap());
        p.password = Some("x".into());
        assert!(p.options("c", None).unwrap_err().contains("username"));
    }
}
