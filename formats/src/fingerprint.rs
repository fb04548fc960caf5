//! A stable 64-bit fingerprint of a sequence of byte fields (FNV-1a, each
//! field followed by a separator so that ("ab", "c") and ("a", "bc") differ):
//! the same in every build and on every platform, unlike `DefaultHasher`.
//! Dataset ids and cache keys are made with it.

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

const PRIME: u64 = 0x0100_0000_01b3;

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    pub fn new() -> Fingerprint {
        Fingerprint::default()
    }

    /// A fingerprint starting from `start` instead of FNV's offset basis
    /// (e.g. a seed).
    pub fn starting_at(start: u64) -> Fingerprint {
        Fingerprint(start)
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(PRIME);
        }
        self.0 = (self.0 ^ 0xff).wrapping_mul(PRIME);
        self
    }

    pub fn value(&self) -> u64 {
        self.0
    }

    /// 16 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
