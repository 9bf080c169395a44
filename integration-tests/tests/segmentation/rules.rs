//! Custom segments end to end: a rule over customer features fills its segment at once and keeps it current as
//! orders and consents arrive through ingestion, with reasons, events and history; bad rules and requests are
//! refused with the field and the rule's line and column; tenants never see each other's segments.

use boomerang_proto::events::WatchEventsRequest;
use boomerang_proto::ingestion as ipb;
use boomerang_proto::segmentation as pb;
use boomerang_testkit::authed;
use chrono::Datelike;
use futures::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

use crate::env::{Env, WAIT, external_id, has, order, start};
use ipb::OrderStatus::Paid;

impl Env {
    async fn create_segment(
        &self,
        tenant: &str,
        id: &str,
        rule: &str,
    ) -> Result<pb::Segment, tonic::Status> {
        self.segments()
            .create_segment(authed(
                &self.reader_token(tenant),
                pb::CreateSegmentRequest {
                    parent: format!("tenants/{tenant}"),
                    segment_id: id.into(),
                    segment: Some(pb::Segment {
                        display_name: format!("{id} (test)"),
                        rule: rule.into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn update_rule(
        &self,
        tenant: &str,
        id: &str,
        rule: &str,
    ) -> Result<pb::Segment, tonic::Status> {
        self.segments()
            .update_segment(authed(
                &self.reader_token(tenant),
                pb::UpdateSegmentRequest {
                    segment: Some(pb::Segment {
                        name: format!("tenants/{tenant}/segments/{id}"),
                        rule: rule.into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["rule".into()],
                    }),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn preview(
        &self,
        tenant: &str,
        rule: &str,
    ) -> Result<pb::PreviewSegmentResponse, tonic::Status> {
        self.segments()
            .preview_segment(authed(
                &self.reader_token(tenant),
                pb::PreviewSegmentRequest {
                    parent: format!("tenants/{tenant}"),
                    rule: rule.into(),
                    sample_size: 0,
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn delete_segment(&self, tenant: &str, id: &str) -> Result<(), tonic::Status> {
        self.segments()
            .delete_segment(authed(
                &self.reader_token(tenant),
                pb::DeleteSegmentRequest {
                    name: format!("tenants/{tenant}/segments/{id}"),
                },
            ))
            .await
            .map(|_| ())
    }
}

/// The field violations of an INVALID_ARGUMENT status: (field, description).
fn violations(status: tonic::Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_segment_follows_its_rule_live() {
    let env = start(None).await;
    let rule = r#"frequency >= 2 && first_order_channel == "web" && email_marketing"#;
    // Created before any customer exists: empty, and listed with its rule.
    let created = env
        .create_segment("acme", "web-regulars", rule)
        .await
        .unwrap();
    assert_eq!(created.member_count, 0);
    assert_eq!(created.family, pb::SegmentFamily::Custom as i32);
    assert_eq!(created.rule, rule);

    let mut events = env
        .segments()
        .watch_events(authed(
            &env.reader_token("acme"),
            WatchEventsRequest {
                after_position: 0,
                tenants: vec!["acme".into()],
                type_prefixes: vec!["segment.".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Ann buys twice on the web; Bob once. Only Ann qualifies, once she opts in to email.
    env.orders(
        "acme",
        &[
            ("ANN-1", "ANN", 40, 2_000, Paid),
            ("ANN-2", "ANN", 10, 3_000, Paid),
            ("BOB-1", "BOB", 5, 9_000, Paid),
        ],
    )
    .await;
    let ann = env.customer("acme", "ANN").await;
    let bob = env.customer("acme", "BOB").await;
    env.wait_for("acme", &ann, "Ann new", |s| has(s, "lifecycle-new"))
        .await;
    assert!(!has(&env.segments_of("acme", &ann).await.0, "web-regulars"));
    env.consent("acme", external_id("ANN"), ipb::ConsentChannel::Email, true)
        .await;
    env.consent("acme", external_id("BOB"), ipb::ConsentChannel::Email, true)
        .await;
    env.wait_for("acme", &ann, "Ann in web-regulars", |s| {
        has(s, "web-regulars")
    })
    .await;
    let member = env
        .segments()
        .is_member(authed(
            &env.reader_token("acme"),
            pb::IsMemberRequest {
                segment: "tenants/acme/segments/web-regulars".into(),
                customer: bob.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!member.member, "Bob has one order");
    let members = env
        .segments()
        .list_segment_members(authed(
            &env.reader_token("acme"),
            pb::ListSegmentMembersRequest {
                segment: "tenants/acme/segments/web-regulars".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].external_id, "ANN");
    assert_eq!(
        members[0].reason,
        r#"rule holds: frequency = 2, first_order_channel = "web", email_marketing = true"#
    );
    let explained = env.explain("acme", &ann).await;
    let values = explained.features.unwrap().rule_values;
    assert_eq!(values["frequency"], "2");
    assert_eq!(values["recency_days"], "10");
    assert_eq!(
        values["p_alive"], "none",
        "no model is fitted for two customers"
    );

    // Ann opts out: she leaves, and the reason says why.
    env.consent(
        "acme",
        external_id("ANN"),
        ipb::ConsentChannel::Email,
        false,
    )
    .await;
    env.wait_for("acme", &ann, "Ann out", |s| !has(s, "web-regulars"))
        .await;
    let stay = env
        .explain("acme", &ann)
        .await
        .history
        .into_iter()
        .find(|h| h.segment.ends_with("/web-regulars"))
        .unwrap();
    assert_eq!(
        stay.exit_reason,
        r#"rule no longer holds: frequency = 2, first_order_channel = "web", email_marketing = false"#
    );
    let ann_id: i64 = ann.rsplit('/').next().unwrap().parse().unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let chunk = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for event in chunk.events {
            let payload: pb::SegmentMembershipsChanged = event.payload.unwrap().to_msg().unwrap();
            for change in payload
                .changes
                .iter()
                .filter(|c| c.segment == "web-regulars")
            {
                assert_eq!(change.customer_id, ann_id);
                seen.push(event.r#type.clone());
            }
        }
    }
    assert_eq!(seen, ["segment.entered", "segment.exited"]);

    // A preview counts without saving; a new rule re-evaluates everyone at once.
    let preview = env
        .preview("acme", "frequency >= 1 && email_marketing")
        .await
        .unwrap();
    assert_eq!(
        (preview.matching_customers, preview.evaluated_customers),
        (1, 2)
    );
    assert_eq!(preview.sample[0].external_id, "BOB");
    let recent = env.preview("acme", "recency_days > 7").await.unwrap();
    assert_eq!(recent.matching_customers, 1, "Ann, 10 days");
    let updated = env
        .update_rule("acme", "web-regulars", "frequency >= 1 && email_marketing")
        .await
        .unwrap();
    assert_eq!(updated.member_count, 1);
    assert_eq!(
        updated.display_name, "web-regulars (test)",
        "the mask kept it"
    );
    env.wait_for("acme", &bob, "Bob in", |s| has(s, "web-regulars"))
        .await;

    // Deleted: Bob leaves, the segment is no longer listed, its history stays under its name.
    let before_delete = chrono::Utc::now();
    env.delete_segment("acme", "web-regulars").await.unwrap();
    env.wait_for("acme", &bob, "Bob out", |s| !has(s, "web-regulars"))
        .await;
    let listed = env
        .segments()
        .list_segments(authed(
            &env.reader_token("acme"),
            pb::ListSegmentsRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .segments;
    assert!(!listed.iter().any(|s| s.name.ends_with("/web-regulars")));
    let last = env.explain("acme", &bob).await.history;
    let stay = last
        .iter()
        .find(|h| h.segment.ends_with("/web-regulars"))
        .unwrap();
    assert_eq!(stay.exit_reason, "segment deleted");
    assert_eq!(
        env.delete_segment("acme", "web-regulars")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // The id is free again, for a new segment.
    let again = env
        .create_segment("acme", "web-regulars", "frequency >= 1")
        .await
        .unwrap();
    // Members as of a time the first one existed are still its members, under the name it had then.
    assert_eq!(
        env.members("acme", "web-regulars", Some(before_delete))
            .await,
        ["BOB"]
    );
    // The members export as of that time says the same.
    let mut csv = Vec::new();
    boomerang_segmentation::export::members(
        &env.segmentation_pool,
        "acme",
        "web-regulars",
        Some(before_delete),
        &mut csv,
    )
    .await
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let members: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(members, ["BOB"], "{csv}");
    assert_eq!(again.member_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_from_ingestion_reach_the_rules() {
    let env = start(None).await;
    let mut first = order("CAT-1", "CAT", 30, 8_000, Paid);
    first.channel = ipb::Channel::Store as i32;
    first.lines = vec![
        ipb::OrderLine {
            sku: "S-1".into(),
            category: "socks".into(),
            quantity: 2,
            unit_price: Some(ipb::Money {
                currency_code: "EUR".into(),
                minor_units: 500,
            }),
        },
        ipb::OrderLine {
            sku: "B-1".into(),
            category: "boots".into(),
            quantity: 1,
            unit_price: Some(ipb::Money {
                currency_code: "EUR".into(),
                minor_units: 7_000,
            }),
        },
    ];
    env.ingest_orders("acme", vec![first, order("CAT-2", "CAT", 2, 1_000, Paid)])
        .await;
    // Born in a leap year, so that any day of the year exists: the birthday is five days away.
    let today = chrono::Utc::now().date_naive();
    let soon = today + chrono::Days::new(5);
    let birth = chrono::NaiveDate::from_ymd_opt(1992, soon.month(), soon.day()).unwrap();
    env.born("acme", "CAT", &birth.to_string()).await;
    env.consent("acme", external_id("CAT"), ipb::ConsentChannel::Sms, true)
        .await;
    env.engaged("acme", "CAT", &[9, 3]).await;
    let cat = env.customer("acme", "CAT").await;
    env.create_segment(
        "acme",
        "birthday-boots",
        r#"first_order_category == "boots" && first_order_channel == "store" && days_to_birthday <= 7 && sms_marketing && !email_marketing && engagements >= 2 && days_since_engagement <= 3"#,
    )
    .await
    .unwrap();
    env.wait_for("acme", &cat, "Cat in birthday-boots", |s| {
        has(s, "birthday-boots")
    })
    .await;
    let values = env
        .explain("acme", &cat)
        .await
        .features
        .unwrap()
        .rule_values;
    assert_eq!(
        values["first_order_category"], "\"boots\"",
        "the largest line"
    );
    assert_eq!(values["days_to_birthday"], "5");
    assert_eq!(
        (
            values["engagements"].as_str(),
            values["days_since_engagement"].as_str()
        ),
        ("2", "3")
    );
    assert_eq!(values["average_order_value"], "4500");
    assert_eq!(
        values["age_years"],
        today.years_since(birth).unwrap().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_and_requests_are_refused_and_tenants_stay_apart() {
    let env = start(None).await;
    let err = env
        .create_segment("acme", "vip", "frequency >")
        .await
        .unwrap_err();
    let found = violations(err);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "segment.rule");
    assert!(found[0].1.starts_with("1:12: Syntax error"), "{found:?}");
    let err = env
        .create_segment("acme", "rfm-mine", "recncy_days < 30")
        .await
        .unwrap_err();
    assert_eq!(
        violations(err),
        [
            (
                "segment_id".to_owned(),
                "must not start with \"rfm-\", which built-in segments use".to_owned()
            ),
            (
                "segment.rule".to_owned(),
                "1:1: unknown feature `recncy_days`; did you mean `recency_days`?".to_owned()
            )
        ]
    );
    // A name Postgres cannot store, and a rule as deep as its length allows (a chain of 2 040 additions, which
    // would overflow a worker's stack in the parser): both refused, and the server goes on answering.
    let deep = format!("{} > 0", vec!["1"; 2_040].join("+"));
    let err = env
        .segments()
        .create_segment(authed(
            &env.reader_token("acme"),
            pb::CreateSegmentRequest {
                parent: "tenants/acme".into(),
                segment_id: "deep".into(),
                segment: Some(pb::Segment {
                    display_name: "Deep\0".into(),
                    rule: deep,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    let found = violations(err);
    assert_eq!(
        found.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        ["segment.display_name", "segment.rule"]
    );
    assert!(
        found[1].1.contains("the rule nests deeper than 100 levels"),
        "{found:?}"
    );
    let err = env
        .preview("acme", "monetary > \"lots\"")
        .await
        .unwrap_err();
    assert_eq!(violations(err)[0].0, "rule");
    let listed = |tenant: &'static str| {
        let env = &env;
        async move {
            env.segments()
                .list_segments(authed(
                    &env.reader_token(tenant),
                    pb::ListSegmentsRequest {
                        parent: format!("tenants/{tenant}"),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .segments
                .into_iter()
                .filter(|s| s.family == pb::SegmentFamily::Custom as i32)
                .count()
        }
    };
    assert_eq!(listed("acme").await, 0, "nothing was created");

    // One id per tenant: a retry is refused, not doubled. Another tenant may use the same id for its own rule.
    env.orders("acme", &[("A-1", "ANN", 3, 100, Paid)]).await;
    env.orders(
        "globex",
        &[("G-1", "GUS", 3, 100, Paid), ("G-2", "GIL", 3, 100, Paid)],
    )
    .await;
    // The rules see the customers once segmentation has their features.
    for (tenant, person) in [("acme", "ANN"), ("globex", "GUS"), ("globex", "GIL")] {
        let name = env.customer(tenant, person).await;
        env.wait_for(tenant, &name, person, |s| !s.is_empty()).await;
    }
    env.create_segment("acme", "vip", "frequency >= 1")
        .await
        .unwrap();
    assert_eq!(
        env.create_segment("acme", "vip", "frequency >= 1")
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    let globex = env
        .create_segment("globex", "vip", "frequency >= 1")
        .await
        .unwrap();
    assert_eq!(globex.member_count, 2);
    assert_eq!((listed("acme").await, listed("globex").await), (1, 1));
    let acme_members = env.members("acme", "vip", None).await;
    assert_eq!(acme_members, ["ANN"]);

    // A token for acme cannot read or change globex's segment, whether or not it exists.
    let acme_token = env.reader_token("acme");
    for name in [
        "tenants/globex/segments/vip",
        "tenants/globex/segments/nope",
    ] {
        let err = env
            .segments()
            .get_segment(authed(
                &acme_token,
                pb::GetSegmentRequest { name: name.into() },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = env
            .segments()
            .delete_segment(authed(
                &acme_token,
                pb::DeleteSegmentRequest { name: name.into() },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let err = env
        .segments()
        .create_segment(authed(
            &acme_token,
            pb::CreateSegmentRequest {
                parent: "tenants/globex".into(),
                segment_id: "mine".into(),
                segment: Some(pb::Segment {
                    rule: "true".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Built-in segments cannot be changed; unknown ones are not found.
    let err = env
        .update_rule("acme", "rfm-loyal", "true")
        .await
        .unwrap_err();
    assert_eq!(violations(err)[0].0, "segment.name");
    assert_eq!(
        env.update_rule("acme", "nope", "true")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let err = env
        .update_rule("acme", "vip", "frequency >= 1 &&")
        .await
        .unwrap_err();
    assert_eq!(violations(err)[0].0, "segment.rule");
    assert_eq!(env.members("acme", "vip", None).await, ["ANN"], "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_custom_segment_limits_a_tenant_gets_resource_exhausted() {
    let env = start(None).await;
    let refused = |says: &str| {
        let says = says.to_owned();
        let create = env.create_segment("acme", "one-more", "frequency > 1");
        async move {
            let err = create.await.unwrap_err();
            assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
            assert!(err.message().contains(&says), "{err:?}");
        }
    };
    // 200 live segments, the most a tenant may have (written directly: each would otherwise be a call).
    sqlx::query(
        "INSERT INTO custom_segments
             (tenant_id, segment, slug, display_name, description, rule, create_time, update_time)
         SELECT 'acme', 1000 + n, 'seg-' || n, 'seg', '', 'frequency > 0', now(), now()
         FROM generate_series(0, 199) AS n",
    )
    .execute(&env.segmentation_pool)
    .await
    .unwrap();
    refused("the most it may have").await;
    // A retried create of a segment that exists is told so, whatever the limits.
    assert_eq!(
        env.create_segment("acme", "seg-7", "frequency > 0")
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    // All deleted, but the last of the 16-bit ids is taken: ids are never reused, since history keeps them.
    sqlx::raw_sql(
        "UPDATE custom_segments SET delete_time = now() WHERE tenant_id = 'acme';
         UPDATE custom_segments SET segment = 32767 WHERE tenant_id = 'acme' AND slug = 'seg-199'",
    )
    .execute(&env.segmentation_pool)
    .await
    .unwrap();
    refused("it may ever create (31768, deleted ones included)").await;
    // Another tenant's ids are its own.
    env.create_segment("globex", "one-more", "frequency > 1")
        .await
        .unwrap();
}
