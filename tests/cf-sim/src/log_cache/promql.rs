//! Log Cache's PromQL endpoints, `GET /api/v1/query` (`query`, `time`) and `GET /api/v1/query_range` (`query`,
//! `start`, `end`, `step`), for the queries a deploy's traffic analysis sends, as log-cache-release has them:
//!
//! - The cf-auth-proxy (`internal/auth/cf_auth_middleware.go`) answers 404 with no body without a token, and 400
//!   `{"status":"error","errorType":"bad_data","error":…}` for a query that does not parse or names no
//!   `source_id` (only `=` and `=~` matchers name them, `=~` split on `|`).
//! - The querier (`internal/promql/promql.go`, `LogCacheQuerier.Select`) reads the sources' GAUGE, COUNTER and
//!   TIMER envelopes; a timer is a sample of the metric named after the timer (`SanitizeMetricName`) whose value
//!   is `stop - start` in nanoseconds, at the envelope's timestamp truncated to the second; its labels are the
//!   envelope's tags plus `source_id` and (when set) `instance_id`. Every other label matcher, whatever its
//!   operator, keeps only envelopes whose tag *equals* the matcher's value (`hasLabels`): `status_code=~"5.."`
//!   matches no request. Series carry no `__name__`.
//! - Prometheus' engine (v2.13.1, pinned in `src/go.mod`) evaluates: an instant selector takes each series' latest
//!   sample of the last 5 minutes, a range selector the samples within `[t - range, t]`.
//! - Answers (`pkg/marshaler/marshaler.go`): `{"status":"success","data":{"resultType":…,"result":…}}`, points
//!   `[<seconds with 3 decimals>, "<value>"]`, an empty result `[]`; the engine's errors (an unparsable `time`,
//!   `start`, `end` or `step`) as `internal/gateway/gateway.go`'s `httpErrorHandler` renders them: 500
//!   `{"status":"error","errorType":"internal","error":…}`.
//!
//! cf-sim evaluates a subset: selectors of timers; `count_over_time`, `sum_over_time`, `avg_over_time`,
//! `min_over_time` and `max_over_time` of a range selector; `sum`, `count`, `avg`, `min`, `max` and `quantile`
//! with `by`/`without`; number literals. Anything else is refused loudly, as a 400 `bad_data` naming what cf-sim
//! does not model, rather than answered wrongly.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::logs::Stored;
use crate::shared::{Ctx, Shared};

/// Prometheus' default lookback of an instant vector selector.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// The most evaluation steps cf-sim computes for one range query.
const MAX_STEPS: i64 = 11_000;

type Labels = BTreeMap<String, String>;

fn promql_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"status": "error", "errorType": kind, "error": message}))).into_response()
}

/// The cf-auth-proxy's refusal of a query it cannot parse or that names no source.
fn bad_data(message: &str) -> Response {
    promql_error(StatusCode::BAD_REQUEST, "bad_data", message)
}

/// An error of the querier or the engine, through the gateway's error handler (`codes.Unknown`, 500).
fn internal(message: &str) -> Response {
    promql_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn success(result_type: &str, result: Value) -> Response {
    Json(json!({"status": "success", "data": {"resultType": result_type, "result": result}})).into_response()
}

/// A point as `marshaler.go`'s `assemblePoint`: the time a number with three decimals, the value a string.
fn point(t_ms: i64, value: f64) -> Value {
    let time: Value = serde_json::from_str(&format!("{:.3}", t_ms as f64 / 1000.0)).expect("a number");
    json!([time, format_value(value)])
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

/// The query parameters, the last of each name winning.
fn params(query: Option<String>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

/// `ParseTime` of `internal/promql/parsing.go`: Unix seconds (fractions allowed) or RFC 3339, in milliseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0) as i64);
    }
    rfc3339_ms(text).ok_or_else(|| format!("cannot parse {text:?} to a valid Unix or RFC3339 timestamp"))
}

/// `2006-01-02T15:04:05.999999999Z07:00` in milliseconds since the epoch.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i32>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let zone_at = rest.find(['Z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let mut hms = clock.splitn(3, ':');
    let (hour, minute) = (hms.next()?.parse::<u8>().ok()?, hms.next()?.parse::<u8>().ok()?);
    let seconds_text = hms.next()?;
    let (seconds, fraction) = seconds_text.split_once('.').unwrap_or((seconds_text, ""));
    let offset_minutes = match zone {
        "Z" => 0,
        _ => {
            let (hours, minutes) = zone[1..].split_once(':')?;
            let minutes = hours.parse::<i64>().ok()? * 60 + minutes.parse::<i64>().ok()?;
            if zone.starts_with('-') { -minutes } else { minutes }
        }
    };
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let at = date.with_hms(hour, minute, seconds.parse().ok()?).ok()?.assume_utc();
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    Some(at.unix_timestamp() * 1000 + millis - offset_minutes * 60_000)
}

/// `ParseStep`: seconds (fractions allowed) or a Prometheus duration, in milliseconds.
fn parse_step(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0) as i64);
    }
    parse_duration(text).ok_or_else(|| format!("cannot parse {text:?} to a valid step"))
}

/// A Prometheus duration (`5m`, `1h30m`, `250ms`) in milliseconds.
fn parse_duration(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// What both endpoints do before evaluating: the token, then the query's parse and its sources.
fn prepare(ctx: &Ctx, headers: &HeaderMap, query: &str) -> Result<Expr, Box<Response>> {
    if !super::authorized(ctx, headers) {
        return Err(Box::new(StatusCode::NOT_FOUND.into_response()));
    }
    let expr = Parser::parse(query).map_err(|e| Box::new(bad_data(&e)))?;
    if expr.source_ids().is_empty() {
        return Err(Box::new(bad_data("query does not request any source_ids")));
    }
    Ok(expr)
}

pub(super) async fn instant(State(ctx): State<Ctx>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = params(query);
    let expr = match prepare(&ctx, &headers, params.get("query").map_or("", String::as_str)) {
        Ok(expr) => expr,
        Err(response) => return *response,
    };
    let at = match params.get("time").filter(|t| !t.is_empty()) {
        None => crate::clock::unix_nanos() / 1_000_000_000 * 1000,
        Some(text) => match parse_time(text) {
            Ok(at) => at,
            Err(message) => return internal(&message),
        },
    };
    let data = Data::read(&ctx, &expr);
    match expr.eval(&data, at) {
        Value_::Scalar(v) => success("scalar", point(at, v)),
        Value_::Vector(samples) => success(
            "vector",
            samples.into_iter().map(|(labels, v)| json!({"metric": labels, "value": point(at, v)})).collect(),
        ),
    }
}

pub(super) async fn range(State(ctx): State<Ctx>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = params(query);
    let expr = match prepare(&ctx, &headers, params.get("query").map_or("", String::as_str)) {
        Ok(expr) => expr,
        Err(response) => return *response,
    };
    let text = |key: &str| params.get(key).map_or("", String::as_str);
    let bounds = parse_step(text("step"))
        .map_err(|e| format!("couldn't parse step: {e}"))
        .and_then(|step| Ok((step, parse_time(text("start")).map_err(|e| format!("couldn't parse start: {e}"))?)))
        .and_then(|(step, start)| {
            Ok((step, start, parse_time(text("end")).map_err(|e| format!("couldn't parse end: {e}"))?))
        });
    let (step, start, end) = match bounds {
        Ok(bounds) => bounds,
        Err(message) => return internal(&message),
    };
    if step <= 0 {
        return internal("zero or negative query resolution step widths are not accepted. Try a positive integer");
    }
    if end < start {
        return internal("end timestamp must not be before start time");
    }
    if (end - start) / step >= MAX_STEPS {
        return bad_data(&format!("cf-sim evaluates at most {MAX_STEPS} steps per range query"));
    }
    let data = Data::read(&ctx, &expr);
    let mut series: BTreeMap<Labels, Vec<Value>> = BTreeMap::new();
    let mut at = start;
    while at <= end {
        match expr.eval(&data, at) {
            Value_::Scalar(v) => series.entry(Labels::new()).or_default().push(point(at, v)),
            Value_::Vector(samples) => {
                for (labels, v) in samples {
                    series.entry(labels).or_default().push(point(at, v));
                }
            }
        }
        at += step;
    }
    success("matrix", series.into_iter().map(|(labels, values)| json!({"metric": labels, "values": values})).collect())
}

/// The result of evaluating an expression at one time.
enum Value_ {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// The samples of every source a query names, read once: (labels, time in ms, value) of each timer.
struct Data {
    samples: Vec<(String, Labels, i64, f64)>,
}

impl Data {
    fn read(ctx: &Shared, expr: &Expr) -> Data {
        let mut samples = Vec::new();
        for source_id in expr.source_ids() {
            for envelope in ctx.logs.read(&source_id, 0, i64::MAX, usize::MAX, false, |_| true) {
                let Stored::Timer(timer) = envelope else { continue };
                let mut labels = timer.tags.clone();
                labels.insert("source_id".into(), timer.source_id.clone());
                if !timer.instance_id.is_empty() {
                    labels.insert("instance_id".into(), timer.instance_id.clone());
                }
                let t_ms = timer.timestamp / 1_000_000_000 * 1000;
                samples.push((sanitize(&timer.name), labels, t_ms, (timer.stop - timer.start) as f64));
            }
        }
        Data { samples }
    }

    /// The series `selector` selects, with their samples in `[from, to]` (ms), oldest first.
    fn select(&self, selector: &Selector, from: i64, to: i64) -> BTreeMap<Labels, Vec<f64>> {
        let sources = selector.source_ids();
        let mut series: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
        for (name, labels, t, v) in &self.samples {
            let others_equal = selector
                .matchers
                .iter()
                .filter(|m| m.name != "source_id")
                .all(|m| labels.get(&m.name) == Some(&m.value));
            if *name == selector.name
                && sources.contains(&labels["source_id"])
                && others_equal
                && (from..=to).contains(t)
            {
                series.entry(labels.clone()).or_default().push(*v);
            }
        }
        series
    }
}

/// `SanitizeMetricName`: invalid characters become `_` (a leading digit too).
fn sanitize(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if c.is_ascii_alphanumeric() && !(i == 0 && c.is_ascii_digit()) || c == '_' { c } else { '_' })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    name: String,
    op: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    /// `addSourceIDsFromLabelMatcher`: `=` names one source, `=~` the `|`-separated ones, other operators none.
    fn source_ids(&self) -> Vec<String> {
        self.matchers
            .iter()
            .filter(|m| m.name == "source_id")
            .flat_map(|m| match m.op.as_str() {
                "=" => vec![m.value.clone()],
                "=~" => m.value.split('|').map(str::to_string).collect(),
                _ => Vec::new(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RangeFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AggOp {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    Quantile,
}

#[derive(Debug, Clone, PartialEq)]
enum Grouping {
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Selector(Selector),
    Range { func: RangeFn, selector: Selector, range_ms: i64 },
    Aggregate { op: AggOp, param: Option<f64>, grouping: Grouping, inner: Box<Expr> },
}

impl Expr {
    fn source_ids(&self) -> Vec<String> {
        match self {
            Expr::Number(_) => Vec::new(),
            Expr::Selector(selector) | Expr::Range { selector, .. } => selector.source_ids(),
            Expr::Aggregate { inner, .. } => inner.source_ids(),
        }
    }

    fn eval(&self, data: &Data, at: i64) -> Value_ {
        match self {
            Expr::Number(v) => Value_::Scalar(*v),
            Expr::Selector(selector) => Value_::Vector(
                data.select(selector, at - LOOKBACK_MS, at)
                    .into_iter()
                    .map(|(labels, values)| (labels, *values.last().expect("a selected series has samples")))
                    .collect(),
            ),
            Expr::Range { func, selector, range_ms } => Value_::Vector(
                data.select(selector, at - range_ms, at)
                    .into_iter()
                    .map(|(labels, values)| {
                        let n = values.len() as f64;
                        let value = match func {
                            RangeFn::Count => n,
                            RangeFn::Sum => values.iter().sum(),
                            RangeFn::Avg => values.iter().sum::<f64>() / n,
                            RangeFn::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                            RangeFn::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        };
                        (labels, value)
                    })
                    .collect(),
            ),
            Expr::Aggregate { op, param, grouping, inner } => {
                let Value_::Vector(samples) = inner.eval(data, at) else {
                    unreachable!("the parser allows only vectors inside an aggregation")
                };
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for (labels, v) in samples {
                    let key = match grouping {
                        Grouping::All => Labels::new(),
                        Grouping::By(names) => labels.into_iter().filter(|(k, _)| names.contains(k)).collect(),
                        Grouping::Without(names) => labels.into_iter().filter(|(k, _)| !names.contains(k)).collect(),
                    };
                    groups.entry(key).or_default().push(v);
                }
                Value_::Vector(
                    groups
                        .into_iter()
                        .map(|(labels, values)| (labels, aggregate(*op, param.unwrap_or_default(), values)))
                        .collect(),
                )
            }
        }
    }
}

fn aggregate(op: AggOp, param: f64, mut values: Vec<f64>) -> f64 {
    let n = values.len() as f64;
    match op {
        AggOp::Sum => values.iter().sum(),
        AggOp::Count => n,
        AggOp::Avg => values.iter().sum::<f64>() / n,
        AggOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        AggOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        AggOp::Quantile => quantile(param, &mut values),
    }
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks, `-Inf`/`+Inf` outside `[0, 1]`.
fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(f64),
    Duration(i64),
    Punct(&'static str),
}

/// A recursive-descent parser of the subset cf-sim evaluates.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// The refusal of valid PromQL that cf-sim does not evaluate.
fn unmodelled(what: &str) -> String {
    format!(
        "cf-sim does not evaluate {what}: it models selectors, count/sum/avg/min/max_over_time and sum/count/avg/\
         min/max/quantile by/without"
    )
}

impl Parser {
    fn parse(query: &str) -> Result<Expr, String> {
        if query.trim().is_empty() {
            return Err("parse error: no expression found in input".into());
        }
        let mut parser = Parser { tokens: tokenize(query)?, at: 0 };
        let expr = parser.expr()?;
        match parser.tokens.get(parser.at) {
            None => Ok(expr),
            Some(Token::Punct(op)) if ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="].contains(op) => {
                Err(unmodelled("binary operators"))
            }
            Some(token) => Err(format!("parse error: unexpected {token:?}")),
        }
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn expect(&mut self, punct: &'static str) -> Result<(), String> {
        match self.next() {
            Some(Token::Punct(p)) if p == punct => Ok(()),
            other => Err(format!("parse error: expected {punct:?}, found {other:?}")),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Number(v)) => Ok(Expr::Number(v)),
            Some(Token::Punct("{")) => {
                self.at -= 1;
                self.selector(String::new()).map(Expr::Selector)
            }
            Some(Token::Ident(name)) => match name.as_str() {
                "sum" | "count" | "avg" | "min" | "max" | "quantile" => self.aggregation(&name),
                "count_over_time" | "sum_over_time" | "avg_over_time" | "min_over_time" | "max_over_time" => {
                    self.range_function(&name)
                }
                "by" | "without" | "on" | "ignoring" | "offset" | "bool" => {
                    Err(format!("parse error: unexpected keyword {name:?}"))
                }
                _ if self.peek() == Some(&Token::Punct("(")) => Err(unmodelled(&format!("the function {name}"))),
                _ => {
                    let selector = self.selector(name)?;
                    match self.peek() {
                        Some(Token::Punct("[")) => Err(unmodelled("a range selector outside *_over_time")),
                        Some(Token::Ident(word)) if word == "offset" => Err(unmodelled("offset")),
                        _ => Ok(Expr::Selector(selector)),
                    }
                }
            },
            Some(Token::Punct("(")) => Err(unmodelled("parentheses")),
            other => Err(format!("parse error: unexpected {other:?}")),
        }
    }

    fn selector(&mut self, name: String) -> Result<Selector, String> {
        let mut matchers = Vec::new();
        if self.peek() == Some(&Token::Punct("{")) {
            self.next();
            loop {
                match self.next() {
                    Some(Token::Punct("}")) => break,
                    Some(Token::Ident(label)) => {
                        let op = match self.next() {
                            Some(Token::Punct(op)) if ["=", "!=", "=~", "!~"].contains(&op) => op.to_string(),
                            other => return Err(format!("parse error: expected a label matcher, found {other:?}")),
                        };
                        let Some(Token::Str(value)) = self.next() else {
                            return Err("parse error: a label matcher's value must be a string".into());
                        };
                        matchers.push(Matcher { name: label, op, value });
                        match self.next() {
                            Some(Token::Punct(",")) => {}
                            Some(Token::Punct("}")) => break,
                            other => return Err(format!("parse error: expected \",\" or \"}}\", found {other:?}")),
                        }
                    }
                    other => return Err(format!("parse error: unexpected {other:?} in label matching")),
                }
            }
        }
        if name.is_empty() {
            if let Some(m) = matchers.iter().find(|m| m.name == "__name__" && m.op == "=") {
                let name = m.value.clone();
                matchers.retain(|m| m.name != "__name__");
                return Ok(Selector { name, matchers });
            }
            return Err(unmodelled("a selector without a metric name"));
        }
        if matchers.iter().any(|m| m.name == "__name__") {
            return Err(unmodelled("a __name__ matcher beside a metric name"));
        }
        Ok(Selector { name, matchers })
    }

    fn range_function(&mut self, name: &str) -> Result<Expr, String> {
        let func = match name {
            "count_over_time" => RangeFn::Count,
            "sum_over_time" => RangeFn::Sum,
            "avg_over_time" => RangeFn::Avg,
            "min_over_time" => RangeFn::Min,
            _ => RangeFn::Max,
        };
        self.expect("(")?;
        let selector = match self.next() {
            Some(Token::Ident(metric)) => self.selector(metric)?,
            Some(Token::Punct("{")) => {
                self.at -= 1;
                self.selector(String::new())?
            }
            other => return Err(unmodelled(&format!("{name} of {other:?}"))),
        };
        self.expect("[")?;
        let Some(Token::Duration(range_ms)) = self.next() else {
            return Err("parse error: a range selector needs a duration".into());
        };
        self.expect("]")?;
        self.expect(")")?;
        Ok(Expr::Range { func, selector, range_ms })
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, String> {
        let keyword = match self.peek() {
            Some(Token::Ident(word)) if word == "by" || word == "without" => word.clone(),
            _ => return Ok(None),
        };
        self.next();
        self.expect("(")?;
        let mut labels = Vec::new();
        loop {
            match self.next() {
                Some(Token::Punct(")")) => break,
                Some(Token::Ident(label)) => {
                    labels.push(label);
                    match self.next() {
                        Some(Token::Punct(",")) => {}
                        Some(Token::Punct(")")) => break,
                        other => return Err(format!("parse error: unexpected {other:?} in grouping")),
                    }
                }
                other => return Err(format!("parse error: unexpected {other:?} in grouping")),
            }
        }
        Ok(Some(if keyword == "by" { Grouping::By(labels) } else { Grouping::Without(labels) }))
    }

    fn aggregation(&mut self, name: &str) -> Result<Expr, String> {
        let op = match name {
            "sum" => AggOp::Sum,
            "count" => AggOp::Count,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            _ => AggOp::Quantile,
        };
        let before = self.grouping()?;
        self.expect("(")?;
        let param = if op == AggOp::Quantile {
            let Some(Token::Number(q)) = self.next() else {
                return Err(unmodelled("a quantile parameter that is not a number"));
            };
            self.expect(",")?;
            Some(q)
        } else {
            None
        };
        let inner = self.expr()?;
        if matches!(inner, Expr::Number(_)) {
            return Err("parse error: expected type instant vector in aggregation expression, got scalar".into());
        }
        self.expect(")")?;
        let after = self.grouping()?;
        if before.is_some() && after.is_some() {
            return Err("parse error: a grouping given twice".into());
        }
        let grouping = before.or(after).unwrap_or(Grouping::All);
        Ok(Expr::Aggregate { op, param, grouping, inner: Box::new(inner) })
    }
}

fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    const PUNCTS: &[&str] = &[
        "=~", "!~", "!=", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",", "=", "+", "-", "*", "/", "%", "^", ">",
        "<",
    ];
    let chars: Vec<char> = query.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("parse error: unterminated quoted string".into()),
                    Some(&q) if q == c => break,
                    Some('\\') if c != '`' => {
                        let escaped = chars.get(i + 1).ok_or("parse error: unterminated quoted string")?;
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => *other,
                        });
                        i += 1;
                    }
                    Some(&other) => value.push(other),
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token::Str(value));
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if let Ok(number) = text.parse::<f64>() {
                tokens.push(Token::Number(number));
            } else if let Some(ms) = parse_duration(&text) {
                tokens.push(Token::Duration(ms));
            } else {
                return Err(format!("parse error: bad number or duration {text:?}"));
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if let Some(punct) = PUNCTS.iter().find(|p| chars[i..].starts_with(&p.chars().collect::<Vec<_>>())) {
            tokens.push(Token::Punct(punct));
            i += punct.len();
        } else {
            return Err(format!("parse error: unexpected character {c:?}"));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_queries_a_traffic_analysis_sends() {
        let expr =
            Parser::parse(r#"sum by (status_code) (count_over_time(http{source_id="a",peer_type="Server"}[1m]))"#)
                .unwrap();
        let Expr::Aggregate { op: AggOp::Sum, grouping: Grouping::By(labels), inner, .. } = &expr else {
            panic!("{expr:?}")
        };
        assert_eq!(labels, &["status_code"]);
        assert!(matches!(**inner, Expr::Range { func: RangeFn::Count, range_ms: 60_000, .. }));
        assert_eq!(expr.source_ids(), ["a"]);
        let q = Parser::parse(r#"quantile(0.95, max_over_time(http{source_id=~"a|b"}[90s]))"#).unwrap();
        assert_eq!(q.source_ids(), ["a", "b"]);
        assert!(Parser::parse(r#"http{source_id!="a"}"#).unwrap().source_ids().is_empty());
    }

    #[test]
    fn what_is_not_modelled_is_refused_by_name() {
        for (query, what) in [
            (r#"rate(http{source_id="a"}[1m])"#, "the function rate"),
            (r#"sum(http{source_id="a"}) / 2"#, "binary operators"),
            (r#"http{source_id="a"}[1m]"#, "a range selector outside"),
            (r#"(http{source_id="a"})"#, "parentheses"),
        ] {
            let err = Parser::parse(query).unwrap_err();
            assert!(err.contains(what) && err.starts_with("cf-sim does not evaluate"), "{query}: {err}");
        }
        assert!(Parser::parse("sum(").unwrap_err().starts_with("parse error"));
        assert!(Parser::parse("").unwrap_err().contains("no expression"));
    }

    #[test]
    fn quantiles_interpolate_as_prometheus() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(0.95, &mut values) - 95.05).abs() < 1e-9);
        assert_eq!(quantile(0.5, &mut [3.0, 1.0]), 2.0);
        assert_eq!(quantile(1.5, &mut [1.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn times_steps_and_names_parse_as_log_cache() {
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20.25+01:00"), Ok(1_700_000_000_250));
        assert!(parse_time("yesterday").unwrap_err().contains("valid Unix or RFC3339"));
        assert_eq!(parse_step("15"), Ok(15_000));
        assert_eq!(parse_step("1m30s"), Ok(90_000));
        assert!(parse_step("soon").is_err());
        assert_eq!(sanitize("http"), "http");
        assert_eq!(sanitize("gorouter.latency"), "gorouter_latency");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(3.0), "3");
    }
}
