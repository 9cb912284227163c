//! Entitlements per plan, from the price card, checked where each thing is
//! used: the per-key rate limit of the caller's plan (the `Authed`
//! extractor), the monthly hard cap of a metered event (before the usage
//! commit: a refused request is not metered), and feature flags.
//!
//! A tenant's plan is read from storage and remembered for
//! `auth.cache_ttl_ms`, so a plan change made by the CLI takes effect within
//! that time (at once with the cache off). Hard caps count the tenant's
//! units this calendar month: read from storage, refreshed every
//! [`CAP_REFRESH`], and counted in memory in between with a reservation per
//! request in flight, so one attestor never lets more than the cap through.
//! Several attestors on one PostgreSQL may together overshoot by what they
//! admit within one refresh interval.

use super::card::{Feature, PlanCard, PriceCard};
use super::period::{Period, rfc3339};
use crate::clock::Clock;
use crate::http::AppError;
use crate::http::ratelimit::KeyLimiter;
use crate::storage::{Plan, Storage};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often a hard-cap count is re-read from storage.
pub const CAP_REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct CapState {
    month_start: i64,
    used: i64,
    pending: i64,
    refreshed: Instant,
}

type CapMap = Arc<Mutex<HashMap<(String, &'static str), CapState>>>;

/// The entitlement checks of one attestor.
pub struct Entitlements {
    card: PriceCard,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    plans: RwLock<HashMap<String, (Plan, Instant)>>,
    limiters: BTreeMap<String, KeyLimiter>,
    caps: CapMap,
}

impl std::fmt::Debug for Entitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entitlements").finish_non_exhaustive()
    }
}

/// A unit counted against a hard cap while its request is in flight:
/// [`CapReservation::settle`] with whether the event was recorded; dropped
/// unsettled, it is released.
#[derive(Debug)]
pub struct CapReservation {
    slot: Option<(CapMap, (String, &'static str))>,
}

impl CapReservation {
    fn none() -> Self {
        Self { slot: None }
    }

    /// The request's event was recorded (`true`) or not (a replay, a
    /// refused key, a failed commit).
    pub fn settle(mut self, recorded: bool) {
        if let Some((map, key)) = self.slot.take()
            && let Some(s) = map.lock().expect("cap lock").get_mut(&key)
        {
            s.pending -= 1;
            if recorded {
                s.used += 1;
            }
        }
    }
}

impl Drop for CapReservation {
    fn drop(&mut self) {
        if let Some((map, key)) = self.slot.take()
            && let Ok(mut m) = map.lock()
            && let Some(s) = m.get_mut(&key)
        {
            s.pending -= 1;
        }
    }
}

impl Entitlements {
    pub fn new(
        card: PriceCard,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        plan_ttl: Duration,
    ) -> Self {
        let limiters = card
            .plans()
            .filter_map(|(name, p)| {
                p.rate_limit
                    .as_ref()
                    .map(|r| (name.to_owned(), KeyLimiter::new(r.per_second, r.burst)))
            })
            .collect();
        Self {
            card,
            storage,
            clock,
            ttl: plan_ttl,
            plans: RwLock::new(HashMap::new()),
            limiters,
            caps: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn card(&self) -> &PriceCard {
        &self.card
    }

    /// The tenant's plan now (cached for the auth cache's TTL).
    pub async fn plan_of(&self, tenant_id: &str) -> Result<Plan, AppError> {
        if !self.ttl.is_zero()
            && let Some((plan, at)) = self.plans.read().expect("plan cache").get(tenant_id)
            && at.elapsed() < self.ttl
        {
            return Ok(*plan);
        }
        let tenant = self.storage.find_tenant(tenant_id).await?.ok_or_else(|| {
            AppError::Internal(format!("tenant {tenant_id} of a valid key is gone"))
        })?;
        if !self.ttl.is_zero() {
            let mut m = self.plans.write().expect("plan cache");
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(tenant_id.to_owned(), (tenant.plan, Instant::now()));
        }
        Ok(tenant.plan)
    }

    /// The card of a plan.
    pub fn plan_card(&self, plan: Plan) -> &PlanCard {
        self.card.plan(plan)
    }

    /// Takes a token from the key's bucket: the plan's limit, or `default`
    /// (the config's `rate_limit`) for a plan without one.
    pub async fn check_rate(
        &self,
        tenant_id: &str,
        key_id: &str,
        default: &KeyLimiter,
    ) -> Result<(), AppError> {
        if self.limiters.is_empty() {
            return default.check(key_id);
        }
        let plan = self.plan_of(tenant_id).await?;
        match self.limiters.get(plan.as_str()) {
            Some(l) => l.check(key_id),
            None => default.check(key_id),
        }
    }

    /// Refuses with 403 `feature_not_in_plan` unless the tenant's plan has `f`.
    pub async fn require(&self, tenant_id: &str, f: Feature) -> Result<(), AppError> {
        let plan = self.plan_of(tenant_id).await?;
        if self.card.plan(plan).has(f) {
            Ok(())
        } else {
            Err(feature_refused(plan, f))
        }
    }

    /// Reserves one unit of `event` against the tenant's monthly hard cap,
    /// or refuses with 429 `usage_cap_reached` (nothing is metered then).
    pub async fn reserve(
        &self,
        tenant_id: &str,
        event: &'static str,
    ) -> Result<CapReservation, AppError> {
        let plan = self.plan_of(tenant_id).await?;
        let Some(cap) = self
            .card
            .plan(plan)
            .price(event)
            .and_then(|p| p.hard_cap_units)
        else {
            return Ok(CapReservation::none());
        };
        let now = self.clock.now_ms();
        let month = Period::of_ms(now).map_err(|e| AppError::Internal(e.to_string()))?;
        let (start, end) = month.bounds();
        let key = (tenant_id.to_owned(), event);
        let stale = {
            let m = self.caps.lock().expect("cap lock");
            m.get(&key)
                .is_none_or(|s| s.month_start != start || s.refreshed.elapsed() >= CAP_REFRESH)
        };
        if stale {
            let used = self
                .storage
                .usage_counts(tenant_id, start, end)
                .await?
                .get(event)
                .copied()
                .unwrap_or(0);
            let mut m = self.caps.lock().expect("cap lock");
            let s = m.entry(key.clone()).or_insert(CapState {
                month_start: start,
                used,
                pending: 0,
                refreshed: Instant::now(),
            });
            if s.month_start != start {
                s.pending = 0;
            }
            s.month_start = start;
            s.used = used;
            s.refreshed = Instant::now();
        }
        let mut m = self.caps.lock().expect("cap lock");
        let s = m.get_mut(&key).expect("inserted above");
        if s.used + s.pending >= cap {
            let secs = u64::try_from((end - now).max(1000) / 1000).unwrap_or(1);
            return Err(AppError::CapReached {
                message: format!(
                    "the {} plan allows {cap} {event} per calendar month; the cap is reached until {}",
                    plan.as_str(),
                    rfc3339(end)
                ),
                retry_after_secs: secs,
            });
        }
        s.pending += 1;
        Ok(CapReservation {
            slot: Some((self.caps.clone(), key)),
        })
    }
}

/// 403 `feature_not_in_plan`.
pub fn feature_refused(plan: Plan, f: Feature) -> AppError {
    AppError::Forbidden {
        code: "feature_not_in_plan",
        message: format!("the {} plan does not include {}", plan.as_str(), f.as_str()),
    }
}
