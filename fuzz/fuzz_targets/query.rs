//! `opengslb::fuzzing::query`: see its doc.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| opengslb::fuzzing::query(data));
