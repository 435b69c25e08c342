//! `domains[].slow_start` end to end: an overwatch process (userspace server only, no root needed) with a
//! weighted and a round-robin name, each with a 10 s slow start. One backend of each is taken out by an
//! operator override and brought back by clearing it; its share of the answers, counted over rounds of
//! queries, starts well below its full share and rises to it.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use common::{
    dnsq::Asker,
    http::call,
    labs::{self, TOKEN},
    netns::{TempDir, wait_for},
};

/// The slow start the names have.
const WINDOW: Duration = Duration::from_secs(10);
/// Queries per name and round: a round of a step's table gives its share to within a few percent.
const ROUND: usize = 120;

fn config(dir: &Path, dns: u16, api: SocketAddr) -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch:
  validation: {{ enabled: false }}
  data_dir: {data}
dns:
  listen_address: "127.0.0.1:{dns}"
  zones: [demo.local]
regions:
  - name: eu
    servers:
      - {{ address: 192.0.2.1, service: w.demo.local, weight: 100 }}
      - {{ address: 192.0.2.2, service: w.demo.local, weight: 100 }}
      - {{ address: 192.0.2.3, service: rr.demo.local }}
      - {{ address: 192.0.2.4, service: rr.demo.local }}
domains:
  - {{ name: w.demo.local, regions: [eu], routing_algorithm: weighted, slow_start: {window}s }}
  - {{ name: rr.demo.local, regions: [eu], slow_start: {window}s }}
api:
  enabled: true
  address: "{api}"
  allowed_networks: [127.0.0.0/8]
  token: "{TOKEN}"
"#,
        data = dir.join("data").display(),
        window = WINDOW.as_secs(),
    )
}

/// The share of `ROUND` answers of `name` that carry `addr` (each answer carries one record).
fn share(asker: &mut Asker, name: &str, addr: Ipv4Addr) -> f64 {
    let mut hits = 0;
    for _ in 0..ROUND {
        let answer = (0..5)
            .find_map(|_| asker.a(name, false))
            .expect("a reply within 5 tries");
        hits += usize::from(answer == [addr]);
    }
    hits as f64 / ROUND as f64
}

#[test]
fn a_backend_that_comes_back_ramps_up_to_its_share_over_the_window() {
    let dir = TempDir::new("slow-start");
    let (dns, api) = (
        common::free_port(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port())),
    );
    common::write_private(&dir.0.join("overwatch.yaml"), &config(&dir.0, dns, api));
    let log = || std::fs::read_to_string(dir.0.join("overwatch.log")).unwrap_or_default();
    let _overwatch = labs::spawn(
        Path::new(env!("CARGO_BIN_EXE_opengslb")),
        &dir.0,
        "overwatch",
    );
    labs::wait_ready(api, log);
    let mut asker = Asker::new(SocketAddr::from((Ipv4Addr::LOCALHOST, dns)));
    let (w, rr) = ("w.demo.local", "rr.demo.local");
    let (w_back, rr_back) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 4));

    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let path = |name: &str, addr: Ipv4Addr| {
        format!("/api/v1/overwatch/backends/{name}/{addr}/80/override")
    };
    for (name, addr) in [(w, w_back), (rr, rr_back)] {
        let body = r#"{"healthy": false, "reason": "maintenance"}"#;
        let (status, reply) = call(api, "POST", &path(name, addr), &headers, Some(body));
        assert_eq!(status, 200, "{reply}");
    }
    // An override reaches DNS before the response; checked all the same.
    assert!(
        wait_for(common::AT_ONCE, || share(&mut asker, w, w_back) == 0.0
            && share(&mut asker, rr, rr_back) == 0.0),
        "out\n{}",
        log()
    );

    let cleared = Instant::now();
    for (name, addr) in [(w, w_back), (rr, rr_back)] {
        let (status, reply) = call(api, "DELETE", &path(name, addr), &headers, None);
        assert_eq!(status, 200, "{reply}");
    }
    // Rounds until both names give the backend its full share (half: two equal backends), bounded.
    let mut rounds: Vec<(f64, f64, f64)> = Vec::new();
    let limit = WINDOW * 4;
    loop {
        let at = cleared.elapsed().as_secs_f64();
        let (sw, srr) = (share(&mut asker, w, w_back), share(&mut asker, rr, rr_back));
        rounds.push((at, sw, srr));
        if (sw >= 0.49 && srr >= 0.49) || cleared.elapsed() > limit {
            break;
        }
    }
    // One line per change of a few points, so the steps show.
    let mut shown = (-1.0, -1.0);
    for &(at, sw, srr) in &rounds {
        if (sw - shown.0).abs() > 0.02 || (srr - shown.1).abs() > 0.02 {
            println!(
                "{at:6.2} s after the return: weighted share {sw:.3}, round-robin share {srr:.3}"
            );
            shown = (sw, srr);
        }
    }
    let (_, first_w, first_rr) = rounds[0];
    let &(full_at, last_w, last_rr) = rounds.last().expect("a round");
    println!(
        "{} rounds of {ROUND} queries per name; full share {full_at:.1} s after the return \
         (window {WINDOW:?})",
        rounds.len()
    );
    // Full share 0.5; step 1 gives about 0.08, step 3 (2 s in) 0.21.
    assert!(
        first_w < 0.25 && first_rr < 0.25,
        "the first round well below the full share: {rounds:?}"
    );
    assert!(
        (last_w, last_rr) >= (0.49, 0.49) && last_w <= 0.51 && last_rr <= 0.51,
        "the full share in the end, within {limit:?}: {rounds:?}\n{}",
        log()
    );
    let between = |s: f64| (0.25..0.45).contains(&s);
    assert!(
        rounds.iter().any(|r| between(r.1)) && rounds.iter().any(|r| between(r.2)),
        "shares in between on the way, not a jump: {rounds:?}"
    );
}
