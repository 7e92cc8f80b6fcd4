//! `sealvol serve`: Docker's volume plugin protocol over a unix socket.
//!
//! The HTTP layer ([`app`]) only parses and answers; the [`Driver`] owns the volume table and
//! the mount processes. Every mounted volume is served by its own `sealvol mount` process, so
//! mounts outlive this server; on start the driver re-adopts live mounts and cleans dead ones.
//! See `../shared/docs/docker-volume-plugin-protocol.md` for what the daemon really sends.

pub mod driver;
pub mod protocol;
pub mod table;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use driver::{Driver, DriverConfig, DriverError};
use protocol::*;

const CONTENT: &str = "application/vnd.docker.plugins.v1+json";

fn reply<T: Serialize>(v: &T) -> Response {
    let body =
        serde_json::to_vec(v).unwrap_or_else(|_| br#"{"Err":"internal encoding error"}"#.to_vec());
    ([(CONTENT_TYPE, CONTENT)], body).into_response()
}

/// The daemon sends no Content-Type, and an empty body for Activate: parse by hand.
fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, String> {
    let trimmed = body.iter().filter(|b| !b.is_ascii_whitespace()).count();
    if trimmed == 0 {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))
}

/// The router, testable without a socket.
pub fn app(driver: Arc<Driver>) -> Router {
    let d = driver;
    Router::new()
        .route(
            "/Plugin.Activate",
            post(|| async {
                reply(&ActivateResponse {
                    implements: vec!["VolumeDriver".into()],
                })
            }),
        )
        .route(
            "/VolumeDriver.Capabilities",
            post(|| async {
                reply(&CapabilitiesResponse {
                    capabilities: Capabilities {
                        scope: "local".into(),
                    },
                })
            }),
        )
        .route(
            "/VolumeDriver.Create",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<CreateRequest>(&body) {
                        Ok(req) => {
                            let keys: Vec<&String> =
                                req.opts.iter().flat_map(|o| o.keys()).collect();
                            tracing::info!(volume = %req.name, options = ?keys, "create requested");
                            blocking(move || {
                                d.create(&req.name, req.opts.unwrap_or_default())
                                    .map_err(|e| e.to_string())
                            })
                            .await
                            .and_then(|x| x)
                        }
                        Err(e) => Err(e),
                    };
                    reply(&ErrResponse::from(r))
                }
            }),
        )
        .route(
            "/VolumeDriver.Remove",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<NameRequest>(&body) {
                        Ok(req) => blocking(move || d.remove(&req.name).map_err(|e| e.to_string()))
                            .await
                            .and_then(|x| x),
                        Err(e) => Err(e),
                    };
                    reply(&ErrResponse::from(r))
                }
            }),
        )
        .route(
            "/VolumeDriver.Mount",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<MountRequest>(&body) {
                        Ok(req) => {
                            blocking(move || d.mount(&req.name, &req.id).map_err(|e| e.to_string()))
                                .await
                                .and_then(|x| x)
                        }
                        Err(e) => Err(e),
                    };
                    reply(&MountpointResponse::from(r))
                }
            }),
        )
        .route(
            "/VolumeDriver.Unmount",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<MountRequest>(&body) {
                        Ok(req) => blocking(move || {
                            d.unmount(&req.name, &req.id).map_err(|e| e.to_string())
                        })
                        .await
                        .and_then(|x| x),
                        Err(e) => Err(e),
                    };
                    reply(&ErrResponse::from(r))
                }
            }),
        )
        .route(
            "/VolumeDriver.Path",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<NameRequest>(&body) {
                        Ok(req) => blocking(move || d.path(&req.name).map_err(|e| e.to_string()))
                            .await
                            .and_then(|x| x),
                        Err(e) => Err(e),
                    };
                    reply(&MountpointResponse::from(r.map(|p| p.unwrap_or_default())))
                }
            }),
        )
        .route(
            "/VolumeDriver.Get",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = match parse::<NameRequest>(&body) {
                        Ok(req) => blocking(move || d.get(&req.name)).await,
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(Some(v)) => reply(&GetResponse {
                            volume: Some(v),
                            err: String::new(),
                        }),
                        Ok(None) => reply(&GetResponse {
                            volume: None,
                            err: "no such volume".into(),
                        }),
                        Err(e) => reply(&GetResponse {
                            volume: None,
                            err: e,
                        }),
                    }
                }
            }),
        )
        .route(
            "/VolumeDriver.List",
            post({
                let d = d.clone();
                move || async move {
                    match blocking(move || d.list()).await {
                        Ok(volumes) => reply(&ListResponse {
                            volumes,
                            err: String::new(),
                        }),
                        Err(e) => reply(&ListResponse {
                            volumes: Vec::new(),
                            err: e,
                        }),
                    }
                }
            }),
        )
}

/// Serve on `socket` until SIGTERM or SIGINT. Mount processes keep running after it stops.
pub async fn serve(driver: Arc<Driver>, socket: PathBuf) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(&socket)?;
    tracing::info!(socket = %socket.display(), "serving the Docker volume plugin protocol");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    axum::serve(listener, app(driver))
        .with_graceful_shutdown(shutdown)
        .await?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
