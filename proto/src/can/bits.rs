//! Where a signal's bits live in a payload, in DBC bit numbering.
//!
//! Bit `n` of a payload is bit `n % 8` (LSB = 0) of byte `n / 8`. A little-endian (Intel,
//! `@1`) signal starts at its least significant bit and climbs. A big-endian (Motorola,
//! `@0`) signal starts at its most significant bit and walks down through a byte, then to
//! bit 7 of the next byte (the DBC "sawtooth"). Walking bit by bit keeps both orders
//! obviously right; a signal is at most 64 steps.

/// Byte order of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Intel, `@1`.
    LittleEndian,
    /// Motorola, `@0`.
    BigEndian,
}

/// Payload bit positions of a signal, from its least to its most significant bit, or
/// `None` if it does not fit in `dlc` bytes.
fn positions(start: u16, length: u8, order: ByteOrder, dlc: u8) -> Option<Vec<u16>> {
    let limit = u16::from(dlc) * 8;
    let mut walk = Vec::with_capacity(usize::from(length));
    let mut pos = start;
    for step in 0..length {
        if pos >= limit {
            return None;
        }
        walk.push(pos);
        if step + 1 == length {
            break;
        }
        pos = match order {
            ByteOrder::LittleEndian => pos + 1,
            ByteOrder::BigEndian if pos.is_multiple_of(8) => pos + 15,
            ByteOrder::BigEndian => pos - 1,
        };
    }
    if order == ByteOrder::BigEndian {
        walk.reverse();
    }
    Some(walk)
}

/// The payload bits a signal occupies, as a mask over the 64 payload bits.
pub(crate) fn occupied(start: u16, length: u8, order: ByteOrder, dlc: u8) -> Option<u64> {
    Some(
        positions(start, length, order, dlc)?
            .into_iter()
            .fold(0, |mask, pos| mask | 1 << pos),
    )
}

/// Reads a signal's raw bits (unsigned, not sign-extended).
pub(crate) fn extract(payload: &[u8], start: u16, length: u8, order: ByteOrder) -> Option<u64> {
    let dlc = u8::try_from(payload.len()).ok()?;
    let walk = positions(start, length, order, dlc)?;
    Some(walk.iter().enumerate().fold(0, |raw, (i, &pos)| {
        let bit = (payload[usize::from(pos / 8)] >> (pos % 8)) & 1;
        raw | u64::from(bit) << i
    }))
}

/// Writes a signal's low `length` bits of `raw` into the payload.
pub(crate) fn insert(
    payload: &mut [u8],
    start: u16,
    length: u8,
    order: ByteOrder,
    raw: u64,
) -> Option<()> {
    let dlc = u8::try_from(payload.len()).ok()?;
    for (i, pos) in positions(start, length, order, dlc)?
        .into_iter()
        .enumerate()
    {
        let byte = &mut payload[usize::from(pos / 8)];
        let mask = 1u8 << (pos % 8);
        if raw >> i & 1 == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    Some(())
}

/// Sign-extends the low `length` bits of `raw`.
pub(crate) fn sign_extend(raw: u64, length: u8) -> i64 {
    let shift = 64 - u32::from(length);
    ((raw << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_signal_spans_bytes_lsb_first() {
        // A 12-bit signal starting at bit 4: low nibble in byte 0's high half.
        let payload = [
            0xB0, // bits 4..7: 0xB (raw bits 0..3)
            0x3A, // bits 8..15: 0x3A (raw bits 4..11)
        ];
        assert_eq!(
            extract(&payload, 4, 12, ByteOrder::LittleEndian),
            Some(0x3AB)
        );
        let mut out = [0u8; 2];
        insert(&mut out, 4, 12, ByteOrder::LittleEndian, 0x3AB).unwrap();
        assert_eq!(out, payload);
    }

    #[test]
    fn big_endian_signal_walks_the_sawtooth() {
        // Motorola 16-bit at start bit 7: byte 0 is the high byte, byte 1 the low byte.
        let payload = [
            0x12, // high byte
            0x34, // low byte
        ];
        assert_eq!(extract(&payload, 7, 16, ByteOrder::BigEndian), Some(0x1234));
        // Motorola 12-bit at start bit 3: bits 3..0 of byte 0, then all of byte 1.
        let payload = [
            0x0A, // bits 3..0: 0xA (raw bits 11..8)
            0xBC, // bits 7..0: 0xBC (raw bits 7..0)
        ];
        assert_eq!(extract(&payload, 3, 12, ByteOrder::BigEndian), Some(0xABC));
        let mut out = [0u8; 2];
        insert(&mut out, 3, 12, ByteOrder::BigEndian, 0xABC).unwrap();
        assert_eq!(out, payload);
    }

    #[test]
    fn signals_past_the_payload_do_not_fit() {
        assert_eq!(occupied(60, 8, ByteOrder::LittleEndian, 8), None);
        assert_eq!(occupied(0, 8, ByteOrder::LittleEndian, 0), None);
        assert_eq!(occupied(7, 16, ByteOrder::BigEndian, 1), None);
        assert_eq!(occupied(8, 8, ByteOrder::LittleEndian, 2), Some(0xFF00));
        assert_eq!(occupied(7, 16, ByteOrder::BigEndian, 2), Some(0xFFFF));
    }

    #[test]
    fn sign_extension() {
        assert_eq!(sign_extend(0xFFFF, 16), -1);
        assert_eq!(sign_extend(0x7FFF, 16), 32767);
        assert_eq!(sign_extend(0b10, 2), -2);
        assert_eq!(sign_extend(u64::MAX, 64), -1);
    }

    #[test]
    fn insert_leaves_neighbouring_bits_alone() {
        let mut payload = [0xFF, 0xFF];
        insert(&mut payload, 4, 4, ByteOrder::LittleEndian, 0).unwrap();
        assert_eq!(payload, [0x0F, 0xFF]);
    }
}
