//! `ipdc-submit hub`: the embedded broker and content store as a standalone
//! service, so separate `ipdc-agent` and `ipdc-submit run` processes can form
//! a cluster with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{broker, store};

pub async fn run(
    mqtt: SocketAddr,
    ipfs: SocketAddr,
    data: PathBuf,
    keep_unpinned_hours: u64,
    nocopy_root: Option<PathBuf>,
    ui: Option<SocketAddr>,
) -> Result<(), String> {
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("cannot create the data folder {}: {e}", data.display()))?;
    let mqtt = broker::start(mqtt).map_err(|e| format!("MQTT broker on {mqtt}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(ipfs)
        .await
        .map_err(|e| format!("IPFS API on {ipfs}: {e} (is another IPFS daemon using that port?)"))?;
    let store = store::serve(listener, data.clone(), store::Durability::Durable, nocopy_root.clone())
        .await
        .map_err(|e| format!("store: {e}"))?;
    // These two lines are what a user (or a test) reads to connect.
    println!("MQTT=mqtt://{mqtt}");
    println!("IPFS={}", store.url());
    println!("hub running (data in {}); Ctrl-C stops it", data.display());
    if let Some(root) = &nocopy_root {
        println!("files under {} may be added by reference (nocopy)", root.display());
    }
    if keep_unpinned_hours > 0 {
        let keep = Duration::from_secs(keep_unpinned_hours.saturating_mul(3600));
        let local = store.local();
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match local.collect(keep).await {
                    Ok(0) => {}
                    Ok(n) => {
                        log::info!("removed {n} unpinned object(s) added over {keep_unpinned_hours} h ago")
                    }
                    Err(e) => log::warn!("removing old unpinned objects: {e}"),
                }
            }
        });
    }
    if let Some(listen) = ui {
        // The dashboard reads the hub's own broker, as any client would.
        let loopback = SocketAddr::from(([127, 0, 0, 1], mqtt.port()));
        let conn = crate::cluster::Connection {
            mqtt: ipdc_common::mqtt::MqttSettings::plain(ipdc_common::mqtt::BrokerAddr::parse(&format!(
                "mqtt://{loopback}"
            ))?),
            credentials: None,
            ipfs: store.url(),
            cluster: "default".into(),
        };
        tokio::spawn(async move {
            if let Err(e) = crate::ui::run(conn, listen).await {
                eprintln!("ipdc-submit hub: {e}");
            }
        });
    }
    ipdc_common::signal::shutdown_signal().await;
    store.shutdown().await;
    Ok(())
}
