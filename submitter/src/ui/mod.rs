//! `ipdc-submit ui`: a live web dashboard of the cluster. One MQTT session
//! (read-only: it publishes nothing) follows the agents' statuses, the
//! jobs' controller statuses and every job's events; a snapshot of what
//! they say goes to each open page once a second over server-sent events.
//! The page (`page.html`, HTML, CSS and script in one file) is inside the
//! binary: nothing is fetched from elsewhere. In a keyed cluster what it
//! shows passed the same signature checks as everything else.

mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::stream;
use ipdc_common::protocol::now_ms;
use log::debug;
use tokio::sync::watch;

use crate::cluster::Connection;
use crate::run::session::Session;

const PAGE: &str = include_str!("page.html");
/// How often the page gets a new snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// Serves the dashboard on `listen` until the process ends.
pub async fn run(conn: Connection, listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("the dashboard on {listen}: {e} (give another address with --listen)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = watch::channel(String::from("{}"));
    let keyed = conn.credentials.is_some();
    let mut session = Session::connect(&conn, &format!("ipdc-ui-{}", std::process::id()), None)?;
    session.watch_jobs();
    session.watch_all_events();
    session.connect_and_listen(Duration::from_secs(10)).await?;
    println!("dashboard on http://{addr}/ (Ctrl-C stops it)");
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the dashboard listens on {addr}, beyond this machine: anyone who reaches it sees the cluster"
        );
    }
    tokio::spawn(follow(session, tx, keyed));
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/state", get(state))
        .route("/events", get(events))
        .with_state(rx);
    axum::serve(listener, app).await.map_err(|e| format!("the dashboard: {e}"))
}

/// Keeps the snapshot current: the session's messages into the view.
async fn follow(mut session: Session, tx: watch::Sender<String>, keyed: bool) {
    let mut view = view::View::default();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            r = session.poll_once() => if let Err(e) = r { debug!("{e}") },
            _ = tick.tick() => {
                let now = now_ms();
                while let Some(ev) = session.next_event() {
                    view.on_event(&ev, now);
                }
                if let Some(jobs) = &session.jobs {
                    view.on_jobs(jobs, now);
                }
                let snap = view.snapshot(&session.directory, keyed, now).to_string();
                tx.send_replace(snap);
            }
        }
        while let Some(ev) = session.next_event() {
            view.on_event(&ev, now_ms());
        }
    }
}

async fn state(State(rx): State<watch::Receiver<String>>) -> impl IntoResponse {
    let snapshot = rx.borrow().clone();
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], snapshot)
}

/// The current snapshot at once, then each new one.
async fn events(State(rx): State<watch::Receiver<String>>) -> impl IntoResponse {
    let s = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let data = rx.borrow_and_update().clone();
        Some((Ok::<_, Infallible>(Event::default().data(data)), (rx, false)))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}
