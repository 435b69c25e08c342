//! Who may call a running overwatch's API, over real connections on loopback (no root needed): the API
//! listens on every address, IPv4 and IPv6, and allows 127.0.0.2 alone without trusting proxy headers.
//! Clients from 127.0.0.1 and ::1 are refused, with or without a spoofed X-Forwarded-For, X-Real-IP
//! or Forwarded header naming the allowed address, and with the token; the allowed client reads
//! freely and changes only with the right token.

mod common;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use common::{
    http::call_from,
    labs::{self, TOKEN},
    netns::TempDir,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

#[test]
fn only_allowed_clients_reach_the_api_whatever_headers_they_send_and_changes_need_the_token() {
    let dir = TempDir::new("api-access");
    let port = common::free_port();
    let listen = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let text = labs::overwatch(&dir.0, common::free_port(), listen, common::free_port(), "")
        .replace(
            "allowed_networks: [127.0.0.0/8, \"::1/128\"]\n  trust_proxy_headers: true",
            "allowed_networks: [127.0.0.2/32]\n  trust_proxy_headers: false",
        );
    assert!(text.contains("127.0.0.2/32"), "{text}");
    common::write_private(&dir.0.join("overwatch.yaml"), &text);
    let _ow = labs::spawn(bin(), &dir.0, "overwatch");
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let log = || std::fs::read_to_string(dir.0.join("overwatch.log")).unwrap_or_default();
    labs::wait_ready(v4, log);

    let allowed = Some(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)));
    let bearer = format!("Bearer {TOKEN}");
    let read = "/api/v1/overwatch/backends";
    let change = "/api/v1/overwatch/backends/app.demo.local/192.0.2.1/80/override";
    let body = Some(r#"{"healthy": false, "reason": "test"}"#);
    let spoofs: [&[(&str, &str)]; 5] = [
        &[],
        &[("X-Forwarded-For", "127.0.0.2")],
        &[("X-Forwarded-For", "127.0.0.2, 127.0.0.1")],
        &[("X-Real-IP", "127.0.0.2")],
        &[("Forwarded", "for=127.0.0.2")],
    ];
    let mut refused = 0;
    for (client, to) in [("127.0.0.1", v4), ("::1", v6)] {
        for headers in spoofs {
            let (status, answer) = call_from(None, to, "GET", read, headers, None);
            assert_eq!(status, 403, "GET from {client} with {headers:?}: {answer}");
            let mut with_token = headers.to_vec();
            with_token.push(("Authorization", &bearer));
            let (status, answer) = call_from(None, to, "POST", change, &with_token, body);
            assert_eq!(
                status, 403,
                "POST from {client} with {with_token:?}: {answer}"
            );
            refused += 2;
        }
        // Readiness is open to every client, as probes need.
        assert_eq!(
            call_from(None, to, "GET", "/api/v1/ready", &[], None).0,
            200
        );
    }

    // The allowed client: reads, and changes only with the right token.
    let (status, answer) = call_from(allowed, v4, "GET", read, &[], None);
    assert_eq!(status, 200, "GET from 127.0.0.2: {answer}");
    for auth in ["", "Bearer wrong-token-0123456789", TOKEN] {
        let (status, answer) = call_from(
            allowed,
            v4,
            "POST",
            change,
            &[("Authorization", auth)],
            body,
        );
        assert_eq!(status, 401, "POST with {auth:?}: {answer}");
    }
    let (status, answer) = call_from(
        allowed,
        v4,
        "POST",
        change,
        &[("Authorization", &bearer)],
        body,
    );
    assert_eq!(status, 200, "POST with the token: {answer}");
    let (status, answer) = call_from(
        allowed,
        v4,
        "DELETE",
        change,
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200, "DELETE with the token: {answer}");
    println!(
        "{refused} requests from 127.0.0.1 and ::1 refused (with and without spoofed proxy headers); \
         3 changes without the right token refused; 127.0.0.2 read and changed with the token"
    );
}
