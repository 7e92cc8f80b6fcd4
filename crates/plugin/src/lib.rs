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

/// Parse the request, run the driver call off the async threads, flatten the errors.
async fn call<Q, R>(
    body: Bytes,
    f: impl FnOnce(Q) -> Result<R, String> + Send + 'static,
) -> Result<R, String>
where
    Q: DeserializeOwned + Default + Send + 'static,
    R: Send + 'static,
{
    let req = parse::<Q>(&body)?;
    tokio::task::spawn_blocking(move || f(req))
        .await
        .map_err(|e| format!("internal error: {e}"))?
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The router, testable without a socket.
pub fn app(driver: Arc<Driver>) -> Router {
    let d = driver;
    Router::new()
        .route(
            "/Plugin.Activate",
            // Every handler reads the whole body before answering: answering first and closing
            // (the daemon sends `Connection: close`) resets a connection whose body is unread.
            post(|_: Bytes| async {
                reply(&ActivateResponse {
                    implements: vec!["VolumeDriver".into()],
                })
            }),
        )
        .route(
            "/VolumeDriver.Capabilities",
            post(|_: Bytes| async {
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
                    let r = call(body, move |q: CreateRequest| {
                        // Logged before validation: bounded, whatever a client sends (option
                        // names only, never values: a value could be a secret).
                        let keys: Vec<String> = q
                            .opts
                            .iter()
                            .flat_map(|o| o.keys())
                            .take(16)
                            .map(|k| driver::shown(k))
                            .collect();
                        tracing::info!(volume = %driver::shown(&q.name), options = ?keys, "create requested");
                        d.create(&q.name, q.opts.unwrap_or_default()).map_err(text)
                    });
                    reply(&ErrResponse::from(r.await))
                }
            }),
        )
        .route(
            "/VolumeDriver.Remove",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |q: NameRequest| d.remove(&q.name).map_err(text));
                    reply(&ErrResponse::from(r.await))
                }
            }),
        )
        .route(
            "/VolumeDriver.Mount",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |q: MountRequest| {
                        d.mount(&q.name, &q.id).map_err(text)
                    });
                    reply(&MountpointResponse::from(r.await))
                }
            }),
        )
        .route(
            "/VolumeDriver.Unmount",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |q: MountRequest| {
                        d.unmount(&q.name, &q.id).map_err(text)
                    });
                    reply(&ErrResponse::from(r.await))
                }
            }),
        )
        .route(
            "/VolumeDriver.Path",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |q: NameRequest| d.path(&q.name).map_err(text));
                    reply(&MountpointResponse::from(
                        r.await.map(Option::unwrap_or_default),
                    ))
                }
            }),
        )
        .route(
            "/VolumeDriver.Get",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |q: NameRequest| Ok(d.get(&q.name)));
                    let (volume, err) = match r.await {
                        Ok(Some(v)) => (Some(v), String::new()),
                        Ok(None) => (None, "no such volume".into()),
                        Err(e) => (None, e),
                    };
                    reply(&GetResponse { volume, err })
                }
            }),
        )
        .route(
            "/VolumeDriver.List",
            post({
                let d = d.clone();
                move |body: Bytes| async move {
                    let r = call(body, move |_: NameRequest| Ok(d.list()));
                    let (volumes, err) = match r.await {
                        Ok(v) => (v, String::new()),
                        Err(e) => (Vec::new(), e),
                    };
                    reply(&ListResponse { volumes, err })
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
    // Before the socket exists: a server that could not stop cleanly must not start.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let listener = tokio::net::UnixListener::bind(&socket)?;
    tracing::info!(socket = %socket.display(), "serving the Docker volume plugin protocol");
    let shutdown = async move {
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
