//! The hub's rate limits, each keyed so that one client cannot spend another's allowance.
//! All are kept in this process's memory: with several hub processes, each counts on its own.
//!
//! | limit | key | default |
//! |---|---|---|
//! | browser-facing requests | client address (IPv6: /64) | `--browser-rate` a second, bursts of twice as many |
//! | new subscriptions | browser session | `--new-subscriptions-per-session` an hour |
//! | new subscriptions | client address (IPv6: /64) | `--new-subscriptions-per-address` an hour |
//! | admin logins | client address (IPv6: /64) | five a minute |
//! | admin logins with a device cookie | that cookie | five a minute |
//!
//! The admin login limit cannot lock the admin out: a browser that logged in before holds a
//! signed device cookie, and its attempts are counted apart from its address's, so an
//! attacker who exhausts an address's attempts (behind the same NAT, say) does not stop it.

use super::ApiError;
use crate::config::Config;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use tidings_wire::client_ip::bucket;

/// Admin login attempts allowed a minute per address or device.
const LOGINS_PER_MINUTE: u32 = 5;

/// Every limiter.
pub struct Limits {
    browser: DefaultKeyedRateLimiter<IpAddr>,
    new_by_session: DefaultKeyedRateLimiter<String>,
    new_by_address: DefaultKeyedRateLimiter<IpAddr>,
    login_by_address: DefaultKeyedRateLimiter<IpAddr>,
    login_by_device: DefaultKeyedRateLimiter<String>,
}

/// How long until a refused request would be let through.
fn wait(until: &NotUntil<<DefaultClock as governor::clock::Clock>::Instant>) -> std::time::Duration {
    until.wait_time_from(DefaultClock::default().now())
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least 1")
}

impl Limits {
    /// The limits `config` asks for.
    pub fn new(config: &Config) -> Self {
        let rate = at_least_one(config.browser_rate);
        let browser =
            Quota::per_second(rate).allow_burst(at_least_one(config.browser_rate.saturating_mul(2)));
        let hourly = |n: u32| Quota::per_hour(at_least_one(n)).allow_burst(at_least_one(n));
        let logins = Quota::per_minute(at_least_one(LOGINS_PER_MINUTE));
        Self {
            browser: governor::RateLimiter::keyed(browser),
            new_by_session: governor::RateLimiter::keyed(hourly(config.new_per_session)),
            new_by_address: governor::RateLimiter::keyed(hourly(config.new_per_address)),
            login_by_address: governor::RateLimiter::keyed(logins),
            login_by_device: governor::RateLimiter::keyed(logins),
        }
    }

    /// Counts a browser-facing request from `client`.
    pub fn browser(&self, client: IpAddr) -> Result<(), ApiError> {
        self.browser.check_key(&bucket(client)).map_err(|until| {
            ApiError::too_many("rate_limited", "too many requests; try again in a second", wait(&until))
        })
    }

    /// Counts a new subscription from `session` at `client`: both allowances must have room.
    pub fn new_subscription(&self, session: &str, client: IpAddr) -> Result<(), ApiError> {
        let refuse = |who: &str, until: NotUntil<_>| {
            let message = format!("this {who} registered too many new subscriptions; try again later");
            ApiError::too_many("too_many_subscriptions", message, wait(&until))
        };
        // The session first: a session over its cap does not spend its address's allowance.
        self.new_by_session.check_key(&session.to_owned()).map_err(|u| refuse("session", u))?;
        self.new_by_address.check_key(&bucket(client)).map_err(|u| refuse("address", u))
    }

    /// Counts an admin login attempt: against the device cookie's allowance when the
    /// browser has a valid one, else against the address's. Whether it may go on.
    pub fn admin_login(&self, device: Option<&str>, client: IpAddr) -> bool {
        match device {
            Some(device) => self.login_by_device.check_key(&device.to_owned()).is_ok(),
            None => self.login_by_address.check_key(&bucket(client)).is_ok(),
        }
    }

    /// Forgets keys that have been idle long enough to be back at a full allowance.
    pub fn retain_recent(&self) {
        self.browser.retain_recent();
        self.new_by_session.retain_recent();
        self.new_by_address.retain_recent();
        self.login_by_address.retain_recent();
        self.login_by_device.retain_recent();
    }
}
