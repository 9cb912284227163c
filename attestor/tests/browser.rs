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

#[path = "support/mod.rs"]
mod support;

#[path = "portal/fixtures.rs"]
mod fixtures;

mod browser {
    pub mod harness;
    mod scenarios;
}
