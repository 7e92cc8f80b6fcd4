//! Fuzz target body for the plugin server: request bodies against every endpoint of the real
//! router (`sealvol_plugin::app`, driven with `oneshot`, no socket), plus the volume table
//! (`volumes.json`) and the option parsers.
//!
//! The driver runs once per process on a temporary state directory whose table lists one
//! volume (`v`, mounted by `m1`), so Get, List and Path reach a real record. Requests that
//! would change state or touch the machine are not sent: Remove, Mount and Unmount of that
//! volume, and a Create naming a key file or passphrase file (the fuzzer must not read or
//! create files of its own choosing). Every other request is answered from memory.
//!
//! This file is also compiled into `crates/plugin/tests/fuzz_seeds.rs` (no fuzz engine there),
//! which runs it over the committed seeds in `fuzz/seeds/plugin`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use sealvol_plugin::protocol::{CreateRequest, MountRequest, NameRequest};
use sealvol_plugin::table::Table;
use sealvol_plugin::{app, Driver, DriverConfig};
use sealvol_volume::ChunkSize;
use tower::ServiceExt;

/// The endpoints, in selector order; selectors past them parse the table and option strings.
pub const PATHS: [&str; 9] = [
    "/Plugin.Activate",
    "/VolumeDriver.Capabilities",
    "/VolumeDriver.Create",
    "/VolumeDriver.Remove",
    "/VolumeDriver.Mount",
    "/VolumeDriver.Unmount",
    "/VolumeDriver.Path",
    "/VolumeDriver.Get",
    "/VolumeDriver.List",
];

/// The one volume of the fuzzing driver's table.
const TABLE: &str = r#"{"version":1,"volumes":{"v":{"name":"v","created_unix":1700000000,
"key":{"kind":"keyfile","path":"/nonexistent/sealvol-fuzz.key"},"chunk_size":131072,
"options":{"chunk-size":"128K"},"mount_ids":["m1"]}}}"#;

struct Harness {
    rt: tokio::runtime::Runtime,
    driver: Arc<Driver>,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let state: PathBuf = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::write(state.join("volumes.json"), TABLE).expect("table");
        let driver = Driver::start(DriverConfig {
            state_dir: state,
            mount_dir: None,
            run_dir: dir.path().join("run"),
            exe: "/nonexistent/sealvol".into(),
            default_keyfile: None,
            mount_timeout: Duration::from_secs(1),
        })
        .expect("driver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            rt,
            driver: Arc::new(driver),
            _dir: dir,
        }
    })
}

/// Whether the fuzzing driver must not be sent `body` at `path` (see the module doc).
fn unsafe_to_send(path: &str, body: &[u8]) -> bool {
    let known = |name: &str| name == "v";
    match path {
        "/VolumeDriver.Create" => serde_json::from_slice::<CreateRequest>(body)
            .ok()
            .and_then(|q| q.opts)
            .is_some_and(|o| o.contains_key("keyfile") || o.contains_key("passphrase-file")),
        "/VolumeDriver.Remove" => {
            serde_json::from_slice::<NameRequest>(body).is_ok_and(|q| known(&q.name))
        }
        "/VolumeDriver.Mount" | "/VolumeDriver.Unmount" => {
            serde_json::from_slice::<MountRequest>(body).is_ok_and(|q| known(&q.name))
        }
        _ => false,
    }
}

/// One fuzz input: a selector byte, then a request body (or a table, or an option string).
pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let sel = sel as usize % (PATHS.len() + 2);
    if sel == PATHS.len() {
        // The volume table as read back from the state directory.
        if let Ok(t) = serde_json::from_slice::<Table>(body) {
            let json = serde_json::to_vec(&t).expect("a table encodes");
            assert_eq!(serde_json::from_slice::<Table>(&json).ok(), Some(t));
        }
        return;
    }
    if sel == PATHS.len() + 1 {
        // `-o chunk-size=` and `-o cache-size=` values.
        let s = String::from_utf8_lossy(body);
        if let Ok(c) = ChunkSize::from_str(&s) {
            assert_eq!(ChunkSize::from_str(&c.to_string()).ok(), Some(c));
        }
        if let Some(n) = sealvol_volume::parse_size(&s) {
            assert_eq!(sealvol_volume::parse_size(&n.to_string()), Some(n));
        }
        return;
    }
    let path = PATHS[sel];
    if unsafe_to_send(path, body) {
        return;
    }
    let h = harness();
    let req = Request::post(path)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (status, ct, bytes) = h.rt.block_on(async {
        let resp = app(h.driver.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let ct = resp.headers().get("content-type").cloned();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, bytes)
    });
    assert_eq!(status, 200, "{path}");
    assert_eq!(
        ct.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/vnd.docker.plugins.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON reply");
    let obj = v.as_object().expect("a JSON object");
    if sel >= 2 {
        let err = obj
            .get("Err")
            .and_then(|e| e.as_str())
            .expect("an Err field");
        // A reply is never much larger than the request (a name may be quoted, escaped).
        assert!(
            err.len() <= 1024 + 4 * body.len(),
            "{path}: Err of {} bytes",
            err.len()
        );
    }
}

/// Daemon-shaped requests (as `shared/docs/docker-volume-plugin-protocol.md` records them),
/// a table and option strings.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, path: &str, body: &str| {
        let sel = PATHS.iter().position(|p| *p == path).unwrap_or_else(|| {
            if path == "table" {
                PATHS.len()
            } else {
                PATHS.len() + 1
            }
        });
        let mut v = vec![sel as u8];
        v.extend_from_slice(body.as_bytes());
        out.push((name.to_string(), v));
    };
    add("activate", "/Plugin.Activate", "");
    add("capabilities", "/VolumeDriver.Capabilities", "{}\n");
    add(
        "create-opts",
        "/VolumeDriver.Create",
        "{\"Name\":\"data\",\"Opts\":{\"chunk-size\":\"1M\",\"cache-size\":\"256M\"}}\n",
    );
    add(
        "create-null",
        "/VolumeDriver.Create",
        "{\"Name\":\"x\",\"Opts\":null}\n",
    );
    add("remove", "/VolumeDriver.Remove", "{\"Name\":\"data\"}\n");
    add(
        "mount",
        "/VolumeDriver.Mount",
        "{\"Name\":\"data\",\"ID\":\"abc\"}\n",
    );
    add(
        "unmount",
        "/VolumeDriver.Unmount",
        "{\"Name\":\"data\",\"ID\":\"abc\"}\n",
    );
    add("path", "/VolumeDriver.Path", "{\"Name\":\"v\"}\n");
    add("get", "/VolumeDriver.Get", "{\"Name\":\"v\"}\n");
    add("list", "/VolumeDriver.List", "{}\n");
    add("table", "table", TABLE);
    add("size", "size", "128K");
    out
}
