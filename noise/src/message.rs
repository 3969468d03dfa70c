//! Noise messages (§3): the size limit every handshake and transport
//! message obeys. It sits below `handshake`, `transport` and `datagram` so
//! that each of them can check a length without importing another.

/// The Noise message size limit: no handshake or transport message (nor a
/// datagram packet, counter included) is longer than 65535 bytes (§3).
pub const MAX_MESSAGE_LEN: usize = 65535;
