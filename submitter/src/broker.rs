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
    // RouterConfig::default() is all zeros (no connections, no segments), so
    // every size is set here.
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
    if !set_nodelay_on_listener(addr) {
        log::debug!("could not set TCP_NODELAY on the embedded broker's connections");
    }
    Ok(addr)
}

/// rumqttd does not set TCP_NODELAY on its connections, so a small packet
/// it sends while an earlier one to the same client is not yet acknowledged
/// waits for that ACK (Nagle), which the client may delay by up to 40 ms:
/// two task events close together reached the submitter ~40 ms apart. On
/// Linux an accepted socket inherits TCP_NODELAY from its listening socket,
/// so it is set there: on the broker's listening socket, found among this
/// process's file descriptors by its address. Returns whether it was set.
#[cfg(target_os = "linux")]
fn set_nodelay_on_listener(addr: SocketAddr) -> bool {
    use std::os::fd::FromRawFd;
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return false };
    let mut set = false;
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed (ManuallyDrop: never
        // closed here) for getsockname/getpeername/setsockopt, which fail
        // harmlessly if it was closed or reused meanwhile.
        let sock = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        // A listening socket has our address and no peer.
        if sock.local_addr().is_ok_and(|a| a == addr) && sock.peer_addr().is_err() {
            set |= sock.set_nodelay(true).is_ok();
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
fn set_nodelay_on_listener(_addr: SocketAddr) -> bool {
    false
}
