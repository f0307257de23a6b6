//! The store through its real HTTP server and the real IPFS client: CIDs
//! equal to kubo's, `cat` slices, errors, filestore references.

use std::path::Path;

use ipdc_common::ipfs::IpfsClient;
use tokio::io::AsyncWriteExt;

use super::StoreHandle;

const EMPTY: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const A1000: &str = "bafkreicb5xwoilld5dm36uk2totjglq4edf4t5nf2e2giww3lwy3s436um";
const HELLO: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
const MOD251_3M: &str = "bafybeicptzmh5x5nlaqtfkrh2k6lrcqygm7mdep7frcti2af2u7r5xdzw4";
const MOD251_50M: &str = "bafybeibj2bygcvu5axz7czp7mjl6ibmtt5d6y7ucxteyzhflcz4svt3yyq";

const CHUNK: u64 = 262_144;

async fn start(data_dir: &Path) -> (StoreHandle, IpfsClient) {
    start_with(data_dir, None).await
}

/// A store whose HTTP clients may add the files under `root` by reference.
async fn start_nocopy(data_dir: &Path, root: &Path) -> (StoreHandle, IpfsClient) {
    start_with(data_dir, Some(root)).await
}

async fn start_with(data_dir: &Path, nocopy_root: Option<&Path>) -> (StoreHandle, IpfsClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = nocopy_root.map(Path::to_path_buf);
    let store =
        super::serve(listener, data_dir.to_path_buf(), super::Durability::Durable, root).await.unwrap();
    let client = IpfsClient::new(&store.url()).unwrap();
    (store, client)
}

/// A `nocopy` add of `body` as the file at `abspath`, by hand (the client
/// always sends the file's own bytes); the status and the body of the answer.
async fn nocopy_add(store: &StoreHandle, abspath: &str, body: &[u8]) -> (u16, String) {
    let url = format!("{}/api/v0/add?cid-version=1&nocopy=true", store.url());
    let mut form = format!(
        "--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nAbspath: {abspath}\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(body);
    form.extend_from_slice(b"\r\n--X--\r\n");
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "multipart/form-data; boundary=X")
        .body(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn mod251(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| (i % 251) as u8).collect()
}

/// Writes `len` bytes of `i % 251` to `path`, one MiB at a time.
async fn write_mod251(path: &Path, len: u64) {
    let mut f = tokio::fs::File::create(path).await.unwrap();
    let mut at = 0;
    while at < len {
        let end = (at + (1 << 20)).min(len);
        f.write_all(&mod251(at..end)).await.unwrap();
        at = end;
    }
    f.flush().await.unwrap();
}

/// Bytes of all files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

async fn cat(client: &IpfsClient, cid: &str, offset: u64, length: Option<u64>) -> Vec<u8> {
    let stream = client.cat_range(cid, offset, length).await.unwrap();
    stream.collect().await.unwrap()
}

#[tokio::test]
async fn add_path_and_add_bytes_give_kubos_cids() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;

    let small: [(&str, Vec<u8>, &str); 3] = [
        ("empty", Vec::new(), EMPTY),
        ("a1000", vec![b'a'; 1000], A1000),
        ("hello", b"hello\n".to_vec(), HELLO),
    ];
    for (name, bytes, want) in small {
        let path = files.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let by_path = client.add_path(&path, false).await.unwrap();
        assert_eq!(by_path.cid, want, "add_path {name}");
        assert_eq!(by_path.size, bytes.len() as u64, "{name}: a leaf's size");
        let by_bytes = client.add_bytes(bytes).await.unwrap();
        assert_eq!(by_bytes.cid, want, "add_bytes {name}");
    }

    for (len, want) in [(3_000_000, MOD251_3M), (50_000_000, MOD251_50M)] {
        let path = files.path().join(format!("mod251-{len}"));
        write_mod251(&path, len).await;
        let added = client.add_path(&path, false).await.unwrap();
        assert_eq!(added.cid, want, "add_path of {len} bytes");
        assert!(added.size > len, "Size is the DAG's, above the file's");
    }
    let added = client.add_bytes(mod251(0..3_000_000)).await.unwrap();
    assert_eq!(added.cid, MOD251_3M);
    store.shutdown().await;
}

#[tokio::test]
async fn cat_slices_equal_the_files_bytes_around_chunk_boundaries() {
    let data = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let len = 3_000_000u64;
    let cid = client.add_bytes(mod251(0..len)).await.unwrap().cid;
    assert_eq!(cid, MOD251_3M);

    let cases: &[(u64, Option<u64>)] = &[
        (0, Some(10)),
        (CHUNK - 1, Some(1)),
        (CHUNK - 1, Some(2)),
        (CHUNK, Some(1)),
        (CHUNK + 1, Some(CHUNK)),
        (CHUNK - 1, Some(2 * CHUNK + 3)),
        (5 * CHUNK - 7, None),
        (len - 1, Some(100)),
        (len, None),
        (len + 1000, Some(5)),
        (12345, Some(0)),
        (0, None),
        (CHUNK, Some(u64::MAX)),
    ];
    for &(offset, length) in cases {
        let got = cat(&client, &cid, offset, length).await;
        let start = offset.min(len);
        let end = length.map_or(len, |n| start.saturating_add(n).min(len));
        assert_eq!(got.len() as u64, end - start, "offset {offset} length {length:?}");
        assert!(got == mod251(start..end), "offset {offset} length {length:?}");
    }

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("whole");
    assert_eq!(client.cat_to_file(&cid, &dest).await.unwrap(), len);
    assert!(std::fs::read(&dest).unwrap() == mod251(0..len));
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1, "no temp left");
    // An object larger than a message said: one byte more is written, no more.
    let small = out.path().join("said-small");
    assert_eq!(client.cat_sized_to_scratch_file(&cid, &small, 10).await.unwrap(), 11);
    assert!(std::fs::read(&small).unwrap() == mod251(0..11));
    assert_eq!(client.cat_sized_to_scratch_file(&cid, &small, len).await.unwrap(), len);
    store.shutdown().await;
}

#[tokio::test]
async fn unknown_and_malformed_cids_are_errors_naming_the_call_and_the_cid() {
    let data = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let err = client.cat_range(HELLO, 0, None).await.unwrap_err().to_string();
    assert!(err.contains(&store.url()), "{err}");
    assert!(err.contains(&format!("cat {HELLO}")), "{err}");
    assert!(err.contains("could not find"), "{err}");

    let err = client.cat_to_file("not-a-cid", &data.path().join("x")).await;
    let err = err.unwrap_err().to_string();
    assert!(err.contains("cat not-a-cid") && err.contains("invalid"), "{err}");
    assert!(!data.path().join("x").exists());
    store.shutdown().await;
}

#[tokio::test]
async fn the_same_content_twice_keeps_one_copy_and_other_bases_find_it() {
    let data = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let first = client.add_bytes(vec![b'a'; 1000]).await.unwrap();
    let second = client.add_bytes(vec![b'a'; 1000]).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(du(data.path()), 1000);
    assert_eq!(std::fs::read_dir(data.path().join("blobs")).unwrap().count(), 1);
    // Same CID in upper-case base32.
    let upper = format!("B{}", &A1000[1..].to_uppercase());
    assert_eq!(cat(&client, &upper, 998, None).await, b"aa");
    store.shutdown().await;
}

#[tokio::test]
async fn nocopy_add_references_the_file_instead_of_copying_it() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (store, client) = start_nocopy(data.path(), files.path()).await;
    let path = files.path().join("input");
    write_mod251(&path, 3_000_000).await;

    let before = du(data.path());
    let added = client.add_path(&path, true).await.unwrap();
    assert_eq!(added.cid, MOD251_3M);
    assert!(du(data.path()) < before + 1000, "the data dir grew");
    let got = cat(&client, MOD251_3M, CHUNK - 3, Some(CHUNK + 6)).await;
    assert!(got == mod251(CHUNK - 3..2 * CHUNK + 3));

    // A file rewritten in place after being referenced (same length) is an
    // error, not bad data.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = client.cat_range(MOD251_3M, 0, None).await.unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    store.shutdown().await;
}

#[tokio::test]
async fn in_process_readers_get_the_referenced_file_and_refuse_a_changed_one() {
    use ipdc_common::ipfs::LocalFiles;
    use std::os::unix::fs::FileExt;
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let local = store.local();
    let path = files.path().join("input");
    write_mod251(&path, 3_000_000).await;
    let (cid, size) = local.add_file(&path).await.unwrap();
    assert_eq!((cid.as_str(), size), (MOD251_3M, 3_000_000));

    // The same bytes `cat` serves, from the file itself.
    let (file, held) = local.open(MOD251_3M).unwrap().unwrap();
    assert_eq!(held, 3_000_000);
    let mut got = vec![0u8; (CHUNK + 6) as usize];
    file.read_exact_at(&mut got, CHUNK - 3).unwrap();
    assert!(got == cat(&client, MOD251_3M, CHUNK - 3, Some(CHUNK + 6)).await);
    // Objects it does not hold (or not a CID at all) are for `cat`.
    assert!(local.open(A1000).is_none());
    assert!(local.open("not-a-cid").is_none());

    // Rewritten in place (same length): refused, as `cat` refuses it.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = local.open(MOD251_3M).unwrap().unwrap_err();
    assert!(err.to_string().contains("changed since"), "{err}");
    // Cut short: refused too.
    std::fs::write(&path, &bytes[..1000]).unwrap();
    let err = local.open(MOD251_3M).unwrap().unwrap_err();
    assert!(err.to_string().contains("changed since"), "{err}");
    store.shutdown().await;
}

#[tokio::test]
async fn nocopy_is_refused_without_a_root_saying_how_to_turn_it_on() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let path = files.path().join("input");
    write_mod251(&path, 3_000_000).await;
    let err = client.add_path(&path, true).await.unwrap_err().to_string();
    assert!(err.contains(super::server::NOCOPY_OFF), "{err}");
    assert!(err.contains("--nocopy-root DIR"), "{err}");
    // The same answer for a path that names nothing: the file was not looked at.
    let missing = files.path().join("missing");
    let (status, text) = nocopy_add(&store, missing.to_str().unwrap(), b"hello\n").await;
    assert_eq!(status, 500);
    assert!(text.contains(super::server::NOCOPY_OFF), "{text}");
    // Copies (no nocopy) are unaffected.
    assert_eq!(client.add_path(&path, false).await.unwrap().cid, MOD251_3M);
    store.shutdown().await;
}

#[tokio::test]
async fn every_nocopy_refusal_is_one_answer_whatever_the_path_names() {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root_parent = tempfile::tempdir().unwrap();
    let root = root_parent.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    let (store, _client) = start_nocopy(data.path(), &root).await;
    let sent = b"hello\n";
    // Files outside the root holding exactly the bytes sent: a reference to
    // them would have been taken (and hashed) before.
    let secret = outside.path().join("secret");
    std::fs::write(&secret, sent).unwrap();
    std::fs::write(root_parent.path().join("beside"), sent).unwrap();
    std::fs::write(root.join("other"), b"hellO\n").unwrap();
    std::fs::write(root.join("longer"), b"hello, a longer file\n").unwrap();
    std::fs::create_dir(root.join("folder")).unwrap();
    std::os::unix::fs::symlink(&secret, root.join("link-out")).unwrap();
    let under = |name: &str| root.join(name).display().to_string();
    let cases = [
        secret.display().to_string(),
        outside.path().join("missing").display().to_string(),
        format!("{}/../beside", root.display()),
        root_parent.path().join("beside").display().to_string(),
        under("missing"),
        under("other"),
        under("longer"),
        under("folder"),
        under("link-out"),
        root.display().to_string(),
        "relative/path".to_string(),
        String::new(),
    ];
    let mut answers = std::collections::BTreeSet::new();
    for abspath in &cases {
        let (status, text) = nocopy_add(&store, abspath, sent).await;
        assert_eq!(status, 500, "{abspath}: {text}");
        assert!(text.contains(super::server::NOCOPY_REFUSED), "{abspath}: {text}");
        answers.insert(text);
    }
    assert_eq!(answers.len(), 1, "one answer for every refusal: {answers:?}");
    let only: serde_json::Value = serde_json::from_str(answers.first().unwrap()).unwrap();
    assert_eq!(only["Message"], super::server::NOCOPY_REFUSED, "nothing about the file is added");
    // Nothing was referenced or copied.
    assert!(store.state.repo.get(&super::cid::Cid::parse(HELLO).unwrap()).is_none());
    assert_eq!(du(&data.path().join("blobs")), 0);
    // A file under the root with the bytes sent is referenced.
    std::fs::write(root.join("hello"), sent).unwrap();
    let (status, text) = nocopy_add(&store, &under("hello"), sent).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(HELLO), "{text}");
    store.shutdown().await;
}

#[tokio::test]
async fn a_nocopy_root_that_is_not_a_folder_stops_the_store_from_starting() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let missing = data.path().join("no-such-root");
    let e = super::serve(listener, data.path().join("d"), super::Durability::Durable, Some(missing)).await;
    assert!(e.err().unwrap().to_string().contains("nocopy root"));
}

#[tokio::test]
async fn id_is_stable_per_data_dir_and_version_names_the_store() {
    let data = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let id = client.id().await.unwrap();
    assert!(id.starts_with("12D3KooW"), "{id}");
    assert_eq!(client.version().await.unwrap(), "ipdc-store-0.1");
    let added = client.add_bytes(b"hello\n".to_vec()).await.unwrap();
    store.shutdown().await;

    // Restarted on the same directory: same ID, copies still served.
    let (store, client) = start(data.path()).await;
    assert_eq!(client.id().await.unwrap(), id);
    assert_eq!(cat(&client, &added.cid, 0, None).await, b"hello\n");
    store.shutdown().await;

    let other = tempfile::tempdir().unwrap();
    let (store, client) = start(other.path()).await;
    assert_ne!(client.id().await.unwrap(), id);
    store.shutdown().await;
}

#[tokio::test]
async fn get_requests_and_other_cid_versions_are_refused_like_kubo() {
    let data = tempfile::tempdir().unwrap();
    let (store, _client) = start(data.path()).await;
    let http = reqwest::Client::new();
    let get = http.get(format!("{}/api/v0/version", store.url()));
    assert_eq!(get.send().await.unwrap().status(), 405);

    let post = http.post(format!("{}/api/v0/cat?arg={HELLO}", store.url()));
    let resp = post.send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["Type"], "error");
    assert_eq!(body["Code"], 0);

    let url = format!("{}/api/v0/add?trickle=true", store.url());
    let resp = http
        .post(url)
        .header("Content-Type", "multipart/form-data; boundary=X")
        .body("--X\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nhi\r\n--X--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    store.shutdown().await;
}

#[tokio::test]
async fn files_hashed_on_several_threads_give_kubos_cids() {
    let files = tempfile::tempdir().unwrap();
    let known = [(0, EMPTY), (3_000_000, MOD251_3M), (50_000_000, MOD251_50M)];
    for (len, want) in known {
        let path = files.path().join(format!("mod251-{len}"));
        write_mod251(&path, len).await;
        for threads in [1, 2, 3, 8] {
            let got = super::repo::hash_file(&path, threads, super::importer::Layout::V1).unwrap();
            assert_eq!(got.cid.to_string(), want, "{len} bytes on {threads} thread(s)");
            assert_eq!(got.file_size, len);
        }
    }
    // Lengths around leaf and thread-range boundaries agree with the streaming importer.
    for len in [1, CHUNK - 1, CHUNK, CHUNK + 1, 16 * CHUNK, 33 * CHUNK + 5, 175 * CHUNK] {
        let path = files.path().join(format!("mod251-{len}"));
        write_mod251(&path, len).await;
        let streamed = super::importer::cid_of(&mod251(0..len));
        for threads in [1, 2, 3] {
            assert_eq!(
                super::repo::hash_file(&path, threads, super::importer::Layout::V1).unwrap(),
                streamed,
                "{len} bytes, {threads}"
            );
        }
    }
}

/// `repo/gc` through HTTP: the CIDs it says it removed.
async fn repo_gc(store: &StoreHandle) -> Vec<String> {
    let resp = reqwest::Client::new().post(format!("{}/api/v0/repo/gc", store.url())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut cids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Key"]["/"].as_str().unwrap().to_string()
        })
        .collect();
    cids.sort();
    cids
}

#[tokio::test]
async fn repo_gc_removes_what_was_only_added_unpinned_and_keeps_pins_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &[u8]| {
        let p = files.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (store, client) = start(data.path()).await;
    // scratch: only unpinned; pinned: added pinned; both: unpinned then
    // pinned; pinned_first: pinned then unpinned (a pin is not undone).
    let scratch = client.add_scratch(&write("scratch", b"map output\n")).await.unwrap().cid;
    let pinned = client.add_path(&write("input", b"the input\n"), false).await.unwrap().cid;
    let both = client.add_scratch(&write("both", b"both\n")).await.unwrap().cid;
    assert_eq!(client.add_path(&write("both2", b"both\n"), false).await.unwrap().cid, both);
    let pinned_first = client.add_bytes(b"kept\n".to_vec()).await.unwrap().cid;
    assert_eq!(client.add_scratch(&write("kept", b"kept\n")).await.unwrap().cid, pinned_first);
    // A collection keeping the last hour's objects removes nothing yet.
    assert!(store.local().collect(std::time::Duration::from_secs(3600)).await.unwrap() == 0);
    store.shutdown().await;

    // Markers survive a restart; a collection removes only `scratch`.
    let (store, client) = start_nocopy(data.path(), files.path()).await;
    assert_eq!(repo_gc(&store).await, std::slice::from_ref(&scratch));
    let Err(err) = client.cat_range(&scratch, 0, None).await else { panic!("{scratch} was collected") };
    let err = err.to_string();
    assert!(err.contains("could not find"), "{err}");
    assert!(!data.path().join("blobs").join(&scratch).exists());
    for (cid, body) in [(&pinned, &b"the input\n"[..]), (&both, b"both\n"), (&pinned_first, b"kept\n")] {
        assert_eq!(cat(&client, cid, 0, None).await, body);
    }
    assert!(repo_gc(&store).await.is_empty(), "nothing left to collect");
    // A filestore reference pins its object, whichever comes first: the
    // reference, or a copy of the same bytes added unpinned.
    let ref_first = write(
        "ref_first",
        b"referenced first
",
    );
    let cid1 = client.add_path(&ref_first, true).await.unwrap().cid;
    assert_eq!(
        client
            .add_scratch(&write(
                "copy1",
                b"referenced first
"
            ))
            .await
            .unwrap()
            .cid,
        cid1
    );
    let cid2 = client
        .add_scratch(&write(
            "copy2",
            b"copied first
",
        ))
        .await
        .unwrap()
        .cid;
    assert_eq!(
        client
            .add_path(
                &write(
                    "ref_second",
                    b"copied first
"
                ),
                true
            )
            .await
            .unwrap()
            .cid,
        cid2
    );
    // Something else in the markers' folder is skipped, not an error.
    std::fs::create_dir(data.path().join("unpinned").join("stray")).unwrap();
    assert!(repo_gc(&store).await.is_empty());
    assert_eq!(cat(&client, &cid1, 0, None).await, b"referenced first\n");
    assert_eq!(cat(&client, &cid2, 0, None).await, b"copied first\n");
    // Added unpinned again, it is collectable again.
    assert_eq!(client.add_scratch(&write("scratch2", b"map output\n")).await.unwrap().cid, scratch);
    assert_eq!(repo_gc(&store).await, [scratch]);
    store.shutdown().await;
}

#[tokio::test]
async fn a_directory_of_parts_put_as_a_node_is_kubos_directory_and_pins_its_files() {
    use super::cid::Cid;
    use super::dir::{DirLink, encode};
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    // Parts as agents add them: unpinned, one of one chunk, one of several.
    let small = files.path().join("part-00000");
    std::fs::write(&small, b"a\t1\n").unwrap();
    let big = files.path().join("part-00001");
    write_mod251(&big, 3_000_000).await;
    let mut links = Vec::new();
    for (name, path) in [("part-00000", &small), ("part-00001", &big)] {
        let added = client.add_scratch(path).await.unwrap();
        let tsize = client.dag_size(&added.cid).await.unwrap();
        assert_eq!(tsize, added.size, "{name}: files/stat's CumulativeSize is add's Size");
        links.push(DirLink { name: name.into(), cid: Cid::parse(&added.cid).unwrap(), tsize, is_dir: false });
    }
    let (node, cid, _) = encode(&mut links, super::importer::Layout::V1);
    let key = client.put_dag_pb(node.clone(), true).await.unwrap();
    assert_eq!(Cid::parse(&key).unwrap(), cid);
    // The same CID as adding the two files wrapped in a directory.
    let url = format!("{}/api/v0/add?cid-version=1&wrap-with-directory=true", store.url());
    let mut form = Vec::new();
    for path in [&small, &big] {
        let name = path.file_name().unwrap().to_str().unwrap();
        form.extend(
            format!("--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n")
                .bytes(),
        );
        form.extend(std::fs::read(path).unwrap());
        form.extend(b"\r\n");
    }
    form.extend(b"--X--\r\n");
    let resp = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "multipart/form-data; boundary=X")
        .body(form)
        .send()
        .await
        .unwrap();
    let answer = resp.text().await.unwrap();
    let wrapped: serde_json::Value = serde_json::from_str(answer.lines().last().unwrap()).unwrap();
    assert_eq!(wrapped["Hash"], cid.to_string(), "{answer}");
    // Pinned: a collection keeps both parts, and the directory lists them.
    assert!(repo_gc(&store).await.is_empty());
    let listed: Vec<String> = client.ls(&key).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(listed, ["part-00000", "part-00001"]);

    // What the store does not keep is refused by name.
    let put = |query: &'static str, body: Vec<u8>| {
        let url = format!("{}/api/v0/block/put?{query}", store.url());
        async move {
            let mut form = b"--X\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n".to_vec();
            form.extend(body);
            form.extend(b"\r\n--X--\r\n");
            let resp = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "multipart/form-data; boundary=X")
                .body(form)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, text) = put("cid-codec=raw", b"bytes".to_vec()).await;
    assert_eq!(status, 400);
    assert!(text.contains("only UnixFS directory nodes"), "{text}");
    let mut stranger =
        vec![DirLink { name: "x".into(), cid: Cid::parse(EMPTY).unwrap(), tsize: 0, is_dir: false }];
    let (node, _, _) = encode(&mut stranger, super::importer::Layout::V1);
    let (status, text) = put("cid-codec=dag-pb&pin=true", node).await;
    assert_eq!(status, 400);
    assert!(text.contains(&format!("links to {EMPTY} (x), which this store does not hold")), "{text}");
    store.shutdown().await;
}

/// An `add` of `files` (name, bytes) with `query`: the status and answer lines.
async fn add_form(
    store: &StoreHandle,
    query: &str,
    files: &[(&str, &[u8])],
) -> (u16, Vec<serde_json::Value>) {
    let mut form = Vec::new();
    for (name, bytes) in files {
        form.extend(
            format!("--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n")
                .bytes(),
        );
        form.extend(*bytes);
        form.extend(b"\r\n");
    }
    form.extend(b"--X--\r\n");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v0/add?{query}", store.url()))
        .header("Content-Type", "multipart/form-data; boundary=X")
        .body(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (status, lines)
}

/// kubo's `ipfs add FILE` (no options) against a hub: CIDv0 with dag-pb
/// leaves, the same CIDs as js-ipfs and kubo, readable back by either
/// form, across a restart; a wrapped add gives the CIDv0 directory.
#[tokio::test]
async fn a_plain_add_gives_kubos_cidv0_and_reads_back() {
    let data = tempfile::tempdir().unwrap();
    let (store, client) = start(data.path()).await;
    let big = mod251(0..3_000_000);
    let (status, lines) = add_form(&store, "", &[("big", &big)]).await;
    assert_eq!(status, 200, "{lines:?}");
    assert_eq!(lines[0]["Hash"], "QmTdtwzKMjtWmGptPoCaK83huuRM7EWJXfHLnZi5nbF1A4");
    assert_eq!(lines[0]["Size"], "3000753");
    let (_, lines) = add_form(&store, "pin=true&progress=false", &[("hello", b"hello\n")]).await;
    assert_eq!(lines[0]["Hash"], "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN");
    // Wrapped: the files, then the directory js-ipfs gives for the same add.
    let (_, lines) =
        add_form(&store, "wrap-with-directory=true", &[("hello", b"hello\n"), ("big", &big)]).await;
    let hashes: Vec<&str> = lines.iter().map(|l| l["Hash"].as_str().unwrap()).collect();
    assert_eq!(
        hashes,
        [
            "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN",
            "QmTdtwzKMjtWmGptPoCaK83huuRM7EWJXfHLnZi5nbF1A4",
            "QmUk7TguFjUWPNntmDR3Qcm9yuEQdsQgLLQxom6fHfK6LR"
        ]
    );
    assert_eq!(lines[2]["Name"], "");
    let listed: Vec<String> = client
        .ls("QmUk7TguFjUWPNntmDR3Qcm9yuEQdsQgLLQxom6fHfK6LR")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, ["big", "hello"]);
    // The same bytes as CIDv1 are another object, and both read back.
    let v1 = client.add_bytes(big.clone()).await.unwrap();
    assert_eq!(v1.cid, MOD251_3M);
    store.shutdown().await;
    let (store, client) = start(data.path()).await;
    for cid in ["QmTdtwzKMjtWmGptPoCaK83huuRM7EWJXfHLnZi5nbF1A4", MOD251_3M] {
        let got = client.cat_range(cid, 0, None).await.unwrap().collect().await.unwrap();
        assert!(got == big, "{cid} after a restart");
    }
    assert_eq!(client.dag_size("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN").await.unwrap(), 14);
    assert_eq!(client.file_size("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN").await.unwrap(), 6);
    store.shutdown().await;
}

/// Every add option the store does not honour is refused, naming it.
#[tokio::test]
async fn add_options_it_does_not_honour_are_refused_by_name() {
    let data = tempfile::tempdir().unwrap();
    let (store, _client) = start(data.path()).await;
    for (query, named) in [
        ("trickle=true", "trickle=true"),
        ("only-hash=true", "only-hash=true"),
        ("cid-version=0&raw-leaves=true", "raw-leaves=true"),
        ("cid-version=1&raw-leaves=false", "raw-leaves=false"),
        ("chunker=size-1024", "chunker=size-1024"),
        ("hash=blake2b-256", "hash=blake2b-256"),
        ("cid-version=2", "cid-version=2"),
        ("to-files=/x", "to-files"),
        ("inline=true", "inline=true"),
    ] {
        let (status, lines) = add_form(&store, query, &[("hello", b"hello\n")]).await;
        assert_eq!(status, 500, "{query}");
        let message = lines[0]["Message"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    let (status, _) = add_form(&store, "trickle=false&cid-version=1&raw-leaves=true", &[("h", b"h")]).await;
    assert_eq!(status, 200);
    store.shutdown().await;
}
