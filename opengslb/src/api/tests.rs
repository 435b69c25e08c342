use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request, StatusCode},
};

use super::access::{Access, check};
use crate::config::{ApiConfig, Secret};

fn access(allowed: &[&str], trust: bool, token: Option<&str>) -> Access {
    Access::from_config(&ApiConfig {
        allowed_networks: allowed.iter().map(|n| n.parse().unwrap()).collect(),
        trust_proxy_headers: trust,
        token: token.map(Secret::new),
        ..ApiConfig::default()
    })
}

fn request(method: Method, path: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn status(a: &Access, req: &Request<Body>) -> StatusCode {
    check(a, req).map_or_else(|e| e.status, |()| StatusCode::OK)
}

#[test]
fn ipv4_rules_never_match_ipv6_clients_and_mapped_clients_are_ipv4() {
    let a = access(&["0.0.0.0/0"], false, None);
    let get = |peer| status(&a, &request(Method::GET, "/api/v1/overrides", peer, &[]));
    assert_eq!(get("192.0.2.1:1"), StatusCode::OK);
    assert_eq!(get("[::1]:1"), StatusCode::FORBIDDEN);
    assert_eq!(get("[::ffff:192.0.2.1]:1"), StatusCode::OK);
    // Probes are open to all.
    let ready = request(Method::GET, "/api/v1/ready", "[2001:db8::1]:1", &[]);
    assert_eq!(status(&a, &ready), StatusCode::OK);
}

#[test]
fn proxy_headers_count_only_when_trusted() {
    // The client wrote 10.0.0.1; the proxy appended the address it saw, 203.0.113.7.
    let fwd = [("x-forwarded-for", "10.0.0.1, 203.0.113.7")];
    let req = request(Method::GET, "/api/v1/overrides", "127.0.0.1:1", &fwd);
    assert_eq!(
        status(&access(&["127.0.0.0/8"], false, None), &req),
        StatusCode::OK
    );
    assert_eq!(
        status(&access(&["127.0.0.0/8"], true, None), &req),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&access(&["203.0.113.0/24"], true, None), &req),
        StatusCode::OK
    );
    assert_eq!(
        status(&access(&["10.0.0.0/8"], true, None), &req),
        StatusCode::FORBIDDEN,
        "what the client wrote before the proxy's entry grants nothing"
    );
    let real = [("x-real-ip", "203.0.113.8")];
    let req = request(Method::GET, "/api/v1/overrides", "127.0.0.1:1", &real);
    assert_eq!(
        status(&access(&["203.0.113.0/24"], true, None), &req),
        StatusCode::OK
    );
    let junk = [("x-forwarded-for", "not-an-address")];
    let req = request(Method::GET, "/api/v1/overrides", "127.0.0.1:1", &junk);
    assert_eq!(
        status(&access(&["127.0.0.0/8"], true, None), &req),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn clients_outside_the_allowed_networks_are_refused_ipv4_and_ipv6_even_with_the_token() {
    const TOKEN: &str = "token-0123456789abcdef";
    let a = access(
        &["127.0.0.1/32", "::1/128", "10.1.0.0/16", "2001:db8:1::/48"],
        false,
        Some(TOKEN),
    );
    let bearer = format!("Bearer {TOKEN}");
    let path = "/api/v1/overwatch/backends/app.example.com/192.0.2.1/80/override";
    for (peer, want) in [
        ("127.0.0.1:1", StatusCode::OK),
        ("127.0.0.2:1", StatusCode::FORBIDDEN),
        ("10.1.2.3:1", StatusCode::OK),
        ("10.2.0.1:1", StatusCode::FORBIDDEN),
        ("192.0.2.1:1", StatusCode::FORBIDDEN),
        ("[::1]:1", StatusCode::OK),
        ("[::2]:1", StatusCode::FORBIDDEN),
        ("[2001:db8:1::5]:1", StatusCode::OK),
        ("[2001:db8:2::5]:1", StatusCode::FORBIDDEN),
        ("[fe80::1]:1", StatusCode::FORBIDDEN),
        ("[::ffff:10.1.0.1]:1", StatusCode::OK),
        ("[::ffff:192.0.2.1]:1", StatusCode::FORBIDDEN),
    ] {
        let get = request(Method::GET, "/api/v1/overrides", peer, &[]);
        assert_eq!(status(&a, &get), want, "GET from {peer}");
        let change = request(Method::POST, path, peer, &[("authorization", &bearer)]);
        assert_eq!(
            status(&a, &change),
            want,
            "a change with the token from {peer}"
        );
    }
    // Every method but GET and HEAD is a change: each needs the token, right.
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for auth in [
            &[][..],
            &[("authorization", "Bearer token-0123456789abcdeX")][..],
        ] {
            let req = request(method.clone(), path, "127.0.0.1:1", auth);
            assert_eq!(
                status(&a, &req),
                StatusCode::UNAUTHORIZED,
                "{method} {auth:?}"
            );
        }
        let req = request(
            method.clone(),
            path,
            "127.0.0.1:1",
            &[("authorization", &bearer)],
        );
        assert_eq!(status(&a, &req), StatusCode::OK, "{method} with the token");
    }
}

#[test]
fn proxy_headers_never_grant_access_unless_trusted() {
    let a = access(&["127.0.0.0/8", "::1/128"], false, None);
    let spoofs: [&[(&str, &str)]; 6] = [
        &[("x-forwarded-for", "127.0.0.1")],
        &[("x-forwarded-for", "::1")],
        &[("x-forwarded-for", "127.0.0.1, 192.0.2.9")],
        &[("x-real-ip", "127.0.0.1")],
        &[("forwarded", "for=127.0.0.1")],
        &[("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "::1")],
    ];
    for peer in ["192.0.2.9:1", "[2001:db8::9]:1", "[::ffff:192.0.2.9]:1"] {
        for headers in spoofs {
            for method in [Method::GET, Method::POST] {
                let req = request(method.clone(), "/api/v1/overrides", peer, headers);
                assert_eq!(
                    status(&a, &req),
                    StatusCode::FORBIDDEN,
                    "{method} from {peer} with {headers:?}"
                );
            }
        }
    }
    // Nor do they take access away from an allowed peer when untrusted.
    let req = request(
        Method::GET,
        "/api/v1/overrides",
        "[::1]:1",
        &[("x-forwarded-for", "192.0.2.9")],
    );
    assert_eq!(status(&a, &req), StatusCode::OK);
}

#[test]
fn changes_need_the_token_and_reads_do_not() {
    let a = access(&["127.0.0.0/8"], false, Some("token-0123456789abcdef"));
    let path = "/api/v1/overwatch/backends/app.example.com/192.0.2.1/80/override";
    let with =
        |auth: &[(&str, &str)]| status(&a, &request(Method::POST, path, "127.0.0.1:1", auth));
    assert_eq!(with(&[]), StatusCode::UNAUTHORIZED);
    assert_eq!(
        with(&[("authorization", "Bearer wrong")]),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with(&[("authorization", "token-0123456789abcdef")]),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with(&[("authorization", "Bearer token-0123456789abcdef")]),
        StatusCode::OK
    );
    let read = request(Method::GET, "/api/v1/overrides", "127.0.0.1:1", &[]);
    assert_eq!(status(&a, &read), StatusCode::OK);
    // Without a token configured, changes pass on the network rule alone.
    let open = access(&["127.0.0.0/8"], false, None);
    assert_eq!(
        status(&open, &request(Method::POST, path, "127.0.0.1:1", &[])),
        StatusCode::OK
    );
}

#[test]
fn the_openapi_document_covers_every_route_with_json_errors() {
    use utoipa::OpenApi as _;
    let doc: serde_json::Value =
        serde_json::from_str(&super::ApiDoc::openapi().to_json().unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let routes = [
        ("get", "/api/v1/ready"),
        ("get", "/api/v1/live"),
        ("get", "/api/v1/version"),
        ("get", "/api/v1/health/servers"),
        ("get", "/api/v1/health/regions"),
        ("get", "/api/v1/overwatch/backends"),
        (
            "post",
            "/api/v1/overwatch/backends/{service}/{address}/{port}/override",
        ),
        (
            "delete",
            "/api/v1/overwatch/backends/{service}/{address}/{port}/override",
        ),
        ("get", "/api/v1/overwatch/stats"),
        ("get", "/api/v1/overwatch/latency"),
        ("post", "/api/v1/overwatch/latency"),
        ("get", "/api/v1/overwatch/agents"),
        ("get", "/api/v1/overwatch/agents/{id}"),
        ("get", "/api/v1/cluster/status"),
        ("get", "/api/v1/overrides"),
        ("get", "/api/v1/overrides/{service}/{address}"),
        ("put", "/api/v1/overrides/{service}/{address}"),
        ("delete", "/api/v1/overrides/{service}/{address}"),
        ("get", "/api/v1/dns/explain"),
        ("post", "/api/v1/overwatch/validate"),
        ("get", "/api/v1/domains"),
        ("post", "/api/v1/domains"),
        ("get", "/api/v1/domains/{name}"),
        ("put", "/api/v1/domains/{name}"),
        ("delete", "/api/v1/domains/{name}"),
        ("get", "/api/v1/regions"),
        ("post", "/api/v1/regions"),
        ("get", "/api/v1/regions/{name}"),
        ("put", "/api/v1/regions/{name}"),
        ("delete", "/api/v1/regions/{name}"),
        ("get", "/api/v1/servers"),
        ("post", "/api/v1/servers"),
        ("get", "/api/v1/servers/{id}"),
        ("put", "/api/v1/servers/{id}"),
        ("delete", "/api/v1/servers/{id}"),
        ("get", "/api/v1/geo/mappings"),
        ("post", "/api/v1/geo/mappings"),
        ("get", "/api/v1/geo/mappings/{cidr}"),
        ("put", "/api/v1/geo/mappings/{cidr}"),
        ("delete", "/api/v1/geo/mappings/{cidr}"),
        ("get", "/api/v1/servers/{service}/{address}/{port}"),
        ("put", "/api/v1/servers/{service}/{address}/{port}"),
        ("delete", "/api/v1/servers/{service}/{address}/{port}"),
        ("get", "/api/v1/geo/test"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        routes.len()
    );
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        for (code, response) in op["responses"].as_object().unwrap() {
            // 4xx only: `ready` answers 503 with its own body, by design.
            if code.starts_with('4') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {code}"
                );
            }
        }
        if method != "get" {
            assert_eq!(
                op["security"][0]["bearer"],
                serde_json::json!([]),
                "{method} {path}"
            );
        }
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["required"];
    assert_eq!(*error, serde_json::json!(["error", "message"]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
