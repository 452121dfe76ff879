//! Persisted OCSP responses, so that a restarted daemon answers at once. Nothing here is made
//! durable: a lost response is signed again.
//!
//! Two forms, because they are written at very different rates:
//! - a refresh signs every certificate of a store and writes its output as one *set*: the
//!   responses packed into values of about `SET_CHUNK` bytes, so a million responses cost a few
//!   hundred sled writes, not a million;
//! - re-signing one certificate (issuance, revoke) writes a *row* of its own, keyed by CertID.
//!
//! Loading takes, per CertID, the newest response of the sets (older sets first) and the rows;
//! a row wins a tie. A revoke first writes a *tombstone* row (no DER): no persisted response
//! older than it may be served after a restart, whether or not the revoked one got signed.

use super::records::two;
use super::{Db, StoreError};

/// A persisted response: the CertID it answers (SHA-1 canonical form), its times, its bytes.
/// An empty `der` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRow {
    pub issuer_id: u64,
    pub serial: Vec<u8>,
    pub cert_id_der: Vec<u8>,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

impl OcspRow {
    /// The row, borrowed, as a set takes it.
    pub fn as_row_ref(&self) -> OcspRowRef<'_> {
        OcspRowRef {
            issuer_id: self.issuer_id,
            serial: &self.serial,
            cert_id_der: &self.cert_id_der,
            this_update: self.this_update,
            next_update: self.next_update,
            der: &self.der,
        }
    }
}

/// A response as a refresh hands it over for a set (borrowed: the cache keeps the bytes).
#[derive(Clone, Copy, Debug)]
pub struct OcspRowRef<'a> {
    pub issuer_id: u64,
    pub serial: &'a [u8],
    pub cert_id_der: &'a [u8],
    pub this_update: i64,
    pub next_update: i64,
    pub der: &'a [u8],
}

/// A set's values are cut at about this many bytes.
const SET_CHUNK: usize = 64 * 1024;

/// Responses packed for one set, built while signing (off the store) and written at once.
#[derive(Default)]
pub struct OcspSetChunks {
    chunks: Vec<Vec<u8>>,
}

impl OcspSetChunks {
    /// Appends one response.
    pub fn push(&mut self, r: OcspRowRef<'_>) {
        let serial = &r.serial[..r.serial.len().min(255)];
        let cid = &r.cert_id_der[..r.cert_id_der.len().min(usize::from(u16::MAX))];
        let len = 8 + 8 + 8 + 1 + serial.len() + 2 + cid.len() + 4 + r.der.len();
        if self
            .chunks
            .last()
            .is_none_or(|c| !c.is_empty() && c.len() + len > SET_CHUNK)
        {
            self.chunks.push(Vec::with_capacity(SET_CHUNK.max(len)));
        }
        let Some(c) = self.chunks.last_mut() else {
            return;
        };
        c.extend_from_slice(&r.issuer_id.to_be_bytes());
        c.extend_from_slice(&r.this_update.to_be_bytes());
        c.extend_from_slice(&r.next_update.to_be_bytes());
        c.push(serial.len() as u8);
        c.extend_from_slice(serial);
        c.extend_from_slice(&(cid.len() as u16).to_be_bytes());
        c.extend_from_slice(cid);
        c.extend_from_slice(&(r.der.len() as u32).to_be_bytes());
        c.extend_from_slice(r.der);
    }

    /// Takes the chunks of `other` too.
    pub fn append(&mut self, other: OcspSetChunks) {
        self.chunks.extend(other.chunks);
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// The rows packed in one set value.
fn unpack(mut v: &[u8]) -> Result<Vec<OcspRow>, StoreError> {
    let bad = || StoreError::Corrupt("ocsp_sets".into(), "bad chunk".into());
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if v.len() < n {
            return Err(bad());
        }
        let (head, rest) = v.split_at(n);
        v = rest;
        Ok(head)
    };
    let mut rows = Vec::new();
    let num = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    loop {
        let Ok(fixed) = take(25) else { break };
        let (issuer_id, this_update, next_update) = (
            num(&fixed[..8]),
            num(&fixed[8..16]) as i64,
            num(&fixed[16..24]) as i64,
        );
        let serial = take(usize::from(fixed[24]))?.to_vec();
        let cid_len = take(2)?;
        let cid = take(usize::from(u16::from_be_bytes([cid_len[0], cid_len[1]])))?.to_vec();
        let der_len = take(4)?;
        let der_len = u32::from_be_bytes(der_len.try_into().unwrap_or([0; 4])) as usize;
        let der = take(der_len)?.to_vec();
        rows.push(OcspRow {
            issuer_id,
            serial,
            cert_id_der: cid,
            this_update,
            next_update,
            der,
        });
    }
    if !v.is_empty() {
        return Err(bad());
    }
    Ok(rows)
}

fn row_key(store_id: u64, issuer_id: u64, cert_id_der: &[u8]) -> Vec<u8> {
    let mut k = two(store_id, issuer_id).to_vec();
    k.extend_from_slice(cert_id_der);
    k
}

/// The key and value of a row in the `ocsp` tree.
pub(super) fn row_entry(store_id: u64, r: &OcspRow) -> (Vec<u8>, Vec<u8>) {
    let mut v = Vec::with_capacity(17 + r.serial.len() + r.der.len());
    v.extend_from_slice(&r.this_update.to_be_bytes());
    v.extend_from_slice(&r.next_update.to_be_bytes());
    v.push(r.serial.len().min(255) as u8);
    v.extend_from_slice(&r.serial[..r.serial.len().min(255)]);
    v.extend_from_slice(&r.der);
    (row_key(store_id, r.issuer_id, &r.cert_id_der), v)
}

impl Db {
    /// Stores the responses of one refresh of a store as the set `set_id` (increasing with
    /// time). When `replaces` is set (the refresh covered every certificate), older sets of the
    /// store and rows older than `this_update` go: the set says everything they said.
    pub fn put_ocsp_set(
        &self,
        store_id: u64,
        set_id: u64,
        chunks: OcspSetChunks,
        this_update: i64,
        replaces: bool,
    ) -> Result<(), StoreError> {
        let _writing = self.writing();
        let sets = &self.trees.ocsp_sets;
        for (i, chunk) in chunks.chunks.into_iter().enumerate() {
            let mut k = two(store_id, set_id).to_vec();
            k.extend_from_slice(&(i as u32).to_be_bytes());
            sets.insert(k, chunk)?;
        }
        if !replaces {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in sets.range(two(store_id, 0)..two(store_id, set_id)).keys() {
            batch.remove(k?);
        }
        sets.apply_batch(batch)?;
        let mut batch = sled::Batch::default();
        for kv in self.trees.ocsp.scan_prefix(store_id.to_be_bytes()) {
            let (k, v) = kv?;
            let written = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes);
            if written.is_none_or(|t| t < this_update) {
                batch.remove(k);
            }
        }
        self.trees.ocsp.apply_batch(batch)?;
        Ok(())
    }

    /// Stores one re-signed response (replacing an earlier row of the same CertID); an empty
    /// `der` is a tombstone.
    pub fn put_ocsp(&self, store_id: u64, r: &OcspRow) -> Result<(), StoreError> {
        let _writing = self.writing();
        let (k, v) = row_entry(store_id, r);
        self.trees.ocsp.insert(k, v)?;
        Ok(())
    }

    /// Every persisted response of a store in load order: the sets, oldest first, then the
    /// rows (tombstones included).
    pub fn ocsp_of_store(
        &self,
        store_id: u64,
    ) -> impl Iterator<Item = Result<OcspRow, StoreError>> {
        let sets = self
            .trees
            .ocsp_sets
            .scan_prefix(store_id.to_be_bytes())
            .values()
            .flat_map(
                |v| match v.map_err(StoreError::from).and_then(|v| unpack(&v)) {
                    Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                },
            );
        let rows = self
            .trees
            .ocsp
            .scan_prefix(store_id.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                let serial_end = 17 + usize::from(*v.get(16).unwrap_or(&0));
                if k.len() < 16 || v.len() < serial_end {
                    return Err(StoreError::Corrupt("ocsp".into(), "bad row".into()));
                }
                let num = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                Ok(OcspRow {
                    issuer_id: u64::from_be_bytes(k[8..16].try_into().unwrap_or([0; 8])),
                    serial: v[17..serial_end].to_vec(),
                    cert_id_der: k[16..].to_vec(),
                    this_update: num(&v[..8]),
                    next_update: num(&v[8..16]),
                    der: v[serial_end..].to_vec(),
                })
            });
        sets.chain(rows)
    }

    /// Forgets the persisted responses of a store (OCSP turned off, store deleted).
    pub fn clear_ocsp(&self, store_id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        for tree in [&self.trees.ocsp, &self.trees.ocsp_sets] {
            let mut batch = sled::Batch::default();
            for k in tree.scan_prefix(store_id.to_be_bytes()).keys() {
                batch.remove(k?);
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(issuer_id: u64, n: u8, this_update: i64, der_len: usize) -> OcspRow {
        OcspRow {
            issuer_id,
            serial: vec![n, 1, 2],
            cert_id_der: vec![0x30, n, 7],
            this_update,
            next_update: this_update + 100,
            der: vec![n; der_len],
        }
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn sets_round_trip_across_chunks_then_rows_follow() {
        let (_dir, db) = db();
        let rows: Vec<OcspRow> = (0..200).map(|n| row(9, n, 1000, 900)).collect();
        let mut chunks = OcspSetChunks::default();
        rows.iter().for_each(|r| chunks.push(r.as_row_ref()));
        assert!(chunks.chunks.len() > 2, "200 × ~1 KB spans several chunks");
        db.put_ocsp_set(5, 1, chunks, 1000, true).unwrap();
        let tomb = OcspRow {
            der: Vec::new(),
            ..row(9, 3, 1001, 0)
        };
        db.put_ocsp(5, &tomb).unwrap();
        let back: Vec<OcspRow> = db.ocsp_of_store(5).map(Result::unwrap).collect();
        assert_eq!(back[..200], rows[..]);
        assert_eq!(back[200..], [tomb]);
        assert_eq!(db.ocsp_of_store(6).count(), 0, "other stores see nothing");
    }

    #[test]
    fn a_replacing_set_drops_older_sets_and_rows_but_not_newer_rows() {
        let (_dir, db) = db();
        let mut first = OcspSetChunks::default();
        first.push(row(9, 1, 1000, 10).as_row_ref());
        db.put_ocsp_set(5, 1, first, 1000, true).unwrap();
        db.put_ocsp(5, &row(9, 2, 1500, 10)).unwrap(); // before the next refresh
        db.put_ocsp(5, &row(9, 3, 2500, 10)).unwrap(); // a revoke during it
        let mut partial = OcspSetChunks::default();
        partial.push(row(9, 1, 2000, 20).as_row_ref());
        db.put_ocsp_set(5, 2, partial, 2000, false).unwrap();
        assert_eq!(
            db.ocsp_of_store(5).count(),
            4,
            "an incomplete set replaces nothing"
        );
        let mut full = OcspSetChunks::default();
        full.push(row(9, 1, 2000, 30).as_row_ref());
        db.put_ocsp_set(5, 3, full, 2000, true).unwrap();
        let back: Vec<OcspRow> = db.ocsp_of_store(5).map(Result::unwrap).collect();
        assert_eq!(back, [row(9, 1, 2000, 30), row(9, 3, 2500, 10)]);
        db.clear_ocsp(5).unwrap();
        assert_eq!(db.ocsp_of_store(5).count(), 0);
    }

    #[test]
    fn truncated_chunks_are_corrupt_not_a_panic() {
        let mut c = OcspSetChunks::default();
        c.push(row(9, 1, 1000, 50).as_row_ref());
        let v = &c.chunks[0];
        for cut in 1..v.len() {
            assert!(unpack(&v[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(unpack(v).unwrap().len(), 1);
    }
}
