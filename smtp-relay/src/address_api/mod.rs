//! TEMPORARY: core's address parser until the lead's core commit is merged.
#[allow(dead_code)]
mod shim;
pub use shim::{Address, AddressError, AddressPatterns, AddressRole, PatternListError};
