//! `sealvol export`, `import`, `verify` and `export-ls` with an `s3://` target, against a real
//! S3-compatible server (s3s-fs, which `scripts/setup.sh --test` installs) started here: an
//! incremental round trip, damage named, wrong credentials, and two exporters racing for the
//! same export number.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY_ID: &str = "sealvoltest";
const SECRET: &str = "sealvol-test-secret-0123456789";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// s3s-fs on a free loopback port, serving `root` (bucket `bkt` made in it); killed on drop.
struct Server {
    child: Child,
    endpoint: String,
    root: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(root: PathBuf) -> Server {
    std::fs::create_dir_all(root.join("bkt")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY_ID, "--secret-key", SECRET])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run s3s-fs ({e}): the S3 tests need it; install it with `scripts/setup.sh --test` (cargo install --locked s3s-fs@0.14.1 --features binary)")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        root,
    }
}

/// `sealvol ARGS` with the server's endpoint and the credentials in the environment.
fn s3cmd(srv: &Server, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("AWS_ENDPOINT_URL", &srv.endpoint)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1");
    c
}

fn run(srv: &Server, args: &[&str]) -> Output {
    s3cmd(srv, args).output().unwrap()
}

fn summary(out: &str) -> serde_json::Value {
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "summary")
        .unwrap()
}

/// The object files the server holds under `prefix`'s objects/.
fn objects(srv: &Server, prefix: &str) -> BTreeSet<PathBuf> {
    let out = ok(&sh(&format!(
        "find '{}' -type f | LC_ALL=C sort",
        srv.root.join("bkt").join(prefix).join("objects").display()
    )));
    out.lines().map(PathBuf::from).collect()
}

/// The tree of `store` opened with `key`, mounted on a new directory `mnt` (unmounted after).
fn mounted_tree(store: &Path, key: &str, mnt: &Path) -> String {
    std::fs::create_dir(mnt).unwrap();
    ok(&sealvol(&[
        "mount",
        "--store",
        s(store),
        "--keyfile",
        key,
        s(mnt),
    ]));
    let got = tree(mnt);
    ok(&sealvol(&["umount", s(mnt)]));
    got
}

fn tree(root: &Path) -> String {
    ok(&sh(&format!(
        r#"set -e; cd '{}'
        find . -printf '%p %y %m %U:%G %s %n %l %T@\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        "#,
        root.display()
    )))
}

#[test]
fn an_s3_target_takes_incremental_exports_that_list_verify_and_import() {
    let f = Fixture::new();
    let srv = server(f.dir.path().join("s3root"));
    f.mount();
    ok(&sh(&format!(
        "set -e; cd '{}'; mkdir -p a/b; head -c 3000000 /dev/urandom > a/big; printf 'hi\\n' > a/b/small; ln -s big a/link; truncate -s 1M a/sparse",
        s(&f.mnt)
    )));
    let url = "s3://bkt/backups/vol1";
    let store = s(&f.store).to_string();
    let key = s(&f.key).to_string();
    let export = |srv: &Server| {
        summary(&ok(&run(
            srv,
            &[
                "export",
                "--store",
                &store,
                "--keyfile",
                &key,
                "--json",
                url,
            ],
        )))
    };
    let first = export(&srv);
    assert_eq!(first["seq"], 1, "{first}");
    let n1 = first["new_chunks"].as_u64().unwrap();
    assert!(n1 >= 46, "3 MB in 64 KiB chunks: {first}");
    let objs1 = objects(&srv, "backups/vol1");
    assert_eq!(
        objs1.len() as u64,
        n1,
        "one object per new chunk in the bucket"
    );

    // A change: the second export stores only the new file's chunk.
    std::fs::write(f.m("a/new"), b"a new file's contents").unwrap();
    let second = export(&srv);
    assert_eq!(second["seq"], 2, "{second}");
    assert_eq!(second["new_chunks"], 1, "{second}");
    assert!(second["reused_chunks"].as_u64().unwrap() >= n1, "{second}");
    assert!(
        second["bytes_written"].as_u64().unwrap() < first["bytes_written"].as_u64().unwrap() / 20,
        "the second export writes a small fraction of the first: {first} {second}"
    );
    let objs2 = objects(&srv, "backups/vol1");
    let added: Vec<_> = objs2.difference(&objs1).cloned().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let want = tree(&f.mnt);
    f.umount();

    // export-ls through S3 (no key).
    let ls = ok(&run(&srv, &["export-ls", url]));
    assert!(ls.contains("     1  ") && ls.contains("     2  "), "{ls}");
    let lsj: serde_json::Value =
        serde_json::from_str(&ok(&run(&srv, &["export-ls", "--json", url]))).unwrap();
    assert_eq!(lsj["exports"].as_array().unwrap().len(), 2, "{lsj}");
    assert_eq!(lsj["objects"].as_u64().unwrap(), n1 + 1, "{lsj}");

    let v = ok(&run(&srv, &["verify", "--keyfile", &key, url]));
    assert!(
        v.contains("verified 2 export(s)") && v.contains("no damage found"),
        "{v}"
    );

    // Import the newest into a new store: the same tree.
    let new = f.dir.path().join("new");
    ok(&run(
        &srv,
        &["import", "--keyfile", &key, url, "--store", s(&new)],
    ));
    assert_eq!(mounted_tree(&new, &key, &f.dir.path().join("mnt2")), want);

    // Damage the one object only the second export has, in the bucket: verify names a/new.
    let obj = &added[0];
    let mut bytes = std::fs::read(obj).unwrap();
    bytes[40] ^= 1;
    std::fs::write(obj, bytes).unwrap();
    let o = run(&srv, &["verify", "--keyfile", &key, url]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("a/new") && !out.contains("a/big:"), "{out}");
}

#[test]
fn wrong_credentials_are_named_and_of_two_racing_exports_one_publishes() {
    let f = Fixture::new();
    let srv = server(f.dir.path().join("s3root"));
    f.mount();
    ok(&sh(&format!(
        "head -c 8000000 /dev/urandom > '{}'",
        s(&f.m("big"))
    )));
    let url = "s3://bkt/race";
    let store = s(&f.store).to_string();
    let key = s(&f.key).to_string();

    // Wrong credentials: refused before anything is written, the fix named, no secret shown.
    let bad = f.dir.path().join("bad-secret");
    std::fs::write(&bad, "definitely-not-the-secret\n").unwrap();
    let o = run(
        &srv,
        &["export-ls", "--s3-secret-access-key-file", s(&bad), url],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = run(
        &srv,
        &[
            "export",
            "--store",
            &store,
            "--keyfile",
            &key,
            "--s3-secret-access-key-file",
            s(&bad),
            url,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("refused") && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    assert!(
        !err.contains("definitely-not-the-secret") && !err.contains(SECRET),
        "{err}"
    );
    assert!(objects(&srv, "race").is_empty());
    // A plain-http endpoint elsewhere than this machine is refused without --s3-allow-http.
    let o = run(
        &srv,
        &["export-ls", "--s3-endpoint", "http://192.0.2.1:9000", url],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("--s3-allow-http"),
        "{err}"
    );

    ok(&run(
        &srv,
        &["export", "--store", &store, "--keyfile", &key, url],
    ));

    // Exporter B reads the chain (export 1) and starts; it is stopped there while exporter A
    // runs whole and publishes export 2; then B goes on, and its export 2 is refused.
    std::fs::write(f.m("b-was-here"), b"b").unwrap();
    let mut b = s3cmd(
        &srv,
        &[
            "export",
            "--store",
            &store,
            "--keyfile",
            &key,
            "--json",
            url,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(b.stdout.take().unwrap()));
    let started = lines.next().unwrap().unwrap();
    // The first progress line comes once the chain is read and the export numbered.
    assert!(started.contains("\"event\":\"progress\""), "{started}");
    ok(&sh(&format!("kill -STOP {}", b.id())));
    let published_early = run(&srv, &["export-ls", "--json", url]);
    let early: serde_json::Value = serde_json::from_str(&ok(&published_early)).unwrap();
    assert_eq!(
        early["exports"].as_array().unwrap().len(),
        1,
        "B was stopped after publishing: make its volume larger: {early}"
    );
    std::fs::write(f.m("a-was-here"), b"a").unwrap();
    let a = summary(&ok(&run(
        &srv,
        &[
            "export",
            "--store",
            &store,
            "--keyfile",
            &key,
            "--json",
            url,
        ],
    )));
    assert_eq!(a["seq"], 2, "{a}");
    ok(&sh(&format!("kill -CONT {}", b.id())));
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut b.stderr.take().unwrap(), &mut err).unwrap();
    let st = b.wait().unwrap();
    assert!(!st.success(), "B published too: {rest:?} {err}");
    assert!(
        err.contains("another export published export 2") && err.contains("run the export again"),
        "{err}"
    );
    f.umount();

    // The chain is A's: intact, and its export 2 restores with A's file and not B's.
    let v = ok(&run(&srv, &["verify", "--keyfile", &key, url]));
    assert!(
        v.contains("verified 2 export(s)") && v.contains("no damage found"),
        "{v}"
    );
    let new = f.dir.path().join("new");
    ok(&run(
        &srv,
        &["import", "--keyfile", &key, url, "--store", s(&new)],
    ));
    let mnt2 = f.dir.path().join("mnt2");
    std::fs::create_dir(&mnt2).unwrap();
    ok(&sealvol(&[
        "mount",
        "--store",
        s(&new),
        "--keyfile",
        &key,
        s(&mnt2),
    ]));
    let listing = ok(&sh(&format!("ls '{}'", s(&mnt2))));
    ok(&sealvol(&["umount", s(&mnt2)]));
    assert!(
        listing.contains("a-was-here") && listing.contains("b-was-here"),
        "{listing}"
    );
    // B wrote b-was-here before A ran, so A's export holds it too; what matters is that A's
    // manifest and metadata stand. The next export goes on as number 3.
    let third = summary(&ok(&run(
        &srv,
        &[
            "export",
            "--store",
            &store,
            "--keyfile",
            &key,
            "--json",
            url,
        ],
    )));
    assert_eq!(third["seq"], 3, "{third}");
}

/// tar.age to and from a bucket: streamed as a multipart upload (more than one part), restored
/// by `sealvol import` from the bucket and by `age -d | tar -x` from the object's bytes; an
/// existing object, a name without `.tar.age` and a layer (`--since`) are refused.
#[test]
fn a_tar_age_export_streams_to_a_bucket_and_restores_from_it() {
    let f = Fixture::new();
    let srv = server(f.dir.path().join("s3root"));
    f.mount();
    ok(&sh(&format!(
        "set -e; cd '{}'; mkdir -p a/b; head -c 20000000 /dev/urandom > a/big; printf 'hi\\n' > a/b/small; ln -s big a/link",
        s(&f.mnt)
    )));
    let want = tree(&f.mnt);
    f.umount();
    let id = f.dir.path().join("id.txt");
    let recipient = age_identity(&id);
    let (store, key) = (s(&f.store).to_string(), s(&f.key).to_string());
    let export = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "export",
            "--store",
            &store,
            "--keyfile",
            &key,
            "--format",
            "tar.age",
            "--recipient",
            &recipient,
        ];
        args.extend_from_slice(extra);
        args.push(url);
        run(&srv, &args)
    };
    let url = "s3://bkt/tars/vol.tar.age";
    ok(&export(url, &[]));
    let object = srv.root.join("bkt/tars/vol.tar.age");
    assert!(
        std::fs::metadata(&object).unwrap().len() > 20_000_000,
        "the whole archive is in the bucket"
    );

    // Standard tools restore the object's bytes.
    let plain = f.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    ok(&sh(&format!(
        "set -e; age -d -i '{}' '{}' | tar -x -C '{}'",
        id.display(),
        object.display(),
        plain.display()
    )));
    let mnt_big = ok(&sh(&format!(
        "sha256sum < '{}'",
        plain.join("a/big").display()
    )));
    assert!(
        want.contains(mnt_big.split_whitespace().next().unwrap()),
        "a/big restored by age and tar has the volume's contents"
    );

    // sealvol imports it from the bucket (ranged reads), into a new store: the same tree.
    let new = f.dir.path().join("new");
    ok(&run(
        &srv,
        &[
            "import",
            "--keyfile",
            &key,
            "--identity",
            s(&id),
            url,
            "--store",
            s(&new),
        ],
    ));
    assert_eq!(mounted_tree(&new, &key, &f.dir.path().join("mnt2")), want);

    // Refusals, each naming what to do, and nothing written by them.
    let refused = |o: Output, says: &str| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && err.contains(says), "{err}");
    };
    refused(
        export(url, &[]),
        "exists; a tar.age export writes a new object",
    );
    refused(export("s3://bkt/tars/vol", &[]), "ends in .tar.age");
    let local = f.dir.path().join("l1.tar.age");
    ok(&export(s(&local), &[]));
    refused(
        export("s3://bkt/tars/l2.tar.age", &["--since", s(&local)]),
        "a tar.age layer (--since) goes to a file",
    );
    let names = ok(&sh(&format!(
        "cd '{}' && find . -type f | LC_ALL=C sort",
        srv.root.join("bkt/tars").display()
    )));
    assert_eq!(names.trim(), "./vol.tar.age", "{names}");
}
