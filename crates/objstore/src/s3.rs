//! An S3-compatible bucket as an object store, through the `object_store` crate's S3 client
//! on a small tokio runtime of its own (callers stay synchronous).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};

use crate::{check_key, Error, ObjectMeta, ObjectStore, Result};

/// Where in S3 a store lives: `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
}

impl S3Location {
    /// `Some` if `url` starts with `s3://` (then `Err` if it is not a valid location).
    pub fn parse(url: &str) -> Option<Result<S3Location>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !ok_bucket {
            return Some(Err(Error::Config(format!(
                "{url}: {bucket:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, '.', '-'); write s3://BUCKET/PREFIX"
            ))));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            if let Err(why) = check_key(&prefix) {
                return Some(Err(Error::Config(format!("{url}: the prefix: {why}"))));
            }
        }
        Some(Ok(S3Location {
            bucket: bucket.to_string(),
            prefix,
        }))
    }
}

impl S3Location {
    /// For a location that names one object (`s3://BUCKET/DIR/NAME`): the location of its
    /// directory and the object's key in it. `None` for a bucket's root.
    pub fn split_object(&self) -> Option<(S3Location, String)> {
        if self.prefix.is_empty() {
            return None;
        }
        let (dir, name) = self.prefix.rsplit_once('/').unwrap_or(("", &self.prefix));
        Some((
            S3Location {
                bucket: self.bucket.clone(),
                prefix: dir.to_string(),
            },
            name.to_string(),
        ))
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach S3: from the standard environment variables ([`S3Config::from_env`]),
/// overridden field by field by the caller (command-line flags). `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct S3Config {
    /// `https://host[:port]` of an S3-compatible server (none: AWS, by region). Requests use
    /// path-style addressing (`ENDPOINT/BUCKET/KEY`).
    pub endpoint: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow a plain `http://` endpoint that is not a loopback address.
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Config {
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn from_env() -> S3Config {
        S3Config {
            endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
            access_key_id: env("AWS_ACCESS_KEY_ID"),
            secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
            session_token: env("AWS_SESSION_TOKEN"),
            allow_http: false,
        }
    }
}

/// The host of `http://HOST[:PORT][/…]`.
fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// A bucket (under a prefix) as an [`ObjectStore`].
pub struct S3Store {
    loc: S3Location,
    client: AmazonS3,
    rt: tokio::runtime::Runtime,
    /// To scrub from the client's error messages (it never puts it there; belt and braces).
    secret: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({})", self.loc)
    }
}

impl S3Store {
    /// A client for `loc` configured by `cfg`. Checks the configuration, not the bucket (the
    /// first request does).
    pub fn open(loc: S3Location, cfg: &S3Config) -> Result<S3Store> {
        let (Some(key_id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) else {
            return Err(Error::Config(format!(
                "{loc}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give --s3-access-key-id and --s3-secret-access-key-file)"
            )));
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&loc.bucket)
            .with_region(cfg.region.as_deref().unwrap_or("us-east-1"))
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(t) = &cfg.session_token {
            b = b.with_token(t);
        }
        if let Some(ep) = &cfg.endpoint {
            let ep = ep.trim_end_matches('/');
            if let Some(rest) = ep.strip_prefix("http://") {
                let host = host_of(rest);
                if !cfg.allow_http && !is_loopback(host) {
                    return Err(Error::Config(format!(
                        "{loc}: the endpoint {ep} is plain http to {host:?}, which is not this machine: use https, or allow it with --s3-allow-http on a network you trust"
                    )));
                }
                b = b.with_allow_http(true);
            } else if !ep.starts_with("https://") {
                return Err(Error::Config(format!(
                    "{loc}: the endpoint {ep:?} is not an http(s) URL (write https://HOST[:PORT])"
                )));
            }
            b = b.with_endpoint(ep);
        }
        // reqwest is built without a TLS provider of its own: rustls with ring (an error only
        // means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = b.build().map_err(|e| {
            Error::Config(format!(
                "{loc}: the S3 configuration is refused: {}",
                scrub(&e.to_string(), secret)
            ))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealvol-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("{loc}: starting the S3 client's runtime: {e}")))?;
        Ok(S3Store {
            loc,
            client,
            rt,
            secret: secret.clone(),
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.loc
    }

    fn path(&self, key: &str) -> Result<ObjPath> {
        check_key(key).map_err(|why| Error::Config(format!("{}: {why}", self.loc)))?;
        Ok(if self.loc.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.loc.prefix))
        })
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        let (store, key) = (self.loc.to_string(), key.to_string());
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { store, key },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => Error::Denied {
                store,
                op,
                key,
                why: scrub(&source.to_string(), &self.secret),
            },
            e => {
                let why = scrub(&e.to_string(), &self.secret);
                match denied(&why) {
                    Some(code) => Error::Denied {
                        store,
                        op,
                        key,
                        why: format!("the server answered {code}"),
                    },
                    None => Error::Remote {
                        store,
                        op,
                        key,
                        why,
                    },
                }
            }
        }
    }

    fn meta(&self, m: object_store::ObjectMeta) -> ObjectMeta {
        let full = m.location.as_ref();
        let key = if self.loc.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(self.loc.prefix.as_str())
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full)
        };
        ObjectMeta {
            key: key.to_string(),
            size: m.size,
            modified_unix: u64::try_from(m.last_modified.timestamp()).unwrap_or(0),
        }
    }
}

/// The S3 error code of a refusal for want of valid credentials or rights, if `msg` (a
/// client error, which wraps a list request's in a generic error) reports one.
fn denied(msg: &str) -> Option<&'static str> {
    const CODES: [&str; 6] = [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
    ];
    if let Some(c) = CODES
        .iter()
        .find(|c| msg.contains(&format!("<Code>{c}</Code>")))
    {
        return Some(c);
    }
    if msg.contains("403 Forbidden") {
        Some("403 Forbidden")
    } else if msg.contains("401 Unauthorized") {
        Some("401 Unauthorized")
    } else {
        None
    }
}

/// `msg` without `secret` in it.
fn scrub(msg: &str, secret: &str) -> String {
    if secret.is_empty() {
        msg.to_string()
    } else {
        msg.replace(secret, "<redacted>")
    }
}

/// A multipart upload as an [`ObjectWriter`](crate::ObjectWriter): parts of [`PART`] bytes,
/// at most [`PARTS_IN_FLIGHT`] uploading at once (the write waits for room), completed by
/// `finish`; aborted (the server drops the parts) if dropped unfinished.
struct S3Writer<'a> {
    store: &'a S3Store,
    key: String,
    upload: Option<WriteMultipart>,
}

/// Bytes per part: S3 takes at least 5 MiB (except the last) and at most 10,000 parts, so an
/// object may reach 160 GiB.
const PART: usize = 16 << 20;
const PARTS_IN_FLIGHT: usize = 4;

impl std::io::Write for S3Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(up) = self.upload.as_mut() else {
            return Err(std::io::Error::other("the upload was already finished"));
        };
        {
            // Full parts are spawned on the client's runtime.
            let _rt = self.store.rt.enter();
            up.write(buf);
        }
        self.store
            .rt
            .block_on(up.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(|e| std::io::Error::other(self.store.err("writing", &self.key, e)))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl crate::ObjectWriter for S3Writer<'_> {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let Some(up) = self.upload.take() else {
            return Ok(());
        };
        self.store
            .rt
            .block_on(up.finish())
            .map(|_| ())
            .map_err(|e| self.store.err("writing", &self.key, e))
    }
}

impl Drop for S3Writer<'_> {
    fn drop(&mut self) {
        if let Some(up) = self.upload.take() {
            if let Err(e) = self.store.rt.block_on(up.abort()) {
                tracing::warn!(key = %self.key, error = %self.store.err("aborting the upload of", &self.key, e), "an unfinished upload could not be aborted; the bucket's lifecycle rules remove its parts");
            }
        }
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.loc.to_string()
    }

    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let p = self.path(key)?;
        self.rt
            .block_on(self.client.get_range(&p, range))
            .map(|b| b.to_vec())
            .map_err(|e| self.err("reading", key, e))
    }

    fn put_writer(&self, key: &str) -> Result<Box<dyn crate::ObjectWriter + '_>> {
        let p = self.path(key)?;
        let upload = self
            .rt
            .block_on(self.client.put_multipart(&p))
            .map_err(|e| self.err("starting the upload of", key, e))?;
        Ok(Box::new(S3Writer {
            store: self,
            key: key.to_string(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
        }))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let p = self.path(key)?;
        self.rt
            .block_on(async {
                let r = self.client.get(&p).await?;
                r.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.err("reading", key, e))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let p = self.path(key)?;
        match self.rt.block_on(self.client.head(&p)) {
            Ok(m) => Ok(Some(self.meta(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("reading", key, e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path(key)?;
        self.rt
            .block_on(self.client.put(&p, PutPayload::from(bytes.to_vec())))
            .map(|_| ())
            .map_err(|e| self.err("writing", key, e))
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let p = self.path(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.rt.block_on(
            self.client
                .put_opts(&p, PutPayload::from(bytes.to_vec()), opts),
        ) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(Error::Remote {
                store: self.loc.to_string(),
                op: "writing",
                key: key.to_string(),
                why: "the server does not support conditional writes (If-None-Match: *), which sealvol needs to publish safely".into(),
            }),
            Err(e) => Err(self.err("writing", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let p = if prefix.is_empty() {
            if self.loc.prefix.is_empty() {
                None
            } else {
                Some(ObjPath::from(self.loc.prefix.as_str()))
            }
        } else {
            Some(self.path(prefix)?)
        };
        let r: std::result::Result<Vec<_>, _> = self
            .rt
            .block_on(self.client.list(p.as_ref()).try_collect::<Vec<_>>());
        match r {
            Ok(v) => Ok(v.into_iter().map(|m| self.meta(m)).collect()),
            Err(object_store::Error::NotFound { .. }) => Err(Error::Remote {
                store: self.loc.to_string(),
                op: "listing",
                key: prefix.to_string(),
                why: format!(
                    "the bucket {:?} does not exist (create it first; check the endpoint and region)",
                    self.loc.bucket
                ),
            }),
            Err(e) => Err(self.err("listing", prefix, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        match self.rt.block_on(self.client.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("removing", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let l = S3Location::parse("s3://my-bucket/a/b/").unwrap().unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", "a/b"));
        assert_eq!(l.to_string(), "s3://my-bucket/a/b");
        let l = S3Location::parse("s3://bkt").unwrap().unwrap();
        assert_eq!(l.prefix, "");
        assert!(S3Location::parse("/tmp/x").is_none());
        assert!(S3Location::parse("s3://Bad_Bucket/x").unwrap().is_err());
        assert!(S3Location::parse("s3://bkt/../x").unwrap().is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let loc = S3Location::parse("s3://bkt/p").unwrap().unwrap();
        let mut cfg = S3Config {
            access_key_id: Some("id".into()),
            secret_access_key: Some("hunter2-secret".into()),
            endpoint: Some("http://10.1.2.3:9000".into()),
            ..S3Config::default()
        };
        let e = S3Store::open(loc.clone(), &cfg).unwrap_err().to_string();
        assert!(e.contains("--s3-allow-http"), "{e}");
        for ep in [
            "http://127.0.0.1:9000",
            "http://[::1]:9000/",
            "http://localhost:1",
        ] {
            cfg.endpoint = Some(ep.into());
            S3Store::open(loc.clone(), &cfg).unwrap();
        }
        cfg.endpoint = Some("http://10.1.2.3:9000".into());
        cfg.allow_http = true;
        S3Store::open(loc.clone(), &cfg).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
        cfg.secret_access_key = None;
        let e = S3Store::open(loc, &cfg).unwrap_err().to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }
}
