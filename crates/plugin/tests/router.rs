//! The router without a socket (tower `oneshot`): request parsing exactly as the daemon sends
//! it, and the response shapes. Mounting is covered end to end in crates/cli/tests.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use sealvol_plugin::{app, Driver, DriverConfig};
use tower::ServiceExt;

fn driver(dir: &std::path::Path) -> Arc<Driver> {
    Arc::new(
        Driver::start(DriverConfig {
            state_dir: dir.join("state"),
            mount_dir: None,
            run_dir: dir.join("run"),
            exe: "/nonexistent/sealvol".into(),
            default_keyfile: None,
            mount_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    )
}

async fn post(d: &Arc<Driver>, path: &str, body: &'static str) -> (String, serde_json::Value) {
    // No Content-Type header, as the daemon sends it.
    let req = Request::post(path).body(Body::from(body)).unwrap();
    let resp = app(d.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (ct, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn daemon_shaped_requests() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver(dir.path());
    let (ct, v) = post(&d, "/Plugin.Activate", "").await;
    assert_eq!(ct, "application/vnd.docker.plugins.v1+json");
    assert_eq!(v, serde_json::json!({"Implements": ["VolumeDriver"]}));
    let (_, v) = post(&d, "/VolumeDriver.Capabilities", "{}\n").await;
    assert_eq!(v["Capabilities"]["Scope"], "local");
    let (_, v) = post(&d, "/VolumeDriver.List", "{}\n").await;
    assert_eq!(v, serde_json::json!({"Volumes": [], "Err": ""}));
    let (_, v) = post(&d, "/VolumeDriver.Get", "{\"Name\":\"x\"}\n").await;
    assert_eq!(v["Err"], "no such volume");
    assert!(v["Volume"].is_null());
    let (_, v) = post(
        &d,
        "/VolumeDriver.Create",
        "{\"Name\":\"x\",\"Opts\":null}\n",
    )
    .await;
    assert!(v["Err"].as_str().unwrap().contains("no key"));
    let (_, v) = post(&d, "/VolumeDriver.Create", "{not json").await;
    assert!(v["Err"].as_str().unwrap().starts_with("malformed request"));
    let (_, v) = post(
        &d,
        "/VolumeDriver.Mount",
        "{\"Name\":\"x\",\"ID\":\"abc\"}\n",
    )
    .await;
    assert_eq!(v["Err"], "no such volume");
    assert_eq!(v["Mountpoint"], "");
    let (_, v) = post(&d, "/VolumeDriver.Path", "{\"Name\":\"x\"}\n").await;
    assert_eq!(v["Err"], "no such volume");
}

async fn post_json(d: &Arc<Driver>, path: &str, body: serde_json::Value) -> serde_json::Value {
    let req = Request::post(path)
        .body(Body::from(body.to_string() + "\n"))
        .unwrap();
    let resp = app(d.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn key_file(dir: &std::path::Path, name: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, [9u8; 32]).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_str().unwrap().to_string()
}

async fn listed(d: &Arc<Driver>) -> usize {
    let v = post_json(d, "/VolumeDriver.List", serde_json::json!({})).await;
    v["Volumes"].as_array().unwrap().len()
}

#[tokio::test]
async fn create_checks_every_option_before_making_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver(dir.path());
    let good = key_file(dir.path(), "good.key", 0o600);
    let open = key_file(dir.path(), "open.key", 0o644);
    let pass = key_file(dir.path(), "pass", 0o600);
    let cases: Vec<(serde_json::Value, &[&str])> = vec![
        (
            serde_json::json!({"keyfile": good, "chunk-size": "100K"}),
            &["option chunk-size", "power of two"],
        ),
        (
            serde_json::json!({"keyfile": good, "cache-size": "lots"}),
            &["cache-size", "64M"],
        ),
        (
            serde_json::json!({"keyfile": good, "memory": "32M"}),
            &["option memory", "32M", "from 64M to 64G"],
        ),
        (
            serde_json::json!({"keyfile": good, "memory": "plenty"}),
            &["option memory", "\"plenty\"", "from 64M to 64G"],
        ),
        (
            // The default budget leaves the cache 40M; a cache of 256M needs a larger budget.
            serde_json::json!({"keyfile": good, "cache-size": "256M"}),
            &["cache-size", "256M", "40M", "raise the memory budget"],
        ),
        (
            serde_json::json!({"keyfile": good, "memory": "128M", "cache-size": "64M"}),
            &[
                "cache-size",
                "memory budget 128M",
                "raise the memory budget",
            ],
        ),
        (
            serde_json::json!({"keyfile": "app.key"}),
            &["option keyfile=app.key", "absolute path", "/etc/sealvol"],
        ),
        (
            serde_json::json!({"passphrase-file": "./pass"}),
            &["option passphrase-file=./pass", "absolute path"],
        ),
        (
            serde_json::json!({"keyfile": open}),
            &["option keyfile=", "chmod 600"],
        ),
        (
            serde_json::json!({"keyfile": good, "passphrase-file": pass}),
            &["not both"],
        ),
        (
            serde_json::json!({"keyfile": good, "passphrase": "hunter2"}),
            &["refusing option \"passphrase\"", "passphrase-file=PATH"],
        ),
        (
            serde_json::json!({"keyfile": good, "colour": "blue"}),
            &["unknown option \"colour\"", "chunk-size"],
        ),
    ];
    for (opts, expect) in cases {
        let v = post_json(
            &d,
            "/VolumeDriver.Create",
            serde_json::json!({"Name": "x", "Opts": opts}),
        )
        .await;
        let err = v["Err"].as_str().unwrap();
        for e in expect {
            assert!(err.contains(e), "{opts}: {err:?} lacks {e:?}");
        }
        assert!(!err.contains("I/O error"), "{err}");
        assert!(
            !dir.path().join("state/volumes/x").exists(),
            "{opts} left a store behind"
        );
        assert_eq!(listed(&d).await, 0);
    }
    // Good options: created.
    let v = post_json(
        &d,
        "/VolumeDriver.Create",
        serde_json::json!({"Name": "x", "Opts": {
            "keyfile": good, "chunk-size": "64K", "memory": "512M", "cache-size": "64M"
        }}),
    )
    .await;
    assert_eq!(v["Err"], "");
    assert!(dir.path().join("state/volumes/x/store/keys.json").is_file());
    assert_eq!(listed(&d).await, 1);
}

/// A tmpfs mounted for one test (as root), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "sealvol-test"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs (needs root)");
        SmallDisk(at)
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_store_that_cannot_be_made_leaves_nothing_and_says_why() {
    let dir = tempfile::Builder::new()
        .prefix("sealvol-router")
        .tempdir_in("/var/tmp")
        .unwrap();
    let key = key_file(dir.path(), "k", 0o600);
    // 4 MiB under the stores: RocksDB starts its files, then the store refuses to write with
    // less than 8 MiB free.
    let disk = SmallDisk::mount(dir.path().join("state/volumes"), "4m");
    let d = driver(dir.path());
    let create = || {
        post_json(
            &d,
            "/VolumeDriver.Create",
            serde_json::json!({"Name": "full", "Opts": {"keyfile": key}}),
        )
    };
    let v = create().await;
    let err = v["Err"].as_str().unwrap();
    assert!(
        err.contains("volume \"full\"")
            && err.contains("disk is full")
            && err.contains("nothing was left behind"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&disk.0).unwrap().count(),
        0,
        "the half-made store is gone"
    );
    assert_eq!(listed(&d).await, 0);
    let g = post_json(&d, "/VolumeDriver.Get", serde_json::json!({"Name": "full"})).await;
    assert_eq!(g["Err"], "no such volume");
    // With room, the same create succeeds: nothing half-made is in its way.
    disk.resize("256m");
    assert_eq!(create().await["Err"], "");
    assert_eq!(listed(&d).await, 1);
}
