//! Everything sled: typed trees, id counters, indexes, and writes that are durable before the
//! API answers.

mod acme;
mod audit;
mod durable;
mod ids;
mod ncp;
mod ocsp;
mod records;
mod snapshot;
mod trees;

pub use acme::{
    AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeIdentifier, AcmeOrder, AcmeToken, NONCE_TTL_SECS,
};
pub use audit::{AuditEvent, AuditFilter, PendingDestroy};
pub use ids::IdKind;
pub use ncp::{NcpCaRecord, NcpPending};
pub use ocsp::{OcspRow, OcspRowRef, OcspSetChunks};
pub use records::{
    CertRecord, CertType, CrlRecord, IssuerKey, Revocation, SerialRecord, StoreRecord,
    TemplateRecord,
};
pub use snapshot::{read_snapshot, restore_snapshot, socket_path, SnapshotInfo};
pub use trees::{CertFilter, Page, RevokedRow};

use std::path::Path;

use durable::Syncer;

/// sled's page cache (its default is 1 GiB): scans of a million records (CRL builds, OCSP
/// refreshes) would otherwise keep them all resident.
const CACHE_BYTES: u64 = 128 << 20;

/// The schema this binary reads and writes. A newer database refuses to open.
///
/// 2: `serials` rows are binary (`SerialRecord::to_row`); schema 1's JSON rows still read.
pub const SCHEMA_VERSION: u32 = 2;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("database file sync: {0}")]
    Io(#[from] std::io::Error),
    #[error("database record {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("database schema version {found} is newer than this pcad understands ({supported}); upgrade pcad")]
    NewerSchema { found: u32, supported: u32 },
    /// A uniqueness rule of the data model was broken (duplicate name, reused serial).
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
}

/// The database: one sled instance with its trees.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    trees: trees::Trees,
    acme: acme::AcmeTrees,
    syncer: std::sync::Arc<Syncer>,
    /// Write methods against snapshots (`snapshot.rs`).
    gate: std::sync::Arc<snapshot::Gate>,
}

impl Db {
    /// Opens (or creates) the database in `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(path)?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let trees = trees::Trees::open(&db)?;
        let acme = acme::AcmeTrees::open(&db)?;
        let syncer = std::sync::Arc::new(Syncer::new(db.clone(), path));
        let this = Db {
            db,
            trees,
            acme,
            syncer,
            gate: Default::default(),
        };
        this.check_schema()?;
        this.init_id_counters()?;
        Ok(this)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.trees.meta.get(b"schema_version")? {
            None => {
                self.trees
                    .meta
                    .insert(b"schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                self.durable()
            }
            Some(v) => {
                let found = u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt("meta/schema_version".into(), "bad length".into())
                })?);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < SCHEMA_VERSION {
                    // Every older row still reads; new rows are written in the new form, which
                    // an older pcad cannot read: from now on it must refuse this database.
                    self.trees
                        .meta
                        .insert(b"schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                    self.durable()?;
                }
                Ok(())
            }
        }
    }

    /// Makes every write that happened before this call durable (sled flush plus fsync of its
    /// files). Concurrent callers share one sync (group commit). Blocks.
    pub fn durable(&self) -> Result<(), StoreError> {
        self.syncer.sync()
    }

    /// A fresh id for internal records (OCSP sets and the like): positive, never repeated, even
    /// across crashes; a sequence of its own. Ids users see come from [`Db::next_id_of`], one
    /// dense sequence per kind.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.next_id_of(IdKind::Internal)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain records (no maps with non-string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::profile::TemplateSpec;

    fn store(id: u64, name: &str) -> StoreRecord {
        StoreRecord {
            id,
            appkey: "k".into(),
            name: name.into(),
            description: None,
            crl_active: false,
            crl_refresh_period: 7,
            ocsp_active: false,
            ocsp_refresh_period: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn durable_writes_survive_reopen_and_names_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let db = Db::open(dir.path()).unwrap();
            let id = db.next_id().unwrap();
            db.insert_store(&store(id, "a")).unwrap();
            assert!(matches!(
                db.insert_store(&store(id + 1, "a")),
                Err(StoreError::Conflict(_))
            ));
            // Concurrent writers share syncs and all return.
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| db.durable().unwrap());
                }
            });
            id
        };
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.store("k", id).unwrap().unwrap().name, "a");
        assert!(
            db.store("other", id).unwrap().is_none(),
            "another appkey sees nothing"
        );
        assert!(db.next_id().unwrap() > id, "ids never repeat across reopen");
    }

    fn leaf(id: u64, store_id: u64, serial: &[u8]) -> (CertRecord, SerialRecord) {
        let rec = CertRecord {
            name: format!("leaf {id}"),
            parent_cert_id: Some(1),
            serial: serial.to_vec(),
            common_name: Some(format!("leaf {id}")),
            ..CertRecord::sample(id, store_id, CertType::Leaf)
        };
        let serial = SerialRecord {
            store_id,
            issuer_id: 1,
            serial: serial.to_vec(),
            cert_id: Some(id),
            not_after: 1,
            revocation: None,
        };
        (rec, serial)
    }

    #[test]
    fn a_revocation_and_its_ocsp_tombstone_reach_the_disk_together() {
        let dir = tempfile::tempdir().unwrap();
        let tombstone = |serial: &[u8], t: i64| OcspRow {
            issuer_id: 1,
            serial: serial.to_vec(),
            cert_id_der: [&[0x30, 0x09][..], serial].concat(),
            this_update: t,
            next_update: t,
            der: Vec::new(),
        };
        let sid = {
            let db = Db::open(dir.path()).unwrap();
            let st = store(db.next_id().unwrap(), "s");
            db.insert_store(&st).unwrap();
            let (a, sa) = leaf(10, st.id, &[4, 5, 6]);
            db.insert_cert(Some(&a), &sa).unwrap();
            // The `good` persisted when it was issued.
            let good = OcspRow {
                der: vec![0x30, 0x03, 1, 2, 3],
                next_update: 900,
                ..tombstone(&[4, 5, 6], 100)
            };
            db.put_ocsp(st.id, &good).unwrap();
            let revocation = Revocation {
                at: 200,
                reason: crate::pki::crl::RevocationReason::KeyCompromise,
            };
            let row = tombstone(&[4, 5, 6], 200);
            db.revoke_with_tombstone(&a, revocation, Some((st.id, &row)))
                .unwrap();
            // A second revoke is refused and writes no tombstone of its own.
            assert!(matches!(
                db.revoke_with_tombstone(
                    &a,
                    revocation,
                    Some((st.id, &tombstone(&[4, 5, 6], 300)))
                ),
                Err(StoreError::Conflict(_))
            ));
            db.durable().unwrap();
            st.id
        };
        // What a restart after a crash right past the revoke's fsync finds: the revocation
        // and, for the same CertID, the tombstone in place of the `good`.
        let db = Db::open(dir.path()).unwrap();
        assert!(db.cert("k", sid, 10).unwrap().unwrap().revocation.is_some());
        assert!(db
            .serial(1, &[4, 5, 6])
            .unwrap()
            .unwrap()
            .revocation
            .is_some());
        let rows: Vec<OcspRow> = db.ocsp_of_store(sid).map(Result::unwrap).collect();
        assert_eq!(rows, [tombstone(&[4, 5, 6], 200)]);
    }

    #[test]
    fn a_repeated_serial_writes_nothing_and_half_written_certificates_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let st = store(db.next_id().unwrap(), "s");
        db.insert_store(&st).unwrap();
        let listed = |db: &Db| {
            db.list_certs(st.id, CertFilter::All, None, 0, 100)
                .unwrap()
                .items
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        let (a, sa) = leaf(10, st.id, &[1, 2, 3]);
        db.insert_cert(Some(&a), &sa).unwrap();
        assert_eq!(listed(&db), [10]);

        // The same serial of the same issuer, under another certificate id: refused, and
        // neither its record nor an index entry appears.
        let (b, sb) = leaf(11, st.id, &[1, 2, 3]);
        assert!(matches!(
            db.insert_cert(Some(&b), &sb),
            Err(StoreError::Conflict(_))
        ));
        assert!(db.cert("k", st.id, 11).unwrap().is_none());
        assert_eq!(db.serial(1, &[1, 2, 3]).unwrap().unwrap().cert_id, Some(10));
        assert_eq!(listed(&db), [10]);

        // What a crash between the writes can leave: a serial, and an index entry without its
        // record. Neither is listed; deleting the store clears the index.
        let (c, sc) = leaf(12, st.id, &[4, 5, 6]);
        db.insert_cert(None, &sc).unwrap();
        let store_certs = db.db.open_tree("store_certs").unwrap();
        let mut k = st.id.to_be_bytes().to_vec();
        k.extend_from_slice(&c.id.to_be_bytes());
        store_certs.insert(&k, b"L").unwrap();
        assert_eq!(listed(&db), [10]);
        assert!(db.issuers_of_store(st.id).unwrap().is_empty());
        assert!(db.cert("k", st.id, 12).unwrap().is_none());
        db.delete_store(&st).unwrap();
        assert_eq!(store_certs.scan_prefix(st.id.to_be_bytes()).count(), 0);
        assert!(db.cert("k", st.id, 10).unwrap().is_none());
    }

    #[test]
    fn templates_decode_as_with_a_flattened_spec() {
        use crate::pki::cert::{ExtendedKeyUsage, KeyUsage, OidValue, StringKind, SubjectInfo};
        #[derive(serde::Deserialize)]
        struct Flattened {
            id: u64,
            appkey: String,
            store_id: u64,
            #[serde(flatten)]
            spec: TemplateSpec,
            created_at: i64,
            updated_at: i64,
        }
        let other = OidValue {
            oid: "1.3.6.1.4.1.311.20.2.3".parse().unwrap(),
            kind: StringKind::Utf8,
            value: "*@example.com".into(),
        };
        let rec = TemplateRecord {
            id: 7,
            appkey: "k".into(),
            store_id: 3,
            spec: TemplateSpec {
                name: "t".into(),
                description: Some("d".into()),
                parent_cert_id: 2,
                max_ttl: Some(3600),
                max_specific_date: None,
                back_date_validation: 30,
                allow_ip_sans: true,
                url_sans_whitelist: vec!["https://*".into()],
                other_sans_whitelist: vec![other.clone()],
                store_in_server: true,
                basic_constraints_valid_for_non_ca: true,
                use_csr_common_name: true,
                use_csr_sans: false,
                key_algorithm: crate::pki::KeyAlgorithm::P384,
                key_algorithm_name: "ECDSA".into(),
                signature_bits: 384,
                key_usage: vec![KeyUsage::DigitalSignature],
                extended_key_usage: vec![ExtendedKeyUsage::ServerAuth],
                extended_key_usage_oids: vec!["1.2.3.4".into()],
                policies: vec!["2.23.140.1.2.1".into()],
                subject_info: SubjectInfo {
                    organization: Some("O".into()),
                    ..Default::default()
                },
                use_csr_other_fields: false,
                other_fields: vec![other],
            },
            created_at: 1,
            updated_at: 2,
        };
        let stored = encode(&rec);
        // Optional fields left out of the JSON (older records) read as absent both ways.
        let mut sparse: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        sparse.as_object_mut().unwrap().remove("description");
        sparse.as_object_mut().unwrap().remove("max_ttl");
        sparse
            .as_object_mut()
            .unwrap()
            .insert("unknown".into(), 1.into());
        let sparse = serde_json::to_vec(&sparse).unwrap();
        for bytes in [stored, sparse] {
            let fast: TemplateRecord = decode("template", &bytes).unwrap();
            let f: Flattened = serde_json::from_slice(&bytes).unwrap();
            let slow = TemplateRecord {
                id: f.id,
                appkey: f.appkey,
                store_id: f.store_id,
                spec: f.spec,
                created_at: f.created_at,
                updated_at: f.updated_at,
            };
            assert_eq!(encode(&fast), encode(&slow));
        }
        assert!(decode::<TemplateRecord>("template", b"{\"id\":1}").is_err());
    }

    #[test]
    fn a_newer_schema_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.trees
                .meta
                .insert(b"schema_version", &(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            db.durable().unwrap();
        }
        match Db::open(dir.path()) {
            Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a newer database must not open"),
        }
    }

    #[test]
    fn a_schema_1_database_is_upgraded_and_its_json_serials_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let serial = SerialRecord {
            store_id: 3,
            issuer_id: 4,
            serial: vec![0x42; 16],
            cert_id: None,
            not_after: 2_000_000_000,
            revocation: None,
        };
        {
            let db = Db::open(dir.path()).unwrap();
            db.trees
                .meta
                .insert(b"schema_version", &1u32.to_be_bytes())
                .unwrap();
            // A schema 1 serial row: JSON.
            let mut key = 4u64.to_be_bytes().to_vec();
            key.extend_from_slice(&serial.serial);
            db.trees.serials.insert(key, encode(&serial)).unwrap();
            db.durable().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let version = db.trees.meta.get(b"schema_version").unwrap().unwrap();
        assert_eq!(version.as_ref(), SCHEMA_VERSION.to_be_bytes());
        let back = db.serial(4, &serial.serial).unwrap().unwrap();
        assert_eq!(format!("{back:?}"), format!("{serial:?}"));
        assert_eq!(db.serials_of_issuer(4).count(), 1);
    }
}
