//! The securemesh ratchet wire specification (to be written).
