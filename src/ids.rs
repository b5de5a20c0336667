//! Identifiers: opaque, unique and ordered by creation time (DESIGN section 1).
//!
//! An id is a short type prefix and 26 characters of Crockford base32 over 48 bits of
//! milliseconds and 80 random bits, so ids sort by time as strings, which the store relies
//! on for newest-first listings and for turning a time range into a key range.

use std::cell::RefCell;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const BODY_LEN: usize = 26;
/// Random bytes of an id.
const ID_RANDOM: usize = 10;
/// Random bytes drawn from the OS at once for ids: a busy daemon makes three ids per
/// message, and one `getrandom` call per id showed in its profile.
const BLOCK: usize = 100 * ID_RANDOM;

thread_local! {
    /// Each thread's block of random bytes for ids, and how much of it is used.
    static BLOCK_BYTES: RefCell<([u8; BLOCK], usize)> = const { RefCell::new(([0; BLOCK], BLOCK)) };
}

/// The kinds of id smswire hands out, each with its prefix.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A message: `sms_...`.
    Sms,
    /// A webhook: `wh_...`.
    Webhook,
    /// A delivery of one event to one webhook: `evt_...`.
    Delivery,
    /// An account: `acc_...`.
    Account,
    /// An API key: `key_...`.
    Key,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Sms => "sms_",
            Kind::Webhook => "wh_",
            Kind::Delivery => "evt_",
            Kind::Account => "acc_",
            Kind::Key => "key_",
        }
    }
}

/// A new id of `kind` for the time `now_ms`.
pub fn new(kind: Kind, now_ms: u64) -> String {
    encode(kind, now_ms, &id_random())
}

/// The random part of a new id, from the thread's block (secrets do not come from here:
/// they use [`fill_random`] directly).
fn id_random() -> [u8; ID_RANDOM] {
    BLOCK_BYTES.with_borrow_mut(|(bytes, used)| {
        if *used + ID_RANDOM > BLOCK {
            fill_random(bytes);
            *used = 0;
        }
        let mut out = [0; ID_RANDOM];
        out.copy_from_slice(&bytes[*used..*used + ID_RANDOM]);
        *used += ID_RANDOM;
        out
    })
}

/// The smallest id of `kind` that an id created at `ms` can have; used as a range bound.
pub fn lower_bound(kind: Kind, ms: u64) -> String {
    encode(kind, ms, &[0; ID_RANDOM])
}

/// Fills `buf` from the operating system's random source.
///
/// The OS source failing is not something smswire can work around; it is reported and the
/// process stops rather than hand out predictable secrets.
pub fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random source failed");
}

fn encode(kind: Kind, ms: u64, random: &[u8; ID_RANDOM]) -> String {
    let mut value: u128 = u128::from(ms & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }

    let mut out = String::with_capacity(kind.prefix().len() + BODY_LEN);
    out.push_str(kind.prefix());
    for i in (0..BODY_LEN).rev() {
        let index = ((value >> (5 * i)) & 0x1F) as usize;
        out.push(ALPHABET[index] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let a = new(Kind::Sms, 1_000);
        let b = new(Kind::Sms, 1_001);
        assert!(a < b);
        assert!(lower_bound(Kind::Sms, 1_001) <= b);
        assert!(lower_bound(Kind::Sms, 1_002) > b);
        assert_eq!(a.len(), 4 + BODY_LEN);
        assert_ne!(new(Kind::Sms, 5), new(Kind::Sms, 5));
    }

    #[test]
    fn ids_stay_distinct_across_random_blocks() {
        let ids: std::collections::HashSet<String> =
            (0..10 * BLOCK).map(|_| new(Kind::Delivery, 7)).collect();
        assert_eq!(ids.len(), 10 * BLOCK);
    }
}
