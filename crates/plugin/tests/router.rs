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
