//! Names as the control plane encodes them for the XDP map: any text is encoded or refused, and an
//! encoded name is in wire form (labels of 1..=63 bytes, a root label, at most 255 bytes), lowercased,
//! and hashed and compared the same way as the gate does.
#![no_main]

use opengslb_common::{
    dns::{encode_name, name_hash, names_equal},
    maps::{MAX_NAME, RecordValue},
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = [0u8; MAX_NAME];
    let Ok(len) = encode_name(text, &mut out) else {
        assert!(RecordValue::new(text, 60, 1, 0).is_err(), "{text:?}");
        return;
    };
    assert!(len <= 255 && len >= 1, "{len}");
    let mut at = 0;
    loop {
        let l = usize::from(out[at]);
        if l == 0 {
            assert_eq!(at + 1, len, "the root label ends the name: {text:?}");
            break;
        }
        assert!(l <= 63, "label of {l} bytes in {text:?}");
        assert!(
            !out[at + 1..at + 1 + l].iter().any(u8::is_ascii_uppercase),
            "{text:?}"
        );
        at += 1 + l;
    }
    assert!(names_equal(&out, &out, len));
    let (rec, hash) = RecordValue::new(text, 60, 1, 0).expect("encodable");
    assert_eq!(hash, name_hash(&out[..len]));
    assert_eq!(usize::from(rec.name_len), len);
});
