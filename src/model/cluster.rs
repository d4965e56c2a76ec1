//! Cluster slots for the model: the computation itself lives in [`crate::keys`], shared with
//! the key schemes, so that the model and the limiters can never disagree about a slot.

pub use crate::keys::{SLOT_COUNT, crc16, hash_tag, key_slot};
