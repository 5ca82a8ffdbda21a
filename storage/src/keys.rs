//! Every RocksDB key Amber writes: column family names, key prefixes and their byte layouts.
//!
//! `docs/format/index.md` and `docs/format/blocks.md` document each layout; keep them in step.
//! Integers in keys are big-endian so that byte order is numeric order; timestamps and window
//! starts are `i64` with the sign bit flipped for the same reason. Prefix bytes are never reused.

use crate::SeriesId;
use crate::labels::Labels;
use crate::tenant::TenantId;

/// Column family of the series index, postings, per-window activity, metadata and options.
pub const CF_INDEX: &str = "index";
/// Column family of sealed float-sample blocks.
pub const CF_BLOCKS: &str = "blocks";
/// Column family of sealed exemplar blocks.
pub const CF_EXEMPLAR_BLOCKS: &str = "exemplar_blocks";
/// Column family of sealed native-histogram blocks.
pub const CF_HISTOGRAM_BLOCKS: &str = "histogram_blocks";
/// Column family mapping trace ids to the exemplars that carry them.
pub const CF_TRACE_INDEX: &str = "trace_index";

/// Every column family. Names are never reused: `head` and `exemplar_head` held the head before
/// format version 2.
pub const ALL_CFS: [&str; 5] = [CF_INDEX, CF_BLOCKS, CF_EXEMPLAR_BLOCKS, CF_TRACE_INDEX, CF_HISTOGRAM_BLOCKS];

/// `index` key prefixes. Numbers are never reused.
pub mod prefix {
    /// `0x01 tenant labels` → `series_id`.
    pub const SERIES_BY_LABELS: u8 = 0x01;
    /// `0x02 series_id` → `tenant labels`.
    pub const LABELS_BY_SERIES: u8 = 0x02;
    /// `0x03 tenant name 0x00 value` → roaring postings (merged by union).
    pub const POSTINGS: u8 = 0x03;
    /// `0x04` → the next series id to hand out.
    pub const NEXT_SERIES_ID: u8 = 0x04;
    /// `0x05 tenant metric 0x00 metadata` → empty.
    pub const METADATA: u8 = 0x05;
    /// `0x06 name` → tenant id.
    pub const TENANT: u8 = 0x06;
    /// `0x07 window tenant` → roaring set of series with data in the window (merged by union).
    pub const ACTIVITY: u8 = 0x07;
    /// `0x08` → the store's fixed options (format version, block duration).
    pub const OPTIONS: u8 = 0x08;
    /// `0x09 window` → generation (u64): the window's sealed blocks wait for upload.
    pub const PENDING_UPLOAD: u8 = 0x09;
    /// `0x0A window` → (empty): every tenant's block file of the window is in the bucket.
    pub const UPLOADED: u8 = 0x0A;
    /// `0x0B` → window start `<i64>`: local blocks of earlier windows were deleted; they are in
    /// the bucket only.
    pub const LOCAL_HORIZON: u8 = 0x0B;
}

/// `prefix window`: the key of a per-window mark (pending upload, uploaded).
pub fn window_mark(prefix: u8, window: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&ordered_i64(window));
    k
}

/// Flips the sign bit so big-endian bytes of an `i64` sort numerically.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn read_ordered_i64(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

pub fn read_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

pub fn series_by_labels(tenant: TenantId, labels: &Labels) -> Vec<u8> {
    let mut k = Vec::new();
    series_by_labels_into(&mut k, tenant, labels);
    k
}

/// [`series_by_labels`] written into `k` (cleared first): the write path looks every series up
/// with one buffer.
pub fn series_by_labels_into(k: &mut Vec<u8>, tenant: TenantId, labels: &Labels) {
    k.clear();
    k.push(prefix::SERIES_BY_LABELS);
    k.extend_from_slice(&tenant.0.to_be_bytes());
    labels.encode_into(k);
}

/// The series cache's key for a `SERIES_BY_LABELS` key: its 128-bit xxh3 digest. The label
/// bytes themselves were most of an entry (keyed by them, RSS was 1,818 bytes a series at a
/// million series; 1,712 by digest). Two label sets share a digest with a probability of about
/// n²/2¹²⁹ for n series (10⁻²⁷ at a million), as for the API's labels cache, far below the rate
/// of undetected memory errors that would corrupt a byte-keyed cache too.
pub fn series_cache_key(series_by_labels: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(series_by_labels)
}

pub fn labels_by_series(series: SeriesId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix::LABELS_BY_SERIES;
    k[1..].copy_from_slice(&series.to_be_bytes());
    k
}

/// The postings key of `name=value`. The empty name holds every series of the tenant.
pub fn postings(tenant: TenantId, name: &str, value: &str) -> Vec<u8> {
    let mut k = postings_name_prefix(tenant, name);
    k.extend_from_slice(value.as_bytes());
    k
}

/// `0x03 tenant name 0x00`: the prefix of every postings key of label `name`.
pub fn postings_name_prefix(tenant: TenantId, name: &str) -> Vec<u8> {
    let mut k = postings_prefix(tenant);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub fn postings_prefix(tenant: TenantId) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + 32);
    k.push(prefix::POSTINGS);
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k
}

/// Splits the `name 0x00 value` tail of a postings key.
pub fn split_postings(key: &[u8], tenant_prefix_len: usize) -> Option<(&[u8], &[u8])> {
    let tail = &key[tenant_prefix_len..];
    let sep = tail.iter().position(|&b| b == 0)?;
    Some((&tail[..sep], &tail[sep + 1..]))
}

pub fn metadata_prefix(tenant: TenantId) -> Vec<u8> {
    let mut k = vec![prefix::METADATA];
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k
}

pub fn tenant(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(prefix::TENANT);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn activity(window: i64, tenant: TenantId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = prefix::ACTIVITY;
    k[1..9].copy_from_slice(&ordered_i64(window));
    k[9..].copy_from_slice(&tenant.0.to_be_bytes());
    k
}

/// `window series`: the key of a sealed block in `blocks` or `exemplar_blocks`.
pub fn block(window: i64, series: SeriesId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ordered_i64(window));
    k[8..].copy_from_slice(&series.to_be_bytes());
    k
}

/// Trace ids longer than this (in stored bytes) are not indexed; exemplar label sets are at most
/// 128 characters, so only exotic ids are affected.
pub const MAX_TRACE_ID_BYTES: usize = 127;

/// `window tenant trace_header trace`: the prefix of every trace-index key of one trace in a
/// window. `trace_header` is the stored length shifted left by one, with the low bit set when
/// the id was lower-case hex stored as the bytes it spells (half the size).
/// `None` for ids too long to index.
pub fn trace_prefix(window: i64, tenant: TenantId, trace_id: &str) -> Option<Vec<u8>> {
    let packed = crate::chunkenc::hex::pack(trace_id);
    let (bytes, hex_flag) = match &packed {
        Some(b) => (b.as_slice(), 1u8),
        None => (trace_id.as_bytes(), 0u8),
    };
    if bytes.len() > MAX_TRACE_ID_BYTES {
        return None;
    }
    let mut k = Vec::with_capacity(14 + bytes.len() + 16);
    k.extend_from_slice(&ordered_i64(window));
    k.extend_from_slice(&tenant.0.to_be_bytes());
    k.push(((bytes.len() as u8) << 1) | hex_flag);
    k.extend_from_slice(bytes);
    Some(k)
}

/// `window tenant trace_header trace series ts` → empty; `None` for ids too long to index.
pub fn trace(window: i64, tenant: TenantId, trace_id: &str, series: SeriesId, ts: i64) -> Option<Vec<u8>> {
    let mut k = trace_prefix(window, tenant, trace_id)?;
    k.extend_from_slice(&series.to_be_bytes());
    k.extend_from_slice(&ordered_i64(ts));
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_i64_sorts_numerically() {
        let mut vals = [i64::MIN, -1_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let mut keys: Vec<[u8; 8]> = vals.iter().map(|&v| ordered_i64(v)).collect();
        keys.sort();
        vals.sort();
        assert_eq!(keys.iter().map(|k| read_ordered_i64(k)).collect::<Vec<_>>(), vals);
    }

    #[test]
    fn postings_keys_group_by_name_in_name_order() {
        let t = TenantId::DEFAULT;
        let mut keys = [postings(t, "ab", "1"), postings(t, "a", "2"), postings(t, "a", "1"), postings(t, "", "")];
        keys.sort();
        let names: Vec<_> = keys.iter().map(|k| split_postings(k, 5).unwrap()).collect();
        assert_eq!(names, [(&b""[..], &b""[..]), (b"a", b"1"), (b"a", b"2"), (b"ab", b"1")]);
    }
}
