//! Sharing the machine between the tests of one test binary: those whose
//! verdict depends on timing (loss, partitions, floods) take the CPU alone,
//! the others may run alongside each other. (libtest runs tests of one
//! binary on threads; binaries run one after another.)

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static CPU: RwLock<()> = RwLock::new(());

/// For tests whose verdict depends on timing: no other test of this binary
/// runs meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(PoisonError::into_inner)
}

/// For the others: they may run alongside each other.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(PoisonError::into_inner)
}
