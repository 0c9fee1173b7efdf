//! A value read often and replaced rarely (the running config, the routing rules). Readers take
//! an `Arc` snapshot and keep it as long as they like; a reload swaps the whole value.

use std::sync::{Arc, PoisonError, RwLock};

pub struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    pub fn new(value: T) -> Current<T> {
        Current(RwLock::new(Arc::new(value)))
    }

    pub fn get(&self) -> Arc<T> {
        // Only `set` writes, and an assignment cannot panic: a poisoned lock still holds a whole value.
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}
