#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
//! One test per rule of docs/sync.md, on replicas in memory with delivery under the test's
//! control: "concurrent" below means neither replica had received the other's change.

mod support;

use sealvol_replica::*;
use sealvol_store::Engine;
use support::*;

const R: NodeId = NodeId::ROOT;

#[test]
fn attributes_merge_per_field_a_chmod_and_a_create_in_one_directory_both_survive() {
    let mut c = Cluster::new(2);
    let d = c.dir(0, R, b"d");
    let f = c.file(0, d, b"f");
    c.sync();
    c.reps[0]
        .setattr(d, Some(0o700), None, None, None, None)
        .unwrap();
    c.file(1, d, b"new");
    // And on one file: a chmod on one host, a chown on the other.
    c.reps[0]
        .setattr(f, Some(0o600), None, None, None, None)
        .unwrap();
    c.reps[1]
        .setattr(f, None, Some(42), None, None, None)
        .unwrap();
    c.sync();
    let t = c.converged();
    assert_eq!(
        t[b"/d".as_slice()].inode.perm,
        0o700,
        "the chmod of the directory survives"
    );
    assert!(
        t.contains_key(b"/d/new".as_slice()),
        "the file created meanwhile survives"
    );
    assert_eq!(t[b"/d/f".as_slice()].inode.perm, 0o600);
    assert_eq!(t[b"/d/f".as_slice()].inode.uid, 42);
}

#[test]
fn the_last_writer_of_one_attribute_wins_by_hlc() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.sync();
    c.reps[1]
        .setattr(f, Some(0o611), None, None, None, None)
        .unwrap();
    c.advance(10);
    c.reps[0]
        .setattr(f, Some(0o644), None, None, None, None)
        .unwrap();
    c.sync();
    assert_eq!(c.converged()[b"/f".as_slice()].inode.perm, 0o644);
}

#[test]
fn kleppmanns_cycle_two_concurrent_moves_of_directories_into_each_other_make_no_cycle() {
    let mut c = Cluster::new(2);
    let x = c.dir(0, R, b"x");
    let y = c.dir(0, R, b"y");
    c.file(0, x, b"in-x");
    c.file(0, y, b"in-y");
    c.sync();
    c.reps[0].rename(R, b"x", y, b"x").unwrap(); // A: /x into /y
    c.advance(5);
    c.reps[1].rename(R, b"y", x, b"y").unwrap(); // B: /y into /x
    c.sync();
    let t = c.converged();
    // The earlier move (A's) wins; B's would make a cycle and is skipped.
    assert!(t.contains_key(b"/y/x/in-x".as_slice()), "{:?}", names(&t));
    assert!(t.contains_key(b"/y/in-y".as_slice()), "{:?}", names(&t));
    assert_eq!(t.len(), 4, "every node reachable once: {:?}", names(&t));
}

#[test]
fn concurrent_creates_of_one_name_keep_both() {
    let mut c = Cluster::new(2);
    let a = c.file(0, R, b"notes.txt");
    c.write(0, a, b"from A");
    c.advance(3);
    let b = c.file(1, R, b"notes.txt");
    c.write(1, b, b"from B");
    c.sync();
    let t = c.converged();
    assert_eq!(t.len(), 2, "{:?}", names(&t));
    assert_eq!(
        c.cat(0, b"/notes.txt"),
        b"from A",
        "the earlier create keeps the name"
    );
    let other = names(&t)
        .into_iter()
        .find(|n| n.contains(".sync-conflict-"))
        .unwrap();
    assert!(
        other.starts_with("/notes.sync-conflict-") && other.ends_with(".txt"),
        "{other}"
    );
    assert_eq!(c.cat(1, other.as_bytes()), b"from B");
}

#[test]
fn concurrent_writes_keep_both_versions_whole_the_newer_at_the_name() {
    let mut c = Cluster::new(3);
    let f = c.file(0, R, b"db.sqlite");
    c.write(0, f, b"v0 v0 v0 v0 v0 v0 v0 v0 v0 v0");
    c.sync();
    c.write(0, f, b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    c.advance(7);
    c.write(1, f, b"BBBBBBBBBBBBBBBBBBBB");
    // Deliver in different orders to each replica.
    c.pull(2, 1);
    c.pull(2, 0);
    c.sync();
    let t = c.converged();
    assert_eq!(
        c.cat(2, b"/db.sqlite"),
        b"BBBBBBBBBBBBBBBBBBBB",
        "the newer write keeps the name"
    );
    let copy = names(&t)
        .into_iter()
        .find(|n| n.contains(".sync-conflict-"))
        .unwrap();
    assert!(copy.ends_with(".sqlite"), "{copy}");
    assert!(
        copy.contains(&ReplicaId(c.reps[0].id().0).short()),
        "named after the losing host: {copy}"
    );
    assert_eq!(
        c.cat(2, copy.as_bytes()),
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "never a mix"
    );
}

#[test]
fn a_writer_that_lost_the_name_keeps_writing_into_its_conflict_copy() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"log");
    c.write(0, f, b"base");
    c.sync();
    c.write(0, f, b"A1");
    c.advance(5);
    c.write(1, f, b"B1");
    c.advance(5);
    // A goes on from its own version before it hears of B's.
    c.write(0, f, b"A1 A2");
    c.sync();
    let t = c.converged();
    let vals: Vec<Vec<u8>> = names(&t).iter().map(|n| c.cat(0, n.as_bytes())).collect();
    assert!(
        vals.contains(&b"B1".to_vec()) && vals.contains(&b"A1 A2".to_vec()),
        "{vals:?}"
    );
    assert_eq!(t.len(), 2);
}

#[test]
fn modify_beats_delete_in_either_order() {
    for writer_first in [true, false] {
        let mut c = Cluster::new(2);
        let f = c.file(0, R, b"f");
        c.write(0, f, b"old");
        c.sync();
        if writer_first {
            c.write(0, f, b"changed");
            c.advance(5);
            c.reps[1].unlink(R, b"f").unwrap();
        } else {
            c.reps[1].unlink(R, b"f").unwrap();
            c.advance(5);
            c.write(0, f, b"changed");
        }
        c.sync();
        c.converged();
        assert_eq!(c.cat(1, b"/f"), b"changed", "writer_first = {writer_first}");
    }
}

#[test]
fn an_unlink_that_saw_the_last_write_removes_the_file() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.write(0, f, b"x");
    c.sync();
    c.reps[1].unlink(R, b"f").unwrap();
    c.sync();
    assert!(c.converged().is_empty());
}

#[test]
fn writes_to_an_open_file_unlinked_by_another_host_are_kept() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"open.log");
    c.write(0, f, b"1");
    c.sync();
    c.reps[1].unlink(R, b"open.log").unwrap();
    c.sync(); // A has applied the unlink; its process still has the file open.
    assert!(c.reps[0].dump().unwrap().is_empty());
    c.write(0, f, b"1 2");
    c.sync();
    c.converged();
    assert_eq!(c.cat(1, b"/open.log"), b"1 2");
}

#[test]
fn rmdir_of_a_directory_that_gained_a_file_meanwhile_keeps_both() {
    let mut c = Cluster::new(2);
    let d = c.dir(0, R, b"d");
    c.sync();
    c.reps[0].rmdir(R, b"d").unwrap();
    c.advance(5);
    c.file(1, d, b"child");
    c.sync();
    let t = c.converged();
    assert!(t.contains_key(b"/d/child".as_slice()), "{:?}", names(&t));
    // The other order: the create first, the rmdir later (it could not have seen it).
    let mut c = Cluster::new(2);
    let d = c.dir(0, R, b"d");
    c.sync();
    c.file(1, d, b"child");
    c.advance(5);
    c.reps[0].rmdir(R, b"d").unwrap();
    c.sync();
    assert!(c.converged().contains_key(b"/d/child".as_slice()));
}

#[test]
fn a_hard_linked_file_stays_one_file_on_every_replica() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"a");
    c.reps[0].link(f, R, b"b").unwrap();
    c.sync();
    c.write(1, f, b"through either name");
    c.sync();
    let t = c.converged();
    assert_eq!(t[b"/a".as_slice()].inode.id, t[b"/b".as_slice()].inode.id);
    assert_eq!(t[b"/a".as_slice()].nlink(), 2);
    assert_eq!(c.cat(0, b"/b"), b"through either name");
}

#[test]
fn a_rename_over_a_file_changed_meanwhile_does_not_throw_the_change_away() {
    let mut c = Cluster::new(2);
    let a = c.file(0, R, b"tmp");
    let b = c.file(0, R, b"target");
    c.write(0, a, b"new contents");
    c.write(0, b, b"old");
    c.sync();
    c.reps[0].rename(R, b"tmp", R, b"target").unwrap();
    c.advance(5);
    c.write(1, b, b"edited on B");
    c.sync();
    let t = c.converged();
    let vals: Vec<Vec<u8>> = names(&t).iter().map(|n| c.cat(0, n.as_bytes())).collect();
    assert!(vals.contains(&b"new contents".to_vec()), "{vals:?}");
    assert!(vals.contains(&b"edited on B".to_vec()), "{vals:?}");
}

#[test]
fn apply_is_idempotent_and_commutative_across_orders_and_duplicates() {
    let mut c = Cluster::new(3);
    let d = c.dir(0, R, b"d");
    c.sync();
    let f = c.file(0, d, b"f");
    c.write(0, f, b"zero");
    c.reps[1].rename(R, b"d", R, b"e").unwrap();
    c.reps[2]
        .setattr(d, Some(0o711), None, None, None, None)
        .unwrap();
    let g = c.file(2, d, b"f");
    c.write(2, g, b"two");
    c.reps[1].setxattr(d, b"user.k", Some(b"v")).unwrap();
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend(c.reps[i].entries_for(&Default::default()).unwrap());
    }
    all.sort_by_key(|e| (e.origin, e.seq));
    all.dedup_by(|a, b| a.origin == b.origin && a.seq == b.seq);
    let mut dumps = Vec::new();
    for perm in 0..6u64 {
        // A fresh replica with c's keys, admitted by replica 0.
        let key = MemberKey::generate().unwrap();
        let id = c.reps[0].admit(key.public().unwrap()).unwrap();
        let snap = c.reps[0].snapshot().unwrap();
        let eng = std::sync::Arc::new(sealvol_store::MemoryEngine::new());
        let clock =
            std::sync::Arc::new(TestClock(std::sync::atomic::AtomicU64::new(T0 + 1_000_000)));
        let mut r = Replica::join(
            eng,
            c.keys(),
            clock,
            Config::default(),
            c.volume,
            &snap,
            id,
            key,
        )
        .unwrap();
        // Deliver everything in a scrambled order, with duplicates.
        let mut order: Vec<&SealedEntry> = all.iter().chain(all.iter().step_by(2)).collect();
        let n = order.len();
        for i in 0..n {
            let j = (i as u64 * 7 + perm * 13) as usize % n;
            order.swap(i, j);
        }
        if perm % 2 == 1 {
            order.reverse();
        }
        for e in order {
            r.receive(e).unwrap();
        }
        for i in 0..3 {
            for a in r.pending_chunks().unwrap() {
                if let Some(s) = c.reps[i].sealed_chunk(&a).unwrap() {
                    r.receive_chunk(&a, &s).unwrap();
                }
            }
        }
        assert!(r.check().unwrap().is_clean());
        assert_eq!(r.held(), 0);
        dumps.push(r.dump().unwrap());
    }
    for d in &dumps[1..] {
        assert_eq!(d, &dumps[0]);
    }
    c.sync();
    assert_eq!(c.converged(), dumps[0]);
}

#[test]
fn a_copied_store_is_a_fork_detected_and_never_merged() {
    let mut c = Cluster::new(2);
    c.file(0, R, b"f");
    c.sync();
    // Copy replica 1's store to a third host, which claims the same id.
    let eng = std::sync::Arc::new(sealvol_store::MemoryEngine::new());
    let snapshot_of_1 = {
        let mut b = sealvol_store::WriteBatch::new();
        for cf in sealvol_store::Cf::ALL {
            c.engines[1]
                .for_each(cf, b"", &mut |k, v| {
                    b.put(cf, k.to_vec(), v.to_vec());
                    Ok(())
                })
                .unwrap();
        }
        b
    };
    eng.write(snapshot_of_1, sealvol_store::Durability::Disk)
        .unwrap();
    let clock = std::sync::Arc::new(TestClock(std::sync::atomic::AtomicU64::new(T0 + 50)));
    let mut copy = Replica::open(eng, c.keys(), clock, Config::default()).unwrap();
    assert_eq!(copy.id(), c.reps[1].id());
    c.file(1, R, b"on the original");
    copy.create(R, b"on the copy", Kind::File, 0o644, 0, 0, b"")
        .unwrap();
    c.pull(0, 1);
    for e in copy.entries_for(c.reps[0].version_vector()).unwrap() {
        assert_eq!(
            c.reps[0].receive(&e).unwrap(),
            Received::Refused(Refusal::Fork)
        );
    }
    for e in copy.entries_for(&Default::default()).unwrap() {
        c.reps[0].receive(&e).unwrap();
    }
    let report = c.reps[0].check().unwrap();
    assert_eq!(report.forks.len(), 1, "{report:?}");
    assert!(!report.is_clean(), "check reports the fork");
    let t = c.reps[0].dump().unwrap();
    assert!(t.contains_key(b"/on the original".as_slice()));
    assert!(
        !t.contains_key(b"/on the copy".as_slice()),
        "a fork is never merged"
    );
}

#[test]
fn an_entry_sealed_under_another_key_or_altered_is_refused() {
    let mut c = Cluster::new(2);
    let mut other = Cluster::new(1);
    other.file(0, R, b"x");
    for e in other.reps[0].entries_for(&Default::default()).unwrap() {
        let mut e = e;
        e.origin = c.reps[0].id();
        assert_eq!(
            c.reps[1].receive(&e).unwrap(),
            Received::Refused(Refusal::Forged)
        );
    }
    c.file(0, R, b"y");
    let mut es = c.entries(0, 1);
    let last = es.last_mut().unwrap();
    let n = last.bytes.len();
    last.bytes[n - 20] ^= 1;
    assert_eq!(
        c.reps[1].receive(last).unwrap(),
        Received::Refused(Refusal::Forged)
    );
    // Moved to another position of the chain: the seal binds (origin, seq).
    let mut moved = c.entries(0, 1).pop().unwrap();
    moved.seq += 1;
    assert_eq!(
        c.reps[1].receive(&moved).unwrap(),
        Received::Refused(Refusal::Forged)
    );
}

#[test]
fn an_entry_stamped_far_in_the_future_is_held_until_the_clock_catches_up() {
    let mut c = Cluster::new(2);
    c.clocks[0]
        .0
        .fetch_add(10 * 60_000, std::sync::atomic::Ordering::SeqCst);
    c.file(0, R, b"from the future");
    let es = c.entries(0, 1);
    let r = c.reps[1].receive(&es[es.len() - 1]).unwrap();
    assert!(
        matches!(r, Received::Held(Hold::Future { ahead_ms }) if ahead_ms >= 9 * 60_000),
        "{r:?}"
    );
    assert!(c.reps[1].dump().unwrap().is_empty());
    c.clocks[1]
        .0
        .fetch_add(10 * 60_000, std::sync::atomic::Ordering::SeqCst);
    c.reps[1].retry_held().unwrap();
    assert!(c.reps[1]
        .dump()
        .unwrap()
        .contains_key(b"/from the future".as_slice()));
}

#[test]
fn gaps_are_held_and_duplicates_change_nothing() {
    let mut c = Cluster::new(2);
    c.file(0, R, b"1");
    c.file(0, R, b"2");
    c.file(0, R, b"3");
    let es = c.entries(0, 1);
    let last = es.len() - 1;
    assert_eq!(
        c.reps[1].receive(&es[last]).unwrap(),
        Received::Held(Hold::Gap)
    );
    for e in &es[..last] {
        c.reps[1].receive(e).unwrap();
    }
    assert_eq!(c.reps[1].held(), 0);
    assert_eq!(c.reps[1].dump().unwrap().len(), 3);
    let before = c.reps[1].dump().unwrap();
    for e in &es {
        assert_eq!(c.reps[1].receive(e).unwrap(), Received::Duplicate);
    }
    assert_eq!(c.reps[1].dump().unwrap(), before);
}

#[test]
fn a_chunk_not_yet_here_is_pending_not_damage_and_a_bad_chunk_is_refused() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.write(0, f, b"sixteen bytes!!!and more");
    for e in c.entries(0, 1) {
        c.reps[1].receive(&e).unwrap();
    }
    assert!(matches!(c.reps[1].read(f), Err(Error::Pending(_))));
    let report = c.reps[1].check().unwrap();
    assert!(report.is_clean() && report.pending.len() == 2, "{report:?}");
    let a = c.reps[1].pending_chunks().unwrap()[0];
    let mut bad = c.reps[0].sealed_chunk(&a).unwrap().unwrap();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(!c.reps[1].receive_chunk(&a, &bad).unwrap());
    c.chunks(1, 0);
    assert_eq!(c.reps[1].read(f).unwrap(), b"sixteen bytes!!!and more");
}

#[test]
fn a_removed_member_is_refused_after_its_cutoff_and_trimming_reclaims_space() {
    let mut c = Cluster::new(3);
    let f = c.file(2, R, b"f");
    c.write(2, f, b"kept: made before the cutoff");
    c.sync();
    let gone = c.reps[2].id();
    c.reps[0].expel(gone).unwrap();
    c.file(2, R, b"after the cutoff");
    c.pull(0, 1);
    c.pull(1, 0);
    for e in c.entries(2, 0) {
        assert_eq!(
            c.reps[0].receive(&e).unwrap(),
            Received::Refused(Refusal::RemovedMember)
        );
    }
    c.reps.pop();
    c.sync();
    c.converged();
    // Remove the file, then trim with everyone's acknowledgements: its chunks go.
    c.reps[0].unlink(R, b"f").unwrap();
    c.sync();
    let acks = c.acks();
    for r in &mut c.reps {
        assert!(r.trim(&acks).unwrap() > 0);
        assert_eq!(r.unreferenced_chunks().unwrap(), 0);
        assert!(
            r.chunk_addrs().unwrap().is_empty(),
            "the removed file's chunks are reclaimed"
        );
    }
    c.converged();
    // A new member still starts (from a snapshot) after the log was trimmed.
    let n = c.add_member(1);
    c.file(n, R, b"hello");
    c.sync();
    assert_eq!(c.converged().len(), 1);
}

#[test]
fn a_snapshot_under_another_key_is_refused() {
    let mut c = Cluster::new(1);
    let other = Cluster::new(1);
    let key = MemberKey::generate().unwrap();
    let id = c.reps[0].admit(key.public().unwrap()).unwrap();
    let snap = c.reps[0].snapshot().unwrap();
    let clock = std::sync::Arc::new(TestClock(std::sync::atomic::AtomicU64::new(T0)));
    let eng = std::sync::Arc::new(sealvol_store::MemoryEngine::new());
    let r = Replica::join(
        eng,
        other.keys(),
        clock.clone(),
        Config::default(),
        c.volume,
        &snap,
        id,
        key,
    );
    assert!(matches!(r, Err(Error::Invalid(_))));
    // With the volume's key but another member key than the one admitted: refused too.
    let eng = std::sync::Arc::new(sealvol_store::MemoryEngine::new());
    let wrong = MemberKey::generate().unwrap();
    let r = Replica::join(
        eng,
        c.keys(),
        clock,
        Config::default(),
        c.volume,
        &snap,
        id,
        wrong,
    );
    assert!(matches!(r, Err(Error::Invalid(_))));
}

#[test]
fn a_crashed_replica_reopens_from_its_store_where_it_was() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.write(0, f, b"durable");
    c.sync();
    let eng: std::sync::Arc<dyn sealvol_store::Engine> = c.engines[1].clone();
    let r = Replica::open(eng, c.keys(), c.clocks[1].clone(), Config::default()).unwrap();
    assert_eq!(r.version_vector(), c.reps[1].version_vector());
    c.reps[1] = r;
    c.file(1, R, b"after restart");
    c.sync();
    assert_eq!(c.converged().len(), 2);
}

#[test]
fn a_members_operations_after_its_cutoff_leave_every_replica_whatever_it_had_applied() {
    let mut c = Cluster::new(3);
    let f = c.file(2, R, b"f");
    c.write(2, f, b"before the cutoff");
    c.sync();
    // Member 2 goes on; replica 1 hears of it, replica 0 does not, and removes it.
    c.write(2, f, b"after the cutoff");
    c.file(2, R, b"g");
    c.pull(1, 2);
    assert!(c.reps[1].dump().unwrap().contains_key(b"/g".as_slice()));
    let gone = c.reps[2].id();
    c.reps[0].expel(gone).unwrap();
    c.reps.truncate(2);
    c.sync();
    let t = c.converged();
    assert!(!t.contains_key(b"/g".as_slice()), "{:?}", names(&t));
    assert_eq!(c.cat(1, b"/f"), b"before the cutoff");
    // A second removal with a larger cutoff changes nothing: the smallest holds.
    c.reps[1].expel(gone).unwrap();
    c.sync();
    assert_eq!(c.converged(), t);
}

#[test]
fn a_member_silent_for_longer_than_the_limit_is_removed_when_trimming() {
    let mut c = Cluster::new(3);
    c.file(0, R, b"f");
    c.sync();
    let silent = c.reps[2].id();
    c.advance(8 * 24 * 3600 * 1000);
    c.file(0, R, b"g");
    c.file(1, R, b"h");
    c.pull(0, 1);
    assert_eq!(c.reps[0].silent_members().unwrap(), vec![silent]);
    c.reps[0].trim(&Default::default()).unwrap();
    assert!(!c.reps[0].members().unwrap().contains(&silent));
    // Its entries from now on are refused; it must re-join.
    c.file(2, R, b"late");
    for e in c.entries(2, 0) {
        assert_eq!(
            c.reps[0].receive(&e).unwrap(),
            Received::Refused(Refusal::RemovedMember)
        );
    }
}

#[test]
fn applying_a_remote_change_names_every_name_and_inode_to_invalidate() {
    let mut c = Cluster::new(2);
    let d = c.dir(0, R, b"d");
    let f = c.file(0, R, b"f");
    c.sync();
    c.reps[1].take_changes();
    c.reps[0].rename(R, b"f", d, b"g").unwrap();
    c.write(0, f, b"new");
    c.pull(1, 0);
    let ch = c.reps[1].take_changes();
    assert!(ch.names.contains(&(R, b"f".to_vec())), "{ch:?}");
    assert!(ch.names.contains(&(d, b"g".to_vec())), "{ch:?}");
    assert!(ch.inodes.contains(&f), "the file's contents and times");
    assert!(
        ch.inodes.contains(&d) && ch.inodes.contains(&R),
        "both directories' times and counts"
    );
    assert_eq!(c.reps[1].take_changes(), Changes::default(), "taken once");
}

#[test]
fn a_read_waits_for_a_pending_chunk_up_to_a_bound() {
    use std::time::{Duration, Instant};
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.write(0, f, b"arrives later");
    for e in c.entries(0, 1) {
        c.reps[1].receive(&e).unwrap();
    }
    let t = Instant::now();
    assert!(matches!(
        c.reps[1].read_waiting(f, Duration::from_millis(100)),
        Err(Error::Pending(_))
    ));
    assert!(t.elapsed() >= Duration::from_millis(100), "it waited");
    let addr = c.reps[1].pending_chunks().unwrap()[0];
    let sealed = c.reps[0].sealed_chunk(&addr).unwrap().unwrap();
    let r1 = &c.reps[1];
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            assert!(r1.receive_chunk(&addr, &sealed).unwrap());
        });
        assert_eq!(
            r1.read_waiting(f, Duration::from_secs(30)).unwrap(),
            b"arrives later"
        );
    });
}

/// The content unit is the piece (issue 10's slices): a small overwrite of a large file ships a
/// slice and the pieces it touches, not the file.
#[test]
fn a_small_overwrite_ships_one_piece_not_the_file() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"big.db");
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    c.sync();
    c.write(0, f, &data);
    let whole = c.entries(0, 1);
    c.sync();
    c.reps[0].write_at(f, 40_000, b"0123456789").unwrap();
    let small = c.entries(0, 1);
    assert_eq!(small.len(), 1);
    assert!(
        small[0].bytes.len() < 512,
        "a 10-byte overwrite of a 64 KiB file made a {}-byte entry",
        small[0].bytes.len()
    );
    // Rewriting the file with one piece changed also ships that piece only.
    let mut next = data.clone();
    next[100] ^= 0xff;
    c.sync();
    c.write(0, f, &next);
    let one = c.entries(0, 1);
    assert!(one[0].bytes.len() < 512, "{} bytes", one[0].bytes.len());
    assert!(
        whole.iter().map(|e| e.bytes.len()).sum::<usize>() > 64 * 1024,
        "the first write ships every piece"
    );
    c.sync();
    c.converged();
    // The rewrite put back the bytes the patch had changed, in the piece it listed.
    assert!(
        c.cat(1, b"/big.db") == next,
        "replica 1 holds the rewritten file"
    );
}

/// Both hosts patch different bytes of one file concurrently: each version is its own base plus
/// its own patch, never both patches in one file.
#[test]
fn concurrent_small_overwrites_keep_both_versions_whole() {
    let mut c = Cluster::new(3);
    let f = c.file(0, R, b"table.db");
    let base: Vec<u8> = (0..200u8).collect();
    c.write(0, f, &base);
    c.sync();
    c.reps[0].write_at(f, 10, b"AAAA").unwrap();
    c.reps[0].write_at(f, 150, b"AA").unwrap();
    c.advance(7);
    c.reps[1].write_at(f, 100, b"BBBB").unwrap();
    c.pull(2, 1);
    c.pull(2, 0);
    c.sync();
    let t = c.converged();
    let mut b = base.clone();
    b[100..104].copy_from_slice(b"BBBB");
    let mut a = base.clone();
    a[10..14].copy_from_slice(b"AAAA");
    a[150..152].copy_from_slice(b"AA");
    assert_eq!(c.cat(2, b"/table.db"), b, "the newer writer keeps the name");
    let copy = names(&t)
        .into_iter()
        .find(|n| n.contains(".sync-conflict-"))
        .unwrap();
    assert_eq!(c.cat(0, copy.as_bytes()), a, "the other version, whole");
}

/// A truncation inside a piece cuts it: growing the file again reads zeros there, on every
/// replica, and trimming leaves no chunk unaccounted for.
#[test]
fn truncate_then_extend_reads_zeros_and_trimming_releases_what_writes_replaced() {
    let mut c = Cluster::new(2);
    let f = c.file(0, R, b"f");
    c.write(0, f, b"0123456789abcdefghijklmnopqrstuvwxyz");
    c.write(0, f, b"0123456789abcdefghij");
    c.reps[0].write_at(f, 30, b"!").unwrap();
    c.sync();
    c.converged();
    let mut want = b"0123456789abcdefghij".to_vec();
    want.resize(30, 0);
    want.push(b'!');
    assert_eq!(c.cat(1, b"/f"), want);
    let acks = c.acks();
    for r in &mut c.reps {
        r.trim(&acks).unwrap();
    }
    for r in &c.reps {
        assert!(r.check().unwrap().is_clean());
        assert_eq!(r.unreferenced_chunks().unwrap(), 0);
    }
    assert_eq!(c.cat(0, b"/f"), want);
}

/// Trimming releases references outside the fold (what stable writes replaced); an operation
/// undone afterwards must not put back a reference count from before the trim.
#[test]
fn a_trim_between_an_operation_and_its_undo_keeps_reference_counts_exact() {
    use std::sync::atomic::Ordering;
    let mut c = Cluster::new(3);
    let f = c.file(0, R, b"f");
    let g = c.file(0, R, b"g");
    c.write(0, f, b"0123456789");
    c.reps[0].write_at(f, 0, b"z").unwrap();
    c.write(0, f, b"abcdefghij");
    c.sync();
    // C's clock lags: what it makes next folds before B's write.
    c.clocks[2].0.fetch_sub(10_000, Ordering::SeqCst);
    c.advance(5_000);
    let c_ack = c.reps[2].version_vector().clone();
    let late = c.file(2, R, b"late");
    c.reps[1].write_at(g, 0, b"z").unwrap();
    c.pull(0, 1);
    let mut acks = std::collections::BTreeMap::new();
    acks.insert(c.reps[1].id(), c.reps[1].version_vector().clone());
    acks.insert(c.reps[2].id(), c_ack);
    assert!(
        c.reps[0].trim(&acks).unwrap() > 0,
        "the first writes are stable"
    );
    c.pull(0, 2);
    assert!(
        c.reps[0].counters().undone > 0,
        "the late create undid B's write"
    );
    let r = c.reps[0].check().unwrap();
    assert!(r.is_clean(), "{:?}", r.damage);
    c.sync();
    let t = c.converged();
    assert!(t.contains_key(b"/late".as_slice()) && late != f);
    assert_eq!(c.cat(0, b"/f"), b"abcdefghij");
}

/// A replica that has not yet heard of a member admitted elsewhere keeps the entries that
/// member still needs, even when every member it knows has them.
#[test]
fn trimming_keeps_entries_a_member_admitted_elsewhere_still_needs() {
    let mut c = Cluster::new(2);
    c.sync();
    // B makes a change A has not seen; A admits N, whose snapshot lacks it.
    c.file(1, R, b"from-b");
    let n = c.add_member(0);
    c.pull(0, 1);
    // B trims with what A and B say; it has not applied A's admission of N.
    let mut acks = std::collections::BTreeMap::new();
    acks.insert(c.reps[0].id(), c.reps[0].version_vector().clone());
    c.reps[1].trim(&acks).unwrap();
    let from_b = c.reps[1]
        .entries_for(c.reps[n].version_vector())
        .expect("B still holds what N lacks");
    assert!(!from_b.is_empty());
    c.sync();
    let t = c.converged();
    assert!(t.contains_key(b"/from-b".as_slice()));
}

/// Every trim deletes the entries every member has (each trim from where the last one stopped).
#[test]
fn each_trim_deletes_the_entries_every_member_has() {
    let mut c = Cluster::new(2);
    for i in 0..5 {
        c.file(0, R, format!("f{i}").as_bytes());
    }
    c.sync();
    let entries = |c: &Cluster, i: usize| {
        let mut n = 0;
        c.engines[i]
            .for_each(sealvol_store::Cf::Log, b"e", &mut |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
        n
    };
    assert!(entries(&c, 0) >= 5);
    let acks = c.acks();
    c.reps[0].trim(&acks).unwrap();
    assert_eq!(entries(&c, 0), 0);
    c.file(0, R, b"later");
    c.file(1, R, b"from-b");
    c.sync();
    assert_eq!(entries(&c, 0), 2);
    let acks = c.acks();
    c.reps[0].trim(&acks).unwrap();
    assert_eq!(entries(&c, 0), 0);
    c.converged();
}

/// A peer's history that sorts before operations made here meanwhile (a replica catching up
/// while this one went on changing) folds as runs: one undo back to the oldest entry of a run,
/// not one per entry. The state is what delivery entry by entry gives.
#[test]
fn late_entries_fold_as_one_run_with_one_undo_and_the_same_state() {
    let mut c = Cluster::new(3);
    c.sync();
    // Replica 1's history, older than replica 0's changes below.
    let d = c.dir(1, R, b"d");
    for i in 0..20u8 {
        let f = c.file(1, d, &[b'f', b'0' + i / 10, b'0' + i % 10]);
        c.write(1, f, &[i; 40]);
    }
    c.advance(1000);
    // Replica 0's own changes, newer, one of them clashing with a name of replica 1's.
    let local = c.dir(0, R, b"local");
    for i in 0..5u8 {
        c.file(0, local, &[b'l', b'0' + i]);
    }
    c.dir(0, R, b"d");
    let before = c.reps[0].counters();
    let entries = c.entries(1, 0);
    assert!(entries.len() >= 41);
    let got = c.reps[0].receive_batch(&entries).unwrap();
    assert!(got.iter().all(|r| *r == Received::Applied), "{got:?}");
    let after = c.reps[0].counters();
    assert_eq!(
        after.late_entries - before.late_entries,
        entries.len() as u64
    );
    assert_eq!(
        after.late_runs - before.late_runs,
        1,
        "one run for {} entries",
        entries.len()
    );
    // One undo of replica 0's 7 later operations, not one per entry.
    assert_eq!(after.undone - before.undone, 7);
    // Replica 2 takes the same entries one by one, newest first where chains allow.
    for e in c.entries(0, 2).iter().rev() {
        c.reps[2].receive(e).unwrap();
    }
    c.sync();
    let tree = c.converged();
    assert!(
        tree.keys().any(|k| k.starts_with(b"/d.sync-conflict-")),
        "{:?}",
        tree.keys()
    );
}

/// A late run that touches nothing the operations after it touched (another directory's files
/// here) folds on top of them without undoing them, once the replica knows what each later
/// operation read and wrote (from the first late run it had to undo and redo on); the state is
/// what delivery entry by entry gives.
#[test]
fn a_late_run_that_commutes_with_later_operations_folds_without_undo() {
    let mut c = Cluster::new(3);
    let a = c.dir(0, R, b"a");
    let b = c.dir(0, R, b"b");
    c.sync();
    // A first late run: undone and redone (nothing is known yet of what came after it).
    c.file(1, a, b"first");
    c.advance(10);
    c.file(0, b, b"mine");
    c.advance(10);
    let before = c.reps[0].counters();
    let first = c.entries(1, 0);
    c.reps[0].receive_batch(&first).unwrap();
    let after = c.reps[0].counters();
    assert_eq!(after.commuted_runs, before.commuted_runs);
    assert_eq!(after.undone - before.undone, 1);
    // Replica 1's files, older than replica 0's next ones.
    for i in 0..10u8 {
        let f = c.file(1, a, &[b'f', b'0' + i]);
        c.write(1, f, &[b'a' + i; 30]);
    }
    c.advance(1000);
    // Contents unlike replica 1's: a chunk both store would be one reference count record,
    // which both runs write (conservatively, not commuting).
    for i in 0..4u8 {
        let f = c.file(0, b, &[b'g', b'0' + i]);
        c.write(0, f, &[b'A' + i; 20]);
    }
    let before = c.reps[0].counters();
    let entries = c.entries(1, 0);
    assert_eq!(entries.len(), 20);
    c.reps[0].receive_batch(&entries).unwrap();
    let after = c.reps[0].counters();
    assert_eq!(after.late_entries - before.late_entries, 20);
    assert_eq!(after.commuted_runs - before.commuted_runs, 1);
    assert_eq!(after.undone, before.undone, "nothing undone");
    for e in c.entries(0, 2).iter().rev() {
        c.reps[2].receive(e).unwrap();
    }
    c.sync();
    let tree = c.converged();
    assert_eq!(tree.len(), 2 + 2 + 10 + 4, "{:?}", tree.keys());
}
