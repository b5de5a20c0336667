//! Framing of SMPP PDUs on the wire, on top of rusmpp's codec.
//!
//! Every PDU from the network is length-checked before a byte of its body is read: a
//! `command_length` below the 16-byte header or above `max_pdu_bytes` loses the framing and
//! is fatal (the session closes and reconnects). A frame of a sane length is cut off
//! exactly and only then decoded, so a malformed body can neither read into the next PDU
//! nor leave bytes behind; it comes out as a [`BadPdu`] item that the session answers and
//! survives.

use bytes::BytesMut;
use rusmpp::tokio_codec::{CommandCodec, EncodeError};
use rusmpp::{Command, CommandStatus};
use tokio_util::codec::{Decoder, Encoder};

/// The SMPP header: length, id, status, sequence number.
const HEADER: usize = 16;

/// A PDU whose header was readable but whose body was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPdu {
    pub command_id: u32,
    pub sequence_number: u32,
    pub reason: String,
}

/// Why the connection cannot go on.
#[derive(Debug)]
pub enum FrameError {
    /// `command_length` outside 16 ..= max: the stream cannot be trusted any more.
    BadLength(u32),
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(f, "PDU length {n} is out of bounds"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// The codec of an SMPP connection.
pub struct FrameCodec {
    max_len: usize,
}

impl FrameCodec {
    /// A codec refusing PDUs longer than `max_len` bytes.
    pub fn new(max_len: usize) -> FrameCodec {
        FrameCodec { max_len }
    }
}

impl Encoder<Command> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, cmd: Command, dst: &mut BytesMut) -> Result<(), FrameError> {
        CommandCodec::new().encode(&cmd, dst).map_err(|e| match e {
            EncodeError::Io(e) => FrameError::Io(e),
            other => FrameError::Io(std::io::Error::other(other.to_string())),
        })
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Command, BadPdu>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        let Some(len) = be_u32(src, 0) else {
            return Ok(None);
        };
        if (len as usize) < HEADER || len as usize > self.max_len {
            return Err(FrameError::BadLength(len));
        }
        if src.len() < len as usize {
            src.reserve(len as usize - src.len());
            return Ok(None);
        }

        let mut frame = src.split_to(len as usize);
        let command_id = be_u32(&frame, 4).unwrap_or(0);
        let sequence_number = be_u32(&frame, 12).unwrap_or(0);
        let bad = |reason: String| {
            Ok(Some(Err(BadPdu {
                command_id,
                sequence_number,
                reason,
            })))
        };
        match CommandCodec::new().without_max_length().decode(&mut frame) {
            Ok(Some(cmd)) if frame.is_empty() => Ok(Some(Ok(cmd))),
            Ok(Some(_)) => bad(format!("{} bytes after the end of the PDU", frame.len())),
            Ok(None) => bad("the PDU ended early".into()),
            Err(e) => bad(e.to_string()),
        }
    }
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The specification's name of a command status: `ESME_RTHROTTLED`, or `0x00000400` for a
/// vendor code.
pub fn status_name(status: CommandStatus) -> String {
    if let CommandStatus::Other(n) = status {
        return format!("0x{n:08X}");
    }
    // rusmpp names its variants after the specification (`EsmeRthrottled`); only the
    // spelling differs.
    let debug = format!("{status:?}");
    let Some(rest) = debug.strip_prefix("Esme") else {
        return format!("0x{:08X}", u32::from(status));
    };
    let mut name = String::from("ESME_");
    for (i, c) in rest.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u32, status: u32, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((HEADER + body.len()) as u32).to_be_bytes().to_vec();
        v.extend(id.to_be_bytes());
        v.extend(status.to_be_bytes());
        v.extend(seq.to_be_bytes());
        v.extend(body);
        v
    }

    const ENQUIRE_LINK: u32 = 0x0000_0015;

    #[test]
    fn status_names_follow_the_specification() {
        assert_eq!(status_name(CommandStatus::EsmeRok), "ESME_ROK");
        assert_eq!(
            status_name(CommandStatus::EsmeRthrottled),
            "ESME_RTHROTTLED"
        );
        assert_eq!(status_name(CommandStatus::EsmeRmsgqful), "ESME_RMSGQFUL");
        assert_eq!(
            status_name(CommandStatus::EsmeRinvdstadr),
            "ESME_RINVDSTADR"
        );
        assert_eq!(status_name(CommandStatus::from(0x45)), "ESME_RSUBMITFAIL");
        assert_eq!(status_name(CommandStatus::from(0x400)), "0x00000400");
    }

    #[test]
    fn oversized_and_undersized_lengths_are_fatal() {
        let mut codec = FrameCodec::new(4096);
        let mut huge = BytesMut::from(&[0, 1, 0, 0, 0, 0, 0, 0x15][..]);
        assert!(matches!(
            codec.decode(&mut huge),
            Err(FrameError::BadLength(65536))
        ));
        let mut tiny = BytesMut::from(&frame(ENQUIRE_LINK, 0, 1, &[])[..]);
        tiny[3] = 8;
        assert!(matches!(
            codec.decode(&mut tiny),
            Err(FrameError::BadLength(8))
        ));
    }

    #[test]
    fn truncated_pdus_wait_for_more() {
        let mut codec = FrameCodec::new(4096);
        let whole = frame(0x8000_0004, 0, 3, b"abc\0");
        let mut part = BytesMut::from(&whole[..10]);
        assert!(codec.decode(&mut part).unwrap().is_none());
        part.extend_from_slice(&whole[10..]);
        assert!(matches!(codec.decode(&mut part), Ok(Some(Ok(_)))));
    }

    #[test]
    fn a_malformed_body_is_contained_in_its_frame() {
        let mut codec = FrameCodec::new(4096);
        // A submit_sm_resp whose message_id lacks its NUL, then an enquire_link.
        let mut bytes = frame(0x8000_0004, 0, 3, b"abc");
        bytes.extend(frame(ENQUIRE_LINK, 0, 4, &[]));
        let mut buf = BytesMut::from(&bytes[..]);
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(first.unwrap_err().sequence_number, 3);
        let second = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(second.sequence_number(), 4);

        // An enquire_link_resp with a stray body: refused, and the next PDU still reads.
        let mut bytes = frame(0x8000_0015, 0, 5, &[9, 9, 9, 9]);
        bytes.extend(frame(ENQUIRE_LINK, 0, 6, &[]));
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_err());
        assert_eq!(
            codec
                .decode(&mut buf)
                .unwrap()
                .unwrap()
                .unwrap()
                .sequence_number(),
            6
        );

        // Garbage bodies of every length never panic.
        for n in 0..64u8 {
            let body: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            for id in [
                0x0000_0005,
                0x8000_0004,
                0x8000_0009,
                0x0000_0006,
                0x0000_0004,
            ] {
                let mut buf = BytesMut::from(&frame(id, 0, 1, &body)[..]);
                let _ = codec.decode(&mut buf);
            }
        }
    }
}
