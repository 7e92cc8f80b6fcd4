//! The S3 backend against a real S3-compatible server, s3s-fs, started here
//! (`scripts/setup.sh --test` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealvol_objstore::{Error, ObjectStore, S3Config, S3Location, S3Store};

const KEY_ID: &str = "sealvoltest";
const SECRET: &str = "sealvol-test-secret-0123456789";

struct Server {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> Server {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("bkt")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY_ID, "--secret-key", SECRET])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run s3s-fs ({e}): install it with `scripts/setup.sh --test` (cargo install --locked s3s-fs@0.14.1 --features binary)")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        port,
        _root: root,
    }
}

fn store(s: &Server, secret: &str) -> S3Store {
    let cfg = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{}", s.port)),
        access_key_id: Some(KEY_ID.into()),
        secret_access_key: Some(secret.into()),
        ..S3Config::default()
    };
    S3Store::open(
        S3Location::parse("s3://bkt/pre/fix").unwrap().unwrap(),
        &cfg,
    )
    .unwrap()
}

#[test]
fn s3_backend_keeps_the_promises() {
    let srv = server();
    let s = store(&srv, SECRET);
    assert!(s.list("").unwrap().is_empty());
    s.put("objects/ab/abcd", b"hello").unwrap();
    s.put("exports/00000001.meta", b"meta").unwrap();
    assert_eq!(s.get("objects/ab/abcd").unwrap(), b"hello");
    assert!(s.get("objects/ab/none").unwrap_err().is_not_found());
    assert_eq!(s.head("objects/ab/abcd").unwrap().unwrap().size, 5);
    assert!(s.head("objects/ab/none").unwrap().is_none());
    let mut keys: Vec<String> = s.list("").unwrap().into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, ["exports/00000001.meta", "objects/ab/abcd"]);
    assert_eq!(s.list("objects").unwrap()[0].key, "objects/ab/abcd");
    assert!(s
        .put_if_absent("exports/00000001.manifest", b"one")
        .unwrap());
    assert!(!s
        .put_if_absent("exports/00000001.manifest", b"two")
        .unwrap());
    assert_eq!(s.get("exports/00000001.manifest").unwrap(), b"one");
    s.delete("objects/ab/abcd").unwrap();
    s.delete("objects/ab/abcd").unwrap();
    assert!(s.list("objects").unwrap().is_empty());

    // Wrong credentials: refused, said so, and the secret is in no message.
    let bad = store(&srv, "not-the-secret-at-all");
    let e = bad.list("").unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("AWS_SECRET_ACCESS_KEY"), "{msg}");
    assert!(!msg.contains("not-the-secret-at-all"), "{msg}");
}

/// A large object streamed as a multipart upload (three 16 MiB parts and a short one) reads
/// back whole, by ranges and through `ObjectReader`; an upload dropped unfinished leaves no
/// object.
#[test]
fn s3_streams_large_objects_both_ways() {
    use std::io::{Read, Write};
    let s = server();
    let st = std::sync::Arc::new(store(&s, SECRET));
    let data: Vec<u8> = (0..(50u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut w = st.put_writer("big/one.tar.age").unwrap();
    for piece in data.chunks(1 << 20) {
        w.write_all(piece).unwrap();
    }
    assert!(
        st.head("big/one.tar.age").unwrap().is_none(),
        "visible before finish"
    );
    w.finish().unwrap();
    assert_eq!(
        st.head("big/one.tar.age").unwrap().unwrap().size,
        data.len() as u64
    );
    assert_eq!(
        st.get_range("big/one.tar.age", 17..(20 << 20) + 3).unwrap(),
        &data[17..(20 << 20) + 3]
    );
    let shared: std::sync::Arc<dyn ObjectStore> = st.clone();
    let mut back = Vec::new();
    sealvol_objstore::ObjectReader::open(shared.clone(), "big/one.tar.age")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "the object read back differs");
    assert!(sealvol_objstore::ObjectReader::open(shared, "big/none")
        .unwrap_err()
        .is_not_found());

    let mut w = st.put_writer("big/abandoned").unwrap();
    w.write_all(&data[..(17 << 20)]).unwrap();
    drop(w);
    assert!(st.head("big/abandoned").unwrap().is_none());
    let keys: Vec<String> = st.list("big").unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, vec!["big/one.tar.age".to_string()]);
}
