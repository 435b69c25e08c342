//! Entry points for the fuzz targets in `fuzz/` (`cargo xtask fuzz`), for the parsers that are not public
//! on their own. Each takes arbitrary bytes and must return, whatever they hold: a panic is a bug.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, OnceLock},
};

use crate::{
    api::{self, Access, View},
    config::{ApiConfig, Config, MetricSelector},
    dns::{
        respond::{QueryContext, Transport, respond},
        zone::{Snapshot, Zone},
    },
    gossip::{
        seal::{KEY_LEN, MAX_PAYLOAD, Opener, Sealer},
        wire::{Ack, Report},
    },
    overwatch::table_from_config,
};

/// A config file: parsed and validated, or refused with an error.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_yaml_str(text);
    }
}

/// A metric selector (the first line) and a Prometheus text exposition (the rest), as an agent's
/// predictive signal reads an app's metrics.
pub fn exposition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(selector) = first.parse::<MetricSelector>() {
        let _ = crate::agent::signals::sum_matching(rest, &selector);
    }
    let fixed: MetricSelector = r#"http_requests_total{code=~"5..",job!="x"}"#
        .parse()
        .unwrap_or_else(|e| unreachable!("a valid selector: {e}"));
    let _ = crate::agent::signals::sum_matching(text, &fixed);
}

/// A gossip datagram, as the overwatch opens it, and its payload decoded as a report and as an ack. Then
/// the input as a payload: sealed, it opens to itself once and, replayed or with one byte changed, not.
pub fn gossip(data: &[u8]) {
    let ring = [[7u8; KEY_LEN], [9u8; KEY_LEN]];
    let (Ok(sealer), Ok(mut opener)) = (Sealer::new(&ring), Opener::new(&ring)) else {
        unreachable!("a valid key ring");
    };
    if let Ok(opened) = opener.open(data) {
        let _ = Report::decode(&opened.payload);
        let _ = Ack::decode(&opened.payload);
    }
    let _ = Report::decode(data);
    let _ = Ack::decode(data);

    if data.len() > MAX_PAYLOAD {
        return;
    }
    let mut opener = Opener::new(&ring).unwrap_or_else(|e| unreachable!("{e}"));
    let sealed = sealer.seal(3, data);
    let opened = opener.open(&sealed).expect("our own datagram opens");
    assert_eq!((opened.kind, opened.payload.as_slice()), (3, data));
    assert!(opener.open(&sealed).is_err(), "a replay is refused");
    if let Some(&first) = data.first() {
        let mut forged = sealer.seal(3, data);
        let at = usize::from(first) % forged.len();
        forged[at] ^= 1 << (first % 8);
        assert!(
            Opener::new(&ring)
                .unwrap_or_else(|e| unreachable!("{e}"))
                .open(&forged)
                .is_err(),
            "a datagram with bit {} of byte {at} flipped opens",
            first % 8
        );
    }
}

/// A DNS query to the userspace responder, over UDP or TCP (the first byte says which and the rotation),
/// with the embedded default config's table.
pub fn query(data: &[u8]) {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    let snap = SNAP.get_or_init(|| {
        let cfg = Config::embedded_default().unwrap_or_else(|e| unreachable!("{e}"));
        let zones = Zone::from_config(&cfg).unwrap_or_else(|e| unreachable!("{e}"));
        let table = table_from_config(&cfg);
        let rendered = table.render();
        Snapshot::new(table, &rendered, zones, 1, 1232)
    });
    let Some((&first, query)) = data.split_first() else {
        return;
    };
    let ctx = QueryContext {
        transport: if first & 1 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        rotation: Some(u32::from(first >> 1)),
        client: (first & 0x80 != 0).then_some(Ipv4Addr::new(198, 51, 100, first).into()),
    };
    let _ = respond(snap, query, &ctx);
}

/// The API's routes with a change, chosen by the first two bytes (method and path), and the rest as the
/// JSON body. A 500 is a bug, as a panic is.
pub fn api_request(data: &[u8]) {
    use tower::ServiceExt as _;
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    const PATHS: [&str; 12] = [
        "/api/v1/domains",
        "/api/v1/domains/app.demo.local",
        "/api/v1/regions",
        "/api/v1/regions/local",
        "/api/v1/servers",
        "/api/v1/servers/app.demo.local/192.0.2.1/80",
        "/api/v1/geo/mappings",
        "/api/v1/geo/mappings/10.0.0.0%2F8",
        "/api/v1/overwatch/backends/app.demo.local/192.0.2.1/80/override",
        "/api/v1/overrides/app.demo.local/192.0.2.1",
        "/api/v1/overwatch/validate",
        "/api/v1/dns/explain?name=app.demo.local&type=AAAA&client=2001:db8::1",
    ];
    struct Harness {
        rt: tokio::runtime::Runtime,
        router: axum::Router,
        _view: tokio::sync::watch::Sender<Arc<View>>,
    }
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    let h = HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let (view, view_rx) = tokio::sync::watch::channel(Arc::new(View::default()));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<api::Request>(16);
        // Every change is accepted, so that handlers run to their end.
        rt.spawn(async move {
            while let Some(r) = rx.recv().await {
                let _ = r.reply.send(Ok(()));
            }
        });
        let access = Access::from_config(&ApiConfig::default());
        Harness {
            rt,
            router: api::router(api::Api::new(view_rx, tx, access)),
            _view: view,
        }
    });
    let [m, p, body @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let path = PATHS[usize::from(*p) % PATHS.len()];
    let Ok(mut req) = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            40_000,
        ))));
    let status =
        h.rt.block_on(h.router.clone().oneshot(req))
            .map(|r| r.status())
            .unwrap_or_else(|e| match e {});
    assert_ne!(status, 500, "{method} {path} with body {body:?}");
}
