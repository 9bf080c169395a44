//! Custom segment rules: a subset of CEL (the expression language of Kubernetes and Envoy) over documented customer
//! features, for example `frequency >= 3 && recency_days > 60 && email_marketing`.
//!
//! The `cel` crate parses the rule (the full CEL grammar, with source positions); this module checks it against the
//! feature catalogue below, with CEL's typing (no implicit int/double arithmetic; numbers of either kind compare),
//! and compiles it into a tree evaluated without allocation, because a recompute evaluates every rule for every
//! customer. A feature without a value (the recency of a customer who never bought, P(alive) before the first model
//! fit) is an error value as in CEL: `&&` and `||` absorb it when the other side decides (`false && error` is
//! false), and a rule that ends in an error does not match. Rejected rules name the line, column and reason.

use std::fmt;

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use chrono::{Datelike, NaiveDate};

use super::evaluate::{CONSENT_EMAIL, CONSENT_PUSH, CONSENT_SMS, Features};
use super::lifecycle::Lifecycle;
use super::predictions::Prediction;
use super::rfm::RfmScore;

/// Longest rule, in bytes.
pub const MAX_RULE_BYTES: usize = 4_096;

/// The deepest a rule may nest, operators and calls included.
pub const MAX_DEPTH: usize = 100;

/// The type of a feature or expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Double,
    Bool,
    String,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Int => "int",
            Kind::Double => "double",
            Kind::Bool => "bool",
            Kind::String => "string",
        })
    }
}

/// A customer feature a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    RecencyDays,
    Frequency,
    Monetary,
    AverageOrderValue,
    TenureDays,
    PurchaseDays,
    TypicalGapDays,
    FirstOrderChannel,
    FirstOrderCategory,
    CategorySpend,
    ShareOfWallet,
    ShareOfWalletBefore,
    ShareOfWalletTrend,
    Lifecycle,
    Rfm,
    RfmGroup,
    Cluster,
    Overdue,
    PAlive,
    ExpectedPurchases,
    ExpectedOrderValue,
    PredictedValue,
    DaysToBirthday,
    AgeYears,
    EmailMarketing,
    SmsMarketing,
    PushMarketing,
    DaysSinceEngagement,
    Engagements,
}

/// A feature's name in rules, its type, and what it means (docs/segmentation.md lists the same table).
#[derive(Debug)]
pub struct FeatureDef {
    pub feature: Feature,
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

const fn def(
    feature: Feature,
    name: &'static str,
    kind: Kind,
    description: &'static str,
) -> FeatureDef {
    FeatureDef {
        feature,
        name,
        kind,
        description,
    }
}

/// Every feature rules can use.
pub const FEATURES: &[FeatureDef] = &[
    def(
        Feature::RecencyDays,
        "recency_days",
        Kind::Int,
        "days since the last eligible order (none without one)",
    ),
    def(
        Feature::Frequency,
        "frequency",
        Kind::Int,
        "eligible orders in the lookback window",
    ),
    def(
        Feature::Monetary,
        "monetary",
        Kind::Int,
        "their total, minor units",
    ),
    def(
        Feature::AverageOrderValue,
        "average_order_value",
        Kind::Int,
        "monetary / frequency, minor units, rounded down (none without orders)",
    ),
    def(
        Feature::TenureDays,
        "tenure_days",
        Kind::Int,
        "days since the first eligible order (none without one)",
    ),
    def(
        Feature::PurchaseDays,
        "purchase_days",
        Kind::Int,
        "distinct days with an eligible order",
    ),
    def(
        Feature::TypicalGapDays,
        "typical_gap_days",
        Kind::Double,
        "median gap between purchase days (none with fewer than three)",
    ),
    def(
        Feature::FirstOrderChannel,
        "first_order_channel",
        Kind::String,
        "\"store\", \"web\" or \"app\": where the first eligible order was placed (none without one)",
    ),
    def(
        Feature::FirstOrderCategory,
        "first_order_category",
        Kind::String,
        "category of the first eligible order's largest line (none without categorised lines)",
    ),
    def(
        Feature::CategorySpend,
        "category_spend",
        Kind::Int,
        "spend in the tenant's merchant category at every merchant over the last share window, minor units",
    ),
    def(
        Feature::ShareOfWallet,
        "share_of_wallet",
        Kind::Double,
        "the tenant's share of that spend, 0 to 1 (none without category spend)",
    ),
    def(
        Feature::ShareOfWalletBefore,
        "share_of_wallet_before",
        Kind::Double,
        "the same share over the window before (none without category spend then)",
    ),
    def(
        Feature::ShareOfWalletTrend,
        "share_of_wallet_trend",
        Kind::Double,
        "share_of_wallet / share_of_wallet_before (none unless both exist and the share before is above 0)",
    ),
    def(
        Feature::Lifecycle,
        "lifecycle",
        Kind::String,
        "\"non-customer\", \"dormant\", \"declining\", \"new\" or \"active\" (none in no state)",
    ),
    def(
        Feature::Rfm,
        "rfm",
        Kind::Int,
        "RFM code 111–555 (none when not scored)",
    ),
    def(
        Feature::RfmGroup,
        "rfm_group",
        Kind::String,
        "the RFM group's segment id, for example \"rfm-loyal\" (none when not scored)",
    ),
    def(
        Feature::Cluster,
        "cluster",
        Kind::String,
        "the K-means cluster's segment id, for example \"cluster-2\" (none when clustering is off)",
    ),
    def(
        Feature::Overdue,
        "overdue",
        Kind::Bool,
        "in rupture-overdue: the buying rhythm broke",
    ),
    def(
        Feature::PAlive,
        "p_alive",
        Kind::Double,
        "BG/NBD probability that the customer still buys (none without orders or a model fit)",
    ),
    def(
        Feature::ExpectedPurchases,
        "expected_purchases",
        Kind::Double,
        "purchase days expected over the next prediction_horizon_days",
    ),
    def(
        Feature::ExpectedOrderValue,
        "expected_order_value",
        Kind::Double,
        "Gamma-Gamma expected spend of a purchase day, minor units",
    ),
    def(
        Feature::PredictedValue,
        "predicted_value",
        Kind::Double,
        "discounted value of the purchases expected over value_months, minor units",
    ),
    def(
        Feature::DaysToBirthday,
        "days_to_birthday",
        Kind::Int,
        "0 on the birthday, up to 365 (none without a birth date; 29 February counts as 28 February in other years)",
    ),
    def(
        Feature::AgeYears,
        "age_years",
        Kind::Int,
        "age in whole years, one more on the day days_to_birthday is 0 (none without a birth date)",
    ),
    def(
        Feature::EmailMarketing,
        "email_marketing",
        Kind::Bool,
        "consented to marketing email",
    ),
    def(
        Feature::SmsMarketing,
        "sms_marketing",
        Kind::Bool,
        "consented to marketing SMS",
    ),
    def(
        Feature::PushMarketing,
        "push_marketing",
        Kind::Bool,
        "consented to marketing push notifications",
    ),
    def(
        Feature::DaysSinceEngagement,
        "days_since_engagement",
        Kind::Int,
        "days since the last engagement event: an app open, a product view, a review… (none without one)",
    ),
    def(
        Feature::Engagements,
        "engagements",
        Kind::Int,
        "engagement events received",
    ),
];

impl Feature {
    pub fn def(self) -> &'static FeatureDef {
        FEATURES
            .iter()
            .find(|d| d.feature == self)
            .expect("every feature is in the catalogue")
    }

    /// Whether the value needs the prediction models.
    fn predictive(self) -> bool {
        matches!(
            self,
            Feature::PAlive
                | Feature::ExpectedPurchases
                | Feature::ExpectedOrderValue
                | Feature::PredictedValue
        )
    }
}

/// Everything a rule can see of one customer on one day.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub features: &'a Features,
    pub today: NaiveDate,
    pub rfm: Option<RfmScore>,
    /// Segment id of the RFM group.
    pub rfm_group: Option<&'static str>,
    pub lifecycle: Option<Lifecycle>,
    pub cluster: Option<&'a str>,
    pub overdue: bool,
    /// Filled only when a rule needs it ([`Program::needs_predictions`]).
    pub prediction: Option<Prediction>,
}

/// A value during evaluation. Strings borrow from the rule or the customer: evaluation never allocates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Int(i64),
    Double(f64),
    Bool(bool),
    Str(&'a str),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v:.4}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// Why an expression has no value for a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The feature has no value for this customer.
    Absent(Feature),
    Overflow,
    DivisionByZero,
}

type Outcome<'a> = Result<Value<'a>, Fault>;

impl Subject<'_> {
    /// The feature's value for this customer.
    pub fn value(&self, feature: Feature) -> Outcome<'_> {
        let f = self.features;
        let absent = Err(Fault::Absent(feature));
        let days_since = |day: Option<NaiveDate>| {
            day.map(|d| Value::Int((self.today - d).num_days()))
                .ok_or(Fault::Absent(feature))
        };
        let ratio = |part: i64, whole: i64| {
            if whole > 0 {
                Ok(Value::Double(part as f64 / whole as f64))
            } else {
                Err(Fault::Absent(feature))
            }
        };
        let prediction = |pick: fn(&Prediction) -> Option<f64>| {
            self.prediction
                .as_ref()
                .and_then(pick)
                .map(Value::Double)
                .ok_or(Fault::Absent(feature))
        };
        let consent = |bit: u8| Ok(Value::Bool(f.consent & bit != 0));
        match feature {
            Feature::RecencyDays => days_since(f.last_day.filter(|_| f.frequency > 0)),
            Feature::Frequency => Ok(Value::Int(f.frequency.into())),
            Feature::Monetary => Ok(Value::Int(f.monetary)),
            Feature::AverageOrderValue => match f.frequency {
                0 => absent,
                n => Ok(Value::Int(f.monetary.div_euclid(i64::from(n)))),
            },
            Feature::TenureDays => days_since(f.first_day.filter(|_| f.frequency > 0)),
            Feature::PurchaseDays => Ok(Value::Int(f.purchase_days.into())),
            Feature::TypicalGapDays => f
                .typical_gap
                .map(Value::Double)
                .ok_or(Fault::Absent(feature)),
            Feature::FirstOrderChannel => match f.first_channel {
                1 => Ok(Value::Str("store")),
                2 => Ok(Value::Str("web")),
                3 => Ok(Value::Str("app")),
                _ => absent,
            },
            Feature::FirstOrderCategory => f
                .first_category
                .as_deref()
                .map(Value::Str)
                .ok_or(Fault::Absent(feature)),
            Feature::CategorySpend => Ok(Value::Int(f.share.all_recent)),
            Feature::ShareOfWallet => ratio(f.share.tenant_recent, f.share.all_recent),
            Feature::ShareOfWalletBefore => ratio(f.share.tenant_before, f.share.all_before),
            Feature::ShareOfWalletTrend => {
                let s = &f.share;
                // (tr / ar) / (tb / ab), with every part defined and the share before above 0.
                if s.all_recent > 0 && s.all_before > 0 && s.tenant_before > 0 {
                    Ok(Value::Double(
                        (s.tenant_recent as f64 * s.all_before as f64)
                            / (s.all_recent as f64 * s.tenant_before as f64),
                    ))
                } else {
                    absent
                }
            }
            Feature::Lifecycle => self
                .lifecycle
                .map(|l| Value::Str(l.name()))
                .ok_or(Fault::Absent(feature)),
            Feature::Rfm => self
                .rfm
                .map(|s| Value::Int(s.code().into()))
                .ok_or(Fault::Absent(feature)),
            Feature::RfmGroup => self.rfm_group.map(Value::Str).ok_or(Fault::Absent(feature)),
            Feature::Cluster => self.cluster.map(Value::Str).ok_or(Fault::Absent(feature)),
            Feature::Overdue => Ok(Value::Bool(self.overdue)),
            Feature::PAlive => prediction(|p| Some(p.p_alive)),
            Feature::ExpectedPurchases => prediction(|p| Some(p.expected_purchases)),
            Feature::ExpectedOrderValue => prediction(|p| p.expected_order_value),
            Feature::PredictedValue => prediction(|p| p.lifetime_value),
            Feature::DaysToBirthday => f
                .birth_date
                .map(|b| Value::Int(days_to_birthday(b, self.today)))
                .ok_or(Fault::Absent(feature)),
            Feature::AgeYears => f
                .birth_date
                .and_then(|b| age_years(b, self.today))
                .map(Value::Int)
                .ok_or(Fault::Absent(feature)),
            Feature::EmailMarketing => consent(CONSENT_EMAIL),
            Feature::SmsMarketing => consent(CONSENT_SMS),
            Feature::PushMarketing => consent(CONSENT_PUSH),
            Feature::DaysSinceEngagement => days_since(f.last_engagement_day),
            Feature::Engagements => Ok(Value::Int(f.engagements)),
        }
    }
}

/// The birthday of someone born on `birth` in `year`: 29 February is celebrated on 28 February in other years.
fn birthday_in(birth: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, birth.month(), birth.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 2, 28))
        .expect("28 February exists")
}

/// Days from `today` to the next birthday on or after it (see `birthday_in`).
pub fn days_to_birthday(birth: NaiveDate, today: NaiveDate) -> i64 {
    let this_year = birthday_in(birth, today.year());
    let next = if this_year >= today {
        this_year
    } else {
        birthday_in(birth, today.year() + 1)
    };
    (next - today).num_days()
}

/// Whole years since `birth`, one more on each birthday as `days_to_birthday` counts them; none before birth.
pub fn age_years(birth: NaiveDate, today: NaiveDate) -> Option<i64> {
    let years = i64::from(today.year() - birth.year());
    let age = if birthday_in(birth, today.year()) > today {
        years - 1
    } else {
        years
    };
    (age >= 0).then_some(age)
}

/// Where a rule is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arithmetic {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Size,
    StartsWith,
    EndsWith,
    Contains,
    ToInt,
    ToDouble,
}

/// A literal of the rule.
#[derive(Debug, Clone, PartialEq)]
enum Const {
    Int(i64),
    Double(f64),
    Bool(bool),
    Str(Box<str>),
}

impl Const {
    fn value(&self) -> Value<'_> {
        match self {
            Const::Int(v) => Value::Int(*v),
            Const::Double(v) => Value::Double(*v),
            Const::Bool(v) => Value::Bool(*v),
            Const::Str(v) => Value::Str(v),
        }
    }
}

/// A checked expression.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Const(Const),
    Feature(Feature),
    Not(Box<Node>),
    Negate(Box<Node>),
    And(Box<[Node; 2]>),
    Or(Box<[Node; 2]>),
    Conditional(Box<[Node; 3]>),
    Compare(Compare, Box<[Node; 2]>),
    Arithmetic(Arithmetic, Box<[Node; 2]>),
    In(Box<Node>, Vec<Const>),
    Call(Function, Box<[Node]>),
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    root: Node,
    /// The features the rule names, in order of first appearance (reasons print their values).
    pub features: Vec<Feature>,
    /// Whether any of them needs the prediction models.
    pub needs_predictions: bool,
    /// Whether any of them needs the built-in evaluation (RFM, lifecycle, rupture, cluster).
    pub needs_evaluation: bool,
}

/// The stack the parse runs on. The parser recurses once per operator of a chain (`1+1+…` is two bytes a level),
/// and counts only parentheses against its limit, so a rule of `MAX_RULE_BYTES` can nest about 4 000 levels deep:
/// more than a worker's 2 MiB hold. Reserved, not committed: only the pages a parse touches are used.
const PARSE_STACK: usize = 64 << 20;

/// The longest rule parsed on the caller's own stack. Each level the parser recurses into takes at least one token
/// of at least one byte (an operator, `in`, a parenthesis…), so a rule this long nests at most this many levels:
/// parsed and checked, such a rule fits in 1 MiB unoptimised (a test below), half a worker's stack. Most rules are
/// shorter; a longer one is parsed on a stack of its own.
const INLINE_BYTES: usize = 150;

/// Parses and checks a rule.
pub fn compile(source: &str) -> Result<Program, RuleError> {
    if source.trim().is_empty() {
        return Err(RuleError {
            line: 1,
            column: 1,
            message: "the rule is empty".into(),
        });
    }
    if source.len() > MAX_RULE_BYTES {
        return Err(RuleError {
            line: 1,
            column: 1,
            message: format!("the rule is longer than {MAX_RULE_BYTES} bytes"),
        });
    }
    if let Some(offset) = source.chars().position(|c| c == '\0') {
        return Err(error_at(
            source,
            offset,
            "NUL characters are not allowed in a rule",
        ));
    }
    // A short rule is parsed where it is asked for. A longer one may nest deeper: it is built, checked and dropped
    // on a stack of its own, and what comes back nests at most `MAX_DEPTH` levels, which any thread can evaluate.
    if source.len() <= INLINE_BYTES {
        return parse_and_check(source);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("rule-parse".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, || parse_and_check(source))
            .expect("a thread to parse the rule on")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The most rule text `compile_stored` remembers the outcomes of, in bytes (a program takes at most about 16 times
/// its text); past it, it forgets them all and starts again.
const MOST_REMEMBERED_BYTES: usize = 4 << 20;

/// What `compile_stored` remembers: each rule text's outcome, and how many bytes of text that is.
#[derive(Default)]
struct Remembered {
    outcomes: std::collections::HashMap<String, Result<std::sync::Arc<Program>, RuleError>>,
    bytes: usize,
}

/// [`compile`] for a stored rule, which a tenant's scoring compiles again at every load (every batch of events): each
/// rule text is compiled once per process, its outcome shared after that. A program depends on its text alone, so
/// one tenant's rule cannot change another's.
pub fn compile_stored(source: &str) -> Result<std::sync::Arc<Program>, RuleError> {
    static REMEMBERED: std::sync::LazyLock<std::sync::Mutex<Remembered>> =
        std::sync::LazyLock::new(Default::default);
    let lock = || {
        REMEMBERED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(outcome) = lock().outcomes.get(source) {
        return outcome.clone();
    }
    let outcome = compile(source).map(std::sync::Arc::new);
    let mut remembered = lock();
    if remembered.bytes + source.len() > MOST_REMEMBERED_BYTES {
        *remembered = Remembered::default();
    }
    remembered.bytes += source.len();
    remembered
        .outcomes
        .insert(source.to_owned(), outcome.clone());
    outcome
}

/// An error at the `offset`-th character of `source`, with its line and column (both from 1).
fn error_at(source: &str, offset: usize, message: impl Into<String>) -> RuleError {
    let (mut line, mut column) = (1, 1);
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    RuleError {
        line,
        column,
        message: message.into(),
    }
}

fn parse_and_check(source: &str) -> Result<Program, RuleError> {
    let (expr, info) = cel::parser::Parser::new()
        .max_recursion_depth(64)
        .parse_with_source_info(source)
        .map_err(|errors| {
            let first = errors.errors.first();
            RuleError {
                line: first.map_or(1, |e| e.pos.0.max(1) as u32),
                // The parser's columns are 1-based already.
                column: first.map_or(1, |e| e.pos.1.max(1) as u32),
                message: first.map_or_else(|| "cannot parse the rule".into(), |e| e.msg.clone()),
            }
        })?;
    let mut checker = Checker {
        source,
        info: &info,
        features: Vec::new(),
        depth: 0,
    };
    let (root, kind) = checker.check(&expr)?;
    if kind != Kind::Bool {
        return Err(checker.error(
            &expr,
            format!("a rule must be a condition (bool), this is {kind}"),
        ));
    }
    let needs_predictions = checker.features.iter().any(|f| f.predictive());
    let needs_evaluation = checker.features.iter().any(|f| {
        matches!(
            f,
            Feature::Lifecycle
                | Feature::Rfm
                | Feature::RfmGroup
                | Feature::Cluster
                | Feature::Overdue
        )
    });
    Ok(Program {
        root,
        features: checker.features,
        needs_predictions,
        needs_evaluation,
    })
}

struct Checker<'s> {
    source: &'s str,
    info: &'s SourceInfo,
    features: Vec<Feature>,
    /// How deep in the expression `check` is.
    depth: usize,
}

type Checked = Result<(Node, Kind), RuleError>;

fn numeric(kind: Kind) -> bool {
    matches!(kind, Kind::Int | Kind::Double)
}

impl Checker<'_> {
    /// An error positioned at `expr` (its first character).
    fn error(&self, expr: &IdedExpr, message: impl Into<String>) -> RuleError {
        let offset = self
            .info
            .offset_for(expr.id)
            .map_or(0, |(start, _)| start as usize);
        error_at(self.source, offset, message)
    }

    /// Checks `expr` and compiles it, refusing it when it nests deeper than `MAX_DEPTH`: the checker and the
    /// evaluation recurse once per level, on a worker's stack.
    fn check(&mut self, expr: &IdedExpr) -> Checked {
        if self.depth == MAX_DEPTH {
            return Err(self.error(
                expr,
                format!(
                    "the rule nests deeper than {MAX_DEPTH} levels (each operator of a chain such as `a + b + c` is a \
                     level): shorten the chain"
                ),
            ));
        }
        self.depth += 1;
        let checked = self.check_node(expr);
        self.depth -= 1;
        checked
    }

    fn check_node(&mut self, expr: &IdedExpr) -> Checked {
        match &expr.expr {
            Expr::Literal(literal) => {
                let constant = self.constant(expr, literal)?;
                let kind = const_kind(&constant);
                Ok((Node::Const(constant), kind))
            }
            Expr::Ident(name) => self.feature(expr, name),
            Expr::Call(call) => self.call(expr, call),
            Expr::Select(_) => Err(self.error(
                expr,
                "features have no fields: name a feature directly, for example `frequency`",
            )),
            Expr::List(_) => Err(self.error(expr, "a list can only follow `in`")),
            Expr::Map(_) | Expr::Struct(_) => {
                Err(self.error(expr, "maps and messages are not supported in segment rules"))
            }
            Expr::Comprehension(_) => Err(self.error(
                expr,
                "macros (has, all, exists, map, filter) are not supported in segment rules",
            )),
            Expr::Unspecified => Err(self.error(expr, "incomplete expression")),
        }
    }

    fn constant(&self, expr: &IdedExpr, literal: &LiteralValue) -> Result<Const, RuleError> {
        Ok(match literal {
            LiteralValue::Int(v) => Const::Int(*v.inner()),
            LiteralValue::Double(v) => Const::Double(*v.inner()),
            LiteralValue::Boolean(v) => Const::Bool(*v.inner()),
            LiteralValue::String(v) => Const::Str(v.inner().into()),
            LiteralValue::UInt(_) => {
                return Err(self.error(
                    expr,
                    "unsigned integers are not supported: drop the `u` suffix",
                ));
            }
            LiteralValue::Null => {
                return Err(self.error(
                    expr,
                    "null is not supported: a feature without a value makes the comparison an error, which does not match",
                ));
            }
            LiteralValue::Bytes(_) => {
                return Err(self.error(expr, "bytes are not supported in segment rules"));
            }
        })
    }

    fn feature(&mut self, expr: &IdedExpr, name: &str) -> Checked {
        let Some(def) = FEATURES.iter().find(|d| d.name == name) else {
            let closest = FEATURES
                .iter()
                .map(|d| (strsim::levenshtein(d.name, name), d.name))
                .min()
                .filter(|(distance, _)| *distance <= 3);
            let hint = closest.map_or_else(
                || " (docs/segmentation.md lists the features)".to_owned(),
                |(_, close)| format!("; did you mean `{close}`?"),
            );
            return Err(self.error(expr, format!("unknown feature `{name}`{hint}")));
        };
        if !self.features.contains(&def.feature) {
            self.features.push(def.feature);
        }
        Ok((Node::Feature(def.feature), def.kind))
    }

    fn call(&mut self, expr: &IdedExpr, call: &CallExpr) -> Checked {
        let name = call.func_name.as_str();
        let args: Vec<&IdedExpr> = call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect();
        let binary = |this: &mut Self| -> Result<[(Node, Kind); 2], RuleError> {
            if args.len() != 2 {
                return Err(this.error(expr, format!("`{name}` takes two operands")));
            }
            Ok([this.check(args[0])?, this.check(args[1])?])
        };
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR => {
                let [(a, ka), (b, kb)] = binary(self)?;
                for (kind, arg) in [(ka, args[0]), (kb, args[1])] {
                    if kind != Kind::Bool {
                        return Err(self.error(
                            arg,
                            format!("`&&` and `||` take conditions (bool), not {kind}"),
                        ));
                    }
                }
                let pair = Box::new([a, b]);
                Ok((
                    if name == operators::LOGICAL_AND {
                        Node::And(pair)
                    } else {
                        Node::Or(pair)
                    },
                    Kind::Bool,
                ))
            }
            operators::LOGICAL_NOT => {
                let (a, kind) = self.check(args[0])?;
                if kind != Kind::Bool {
                    return Err(self.error(args[0], format!("`!` takes a condition (bool), not {kind}")));
                }
                Ok((Node::Not(Box::new(a)), Kind::Bool))
            }
            operators::NEGATE => {
                let (a, kind) = self.check(args[0])?;
                if !numeric(kind) {
                    return Err(self.error(args[0], format!("`-` takes a number, not {kind}")));
                }
                Ok((Node::Negate(Box::new(a)), kind))
            }
            operators::CONDITIONAL => {
                if args.len() != 3 {
                    return Err(self.error(expr, "`? :` takes three operands"));
                }
                let (c, kc) = self.check(args[0])?;
                let (a, ka) = self.check(args[1])?;
                let (b, kb) = self.check(args[2])?;
                if kc != Kind::Bool {
                    return Err(self.error(args[0], format!("the condition of `? :` must be bool, not {kc}")));
                }
                if ka != kb {
                    return Err(self.error(
                        args[2],
                        format!("both branches of `? :` must have one type, not {ka} and {kb}"),
                    ));
                }
                Ok((Node::Conditional(Box::new([c, a, b])), ka))
            }
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => {
                let op = match name {
                    operators::EQUALS => Compare::Eq,
                    operators::NOT_EQUALS => Compare::Ne,
                    operators::LESS => Compare::Lt,
                    operators::LESS_EQUALS => Compare::Le,
                    operators::GREATER => Compare::Gt,
                    _ => Compare::Ge,
                };
                let [(a, ka), (b, kb)] = binary(self)?;
                // As in CEL, an int and a double compare by value; other kinds only with their own.
                if ka != kb && !(numeric(ka) && numeric(kb)) {
                    return Err(self.error(args[1], format!("cannot compare {ka} with {kb}")));
                }
                Ok((Node::Compare(op, Box::new([a, b])), Kind::Bool))
            }
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO => {
                let op = match name {
                    operators::ADD => Arithmetic::Add,
                    operators::SUBSTRACT => Arithmetic::Sub,
                    operators::MULTIPLY => Arithmetic::Mul,
                    operators::DIVIDE => Arithmetic::Div,
                    _ => Arithmetic::Rem,
                };
                let [(a, ka), (b, kb)] = binary(self)?;
                if !numeric(ka) || !numeric(kb) {
                    let kind = if numeric(ka) { kb } else { ka };
                    return Err(self.error(expr, format!("arithmetic takes numbers, not {kind}")));
                }
                if ka != kb {
                    return Err(self.error(
                        expr,
                        format!("no arithmetic between {ka} and {kb}: convert one with int() or double()"),
                    ));
                }
                if op == Arithmetic::Rem && ka == Kind::Double {
                    return Err(self.error(expr, "`%` takes ints"));
                }
                Ok((Node::Arithmetic(op, Box::new([a, b])), ka))
            }
            operators::IN => {
                if args.len() != 2 {
                    return Err(self.error(expr, "`in` takes two operands"));
                }
                let (a, ka) = self.check(args[0])?;
                let Expr::List(list) = &args[1].expr else {
                    return Err(self.error(args[1], "`in` must be followed by a list, for example [\"web\", \"app\"]"));
                };
                let mut items = Vec::with_capacity(list.elements.len());
                for element in &list.elements {
                    let Expr::Literal(literal) = &element.expr else {
                        return Err(self.error(element, "list items must be literals"));
                    };
                    let item = self.constant(element, literal)?;
                    let kind = const_kind(&item);
                    if kind != ka && !(numeric(kind) && numeric(ka)) {
                        return Err(self.error(element, format!("a {ka} is never in a list item of type {kind}")));
                    }
                    items.push(item);
                }
                Ok((Node::In(Box::new(a), items), Kind::Bool))
            }
            "size" | "startsWith" | "endsWith" | "contains" | "int" | "double" => {
                let function = match name {
                    "size" => Function::Size,
                    "startsWith" => Function::StartsWith,
                    "endsWith" => Function::EndsWith,
                    "contains" => Function::Contains,
                    "int" => Function::ToInt,
                    _ => Function::ToDouble,
                };
                let (expected, result): (&[Kind], Kind) = match function {
                    Function::Size => (&[Kind::String], Kind::Int),
                    Function::StartsWith | Function::EndsWith | Function::Contains => {
                        (&[Kind::String, Kind::String], Kind::Bool)
                    }
                    Function::ToInt => (&[Kind::Double], Kind::Int),
                    Function::ToDouble => (&[Kind::Int], Kind::Double),
                };
                if args.len() != expected.len() {
                    return Err(self.error(
                        expr,
                        format!("`{name}` takes {} argument(s), including its receiver", expected.len()),
                    ));
                }
                let mut nodes = Vec::with_capacity(args.len());
                for (arg, want) in args.iter().zip(expected) {
                    let (node, kind) = self.check(arg)?;
                    if kind != *want {
                        return Err(self.error(arg, format!("`{name}` takes {want} here, not {kind}")));
                    }
                    nodes.push(node);
                }
                Ok((Node::Call(function, nodes.into_boxed_slice()), result))
            }
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                Err(self.error(expr, "indexing is not supported in segment rules"))
            }
            other => Err(self.error(
                expr,
                format!(
                    "unknown function `{other}`; rules may use size, startsWith, endsWith, contains, int and double"
                ),
            )),
        }
    }
}

fn const_kind(constant: &Const) -> Kind {
    match constant {
        Const::Int(_) => Kind::Int,
        Const::Double(_) => Kind::Double,
        Const::Bool(_) => Kind::Bool,
        Const::Str(_) => Kind::String,
    }
}

impl Program {
    /// Whether the rule holds for the customer: `Ok(false)` when it does not, `Err` when it has no value (which
    /// does not match either).
    pub fn matches(&self, subject: &Subject<'_>) -> Result<bool, Fault> {
        match eval(&self.root, subject)? {
            Value::Bool(b) => Ok(b),
            _ => unreachable!("the checker only accepts bool rules"),
        }
    }

    /// `name = value` for each feature the rule names, for reasons ("frequency = 3, recency_days = 45").
    pub fn describe(&self, subject: &Subject<'_>) -> String {
        self.features
            .iter()
            .map(|f| match subject.value(*f) {
                Ok(v) => format!("{} = {v}", f.def().name),
                Err(_) => format!("{} = none", f.def().name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn eval<'a>(node: &'a Node, subject: &'a Subject<'a>) -> Outcome<'a> {
    match node {
        Node::Const(c) => Ok(c.value()),
        Node::Feature(f) => subject.value(*f),
        Node::Not(a) => Ok(Value::Bool(!truth(eval(a, subject)?))),
        Node::Negate(a) => match eval(a, subject)? {
            Value::Int(v) => v.checked_neg().map(Value::Int).ok_or(Fault::Overflow),
            Value::Double(v) => Ok(Value::Double(-v)),
            _ => unreachable!("checked"),
        },
        // CEL's commutative logic: a side that decides the result wins over an error on the other side.
        Node::And(pair) => match eval(&pair[0], subject).map(truth) {
            Ok(false) => Ok(Value::Bool(false)),
            left => match eval(&pair[1], subject).map(truth) {
                Ok(false) => Ok(Value::Bool(false)),
                Ok(true) => left.map(Value::Bool),
                Err(fault) => Err(left.err().unwrap_or(fault)),
            },
        },
        Node::Or(pair) => match eval(&pair[0], subject).map(truth) {
            Ok(true) => Ok(Value::Bool(true)),
            left => match eval(&pair[1], subject).map(truth) {
                Ok(true) => Ok(Value::Bool(true)),
                Ok(false) => left.map(Value::Bool),
                Err(fault) => Err(left.err().unwrap_or(fault)),
            },
        },
        Node::Conditional(parts) => {
            if truth(eval(&parts[0], subject)?) {
                eval(&parts[1], subject)
            } else {
                eval(&parts[2], subject)
            }
        }
        Node::Compare(op, pair) => {
            let a = eval(&pair[0], subject)?;
            let b = eval(&pair[1], subject)?;
            let ordering = order(a, b);
            Ok(Value::Bool(match op {
                Compare::Eq => ordering == Some(std::cmp::Ordering::Equal),
                Compare::Ne => ordering != Some(std::cmp::Ordering::Equal),
                Compare::Lt => ordering == Some(std::cmp::Ordering::Less),
                Compare::Le => matches!(
                    ordering,
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                Compare::Gt => ordering == Some(std::cmp::Ordering::Greater),
                Compare::Ge => matches!(
                    ordering,
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ),
            }))
        }
        Node::Arithmetic(op, pair) => {
            let a = eval(&pair[0], subject)?;
            let b = eval(&pair[1], subject)?;
            arithmetic(*op, a, b)
        }
        Node::In(a, items) => {
            let a = eval(a, subject)?;
            Ok(Value::Bool(items.iter().any(|item| {
                order(a, item.value()) == Some(std::cmp::Ordering::Equal)
            })))
        }
        Node::Call(function, args) => {
            let first = eval(&args[0], subject)?;
            let text = |v: Value<'a>| match v {
                Value::Str(s) => s,
                _ => unreachable!("checked"),
            };
            match function {
                Function::Size => Ok(Value::Int(text(first).chars().count() as i64)),
                Function::StartsWith | Function::EndsWith | Function::Contains => {
                    let (s, pattern) = (text(first), text(eval(&args[1], subject)?));
                    Ok(Value::Bool(match function {
                        Function::StartsWith => s.starts_with(pattern),
                        Function::EndsWith => s.ends_with(pattern),
                        _ => s.contains(pattern),
                    }))
                }
                Function::ToInt => match first {
                    // CEL truncates toward zero and fails outside the int range.
                    Value::Double(v) if v.is_finite() && v.abs() < 9.2e18 => {
                        Ok(Value::Int(v.trunc() as i64))
                    }
                    _ => Err(Fault::Overflow),
                },
                Function::ToDouble => match first {
                    Value::Int(v) => Ok(Value::Double(v as f64)),
                    _ => unreachable!("checked"),
                },
            }
        }
    }
}

fn truth(value: Value<'_>) -> bool {
    matches!(value, Value::Bool(true))
}

/// How two values of comparable kinds order; ints and doubles by numeric value.
fn order(a: Value<'_>, b: Value<'_>) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(&y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(&y),
        (Value::Int(x), Value::Double(y)) => (x as f64).partial_cmp(&y),
        (Value::Double(x), Value::Int(y)) => x.partial_cmp(&(y as f64)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(&y)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn arithmetic<'a>(op: Arithmetic, a: Value<'a>, b: Value<'a>) -> Outcome<'a> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let result = match op {
                Arithmetic::Add => x.checked_add(y),
                Arithmetic::Sub => x.checked_sub(y),
                Arithmetic::Mul => x.checked_mul(y),
                Arithmetic::Div | Arithmetic::Rem if y == 0 => return Err(Fault::DivisionByZero),
                Arithmetic::Div => x.checked_div(y),
                Arithmetic::Rem => x.checked_rem(y),
            };
            result.map(Value::Int).ok_or(Fault::Overflow)
        }
        (Value::Double(x), Value::Double(y)) => Ok(Value::Double(match op {
            Arithmetic::Add => x + y,
            Arithmetic::Sub => x - y,
            Arithmetic::Mul => x * y,
            Arithmetic::Div => x / y,
            Arithmetic::Rem => unreachable!("checked: % takes ints"),
        })),
        _ => unreachable!("checked: arithmetic on one kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::ShareOfWallet;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn buyer() -> Features {
        Features {
            customer_id: 1,
            frequency: 4,
            monetary: 20_000,
            first_day: Some(day("2026-01-10")),
            last_day: Some(day("2026-10-02")),
            purchase_days: 4,
            first_channel: 2,
            first_category: Some("shoes".into()),
            birth_date: Some(day("1990-12-25")),
            consent: CONSENT_EMAIL,
            ..Features::default()
        }
    }

    fn subject(features: &Features) -> Subject<'_> {
        Subject {
            features,
            today: day("2026-12-01"),
            rfm: None,
            rfm_group: None,
            lifecycle: Some(Lifecycle::Active),
            cluster: None,
            overdue: false,
            prediction: None,
        }
    }

    fn check(rule: &str, features: &Features) -> Result<bool, Fault> {
        compile(rule).unwrap().matches(&subject(features))
    }

    #[test]
    fn features_read_as_documented() {
        let f = buyer();
        let s = subject(&f);
        assert_eq!(s.value(Feature::RecencyDays), Ok(Value::Int(60)));
        assert_eq!(s.value(Feature::AverageOrderValue), Ok(Value::Int(5_000)));
        assert_eq!(s.value(Feature::FirstOrderChannel), Ok(Value::Str("web")));
        assert_eq!(s.value(Feature::DaysToBirthday), Ok(Value::Int(24)));
        assert_eq!(s.value(Feature::AgeYears), Ok(Value::Int(35)));
        assert_eq!(s.value(Feature::EmailMarketing), Ok(Value::Bool(true)));
        assert_eq!(s.value(Feature::SmsMarketing), Ok(Value::Bool(false)));
        assert_eq!(s.value(Feature::Lifecycle), Ok(Value::Str("active")));
        assert_eq!(
            s.value(Feature::PAlive),
            Err(Fault::Absent(Feature::PAlive))
        );
        let never = Features::default();
        assert_eq!(
            subject(&never).value(Feature::RecencyDays),
            Err(Fault::Absent(Feature::RecencyDays))
        );
    }

    #[test]
    fn a_five_condition_rule() {
        let rule = r#"frequency >= 3 && recency_days > 30 && average_order_value >= 4000
            && first_order_channel in ["web", "app"] && email_marketing"#;
        assert_eq!(check(rule, &buyer()), Ok(true));
        let no_consent = Features {
            consent: 0,
            ..buyer()
        };
        assert_eq!(check(rule, &no_consent), Ok(false));
        let program = compile(rule).unwrap();
        assert_eq!(
            program.describe(&subject(&buyer())),
            "frequency = 4, recency_days = 60, average_order_value = 5000, first_order_channel = \"web\", email_marketing = true"
        );
        assert!(!program.needs_predictions && !program.needs_evaluation);
    }

    #[test]
    fn absent_values_are_errors_that_logic_absorbs() {
        let never = Features {
            consent: CONSENT_EMAIL,
            ..Features::default()
        };
        // recency_days has no value: the comparison is an error, and an error does not match...
        assert_eq!(
            check("recency_days < 30", &never),
            Err(Fault::Absent(Feature::RecencyDays))
        );
        // ...unless the other side of && / || decides, in either order, as in CEL.
        assert_eq!(
            check("frequency > 0 && recency_days < 30", &never),
            Ok(false)
        );
        assert_eq!(
            check("recency_days < 30 && frequency > 0", &never),
            Ok(false)
        );
        assert_eq!(
            check("recency_days < 30 || email_marketing", &never),
            Ok(true)
        );
        assert_eq!(
            check("recency_days < 30 || !email_marketing", &never),
            Err(Fault::Absent(Feature::RecencyDays))
        );
        assert_eq!(check("frequency == 0 && email_marketing", &never), Ok(true));
    }

    #[test]
    fn cel_typing_numbers_compare_across_kinds_but_do_not_mix_in_arithmetic() {
        let f = Features {
            share: ShareOfWallet {
                tenant_recent: 30,
                all_recent: 100,
                tenant_before: 60,
                all_before: 100,
            },
            ..buyer()
        };
        assert_eq!(check("share_of_wallet < 1", &f), Ok(true));
        assert_eq!(check("share_of_wallet_trend <= 0.5", &f), Ok(true));
        assert_eq!(
            check("monetary / frequency == average_order_value", &f),
            Ok(true)
        );
        assert_eq!(
            check("double(frequency) * share_of_wallet > 1.1", &f),
            Ok(true)
        );
        assert_eq!(
            check("int(typical_gap_days) > 0", &f),
            Err(Fault::Absent(Feature::TypicalGapDays))
        );
        assert_eq!(
            check("frequency / (frequency - 4) > 0", &f),
            Err(Fault::DivisionByZero)
        );
        assert_eq!(
            check(
                "first_order_category.startsWith(\"sho\") && size(first_order_category) == 5",
                &f
            ),
            Ok(true)
        );
        assert_eq!(
            check("lifecycle == \"active\" ? frequency > 3 : false", &f),
            Ok(true)
        );
        assert_eq!(
            check("9223372036854775807 + frequency > 0", &f),
            Err(Fault::Overflow)
        );
    }

    #[test]
    fn rules_deeper_than_the_limit_are_refused_and_the_deepest_allowed_run_on_a_small_stack() {
        // Compiled and evaluated on half of a tokio worker's 2 MiB stack, without optimisation: the rules with many
        // operators are parsed on a stack of their own, the rest on this one.
        let on_small_stack = |rule: String| {
            std::thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || compile(&rule).map(|program| program.matches(&subject(&buyer()))))
                .unwrap()
                .join()
                .expect("no stack overflow")
        };
        // The deepest rule parsed on the caller's stack: two bytes a level.
        let deepest_inline = format!("{}>0", vec!["1"; 74].join("+"));
        assert_eq!(deepest_inline.len(), INLINE_BYTES - 1);
        assert_eq!(on_small_stack(deepest_inline), Ok(Ok(true)));
        // Chains as long as a rule may be, every operator one level deeper: of arithmetic, and of `in` (a keyword).
        let too_deep = [
            format!("{} > 0", vec!["frequency"; 330].join(" + ")),
            format!("{} > 0", vec!["1"; 2040].join("+")),
            vec!["\"\""; 1023].join("in"),
        ];
        for rule in too_deep {
            assert!(rule.len() <= MAX_RULE_BYTES);
            let err = on_small_stack(rule).unwrap_err();
            assert!(
                err.message
                    .starts_with("the rule nests deeper than 100 levels"),
                "{err}"
            );
        }
        assert_eq!(
            on_small_stack(format!("{} > 0", vec!["frequency"; 98].join(" + "))),
            Ok(Ok(true))
        );
        // The parser balances chains of `&&` (and of `||`): as many conditions as fit are a shallow tree.
        assert_eq!(
            on_small_stack(vec!["frequency > 0"; 240].join(" && ")),
            Ok(Ok(true))
        );
        // Runs of the same unary operator, which the parser folds in pairs.
        assert_eq!(
            on_small_stack(format!("{}true", "!".repeat(4001))),
            Ok(Ok(false))
        );
        assert_eq!(
            on_small_stack(format!("{}1 > 0", "-".repeat(4000))),
            Ok(Ok(true))
        );
    }

    #[test]
    fn a_stored_rule_compiles_to_the_program_of_its_own_text() {
        let buyer = buyer();
        for _ in 0..2 {
            for (rule, holds) in [("frequency > 1", true), ("frequency > 100", false)] {
                let program = compile_stored(rule).unwrap();
                assert_eq!(*program, compile(rule).unwrap());
                assert_eq!(program.matches(&subject(&buyer)), Ok(holds), "{rule}");
            }
            assert!(compile_stored("frequency >").is_err());
        }
    }

    #[test]
    fn bad_rules_are_refused_with_line_column_and_reason() {
        let cases = [
            (
                "recncy_days > 30",
                1,
                1,
                "unknown feature `recncy_days`; did you mean `recency_days`?",
            ),
            (
                "frequency > 3 &&\n  monetary > \"lots\"",
                2,
                14,
                "cannot compare int with string",
            ),
            (
                "frequency + 0.5 > 3",
                1,
                11,
                "no arithmetic between int and double",
            ),
            (
                "frequency",
                1,
                1,
                "a rule must be a condition (bool), this is int",
            ),
            (
                "frequency >",
                1,
                12,
                "Syntax error: mismatched input '<EOF>'",
            ),
            (
                "frequency >\n  > 3",
                2,
                3,
                "Syntax error: extraneous input '>'",
            ),
            ("customer.frequency > 1", 1, 9, "features have no fields"),
            (
                "frequency in [1, \"2\"]",
                1,
                18,
                "a int is never in a list item of type string",
            ),
            (
                "matches(first_order_category, \"s.*\")",
                1,
                8,
                "unknown function `matches`",
            ),
            (
                "frequency > 1u",
                1,
                13,
                "unsigned integers are not supported",
            ),
            ("", 1, 1, "the rule is empty"),
            (
                "frequency > 1 &&\n first_order_category == \"a\0\"",
                2,
                28,
                "NUL characters are not allowed",
            ),
        ];
        for (rule, line, column, message) in cases {
            let err = compile(rule).unwrap_err();
            assert!(
                err.message.starts_with(message) && (err.line, err.column) == (line, column),
                "{rule:?}: got {err}"
            );
        }
    }

    #[test]
    fn predictive_and_evaluated_features_are_flagged() {
        assert!(
            compile("p_alive < 0.3 && frequency > 2")
                .unwrap()
                .needs_predictions
        );
        assert!(
            compile("lifecycle == \"dormant\"")
                .unwrap()
                .needs_evaluation
        );
    }

    proptest::proptest! {
        /// A compiled rule agrees with the same condition written in Rust, whichever order its sides are in, and a
        /// customer without orders (no recency) matches only when the other side decides.
        #[test]
        fn rules_agree_with_the_condition_they_spell(
            frequency in 0u32..8,
            monetary in 0i64..50_000,
            days_ago in 0i64..400,
            min_frequency in 0u32..8,
            min_monetary in 0i64..50_000,
            max_days in 0i64..400,
        ) {
            let features = Features {
                frequency,
                monetary,
                last_day: (frequency > 0).then(|| day("2026-12-01") - chrono::Days::new(days_ago as u64)),
                ..Features::default()
            };
            let recency = features.last_day.map(|_| days_ago);
            let expected = frequency >= min_frequency
                && (monetary > min_monetary || recency.is_some_and(|r| r < max_days));
            let a = format!("frequency >= {min_frequency}");
            let b = format!("(monetary > {min_monetary} || recency_days < {max_days})");
            let c = format!("(recency_days < {max_days} || monetary > {min_monetary})");
            for rule in [format!("{a} && {b}"), format!("{b} && {a}"), format!("{c} && {a}")] {
                let got = compile(&rule).unwrap().matches(&subject(&features)) == Ok(true);
                proptest::prop_assert_eq!(got, expected, "{}", rule);
            }
        }
    }

    #[test]
    fn birthdays_wrap_the_year_and_leap_days_move_to_the_28th() {
        assert_eq!(days_to_birthday(day("1990-12-01"), day("2026-12-01")), 0);
        assert_eq!(days_to_birthday(day("1990-11-30"), day("2026-12-01")), 364);
        assert_eq!(days_to_birthday(day("2000-02-29"), day("2027-02-01")), 27);
        assert_eq!(days_to_birthday(day("2000-02-29"), day("2028-02-01")), 28);
    }

    #[test]
    fn a_year_is_added_on_the_day_the_birthday_counts_zero() {
        assert_eq!(age_years(day("1990-12-01"), day("2026-11-30")), Some(35));
        assert_eq!(age_years(day("1990-12-01"), day("2026-12-01")), Some(36));
        // Born on a leap day: in other years the birthday, and the new age, is 28 February.
        for today in ["2027-02-28", "2028-02-29"] {
            assert_eq!(days_to_birthday(day("2000-02-29"), day(today)), 0);
        }
        assert_eq!(age_years(day("2000-02-29"), day("2027-02-27")), Some(26));
        assert_eq!(age_years(day("2000-02-29"), day("2027-02-28")), Some(27));
        assert_eq!(age_years(day("2000-02-29"), day("2028-02-28")), Some(27));
        assert_eq!(age_years(day("2000-02-29"), day("2028-02-29")), Some(28));
        assert_eq!(age_years(day("2030-01-01"), day("2026-12-01")), None);
    }
}
