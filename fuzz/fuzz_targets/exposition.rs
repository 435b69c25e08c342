//! `opengslb::fuzzing::exposition`: see its doc.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| opengslb::fuzzing::exposition(data));
