//! `opengslb::fuzzing::api_request`: see its doc.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| opengslb::fuzzing::api_request(data));
