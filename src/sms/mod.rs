//! What an SMS is, independent of how it travels: segments and their encoding, the
//! validation of sender and recipient, and prices.
//!
//! The API uses this module to refuse what cannot be a message at all; the processor uses it
//! to decide what a well-formed message costs and whether its recipient exists.

pub mod number;
pub mod price;
pub mod segments;
