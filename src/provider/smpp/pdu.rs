//! Building the PDUs smswire sends, and reading the fields it needs from those it gets.

use std::str::FromStr;
use std::time::Duration;

use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};

use super::receipt::{self, ParsedReceipt};
use crate::config::SmppConfig;
use crate::provider::Submit;
use crate::sms::number::{SenderKind, sender_kind};
use crate::sms::segments::Coding;

/// The UDH indicator bit of `esm_class`.
const ESM_UDHI: u8 = 0x40;
/// The message-type bits of `esm_class` that mark an SMSC delivery receipt.
const ESM_RECEIPT: u8 = 0x04;
const ESM_TYPE_MASK: u8 = 0x3C;

/// Which bind a connection makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Role {
    /// Whether submits go out on this connection.
    pub fn sends(self) -> bool {
        self != Role::Receiver
    }
}

/// A bind request for `role` with the configured account.
pub fn bind(role: Role, config: &SmppConfig, sequence: u32) -> Result<Command, String> {
    macro_rules! text {
        ($field:ident) => {
            COctetString::from_str(&config.$field)
                .map_err(|e| format!("provider.smpp.{}: {e}", stringify!($field)))?
        };
    }
    macro_rules! build {
        ($pdu:ident) => {
            $pdu::builder()
                .system_id(text!(system_id))
                .password(text!(password))
                .system_type(text!(system_type))
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build()
        };
    }
    let status = CommandStatus::EsmeRok;
    Ok(match role {
        Role::Transceiver => Command::new(status, sequence, build!(BindTransceiver)),
        Role::Transmitter => Command::new(status, sequence, build!(BindTransmitter)),
        Role::Receiver => Command::new(status, sequence, build!(BindReceiver)),
    })
}

/// The `submit_sm` of one segment.
pub fn submit_sm(submit: &Submit, config: &SmppConfig, sequence: u32) -> Result<Command, String> {
    let (auto_ton, auto_npi) = match sender_kind(&submit.from) {
        SenderKind::Alphanumeric => (5, 0),
        SenderKind::ShortCode => (0, 1),
        SenderKind::International => (1, 1),
    };
    let ton = u8::try_from(config.source_ton).unwrap_or(auto_ton);
    let npi = u8::try_from(config.source_npi).unwrap_or(auto_npi);

    let mut short_message = Vec::with_capacity(6 + submit.payload.len());
    let mut esm_class = 0;
    if submit.total > 1 {
        // Concatenation, 8-bit reference: IEI 0, length 3, reference, total, sequence.
        esm_class |= ESM_UDHI;
        short_message.extend([
            0x05,
            0x00,
            0x03,
            reference(&submit.message_id),
            submit.total as u8,
            (submit.index + 1) as u8,
        ]);
    }
    short_message.extend_from_slice(&submit.payload);

    let source = submit.from.trim_start_matches('+');
    let pdu = SubmitSm::builder()
        .source_addr_ton(Ton::from(ton))
        .source_addr_npi(Npi::from(npi))
        .source_addr(COctetString::from_str(source).map_err(|e| format!("from: {e}"))?)
        .dest_addr_ton(Ton::from(config.dest_ton))
        .dest_addr_npi(Npi::from(config.dest_npi))
        .destination_addr(COctetString::from_str(&submit.to).map_err(|e| format!("to: {e}"))?)
        .esm_class(EsmClass::from(esm_class))
        .registered_delivery(RegisteredDelivery::from(1))
        .validity_period(
            EmptyOrFullCOctetString::from_str(&relative_validity(config.validity_period))
                .map_err(|e| format!("validity: {e}"))?,
        )
        .data_coding(DataCoding::from(match submit.coding {
            Coding::Gsm7 => 0u8,
            Coding::Ucs2 => 8u8,
        }))
        .short_message(OctetString::from_vec(short_message).map_err(|e| format!("body: {e}"))?)
        .build();
    Ok(Command::new(CommandStatus::EsmeRok, sequence, pdu))
}

/// The concatenation reference of a message: the same for all its parts and across
/// restarts, since it is derived from the message id.
fn reference(message_id: &str) -> u8 {
    message_id
        .bytes()
        .fold(0u8, |acc, b| acc.rotate_left(3) ^ b)
}

/// A validity period in the SMPP relative format `YYMMDDhhmmss000R`; empty for none.
pub fn relative_validity(period: Duration) -> String {
    let secs = period.as_secs();
    if secs == 0 {
        return String::new();
    }
    let days = (secs / 86_400).min(99);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("0000{days:02}{h:02}{m:02}{s:02}000R")
}

/// What a `deliver_sm` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A delivery receipt.
    Receipt(ParsedReceipt),
    /// A receipt smswire cannot read.
    UnreadableReceipt,
    /// An inbound message from a handset.
    Inbound {
        from: String,
        to: String,
        bytes: usize,
    },
}

/// Classifies a `deliver_sm`.
pub fn delivered(pdu: &rusmpp::pdus::DeliverSm) -> Delivered {
    let mut receipted = None;
    let mut state = None;
    for tlv in pdu.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            _ => {}
        }
    }
    let esm = u8::from(pdu.esm_class);
    let is_receipt = esm & ESM_TYPE_MASK == ESM_RECEIPT || receipted.is_some();
    if !is_receipt {
        return Delivered::Inbound {
            from: pdu.source_addr.as_str().to_string(),
            to: pdu.destination_addr.as_str().to_string(),
            bytes: pdu.short_message().as_ref().len(),
        };
    }
    match receipt::parse(receipted.as_deref(), state, pdu.short_message().as_ref()) {
        Some(r) => Delivered::Receipt(r),
        None => Delivered::UnreadableReceipt,
    }
}

/// A request with no body (`enquire_link`, `unbind`) or its response.
pub fn bare(pdu: Pdu, sequence: u32) -> Command {
    Command::new(CommandStatus::EsmeRok, sequence, pdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_relative() {
        assert_eq!(
            relative_validity(Duration::from_secs(48 * 3600)),
            "000002000000000R"
        );
        assert_eq!(
            relative_validity(Duration::from_secs(90 * 60 + 5)),
            "000000013005000R"
        );
        assert_eq!(relative_validity(Duration::ZERO), "");
    }

    #[test]
    fn reference_is_stable_per_message() {
        assert_eq!(reference("sms_01ABC"), reference("sms_01ABC"));
        assert_ne!(reference("sms_01ABC"), reference("sms_01ABD"));
    }
}
