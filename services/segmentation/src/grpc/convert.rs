//! Settings between the proto and the domain.

use boomerang_auth::TenantId;
use boomerang_proto::segmentation as pb;

use crate::domain::settings::{GroupRule, Settings};

pub(super) fn settings_proto(tenant: &TenantId, s: &Settings) -> pb::Settings {
    pb::Settings {
        name: format!("{}/settings", tenant.resource_name()),
        lookback_years: s.lookback_years as i32,
        non_customer_months: s.non_customer_months as i32,
        dormant_months: s.dormant_months as i32,
        share_window_months: s.share_window_months as i32,
        declining_share_percent: s.declining_share_percent as i32,
        new_days: s.new_days as i32,
        rupture_multiple: s.rupture_multiple,
        merchant_category: s.merchant_category.clone(),
        own_merchant_ids: s.own_merchant_ids.clone(),
        group_rules: s
            .group_rules
            .iter()
            .map(|r| pb::GroupRule {
                group: r.group.clone(),
                r_min: r.r[0].into(),
                r_max: r.r[1].into(),
                f_min: r.f[0].into(),
                f_max: r.f[1].into(),
                m_min: r.m[0].into(),
                m_max: r.m[1].into(),
            })
            .collect(),
        clusters: s.clusters as i32,
        cluster_seed: s.cluster_seed,
        prediction_horizon_days: s.prediction_horizon_days as i32,
        value_months: s.value_months as i32,
        monthly_discount_rate: s.monthly_discount_rate,
    }
}

/// Settings from a request; out-of-range integers become values validation refuses with the field's name.
pub(super) fn settings_from(p: &pb::Settings) -> Settings {
    let unsigned = |v: i32| u32::try_from(v).unwrap_or(0);
    let score = |v: i32| u8::try_from(v).unwrap_or(0);
    Settings {
        lookback_years: unsigned(p.lookback_years),
        non_customer_months: unsigned(p.non_customer_months),
        dormant_months: unsigned(p.dormant_months),
        share_window_months: unsigned(p.share_window_months),
        declining_share_percent: unsigned(p.declining_share_percent),
        new_days: unsigned(p.new_days),
        rupture_multiple: p.rupture_multiple,
        merchant_category: p.merchant_category.clone(),
        own_merchant_ids: p.own_merchant_ids.clone(),
        group_rules: p
            .group_rules
            .iter()
            .map(|r| GroupRule {
                group: r.group.clone(),
                r: [score(r.r_min), score(r.r_max)],
                f: [score(r.f_min), score(r.f_max)],
                m: [score(r.m_min), score(r.m_max)],
            })
            .collect(),
        clusters: unsigned(p.clusters),
        cluster_seed: p.cluster_seed,
        prediction_horizon_days: unsigned(p.prediction_horizon_days),
        value_months: unsigned(p.value_months),
        monthly_discount_rate: p.monthly_discount_rate,
    }
}
