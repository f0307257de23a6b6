//! The client against scripted peers speaking raw HTTP, for what a real
//! node does not do on demand (trailers, stalls, transient failures).
//! The happy paths run against the submitter's store (its tests). Parsing
//! `add`'s answer is tested inline in `src/ipfs/add.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipdc_common::ipfs::{ErrorKind, IpfsClient, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HELLO: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";

/// Serves `answers` (raw HTTP responses) in order, one per connection,
/// then repeats the last; an empty answer means "never answer". Returns
/// the API URL and the count of requests seen.
async fn scripted(answers: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)].clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if answer.is_empty() {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn response(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len())
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        idle: Duration::from_millis(500),
        cat_server: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn nothing_listening_is_connection_refused_naming_api_call_and_cid() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let api = format!("http://127.0.0.1:{port}");
    let client = IpfsClient::new(&api).unwrap();
    let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ConnectionRefused), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("IPFS API {api}: cat {HELLO}: connection refused (is the IPFS daemon running?)")
    );
    let err = client.id().await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("IPFS API {api}: id: connection refused")), "{err}");
    let err = client.add_bytes(b"x".to_vec()).await.unwrap_err().to_string();
    assert!(err.contains(": add: connection refused"), "{err}");
}

#[tokio::test]
async fn a_trailing_x_stream_error_is_an_error_not_a_short_file() {
    let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\nTrailer: X-Stream-Error\r\n\
                  Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
                  X-Stream-Error: ipld: could not find bafkwhatever\r\n\r\n";
    let (url, _) = scripted(vec![answer.to_string()]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let mut stream = client.cat_range(HELLO, 0, None).await.unwrap();
    assert_eq!(stream.next_chunk().await.unwrap().unwrap(), "hello");
    let err = stream.next_chunk().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Truncated(_)), "{err:?}");
    assert!(err.to_string().contains("could not find bafkwhatever"), "{err}");
}

#[tokio::test]
async fn fewer_bytes_than_x_content_length_announces_is_an_error() {
    let answer = response("200 OK", "X-Content-Length: 10\r\n", "hello");
    let (url, _) = scripted(vec![answer]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let err = client.cat_to_file(HELLO, &dest.path().join("out")).await;
    let err = err.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Truncated(_)), "{err:?}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "temp left");
}

#[tokio::test]
async fn js_ipfs_400_error_surfaces_its_message_without_retrying() {
    let body = r#"{"Message":"invalid CID: not-a-cid","Code":0,"Type":"error"}"#;
    let (url, seen) = scripted(vec![response("400 Bad Request", "", body)]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let err = client.cat_range("not-a-cid", 0, None).await.unwrap_err();
    assert!(err.to_string().ends_with("cat not-a-cid: invalid CID: not-a-cid (HTTP 400)"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn js_ipfs_refusing_an_offset_past_the_end_reads_as_empty_like_kubo() {
    let body =
        r#"{"Message":"Failed to cat file: Offset must be less than the file size","Code":0,"Type":"error"}"#;
    let answer = response("500 Internal Server Error", "", body);
    let (url, seen) = scripted(vec![answer]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let stream = client.cat_range(HELLO, 6, None).await.unwrap();
    assert!(stream.collect().await.unwrap().is_empty());
    let stream = client.cat_range(HELLO, 0, Some(0)).await.unwrap();
    assert!(stream.collect().await.unwrap().is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 1, "length 0 is not asked");
}

#[tokio::test]
async fn a_transient_500_is_retried_and_a_missing_block_is_not() {
    let version = response("200 OK", "", r#"{"Version":"0.30.0","Commit":""}"#);
    let busy = response("503 Service Unavailable", "", "busy");
    let (url, seen) = scripted(vec![busy.clone(), busy, version]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    assert_eq!(client.version().await.unwrap(), "0.30.0");
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    let missing = r#"{"Message":"block was not found locally (offline): ipld: could not find x","Code":0,"Type":"error"}"#;
    let (url, seen) = scripted(vec![response("500 Internal Server Error", "", missing)]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Api { status: 500, .. }), "{err:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_node_that_never_answers_times_out() {
    let (url, _) = scripted(vec![String::new()]).await;
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let started = Instant::now();
    let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = client.add_bytes(vec![1; 10]).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    let err = client.id().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn cat_sends_post_with_offset_length_and_a_server_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).await.unwrap();
        let answer = response("200 OK", "", "");
        sock.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
    let stream = client.cat_range(HELLO, 7, Some(9)).await.unwrap();
    assert!(stream.collect().await.unwrap().is_empty());
    let request = server.await.unwrap();
    let line = request.lines().next().unwrap();
    assert_eq!(line, format!("POST /api/v0/cat?arg={HELLO}&offset=7&timeout=1s&length=9 HTTP/1.1"));
}

/// Against a real node when `IPDC_TEST_IPFS_API` names one (e.g. the
/// js-ipfs that `tests/ipfs-peer/peer.sh start` runs, or kubo); skipped otherwise.
#[tokio::test]
async fn a_real_node_gives_kubos_cids_and_slices_when_one_is_configured() {
    let Ok(api) = std::env::var("IPDC_TEST_IPFS_API") else {
        eprintln!("IPDC_TEST_IPFS_API not set: skipped");
        return;
    };
    let client = IpfsClient::with_timeouts(&api, quick()).unwrap();
    assert!(!client.version().await.unwrap().is_empty());
    assert!(!client.id().await.unwrap().is_empty());
    assert_eq!(client.add_bytes(b"hello\n".to_vec()).await.unwrap().cid, HELLO);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mod251");
    std::fs::write(&path, &data).unwrap();
    let added = client.add_path(&path, false).await.unwrap();
    assert_eq!(added.cid, "bafybeicptzmh5x5nlaqtfkrh2k6lrcqygm7mdep7frcti2af2u7r5xdzw4");
    for (offset, length) in
        [(262_143u64, Some(3u64)), (2_999_990, None), (5_000_000, Some(1)), (3_000_000, None), (10, Some(0))]
    {
        let got = client.cat_range(&added.cid, offset, length).await.unwrap();
        let got = got.collect().await.unwrap();
        let start = (offset as usize).min(data.len());
        let end = length.map_or(data.len(), |n| (start + n as usize).min(data.len()));
        assert_eq!(got, &data[start..end], "offset {offset}");
    }
    // Valid but absent (the CID of "hello\n" with one byte changed).
    let absent = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6aa";
    let err = client.cat_range(absent, 0, None).await.unwrap_err();
    assert!(err.to_string().contains(&format!("cat {absent}: ")), "{err}");
    let err = client.cat_range("not-a-cid", 0, None).await.unwrap_err();
    assert!(err.to_string().contains("cat not-a-cid: "), "{err}");
}

#[test]
fn api_urls_are_validated_and_normalised() {
    let ok = [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
        ("localhost:5001", "http://localhost:5001"),
        ("/ip4/10.0.0.2/tcp/5001", "http://10.0.0.2:5001"),
        ("/ip6/::1/tcp/5001/http", "http://[::1]:5001"),
        ("/dns4/ipfs.local/tcp/5001", "http://ipfs.local:5001"),
    ];
    for (input, want) in ok {
        assert_eq!(IpfsClient::new(input).unwrap().api(), want, "{input}");
    }
    for bad in ["", "ftp://h:1", "https://h:5001", "/ip4/1.2.3.4/udp/1", "http://:5001"] {
        let err = IpfsClient::new(bad).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::InvalidUrl(_)), "{bad}: {err}");
    }
}
