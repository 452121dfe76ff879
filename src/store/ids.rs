//! Dense ids: one counter per kind of record a user sees (stores, certificates, templates) and
//! one for audit events, so a fresh database numbers each kind 1, 2, 3 …
//!
//! A counter lives in the `ids` tree and is bumped in place (`update_and_fetch`), in the same
//! sled log as the record that uses the id: a crash that loses the bump loses that record too,
//! and the caller's `durable()` makes both durable before anyone sees the id. On open each
//! counter is raised to the largest id of its kind already stored, so databases written before
//! the counters existed keep their ids and the next one follows the largest. Being ordinary
//! rows, the counters travel with a backup (`pcad backup`), unlike sled's own id generator.

use super::{Db, StoreError};

/// The kinds of record with a sequence of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    Store,
    Cert,
    Template,
    Audit,
    /// Records users never see by number (OCSP sets and the like): `Db::next_id()`.
    Internal,
}

impl IdKind {
    pub const ALL: [IdKind; 5] = [
        IdKind::Store,
        IdKind::Cert,
        IdKind::Template,
        IdKind::Audit,
        IdKind::Internal,
    ];

    fn key(self) -> &'static [u8] {
        match self {
            IdKind::Store => b"store",
            IdKind::Cert => b"cert",
            IdKind::Template => b"template",
            IdKind::Audit => b"audit",
            IdKind::Internal => b"internal",
        }
    }
}

fn read_u64(what: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(what.to_owned(), "bad length".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// The id in the last 8 bytes of a key.
fn id_at_end(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

impl Db {
    /// The next id of `kind`: one more than the last one handed out, never repeated (deleted
    /// records keep their numbers), durable with the record written under it.
    pub fn next_id_of(&self, kind: IdKind) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let mut bad = false;
        let next = self.trees.ids.update_and_fetch(kind.key(), |old| {
            let last = match old {
                None => 0,
                Some(b) => match <[u8; 8]>::try_from(b) {
                    Ok(b) => u64::from_be_bytes(b),
                    Err(_) => {
                        bad = true;
                        return old.map(<[u8]>::to_vec);
                    }
                },
            };
            Some(last.saturating_add(1).to_be_bytes().to_vec())
        })?;
        if bad {
            return Err(StoreError::Corrupt(
                format!("ids/{}", String::from_utf8_lossy(kind.key())),
                "bad length".into(),
            ));
        }
        let next =
            next.ok_or_else(|| StoreError::Corrupt("ids".into(), "counter vanished".into()))?;
        read_u64("ids", &next)
    }

    /// Takes back `id`, the last id of `kind` drawn, when nothing was written under it (a
    /// refused name, an HSM that failed): the next draw hands it out again. Does nothing if
    /// another id was drawn since, so a sequence only ever has gaps where that happened.
    pub fn give_back_id(&self, kind: IdKind, id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        let Some(before) = id.checked_sub(1) else {
            return Ok(());
        };
        // Err(CompareAndSwapError) means another draw came in between: keep the gap.
        let _ = self.trees.ids.compare_and_swap(
            kind.key(),
            Some(&id.to_be_bytes()[..]),
            Some(&before.to_be_bytes()[..]),
        )?;
        Ok(())
    }

    /// The last id of `kind` handed out (0 before the first).
    pub fn last_id_of(&self, kind: IdKind) -> Result<u64, StoreError> {
        match self.trees.ids.get(kind.key())? {
            None => Ok(0),
            Some(v) => read_u64("ids", &v),
        }
    }

    /// The largest id of `kind` among the stored records. Audit events are only scanned when
    /// their counter is missing (a database from before the counters); the others are a
    /// lookup of the last key.
    fn largest_stored(&self, kind: IdKind, counter_present: bool) -> Result<u64, StoreError> {
        let t = &self.trees;
        let last_key = |tree: &sled::Tree| -> Result<u64, StoreError> {
            Ok(tree.last()?.map_or(0, |(k, _)| id_at_end(&k)))
        };
        match kind {
            IdKind::Store => last_key(&t.stores),
            IdKind::Cert => last_key(&t.certs),
            IdKind::Template => last_key(&t.templates),
            IdKind::Audit | IdKind::Internal if counter_present => Ok(0),
            // Before the counters, internal ids came from sled's generator, which is past every
            // id it handed out (it jumps ahead on reopen): continue from there.
            IdKind::Internal => Ok(self.db.generate_id()?),
            IdKind::Audit => {
                let mut max = 0;
                for k in t.audit.iter().keys() {
                    max = max.max(id_at_end(&k?));
                }
                Ok(max)
            }
        }
    }

    /// Raises each counter to the largest stored id of its kind (see the module's text).
    pub(super) fn init_id_counters(&self) -> Result<(), StoreError> {
        let mut changed = false;
        for kind in IdKind::ALL {
            let present = self.trees.ids.get(kind.key())?.is_some();
            let counter = self.last_id_of(kind)?;
            let stored = self.largest_stored(kind, present)?;
            if !present || stored > counter {
                let start = counter.max(stored);
                self.trees.ids.insert(kind.key(), &start.to_be_bytes())?;
                changed = true;
            }
        }
        if changed {
            self.durable()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_counts_from_one_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut seen = Vec::new();
        for kind in [
            IdKind::Store,
            IdKind::Cert,
            IdKind::Cert,
            IdKind::Audit,
            IdKind::Store,
        ] {
            seen.push(db.next_id_of(kind).unwrap());
        }
        // Internal records count on their own and do not disturb the dense kinds.
        assert_eq!(db.next_id().unwrap(), 1);
        seen.push(db.next_id_of(IdKind::Template).unwrap());
        seen.push(db.next_id_of(IdKind::Cert).unwrap());
        assert_eq!(seen, [1, 1, 2, 1, 2, 1, 3]);
    }

    #[test]
    fn an_id_given_back_is_drawn_again_unless_another_was_drawn_since() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let a = db.next_id_of(IdKind::Store).unwrap();
        db.give_back_id(IdKind::Store, a).unwrap();
        assert_eq!(db.next_id_of(IdKind::Store).unwrap(), a);
        let b = db.next_id_of(IdKind::Store).unwrap();
        let c = db.next_id_of(IdKind::Store).unwrap();
        db.give_back_id(IdKind::Store, b).unwrap();
        assert_eq!(db.next_id_of(IdKind::Store).unwrap(), c + 1);
    }

    #[test]
    fn counters_continue_after_reopen_without_a_jump() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..3u64 {
            let db = Db::open(dir.path()).unwrap();
            assert_eq!(db.next_id_of(IdKind::Cert).unwrap(), 2 * round + 1);
            assert_eq!(db.next_id_of(IdKind::Cert).unwrap(), 2 * round + 2);
            db.durable().unwrap();
        }
    }

    #[test]
    fn concurrent_draws_are_distinct_and_dense() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ids = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let id = db.next_id_of(IdKind::Audit).unwrap();
                        ids.lock().unwrap().push(id);
                    }
                });
            }
        });
        let mut ids = ids.into_inner().unwrap();
        ids.sort_unstable();
        assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn a_database_from_before_the_counters_keeps_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            // What an older pcad left: records numbered by sled's generator, no counters.
            db.trees
                .stores
                .insert(4_000_002u64.to_be_bytes(), b"{}".to_vec())
                .unwrap();
            db.trees
                .certs
                .insert(7u64.to_be_bytes(), b"{}".to_vec())
                .unwrap();
            db.trees
                .certs
                .insert(12u64.to_be_bytes(), b"{}".to_vec())
                .unwrap();
            let mut audit = b"app\0".to_vec();
            audit.extend_from_slice(&99u64.to_be_bytes());
            db.trees.audit.insert(audit, b"{}".to_vec()).unwrap();
            db.trees.ids.clear().unwrap();
            db.durable().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.next_id_of(IdKind::Store).unwrap(), 4_000_003);
        assert_eq!(db.next_id_of(IdKind::Cert).unwrap(), 13);
        assert_eq!(db.next_id_of(IdKind::Template).unwrap(), 1);
        assert_eq!(db.next_id_of(IdKind::Audit).unwrap(), 100);
    }

    #[test]
    fn a_counter_behind_its_records_is_raised_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.next_id_of(IdKind::Template).unwrap();
            db.trees
                .templates
                .insert(5u64.to_be_bytes(), b"{}".to_vec())
                .unwrap();
            db.durable().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.next_id_of(IdKind::Template).unwrap(), 6);
    }

    #[test]
    fn a_corrupt_counter_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.trees.ids.insert(b"cert", b"xyz".to_vec()).unwrap();
        assert!(matches!(
            db.next_id_of(IdKind::Cert),
            Err(StoreError::Corrupt(..))
        ));
    }
}
