//! Delivery receipts: reading a `deliver_sm` that reports the fate of a submitted segment.
//!
//! The `receipted_message_id` and `message_state` TLVs are used when present; otherwise the
//! receipt text of the SMPP 3.4 appendix (`id:... sub:... dlvrd:... submit date:... done
//! date:... stat:... err:... text:...`), read leniently: fields in any order, any case, with
//! `text:` missing. Message ids are compared in one canonical form, since some SMSCs answer
//! `submit_sm` in hex and write receipts in decimal.

use std::sync::LazyLock;

use regex::Regex;

use crate::config::IdFormat;

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// The message id as the SMSC wrote it.
    pub id: String,
    /// The state, in the receipt-text spelling: `DELIVRD`, `UNDELIV`, `ENROUTE`, ...
    pub state: String,
    /// Where the id came from, which decides its format.
    pub from_tlv: bool,
}

impl ParsedReceipt {
    /// Whether the state is final: anything but `ENROUTE` and `ACCEPTD`.
    pub fn is_final(&self) -> bool {
        !matches!(self.state.as_str(), "ENROUTE" | "ACCEPTD")
    }
}

/// The receipt-text name of a `message_state` TLV value.
pub fn state_name(message_state: u8) -> &'static str {
    match message_state {
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        _ => "UNKNOWN",
    }
}

/// Maps the spellings SMSCs use in receipt texts to the seven standard ones.
fn normalize_state(raw: &str) -> String {
    let upper = raw.to_ascii_uppercase();
    let name = match upper.as_str() {
        "DELIVRD" | "DELIVERED" | "DELIVER" => "DELIVRD",
        "UNDELIV" | "UNDELIVERABLE" | "UNDELIVERED" => "UNDELIV",
        "REJECTD" | "REJECTED" => "REJECTD",
        "ACCEPTD" | "ACCEPTED" => "ACCEPTD",
        "EXPIRED" => "EXPIRED",
        "DELETED" => "DELETED",
        "ENROUTE" => "ENROUTE",
        _ => "UNKNOWN",
    };
    name.to_string()
}

#[allow(clippy::expect_used)]
static ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|\s)id:\s*([^\s]+)").expect("valid regex"));
#[allow(clippy::expect_used)]
static STAT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|\s)stat:\s*([A-Za-z]+)").expect("valid regex"));

/// Reads a receipt from its TLVs (either may be missing) and its text.
pub fn parse(
    receipted_id: Option<&str>,
    message_state: Option<u8>,
    text: &[u8],
) -> Option<ParsedReceipt> {
    let text = String::from_utf8_lossy(text);
    // Whatever follows `text:` is the start of the message itself and may contain anything.
    let lower = text.to_ascii_lowercase();
    let fields = match lower.find("text:") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let text_id = ID.captures(fields).map(|c| c[1].to_string());
    let text_state = STAT.captures(fields).map(|c| normalize_state(&c[1]));

    let (id, from_tlv) = match receipted_id.filter(|s| !s.is_empty()) {
        Some(id) => (id.to_string(), true),
        None => (text_id?, false),
    };
    let state = match message_state {
        Some(s) => state_name(s).to_string(),
        None => text_state?,
    };
    Some(ParsedReceipt {
        id,
        state,
        from_tlv,
    })
}

/// The canonical form of a message id written in `format`: numbers are compared by value
/// (so `1000` in hex and `4096` in decimal match), text as is. An id that does not parse in
/// its declared format is kept as text.
pub fn canonical_id(id: &str, format: IdFormat) -> String {
    let id = id.trim();
    let value = match format {
        IdFormat::Text => None,
        IdFormat::Hex => u128::from_str_radix(id, 16).ok(),
        IdFormat::Decimal => id.parse::<u128>().ok(),
    };
    value.map_or_else(|| id.to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Option<ParsedReceipt> {
        parse(None, None, t.as_bytes())
    }

    #[test]
    fn standard_text() {
        let r = text(
            "id:4096 sub:001 dlvrd:001 submit date:2612031957 done date:2612031958 stat:DELIVRD err:000 text:Hello",
        );
        assert_eq!(
            r,
            Some(ParsedReceipt {
                id: "4096".into(),
                state: "DELIVRD".into(),
                from_tlv: false
            })
        );
    }

    #[test]
    fn other_orders_cases_and_missing_text() {
        let r = text("stat:UNDELIV err:001 id:A1B2C3 sub:001 dlvrd:000").unwrap();
        assert_eq!((r.id.as_str(), r.state.as_str()), ("A1B2C3", "UNDELIV"));
        let r = text("ID:77 SUB:001 DLVRD:001 SUBMIT DATE:2301011200 DONE DATE:2301011201 STAT:delivrd ERR:000").unwrap();
        assert_eq!((r.id.as_str(), r.state.as_str()), ("77", "DELIVRD"));
        let r = text("id: 12 stat: Rejected").unwrap();
        assert_eq!(r.state, "REJECTD");
        // An `id:` inside the message text must not be taken for the receipt's.
        let r = text("id:5 stat:EXPIRED text:id:999 stat:DELIVRD").unwrap();
        assert_eq!((r.id.as_str(), r.state.as_str()), ("5", "EXPIRED"));
        assert_eq!(text("hello, this is an inbound message"), None);
        let r = text("id:9 stat:ENROUTE").unwrap();
        assert!(!r.is_final());
    }

    #[test]
    fn tlvs_win_over_text() {
        let r = parse(Some("1000"), Some(5), b"id:4096 stat:DELIVRD").unwrap();
        assert_eq!(
            r,
            ParsedReceipt {
                id: "1000".into(),
                state: "UNDELIV".into(),
                from_tlv: true
            }
        );
        let r = parse(Some("1000"), None, b"id:4096 stat:DELIVRD").unwrap();
        assert_eq!(r.state, "DELIVRD");
    }

    #[test]
    fn hex_and_decimal_ids_compare_by_value() {
        assert_eq!(
            canonical_id("1000", IdFormat::Hex),
            canonical_id("4096", IdFormat::Decimal)
        );
        assert_eq!(canonical_id("0a", IdFormat::Hex), "10");
        assert_eq!(canonical_id("A1B2", IdFormat::Text), "A1B2");
        assert_eq!(canonical_id("not-hex", IdFormat::Hex), "not-hex");
    }
}
