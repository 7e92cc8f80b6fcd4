#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]
//! Property tests of the replicated tree: concurrent moves of directories into each other, on
//! three replicas, delivered to a fourth in any order and any number of times, always give the
//! same tree, without cycles, with every directory reachable.

mod support;

use proptest::prelude::*;
use sealvol_replica::*;
use support::*;

const R: NodeId = NodeId::ROOT;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn concurrent_moves_converge_without_cycles(
        moves in prop::collection::vec((0usize..3, 0usize..6, 0usize..7, any::<bool>()), 1..25),
        order_seed in any::<u64>(),
    ) {
        let mut c = Cluster::new(4);
        let names: Vec<Vec<u8>> = (0..6).map(|i| format!("d{i}").into_bytes()).collect();
        let mut dirs = Vec::new();
        for n in &names {
            dirs.push(c.dir(0, R, n));
        }
        c.sync();
        // Each of replicas 0..3 moves directories under others (or to the root), unaware of
        // the others' moves.
        for (r, what, to, step) in moves {
            let tree = c.reps[r].dump().unwrap();
            let Some((path, _)) = tree.iter().find(|(_, e)| e.node == dirs[what]) else { continue };
            let (pp, pn) = path.split_at(path.iter().rposition(|&b| b == b'/').unwrap());
            let from = if pp.is_empty() { R } else { tree[pp].node };
            let dest = if to == 6 { R } else { dirs[to] };
            let _ = c.reps[r].rename(from, &pn[1..], dest, &pn[1..]);
            if step {
                c.advance(1);
            }
        }
        // Replica 3 receives everything in a scrambled order, with duplicates.
        let mut all = Vec::new();
        for r in 0..3 {
            all.extend(c.reps[r].entries_for(c.reps[3].version_vector()).unwrap());
        }
        let n = all.len();
        let mut s = order_seed | 1;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            all.swap(i, (s >> 33) as usize % (i + 1));
        }
        let dups: Vec<SealedEntry> = all.iter().step_by(3).cloned().collect();
        for e in all.iter().chain(dups.iter()) {
            c.reps[3].receive(e).unwrap();
        }
        c.sync();
        let t = c.converged();
        // Every directory reachable exactly once, so no cycle and nothing detached.
        let mut seen: Vec<NodeId> = t.values().map(|e| e.node).collect();
        seen.sort();
        let mut want = dirs.clone();
        want.sort();
        prop_assert_eq!(seen, want);
    }
}

#[test]
fn version_vectors_advance_only_along_chains() {
    let mut c = Cluster::new(2);
    let before = c.reps[1].version_vector().clone();
    c.file(0, R, b"a");
    c.file(0, R, b"b");
    let es = c.entries(0, 1);
    // The second entry alone is held; the head does not move.
    assert_eq!(
        c.reps[1].receive(&es[1]).unwrap(),
        Received::Held(Hold::Gap)
    );
    assert_eq!(c.reps[1].version_vector(), &before);
    c.reps[1].receive(&es[0]).unwrap();
    let id0 = c.reps[0].id();
    assert_eq!(
        c.reps[1].version_vector()[&id0],
        c.reps[0].version_vector()[&id0]
    );
}
