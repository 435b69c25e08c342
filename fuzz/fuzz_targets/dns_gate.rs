//! The XDP program's path, run in userspace on the code it shares with it (`opengslb-common`): a frame
//! parsed (Ethernet, VLAN, IPv4/IPv6, UDP), its DNS query parsed by the gate, a reply built for a record
//! set of the query's own name (policy, records and weights drawn from the input's last bytes), and the
//! frame turned around. Whatever the gate accepts must give a reply that parses as DNS, with the query's
//! ID, QR set and no more answers than the entry allows.
#![no_main]

use hickory_proto::op::Message;
use opengslb_common::{
    dns::{QBUF, RBUF, Scratch, build_reply_for, launder_query, parse_query},
    frame::{self, MAX_HEADERS},
    maps::{MAX_RECORDS, MAX_SLOTS, QTYPE_A, RecordValue, policy},
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut s = Box::new(Scratch::new());
    let n = data.len().min(MAX_HEADERS);
    s.headers[..n].copy_from_slice(&data[..n]);
    let Ok(f) = frame::parse(&s.headers, data.len(), 53, |_| true) else {
        return;
    };
    if f.dns_len > QBUF || f.dns_len == 0 {
        return;
    }
    let Some(msg) = data.get(f.dns..f.dns + f.dns_len) else {
        panic!(
            "the frame parser placed the message past the frame: {f:?}, {} bytes",
            data.len()
        );
    };
    s.msg[..msg.len()].copy_from_slice(msg);
    let Ok(q) = parse_query(&mut s, msg.len()) else {
        return;
    };
    assert!(
        q.name_len <= s.name.len() && q.question_end <= msg.len(),
        "{q:?}"
    );

    // The entry, from the input's last 8 bytes (what the control plane guarantees held: every index in
    // range, max_answers ≤ count).
    let mut k = [0u8; 8];
    for (d, b) in k.iter_mut().zip(data.iter().rev()) {
        *d = *b;
    }
    let mut rec = RecordValue {
        ttl: 300,
        name_len: q.name_len as u16,
        policy: [
            policy::ROUND_ROBIN,
            policy::FIXED_ORDER,
            policy::WEIGHTED,
            policy::GEO,
        ][usize::from(k[0] % 4)],
        default_region: k[1] % 3,
        ..RecordValue::default()
    };
    rec.name[..q.name_len].copy_from_slice(&s.name[..q.name_len]);
    let count = 1 + usize::from(k[2]) % MAX_RECORDS;
    let width = if q.qtype == QTYPE_A { 4 } else { 16 };
    for i in 0..count {
        assert!(rec.push(&[i as u8 + 1; 16][..width]));
        rec.regions[i] = (i % 3) as u8;
    }
    rec.max_answers = 1 + k[3] % count as u8;
    rec.slot_count = 1 + k[4] % MAX_SLOTS as u8;
    for (i, slot) in rec.slots.iter_mut().enumerate() {
        *slot = ((i + usize::from(k[5])) % count) as u8;
    }
    let rotation = u32::from_le_bytes([k[5], k[6], k[7], k[0]]);
    let udp = [512, 1232, 4096, 0][usize::from(k[6] % 4)];

    let q = launder_query(&mut s, q);
    let Ok(len) = build_reply_for(&mut s, &q, &rec, rotation, udp, k[7] % 3) else {
        return;
    };
    assert!(len <= RBUF && len >= q.question_end, "reply of {len} bytes");
    let reply = Message::from_vec(&s.msg[..len])
        .unwrap_or_else(|e| panic!("the reply does not parse: {e}: {:02x?}", &s.msg[..len]));
    assert_eq!(reply.metadata.id, q.id);
    assert_eq!(
        reply.metadata.message_type,
        hickory_proto::op::MessageType::Response
    );
    assert!(
        reply.answers.len() <= usize::from(rec.max_answers),
        "{reply:?}"
    );
    let _ = frame::turn_around(&mut s.headers, &f, len, 0);
});
