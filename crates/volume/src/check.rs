//! `sealvol check`: verify every record and every chunk, and name damaged files by path.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use sealvol_crypto::{ChunkAddr, Domain};
use sealvol_store::Cf;

use crate::error::Result;
use crate::holes;
use crate::schema::*;
use crate::volume::Volume;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Path of the damaged file inside the volume ("?" parts where a name is unreadable).
    pub path: String,
    pub detail: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    pub inodes: u64,
    pub dirents: u64,
    pub extents: u64,
    pub chunks: u64,
    pub log_entries: u64,
    pub damage: Vec<Damage>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

fn join(parent: &str, name: &[u8]) -> String {
    let n = String::from_utf8_lossy(name);
    if parent == "/" {
        format!("/{n}")
    } else {
        format!("{parent}/{n}")
    }
}

impl Volume {
    /// Read and verify everything. Damage is reported, never repaired.
    pub fn check(&self) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let geo = self.cfg.chunk_size;
        let mut paths: HashMap<u64, String> = HashMap::new();
        let mut expected_refs: BTreeMap<ChunkAddr, u64> = BTreeMap::new();
        let mut chunk_users: HashMap<ChunkAddr, Vec<String>> = HashMap::new();
        let mut verified: HashMap<ChunkAddr, Option<String>> = HashMap::new();
        let mut queue = VecDeque::from([(ROOT_INO, "/".to_string())]);
        let orphans = self.commit.lock().counters.orphans.clone();
        queue.extend(orphans.iter().map(|o| (*o, format!("<orphan inode {o}>"))));
        let mut seen = HashSet::new();

        while let Some((ino, path)) = queue.pop_front() {
            if !seen.insert(ino) {
                continue;
            }
            paths.insert(ino, path.clone());
            // The store itself, not the inode cache: damage at rest is what this looks for.
            let inode = match self.read_inode_from_store(ino) {
                Ok(Some(i)) => i,
                Ok(None) => {
                    r.damage.push(Damage {
                        path,
                        detail: format!("inode {ino} is missing"),
                    });
                    continue;
                }
                Err(e) => {
                    r.damage.push(Damage {
                        path,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            match inode.kind {
                Kind::Dir => {
                    let prefix = self.dir_prefix(ino);
                    let mut entries = Vec::new();
                    self.engine.for_each(Cf::Dirents, &prefix, &mut |k, v| {
                        entries.push((k.to_vec(), v.to_vec()));
                        Ok(())
                    })?;
                    for (k, v) in entries {
                        r.dirents += 1;
                        match self.open_meta::<Dirent>(Domain::Dirent, &k, &v, ino) {
                            Ok(d) => queue.push_back((d.ino, join(&path, &d.name))),
                            Err(e) => r.damage.push(Damage {
                                path: join(&path, b"?"),
                                detail: format!("directory entry: {e}"),
                            }),
                        }
                    }
                }
                Kind::File => {
                    for index in holes::data_indices(&inode.holes, 0, geo.count(inode.size)) {
                        match self.read_extent_from_store(ino, index) {
                            Ok(Some(e)) => {
                                r.extents += 1;
                                *expected_refs.entry(e.addr).or_default() += 1;
                                chunk_users.entry(e.addr).or_default().push(path.clone());
                                let res = verified
                                    .entry(e.addr)
                                    .or_insert_with(|| self.verify_chunk(&e.addr).err());
                                if let Some(detail) = res {
                                    r.damage.push(Damage {
                                        path: path.clone(),
                                        detail: format!("chunk {index} ({}): {detail}", e.addr),
                                    });
                                }
                            }
                            Ok(None) => {
                                if !inode.holes.iter().any(|(s, e)| (*s..*e).contains(&index)) {
                                    r.damage.push(Damage {
                                        path: path.clone(),
                                        detail: format!("chunk {index} is missing"),
                                    });
                                }
                            }
                            Err(e) => r.damage.push(Damage {
                                path: path.clone(),
                                detail: format!("extent {index}: {e}"),
                            }),
                        }
                    }
                }
                _ => {}
            }
        }

        // Every inode record opens, and is reachable.
        let reachable: HashSet<[u8; 16]> = seen.iter().map(|i| self.inode_key(*i)).collect();
        let mut unreachable = 0u64;
        self.engine.for_each(Cf::Inodes, b"", &mut |k, _| {
            r.inodes += 1;
            let key: [u8; 16] = k.try_into().unwrap_or([0; 16]);
            if !reachable.contains(&key) {
                unreachable += 1;
            }
            Ok(())
        })?;
        if unreachable > 0 {
            r.damage.push(Damage {
                path: "<none>".into(),
                detail: format!("{unreachable} inode record(s) are in no directory"),
            });
        }

        // Every stored chunk opens; chunks no file uses are reported.
        let mut stored = Vec::new();
        self.engine.for_each(Cf::Chunks, b"", &mut |k, _| {
            stored.push(k.to_vec());
            Ok(())
        })?;
        for k in stored {
            r.chunks += 1;
            let addr = ChunkAddr(k.as_slice().try_into().unwrap_or([0; 32]));
            if verified.contains_key(&addr) {
                continue;
            }
            if let Err(detail) = self.verify_chunk(&addr) {
                r.damage.push(Damage {
                    path: "<unused chunk>".into(),
                    detail,
                });
            }
        }

        // Reference counts match what the files use.
        let mut refs = Vec::new();
        self.engine.for_each(Cf::Refs, b"", &mut |k, v| {
            refs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        let mut counted = HashSet::new();
        for (k, v) in refs {
            let addr = ChunkAddr(k.as_slice().try_into().unwrap_or([0; 32]));
            counted.insert(addr);
            match self.open_meta::<RefCount>(Domain::RefCount, &k, &v, 0) {
                Ok(rc) => {
                    let want = expected_refs.get(&addr).copied().unwrap_or(0);
                    if rc.count != want {
                        let users = chunk_users.get(&addr).cloned().unwrap_or_default();
                        r.damage.push(Damage {
                            path: users.first().cloned().unwrap_or_else(|| "<none>".into()),
                            detail: format!(
                                "chunk {addr}: reference count {} but {want} uses",
                                rc.count
                            ),
                        });
                    }
                }
                Err(e) => r.damage.push(Damage {
                    path: chunk_users
                        .get(&addr)
                        .and_then(|u| u.first().cloned())
                        .unwrap_or_else(|| "<none>".into()),
                    detail: format!("reference count of chunk {addr}: {e}"),
                }),
            }
        }
        for (addr, users) in &chunk_users {
            if !counted.contains(addr) {
                r.damage.push(Damage {
                    path: users[0].clone(),
                    detail: format!("chunk {addr} has no reference count"),
                });
            }
        }

        // The operation log opens and decodes entry by entry, each matching its key.
        self.engine.for_each(Cf::Log, b"", &mut |k, v| {
            r.log_entries += 1;
            let detail = match self
                .keys
                .meta_seal
                .open(Domain::LogEntry, &self.binding(&[k]), v)
            {
                Err(_) => Some("a log entry fails authentication".to_string()),
                Ok(plain) => decode_log_entry(k, &plain)
                    .err()
                    .map(|e| format!("a log entry is damaged: {e}")),
            };
            if let Some(detail) = detail {
                r.damage.push(Damage {
                    path: "<operation log>".into(),
                    detail,
                });
            }
            Ok(())
        })?;
        Ok(r)
    }

    /// The chunk addresses of a file's stored chunks, by index (holes left out).
    pub fn file_chunks(&self, ino: u64) -> Result<Vec<(u64, ChunkAddr)>> {
        let i = self.read_inode(ino)?.ok_or(crate::FsError::NotFound)?;
        let mut out = Vec::new();
        for index in holes::data_indices(&i.holes, 0, self.cfg.chunk_size.count(i.size)) {
            if let Some(e) = self.read_extent(ino, index)? {
                out.push((index, e.addr));
            }
        }
        Ok(out)
    }

    fn verify_chunk(&self, addr: &ChunkAddr) -> std::result::Result<(), String> {
        let sealed = match self.engine.get(Cf::Chunks, &addr.0) {
            Ok(Some(s)) => s,
            Ok(None) => return Err("chunk is missing".into()),
            Err(e) => return Err(e.to_string()),
        };
        self.open_chunk(addr, &sealed)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
