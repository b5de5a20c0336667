//! Checks on the `from` and `to` of a message.
//!
//! Two levels: the shape (`to` is digits with an optional `+`, `from` is a number or an
//! alphanumeric sender), which the API checks and answers `400` for, and whether `to` is a
//! number that exists, which the processor asks libphonenumber's metadata (the `phonenumber`
//! crate) and answers with `errored` / `invalid_phone_number`.

use crate::sms::segments;

/// The longest number E.164 allows.
const MAX_DIGITS: usize = 15;
/// The longest alphanumeric sender SMPP and the handsets accept.
const MAX_ALPHA: usize = 11;

/// Whether `to` has the shape of a recipient: digits with an optional leading `+`.
pub fn is_recipient_shape(to: &str) -> bool {
    let digits = to.strip_prefix('+').unwrap_or(to);
    is_digits(digits)
}

/// Whether `from` has the shape of a sender: a number, or 1 to 11 GSM-7 characters.
pub fn is_sender_shape(from: &str) -> bool {
    let digits = from.strip_prefix('+').unwrap_or(from);
    if is_digits(digits) {
        return true;
    }
    let len = from.chars().count();
    (1..=MAX_ALPHA).contains(&len) && segments::is_gsm7(from) && from.trim() == from
}

/// The kind of sender, which decides the SMPP source address type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    /// Letters in it: sent as an alphanumeric address.
    Alphanumeric,
    /// A few digits: a national short code.
    ShortCode,
    /// A full number in international format.
    International,
}

/// Classifies a `from` that passed [`is_sender_shape`].
pub fn sender_kind(from: &str) -> SenderKind {
    let digits = from.strip_prefix('+').unwrap_or(from);
    if !is_digits(digits) {
        SenderKind::Alphanumeric
    } else if digits.len() <= 8 && !from.starts_with('+') {
        SenderKind::ShortCode
    } else {
        SenderKind::International
    }
}

/// The recipient as E.164 digits without the `+`, the form stored and sent to the SMSC.
///
/// `to` is read as an international number whether or not it has the `+`, as in the
/// documented examples (`590690112233`).
pub fn normalize_recipient(to: &str) -> &str {
    to.strip_prefix('+').unwrap_or(to)
}

/// Whether libphonenumber considers `digits` (E.164 without `+`) a valid number.
///
/// Costs a few microseconds of regex matching; the processor calls it, not the API handler.
pub fn is_valid_recipient(digits: &str) -> bool {
    match phonenumber::parse(None, format!("+{digits}")) {
        Ok(number) => phonenumber::is_valid(&number),
        Err(_) => false,
    }
}

fn is_digits(s: &str) -> bool {
    (1..=MAX_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_numbers_are_valid() {
        assert!(is_valid_recipient("590690112233"));
        assert!(is_valid_recipient("33612345678"));
        assert!(!is_valid_recipient("12"));
        assert!(!is_valid_recipient("999999999999"));
    }

    #[test]
    fn shapes() {
        assert!(is_recipient_shape("+33612345678"));
        assert!(!is_recipient_shape("33-61"));
        assert!(!is_recipient_shape(""));
        assert!(is_sender_shape("36789"));
        assert!(is_sender_shape("Sofy Shop"));
        assert!(!is_sender_shape("TwelveLetter"));
        assert!(!is_sender_shape("日本"));
        assert_eq!(sender_kind("36789"), SenderKind::ShortCode);
        assert_eq!(sender_kind("+33612345678"), SenderKind::International);
        assert_eq!(sender_kind("Shop"), SenderKind::Alphanumeric);
    }
}
