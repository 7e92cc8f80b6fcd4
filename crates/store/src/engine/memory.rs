//! An in-memory engine: the reference the conformance suite compares behaviour against, and a
//! fast engine for tests of the layers above.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::{scan_from, Cf, Durability, Engine, KvPairs, StoreError, Value, WriteBatch};

type Map = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct MemoryEngine {
    maps: RwLock<Map>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.maps.read().get(&(cf, key.to_vec())).cloned())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), StoreError> {
        let mut m = self.maps.write();
        for (cf, k, v) in batch.ops {
            match v {
                Value::Put(v) | Value::Aside(v) => {
                    m.insert((cf, k), v);
                }
                Value::Delete => {
                    m.remove(&(cf, k));
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KvPairs, StoreError> {
        let m = self.maps.read();
        let from = (cf, scan_from(prefix, start).to_vec());
        Ok(m.range(from..)
            .take_while(|((c, k), _)| *c == cf && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush_memtables(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}
