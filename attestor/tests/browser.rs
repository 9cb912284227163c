//! The trust portal in a real browser: Debian's Chromium driven through
//! chromedriver (WebDriver, `fantoccini`) from `cargo test`. One attestor
//! and one chromedriver serve every test of this binary; each test has its
//! own browser profile and tenant. Screenshots of a failed test's pages go
//! to `target/tmp/portal-browser/<test>/`.
//!
//! Module tree:
//! - `support` (shared with `tests.rs`): test databases, keys, HTTP client.
//! - `fixtures` (shared with `tests.rs`'s `portal`): stored attestations.
//! - `browser::harness`: the shared attestor and chromedriver, one browser
//!   session per test, screenshots.
//! - `browser::scenarios`: sign-in, chips, release, download and usage;
//!   verify and the chart; sign-out; hostile data; forged forms; tenant
//!   isolation; labels and 320 px.
//! - `browser::billing_audit`: the usage chart and an invoice (closed in
//!   the setup with the billing code) downloaded as JSON and PDF; an audit
//!   engagement followed as its tenant and as its auditor, a note, sign-out.

#[path = "support/mod.rs"]
mod support;

#[path = "portal/fixtures.rs"]
mod fixtures;

mod browser {
    mod billing_audit;
    pub mod harness;
    mod scenarios;
}
