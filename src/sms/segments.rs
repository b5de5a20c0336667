//! Splitting a message body into SMS segments (DESIGN section 4).
//!
//! A body written entirely in the GSM 03.38 default alphabet (plus its extension table) is
//! sent as GSM-7; anything else is sent as UCS-2. The API counts parts with this module when
//! a message is accepted, and providers take the encoded parts from it when they submit, so
//! the count the client sees is the count the SMSC receives.

/// Septets in a single GSM-7 message.
const GSM_SINGLE: usize = 160;
/// Septets in one part of a concatenated GSM-7 message (the UDH takes the rest).
const GSM_PART: usize = 153;
/// UTF-16 units in a single UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// UTF-16 units in one part of a concatenated UCS-2 message.
const UCS2_PART: usize = 67;

/// The escape septet that introduces a character of the extension table.
const ESCAPE: u8 = 0x1B;

/// The GSM 03.38 default alphabet, indexed by septet value; 0x1B is the escape.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: each character is sent as the escape followed by this septet.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0C}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// The character set a body is sent in; it fixes the SMPP `data_coding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per byte, unpacked (`data_coding` 0).
    Gsm7,
    /// UCS-2 big-endian, really UTF-16 so that emoji survive (`data_coding` 8).
    Ucs2,
}

/// A body cut into the parts that are submitted one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// How every part is encoded.
    pub coding: Coding,
    /// Each part's payload: septet values for GSM-7, UTF-16 big-endian bytes for UCS-2.
    pub parts: Vec<Vec<u8>>,
}

/// The septets of one character in GSM-7, or `None` when the alphabet lacks it.
fn gsm_septets(c: char) -> Option<Septets> {
    if c != '\u{1B}'
        && let Some(pos) = BASIC.iter().position(|&b| b == c)
    {
        return Some(Septets::One(pos as u8));
    }
    EXTENSION
        .iter()
        .find(|(e, _)| *e == c)
        .map(|&(_, s)| Septets::Two(s))
}

/// One character's encoding in GSM-7.
#[derive(Clone, Copy)]
enum Septets {
    One(u8),
    Two(u8),
}

impl Septets {
    fn len(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Two(_) => 2,
        }
    }

    fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Septets::One(s) => out.push(s),
            Septets::Two(s) => out.extend([ESCAPE, s]),
        }
    }
}

/// True when every character of `text` is in the GSM-7 alphabet or its extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm_septets(c).is_some())
}

/// Encodes `body` and cuts it into parts as DESIGN section 4 says.
///
/// An escape pair or a surrogate pair is never split across two parts. An empty body gives
/// one empty GSM-7 part; callers refuse empty bodies before they get here.
pub fn split(body: &str) -> Segments {
    let gsm: Option<Vec<Septets>> = body.chars().map(gsm_septets).collect();
    match gsm {
        Some(septets) => Segments {
            coding: Coding::Gsm7,
            parts: split_gsm(&septets),
        },
        None => Segments {
            coding: Coding::Ucs2,
            parts: split_ucs2(body),
        },
    }
}

/// The number of parts `body` needs; the same as `split(body).parts.len()`.
pub fn count(body: &str) -> usize {
    split(body).parts.len()
}

fn split_gsm(septets: &[Septets]) -> Vec<Vec<u8>> {
    let total: usize = septets.iter().map(|s| s.len()).sum();
    let limit = if total <= GSM_SINGLE {
        GSM_SINGLE
    } else {
        GSM_PART
    };

    let mut parts = vec![Vec::new()];
    for &s in septets {
        let current = parts.last_mut().map_or(0, |p| p.len());
        if current + s.len() > limit {
            parts.push(Vec::new());
        }
        if let Some(part) = parts.last_mut() {
            s.push_to(part);
        }
    }
    parts
}

fn split_ucs2(body: &str) -> Vec<Vec<u8>> {
    let total = body.encode_utf16().count();
    let limit = if total <= UCS2_SINGLE {
        UCS2_SINGLE
    } else {
        UCS2_PART
    };

    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    let mut units_in_part = 0;
    let mut buf = [0u16; 2];
    for c in body.chars() {
        let units = c.encode_utf16(&mut buf);
        if units_in_part + units.len() > limit {
            parts.push(Vec::new());
            units_in_part = 0;
        }
        units_in_part += units.len();
        if let Some(part) = parts.last_mut() {
            for u in units.iter() {
                part.extend(u.to_be_bytes());
            }
        }
    }
    parts
}

/// Decodes GSM-7 septets (unpacked) back to text; unknown septets become `?`.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter();
    while let Some(&s) = iter.next() {
        if s == ESCAPE {
            let next = iter.next().copied().unwrap_or(0);
            let c = EXTENSION
                .iter()
                .find(|(_, e)| *e == next)
                .map_or('?', |&(c, _)| c);
            out.push(c);
        } else {
            out.push(BASIC.get(s as usize).copied().unwrap_or('?'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_round_trips_every_character() {
        let all: String = BASIC
            .iter()
            .filter(|&&c| c != '\u{1B}')
            .chain(EXTENSION.iter().map(|(c, _)| c))
            .collect();
        let s = split(&all);
        assert_eq!(s.coding, Coding::Gsm7);
        let joined: Vec<u8> = s.parts.concat();
        assert_eq!(decode_gsm7(&joined), all);
    }
}
