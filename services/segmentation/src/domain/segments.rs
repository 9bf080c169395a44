//! The built-in segment catalogue. Each segment has a stable small id (stored in Postgres and Redis) and a slug
//! (its name in the API and in events).

use super::groups::Group;
use super::lifecycle::Lifecycle;

/// A stable small id of a built-in segment.
pub type SegmentId = i16;

/// What a segment is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    RfmGroup,
    Lifecycle,
    Rupture,
}

/// A built-in segment.
#[derive(Debug)]
pub struct SegmentDef {
    pub id: SegmentId,
    pub slug: &'static str,
    pub display_name: &'static str,
    pub family: Family,
    pub description: &'static str,
}

const fn def(
    id: SegmentId,
    slug: &'static str,
    display_name: &'static str,
    family: Family,
    description: &'static str,
) -> SegmentDef {
    SegmentDef {
        id,
        slug,
        display_name,
        family,
        description,
    }
}

/// Every built-in segment, in id order.
pub const CATALOGUE: &[SegmentDef] = &[
    def(
        1,
        "rfm-new",
        "New",
        Family::RfmGroup,
        "RFM cells the group mapping places in New",
    ),
    def(
        2,
        "rfm-about-to-sleep",
        "About to Sleep",
        Family::RfmGroup,
        "RFM cells the group mapping places in About to Sleep",
    ),
    def(
        3,
        "rfm-sleepers",
        "Sleepers",
        Family::RfmGroup,
        "RFM cells the group mapping places in Sleepers",
    ),
    def(
        4,
        "rfm-potential-loyal",
        "Potential Loyal",
        Family::RfmGroup,
        "RFM cells the group mapping places in Potential Loyal",
    ),
    def(
        5,
        "rfm-loyal",
        "Loyal",
        Family::RfmGroup,
        "RFM cells the group mapping places in Loyal",
    ),
    def(
        6,
        "rfm-loyal-at-risk",
        "Loyal at Risk",
        Family::RfmGroup,
        "RFM cells the group mapping places in Loyal at Risk",
    ),
    def(
        11,
        "lifecycle-non-customer",
        "Non-customer",
        Family::Lifecycle,
        "No eligible order for non_customer_months (or never), but category spend seen in market transactions in that time",
    ),
    def(
        12,
        "lifecycle-dormant",
        "Dormant",
        Family::Lifecycle,
        "Last eligible order dormant_months to non_customer_months ago",
    ),
    def(
        13,
        "lifecycle-declining",
        "Declining",
        Family::Lifecycle,
        "The tenant's share of the customer's category spend fell to declining_share_percent or less of the window before",
    ),
    def(
        14,
        "lifecycle-new",
        "New customer",
        Family::Lifecycle,
        "First eligible order less than new_days ago",
    ),
    def(
        15,
        "lifecycle-active",
        "Active",
        Family::Lifecycle,
        "Buying, and in no other lifecycle state",
    ),
    def(
        21,
        "rupture-overdue",
        "Overdue",
        Family::Rupture,
        "At least three purchase days, and the days since the last exceed rupture_multiple times the typical gap",
    ),
];

/// The segment with this id.
pub fn by_id(id: SegmentId) -> Option<&'static SegmentDef> {
    CATALOGUE.iter().find(|def| def.id == id)
}

/// The segment with this slug.
pub fn by_slug(slug: &str) -> Option<&'static SegmentDef> {
    CATALOGUE.iter().find(|def| def.slug == slug)
}

/// The slug of a segment id (ids only ever come from the catalogue).
pub fn slug(id: SegmentId) -> &'static str {
    by_id(id).map_or("unknown", |def| def.slug)
}

/// The ids of a family's segments.
pub fn family(family: Family) -> Vec<SegmentId> {
    CATALOGUE
        .iter()
        .filter(|def| def.family == family)
        .map(|def| def.id)
        .collect()
}

pub fn group_segment(group: Group) -> SegmentId {
    match group {
        Group::New => 1,
        Group::AboutToSleep => 2,
        Group::Sleepers => 3,
        Group::PotentialLoyal => 4,
        Group::Loyal => 5,
        Group::LoyalAtRisk => 6,
    }
}

/// The group a segment id stands for, if it is an RFM group.
pub fn segment_group(id: SegmentId) -> Option<Group> {
    Some(match id {
        1 => Group::New,
        2 => Group::AboutToSleep,
        3 => Group::Sleepers,
        4 => Group::PotentialLoyal,
        5 => Group::Loyal,
        6 => Group::LoyalAtRisk,
        _ => return None,
    })
}

pub fn lifecycle_segment(state: Lifecycle) -> SegmentId {
    match state {
        Lifecycle::NonCustomer => 11,
        Lifecycle::Dormant => 12,
        Lifecycle::Declining => 13,
        Lifecycle::New => 14,
        Lifecycle::Active => 15,
    }
}

pub const RUPTURE_OVERDUE: SegmentId = 21;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_slugs_are_unique_and_round_trip() {
        for def in CATALOGUE {
            assert_eq!(by_id(def.id).unwrap().slug, def.slug);
            assert_eq!(by_slug(def.slug).unwrap().id, def.id);
        }
        for group in [
            Group::New,
            Group::AboutToSleep,
            Group::Sleepers,
            Group::PotentialLoyal,
            Group::Loyal,
            Group::LoyalAtRisk,
        ] {
            assert_eq!(segment_group(group_segment(group)), Some(group));
            assert_eq!(
                by_id(group_segment(group)).unwrap().family,
                Family::RfmGroup
            );
        }
    }
}
