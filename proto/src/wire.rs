//! Datagram format. SKELETON.

/// Largest datagram rossip sends or accepts.
pub const MAX_DATAGRAM_BYTES: usize = 1400;
