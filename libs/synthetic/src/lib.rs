//! Seeded synthetic retailers for the local demo and the benchmarks.
//!
//! The same seed always gives the same data. Order counts per customer are heavy-tailed (a few customers buy very
//! often, most buy a few times), and customers follow lifecycles: most are active, some stopped buying 6 to 18
//! months ago, some are new. Spend at competitors (a cashback app's card feed) covers the retailer's customers and
//! people who never bought there. Everything is generated lazily, so a million orders never sit in memory.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The shape of a synthetic retailer.
#[derive(Debug, Clone)]
pub struct Retailer {
    pub seed: u64,
    pub customers: u64,
    pub orders: u64,
    /// The most recent possible order time; history reaches `years` back from it.
    pub now: DateTime<Utc>,
    pub years: i64,
}

/// Where a customer is in its lifecycle, which decides when it buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Buys across the whole history.
    Active,
    /// Stopped buying 6 to 18 months ago.
    Lapsed,
    /// First bought in the last 3 months.
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub n: u64,
    /// The retailer's own id, `C0000042`.
    pub external_id: String,
    pub email: String,
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub birth_date: NaiveDate,
    pub postcode: String,
    pub country: &'static str,
    /// The customer's id in the cashback app, for the one in three who use it.
    pub app_user: Option<String>,
    pub lifecycle: Lifecycle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Paid,
    PartiallyPaid,
    Pending,
    Cancelled,
    Refunded,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Paid => "paid",
            Status::PartiallyPaid => "partially_paid",
            Status::Pending => "pending",
            Status::Cancelled => "cancelled",
            Status::Refunded => "refunded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Store,
    Web,
    App,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Store => "store",
            Channel::Web => "web",
            Channel::App => "app",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    /// The buyer's external id.
    pub customer_id: String,
    pub placed_at: DateTime<Utc>,
    /// Euro cents.
    pub amount_minor: i64,
    pub status: Status,
    pub channel: Channel,
    pub store: String,
}

/// A card transaction seen by the cashback app, at the retailer or a competitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub transaction_id: String,
    /// The app user id (partner namespace `cashback-app`).
    pub app_user: String,
    pub merchant_id: &'static str,
    pub merchant_name: &'static str,
    pub amount_minor: i64,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engagement {
    pub event_id: String,
    pub customer_id: String,
    /// An engagement type in the import format, such as `product_viewed`.
    pub kind: &'static str,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
}

/// The retailer itself, as the cashback app's feed names it.
pub const RETAILER_MERCHANT: &str = "maison-boomerang";
/// Merchants the app sees, the retailer first; all in the "fashion" category.
pub const MERCHANTS: [(&str, &str); 5] = [
    (RETAILER_MERCHANT, "Maison Boomerang"),
    ("rival-north", "Rival North"),
    ("rival-south", "Rival South"),
    ("fast-fashion", "Fast Fashion Co"),
    ("luxe-lane", "Luxe Lane"),
];
/// The cashback app's partner namespace.
pub const APP_NAMESPACE: &str = "cashback-app";

const GIVEN: [&str; 12] = [
    "Ada", "Louis", "Camille", "Hugo", "Léa", "Jules", "Chloé", "Gabriel", "Inès", "Arthur",
    "Manon", "Noah",
];
const FAMILY: [&str; 10] = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau",
];
const ENGAGEMENT: [&str; 6] = [
    "product_viewed",
    "content_viewed",
    "product_scanned_in_store",
    "app_opened",
    "newsletter_signup",
    "social_share",
];

/// A well-mixed 64-bit hash (SplitMix64), for per-customer attributes that depend only on the seed and the index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Retailer {
    /// A retailer of `customers` customers and `orders` orders over the 10 years before today (midnight UTC, so
    /// the same seed gives the same data all day).
    pub fn new(seed: u64, customers: u64, orders: u64) -> Self {
        let midnight = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        Self {
            seed,
            customers: customers.max(1),
            orders,
            now: midnight,
            years: 10,
        }
    }

    fn hash(&self, n: u64, salt: u64) -> u64 {
        mix(self.seed ^ mix(n ^ mix(salt)))
    }

    /// Customer `n` (0-based).
    pub fn customer(&self, n: u64) -> Customer {
        let h = self.hash(n, 1);
        let lifecycle = match h % 100 {
            0..70 => Lifecycle::Active,
            70..88 => Lifecycle::Lapsed,
            _ => Lifecycle::New,
        };
        let days = (h >> 8) % (55 * 365);
        Customer {
            n,
            external_id: format!("C{n:07}"),
            email: format!("customer{n}@example.com"),
            given_name: GIVEN[(h >> 20) as usize % GIVEN.len()],
            family_name: FAMILY[(h >> 28) as usize % FAMILY.len()],
            birth_date: NaiveDate::from_ymd_opt(1950, 1, 1).expect("date")
                + Duration::days(days as i64),
            postcode: format!("{:05}", 1000 + (h >> 36) % 94_000),
            country: "FR",
            app_user: (h >> 50).is_multiple_of(3).then(|| format!("u{n}")),
            lifecycle,
        }
    }

    pub fn customers(&self) -> impl Iterator<Item = Customer> + '_ {
        (0..self.customers).map(|n| self.customer(n))
    }

    /// Which customer buys an order: heavy-tailed, so low indexes buy far more often (the top 1 % of customers place
    /// about an eighth of the orders).
    fn buyer(&self, rng: &mut SmallRng) -> u64 {
        let u: f64 = rng.random();
        ((self.customers as f64 * u.powf(2.2)) as u64).min(self.customers - 1)
    }

    /// The window a customer buys in, as (start, length) in seconds before now.
    fn window(&self, customer: &Customer) -> (i64, i64) {
        let history = self.years * 365 * 86_400;
        let month = 30 * 86_400;
        match customer.lifecycle {
            Lifecycle::Active => (history, history),
            Lifecycle::Lapsed => {
                let stopped = (6 + (customer.n % 12) as i64) * month;
                (history, history - stopped)
            }
            Lifecycle::New => (3 * month, 3 * month),
        }
    }

    /// Every order, in order id order.
    pub fn orders(&self) -> impl Iterator<Item = Order> + '_ {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x0dde_5eed);
        (0..self.orders).map(move |i| {
            let customer = self.customer(self.buyer(&mut rng));
            let (start, length) = self.window(&customer);
            let offset = start - rng.random_range(0..length.max(1));
            let placed_at = self.now - Duration::seconds(offset);
            // Log-uniform between 15 and 300 euros.
            let amount = (15.0_f64.ln() + rng.random::<f64>() * (300.0_f64 / 15.0).ln()).exp();
            let status = match rng.random_range(0..100) {
                0..92 => Status::Paid,
                92..94 => Status::PartiallyPaid,
                94..96 => Status::Pending,
                96..99 => Status::Cancelled,
                _ => Status::Refunded,
            };
            let channel = match rng.random_range(0..100) {
                0..55 => Channel::Store,
                55..90 => Channel::Web,
                _ => Channel::App,
            };
            Order {
                order_id: format!("O{i:09}"),
                customer_id: customer.external_id,
                placed_at,
                amount_minor: (amount * 100.0) as i64,
                status,
                channel,
                store: if channel == Channel::Store {
                    format!("store-{:03}", rng.random_range(1..=120))
                } else {
                    String::new()
                },
            }
        })
    }

    /// `count` card transactions of app users over the last two years, at the retailer and its competitors. App
    /// users include people who never bought at the retailer (ids beyond the customer range).
    pub fn transactions(&self, count: u64) -> impl Iterator<Item = Transaction> + '_ {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0x7a5c);
        (0..count).map(move |i| {
            let n = rng.random_range(0..self.customers + self.customers / 3);
            let merchant = MERCHANTS[rng.random_range(0..MERCHANTS.len())];
            let offset = rng.random_range(0..2 * 365 * 86_400);
            Transaction {
                transaction_id: format!("T{i:09}"),
                app_user: format!("u{n}"),
                merchant_id: merchant.0,
                merchant_name: merchant.1,
                amount_minor: rng.random_range(1_000..25_000),
                occurred_at: self.now - Duration::seconds(offset),
            }
        })
    }

    /// `count` engagement events over the last year.
    pub fn engagement(&self, count: u64) -> impl Iterator<Item = Engagement> + '_ {
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0xe4a6);
        (0..count).map(move |i| {
            let customer = self.customer(self.buyer(&mut rng));
            Engagement {
                event_id: format!("E{i:09}"),
                customer_id: customer.external_id,
                kind: ENGAGEMENT[rng.random_range(0..ENGAGEMENT.len())],
                occurred_at: self.now - Duration::seconds(rng.random_range(0..365 * 86_400)),
                source: format!("store-{:03}", rng.random_range(1..=120)),
            }
        })
    }

    /// Writes `customers.csv`, `orders.csv`, `transactions.csv` and `events.csv` into `dir`, in the import formats.
    pub fn write_csv(
        &self,
        dir: &std::path::Path,
        transactions: u64,
        events: u64,
    ) -> Result<(), csv::Error> {
        std::fs::create_dir_all(dir)?;
        let mut out = csv::Writer::from_path(dir.join("customers.csv"))?;
        out.write_record([
            "customer_id",
            "email",
            "given_name",
            "family_name",
            "birth_date",
            "postcode",
            "country",
            "partner_namespace",
            "partner_id",
        ])?;
        for c in self.customers() {
            let (namespace, user) = match &c.app_user {
                Some(user) => (APP_NAMESPACE, user.as_str()),
                None => ("", ""),
            };
            let birth = c.birth_date.to_string();
            out.write_record([
                c.external_id.as_str(),
                &c.email,
                c.given_name,
                c.family_name,
                &birth,
                &c.postcode,
                c.country,
                namespace,
                user,
            ])?;
        }
        out.flush()?;

        let mut out = csv::Writer::from_path(dir.join("orders.csv"))?;
        out.write_record([
            "order_id",
            "customer_id",
            "placed_at",
            "amount",
            "currency",
            "status",
            "channel",
            "store",
        ])?;
        for o in self.orders() {
            out.write_record([
                o.order_id.as_str(),
                &o.customer_id,
                &o.placed_at.to_rfc3339(),
                &format!("{}.{:02}", o.amount_minor / 100, o.amount_minor % 100),
                "EUR",
                o.status.name(),
                o.channel.name(),
                &o.store,
            ])?;
        }
        out.flush()?;

        let mut out = csv::Writer::from_path(dir.join("transactions.csv"))?;
        out.write_record([
            "transaction_id",
            "customer_id",
            "customer_kind",
            "merchant_id",
            "merchant_name",
            "merchant_category",
            "amount",
            "currency",
            "occurred_at",
        ])?;
        let kind = format!("partner:{APP_NAMESPACE}");
        for t in self.transactions(transactions) {
            out.write_record([
                t.transaction_id.as_str(),
                &t.app_user,
                &kind,
                t.merchant_id,
                t.merchant_name,
                "fashion",
                &format!("{}.{:02}", t.amount_minor / 100, t.amount_minor % 100),
                "EUR",
                &t.occurred_at.to_rfc3339(),
            ])?;
        }
        out.flush()?;

        let mut out = csv::Writer::from_path(dir.join("events.csv"))?;
        out.write_record(["event_id", "customer_id", "type", "occurred_at", "source"])?;
        for e in self.engagement(events) {
            out.write_record([
                e.event_id.as_str(),
                &e.customer_id,
                e.kind,
                &e.occurred_at.to_rfc3339(),
                &e.source,
            ])?;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_retailer() {
        let a = Retailer::new(7, 1000, 5000);
        let b = Retailer::new(7, 1000, 5000);
        assert_eq!(a.customer(42), b.customer(42));
        assert!(a.orders().zip(b.orders()).all(|(x, y)| x == y));
    }

    #[test]
    fn order_counts_are_heavy_tailed_and_lifecycles_shape_recency() {
        let retailer = Retailer::new(1, 10_000, 100_000);
        let mut counts = vec![0u32; 10_000];
        let mut newest = vec![DateTime::<Utc>::MIN_UTC; 10_000];
        for order in retailer.orders() {
            let n: usize = order.customer_id[1..].parse().unwrap();
            counts[n] += 1;
            newest[n] = newest[n].max(order.placed_at);
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top_percent: u32 = sorted[..100].iter().sum();
        assert!(
            top_percent > 10_000,
            "the top 1% place over a tenth of the orders: {top_percent}"
        );
        assert!(
            sorted[5_000] <= 10,
            "the median customer buys a few times: {}",
            sorted[5_000]
        );
        let six_months_ago = retailer.now - Duration::days(180);
        for n in 0..10_000 {
            if counts[n] > 0 && retailer.customer(n as u64).lifecycle == Lifecycle::Lapsed {
                assert!(
                    newest[n] < six_months_ago,
                    "lapsed customer {n} bought recently"
                );
            }
        }
    }
}
