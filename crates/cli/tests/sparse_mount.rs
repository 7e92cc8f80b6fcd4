//! A container can make a file of any size the filesystem accepts: every step on it must cost
//! in proportion to the data it holds, through the real mount. Before, `truncate -s 1P f; rm f`
//! never finished and grew the mount process to gigabytes. No timing assertion: a step that
//! walks the nominal size does not finish, which the harness reports.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
use common::*;

#[test]
fn a_petabyte_sparse_file_through_the_mount() {
    let f = Fixture::with_chunk("4K");
    f.mount();
    let p = f.m("huge");
    let m = f.mnt.display();
    // The largest size sealvol accepts (1 PiB), and one byte more is refused (EFBIG).
    ok(&sh(&format!("truncate -s 1P {m}/huge")));
    let o = sh(&format!("truncate -s 1125899906842625 {m}/huge"));
    assert!(!o.status.success(), "past 1 PiB must be refused");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 50);
    // Written at its very end, read back, read across the hole.
    ok(&sh(&format!(
        "printf tail | dd of={m}/huge bs=1 seek=$(( (1<<50) - 4 )) conv=notrunc status=none"
    )));
    let tail = ok(&sh(&format!(
        "dd if={m}/huge bs=1 skip=$(( (1<<50) - 4 )) count=4 status=none"
    )));
    assert_eq!(tail, "tail");
    let zeros = ok(&sh(&format!(
        "dd if={m}/huge bs=1M skip=$(( 1 << 29 )) count=4 status=none | tr -d '\\0' | wc -c"
    )));
    assert_eq!(zeros.trim(), "0");
    // Emptied, grown again, deleted; then a second one deleted straight away.
    ok(&sh(&format!(
        "truncate -s 0 {m}/huge && truncate -s 1P {m}/huge && rm {m}/huge"
    )));
    ok(&sh(&format!("truncate -s 1P {m}/again && rm {m}/again")));
    assert!(!p.exists());
    f.umount();
    let out = ok(&f.check());
    assert!(out.contains("no damage found"), "{out}");
}
