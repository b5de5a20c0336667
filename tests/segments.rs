//! Segment counts at the boundaries DESIGN section 4 defines.

use smswire::sms::segments::{Coding, split};

fn parts(body: &str) -> (Coding, Vec<usize>) {
    let s = split(body);
    (s.coding, s.parts.iter().map(Vec::len).collect())
}

/// 160 GSM characters are one part, 161 are two of 153 + 8.
#[test]
fn gsm_single_part_boundary() {
    assert_eq!(parts(&"a".repeat(160)), (Coding::Gsm7, vec![160]));
    assert_eq!(parts(&"a".repeat(161)), (Coding::Gsm7, vec![153, 8]));
}

/// 153 x 2 septets are two parts, one more is three.
#[test]
fn gsm_multipart_boundary() {
    assert_eq!(parts(&"a".repeat(306)), (Coding::Gsm7, vec![153, 153]));
    assert_eq!(parts(&"a".repeat(307)), (Coding::Gsm7, vec![153, 153, 1]));
}

/// Extension characters count two septets, and an escape pair never straddles parts.
#[test]
fn extension_characters_at_a_part_boundary() {
    // 80 euros are 160 septets: still one part.
    assert_eq!(parts(&"€".repeat(80)), (Coding::Gsm7, vec![160]));
    // 159 + `{` = 161 septets: two parts; the brace's pair stays whole in part two.
    let s = split(&format!("{}{{", "a".repeat(159)));
    assert_eq!(
        s.parts.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![153, 8]
    );
    // 152 + `€` + 10: the euro would straddle 153, so it moves whole to part two.
    let s = split(&format!("{}€{}", "a".repeat(152), "b".repeat(10)));
    assert_eq!(
        s.parts.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![152, 12]
    );
    assert_eq!(&s.parts[1][..2], &[0x1B, 0x65]);
}

/// 70 UCS-2 units are one part, 71 are two of 67 + 4.
#[test]
fn ucs2_boundary() {
    let (coding, lens) = parts(&"ж".repeat(70));
    assert_eq!((coding, lens), (Coding::Ucs2, vec![140]));
    assert_eq!(parts(&"ж".repeat(71)), (Coding::Ucs2, vec![134, 8]));
}

/// An emoji (a surrogate pair) at a part boundary moves whole to the next part.
#[test]
fn emoji_at_a_part_boundary() {
    let s = split(&format!("{}😀{}", "ж".repeat(66), "ж".repeat(10)));
    assert_eq!(s.coding, Coding::Ucs2);
    let lens: Vec<usize> = s.parts.iter().map(Vec::len).collect();
    assert_eq!(lens, vec![132, 24]);
    assert_eq!(
        &s.parts[1][..4],
        "😀"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect::<Vec<_>>()
            .as_slice()
    );
    // Exactly 70 units with an emoji inside: still one part.
    assert_eq!(parts(&format!("{}😀", "ж".repeat(68))).1, vec![140]);
}
