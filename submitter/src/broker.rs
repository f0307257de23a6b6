//! The embedded MQTT broker (rumqttd), for `--local` and `ipdc-submit hub`:
//! a real MQTT 3.1.1 broker on a TCP port, so agents connect to it exactly as
//! they would to Mosquitto.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on `addr` in its own thread. rumqttd cannot be stopped;
/// it lives as long as the process. Port 0 picks a free port, returned here.
pub fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let addr = if addr.port() == 0 {
        // rumqttd binds by itself: find a free port and hand it over.
        let probe = std::net::TcpListener::bind(addr)?;
        probe.local_addr()?
    } else {
        addr
    };
    let server = ServerSettings {
        name: "v4-1".to_string(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: ipdc_common::protocol::MAX_MESSAGE_BYTES + 4096,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    // RouterConfig::default() is all zeros (NOTES.md): every size is set here.
    let router = RouterConfig {
        max_connections: 10_000,
        max_outgoing_packet_count: 1_000,
        max_segment_size: 16 << 20,
        max_segment_count: 16,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let config =
        Config { id: 0, router, v4: Some(HashMap::from([("1".to_string(), server)])), ..Default::default() };
    let mut broker = Broker::new(config);
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        if let Err(e) = broker.start() {
            log::error!("embedded MQTT broker stopped: {e}");
        }
    })?;
    // Return once it accepts connections.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::other(format!("embedded broker did not start on {addr}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(addr)
}
