//! The segment catalogue. Each segment has a stable small id (stored in Postgres and Redis) and a slug (its name in
//! the API and in events). Built-in segments have fixed ids below 100, K-means clusters 31 to 42, and a tenant's
//! custom segments ids from 1000 up, allocated when they are created and never reused.

use super::clusters::MAX_CLUSTERS;
use super::groups::Group;
use super::lifecycle::Lifecycle;

/// A stable small id of a segment.
pub type SegmentId = i16;

/// What a segment is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    RfmGroup,
    Lifecycle,
    Rupture,
    /// K-means clusters (optional, per tenant).
    Cluster,
    /// A tenant's own rules; unlike the other families, a customer may be in several.
    Custom,
}

/// The id of the first K-means cluster.
pub const FIRST_CLUSTER: SegmentId = 31;
/// The id of a tenant's first custom segment.
pub const FIRST_CUSTOM: SegmentId = 1000;

/// Cluster slugs, so that evaluation can name them without allocating.
pub const CLUSTER_SLUGS: [&str; MAX_CLUSTERS as usize] = [
    "cluster-1",
    "cluster-2",
    "cluster-3",
    "cluster-4",
    "cluster-5",
    "cluster-6",
    "cluster-7",
    "cluster-8",
    "cluster-9",
    "cluster-10",
    "cluster-11",
    "cluster-12",
];

/// The segment of cluster `index` (0-based, most valuable first).
pub fn cluster_segment(index: usize) -> SegmentId {
    FIRST_CLUSTER + index as SegmentId
}

/// The cluster index of a segment id, if it is a cluster.
pub fn segment_cluster(id: SegmentId) -> Option<usize> {
    (FIRST_CLUSTER..FIRST_CLUSTER + MAX_CLUSTERS as SegmentId)
        .contains(&id)
        .then(|| (id - FIRST_CLUSTER) as usize)
}

/// The family of any segment id.
pub fn family_of(id: SegmentId) -> Option<Family> {
    if id >= FIRST_CUSTOM {
        Some(Family::Custom)
    } else if segment_cluster(id).is_some() {
        Some(Family::Cluster)
    } else {
        by_id(id).map(|def| def.family)
    }
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

/// The built-in segment with this slug.
pub fn by_slug(slug: &str) -> Option<&'static SegmentDef> {
    CATALOGUE.iter().find(|def| def.slug == slug)
}

/// The id of a built-in segment or cluster slug.
pub fn fixed_id(slug: &str) -> Option<SegmentId> {
    by_slug(slug).map(|def| def.id).or_else(|| {
        CLUSTER_SLUGS
            .iter()
            .position(|s| *s == slug)
            .map(cluster_segment)
    })
}

/// The slug of a built-in segment or cluster; custom segments' slugs are the tenant's ([`super::evaluate::Scoring`]).
pub fn fixed_slug(id: SegmentId) -> Option<&'static str> {
    by_id(id)
        .map(|def| def.slug)
        .or_else(|| segment_cluster(id).map(|i| CLUSTER_SLUGS[i]))
}

/// The ids of a built-in family's segments, or of every possible cluster.
pub fn family(family: Family) -> Vec<SegmentId> {
    match family {
        Family::Cluster => (0..MAX_CLUSTERS as usize).map(cluster_segment).collect(),
        _ => CATALOGUE
            .iter()
            .filter(|def| def.family == family)
            .map(|def| def.id)
            .collect(),
    }
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
            assert_eq!(fixed_id(def.slug), Some(def.id));
            assert_eq!(family_of(def.id), Some(def.family));
            assert!(segment_cluster(def.id).is_none());
        }
        for (i, slug) in CLUSTER_SLUGS.iter().enumerate() {
            let id = cluster_segment(i);
            assert_eq!(fixed_id(slug), Some(id));
            assert_eq!(fixed_slug(id), Some(*slug));
            assert_eq!(family_of(id), Some(Family::Cluster));
        }
        assert_eq!(family_of(FIRST_CUSTOM), Some(Family::Custom));
        assert_eq!(fixed_slug(FIRST_CUSTOM), None);
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
