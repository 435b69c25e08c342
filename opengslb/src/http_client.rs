//! The HTTP client every outgoing request is built from (health checks, the app's metrics), on rustls
//! with the `ring` crypto provider: reqwest's default provider, aws-lc-rs, is a C library that took a
//! tenth of a fresh build.

/// A client builder with the process's TLS provider installed.
pub fn builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is already installed, by an earlier call: that one is ring too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
