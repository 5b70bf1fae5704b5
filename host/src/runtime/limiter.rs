//! The memory bound of one plugin call: the sum of every linear memory and
//! every table the component's instances create, not each one alone.
//!
//! wasmtime's stock `StoreLimits` caps each memory separately, so a
//! component with many core instances (real toolchains emit one memory,
//! but a hand-built component may have dozens) could hold `memories` times
//! `memoryMiB`. This limiter keeps a running total of what every memory and
//! table currently holds and refuses any creation or growth that would
//! take the total past `memoryMiB`; a refusal is a trap carrying
//! [`MemoryLimitExceeded`], which the runtime reports by type.

use wasmtime::ResourceLimiter;

/// Host bytes charged per table element (a pointer plus bookkeeping).
pub const TABLE_ELEMENT_BYTES: usize = 16;
/// Instances, tables and memories one call may create: counts bound
/// per-object bookkeeping that the byte total does not see.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;

/// The error a refused allocation traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimitExceeded {
    pub limit_bytes: usize,
    pub wanted_bytes: usize,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memories and tables would hold {} bytes, over the limit of {} bytes",
            self.wanted_bytes, self.limit_bytes
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// Tracks the total of one store.
#[derive(Debug)]
pub struct CallLimiter {
    limit_bytes: usize,
    used_bytes: usize,
    peak_bytes: usize,
    /// The first refusal: the runtime reports a failed call as over the
    /// limit from this flag, whatever wasmtime made of the trap on its way
    /// out (a refusal can surface wrapped, or as an instantiation error).
    refused: Option<MemoryLimitExceeded>,
}

impl CallLimiter {
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            used_bytes: 0,
            peak_bytes: 0,
            refused: None,
        }
    }

    /// The first allocation this limiter refused, if any.
    pub fn refused(&self) -> Option<MemoryLimitExceeded> {
        self.refused
    }

    /// The most the call's memories and tables held at once.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Charges a change from `current` to `desired` bytes of one object.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let wanted = self
            .used_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if wanted > self.limit_bytes {
            let exceeded = MemoryLimitExceeded {
                limit_bytes: self.limit_bytes,
                wanted_bytes: wanted,
            };
            self.refused.get_or_insert(exceeded);
            return Err(wasmtime::Error::new(exceeded));
        }
        self.used_bytes = wanted;
        self.peak_bytes = self.peak_bytes.max(wanted);
        Ok(true)
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_total_of_all_memories_is_bounded() {
        let mut limiter = CallLimiter::new(32 * MIB);
        // Sixteen memories of 31 MiB each: only the first fits.
        assert!(limiter.memory_growing(0, 31 * MIB, None).unwrap());
        let err = limiter.memory_growing(0, 31 * MIB, None).unwrap_err();
        let exceeded = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(exceeded.wanted_bytes, 62 * MIB);
        assert_eq!(limiter.refused(), Some(*exceeded));
        // Growth of an existing memory is charged by its difference.
        assert!(limiter.memory_growing(31 * MIB, 32 * MIB, None).unwrap());
        assert!(limiter.memory_growing(32 * MIB, 33 * MIB, None).is_err());
        assert_eq!(limiter.peak_bytes(), 32 * MIB);
    }

    #[test]
    fn tables_share_the_budget() {
        let mut limiter = CallLimiter::new(MIB);
        assert!(limiter.table_growing(0, 1000, None).unwrap());
        assert_eq!(limiter.refused(), None);
        assert!(
            limiter
                .memory_growing(0, MIB - 1000 * TABLE_ELEMENT_BYTES, None)
                .unwrap()
        );
        assert!(limiter.table_growing(1000, 1001, None).is_err());
    }
}
