//! Rating, table-driven, amounts checked to the micro-USD, on both
//! backends: rounding at half a cent, plan changes mid-period, included
//! units, minimums, zero usage, late events, early closes, plans not
//! billed, and the rule that a period closed twice is a no-op.

use super::*;
use crate::both_backends;
use crate::support::{Backend, TestDb};
use cloister_attestor::billing::close::Outcome;
use cloister_attestor::billing::rating::{Draft, LineKind};
use cloister_attestor::storage::billing::InvoiceFilter;

both_backends!(
    rating_cases,
    late_events_go_on_the_next_invoice_as_their_own_line,
    early_close_ends_the_period_now_and_later_events_go_next,
    closing_twice_is_a_no_op_and_void_then_close_reissues,
    first_close_bills_older_usage_as_late_lines,
    portal_api_usage_card_projection_and_invoices,
);

/// An expected line: (kind, plan, event or "", quantity, included, amount µ$).
type Want = (LineKind, &'static str, &'static str, i64, i64, i64);

struct Case {
    name: &'static str,
    plans: &'static str,
    /// Tenant's first plan.
    plan: Plan,
    /// (plan, effective at) changes after creation.
    changes: &'static [(&'static str, &'static str)],
    /// (event, count, at).
    events: &'static [(&'static str, usize, &'static str)],
    /// None: no invoice.
    want: Option<(&'static [Want], i64)>,
}

const CREATED: &str = "2026-10-15T00:00:00Z";
const MID: &str = "2026-11-16T00:00:00Z";

fn cases() -> Vec<Case> {
    use LineKind::{Minimum, Usage};
    vec![
        Case {
            name: "zero usage, no minimum: no invoice",
            plans: "",
            plan: Plan::Pro,
            changes: &[],
            events: &[],
            want: None,
        },
        Case {
            name: "Starter at 0.01 USD",
            plans: "",
            plan: Plan::Starter,
            changes: &[],
            events: &[(V, 3, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Starter", V, 3, 0, 30_000)], 30_000)),
        },
        Case {
            name: "Enterprise 1 x 0.0025 = a quarter cent: rounds to 0",
            plans: "",
            plan: Plan::Enterprise,
            changes: &[],
            events: &[(V, 1, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Enterprise", V, 1, 0, 0)], 0)),
        },
        Case {
            name: "Enterprise 2 x 0.0025 = half a cent: rounds up to 1 cent",
            plans: "",
            plan: Plan::Enterprise,
            changes: &[],
            events: &[(V, 2, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Enterprise", V, 2, 0, 10_000)], 10_000)),
        },
        Case {
            name: "Enterprise 6 x 0.0025 = 1.5 cents: rounds to 2 cents",
            plans: "",
            plan: Plan::Enterprise,
            changes: &[],
            events: &[(V, 6, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Enterprise", V, 6, 0, 20_000)], 20_000)),
        },
        Case {
            name: "Pro 1 x 0.005 = half a cent: rounds up; downloads priced 0 still listed",
            plans: "",
            plan: Plan::Pro,
            changes: &[],
            events: &[
                (V, 1, "2026-11-02T10:00:00Z"),
                (D, 4, "2026-11-03T10:00:00Z"),
            ],
            want: Some((
                &[(Usage, "Pro", V, 1, 0, 10_000), (Usage, "Pro", D, 4, 0, 0)],
                10_000,
            )),
        },
        Case {
            name: "plan change mid-period: one line per plan segment, each at its price",
            plans: "",
            plan: Plan::Starter,
            changes: &[("Pro", MID)],
            events: &[
                (V, 2, "2026-11-05T00:00:00Z"),
                (V, 3, "2026-11-20T00:00:00Z"),
            ],
            want: Some((
                &[
                    (Usage, "Starter", V, 2, 0, 20_000),
                    (Usage, "Pro", V, 3, 0, 20_000),
                ],
                40_000,
            )),
        },
        Case {
            name: "included units: 10 a month, 12 used",
            plans: "[Pro]\nfeatures = [\"webhooks\"]\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\nincluded_units = 10\n[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n",
            plan: Plan::Pro,
            changes: &[],
            events: &[(V, 12, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Pro", V, 12, 10, 10_000)], 10_000)),
        },
        Case {
            name: "included units prorated: Pro from the 16th (15 of 30 days) includes 5",
            plans: "[Pro]\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\nincluded_units = 10\n[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n",
            plan: Plan::Starter,
            changes: &[("Pro", MID)],
            events: &[
                (V, 1, "2026-11-05T00:00:00Z"),
                (V, 7, "2026-11-20T00:00:00Z"),
            ],
            want: Some((
                &[
                    (Usage, "Starter", V, 1, 0, 10_000),
                    (Usage, "Pro", V, 7, 5, 10_000),
                ],
                20_000,
            )),
        },
        Case {
            name: "monthly minimum tops usage up",
            plans: "[Pro]\nmonthly_minimum_micros = 1000000\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\n[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n",
            plan: Plan::Pro,
            changes: &[],
            events: &[(V, 3, "2026-11-02T10:00:00Z")],
            want: Some((
                &[
                    (Usage, "Pro", V, 3, 0, 20_000),
                    (Minimum, "Pro", "", 1, 0, 980_000),
                ],
                1_000_000,
            )),
        },
        Case {
            name: "a minimum with zero usage still invoices",
            plans: "[Pro]\nmonthly_minimum_micros = 1000000\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\n[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n",
            plan: Plan::Pro,
            changes: &[],
            events: &[],
            want: Some((&[(Minimum, "Pro", "", 1, 0, 1_000_000)], 1_000_000)),
        },
        Case {
            name: "usage above the minimum: no minimum line",
            plans: "[Pro]\nmonthly_minimum_micros = 10000\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\n[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n",
            plan: Plan::Pro,
            changes: &[],
            events: &[(V, 4, "2026-11-02T10:00:00Z")],
            want: Some((&[(Usage, "Pro", V, 4, 0, 20_000)], 20_000)),
        },
        Case {
            name: "a plan that is not billed: no invoice",
            plans: "[Enterprise]\nbilled = false\n",
            plan: Plan::Enterprise,
            changes: &[],
            events: &[(V, 40, "2026-11-02T10:00:00Z")],
            want: None,
        },
        Case {
            name: "events of another month and after the watermark are not in this period",
            plans: "",
            plan: Plan::Pro,
            changes: &[],
            events: &[
                (V, 2, "2026-11-30T23:59:59Z"),
                (V, 5, "2026-12-01T00:00:00Z"),
            ],
            want: Some((&[(Usage, "Pro", V, 2, 0, 10_000)], 10_000)),
        },
    ]
}

async fn rating_cases(b: Backend) {
    for (i, case) in cases().into_iter().enumerate() {
        let db = TestDb::new(b).await;
        let s = db.open().await;
        let id = format!("tn_case{i}");
        tenant(s.as_ref(), &id, case.plan, CREATED).await;
        for (plan, at) in case.changes {
            s.billing().change_plan(&id, plan, ms(at)).await.unwrap();
        }
        for (event, n, at) in case.events {
            let event: &'static str = if *event == V { V } else { D };
            usage(s.as_ref(), &id, event, *n, at).await;
        }
        let config = config_with(case.plans);
        let r = close_at(
            s.as_ref(),
            &config,
            "2026-11",
            Some(&id),
            "2026-12-02T08:00:00Z",
            false,
        )
        .await;
        let o = outcome(&r, &id);
        match case.want {
            None => assert!(matches!(o, Outcome::NoInvoice), "{}: {o:?}", case.name),
            Some((lines, total)) => {
                let number = issued(o);
                let inv = s
                    .billing()
                    .invoice_by_number(&number)
                    .await
                    .unwrap()
                    .unwrap();
                let draft: Draft = serde_json::from_str(&inv.draft).unwrap();
                let got: Vec<Want> = draft
                    .lines
                    .iter()
                    .map(|l| {
                        (
                            l.kind,
                            leak(&l.plan),
                            leak(l.event.as_deref().unwrap_or("")),
                            l.quantity,
                            l.included_units,
                            l.amount_micros,
                        )
                    })
                    .collect();
                assert_eq!(got, lines, "{}", case.name);
                assert_eq!(draft.total_micros, total, "{}", case.name);
                assert_eq!(inv.total_micros, total, "{}", case.name);
                // The signed document says the same.
                let doc: serde_json::Value =
                    serde_json::from_str(inv.document.as_deref().unwrap()).unwrap();
                assert_eq!(doc["totalMicros"], total, "{}", case.name);
                assert_eq!(doc["lines"].as_array().unwrap().len(), lines.len());
            }
        }
        s.close().await;
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

async fn late_events_go_on_the_next_invoice_as_their_own_line(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_late", Plan::Starter, CREATED).await;
    let config = config_with("");
    usage(s.as_ref(), "tn_late", V, 4, "2026-11-10T00:00:00Z").await;
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-12-01T00:05:00Z",
        false,
    )
    .await;
    let nov = issued(outcome(&r, "tn_late"));
    let nov_doc = s
        .billing()
        .invoice_by_number(&nov)
        .await
        .unwrap()
        .unwrap()
        .document;
    // Committed after the close, dated inside November: late.
    usage(s.as_ref(), "tn_late", V, 2, "2026-11-30T23:59:58Z").await;
    usage(s.as_ref(), "tn_late", V, 3, "2026-12-05T00:00:00Z").await;
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-12",
        None,
        "2027-01-01T01:00:00Z",
        false,
    )
    .await;
    let dec = issued(outcome(&r, "tn_late"));
    let inv = s.billing().invoice_by_number(&dec).await.unwrap().unwrap();
    let draft: Draft = serde_json::from_str(&inv.draft).unwrap();
    let lines: Vec<(LineKind, i64, i64)> = draft
        .lines
        .iter()
        .map(|l| (l.kind, l.quantity, l.amount_micros))
        .collect();
    assert_eq!(
        lines,
        vec![(LineKind::Usage, 3, 30_000), (LineKind::Late, 2, 20_000)]
    );
    assert_eq!(draft.total_micros, 50_000);
    let late = &draft.lines[1];
    assert_eq!(late.from_ms, ms("2026-11-30T23:59:58.001Z"));
    assert!(
        late.description.contains("Late usage"),
        "{}",
        late.description
    );
    // The November invoice did not change.
    let again = s.billing().invoice_by_number(&nov).await.unwrap().unwrap();
    assert_eq!(again.document, nov_doc);
    assert_eq!(again.total_micros, 40_000);
    // A late event is billed once: a January close has nothing.
    let r = close_at(
        s.as_ref(),
        &config,
        "2027-01",
        None,
        "2027-02-01T01:00:00Z",
        false,
    )
    .await;
    assert!(matches!(outcome(&r, "tn_late"), Outcome::NoInvoice));
    s.close().await;
}

async fn early_close_ends_the_period_now_and_later_events_go_next(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_early", Plan::Pro, CREATED).await;
    let config = config_with("");
    usage(s.as_ref(), "tn_early", V, 4, "2026-11-10T00:00:00Z").await;
    let card = config.validate().unwrap();
    // Not ended and not early: refused, nothing recorded.
    let closer = Closer {
        storage: s.as_ref(),
        card: &card,
        config: &config,
        signer: signer(),
    };
    let err = closer
        .run(
            &CloseOptions {
                period: Period::parse("2026-11").unwrap(),
                tenant: None,
                dry_run: false,
                early: false,
            },
            ms("2026-11-20T12:00:00Z"),
            |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--early"), "{err}");
    assert!(
        s.billing()
            .closes("2026-11", None)
            .await
            .unwrap()
            .is_empty()
    );
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-11-20T12:00:00Z",
        true,
    )
    .await;
    assert!(r.early);
    let nov = issued(outcome(&r, "tn_early"));
    let doc: serde_json::Value = serde_json::from_str(
        s.billing()
            .invoice_by_number(&nov)
            .await
            .unwrap()
            .unwrap()
            .document
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["period"]["end"], "2026-11-20T12:00:00Z");
    assert_eq!(doc["period"]["early"], true);
    assert_eq!(doc["totalMicros"], 20_000);
    // Later November events and December's go on the next invoice.
    usage(s.as_ref(), "tn_early", V, 2, "2026-11-25T00:00:00Z").await;
    usage(s.as_ref(), "tn_early", V, 2, "2026-12-03T00:00:00Z").await;
    // The month-end close of November is a no-op for this tenant.
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-12-01T01:00:00Z",
        false,
    )
    .await;
    assert_eq!(issued(outcome(&r, "tn_early")), nov);
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-12",
        None,
        "2027-01-01T01:00:00Z",
        false,
    )
    .await;
    let dec = s
        .billing()
        .invoice_by_number(&issued(outcome(&r, "tn_early")))
        .await
        .unwrap()
        .unwrap();
    let draft: Draft = serde_json::from_str(&dec.draft).unwrap();
    assert_eq!(draft.start_ms, ms("2026-11-20T12:00:00Z"));
    assert_eq!(draft.lines.len(), 1);
    assert_eq!(draft.lines[0].kind, LineKind::Usage);
    assert_eq!(draft.lines[0].quantity, 4);
    assert_eq!(draft.total_micros, 20_000);
    s.close().await;
}

async fn closing_twice_is_a_no_op_and_void_then_close_reissues(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_a", Plan::Starter, CREATED).await;
    tenant(s.as_ref(), "tn_b", Plan::Pro, CREATED).await;
    tenant(s.as_ref(), "tn_idle", Plan::Pro, CREATED).await;
    usage(s.as_ref(), "tn_a", V, 1, "2026-11-03T00:00:00Z").await;
    usage(s.as_ref(), "tn_b", V, 2, "2026-11-03T00:00:00Z").await;
    let config = config_with("");
    // A dry run shows what would be issued and writes nothing.
    let card = config.validate().unwrap();
    let dry = Closer {
        storage: s.as_ref(),
        card: &card,
        config: &config,
        signer: signer(),
    }
    .run(
        &CloseOptions {
            period: Period::parse("2026-11").unwrap(),
            tenant: None,
            dry_run: true,
            early: false,
        },
        ms("2026-12-02T00:00:00Z"),
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert!(
        matches!(outcome(&dry, "tn_a"), Outcome::WouldIssue { draft } if draft.total_micros == 10_000),
        "{dry:?}"
    );
    assert!(matches!(outcome(&dry, "tn_idle"), Outcome::NoInvoice));
    assert!(
        s.billing()
            .closes("2026-11", None)
            .await
            .unwrap()
            .is_empty()
    );
    let first = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-12-02T00:00:00Z",
        false,
    )
    .await;
    let a = issued(outcome(&first, "tn_a"));
    let b_num = issued(outcome(&first, "tn_b"));
    assert!(matches!(outcome(&first, "tn_idle"), Outcome::NoInvoice));
    let mut numbers = vec![a.clone(), b_num.clone()];
    numbers.sort();
    assert_eq!(numbers, ["CLO-2026-000001", "CLO-2026-000002"]);
    let second = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-12-03T00:00:00Z",
        false,
    )
    .await;
    for (t, n) in [("tn_a", &a), ("tn_b", &b_num)] {
        assert!(
            matches!(outcome(&second, t), Outcome::Existing { number, .. } if number == n),
            "{second:?}"
        );
    }
    let all = s
        .billing()
        .invoices(&InvoiceFilter {
            include_drafts: true,
            ..InvoiceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    // Correcting: void, then close the tenant's period again → a new number.
    s.billing()
        .void_invoice(&a, "wrong price card", ms("2026-12-04T00:00:00Z"))
        .await
        .unwrap();
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        Some("tn_a"),
        "2026-12-04T01:00:00Z",
        false,
    )
    .await;
    assert!(
        matches!(outcome(&r, "tn_a"), Outcome::Issued { number, total_micros: 10_000, .. } if number == "CLO-2026-000003"),
        "{r:?}"
    );
    let voided = s.billing().invoice_by_number(&a).await.unwrap().unwrap();
    assert_eq!(voided.void_reason.as_deref(), Some("wrong price card"));
    s.close().await;
}

async fn first_close_bills_older_usage_as_late_lines(b: Backend) {
    // A tenant's first close also picks up usage from before its period
    // (billing started after the tenant did): late lines, never lost.
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_old", Plan::Starter, "2026-09-01T00:00:00Z").await;
    usage(s.as_ref(), "tn_old", V, 5, "2026-09-10T00:00:00Z").await;
    usage(s.as_ref(), "tn_old", V, 1, "2026-11-10T00:00:00Z").await;
    let r = close_at(
        s.as_ref(),
        &config_with(""),
        "2026-11",
        None,
        "2026-12-01T01:00:00Z",
        false,
    )
    .await;
    let inv = s
        .billing()
        .invoice_by_number(&issued(outcome(&r, "tn_old")))
        .await
        .unwrap()
        .unwrap();
    let draft: Draft = serde_json::from_str(&inv.draft).unwrap();
    let got: Vec<(LineKind, i64)> = draft.lines.iter().map(|l| (l.kind, l.quantity)).collect();
    assert_eq!(got, vec![(LineKind::Usage, 1), (LineKind::Late, 5)]);
    assert_eq!(draft.lines[1].from_ms, ms("2026-09-10T00:00:00.001Z"));
    assert_eq!(draft.total_micros, 60_000);
    s.close().await;
}

/// The typed API the portal calls: usage, the plan's card, the projected
/// amount of the open period, the invoice list.
async fn portal_api_usage_card_projection_and_invoices(b: Backend) {
    use cloister_attestor::billing::Billing;
    let db = TestDb::new(b).await;
    let s = db.open().await;
    tenant(s.as_ref(), "tn_portal", Plan::Pro, CREATED).await;
    tenant(s.as_ref(), "tn_other", Plan::Pro, CREATED).await;
    usage(s.as_ref(), "tn_portal", V, 2, "2026-11-05T00:00:00Z").await;
    let config = config_with("");
    let r = close_at(
        s.as_ref(),
        &config,
        "2026-11",
        None,
        "2026-12-01T01:00:00Z",
        false,
    )
    .await;
    let nov = issued(outcome(&r, "tn_portal"));
    usage(s.as_ref(), "tn_portal", V, 5, "2026-12-03T00:00:00Z").await;
    usage(s.as_ref(), "tn_portal", D, 1, "2026-12-03T00:00:00Z").await;
    usage(s.as_ref(), "tn_other", V, 9, "2026-12-03T00:00:00Z").await;
    let api = Billing::new(s.clone(), config.validate().unwrap(), config.clone());
    let (plan, card) = api.plan_card("tn_portal").await.unwrap();
    assert_eq!(plan, Plan::Pro);
    assert_eq!(card.price(V).unwrap().unit_price_micros, 5_000);
    let u = api
        .usage("tn_portal", Period::parse("2026-12").unwrap())
        .await
        .unwrap();
    assert_eq!((u[V], u[D]), (5, 1));
    let p = api
        .projection("tn_portal", ms("2026-12-10T00:00:00Z"))
        .await
        .unwrap()
        .expect("December is open");
    assert_eq!(p.period, "2026-12");
    assert_eq!(p.start_ms, ms("2026-12-01T00:00:00Z"));
    // 5 x 0.005 = 2.5 cents -> 3 cents; downloads at 0.
    assert_eq!(p.draft.total_micros, 30_000);
    let list = api.invoices("tn_portal").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].number, nov);
    assert_eq!(list[0].total_micros, 10_000);
    assert!(api.invoices("tn_other").await.unwrap().is_empty());
    assert!(
        api.invoice("tn_other", &nov).await.unwrap().is_none(),
        "tenant-scoped"
    );
    // Nothing was closed or written by the projection.
    assert!(
        s.billing()
            .closes("2026-12", None)
            .await
            .unwrap()
            .is_empty()
    );
    s.close().await;
}
