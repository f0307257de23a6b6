//! Connecting to the MQTT broker: parsing `mqtt://host:port` and the client
//! options both programs use.

use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS};

/// A broker address from `mqtt://HOST:PORT` (or `HOST:PORT`, or `HOST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl BrokerAddr {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "broker URL {url:?}: scheme {scheme:?} is not supported here; use mqtt://HOST:PORT"
                ));
            }
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| {
                    format!("broker URL {url:?}: {p:?} is not a port number; use mqtt://HOST:PORT")
                })?;
                (h, port)
            }
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("broker URL {url:?} has no host; use mqtt://HOST:PORT"));
        }
        Ok(BrokerAddr { host: host.to_string(), port })
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// Client options shared by agents and submitters.
pub fn options(client_id: &str, broker: &BrokerAddr, will: Option<(String, Vec<u8>)>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(
        crate::protocol::MAX_MESSAGE_BYTES + 4096,
        crate::protocol::MAX_MESSAGE_BYTES + 4096,
    );
    o.set_clean_session(true);
    o.set_inflight(100);
    if let Some((topic, payload)) = will {
        o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
    }
    o
}

/// A client and its event loop, with TCP_NODELAY set: QoS 1 round trips are
/// an order of magnitude faster without Nagle's delay (NOTES.md).
pub fn client(options: MqttOptions) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 256);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    eventloop.set_network_options(net);
    (client, eventloop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        let a = BrokerAddr::parse("mqtt://10.0.0.5:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", 1884));
        assert_eq!(BrokerAddr::parse("localhost").unwrap().port, 1883);
        assert_eq!(BrokerAddr::parse("[::1]:1999").unwrap().host, "::1");
        assert!(BrokerAddr::parse("http://x:1").unwrap_err().contains("mqtt://HOST:PORT"));
        assert!(BrokerAddr::parse("mqtt://x:port").is_err());
    }
}
