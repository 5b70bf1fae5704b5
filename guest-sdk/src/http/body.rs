//! Collects a response body up to a limit, reading only one byte past it,
//! so that an oversized body is detected without being read in full.

use super::HttpError;

/// Bytes asked of the stream per read when far from the limit.
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct BodyBuffer {
    limit: usize,
    bytes: Vec<u8>,
}

impl BodyBuffer {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            bytes: Vec::new(),
        }
    }

    /// Fails early when the response announces a body longer than allowed.
    pub fn check_announced(&self, content_length: Option<&[u8]>) -> Result<(), HttpError> {
        let announced = content_length
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match announced {
            Some(len) if len > self.limit as u64 => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    /// How many bytes to ask for next: up to one past the limit, so that
    /// reaching it can be told apart from exceeding it.
    pub fn next_read_len(&self) -> u64 {
        let room = (self.limit - self.bytes.len()).saturating_add(1);
        room.min(READ_CHUNK) as u64
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), HttpError> {
        if chunk.len() > self.limit - self.bytes.len() {
            return Err(self.too_large());
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn too_large(&self) -> HttpError {
        HttpError::BodyTooLarge { limit: self.limit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_limit() {
        let mut buffer = BodyBuffer::new(10);
        assert_eq!(buffer.next_read_len(), 11);
        buffer.push(b"12345").unwrap();
        assert_eq!(buffer.next_read_len(), 6);
        buffer.push(b"67890").unwrap();
        assert_eq!(buffer.next_read_len(), 1);
        assert_eq!(buffer.into_bytes(), b"1234567890");
    }

    #[test]
    fn rejects_one_byte_more() {
        let mut buffer = BodyBuffer::new(10);
        buffer.push(b"1234567890").unwrap();
        assert_eq!(
            buffer.push(b"x"),
            Err(HttpError::BodyTooLarge { limit: 10 })
        );
        let mut buffer = BodyBuffer::new(0);
        buffer.push(b"").unwrap();
        assert_eq!(buffer.push(b"x"), Err(HttpError::BodyTooLarge { limit: 0 }));
    }

    #[test]
    fn reads_in_chunks_when_far_from_the_limit() {
        assert_eq!(BodyBuffer::new(1 << 20).next_read_len(), READ_CHUNK as u64);
        assert_eq!(
            BodyBuffer::new(usize::MAX).next_read_len(),
            READ_CHUNK as u64
        );
    }

    #[test]
    fn announced_length_is_checked_up_front() {
        let buffer = BodyBuffer::new(100);
        assert!(buffer.check_announced(None).is_ok());
        assert!(buffer.check_announced(Some(b"100")).is_ok());
        assert!(buffer.check_announced(Some(b"not a number")).is_ok());
        assert_eq!(
            buffer.check_announced(Some(b"101")),
            Err(HttpError::BodyTooLarge { limit: 100 })
        );
    }
}
