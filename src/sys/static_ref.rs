//! An atomic `Option<&'static T>`, for the task label written on every poll
//! (a `&'static Location` from `#[track_caller]` or tokio's `spawned_at`).

use std::sync::atomic::{AtomicPtr, Ordering};

/// Holds `None` or a `&'static T`; nothing else can be stored, which is what
/// makes `load` sound.
pub(crate) struct AtomicStaticRef<T: 'static> {
    ptr: AtomicPtr<T>,
}

impl<T: 'static> AtomicStaticRef<T> {
    /// An empty cell, usable in `static`s.
    pub(crate) const fn none() -> Self {
        Self {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Stores a reference (`Relaxed`: published by the epoch's `Release` store).
    #[inline(always)]
    pub(crate) fn store(&self, value: Option<&'static T>, order: Ordering) {
        let p = value.map_or(std::ptr::null_mut(), |r| r as *const T as *mut T);
        self.ptr.store(p, order);
    }

    /// Loads the current reference.
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Option<&'static T> {
        let p = self.ptr.load(order);
        // SAFETY: `store` is the only writer and only ever stores null or a pointer
        // derived from a `&'static T`, which stays valid and immutable forever.
        unsafe { p.as_ref() }
    }
}

impl<T: 'static> std::fmt::Debug for AtomicStaticRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtomicStaticRef")
    }
}
