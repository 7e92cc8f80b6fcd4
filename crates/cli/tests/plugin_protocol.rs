//! `sealvol serve` spoken to exactly as the Docker daemon does (observed on this engine): POST,
//! no Content-Type, empty body for Activate, `Opts: null`, `ID` in PascalCase's exception. The
//! real binary, a real unix socket, real stores and real FUSE mounts; no Docker needed.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Server {
    let socket = dir.join("plugin.sock");
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(bin())
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("serve.log"))
                .unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "serve did not create its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, socket }
}

/// One request, byte for byte like the daemon's (no Content-Type; body ends with a newline).
fn call(s: &Server, endpoint: &str, body: &str) -> serde_json::Value {
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = if body.is_empty() {
        String::new()
    } else {
        format!("{body}\n")
    };
    // One write, as Go's buffered client sends a small request.
    let request = format!(
        "POST /{endpoint} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let (head, json) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.docker.plugins.v1+json"),
        "{head}"
    );
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// How many mounts the mount table lists at `mp`.
fn mounts_at(mp: &Path) -> usize {
    sealvol_mount::mountinfo::read()
        .unwrap()
        .iter()
        .filter(|e| e.mount_point == mp)
        .count()
}

fn err(v: &serde_json::Value) -> String {
    v["Err"].as_str().unwrap_or("").to_string()
}

fn key(dir: &Path, name: &str, mode: u32) -> String {
    let p = dir.join(name);
    let bytes: Vec<u8> = name.bytes().cycle().take(32).collect();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn protocol_as_the_daemon_speaks_it() {
    let dir = tempfile::Builder::new()
        .prefix("sealvol-plugin")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ka = key(dir.path(), "a.key", 0o600);
    let kb = key(dir.path(), "b.key", 0o600);
    let s = serve(dir.path(), &[]);

    // Activate with an empty body; Capabilities and List with "{}".
    assert_eq!(
        call(&s, "Plugin.Activate", "")["Implements"][0],
        "VolumeDriver"
    );
    assert_eq!(
        call(&s, "VolumeDriver.Capabilities", "{}")["Capabilities"]["Scope"],
        "local"
    );
    assert_eq!(
        call(&s, "VolumeDriver.List", "{}")["Volumes"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Create: Opts null without a default key is a clear error; options are checked.
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        r#"{"Name":"v1","Opts":null}"#,
    ));
    assert!(
        e.contains("no key") && e.contains("--default-keyfile"),
        "{e}"
    );
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        r#"{"Name":"v1","Opts":{"passphrase":"hunter2"}}"#,
    ));
    assert!(
        e.contains("passphrase-file") && !e.contains("hunter2"),
        "{e}"
    );
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        &format!(r#"{{"Name":"v1","Opts":{{"keyfile":"{ka}","size":"10G"}}}}"#),
    ));
    assert!(
        e.contains("unknown option \"size\"") && e.contains("chunk-size"),
        "{e}"
    );
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        r#"{"Name":"../x","Opts":{}}"#,
    ));
    assert!(e.contains("invalid volume name"), "{e}");
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        &format!(r#"{{"Name":"v1","Opts":{{"keyfile":"{ka}","memory":"16M"}}}}"#),
    ));
    assert!(
        e.contains("option memory") && e.contains("64M to 64G"),
        "{e}"
    );
    let create = format!(
        r#"{{"Name":"v1","Opts":{{"keyfile":"{ka}","chunk-size":"64K","memory":"192M"}}}}"#
    );
    assert_eq!(err(&call(&s, "VolumeDriver.Create", &create)), "");
    // Idempotent with the same key; a clear error with another.
    assert_eq!(err(&call(&s, "VolumeDriver.Create", &create)), "");
    let e = err(&call(
        &s,
        "VolumeDriver.Create",
        &format!(r#"{{"Name":"v1","Opts":{{"keyfile":"{kb}"}}}}"#),
    ));
    assert!(e.contains("different key"), "{e}");

    // Get: RFC 3339 CreatedAt, Status; unknown volume is "no such volume".
    let g = call(&s, "VolumeDriver.Get", r#"{"Name":"v1"}"#);
    assert_eq!(err(&g), "");
    let created = g["Volume"]["CreatedAt"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    assert_eq!(g["Volume"]["Status"]["chunk_size"], 65536);
    assert_eq!(g["Volume"]["Status"]["mounted"], false);
    assert_eq!(
        err(&call(&s, "VolumeDriver.Get", r#"{"Name":"nope"}"#)),
        "no such volume"
    );
    // Path of an unmounted volume is empty, not an error.
    let p = call(&s, "VolumeDriver.Path", r#"{"Name":"v1"}"#);
    assert_eq!(
        (err(&p), p["Mountpoint"].as_str().unwrap()),
        (String::new(), "")
    );

    // Mount twice with two IDs: one FUSE mount; Unmount of one keeps it; of the other ends it.
    let m1 = call(&s, "VolumeDriver.Mount", r#"{"Name":"v1","ID":"aaaa"}"#);
    assert_eq!(err(&m1), "");
    let mp = PathBuf::from(m1["Mountpoint"].as_str().unwrap());
    assert!(!mp.as_os_str().is_empty());
    std::fs::write(mp.join("hello"), b"through the plugin").unwrap();
    let m2 = call(&s, "VolumeDriver.Mount", r#"{"Name":"v1","ID":"bbbb"}"#);
    assert_eq!(m2["Mountpoint"], m1["Mountpoint"]);
    let mounts = || mounts_at(&mp);
    assert_eq!(mounts(), 1);
    assert_eq!(
        call(&s, "VolumeDriver.Path", r#"{"Name":"v1"}"#)["Mountpoint"],
        m1["Mountpoint"]
    );
    let e = err(&call(&s, "VolumeDriver.Remove", r#"{"Name":"v1"}"#));
    assert!(e.contains("in use"), "{e}");
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Unmount",
            r#"{"Name":"v1","ID":"aaaa"}"#
        )),
        ""
    );
    assert_eq!(mounts(), 1);
    assert_eq!(
        std::fs::read(mp.join("hello")).unwrap(),
        b"through the plugin"
    );
    // Status reports sizes from the mount process (published every 2 s).
    std::thread::sleep(Duration::from_millis(2500));
    let st = call(&s, "VolumeDriver.Get", r#"{"Name":"v1"}"#)["Volume"]["Status"].clone();
    assert_eq!(
        (
            st["mounted"].clone(),
            st["mount_count"].clone(),
            st["files"].clone()
        ),
        (true.into(), 1.into(), 1.into()),
        "{st}"
    );
    // ... and the mount process's memory: its budget (the volume's memory option), what it
    // holds, and what it locks (its keys: a page or two, not its buffers).
    assert_eq!(st["memory_budget_bytes"], 192 << 20, "{st}");
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k}: {st}"));
    assert!(n("memory_resident_bytes") > 0, "{st}");
    assert!(n("memory_peak_bytes") >= n("memory_resident_bytes"), "{st}");
    assert!(n("memory_locked_bytes") <= 64 << 10, "{st}");
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Unmount",
            r#"{"Name":"v1","ID":"bbbb"}"#
        )),
        ""
    );
    assert_eq!(mounts(), 0);
    // A stale or unknown ID is harmless.
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Unmount",
            r#"{"Name":"v1","ID":"zzzz"}"#
        )),
        ""
    );

    // The data is encrypted at rest and survives; remove crypto-shreds, then deletes.
    let store = dir.path().join("state/volumes/v1/store");
    let o = sh(&format!(
        "grep -r -a -l 'through the plugin' {}",
        dir.path().join("state").display()
    ));
    assert!(o.stdout.is_empty(), "plaintext in the state dir");
    ok(&sealvol(&[
        "check",
        "--store",
        store.to_str().unwrap(),
        "--keyfile",
        &ka,
    ]));
    assert_eq!(
        err(&call(&s, "VolumeDriver.Remove", r#"{"Name":"v1"}"#)),
        ""
    );
    assert!(!store.exists());
    assert_eq!(
        err(&call(&s, "VolumeDriver.Get", r#"{"Name":"v1"}"#)),
        "no such volume"
    );
    // Malformed JSON is an error, not a crash.
    assert!(err(&call(&s, "VolumeDriver.Create", "{not json")).contains("malformed"));
}

/// Go's client writes a large request in pieces. The server must read each body before it
/// answers and closes: a body left unread turns the close into a reset, and the client's
/// write of it fails with EPIPE (which CI once saw on Capabilities).
#[test]
fn a_body_arriving_after_the_headers_is_read_before_the_answer() {
    let dir = tempfile::Builder::new()
        .prefix("sealvol-plugin")
        .tempdir_in("/var/tmp")
        .unwrap();
    let s = serve(dir.path(), &[]);
    for endpoint in [
        "Plugin.Activate",
        "VolumeDriver.Capabilities",
        "VolumeDriver.List",
        "VolumeDriver.Get",
    ] {
        let body = "{\"Name\":\"none\"}\n";
        let mut c = UnixStream::connect(&s.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            c,
            "POST /{endpoint} HTTP/1.1\r\nHost: \r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(body.as_bytes()).unwrap_or_else(|e| {
            panic!("{endpoint}: the server closed before reading the body: {e}")
        });
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{endpoint}: {resp}");
    }
}

#[test]
fn restarted_server_keeps_volumes_and_readopts_live_mounts() {
    let dir = tempfile::Builder::new()
        .prefix("sealvol-plugin")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ka = key(dir.path(), "a.key", 0o600);
    let s = serve(dir.path(), &["--default-keyfile", &ka]);
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Create",
            r#"{"Name":"keep","Opts":null}"#
        )),
        ""
    );
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Create",
            r#"{"Name":"idle","Opts":null}"#
        )),
        ""
    );
    let m = call(&s, "VolumeDriver.Mount", r#"{"Name":"keep","ID":"c1"}"#);
    let mp = PathBuf::from(m["Mountpoint"].as_str().unwrap());
    // A "container" keeps a file open and writes through the kill and restart.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(mp.join("log"))
        .unwrap();
    f.write_all(b"before\n").unwrap();
    let mut s = s;
    let _ = s.child.kill(); // SIGKILL
    let _ = s.child.wait();
    f.write_all(b"while the server is down\n").unwrap();
    f.sync_all().unwrap();
    drop(s);
    let s = serve(dir.path(), &["--default-keyfile", &ka]);
    let t = Instant::now();
    let l = call(&s, "VolumeDriver.List", "{}");
    let g = call(&s, "VolumeDriver.Get", r#"{"Name":"keep"}"#);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answers took {:?}",
        t.elapsed()
    );
    let names: Vec<&str> = l["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["idle", "keep"]);
    assert_eq!(g["Volume"]["Status"]["mounted"], true, "{g}");
    assert_eq!(g["Volume"]["Mountpoint"], m["Mountpoint"]);
    f.write_all(b"after\n").unwrap();
    drop(f);
    // Docker's next container on the volume gets the same, live mount.
    assert_eq!(
        call(&s, "VolumeDriver.Mount", r#"{"Name":"keep","ID":"c2"}"#)["Mountpoint"],
        m["Mountpoint"]
    );
    assert_eq!(
        std::fs::read_to_string(mp.join("log")).unwrap(),
        "before\nwhile the server is down\nafter\n"
    );
    call(&s, "VolumeDriver.Unmount", r#"{"Name":"keep","ID":"c1"}"#);
    call(&s, "VolumeDriver.Unmount", r#"{"Name":"keep","ID":"c2"}"#);
    ok(&sealvol(&[
        "check",
        "--store",
        dir.path()
            .join("state/volumes/keep/store")
            .to_str()
            .unwrap(),
        "--keyfile",
        &ka,
    ]));
}

#[test]
fn dead_mount_is_never_handed_out() {
    let dir = tempfile::Builder::new()
        .prefix("sealvol-plugin")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ka = key(dir.path(), "a.key", 0o600);
    let s = serve(dir.path(), &["--default-keyfile", &ka]);
    assert_eq!(
        err(&call(
            &s,
            "VolumeDriver.Create",
            r#"{"Name":"d","Opts":null}"#
        )),
        ""
    );
    let m = call(&s, "VolumeDriver.Mount", r#"{"Name":"d","ID":"x1"}"#);
    let mp = m["Mountpoint"].as_str().unwrap().to_string();
    // Kill the volume's mount process: the FUSE mount is left dead.
    let pid = sealvol_mount::pidfile::read_pid(&dir.path().join("state/volumes/d/store")).unwrap();
    ok(&sh(&format!("kill -9 {pid}")));
    std::thread::sleep(Duration::from_millis(300));
    let g = call(&s, "VolumeDriver.Get", r#"{"Name":"d"}"#);
    assert_eq!(err(&g), "", "Get never fails for a known volume");
    assert!(
        g["Volume"]["Status"]["health"]
            .as_str()
            .unwrap()
            .contains("degraded"),
        "{g}"
    );
    // The next Mount replaces the dead mount with a live one; nothing is written underneath.
    let m2 = call(&s, "VolumeDriver.Mount", r#"{"Name":"d","ID":"x2"}"#);
    assert_eq!(err(&m2), "");
    std::fs::write(Path::new(&mp).join("f"), b"x").unwrap();
    assert_eq!(mounts_at(Path::new(&mp)), 1);
    call(&s, "VolumeDriver.Unmount", r#"{"Name":"d","ID":"x1"}"#);
    call(&s, "VolumeDriver.Unmount", r#"{"Name":"d","ID":"x2"}"#);
    assert!(
        std::fs::read_dir(&mp).unwrap().next().is_none(),
        "the host directory under the mount stays empty"
    );
}
