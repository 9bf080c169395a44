//! Orders ingested through the ingestion service move customers between the built-in segments, the segment.*
//! events arrive, the history answers "as of" questions, and the Redis cache survives being lost.

use boomerang_proto::events::WatchEventsRequest;
use boomerang_proto::ingestion as ipb;
use boomerang_proto::segmentation as pb;
use boomerang_service_kit::time::to_timestamp;
use boomerang_testkit::{authed, eventually};
use chrono::Utc;
use futures::StreamExt;
use tonic_types::StatusExt;

use crate::env::{WAIT, external_id, has, order, start};
use ipb::OrderStatus::{Paid, Refunded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_move_customers_between_segments_and_the_events_and_history_follow() {
    let env = start(None).await;
    // Ann buys every month; Bob bought once eight months ago; Cat bought for the first time ten days ago.
    let mut orders: Vec<(String, &str, i64, i64, ipb::OrderStatus)> = (0..7)
        .map(|i| (format!("ANN-{i}"), "ANN", 200 - 30 * i, 1_000, Paid))
        .collect();
    orders.push(("BOB-1".into(), "BOB", 250, 1_000, Paid));
    orders.push(("CAT-1".into(), "CAT", 10, 1_000, Paid));
    let rows: Vec<_> = orders
        .iter()
        .map(|(id, c, d, a, s)| (id.as_str(), *c, *d, *a, *s))
        .collect();
    env.orders("acme", &rows).await;
    let (ann, bob, cat) = (
        env.customer("acme", "ANN").await,
        env.customer("acme", "BOB").await,
        env.customer("acme", "CAT").await,
    );
    env.wait_for("acme", &bob, "Bob dormant", |s| has(s, "lifecycle-dormant"))
        .await;
    env.wait_for("acme", &cat, "Cat new", |s| has(s, "lifecycle-new"))
        .await;
    // RFM among three: Ann has the most orders and money but two customers bought more recently than... only Cat.
    // Recency: Cat 10 days (2 worse: R4), Ann 20 days (1 worse: R2), Bob (R1). Frequency and money: Ann 4, others 1.
    env.wait_for("acme", &ann, "Ann scored", |s| has(s, "rfm-loyal-at-risk"))
        .await;
    assert_eq!(env.explain("acme", &ann).await.features.unwrap().rfm, 244);
    let grid = env
        .segments()
        .get_rfm_grid(authed(
            &env.reader_token("acme"),
            pb::GetRfmGridRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let cells: Vec<(i32, i64, &str)> = grid
        .cells
        .iter()
        .map(|c| (c.rfm, c.customers, c.group.as_str()))
        .collect();
    assert_eq!(
        cells,
        [
            (111, 1, "rfm-sleepers"),
            (244, 1, "rfm-loyal-at-risk"),
            (411, 1, "rfm-new")
        ]
    );
    assert_eq!(grid.scored_customers, 3);
    let t1 = Utc::now();

    let mut events = env
        .segments()
        .watch_events(authed(
            &env.reader_token("acme"),
            WatchEventsRequest {
                after_position: 0,
                tenants: vec!["acme".into()],
                type_prefixes: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Bob comes back: no longer dormant.
    env.orders("acme", &[("BOB-2", "BOB", 1, 3_000, Paid)])
        .await;
    env.wait_for("acme", &bob, "Bob active", |s| {
        has(s, "lifecycle-active") && !has(s, "lifecycle-dormant")
    })
    .await;
    let t2 = Utc::now();
    // The refund takes his return back.
    env.orders("acme", &[("BOB-2", "BOB", 1, 3_000, Refunded)])
        .await;
    env.wait_for("acme", &bob, "Bob dormant again", |s| {
        has(s, "lifecycle-dormant")
    })
    .await;

    let bob_id: i64 = bob.rsplit('/').next().unwrap().parse().unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&("segment.exited".to_owned(), "lifecycle-active".to_owned())) {
        let chunk = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for event in chunk.events {
            let payload: pb::SegmentMembershipsChanged = event.payload.unwrap().to_msg().unwrap();
            for change in payload.changes.iter().filter(|c| c.customer_id == bob_id) {
                seen.push((event.r#type.clone(), change.segment.clone()));
            }
        }
    }
    for expected in [
        ("segment.entered", "lifecycle-dormant"),
        ("segment.exited", "lifecycle-dormant"),
        ("segment.entered", "lifecycle-active"),
        ("segment.exited", "lifecycle-active"),
    ] {
        assert!(
            seen.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {seen:?}"
        );
    }

    // The history answers as-of questions and says why.
    assert!(
        env.members("acme", "lifecycle-dormant", Some(t1))
            .await
            .contains(&"BOB".to_owned())
    );
    assert!(
        !env.members("acme", "lifecycle-dormant", Some(t2))
            .await
            .contains(&"BOB".to_owned())
    );
    assert_eq!(
        env.members("acme", "lifecycle-active", Some(t2)).await,
        ["ANN", "BOB"]
    );
    assert_eq!(env.members("acme", "lifecycle-new", None).await, ["CAT"]);
    let history = env.explain("acme", &bob).await.history;
    let dormant_stay = history
        .iter()
        .find(|h| h.segment.ends_with("/lifecycle-dormant") && h.exit_time.is_some())
        .unwrap();
    assert_eq!(dormant_stay.exit_reason, "moved to lifecycle-active");
    assert!(
        dormant_stay
            .enter_reason
            .starts_with("last order 250 days ago"),
        "{}",
        dormant_stay.enter_reason
    );

    let matrix = env
        .segments()
        .get_transition_matrix(authed(
            &env.reader_token("acme"),
            pb::GetTransitionMatrixRequest {
                parent: "tenants/acme".into(),
                family: pb::SegmentFamily::Lifecycle as i32,
                from_time: Some(to_timestamp(t1)),
                to_time: Some(to_timestamp(t2)),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let moved: Vec<(String, String, i64)> = matrix
        .transitions
        .into_iter()
        .map(|t| {
            let slug = |s: &str| s.rsplit('/').next().unwrap_or_default().to_owned();
            (slug(&t.from_segment), slug(&t.to_segment), t.customers)
        })
        .collect();
    assert!(
        moved.contains(&("lifecycle-dormant".into(), "lifecycle-active".into(), 1)),
        "{moved:?}"
    );
    assert!(
        moved.contains(&("lifecycle-active".into(), "lifecycle-active".into(), 1)),
        "{moved:?}"
    );

    // Sizes over time, and one customer's segments as of a time, from the history.
    let sizes = env
        .segments()
        .get_segment_sizes(authed(
            &env.reader_token("acme"),
            pb::GetSegmentSizesRequest {
                parent: "tenants/acme".into(),
                times: vec![to_timestamp(t1), to_timestamp(t2)],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .sizes;
    let lifecycle = |at: usize| {
        ["lifecycle-dormant", "lifecycle-active", "lifecycle-new"].map(|slug| {
            let name = format!("tenants/acme/segments/{slug}");
            sizes[at].sizes.get(&name).copied().unwrap_or(0)
        })
    };
    assert_eq!(lifecycle(0), [1, 1, 1], "Bob dormant, Ann active, Cat new");
    assert_eq!(lifecycle(1), [0, 2, 1], "Bob back");
    for (at, is, is_not) in [
        (t1, "lifecycle-dormant", "lifecycle-active"),
        (t2, "lifecycle-active", "lifecycle-dormant"),
    ] {
        let response = env
            .segments()
            .get_customer_segments(authed(
                &env.reader_token("acme"),
                pb::GetCustomerSegmentsRequest {
                    customer: bob.clone(),
                    as_of_time: Some(to_timestamp(at)),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let slugs: Vec<String> = response
            .segments
            .iter()
            .map(|s| s.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(response.source, "postgres");
        assert!(has(&slugs, is) && !has(&slugs, is_not), "{slugs:?}");
    }

    // The exports for an email tool: RFM as the definition scores it today, and a segment's members.
    let mut csv = Vec::new();
    let today = Utc::now().date_naive();
    boomerang_segmentation::export::rfm(&env.segmentation_pool, "acme", today, &mut csv)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "customer_id,recency_days,frequency,monetary,r,f,m,rfm,group\n\
         ANN,20,7,7000,2,4,4,244,Loyal at Risk\n\
         BOB,250,1,1000,1,1,1,111,Sleepers\n\
         CAT,10,1,1000,4,1,1,411,New\n"
    );
    let mut csv = Vec::new();
    boomerang_segmentation::export::members(
        &env.segmentation_pool,
        "acme",
        "lifecycle-dormant",
        None,
        &mut csv,
    )
    .await
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "customer_id,segment,enter_time,reason");
    assert!(lines[1].starts_with("BOB,lifecycle-dormant,"), "{csv}");
    assert!(
        lines[1].ends_with(",last order 250 days ago (dormant after 6 months)"),
        "{csv}"
    );
    assert_eq!(lines.len(), 2);

    // Erasure takes the customer out of every segment and deletes its history.
    env.erase("acme", &cat).await;
    env.wait_for("acme", &cat, "Cat erased", |s| s.is_empty())
        .await;
    assert!(env.explain("acme", &cat).await.history.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_gives_the_survivor_the_merged_customers_orders_and_consent() {
    let env = start(None).await;
    let ada_email = ipb::Identifier {
        kind: ipb::IdentifierKind::Email as i32,
        value: "ada@example.com".into(),
        namespace: String::new(),
    };
    let by_email = |id: &str, days_ago: i64, amount: i64, status: ipb::OrderStatus| ipb::Order {
        customer: Some(ada_email.clone()),
        ..order(id, "", days_ago, amount, status)
    };
    // Ada, known by her retailer id, bought once 250 days ago (dormant); a shopper known only by email bought twice
    // this month (new) and agreed to marketing email.
    env.orders("acme", &[("ADA-1", "ADA", 250, 4_000, Paid)])
        .await;
    env.ingest_orders(
        "acme",
        vec![
            by_email("W-1", 20, 1_000, Paid),
            by_email("W-2", 10, 2_000, Paid),
        ],
    )
    .await;
    env.consent("acme", ada_email.clone(), ipb::ConsentChannel::Email, true)
        .await;
    let ada = env.customer("acme", "ADA").await;
    let shopper = env.customer_by("acme", ada_email.clone()).await;
    env.wait_for("acme", &ada, "Ada dormant", |s| has(s, "lifecycle-dormant"))
        .await;
    env.wait_for("acme", &shopper, "the shopper new", |s| {
        has(s, "lifecycle-new")
    })
    .await;

    // The till learns Ada's email: they are one person, and Ada, the older customer, survives.
    let survivor = env
        .upsert_customer(
            "acme",
            ipb::CustomerRecord {
                identifiers: vec![external_id("ADA"), ada_email.clone()],
                ..Default::default()
            },
        )
        .await;
    assert_eq!(survivor, ada);
    env.wait_for("acme", &ada, "Ada active with all her orders", |s| {
        has(s, "lifecycle-active")
    })
    .await;
    env.wait_for("acme", &shopper, "the shopper gone", |s| s.is_empty())
        .await;
    let features = env.explain("acme", &ada).await.features.unwrap();
    assert_eq!(
        (
            features.frequency,
            features.monetary_minor,
            features.first_order_date.clone()
        ),
        (
            3,
            7_000,
            (Utc::now() - chrono::Duration::days(250))
                .date_naive()
                .to_string()
        ),
        "{features:?}"
    );
    assert_eq!(features.rule_values["email_marketing"], "true");
    // The shopper's memberships are history now, each closed by the merge.
    let ada_id = ada.rsplit('/').next().unwrap();
    let history = env.explain("acme", &shopper).await.history;
    assert!(
        history
            .iter()
            .any(|m| m.segment.ends_with("/lifecycle-new")),
        "{history:?}"
    );
    for membership in &history {
        assert!(membership.exit_time.is_some(), "{membership:?}");
        assert_eq!(
            membership.exit_reason,
            format!("merged into customer {ada_id}")
        );
    }
    // An order the shopper placed before the merge now changes Ada: its refund takes it out of her features.
    env.ingest_orders("acme", vec![by_email("W-2", 10, 2_000, Refunded)])
        .await;
    eventually(WAIT, "the refund in Ada's features", || async {
        let features = env.explain("acme", &ada).await.features.unwrap();
        ((features.frequency, features.monetary_minor) == (2, 5_000)).then_some(())
    })
    .await;
    assert!(env.explain("acme", &shopper).await.features.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompute_from_the_kept_copy_reads_only_what_changed_and_leaves_nothing_to_fix() {
    let env = start(None).await;
    let people = ["ANN", "BOB", "CAT", "DAN", "FAY", "GIL"];
    let orders: Vec<(String, &str, i64, i64, ipb::OrderStatus)> = people
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("{p}-1"), *p, 20 + 60 * i as i64, 1_000, Paid))
        .collect();
    let rows: Vec<_> = orders
        .iter()
        .map(|(id, c, d, a, s)| (id.as_str(), *c, *d, *a, *s))
        .collect();
    env.orders("acme", &rows).await;
    let mut names = Vec::new();
    for person in people {
        let name = env.customer("acme", person).await;
        env.wait_for("acme", &name, person, |s| !s.is_empty()).await;
        names.push(name);
    }
    // The recompute that leaves the service holding the tenant's customers in memory.
    env.recompute(&env.segmentation, "acme").await;

    // Then: Ann buys again (new features), Bob and Cat are erased (their rows go), Eve arrives (a new row).
    env.orders(
        "acme",
        &[
            ("ANN-2", "ANN", 0, 9_000, Paid),
            ("EVE-1", "EVE", 3, 500, Paid),
        ],
    )
    .await;
    for erased in &names[1..3] {
        env.erase("acme", erased).await;
        env.wait_for("acme", erased, "erased", |s| s.is_empty())
            .await;
    }
    let eve = env.customer("acme", "EVE").await;
    env.wait_for("acme", &eve, "Eve", |s| has(s, "lifecycle-new"))
        .await;
    let ann: i64 = names[0].rsplit('/').next().unwrap().parse().unwrap();
    eventually(WAIT, "Ann's second order in her features", || async {
        let frequency: i32 =
            sqlx::query_scalar("SELECT frequency FROM features WHERE customer_id = $1")
                .bind(ann)
                .fetch_one(&env.segmentation_pool)
                .await
                .unwrap();
        (frequency == 2).then_some(())
    })
    .await;

    // Only the changed customers are read again (fewer, if a scheduled model fit caught the copy up first), and
    // the recompute and a preview after it see the tenant as it is now.
    let kept = env.recompute(&env.segmentation, "acme").await;
    assert_eq!(
        kept.customers_evaluated, 5,
        "four of the first six, and Eve"
    );
    assert!(kept.customers_read <= 4, "{kept:?}");
    let preview = env
        .segments()
        .preview_segment(authed(
            &env.reader_token("acme"),
            pb::PreviewSegmentRequest {
                parent: "tenants/acme".into(),
                rule: "frequency >= 2 || monetary < 600".into(),
                sample_size: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let sample: Vec<&str> = preview
        .sample
        .iter()
        .map(|m| m.external_id.as_str())
        .collect();
    assert_eq!(sample, ["ANN", "EVE"]);
    assert_eq!(preview.evaluated_customers, 5);
    // The copy took what the recompute stored: the next one has nothing to do.
    let again = env.recompute(&env.segmentation, "acme").await;
    assert_eq!(
        (
            again.customers_read,
            again.memberships_entered,
            again.memberships_exited,
            again.customers_updated
        ),
        (0, 0, 0, 0),
        "{again:?} after {kept:?}"
    );
    // A process with nothing in memory reads every customer and finds nothing the kept copy got wrong: the
    // same boundaries, the same memberships, the same stored evaluations.
    let other = env.another_segmentation().await;
    let cold = env.recompute(&other, "acme").await;
    assert_eq!(cold.customers_evaluated, 5);
    assert_eq!(
        (
            cold.memberships_entered,
            cold.memberships_exited,
            cold.customers_updated
        ),
        (0, 0, 0),
        "{cold:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cache_falls_back_to_postgres_and_is_rebuilt() {
    let env = start(None).await;
    env.orders(
        "acme",
        &[
            ("D-1", "DAN", 30, 500, Paid),
            ("E-1", "EVE", 400, 500, Paid),
        ],
    )
    .await;
    let dan = env.customer("acme", "DAN").await;
    env.wait_for("acme", &dan, "Dan scored", |s| {
        has(s, "lifecycle-new") && s.len() == 2
    })
    .await;
    let (expected, _) = env.segments_of("acme", &dan).await;

    // Redis loses everything of the tenant (a flush, an eviction, a failover to an empty replica).
    let client = redis::Client::open(boomerang_testkit::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", env.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.ends_with(":ready")), "{keys:?}");
    redis::cmd("DEL")
        .arg(&keys)
        .exec_async(&mut redis)
        .await
        .unwrap();

    // The answer stays right: from Postgres at once, from the rebuilt cache soon after.
    let (segments, source) = env.segments_of("acme", &dan).await;
    assert_eq!(segments, expected);
    assert_eq!(source, "postgres");
    env.wait_for("acme", &dan, "the cache to be rebuilt", |s| {
        s == expected.as_slice()
    })
    .await;

    // A half-built cache is never served: with the marker missing, members in the cache do not count.
    let ready: String = keys.iter().find(|k| k.ends_with(":ready")).unwrap().clone();
    redis::cmd("DEL")
        .arg(&ready)
        .exec_async(&mut redis)
        .await
        .unwrap();
    let (_, source) = env.segments_of("acme", &dan).await;
    assert_eq!(source, "postgres");

    // With Redis unreachable, a second segmentation deployment still answers from Postgres.
    let down = start(Some("redis://127.0.0.1:1")).await;
    down.orders("acme", &[("F-1", "FAY", 3, 700, Paid)]).await;
    let fay = down.customer("acme", "FAY").await;
    let segments = eventually(WAIT, "Fay to be segmented", || async {
        let (segments, source) = down.segments_of("acme", &fay).await;
        assert_eq!(source, "postgres");
        // Alone in her tenant, Fay is both best and worst on every dimension: RFM 111, a Sleeper.
        (segments.len() == 2).then_some(segments)
    })
    .await;
    assert_eq!(segments, ["lifecycle-new", "rfm-sleepers"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let env = start(None).await;
    env.orders("acme", &[("A-1", "SAME", 5, 100, Paid)]).await;
    env.orders("globex", &[("G-1", "SAME", 300, 100, Paid)])
        .await;
    let acme = env.customer("acme", "SAME").await;
    let globex = env.customer("globex", "SAME").await;
    env.wait_for("acme", &acme, "acme's customer", |s| {
        has(s, "lifecycle-new")
    })
    .await;
    env.wait_for("globex", &globex, "globex's customer", |s| {
        has(s, "lifecycle-dormant")
    })
    .await;
    assert_eq!(env.members("acme", "lifecycle-new", None).await, ["SAME"]);
    assert!(
        env.members("acme", "lifecycle-dormant", None)
            .await
            .is_empty()
    );
    assert!(
        env.members("globex", "lifecycle-new", None)
            .await
            .is_empty()
    );

    // A globex token cannot read acme's customer or segments; the refusal does not depend on existence.
    let token = env.reader_token("globex");
    for customer in [acme.clone(), "tenants/acme/customers/999999".into()] {
        let err = env
            .segments()
            .get_customer_segments(authed(
                &token,
                pb::GetCustomerSegmentsRequest {
                    customer,
                    as_of_time: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
    let err = env
        .segments()
        .recompute(authed(
            &token,
            pb::RecomputeRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Mixing tenants in one request is refused.
    let err = env
        .segments()
        .is_member(authed(
            &env.segmentation.token(&["*"], &["segmentation.read"]),
            pb::IsMemberRequest {
                segment: "tenants/globex/segments/lifecycle-new".into(),
                customer: acme.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_alone_moves_a_customer_through_its_due_date() {
    let env = start(None).await;
    // The last order is one day short of six months old: active today, dormant tomorrow.
    let six_months_ago = Utc::now().date_naive() - chrono::Months::new(6);
    let days = (Utc::now().date_naive() - six_months_ago).num_days() - 1;
    env.orders("acme", &[("G-1", "GUS", days, 100, Paid)]).await;
    let gus = env.customer("acme", "GUS").await;
    // Active, and scored by the tenant's first recompute (which rewrites his row: the test changes it only after).
    env.wait_for("acme", &gus, "Gus active and scored", |s| {
        has(s, "lifecycle-active") && s.iter().any(|x| x.starts_with("rfm-"))
    })
    .await;
    let due = env.explain("acme", &gus).await.next_change_time.unwrap();
    let tomorrow = Utc::now()
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(due, to_timestamp(tomorrow), "due the day it turns dormant");

    // A day passes for Gus (his order and his due date move one day back) with no new event: the due sweep alone
    // moves him.
    sqlx::raw_sql(
        "UPDATE orders SET place_time = place_time - interval '1 day' WHERE order_id = 'G-1';
         UPDATE features SET due_date = due_date - 1",
    )
    .execute(&env.segmentation_pool)
    .await
    .unwrap();
    env.wait_for("acme", &gus, "Gus dormant", |s| has(s, "lifecycle-dormant"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_spend_and_buying_rhythm_reach_the_lifecycle_and_rupture_segments() {
    let env = start(None).await;
    // Nia never bought here but spends on fashion elsewhere. Deb buys here, and her fashion spend moved from acme's
    // shop (all of it, eight months ago) to others' (90 % of it, last month). Eve bought every ten days, then
    // stopped 80 days ago. Ray's only fashion transaction is a refund, which is not spend.
    env.transactions(
        "acme",
        &[
            ("T-1", "NIA", "rival", "fashion", 30, 5_000),
            ("T-6", "RAY", "rival", "fashion", 20, -500),
            ("T-2", "DEB", "acme-shop", "fashion", 250, 1_000),
            ("T-3", "DEB", "acme-shop", "fashion", 30, 100),
            ("T-4", "DEB", "rival", "fashion", 30, 900),
            ("T-5", "DEB", "grocer", "food", 30, 9_000),
        ],
    )
    .await;
    env.orders(
        "acme",
        &[
            ("D-1", "DEB", 100, 2_000, Paid),
            ("E-1", "EVE", 100, 1_000, Paid),
            ("E-2", "EVE", 90, 1_000, Paid),
            ("E-3", "EVE", 80, 1_000, Paid),
        ],
    )
    .await;
    let (nia, deb, eve) = (
        env.customer("acme", "NIA").await,
        env.customer("acme", "DEB").await,
        env.customer("acme", "EVE").await,
    );
    env.wait_for("acme", &deb, "Deb's order", |s| has(s, "lifecycle-active"))
        .await;
    // The retailer names its category and shops only once the data is in: every customer's features follow.
    assert!(
        env.explain("acme", &nia).await.features.is_some(),
        "Nia's transactions are in"
    );
    let mut settings = env.settings("acme").await;
    settings.merchant_category = "fashion".into();
    settings.own_merchant_ids = vec!["acme-shop".into()];
    env.update_settings("acme", settings).await.unwrap();
    env.wait_for("acme", &nia, "Nia a non-customer", |s| {
        has(s, "lifecycle-non-customer")
    })
    .await;
    env.wait_for("acme", &deb, "Deb declining", |s| {
        has(s, "lifecycle-declining")
    })
    .await;
    env.wait_for("acme", &eve, "Eve overdue", |s| has(s, "rupture-overdue"))
        .await;
    let ray = env.customer("acme", "RAY").await;
    eventually(WAIT, "Ray's refund in his category spend", || async {
        let features = env.explain("acme", &ray).await.features?;
        (features.rule_values["category_spend"] == "-500").then_some(())
    })
    .await;
    let (segments, _) = env.segments_of("acme", &ray).await;
    assert!(!has(&segments, "lifecycle-non-customer"), "{segments:?}");
    let reason = |explained: pb::ExplainCustomerResponse, slug: &str| {
        explained
            .history
            .into_iter()
            .find(|h| h.segment.ends_with(&format!("/{slug}")) && h.exit_time.is_none())
            .map(|h| h.enter_reason)
            .unwrap()
    };
    assert_eq!(
        reason(env.explain("acme", &deb).await, "lifecycle-declining"),
        "share of category spend fell from 100.0% to 10.0% (declining at 70% of the window before)",
        "other categories do not count"
    );
    assert_eq!(
        reason(env.explain("acme", &eve).await, "rupture-overdue"),
        "buys every 10 days, last order 80 days ago"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_fields() {
    let env = start(None).await;
    let token = env.reader_token("acme");
    let fields = |status: tonic::Status| -> Vec<String> {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status
            .get_details_bad_request()
            .expect("field violations")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect()
    };
    // ListSegmentMembers refused, its status.
    let refused_listing = |request: pb::ListSegmentMembersRequest| {
        let mut client = env.segments();
        let request = authed(&token, request);
        async move { client.list_segment_members(request).await.unwrap_err() }
    };
    // Customer 5 is named customers/5 only: other spellings of the number are not its name.
    for id in ["x", "+5", "05", "0"] {
        let err = env
            .segments()
            .get_customer_segments(authed(
                &token,
                pb::GetCustomerSegmentsRequest {
                    customer: format!("tenants/acme/customers/{id}"),
                    as_of_time: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(fields(err), ["customer"], "{id}");
    }
    // Every problem of a request is named at once.
    let err = env
        .segments()
        .get_transition_matrix(authed(
            &token,
            pb::GetTransitionMatrixRequest {
                parent: "tenants/acme".into(),
                family: 0,
                from_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                to_time: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(err), ["family", "from_time", "to_time"]);
    // A time chrono reads but Postgres cannot hold (about 5950 BC).
    let err = env
        .segments()
        .get_customer_segments(authed(
            &token,
            pb::GetCustomerSegmentsRequest {
                customer: "tenants/acme/customers/1".into(),
                as_of_time: Some(prost_types::Timestamp {
                    seconds: -250_000_000_000,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(err), ["as_of_time"]);
    let err = refused_listing(pb::ListSegmentMembersRequest {
        segment: "tenants/acme/segments/lifecycle-new".into(),
        as_of_time: None,
        page_size: -1,
        page_token: "x".into(),
    })
    .await;
    assert_eq!(fields(err), ["page_size", "page_token"]);
    let err = refused_listing(pb::ListSegmentMembersRequest {
        segment: "tenants/acme/segments/vip".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // An id no segment could have, with a NUL character Postgres cannot take, is malformed.
    let err = refused_listing(pb::ListSegmentMembersRequest {
        segment: "tenants/acme/segments/vip\0".into(),
        as_of_time: Some(to_timestamp(Utc::now())),
        ..Default::default()
    })
    .await;
    assert_eq!(fields(err), ["segment"]);
    // Nanos past a second (chrono takes them in a leap second; Postgres moves them to the next second).
    let err = refused_listing(pb::ListSegmentMembersRequest {
        segment: "tenants/acme/segments/lifecycle-new".into(),
        as_of_time: Some(prost_types::Timestamp {
            seconds: 1_767_225_659,
            nanos: 1_500_000_000,
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(fields(err), ["as_of_time"]);

    let mut settings = env.settings("acme").await;
    assert_eq!(settings.dormant_months, 6);
    settings.dormant_months = 13;
    settings.merchant_category = "fashion\0".into();
    settings.group_rules.pop();
    let err = env.update_settings("acme", settings).await.unwrap_err();
    assert_eq!(
        fields(err),
        [
            "settings.non_customer_months",
            "settings.merchant_category",
            "settings.group_rules"
        ]
    );
    let stored = env.settings("acme").await;
    assert_eq!(stored.dormant_months, 6, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_pages() {
    let env = start(None).await;
    let orders: Vec<(String, String)> = (0..25)
        .map(|i| (format!("P-{i}"), format!("P{i:02}")))
        .collect();
    let rows: Vec<_> = orders
        .iter()
        .map(|(o, c)| (o.as_str(), c.as_str(), 3, 100, Paid))
        .collect();
    env.orders("acme", &rows).await;
    let last = env.customer("acme", "P24").await;
    env.wait_for("acme", &last, "the last customer", |s| {
        has(s, "lifecycle-new")
    })
    .await;
    let token = env.reader_token("acme");
    let walk = |segment: &str, as_of: Option<prost_types::Timestamp>, page_token: String| {
        let mut client = env.segments();
        let request = authed(
            &token,
            pb::ListSegmentMembersRequest {
                segment: format!("tenants/acme/segments/{segment}"),
                as_of_time: as_of,
                page_size: 10,
                page_token,
            },
        );
        async move { client.list_segment_members(request).await }
    };
    let page = |segment: &str, page_token: String| walk(segment, None, page_token);
    let mut all = Vec::new();
    let mut page_token = String::new();
    let mut tokens = Vec::new();
    loop {
        let page = page("lifecycle-new", page_token)
            .await
            .unwrap()
            .into_inner();
        all.extend(page.members.into_iter().map(|m| m.external_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        tokens.push(page_token.clone());
    }
    assert_eq!(tokens.len(), 2);
    all.sort();
    assert_eq!(
        all,
        orders.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()
    );
    // A page token walks only the segment and time it came from: in another, it would skip members without a word.
    let err = page("rfm-new", tokens[0].clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let now = Some(to_timestamp(Utc::now()));
    let err = walk("lifecycle-new", now, tokens[0].clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let (bare_id, _) = tokens[0].split_once('.').unwrap();
    assert_eq!(
        page("lifecycle-new", bare_id.to_owned())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::InvalidArgument
    );

    // A tenant that treats customers as new for only a day: the change applies to everyone at once.
    let mut settings = env.settings("acme").await;
    settings.new_days = 1;
    env.update_settings("acme", settings).await.unwrap();
    assert!(env.members("acme", "lifecycle-new", None).await.is_empty());
    assert_eq!(
        env.members("acme", "lifecycle-active", None).await.len(),
        25
    );
    env.wait_for("acme", &last, "the cache to follow", |s| {
        has(s, "lifecycle-active")
    })
    .await;
    let sizes = env
        .segments()
        .list_segments(authed(
            &token,
            pb::ListSegmentsRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let active = sizes
        .segments
        .iter()
        .find(|s| s.name.ends_with("/lifecycle-active"))
        .unwrap();
    assert_eq!(active.member_count, 25);
}
